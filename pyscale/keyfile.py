"""Private key files in Headscale's format: one line ``privkey:<64 hex>``, mode 0600, dir 0700.

A missing file is created on first start; an existing one is reused as is, so a Headscale
install's noise key keeps its clients logged in.
"""

from __future__ import annotations

import os

from pyscale.keys import KeyError_, PrivateKey


class KeyFileError(Exception):
    pass


def load_or_create(path: str) -> PrivateKey:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read private key: {exc}") from exc
    try:
        return PrivateKey.parse(text)
    except KeyError_ as exc:
        raise KeyFileError(f"{path}: not a private key file (want 'privkey:<64 hex>'): {exc}") from exc


def _create(path: str) -> PrivateKey:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    key = PrivateKey.generate()
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(str(key))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written key
    return key
