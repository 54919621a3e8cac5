"""``mhckit compare``: train one GPT per mixer on the same seed and budget; print one table
and plot every loss curve."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mhckit.cli.errors import DIVERGED_EXIT, UsageError, report
from mhckit.cli.options import add_config_arguments, config_layers, describe
from mhckit.cli.preflight import check_run
from mhckit.models import build_configs, compare_mixers, format_table
from mhckit.models.comparison import COMPARISON_PLOT, options_for
from mhckit.models.config import check_mixer_list
from mhckit.models.training import RUN_FILES
from mhckit.nn import PRESETS

EPILOG = f"""\
examples:
  mhckit compare --config demo --out runs/demo         # the README demo (a few minutes, CPU)
  mhckit compare --mixers residual,mhc,kromhc --max-iters 2000 --out runs/cmp
  mhckit compare --mixers residual,mhc,kromhc --max-iters 2000 --out runs/cmp --resume
                                                       # finish an interrupted comparison

Columns: final validation loss; parameters (without position embeddings, as nanoGPT);
median step time and its ratio to residual (measured in this run, sequentially: a noisy
estimate on a shared machine, see benchmarks/gpt_step.py for an interleaved one); forward
Amax gain of the composite mixer prod H_res and the largest constraint error
(mhckit.nn.diagnostics on one validation sequence). Each run's files go to OUT/<mixer>/,
the plot of all curves to OUT/{COMPARISON_PLOT}. A mixer whose training goes non-finite is
reported in its row (where it diverged) and on stderr, the others train, exit code 3.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="train several mixers on the same budget; one table and one plot",
        description=describe(__doc__), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixers", metavar="LIST",
                        help="comma-separated presets (default: the config's list, else all: "
                             f"{','.join(PRESETS)})")
    parser.add_argument("--out", default="runs/compare", metavar="DIR",
                        help="output directory (default: runs/compare)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show progress bars (default: on)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each mixer from OUT/<mixer>/ckpt.pt where it exists "
                             "(same flags as the interrupted command)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the runs already in OUT/<mixer>/ (default: refuse)")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if "model.mixer" in vars(args):
        raise UsageError("--mixer does not apply to compare, which trains every mixer of "
                         "--mixers LIST")
    layers = config_layers(args)
    model_config, train_config = build_configs(*layers, where="configuration")
    if args.mixers is not None:
        mixers = check_mixer_list([m.strip() for m in args.mixers.split(",") if m.strip()],
                                  "--mixers")
    else:
        mixers = layers[0].get("compare", {}).get("mixers", list(PRESETS))
    options = model_config.mixer_options
    unused = set(options) - {key for m in mixers for key in options_for(m, options)}
    if unused:
        raise UsageError(f"mixer_options {sorted(unused)} apply to none of the mixers {mixers}")
    for mixer in mixers:
        check_run(dataclasses.replace(model_config, mixer=mixer,
                                      mixer_options=options_for(mixer, options)),
                  train_config, Path(args.out) / mixer)
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the comparison, --overwrite replaces it: give "
                         "one of them")
    held = [m for m in mixers if not (args.resume or args.overwrite)
            and any((Path(args.out) / m / name).exists() for name in RUN_FILES)]
    if held:  # refuse before training anything, not at the first mixer that holds a run
        raise UsageError(f"--out {args.out!r} holds runs of {', '.join(held)}; continue them "
                         "with --resume or replace them with --overwrite")
    results = compare_mixers(mixers, model_config, train_config, Path(args.out),
                             progress=args.progress, resume=args.resume,
                             overwrite=args.overwrite)
    print(f"\n{train_config.max_iters} iterations per mixer, seed {train_config.seed}, "
          f"n_streams {model_config.n_streams}, n_layer {model_config.n_layer}, "
          f"n_embd {model_config.n_embd}")
    print(format_table(results))
    print(f"\nloss curves: {Path(args.out) / COMPARISON_PLOT}")
    diverged = [r for r in results if r.diverged is not None]
    for r in diverged:
        report("compare", RuntimeError(f"{r.mixer} diverged at {r.diverged}"))
    return DIVERGED_EXIT if diverged else 0
