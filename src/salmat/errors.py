"""Exceptions with a message a user can act on.

`SalmatError` problems stop a run before any work starts (exit 2).
`ClipError` problems belong to one clip: they become a row status, never a crash.
"""

from __future__ import annotations


class SalmatError(Exception):
    """A usage or configuration problem: the message names the problem and the fix."""


class ClipError(Exception):
    """A failure confined to one clip; `status` is the contract's row status."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def warn(message: str) -> None:
    """One line on stderr: something the user should know that doesn't stop the run."""
    import sys

    print(f"salmat: warning: {message}", file=sys.stderr, flush=True)
