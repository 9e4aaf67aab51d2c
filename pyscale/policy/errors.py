"""The one error type of the policy package.

Every refusal (syntax, schema, unknown reference, failing policy test) is a `PolicyError` that knows where in
which file it happened, so an operator can jump to the line. Position 0/0 means "the file as a whole".
"""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy was refused. `str()` is `file:line:col: message`."""

    def __init__(self, message: str, filename: str = "<policy>", line: int = 0, column: int = 0) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        super().__init__(f"{filename}:{line}:{column}: {message}")


class PolicyTestError(PolicyError):
    """A `tests` or `sshTests` entry of the policy did not hold; the policy is refused."""
