"""The one exception type for bad input data, so every message names the file and the problem.

It sits at the package root, below every layer (data preparation, transforms, networks, engine, metrics, bundle
tools), so each can raise it without importing another.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the offending file and what is wrong."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")
