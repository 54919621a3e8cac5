"""Training configuration: the :class:`TrainConfig` dataclass, named configurations, and
parsing of TOML files / flag overrides into ``(GPTConfig, TrainConfig)`` -- by field name
and type, never by executing the file (unlike nanoGPT's ``configurator.py``).

A configuration is a dict of sections, as a TOML file holds them::

    [model]              # GPTConfig fields
    mixer = "mhc"
    n_streams = 4
    [model.mixer_options]
    # extra HyperConnection keyword arguments
    [train]              # TrainConfig fields
    max_iters = 2000
    [compare]            # used by `mhckit compare` only
    mixers = ["residual", "mhc"]
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mhckit.functional.validation import check_bool, check_choice, check_float, check_size
from mhckit.models.distributed import PARALLEL_MODES, check_device_name
from mhckit.models.gpt import GPTConfig
from mhckit.models.nonfinite import POLICIES
from mhckit.nn import PRESETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["TrainConfig", "NAMED_CONFIGS", "SECTIONS", "load_config", "build_configs",
           "config_to_dict", "dataclass_from_dict", "check_compare_section", "check_mixer_list",
           "COMPARE_FIELDS"]


@dataclass
class TrainConfig:
    """Optimisation, evaluation and logging. Defaults are nanoGPT's
    ``config/train_shakespeare_char.py`` with its CPU settings (README: ``max_iters=2000,
    lr_decay_iters=2000, eval_iters=20, batch_size=12``)."""

    dataset: str = "tinyshakespeare"  # the bundled corpus, a UTF-8 text file or a prepared folder
    seed: int = 1337
    batch_size: int = 12
    gradient_accumulation_steps: int = 1
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    decay_lr: bool = True
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 1
    checkpoint_interval: int = 250
    sample_tokens: int = 200  # characters generated at each evaluation; 0 disables
    device: str = "auto"  # "auto" = cuda when present, else cpu
    dtype: str = "auto"  # "auto" = bfloat16 autocast on a GPU that has it, float32 on CPU
    compile: bool = False  # torch.compile the model
    parallel: str = "ddp"  # under torchrun: "ddp" (replicas) or "fsdp" (shards); "none": 1 process
    tensorboard: bool = False  # also write the metrics as TensorBoard scalars to OUT/tensorboard
    wandb: str = ""  # also log to this Weights & Biases project (offline unless WANDB_MODE)
    on_nonfinite: str = "stop"  # a NaN/inf loss or gradient norm: "stop" the run, or "skip" it
    max_nonfinite_steps: int = 5  # with "skip": this many non-finite steps in a row stop the run

    def __post_init__(self) -> None:
        """Every field checked by type, then by range (``ValueError``/``TypeError`` naming
        ``TrainConfig.<field>``): a NaN or negative learning rate, ``batch_size=2.5``, an
        unknown device or ``beta2=2`` fail here, not at iteration 1."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            name, value, kind = f"TrainConfig.{f.name}", getattr(self, f.name), hints[f.name]
            if kind is bool:
                check_bool(value, name)
            elif kind is int:
                check_size(value, name, minimum=_INT_MINIMUM.get(f.name, 0))
            elif kind is float:
                check_float(value, name, **_FLOAT_RANGE.get(f.name, {"low": 0.0}))
            elif kind is str and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
        if self.decay_lr and self.min_lr > self.learning_rate:
            raise ValueError(f"TrainConfig.min_lr must be <= learning_rate "
                             f"({self.learning_rate:g}), got {self.min_lr:g}")
        check_choice(self.dtype, "TrainConfig.dtype", ("auto", "float32", "bfloat16"))
        check_choice(self.on_nonfinite, "TrainConfig.on_nonfinite", POLICIES)
        check_choice(self.parallel, "TrainConfig.parallel", PARALLEL_MODES)
        check_device_name(self.device, "TrainConfig.device")
        if not self.dataset:
            raise ValueError("TrainConfig.dataset must name a corpus or a file, got ''")


#: Smallest value of each int field of TrainConfig (0 for the others).
_INT_MINIMUM = {name: 1 for name in ("batch_size", "gradient_accumulation_steps",
                                     "eval_interval", "eval_iters", "log_interval",
                                     "checkpoint_interval", "max_nonfinite_steps")}
#: Range of each float field of TrainConfig (finite and >= 0 for the others).
_FLOAT_RANGE: dict[str, dict[str, Any]] = {
    "beta1": {"low": 0.0, "high": 1.0, "high_open": True},
    "beta2": {"low": 0.0, "high": 1.0, "high_open": True},
}


SECTIONS = {"model": GPTConfig, "train": TrainConfig}
#: Fields of the ``[compare]`` table (read by ``mhckit compare`` only).
COMPARE_FIELDS = ("mixers",)

# Named configurations for `--config NAME`; a TOML file of the same layout works the same.
NAMED_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    # nanoGPT's shakespeare_char on CPU (README): val loss about 1.88 after 2000 iterations.
    "shakespeare-char-cpu": {"model": {}, "train": {}},
    # The README demo: a tiny model and budget, a few minutes for all mixers on 2 CPU cores.
    "demo": {
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 32, "n_streams": 4},
        "train": {"batch_size": 8, "max_iters": 200, "lr_decay_iters": 200, "warmup_iters": 20,
                  "learning_rate": 2e-3, "min_lr": 2e-4, "eval_interval": 50, "eval_iters": 10,
                  "checkpoint_interval": 200, "sample_tokens": 100},
        "compare": {"mixers": ["residual", "hc", "mhc", "mhc-lite", "kromhc", "go-mhc",
                               "jpmhc", "shc"]},
    },
    # nanoGPT's config/train_gpt2.py (GPT-2 124M on OpenWebText): 491,520 tokens per iteration
    # (12 x 1024 x 40 accumulation steps on one GPU; with N ranks, pass
    # --gradient-accumulation-steps 40/N for the same global batch), 600k iterations. Needs a
    # prepared dataset (docs/data.md) and a GPU.
    "gpt2-small": {
        "model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024,
                  "dropout": 0.0, "bias": False},
        "train": {"batch_size": 12, "gradient_accumulation_steps": 40, "max_iters": 600_000,
                  "lr_decay_iters": 600_000, "learning_rate": 6e-4, "min_lr": 6e-5,
                  "warmup_iters": 2000, "beta2": 0.95, "weight_decay": 0.1,
                  "eval_interval": 2000, "eval_iters": 200, "log_interval": 10,
                  "checkpoint_interval": 2000, "sample_tokens": 0},
    },
}


def load_config(source: str | Path) -> dict[str, dict[str, Any]]:
    """The sections of a named configuration (:data:`NAMED_CONFIGS`) or a TOML file."""
    if str(source) in NAMED_CONFIGS:
        return {k: dict(v) for k, v in NAMED_CONFIGS[str(source)].items()}
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"config must be one of {sorted(NAMED_CONFIGS)} or a TOML file, "
                         f"got {str(source)!r}")
    try:
        with path.open("rb") as f:
            sections = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config {path}: not valid TOML: {err}") from None
    unknown = set(sections) - {*SECTIONS, "compare"}
    if unknown:
        raise ValueError(f"config {path}: unknown sections {sorted(unknown)}, expected "
                         f"{sorted({*SECTIONS, 'compare'})}")
    if "vocab_size" in sections.get("model", {}):
        raise ValueError(f"config {path}: [model] vocab_size is set from the dataset; remove it")
    check_compare_section(sections.get("compare", {}), where=f"config {path}")
    return sections


def check_compare_section(section: object, *, where: str) -> dict[str, Any]:
    """The ``[compare]`` table: only ``mixers``, a non-empty list of distinct names (a
    misspelt key would otherwise be ignored and every preset compared)."""
    if not isinstance(section, dict):
        raise TypeError(f"{where}: [compare] must be a table, got {type(section).__name__}")
    unknown = set(section) - set(COMPARE_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown [compare] fields {sorted(unknown)}; known: "
                         f"{list(COMPARE_FIELDS)}")
    if "mixers" in section:
        mixers = section["mixers"]
        if not isinstance(mixers, list) or not all(isinstance(m, str) for m in mixers):
            raise TypeError(f"{where}: [compare] mixers must be a list of preset names, got "
                            f"{mixers!r}")
        check_mixer_list(mixers, "[compare] mixers")
    return section


def check_mixer_list(mixers: list[str], name: str) -> list[str]:
    """A list of mixers to compare: non-empty, known presets, no duplicates."""
    if not mixers:
        raise ValueError(f"{name} must name at least one preset, got none")
    unknown = [m for m in mixers if m not in PRESETS]
    if unknown:
        raise ValueError(f"{name}: unknown presets {unknown}; valid: {sorted(PRESETS)}")
    repeated = sorted({m for m in mixers if mixers.count(m) > 1})
    if repeated:
        raise ValueError(f"{name} lists {repeated} more than once (each trains into OUT/<mixer>)")
    return mixers


def dataclass_from_dict(cls: type, values: dict[str, Any], *, where: str) -> Any:
    """``cls(**values)`` after checking every key is a field and every value has its type
    (an int is accepted for a float field); ``where`` names the source in errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - fields
    if unknown:
        raise ValueError(f"{where}: unknown {cls.__name__} fields {sorted(unknown)}; "
                         f"known: {sorted(fields)}")
    checked = {}
    for name, value in values.items():
        expected = hints[name]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        origin = typing.get_origin(expected) or expected
        if origin is types.UnionType:  # e.g. GPTConfig.recompute: bool | int
            origin = typing.get_args(expected)
        ok = (origin is Any or isinstance(value, origin)) and not (
            isinstance(value, bool) and origin in (int, float))
        if not ok:
            raise TypeError(f"{where}: {cls.__name__}.{name} must be "
                            f"{getattr(origin, '__name__', origin)}, got {value!r}")
        checked[name] = value
    return cls(**checked)


def build_configs(*layers: dict[str, dict[str, Any]], where: str = "config"
                  ) -> tuple[GPTConfig, TrainConfig]:
    """Merge section dicts left to right (later wins, field by field) into the dataclasses."""
    merged: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for layer in layers:
        for name in SECTIONS:
            merged[name].update(layer.get(name, {}))
    return (dataclass_from_dict(GPTConfig, merged["model"], where=where),
            dataclass_from_dict(TrainConfig, merged["train"], where=where))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain values (what a checkpoint stores). A model whose mixer is
    a manifold instance rather than a preset name cannot be stored by name."""
    mixer = getattr(config, "mixer", "")
    if not isinstance(mixer, str):
        raise TypeError(f"{type(config).__name__}.mixer must be a preset name to be stored in "
                        f"a checkpoint or config file (train() checkpoints), got a "
                        f"{type(mixer).__name__} instance: build GPT(GPTConfig(mixer=...)) and "
                        "train it in your own loop, or use a preset (mhckit.nn.presets())")
    return dataclasses.asdict(config)
