"""Shared fixtures for the derp tests: the tailcat byte vector with its fixed server keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

# relay_helpers sits next to the tests; make it importable under any pytest import mode
sys.path.insert(0, str(Path(__file__).parent))

VECTOR_PATH = Path(__file__).parent / "vectors" / "derp-tailcat.json"


@pytest.fixture(scope="session")
def derp_vector() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTOR_PATH.read_text())
    return data
