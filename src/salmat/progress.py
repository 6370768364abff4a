"""A progress bar with ETA on a terminal, silent otherwise (tqdm does the drawing)."""

from __future__ import annotations

import sys
from typing import Protocol

from tqdm import tqdm


class Outcome(Protocol):
    """What the bar reads from a finished clip (a `ClipResult`, or anything with a `status`)."""

    @property
    def status(self) -> str: ...


class ClipProgress:
    """Counts clips done and failed; shows nothing when stderr isn't a TTY or `quiet` is set."""

    def __init__(self, clips: int, rows: int, quiet: bool = False) -> None:
        enabled = not quiet and sys.stderr.isatty() and clips > 0
        self.failed = 0
        self._bar = tqdm(total=clips, unit="clip", desc=f"salmat ({rows} rows)", disable=not enabled,
                         file=sys.stderr, dynamic_ncols=True)

    def update(self, result: Outcome) -> None:
        if result.status != "ok":
            self.failed += 1
            self._bar.set_postfix(failed=self.failed, refresh=False)
        self._bar.update(1)

    def __enter__(self) -> ClipProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
