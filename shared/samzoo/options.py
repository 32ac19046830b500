"""Bundle options given on the command line.

``python -m monai.bundle run --resume false`` passes the *string* ``"false"``: the command line (fire) only turns
Python's ``False``/``True`` into booleans, and any non-empty string is true. The configs therefore read every
on/off option through :func:`flag`, which takes the JSON spellings the configs themselves use as well, and every
option that may be unset through :func:`optional`, which reads ``null`` (``--max_boxes null``) as None.
:func:`val_interval` refuses a validation interval longer than the training.
"""

from __future__ import annotations

from .errors import DataError

__all__ = ["flag", "optional", "val_interval"]

_WORDS = {"true": True, "false": False}


def flag(value: object, name: str) -> bool:
    """The boolean meant by option ``name``'s ``value``: a bool, or "true"/"false" in any letter case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _WORDS:
        return _WORDS[value.strip().lower()]
    raise DataError(None, f"option {name!r} must be true or false, got {value!r}")


def optional(value: object) -> object:
    """``value``, or None when it is None or the string "null"/"none" (any letter case)."""
    if isinstance(value, str) and value.strip().lower() in ("null", "none"):
        return None
    return value


def val_interval(interval: int, max_epochs: int) -> int:
    """``interval``, refused when it exceeds ``max_epochs``: no validation would run, so no best model
    (``models/model.pt``) would be saved and evaluation would fail only after the whole training."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise DataError(None, f"val_interval must be a whole number of epochs >= 1, got {interval!r}")
    if interval > max_epochs:
        raise DataError(
            None,
            f"val_interval={interval} exceeds max_epochs={max_epochs}: no validation would run and no "
            "models/model.pt would be saved; lower --val_interval or raise --max_epochs",
        )
    return interval
