"""``mhckit eval``: the loss of a trained checkpoint on a dataset split, without training."""

from __future__ import annotations

import argparse
import json

from mhckit.cli.options import describe
from mhckit.models.evaluation import evaluate_checkpoint

EPILOG = """\
examples:
  mhckit eval runs/mhc                             # its own dataset, validation split
  mhckit eval runs/mhc/ckpt.pt --split train --max-tokens 100000
  mhckit eval runs/mine --dataset data/other --json

Every token of the split (or of its first --max-tokens) is scored once, in consecutive
windows of the model's block size: the result needs no seed. Bits per byte are reported
for byte- and character-level data (docs/data.md).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help=__doc__.split(": ", 1)[1], description=describe(__doc__),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="RUN|CHECKPOINT",
                        help="a run directory holding ckpt.pt, or a checkpoint file")
    parser.add_argument("--dataset", help="default: the dataset the run trained on")
    parser.add_argument("--split", choices=("val", "train"), default="val",
                        help="default: val")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward "
                        "pass (default: 16)")
    parser.add_argument("--max-tokens", type=int, metavar="N",
                        help="score only the first N tokens of the split (default: all)")
    parser.add_argument("--device", default="auto", help="default: cuda when present, else cpu")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: bfloat16 autocast on a GPU that has it (default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = evaluate_checkpoint(args.checkpoint, dataset=args.dataset, split=args.split,
                                 batch_size=args.batch_size, max_tokens=args.max_tokens,
                                 device=args.device, dtype=args.dtype)
    if args.json:
        print(json.dumps(result.as_record()))
        return 0
    bpb = "" if result.bits_per_byte is None else f", {result.bits_per_byte:.4f} bits/byte"
    print(f"{result.checkpoint} (iteration {result.step}) on {result.dataset} "
          f"[{result.split}]: {result.tokens:,} tokens, loss {result.loss:.4f} "
          f"nats/token{bpb}")
    return 0
