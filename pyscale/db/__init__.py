"""SQLite storage in Headscale v0.27.1's exact schema.

State (the only writer) uses ``Database`` (database.py): ``open`` creates a new file with
schema.sql's statements, opens a v0.27.1 file in place, migrates an older Headscale file
(migrate.py, after a backup copy) or refuses it with ``UnsupportedDatabase``; then
``load_*`` / ``insert_*`` / ``update_*`` / ``delete_*`` per record, ``transaction()`` to group
writes, ``backup``, ``ping``, ``close``. ``inspect_file`` is the write-free dry run for configtest.
"""

from pyscale.db.database import Database
from pyscale.db.errors import DatabaseError, DecodeError, UnsupportedDatabase
from pyscale.db.prepare import Inspection, PrepareResult, inspect_file

__all__ = [
    "Database", "DatabaseError", "DecodeError", "Inspection", "PrepareResult", "UnsupportedDatabase",
    "inspect_file",
]
