"""Activation memory of the GPT with every mixer preset, with and without recompute, as ratios
to ``residual`` at the same width.

nanoGPT's CPU configuration (n_layer 4, n_head 4, block 64, batch 12, dropout 0) with
``n_streams`` streams (default 4), at each width of ``--widths``. For each model and
recompute setting (``False``; ``True`` = groups of ``optimal_group_size(n, 2·n_layer)``
sublayers; ``True maps``: the same with ``recompute_maps=True``; any extra group lengths of
``--groups``), one training step on a fixed batch:

* **after forward**: bytes of tensor storage allocated by the forward pass and still alive
  when it returns, holding only the loss (what the backward will use), counted by
  :func:`mhckit.models.memory.live_activation_bytes` (weak references to every storage an
  operation creates, through a ``TorchDispatchMode``);
* **peak**: the largest live total during forward + backward over the same storages
  (gradients included, parameters and optimizer state not); on CUDA,
  ``torch.cuda.max_memory_allocated`` above what was allocated before the step.

Deterministic (no timing): one run is enough.

    OMP_NUM_THREADS=1 python benchmarks/memory.py [--widths 128,512] [--groups 2,4,8]
                                                  [--device cuda --dtype bfloat16]
"""

from __future__ import annotations

import argparse

import torch

from mhckit.models import GPT, GPTConfig
from mhckit.models.memory import StorageTracker
from mhckit.nn import PRESETS


def measure(config: GPTConfig, batch: int, device: str, dtype: torch.dtype
            ) -> tuple[int, int]:
    """``(after forward, peak)`` bytes of one training step of a fresh model."""
    torch.manual_seed(0)
    model = GPT(config).to(device)
    g = torch.Generator().manual_seed(1)
    idx, targets = (torch.randint(config.vocab_size, (batch, config.block_size), generator=g)
                    .to(device) for _ in range(2))
    autocast = torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with autocast:
            loss = model(idx, targets)[1]
        after = torch.cuda.memory_allocated() - base
        loss.backward()
        torch.cuda.synchronize()
        return after, torch.cuda.max_memory_allocated() - base
    tracker = StorageTracker(track_peak=True)
    with tracker:
        with autocast:
            loss = model(idx, targets)[1]
        after = tracker.live_bytes()
        loss.backward()
    return after, tracker.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="128,512", help="comma-separated n_embd values")
    parser.add_argument("--groups", default="", help="extra recompute group lengths L_r")
    parser.add_argument("--n-streams", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--mixers", default=",".join(PRESETS), help="comma-separated presets")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    mixers = [m for m in args.mixers.split(",") if m != "residual"]
    # (recompute, recompute_maps): streams rebuilt; then the coefficient maps rerun too
    settings: list[tuple[bool | int, bool]] = [
        (False, False), (True, False), (True, True),
        *((int(g), False) for g in args.groups.split(",") if g)]
    default = GPTConfig(n_layer=4, mixer="mhc", n_streams=args.n_streams, recompute=True)
    print(f"GPT activation memory, n_layer 4, n_head 4, block 64, batch {args.batch_size}, "
          f"n_streams {args.n_streams}, {args.device} {args.dtype}; torch {torch.__version__}; "
          f"recompute True = L_r {default.recompute_group}")
    header = " | ".join(f"recompute {r}{' maps' if maps else ''} after fwd | peak"
                        for r, maps in settings)
    for width in (int(w) for w in args.widths.split(",")):
        base = GPTConfig(n_layer=4, n_head=4, n_embd=width, block_size=64, dropout=0.0,
                         n_streams=args.n_streams)
        res_after, res_peak = measure(base, args.batch_size, args.device, dtype)
        print(f"\nC = {width}: residual {res_after / 2**20:.1f} MiB after forward, "
              f"{res_peak / 2**20:.1f} MiB peak")
        print(f"| mixer | {header} |")
        print("|---|" + "---:|---:|" * len(settings))
        for mixer in mixers:
            cells = []
            for recompute, maps in settings:
                config = GPTConfig(**{**base.__dict__, "mixer": mixer, "recompute": recompute,
                                      "recompute_maps": maps})
                after, peak = measure(config, args.batch_size, args.device, dtype)
                cells.append(f"{after / res_after:.2f} | {peak / res_peak:.2f}")
            print(f"| {mixer} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
