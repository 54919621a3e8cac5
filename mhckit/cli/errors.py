"""The one error path of the ``mhckit`` command (DESIGN.md, "Trust"): every user error is one
line on stderr, ``mhckit <command>: error: <what>``, and exit code 2, never a traceback.

User errors are :class:`UsageError` (a bad invocation the CLI itself detects) and what the
library raises for bad input: ``ValueError`` (``CheckpointError`` included), ``TypeError``
and ``OSError`` (a directory that cannot be written, a full disk). A reader that goes away
(``mhckit spectrum | head``) ends the command quietly. ``MHCKIT_TRACEBACK=1`` in the
environment re-raises instead, for debugging.
"""

from __future__ import annotations

import argparse
import os
import sys

from mhckit.models.distributed import MainRankError

__all__ = ["UsageError", "USAGE_EXIT", "DIVERGED_EXIT", "USER_ERRORS", "ArgumentParser",
           "one_line", "report",
           "silence_stdout"]

#: Exit code of a user error (argparse's, and the POSIX convention for bad usage).
USAGE_EXIT = 2


class UsageError(ValueError):
    """A bad invocation of ``mhckit``; its message is the line the user sees."""


#: Exit code of a run that went non-finite (``mhckit train`` and ``compare``).
DIVERGED_EXIT = 3

#: The exceptions reported as a user error (one line, exit code 2); a :class:`MainRankError`
#: is another rank's report of one.
USER_ERRORS = (ValueError, TypeError, OSError, MainRankError)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; an ``OSError`` as ``<strerror>: <file>`` (e.g.
    ``No space left on device: 'runs/x/ckpt.pt'``)."""
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror + (f": {err.filename!r}" if err.filename else "")
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def report(command: str, err: BaseException) -> int:
    """Print ``mhckit <command>: error: <one line>`` to stderr; return :data:`USAGE_EXIT`."""
    prefix = f"mhckit {command}: "
    message = one_line(err)
    while message.startswith(prefix):  # a message that already names the command
        message = message[len(prefix):].removeprefix("error: ")
    print(f"{prefix}error: {message}", file=sys.stderr)
    return USAGE_EXIT


def silence_stdout() -> None:
    """Point stdout at ``/dev/null`` after its reader went away, so that the interpreter's
    final flush raises no second ``BrokenPipeError`` (Python docs, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line: ``mhckit train: error: argument --max-iters:
    invalid int value: 'x' (see --help)``, exit code 2 (argparse prints the usage too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE_EXIT, f"{self.prog}: error: {' '.join(message.split())} "
                              f"(see {self.prog} --help)\n")
