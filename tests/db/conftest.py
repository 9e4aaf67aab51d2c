"""Prints how the Headscale sqlite dumps fared (counts per outcome) after the storage tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.db.dbtest_helpers import DUMP_OUTCOMES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not DUMP_OUTCOMES:
        return
    counts = Counter(DUMP_OUTCOMES.values())
    terminalreporter.write_line(
        f"headscale sqlite dumps: {len(DUMP_OUTCOMES)} run: "
        + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    )
