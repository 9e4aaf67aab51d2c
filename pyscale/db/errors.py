"""Errors raised by the storage layer.

``DatabaseError`` is the one root: State maps it once (a failed write is an internal error, a
refused file at start-up is a fatal configuration problem with a clear message).
"""

from __future__ import annotations


class DatabaseError(Exception):
    """The database could not be opened, migrated, read or written."""


class UnsupportedDatabase(DatabaseError):
    """The file is a Headscale database pyscale will not open (too old, newer, or unknown shape)."""

    def __init__(self, message: str, detected_version: str) -> None:
        super().__init__(message)
        self.detected_version = detected_version


class DecodeError(DatabaseError):
    """A stored value does not have the encoding Headscale writes."""
