"""Shared fixtures for the derp tests: the tailcat byte vector with its fixed server keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTOR_PATH = Path(__file__).parent / "vectors" / "derp-tailcat.json"


@pytest.fixture(scope="session")
def derp_vector() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTOR_PATH.read_text())
    return data
