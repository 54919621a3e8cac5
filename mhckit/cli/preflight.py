"""Checks ``mhckit train`` and ``mhckit compare`` run before any work, so that a bad output
directory, dataset or mixer is one line naming the flag, not a traceback after a minute of
training (or after loading the data)."""

from __future__ import annotations

import os
from pathlib import Path

from mhckit.cli.errors import UsageError
from mhckit.models import GPTConfig, TextData, TrainConfig, resolve_device
from mhckit.models.data import BUNDLED_CORPUS, TRAIN_FRACTION, load_text
from mhckit.models.gpt import hyper_connection

__all__ = ["check_run", "check_out_dir", "check_dataset", "check_mixer"]


def check_run(model_config: GPTConfig, train_config: TrainConfig, out: str | Path) -> None:
    """Everything a training run needs, before it starts: the device exists, ``out`` can be
    written, the dataset is usable for ``block_size`` and the mixer can be built."""
    resolve_device(train_config.device)
    check_out_dir(out)
    check_dataset(train_config.dataset, model_config.block_size)
    check_mixer(model_config)


def check_out_dir(out: str | Path, flag: str = "--out") -> Path:
    """``out`` is a directory, or can be created: its nearest existing ancestor is a
    writable directory. Nothing is created here."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} exists and is not a directory")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {str(path)!r}: {str(ancestor)!r} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {str(path)!r}: directory {str(ancestor)!r} is not writable")
    return path


def check_dataset(dataset: str, block_size: int) -> None:
    """The dataset exists, is UTF-8 text (or a prepared folder) and both of its splits hold
    more than ``block_size`` tokens (a batch is ``block_size + 1`` consecutive tokens)."""
    if dataset == BUNDLED_CORPUS:
        return  # 1.1 M characters
    if Path(dataset).is_file():  # characters are the tokens: count them without tokenizing
        total = len(load_text(dataset))
        n_train = int(TRAIN_FRACTION * total)
        sizes = {"train": n_train, "val": total - n_train}
    else:
        data = TextData.load(dataset)
        sizes = {"train": len(data.train), "val": len(data.val)}
    for split, size in sizes.items():
        if size <= block_size:
            raise UsageError(f"dataset {dataset!r} is too small for block_size={block_size}: "
                             f"its {split} split has {size} tokens, needs > {block_size} "
                             f"(use more text or a smaller --block-size)")


def check_mixer(model_config: GPTConfig) -> None:
    """Build one hyper-connection of the model: an unknown preset, a preset that does not
    exist for ``n_streams`` (``kromhc`` with 3) or a bad ``mixer_options`` entry fails here."""
    try:
        hyper_connection(model_config)(None, 0)
    except (ValueError, TypeError) as err:
        options = f" and mixer_options {model_config.mixer_options}" * bool(
            model_config.mixer_options)
        raise UsageError(f"mixer {model_config.mixer!r} with n_streams="
                         f"{model_config.streams}{options}: {err}") from None
