import logging

import pytest

from pyscale.logsetup import LogfmtFormatter


def _record(level: int) -> logging.LogRecord:
    return logging.LogRecord("pyscale", level, __file__, 1, 'say "hi"', None, None)


@pytest.mark.parametrize(("level", "prefix"), [(logging.ERROR, "<3>"), (logging.WARNING, "<4>"),
                                               (logging.INFO, "<6>"), (logging.DEBUG, "<7>")])
def test_journald_lines_carry_the_level_and_no_timestamp(level: int, prefix: str) -> None:
    line = LogfmtFormatter(timestamps=False).format(_record(level))
    assert line.startswith(prefix + "level=") and "time=" not in line and 'msg="say \\"hi\\""' in line


def test_terminal_lines_have_a_timestamp() -> None:
    assert LogfmtFormatter(timestamps=True).format(_record(logging.INFO)).startswith("time=")
