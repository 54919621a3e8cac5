"""Cost per token of ``parametrize`` + backward for every set, as a ratio to Sinkhorn.

For each set and stream count ``n`` the timed step is: logits ``z`` of shape
``(tokens, *param_shape)`` → ``as_matrix(parametrize(z))`` (the ``n × n`` mixer) → a random
linear loss → ``backward()``. The table prints ``(time per token) / (time per token of
Birkhoff = Sinkhorn at the same n)``, all measured in one run (wall-clock, so only the
ratios mean anything): after a warm-up, every round times each set once, interleaved, and
the table shows the median over ``--repeats`` rounds of the within-round ratio.
``PermutationHull`` runs only for ``n ≤ 8`` and on fewer tokens (``n!`` logits per token),
normalised per token.

    python benchmarks/parametrize.py [--tokens 4096] [--repeats 7] [--sizes 2 4 8 16 32]
                                     [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from mhckit import manifolds as M

# column title -> factory(n) returning a manifold, or None where the set is not defined at n
SETS: dict[str, Callable[[int], M.Manifold | None]] = {
    "Birkhoff (Sinkhorn)": lambda n: M.Birkhoff(n),
    "PermutationHull": lambda n: M.PermutationHull(n) if n <= 8 else None,
    "Kronecker 2x2": lambda n: M.Kronecker.of_size(n, powers_of_two=True),
    "Orthostochastic s=1": lambda n: M.Orthostochastic(n, 1),
    "Orthostochastic s=2": lambda n: M.Orthostochastic(n, 2),
    "Stiefel(n, n)": lambda n: M.Stiefel(n, n),
    "Stiefel(n, n) 2-step iterative": lambda n: M.Stiefel(
        n, n, parametrization="iterative-cayley", iterations=2),
    "Grassmann(n, n/2)": lambda n: M.Grassmann(n, max(n // 2, 1)),
    "SpectralSphere": lambda n: M.SpectralSphere(n),
}
MAX_LOGITS = 2**24  # cap on tokens × param count (PermutationHull at n = 8 has 40320 per token)


def make_step(man: M.Manifold, tokens: int, device: str) -> tuple[Callable[[], None], int]:
    """One forward + backward of ``as_matrix(parametrize(z))`` and the token count it covers."""
    tokens = max(1, min(tokens, MAX_LOGITS // max(1, math.prod(man.param_shape))))
    z = torch.randn(tokens, *man.param_shape, device=device, requires_grad=True)
    weights = torch.randn(tokens, man.n, man.n, device=device)

    def step():
        z.grad = None
        (man.as_matrix(man.parametrize(z)) * weights).sum().backward()
        if z.is_cuda:
            torch.cuda.synchronize()

    return step, tokens


def cost_ratios(steps: dict[str, tuple[Callable[[], None], int]], baseline: str,
                repeats: int, clock: Callable[[], float] = time.perf_counter
                ) -> tuple[dict[str, float], float]:
    """Median over ``repeats`` rounds of (time per token) / (time per token of ``baseline``).

    Every round times each step once, interleaved, and the ratio is taken within the round,
    so that a slow spell of a shared machine hits numerator and denominator alike. Also
    returns the baseline's median seconds per token. ``clock`` is wall-clock by default;
    ``time.thread_time`` counts only this thread's CPU time (one intra-op thread, CPU).
    """
    ratios: dict[str, list[float]] = {name: [] for name in steps}
    base_times = []
    for step, _ in steps.values():
        step()  # warm-up
    for _ in range(repeats):
        per_token = {}
        for name, (step, tokens) in steps.items():
            start = clock()
            step()
            per_token[name] = (clock() - start) / tokens
        base_times.append(per_token[baseline])
        for name in steps:
            ratios[name].append(per_token[name] / per_token[baseline])
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return {name: median(r) for name, r in ratios.items()}, median(base_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (1: no OpenMP over-subscription on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = list(SETS)
    print(f"device={args.device} threads={torch.get_num_threads()} tokens={args.tokens} "
          f"repeats={args.repeats}")
    print("| n | Sinkhorn µs/token | " + " | ".join(names[1:]) + " |")
    print("|---" * (len(names) + 1) + "|")
    for n in args.sizes:
        sets = {name: SETS[name](n) for name in names}
        steps = {name: make_step(man, args.tokens, args.device)
                 for name, man in sets.items() if man is not None}
        ratio, baseline = cost_ratios(steps, names[0], args.repeats)
        cells = [f"{ratio[name]:.2f}" if name in ratio else "—" for name in names[1:]]
        print(f"| {n} | {baseline * 1e6:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
