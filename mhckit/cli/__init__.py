"""The ``mhckit`` command: ``mhckit prepare | train | eval | sample | compare | spectrum |
analyze``.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the function to run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mhckit.cli.errors import USER_ERRORS, ArgumentParser, report, silence_stdout

COMMANDS = ("prepare", "train", "eval", "sample", "compare", "spectrum", "analyze")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="mhckit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mhckit.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"mhckit.cli.{name}":
                raise
            continue
        module.register(sub)
    parser.commands = sub.choices  # name -> parser of each command
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error is one line on stderr and exit code 2
    (:mod:`mhckit.cli.errors`)."""
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the command's parser: "mhckit train: error: ..."
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        code = _run(args)
        sys.stdout.flush()  # a closed pipe surfaces here, not in the interpreter's exit
        return code
    except BrokenPipeError:  # the reader went away (mhckit spectrum | head): stop quietly
        silence_stdout()
        return 1


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if isinstance(err, BrokenPipeError) or os.environ.get("MHCKIT_TRACEBACK"):
            raise
        return report(args.command, err)


if __name__ == "__main__":
    sys.exit(main())
