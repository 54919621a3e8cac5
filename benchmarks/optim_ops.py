"""What one RiemannianAdam step over a bucket of Birkhoff mixers costs, counted.

Small manifold batches cost per tensor operation and per Python call, not per number, so
this counts both for one step over ``--mixers`` separate ``Birkhoff(n)`` parameters (one
bucket): dispatched ATen operations (a ``TorchDispatchMode``), Python function calls
(cProfile), and the time per step (best of ``--repeats`` medians of ``--steps`` steps; the
time varies from machine to machine, the counts do not).

    python benchmarks/optim_ops.py [--mixers 16] [--n 4] [--lr 1e-3] [--start random]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import geoopt
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mhckit import manifolds as M
from mhckit.optim import RiemannianAdam


class _CountOperations(TorchDispatchMode):
    """Counts the ATen operations dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixers", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--start", choices=("random", "origin"), default="random",
                        help="random points (as in benchmarks/optim.py (c)) or the identity "
                             "mixer of the GPT")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    manifold = M.Birkhoff(args.n)
    starts = (manifold.random(args.mixers, args.n, args.n) if args.start == "random"
              else manifold.origin(args.mixers, args.n, args.n))
    params = [geoopt.ManifoldParameter(x.clone(), manifold=manifold) for x in starts]
    opt = RiemannianAdam(params, lr=args.lr)
    grads = [[0.01 * torch.randn(args.n, args.n) for _ in params] for _ in range(8)]

    def steps(count: int, timed: list[float] | None = None) -> None:
        for i in range(count):
            for p, g in zip(params, grads[i % len(grads)], strict=True):
                p.grad = g
            if timed is None:
                opt.step()
                continue
            start = time.perf_counter()
            opt.step()
            timed.append(time.perf_counter() - start)

    steps(20)  # past the first steps, which form the bucket and its state
    with _CountOperations() as counter:
        steps(10)
    profile = cProfile.Profile()
    profile.enable()
    steps(100)
    profile.disable()
    medians = []
    for _ in range(args.repeats):
        timed: list[float] = []
        steps(args.steps, timed)
        medians.append(1e3 * statistics.median(timed))
    print(f"RiemannianAdam, {args.mixers} x Birkhoff({args.n}) ({args.start}), lr {args.lr}, "
          f"torch {torch.__version__}, 1 thread\n")
    print("| tensor operations / step | Python calls / step | ms / step (best median) |")
    print("|---:|---:|---:|")
    print(f"| {counter.count / 10:.0f} | {pstats.Stats(profile).total_calls / 100:.0f} | "
          f"{min(medians):.3f} |")


if __name__ == "__main__":
    main()
