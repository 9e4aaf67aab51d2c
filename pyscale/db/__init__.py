"""SQLite storage in Headscale v0.27.1's exact schema (see database.py for the API State uses)."""

from pyscale.db.database import Database
from pyscale.db.errors import DatabaseError, DecodeError, UnsupportedDatabase

__all__ = ["Database", "DatabaseError", "DecodeError", "UnsupportedDatabase"]
