"""``mhckit analyze``: the papers' analyses of trained runs: composite gain and identity
distance over training, mean H_res heat maps, and the stream-Jacobian spectrum trained vs
at initialisation vs theory."""

from __future__ import annotations

import argparse
from pathlib import Path

from mhckit.cli.options import describe, fail

EPILOG = """\
examples:
  mhckit analyze runs/cmp/hc runs/cmp/mhc --out runs/cmp/analysis.png
  mhckit analyze runs/cmp/*                   # every run of a comparison

Each RUN is a directory written by `mhckit train` (or one mixer's directory of `mhckit
compare`): its metrics.jsonl holds the diagnostics logged at every evaluation, its ckpt.pt
the trained model. The table gives the last evaluation's numbers and the ratio
sigma_(C+1)/sigma_1 of the stream Jacobian (trained and at initialisation), which the
collapse of unit-marginal mixers drives to 0.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze", help="gain, identity drift and Jacobian spectra of trained runs",
        description=describe(__doc__), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    parser.add_argument("--out", default=None, metavar="FILE.png",
                        help="figure path (default: analysis.png beside the first run)")
    parser.add_argument("--tokens", type=int, default=8,
                        help="tokens the Jacobian is measured on (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of those tokens (default: 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mhckit.models.analysis import analyze_run, format_analysis, plot_analysis

    out = Path(args.out) if args.out else Path(args.runs[0]).parent / "analysis.png"
    if out.suffix.lower() != ".png":
        return fail("analyze", ValueError(f"--out must name a .png file, got {str(out)!r}"))
    if not out.parent.is_dir():
        return fail("analyze", ValueError(f"--out: directory {str(out.parent)!r} does not "
                                          "exist"))
    try:
        runs = [analyze_run(r, tokens=args.tokens, seed=args.seed) for r in args.runs]
    except ValueError as err:  # CheckpointError included
        return fail("analyze", err)
    print(format_analysis(runs))
    print(f"figure: {plot_analysis(runs, out)}")
    return 0
