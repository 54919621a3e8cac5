"""Flags shared by ``mhckit train`` and ``mhckit compare``: ``--config NAME|FILE.toml`` and one
flag per field of :class:`~mhckit.models.GPTConfig` and :class:`~mhckit.models.TrainConfig`
(``--n-layer 4``; nanoGPT's spelling ``--n_layer 4`` works too). A flag that is not given
leaves the field to the config file, then to the dataclass default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any

from mhckit.cli.errors import report
from mhckit.models import NAMED_CONFIGS, SECTIONS, load_config
from mhckit.nn import PRESETS

__all__ = ["add_config_arguments", "flag_overrides", "config_layers", "describe", "fail"]

#: Fields set from the dataset, which no flag may override (a flag would be ignored).
FROM_DATA = ("vocab_size",)

HELP = {
    "mixer": "a preset: " + ", ".join(PRESETS),
    "n_streams": "residual streams n (residual uses 1)",
    "mixer_options": "more HyperConnection options as JSON, e.g. '{\"riemannian\": true}'",
    "dataset": "tinyshakespeare (bundled), a UTF-8 text file (characters) or a folder made by "
               "mhckit prepare",
    "tensorboard": "also write TensorBoard scalars to OUT/tensorboard",
    "wandb": "also log to this W&B project (offline unless WANDB_MODE is set)",
    "device": "auto: cuda when present, else cpu",
    "dtype": "auto (bfloat16 autocast on GPU), float32 or bfloat16",
    "parallel": "under torchrun: ddp (replicated model) or fsdp (sharded, FSDP2); none: one "
                "process only (docs/gpt.md)",
    "grad_clip": "gradient-norm clipping, 0 disables",
    "recompute": "rebuild the streams in the backward pass instead of keeping them, in groups "
                 "of N sublayers (default N: mHC's optimum sqrt(nL/(n+2)))",
    "recompute_maps": "with --recompute: rerun the coefficient maps too (least memory, "
                      "slower)",
    "sample_tokens": "tokens generated at each evaluation, 0 disables",
    "init": "default (a plain residual at step 0) or paper (the preset's reference code's "
            "initial H_pre, H_post, H_res; docs/fidelity.md)",
}


def fail(command: str, err: Exception) -> int:
    """Report a user error (bad configuration, unusable checkpoint) without a traceback:
    :func:`mhckit.cli.errors.report`, the one error path (a command may also just raise)."""
    return report(command, err)


def describe(doc: str) -> str:
    """A module docstring as plain text for ``--help``."""
    return doc.replace("``", "")


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="NAME|FILE",
                        help=f"a named configuration ({', '.join(sorted(NAMED_CONFIGS))}) or a "
                             "TOML file with [model] and [train] tables")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} ({cls.__name__} fields)")
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in FROM_DATA:
                continue
            kind = hints[field.name]
            default = field.default if field.default is not dataclasses.MISSING else "{}"
            flags = [f"--{field.name.replace('_', '-')}"]
            if "_" in field.name:
                flags.append(f"--{field.name}")
            note = f"{HELP[field.name]}; " if field.name in HELP else ""
            options: dict[str, Any] = {"dest": f"{section}.{field.name}",
                                       "default": argparse.SUPPRESS,
                                       "help": f"{note}default: {default}"}
            if kind is bool:
                options["action"] = argparse.BooleanOptionalAction
            elif kind == bool | int:  # --recompute [L_R]
                options.update(nargs="?", const=True, type=int, metavar="N")
            elif typing.get_origin(kind) is dict:
                options.update(type=_json_dict, metavar="JSON")
            else:
                options["type"] = kind if kind in (int, float) else str
                options["metavar"] = options["type"].__name__.upper()
            group.add_argument(*flags, **options)


def flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The sections given on the command line, ``{"model": {...}, "train": {...}}``."""
    out: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in vars(args).items():
        section, _, name = key.partition(".")
        if section in out and name:
            out[section][name] = value
    return out


def config_layers(args: argparse.Namespace) -> list[dict[str, dict[str, Any]]]:
    """The ``--config`` sections (if given) then the flags, for
    :func:`mhckit.models.build_configs`."""
    layers = [load_config(args.config)] if args.config else []
    return [*layers, flag_overrides(args)]
