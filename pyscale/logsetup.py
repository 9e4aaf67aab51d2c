"""Logging per ``log.level`` / ``log.format``: logfmt-like text on stderr, or JSON lines.

Under systemd (JOURNAL_STREAM set) no timestamp is printed: journald adds its own.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

LEVELS = {"panic": logging.CRITICAL, "fatal": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING,
          "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG, "trace": logging.DEBUG}


def _syslog_priority(levelno: int) -> int:
    """journald reads a leading <N> (SyslogLevelPrefix): 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    return 6 if levelno >= logging.INFO else 7


class LogfmtFormatter(logging.Formatter):
    def __init__(self, timestamps: bool) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        # Under journald: no timestamp (it adds its own) and the level as a syslog <N> prefix.
        prefix = "" if self.timestamps else f"<{_syslog_priority(record.levelno)}>"
        if self.timestamps:
            parts.append("time=" + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)))
        parts += [f"level={record.levelname.lower()}", f"logger={record.name}",
                  f"msg={json.dumps(record.getMessage())}"]
        if record.exc_info:
            parts.append("exc=" + json.dumps(self.formatException(record.exc_info)))
        return prefix + " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": int(record.created), "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, fmt: str) -> None:
    if fmt == "json":
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LogfmtFormatter(timestamps="JOURNAL_STREAM" not in os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level.lower(), logging.DEBUG))
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)  # logs every statement at debug
