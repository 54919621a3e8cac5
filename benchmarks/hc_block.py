"""Cost of the non-branch part of a hyper-connected block, per preset.

The block ``x_next = H_res·x + H_postᵀ·F(H_pre·x)`` minus its branch: the coefficients, the
read and mix (:func:`mhckit.functional.stream_mix`) and the write, as
:meth:`mhckit.nn.HyperConnection.read` then :meth:`~mhckit.nn.HyperConnection.write` with
``F(h) = h + noise`` (a fixed random ``noise``: the branch costs one add, and the backward
carries a gradient to the read, as under a real branch). Streams ``(T, n, C)`` with
``T = batch · block`` tokens (nanoGPT's CPU configuration: 12 · 64 = 768) and ``x``
requiring grad. Forward under ``value_checks(False)``, as in ``mhckit train``. Times are the
CPU time of this thread (``time.thread_time``), median of ``--rounds`` rounds of
``--repeat`` calls each, so other jobs on a shared machine do not enter; run with one thread
(the default ``--threads 1``).

With ``--compile`` a third column times the same forward + backward with the read and
the write under ``torch.compile`` (inductor; compiled in an untimed warm-up): what fusing
the stream passes by the compiler gains.

    python benchmarks/hc_block.py [--widths 128,512] [--n-streams 4] [--tokens 768]
                                  [--mixers hc,mhc,...] [--rounds 5] [--repeat 10]
                                  [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from mhckit.functional import value_checks
from mhckit.nn import PRESETS, HyperConnection


def median_ms(fn: Callable[[], object], rounds: int, repeat: int) -> float:
    """Median over ``rounds`` of the thread CPU time of ``repeat`` calls, per call (ms)."""
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(repeat):
            fn()
        times.append((time.thread_time() - t0) / repeat)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="128,512", help="comma-separated stream widths C")
    parser.add_argument("--n-streams", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=768, help="tokens T (batch x block)")
    parser.add_argument("--mixers", default=",".join(p for p in PRESETS if p != "residual"),
                        help="comma-separated presets")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true",
                        help="also time the read and write under torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.n_streams
    for width in (int(w) for w in args.widths.split(",")):
        print(f"\nnon-branch block, T {args.tokens}, n {n}, C {width}; torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads, thread clock, median "
              f"of {args.rounds} x {args.repeat}")
        extra = " compiled fwd+bwd (ms) |" if args.compile else ""
        print(f"| mixer | fwd (ms) | fwd+bwd (ms) |{extra}")
        print("|---|---:|---:|" + ("---:|" if args.compile else ""))
        for mixer in args.mixers.split(","):
            torch.manual_seed(args.seed)
            block = HyperConnection(width, n, mixer)
            x = torch.randn(args.tokens, n, width, requires_grad=True)
            noise = torch.randn(args.tokens, width)
            grad = torch.randn(args.tokens, n, width)

            def block_part(x, noise, block=block) -> torch.Tensor:
                read, state = block.read(x)
                return block.write(state, read + noise)

            def forward(part=block_part, x=x, noise=noise) -> torch.Tensor:
                with value_checks(False):
                    return part(x, noise)

            def step(forward=forward, grad=grad) -> None:
                forward().backward(grad)

            fwd = median_ms(forward, args.rounds, args.repeat)
            both = median_ms(step, args.rounds, args.repeat)
            row = f"| {mixer} | {fwd:.2f} | {both:.2f} |"
            if args.compile:
                compiled = torch.compile(block_part)

                def compiled_step(part=compiled, step=step, forward=forward) -> None:
                    step(lambda: forward(part))

                compiled_step()  # compiles forward and backward, untimed
                row += f" {median_ms(compiled_step, args.rounds, args.repeat):.2f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
