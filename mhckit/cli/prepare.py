"""``mhckit prepare``: tokenize text files into a dataset that training reads by memory map."""

from __future__ import annotations

import argparse

from mhckit.cli.options import describe
from mhckit.models.prepare import prepare
from mhckit.models.tokenization import TOKENIZERS

EPILOG = """\
examples:
  mhckit prepare corpus.txt --out data/mine                   # byte-level (256 tokens)
  mhckit prepare books/ notes.txt --tokenizer char --out data/c  # a folder's *.txt and a file
  mhckit prepare corpus/ --tokenizer bpe --vocab-size 8192 --out data/bpe  # trains a BPE
  mhckit prepare corpus/ --tokenizer bpe --tokenizer-file gpt2/tokenizer.json --out data/g
  mhckit train --dataset data/mine --out runs/mine            # then train on it

OUT receives train.bin and val.bin (flat uint16, uint32 past 65,536 tokens) and meta.json
(tokenizer, vocabulary size, token counts, the sha256 of the sources); see docs/data.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare", help=__doc__.split(": ", 1)[1], description=describe(__doc__),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="UTF-8 text files, or folders (their files matching --glob)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="byte",
                        help="byte (lossless, any UTF-8), char (the corpus's characters) or "
                             "bpe (needs the tokenizers package); default: byte")
    parser.add_argument("--tokenizer-file", metavar="JSON",
                        help="bpe: a tokenizers tokenizer.json to use as it is")
    parser.add_argument("--vocab-size", type=int, metavar="N",
                        help="bpe: train a byte-level BPE of N tokens on the corpus")
    parser.add_argument("--train-fraction", type=float, default=0.9,
                        help="share of the bytes for training, the rest validates (default 0.9)")
    parser.add_argument("--glob", default="*.txt",
                        help="files taken from a folder, recursively (default: *.txt)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset already in --out")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show progress bars (default: on)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    meta = prepare(args.inputs, args.out, tokenizer=args.tokenizer,
                   tokenizer_file=args.tokenizer_file, vocab_size=args.vocab_size,
                   train_fraction=args.train_fraction, pattern=args.glob,
                   overwrite=args.overwrite, progress=args.progress)
    tokens = meta["tokens"]
    print(f"{len(meta['source']['files'])} file(s), {meta['source']['bytes']:,} bytes -> "
          f"{tokens['train']:,} train + {tokens['val']:,} val tokens ({meta['tokenizer']['kind']}"
          f", vocabulary {meta['vocab_size']:,}, {meta['dtype']}) in {args.out}")
    return 0
