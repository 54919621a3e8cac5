"""A run directory belongs to one run: a lock while a process trains into it, no silent
overwrite, and an identity that resume checks.

* **Lock.** ``DIR/.lock`` is held with ``fcntl.flock`` for the life of the run and holds the
  holder's pid and host. A second process refuses with :class:`RunDirectoryError` naming the
  holder. The kernel drops the lock when its process ends, SIGKILL included, so a lock file
  whose lock is free was left by a process that died: it is taken over, with a message on
  stderr. (POSIX only, as ``fcntl`` is.)
* **Ownership.** A directory holding any of the run's files (checkpoint, metrics, ...)
  holds a run: training into it without resume is refused, naming ``--resume`` and
  ``--overwrite``; ``overwrite`` removes those files first, so no file of the old run
  survives beside the new one.
* **Identity.** :func:`run_identity` -- the model configuration, the seed and
  :func:`data_fingerprint` -- is stored in the checkpoint and in the first record of
  ``metrics.jsonl``; :func:`identity_differences` lists the fields where two differ.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mhckit.models.gpt import EXECUTION_FIELDS, GPTConfig

__all__ = ["LOCK_NAME", "RunDirectoryError", "RunLock", "claim_run_directory",
           "data_fingerprint", "run_identity", "identity_differences"]

LOCK_NAME = ".lock"
FINGERPRINT_TOKENS = 1 << 20  # tokens hashed at each end of a split


class RunDirectoryError(ValueError):
    """A run directory that cannot be used as asked: the message names it and the problem."""

    def __init__(self, directory: str | os.PathLike, problem: str) -> None:
        self.directory, self.problem = Path(directory), problem
        super().__init__(f"run directory {directory}: {problem}")


def _notify(message: str) -> None:
    print(f"mhckit: {message}", file=sys.stderr)


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``directory/.lock`` holding ``"pid host"``."""

    def __init__(self, directory: str | os.PathLike,
                 notify: Callable[[str], None] = _notify) -> None:
        self.directory, self.notify = Path(directory), notify
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                holder = os.read(fd, 256).decode(errors="replace").split()
                os.close(fd)
                who = f"process {holder[0]} on {holder[1]}" if len(holder) == 2 else (
                    "another process")
                raise RunDirectoryError(self.directory, (
                    f"in use by {who} (lock {self.path}); wait for it to finish or train "
                    f"into another --out")) from None
            try:  # the holder before us may have removed the file after we opened it
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            left = os.read(fd, 256).decode(errors="replace").split()
            if left:
                who = f"process {left[0]} on {left[1]}" if len(left) == 2 else "a process"
                self.notify(f"run directory {self.directory}: taking over the lock left by "
                            f"{who}, which is no longer running")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still held: no one locks a stale inode
            os.close(self._fd)
            self._fd = None


@contextmanager
def claim_run_directory(directory: str | os.PathLike, *, run_files: Sequence[str],
                        resuming: bool, overwrite: bool, active: bool = True,
                        agree: Callable[[Any], list[Any]] = lambda x: [x]) -> Iterator[None]:
    """Hold ``directory`` for one run: lock it, refuse to train into another run's files
    unless ``resuming`` or ``overwrite`` (which removes ``run_files`` first).

    Under data parallelism only the ``active`` rank claims; ``agree`` (the ranks'
    all-gather) hands its refusal to every rank, so all raise the same
    :class:`RunDirectoryError`.
    """
    directory = Path(directory)
    lock, problem = RunLock(directory), None
    try:
        if active:
            try:
                _claim(directory, lock, run_files, resuming, overwrite)
            except RunDirectoryError as err:
                problem = err.problem
        problems = [p for p in agree(problem) if p is not None]
        if problems:
            raise RunDirectoryError(directory, problems[0])
        yield
    finally:
        lock.release()


def _claim(directory: Path, lock: RunLock, run_files: Sequence[str], resuming: bool,
           overwrite: bool) -> None:
    if resuming and overwrite:
        raise RunDirectoryError(directory, "--resume continues the run, --overwrite replaces "
                                           "it: give one of them")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as err:
        raise RunDirectoryError(directory, f"cannot create or lock it "
                                           f"({err.strerror or err})") from err
    present = [name for name in run_files if (directory / name).exists()]
    if present and not resuming:
        if not overwrite:
            raise RunDirectoryError(directory, (
                f"holds a run ({', '.join(present)}); continue it with --resume or replace "
                f"it with --overwrite"))
        for name in present:
            (directory / name).unlink()


def data_fingerprint(splits: dict[str, Any]) -> str:
    """``"sha256:<hex>"`` of each split's length and of its first and last
    :data:`FINGERPRINT_TOKENS` tokens as int64 (every token of a split up to twice that):
    cheap for a corpus of any size, different for any other tokenization of the text.
    ``splits`` maps a split's name to its tokens (a 1-D tensor, or anything sliced as one)."""
    digest = hashlib.sha256()
    for name, tokens in splits.items():
        n = len(tokens)
        digest.update(f"{name}:{n};".encode())
        k = FINGERPRINT_TOKENS
        for piece in ([tokens[:]] if n <= 2 * k else [tokens[:k], tokens[n - k:]]):
            digest.update(piece.long().numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def run_identity(model: dict[str, Any], seed: int, data: str) -> dict[str, Any]:
    """What makes two runs the same run: the model configuration (as plain values), the seed
    and the data fingerprint. Training settings such as the learning rate or
    ``max_iters`` may change on resume and are not part of it."""
    return {"model": dict(model), "seed": seed, "data": data}


def identity_differences(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]
                         ) -> list[str]:
    """``"model.mixer: checkpoint 'mhc', directory 'residual'"`` for every field where the
    identities ``a`` and ``b`` (named by ``names``) differ. A model field one of them lacks
    (written before the field existed) counts as its default; the
    :data:`~mhckit.models.gpt.EXECUTION_FIELDS` (``recompute``) are not compared."""
    defaults = {f.name: f.default if f.default_factory is dataclasses.MISSING
                else f.default_factory() for f in dataclasses.fields(GPTConfig)}

    def flat(identity: dict[str, Any]) -> dict[str, Any]:
        model = {**defaults, **identity.get("model", {})}
        out = {f"model.{k}": v for k, v in model.items() if k not in EXECUTION_FIELDS}
        out.update({k: v for k, v in identity.items() if k != "model"})
        return out

    fa, fb = flat(a), flat(b)
    return [f"{key}: {names[0]} {fa.get(key)!r}, {names[1]} {fb.get(key)!r}"
            for key in sorted(fa.keys() | fb.keys()) if fa.get(key) != fb.get(key)]
