"""Fixtures for the config tests."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest


@pytest.fixture
def write(tmp_path: pathlib.Path) -> Callable[..., str]:
    """Write a config file into tmp_path and return its path as a string."""

    def _write(text: str, name: str = "config.yaml") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    return _write
