"""The one exception type for bad input, and how a failed command reports it: its cause on the last line.

It sits at the package root, below every layer (data preparation, transforms, networks, engine, metrics, bundle
tools), so each can raise it without importing another.

MONAI's config parser re-raises what an expression raised as the ``__cause__`` of a generic "Failed to evaluate"
``RuntimeError``, so a :class:`DataError` naming the file would be printed in the middle of a long traceback.
Importing samzoo (every bundle config does, and so does the ``samzoo`` command) installs :func:`excepthook`, which
ends every failed command with its cause: a :class:`DataError` as one line, without the traceback (written to
:func:`error_log`, or printed with ``SAMZOO_DEBUG=1``), any other error with its traceback followed by the innermost
error behind MONAI's wrappers.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path
from types import TracebackType
from typing import TextIO

DEBUG_VARIABLE = "SAMZOO_DEBUG"
"""Environment variable: set to 1 to print the full traceback of a :class:`DataError` as well."""
LOG_VARIABLE = "SAMZOO_ERROR_LOG"
"""Environment variable: the file the full traceback of a failed command is written to."""


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the offending file and what is wrong."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


def error_log() -> Path:
    """Where the full traceback of the last failed command goes: ``$SAMZOO_ERROR_LOG`` or a file in the temp dir."""
    default = Path(tempfile.gettempdir()) / f"samzoo_last_error_{os.getuid() if hasattr(os, 'getuid') else 0}.log"
    return Path(os.environ.get(LOG_VARIABLE, default))


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions behind it (``raise ... from``, or raised while handling), outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return found


def cause_line(error: BaseException) -> str:
    """The one line that names why a command failed: the first :class:`DataError` behind ``error``, else the
    innermost exception (the one MONAI's "Failed to evaluate/instantiate" wrappers hide); line breaks become spaces."""
    errors = chain(error)
    data_error = next((e for e in errors if isinstance(e, DataError)), None)
    if data_error is not None:
        return "error: " + " ".join(str(data_error).split())
    root = errors[-1]
    message = " ".join(str(root).split())
    return f"error: {type(root).__name__}: {message}" if message else f"error: {type(root).__name__}"


def report(error: BaseException, stream: TextIO) -> None:
    """Write the report of a command that failed with ``error`` to ``stream``, its cause on the last line.

    The full traceback goes to :func:`error_log`; it is printed as well for errors other than :class:`DataError`
    (they are bugs, or a library's message) and, with ``SAMZOO_DEBUG=1``, for every error.
    """
    full = "".join(traceback.format_exception(error))
    log = error_log()
    try:
        log.write_text(full)
        where = f"full traceback in {log}"
    except OSError:
        where = f"set {DEBUG_VARIABLE}=1 to print the full traceback"
    is_data_error = any(isinstance(e, DataError) for e in chain(error))
    if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0") or not is_data_error:
        stream.write(full)
    stream.write(f"samzoo: {where}\n{cause_line(error)}\n")
    stream.flush()


def excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    """``sys.excepthook`` ending an uncaught error's output with its cause (:func:`report`); Ctrl-C stays as is."""
    if not isinstance(error, Exception):
        sys.__excepthook__(kind, error, tb)
        return
    sys.stdout.flush()
    report(error.with_traceback(tb), sys.stderr)


def install() -> None:
    """Make :func:`excepthook` the handler of uncaught errors, unless another program has installed its own."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = excepthook


__all__ = ["DataError", "cause_line", "chain", "error_log", "excepthook", "install", "report"]
