"""``mhckit sample``: generate text from a trained checkpoint."""

from __future__ import annotations

import argparse

import torch

from mhckit.cli.errors import UsageError
from mhckit.cli.options import describe
from mhckit.functional.validation import check_float, check_size
from mhckit.models import load_model, resolve_device


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help=__doc__.split(": ", 1)[1], description=describe(__doc__),
        epilog="example: mhckit sample runs/mhc --start 'ROMEO:' --max-new-tokens 300")
    parser.add_argument("checkpoint", help="checkpoint file or run directory holding ckpt.pt")
    parser.add_argument("--start", default="\n", help="prompt (default: a newline)")
    parser.add_argument("--num-samples", type=int, default=1, help="default: 1")
    parser.add_argument("--max-new-tokens", type=int, default=500, help="default: 500")
    parser.add_argument("--temperature", type=float, default=0.8, help="default: 0.8")
    parser.add_argument("--top-k", type=int, default=200, help="default: 200")
    parser.add_argument("--seed", type=int, default=1337, help="default: 1337")
    parser.add_argument("--device", default="auto", help="default: cuda when present, else cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_size(args.num_samples, "--num-samples")
    check_size(args.max_new_tokens, "--max-new-tokens", minimum=0)
    check_float(args.temperature, "--temperature", low=0.0, low_open=True)
    check_size(args.top_k, "--top-k")
    if not args.start:
        raise UsageError("--start must hold at least one character")
    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.checkpoint, device)
    prompt = torch.tensor([tokenizer.encode(args.start)], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    for i in range(args.num_samples):
        out = model.generate(prompt, args.max_new_tokens, temperature=args.temperature,
                             top_k=args.top_k, generator=generator)
        print(tokenizer.decode(out[0].tolist()))
        if i + 1 < args.num_samples:
            print("---------------")
    return 0
