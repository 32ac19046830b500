"""Where :class:`samzoo.errors.DataError` used to live; importing it from here still works."""

from ..errors import DataError

__all__ = ["DataError"]
