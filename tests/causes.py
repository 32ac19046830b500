"""Finding the error behind MONAI's wrappers: the config parser re-raises what an expression raised as the
``__cause__`` of a ``RuntimeError``, sometimes several levels deep."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


def cause_of(error: BaseException, kind: type[E]) -> E:
    """The first exception of type ``kind`` in the ``__cause__`` chain of ``error`` (``error`` itself included)."""
    current: BaseException | None = error
    while current is not None and not isinstance(current, kind):
        current = current.__cause__
    assert current is not None, f"no {kind.__name__} behind {error!r}"
    return current


__all__ = ["cause_of"]
