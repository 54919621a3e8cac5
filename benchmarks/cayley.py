"""Cost of the Cayley presets' ``parametrize`` (go-mHC, JPmHC, sHC) against mHC's Sinkhorn.

For each preset's manifold at ``n`` streams (``mhckit.nn.PRESETS[name].build(n)``: go-mHC
``Orthostochastic(n, s=2)``, a ``2n × 2n`` Cayley; JPmHC ``Stiefel(n, n)``; sHC
``SpectralSphere(n)``, two ``(n−1) × (n−1)`` Cayleys; mHC ``Birkhoff`` with 20 sweeps at
most, tol 1e-6) one step is ``as_matrix(parametrize(z))`` for ``z`` of shape
``(tokens, *param_shape)``, a random linear loss and ``backward()``, as in
``benchmarks/parametrize.py``, at the token counts of a GPT step (``B·T = 768``: nanoGPT's
CPU batch 12 × 64; ``12288``: batch 12 × 1024). The table gives the median over rounds of
the within-round ratio to ``mhc``, and mhc's time per step. On a CPU the clock is this
thread's CPU time (``time.thread_time``, one intra-op thread), which a shared machine's other
jobs do not inflate; on CUDA it is wall-clock after a synchronisation.

    python benchmarks/cayley.py [--tokens 768 12288] [--repeats 15] [--n-streams 4]
                                [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
from parametrize import cost_ratios, make_step

from mhckit.nn import PRESETS

PRESET_NAMES = ("mhc", "go-mhc", "jpmhc", "jpmhc-grassmann", "shc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[768, 12288])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--n-streams", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    clock = time.thread_time if args.device == "cpu" else time.perf_counter
    manifolds = {name: PRESETS[name].build(args.n_streams) for name in PRESET_NAMES}
    print(f"device={args.device} n_streams={args.n_streams} repeats={args.repeats} "
          f"torch {torch.__version__}")
    print("| tokens | mhc ms/step | " + " | ".join(PRESET_NAMES[1:]) + " |")
    print("|---" * (len(PRESET_NAMES) + 1) + "|")
    for tokens in args.tokens:
        steps = {name: make_step(man, tokens, args.device) for name, man in manifolds.items()}
        ratio, per_token = cost_ratios(steps, "mhc", args.repeats, clock=clock)
        cells = " | ".join(f"{ratio[name]:.2f}" for name in PRESET_NAMES[1:])
        print(f"| {tokens} | {per_token * tokens * 1e3:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
