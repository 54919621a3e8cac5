"""A nanoGPT-shaped GPT with any residual-stream mixer, trained on bundled Tiny Shakespeare.

* :class:`GPTConfig`, :class:`GPT` -- the model (``models/gpt.py``, one readable file);
* :class:`TrainConfig`, :func:`train` -- nanoGPT's training loop with exact resume and DDP;
* :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_model`,
  :class:`CheckpointError` -- checkpoints that lose nothing, verified on load;
* :class:`RunDirectoryError`, :class:`NonFiniteError` -- a run directory belongs to one run,
  a diverging run stops before it writes (docs/reliability.md);
* :func:`compare_mixers` -- the same budget for several mixers, one table and one plot;
* :class:`TextData`, :class:`BatchSampler` -- the data; :func:`prepare` -- a corpus into
  memory-mapped token files (:class:`TokenShard`); :class:`ByteTokenizer`,
  :class:`CharTokenizer`, :class:`BPETokenizer` -- the tokenizers;
* :func:`evaluate_checkpoint` -- the loss (and bits per byte) of a checkpoint.
"""

from mhckit.models.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from mhckit.models.comparison import MixerResult, compare_mixers, format_table
from mhckit.models.config import (
    NAMED_CONFIGS,
    SECTIONS,
    TrainConfig,
    build_configs,
    config_to_dict,
    load_config,
)
from mhckit.models.data import BatchSampler, CharTokenizer, TextData, load_text
from mhckit.models.distributed import Distributed, resolve_device
from mhckit.models.evaluation import Evaluation, evaluate_checkpoint
from mhckit.models.gpt import GPT, GPTConfig
from mhckit.models.nonfinite import NonFiniteError
from mhckit.models.optimizers import JointOptimizer, build_optimizer, learning_rate_at
from mhckit.models.plotting import plot_loss_curves
from mhckit.models.prepare import prepare
from mhckit.models.run_directory import RunDirectoryError
from mhckit.models.shards import TokenShard, load_token_dataset
from mhckit.models.tokenization import BPETokenizer, ByteTokenizer, tokenizer_from_dict
from mhckit.models.training import TrainResult, read_metrics, train

__all__ = [
    "GPTConfig", "GPT", "TrainConfig", "NAMED_CONFIGS", "SECTIONS", "load_config",
    "build_configs", "config_to_dict", "train", "TrainResult", "read_metrics",
    "CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "checkpoint_path",
    "compare_mixers", "format_table", "MixerResult", "TextData", "CharTokenizer",
    "BatchSampler", "load_text", "Distributed", "resolve_device", "JointOptimizer",
    "build_optimizer", "learning_rate_at", "plot_loss_curves", "prepare", "TokenShard",
    "load_token_dataset", "ByteTokenizer", "BPETokenizer", "tokenizer_from_dict", "Evaluation",
    "evaluate_checkpoint", "RunDirectoryError", "NonFiniteError",
]
