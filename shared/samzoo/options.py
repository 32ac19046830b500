"""Bundle options given on the command line.

``python -m monai.bundle run --resume false`` passes the *string* ``"false"``: the command line (fire) only turns
Python's ``False``/``True`` into booleans, and any non-empty string is true. The configs therefore read every
on/off option through :func:`flag`, which takes the JSON spellings the configs themselves use as well.
"""

from __future__ import annotations

__all__ = ["flag"]

_WORDS = {"true": True, "false": False}


def flag(value: object, name: str) -> bool:
    """The boolean meant by option ``name``'s ``value``: a bool, or "true"/"false" in any letter case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _WORDS:
        return _WORDS[value.strip().lower()]
    raise ValueError(f"option {name!r} must be true or false, got {value!r}")
