"""``mhckit train``: train a GPT on Tiny Shakespeare, a text file or a prepared dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from mhckit.cli.errors import DIVERGED_EXIT, report
from mhckit.cli.options import add_config_arguments, config_layers, describe
from mhckit.cli.preflight import check_run
from mhckit.models import build_configs, checkpoint_path, load_checkpoint, train
from mhckit.models.nonfinite import NonFiniteError

#: Exit code of a run stopped by a NaN/inf loss or gradient norm (docs/reliability.md).

EPILOG = """\
examples:
  mhckit train --mixer mhc --out runs/mhc                  # nanoGPT's CPU Shakespeare config
  mhckit train --config demo --mixer kromhc --out runs/k   # a named small budget
  mhckit train --config my.toml --out runs/x               # [model] / [train] tables
  mhckit train --out runs/mhc --resume                     # continue runs/mhc/ckpt.pt exactly
  mhckit train --dataset data/mine --out runs/mine         # a folder from mhckit prepare
  mhckit train --config gpt2-small --dataset data/owt --dtype bfloat16 --compile --tensorboard
  torchrun --nproc_per_node 2 -m mhckit train --out runs/ddp   # data parallel (docs/gpt.md)
  torchrun --nproc_per_node 2 -m mhckit train --parallel fsdp --out runs/fsdp  # sharded

--out receives metrics.jsonl, loss.png, samples.txt and ckpt.pt; it belongs to one run
(locked while training; a run already there needs --resume or --overwrite).
A NaN/inf loss or gradient norm stops the run with exit code 3, the last checkpoint
untouched (--on-nonfinite skip skips such steps instead, up to --max-nonfinite-steps in a row).
With --resume the checkpoint's configuration is the base; flags may change training fields
(e.g. --max-iters) but not the model.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help=__doc__.split(": ", 1)[1], description=describe(__doc__),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/train", metavar="DIR",
                        help="output directory (default: runs/train)")
    parser.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                        help="continue from CHECKPOINT (a file or run directory; default: --out)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (its files are removed)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar (default: on)")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    layers = config_layers(args)
    resume = None
    if args.resume is not None:
        resume = checkpoint_path(args.out if args.resume is True else args.resume)
        layers.insert(0, load_checkpoint(resume)["config"])
    model_config, train_config = build_configs(*layers, where="configuration")
    check_run(model_config, train_config, args.out)
    try:
        result = train(model_config, train_config, Path(args.out), resume=resume,
                       progress=args.progress, overwrite=args.overwrite)
    except NonFiniteError as err:
        report("train", err)
        return DIVERGED_EXIT
    if result.up_to_date:
        if result.rank == 0:
            print(f"already at step {result.iters} (--max-iters {train_config.max_iters}): "
                  f"nothing to train; {result.out_dir} unchanged")
        return 0
    if result.rank == 0:
        print(f"val loss {result.val_loss:.4f} after {result.iters} iterations; "
              f"files in {result.out_dir}")
    return 0
