"""What a checkpoint's state is made of, checked: a digest of every tensor's bytes and one of
the plain values, and the tensors that are not finite.

A state is a tree of dicts, lists and tuples whose leaves are tensors or plain values;
:func:`leaves` names each leaf by its path (``"model/transformer.wte.weight"``,
``"optimizer/adamw/state/3/exp_avg"``). :func:`state_digests` maps each tensor's name to the
sha256 of its dtype, shape and bytes (row-major), and ``"values"`` to the sha256 of every
plain leaf's name and ``repr``; a changed byte anywhere in a tensor's data or a changed value
gives a different digest (sha256 runs at about 1 GB/s: a second for GPT-2 small and its Adam
moments).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["VALUES", "leaves", "tensor_digest", "state_digests", "digest_mismatch",
           "first_nonfinite", "to_cpu"]

VALUES = "values"  # the digest entry of the plain (non-tensor) values


def leaves(state: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(name, leaf)`` for every leaf of ``state``, depth first in container order."""
    if isinstance(state, dict):
        for key, value in state.items():
            yield from leaves(value, f"{path}/{key}" if path else str(key))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from leaves(value, f"{path}/{i}" if path else str(i))
    else:
        yield path, state


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 of ``tensor``'s dtype, shape and bytes in row-major order (on the CPU)."""
    data = tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy()
    digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}:".encode())
    digest.update(data)
    return digest.hexdigest()


def state_digests(state: Any) -> dict[str, str]:
    """The digest of every tensor of ``state`` by name, and of its plain values under
    :data:`VALUES`."""
    digests, values = {}, hashlib.sha256()
    for name, leaf in leaves(state):
        if isinstance(leaf, torch.Tensor):
            digests[name] = tensor_digest(leaf)
        else:
            values.update(f"{name}={leaf!r}\n".encode())
    digests[VALUES] = values.hexdigest()
    return digests


def digest_mismatch(state: Any, digests: dict[str, str]) -> str | None:
    """``None`` when ``state`` matches ``digests``, else what differs: the first tensor whose
    bytes changed, a tensor missing or added, or the plain values."""
    found = state_digests(state)
    for name in sorted(found.keys() | digests.keys()):
        if name not in digests:
            return f"tensor {name} has no stored digest"
        if name not in found:
            return f"tensor {name} is missing"
    for name, digest in found.items():
        if digest != digests[name]:
            what = ("the plain values (step, configuration, RNG state...) do" if name == VALUES
                    else f"tensor {name} does")
            return f"{what} not match the stored sha256 digest"
    return None


def first_nonfinite(state: Any) -> str | None:
    """The name of the first floating tensor of ``state`` holding NaN or inf, else ``None``."""
    for name, leaf in leaves(state):
        if (isinstance(leaf, torch.Tensor) and (leaf.is_floating_point() or leaf.is_complex())
                and not bool(torch.isfinite(leaf).all())):
            return name
    return None


def to_cpu(state: Any) -> Any:
    """``state`` with every tensor on the CPU (those already there are not copied)."""
    if isinstance(state, dict):
        return {key: to_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(to_cpu(value) for value in state)
    return state.detach().cpu() if isinstance(state, torch.Tensor) else state
