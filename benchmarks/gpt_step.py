"""Training-step time of the GPT with every mixer preset, as a ratio to ``residual``.

nanoGPT's CPU configuration (n_layer 4, n_head 4, n_embd 128, block 64, batch 12, dropout 0)
with ``n_streams`` streams (default 4). One training step = forward, backward, gradient
clipping and the optimizer step (AdamW + RiemannianAdam as in ``mhckit train``), on one
fixed batch. All models are timed in one run, interleaved round by round in a shuffled order
so that a load change on a shared machine hits them alike; the table gives each model's
median step time and its ratio to residual's median.

If the ``hyper-connections`` package (lucidrains) is installed, its ``HyperConnections``
(``lucidrains-hc``) and ``mHC`` (``lucidrains-mhc``) run in the same model and harness as a
reference: an adapter folds our streams ``(B, T, n, C)`` into its ``(B·n, T, C)`` layout.

With ``--compile`` every model runs under ``torch.compile`` (inductor; compilation happens in
the untimed warm-up steps and takes minutes on CPU): the constraint maps are many small
operations, which the compiler fuses.

``--widths 128,256,512`` repeats the table at each ``n_embd`` (one table per width, each
timed in its own interleaved rounds). ``--recompute`` adds every mixer with
``GPTConfig(recompute=True)`` (``<mixer> recompute``) and with ``recompute_maps=True`` as
well (``<mixer> recompute maps``) to the same rounds; their column "recompute overhead" is
the median step with recompute over the median step without.

The forward runs under ``value_checks(False)``, as in ``mhckit train`` (the checks that read
values back to the host are for a user's own calls, not the training loop). ``--clock thread``
times the CPU time of the calling thread (``time.thread_time``) instead of wall-clock time:
with ``--threads 1`` that is the whole step, and other jobs on a shared machine do not enter.

    python benchmarks/gpt_step.py [--rounds 30] [--threads N] [--n-streams 4] [--compile]
                                  [--widths 128,256,512] [--recompute] [--clock wall|thread]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch import nn

from mhckit.functional import value_checks
from mhckit.models import GPT, GPTConfig, build_optimizer
from mhckit.nn import PRESETS


class FoldedStreams(nn.Module):
    """Adapter for a hyper-connection module that keeps streams in the batch dimension."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, n, C)
        B, T, n, C = x.shape
        folded = x.permute(0, 2, 1, 3).reshape(B * n, T, C)
        return self.block(folded).reshape(B, n, T, C).permute(0, 2, 1, 3)


def lucidrains_models(config: GPTConfig) -> dict[str, GPT]:
    try:
        import hyper_connections
    except ImportError:
        return {}
    n, dim = config.n_streams, config.n_embd
    makers = {
        "lucidrains-hc": lambda branch, i: hyper_connections.HyperConnections(
            n, dim=dim, branch=branch, layer_index=i),
        "lucidrains-mhc": lambda branch, i: hyper_connections.mHC(
            n, dim=dim, branch=branch, layer_index=i),
    }
    # mixer="mhc" only sets the stream count the GPT expands to; the connection replaces it
    base = GPTConfig(**{**config.__dict__, "mixer": "mhc"})
    return {name: GPT(base, connection=lambda b, i, make=make: FoldedStreams(make(b, i)))
            for name, make in makers.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--n-streams", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--mixers", default=",".join(PRESETS), help="comma-separated presets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument("--widths", default="128", help="comma-separated n_embd values")
    parser.add_argument("--recompute", action="store_true",
                        help="also time every mixer with GPTConfig(recompute=True)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="wall-clock time, or CPU time of this thread (with --threads 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for width in (int(w) for w in args.widths.split(",")):
        benchmark(args, width)


def benchmark(args: argparse.Namespace, width: int) -> None:
    """Time every model at ``n_embd = width`` and print its table."""
    config = GPTConfig(n_layer=4, n_head=4, n_embd=width, block_size=64, dropout=0.0,
                       n_streams=args.n_streams)
    torch.manual_seed(args.seed)
    mixers = ["residual", *[m for m in args.mixers.split(",") if m != "residual"]]
    models = {m: GPT(GPTConfig(**{**config.__dict__, "mixer": m})) for m in mixers}
    if args.recompute:
        for suffix, maps in ((" recompute", False), (" recompute maps", True)):
            models.update({m + suffix: GPT(GPTConfig(**{
                **config.__dict__, "mixer": m, "recompute": True, "recompute_maps": maps}))
                for m in mixers if m != "residual"})
    models.update(lucidrains_models(config))
    x = torch.randint(config.vocab_size, (args.batch_size, config.block_size))
    y = torch.randint(config.vocab_size, (args.batch_size, config.block_size))
    optimizers = {name: build_optimizer(model, learning_rate=1e-3, weight_decay=0.1,
                                        betas=(0.9, 0.99)) for name, model in models.items()}

    run = {name: torch.compile(model) if args.compile else model
           for name, model in models.items()}

    clock = time.thread_time if args.clock == "thread" else time.perf_counter

    def step(name: str) -> float:
        t0 = clock()
        with value_checks(False):  # as in mhckit train
            loss = run[name](x, y)[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models[name].parameters(), 1.0)
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return clock() - t0

    for name in models:
        for _ in range(args.warmup):
            step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    order, rng = list(models), random.Random(args.seed)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            times[name].append(step(name))

    base = statistics.median(times["residual"])
    print(f"\nGPT training step, n_layer 4, n_head 4, n_embd {width}, block 64, batch "
          f"{args.batch_size}, n_streams {args.n_streams}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds"
          f"{', torch.compile' if args.compile else ', eager'}, {args.clock} clock")
    extra = " recompute overhead |" if args.recompute else ""
    print(f"| mixer | parameters | median step (ms) | ratio to residual |{extra}")
    print("|---|---:|---:|---:|" + ("---:|" if args.recompute else ""))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, median in medians.items():
        row = (f"| {name} | {models[name].num_parameters():,} | {1000 * median:.1f} | "
               f"{median / base:.2f} |")
        if args.recompute:
            stored = medians.get(name.partition(" recompute")[0])
            row += f" {median / stored:.2f} |" if " recompute" in name else " |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
