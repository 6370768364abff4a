"""Progress of a run: a bar with ETA on a terminal, a plain line every ~10 s elsewhere.

Logs (nohup, SLURM, CI) can't show a redrawn bar: tqdm would write carriage
returns into them, or nothing at all. There a line such as
`salmat: 120/1000 clips (12%), 480/4000 rows, 1 failed, 2.10 clips/s, ETA 6m59s`
is printed at most every 10 s (`$SALMAT_PROGRESS_INTERVAL`); it is what `tail -f` users read.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Protocol, TextIO

from tqdm import tqdm

from .errors import warn
from .values import OK

LOG_INTERVAL = 10.0  # seconds between two progress lines when stderr is not a terminal
INTERVAL_VARIABLE = "SALMAT_PROGRESS_INTERVAL"  # a log that wants another pace (a SLURM job: 60)


def log_interval() -> float:
    """`$SALMAT_PROGRESS_INTERVAL` seconds (≥ 0) when set and valid, else 10."""
    text = os.environ.get(INTERVAL_VARIABLE)
    if text is None:
        return LOG_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        warn(f"{INTERVAL_VARIABLE}={text!r} is not a number of seconds ≥ 0; progress lines every {LOG_INTERVAL:g} s")
        return LOG_INTERVAL
    return value


class Outcome(Protocol):
    """What progress reads from a finished clip (a `ClipResult`, or anything with a `status`)."""

    @property
    def status(self) -> str: ...


class ClipProgress:
    """Counts clips (and their rows) done and failed; `quiet` shows nothing."""

    def __init__(self, clips: int, rows: int, quiet: bool = False, stream: TextIO | None = None,
                 interval: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.clips, self.rows = clips, rows
        self.done = self.rows_done = self.failed = 0
        self.interval = log_interval() if interval is None else interval
        self.started = self.last_line = time.monotonic()
        active = not quiet and clips > 0
        self.terminal = active and _is_terminal(self.stream)
        self.log = active and not self.terminal
        self._bar = tqdm(total=clips, unit="clip", desc=f"salmat ({rows} rows)", disable=not self.terminal,
                         file=self.stream, dynamic_ncols=True)

    def update(self, result: Outcome, rows: int = 0) -> None:
        """One clip finished; `rows` is how many table rows take its values."""
        self.done += 1
        self.rows_done += rows
        if result.status != OK:
            self.failed += 1
            self._bar.set_postfix(failed=self.failed, refresh=False)
        self._bar.update(1)
        now = time.monotonic()
        if self.log and now - self.last_line >= self.interval and self.done < self.clips:
            self.last_line = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.clips - self.done) / rate if rate > 0 else float("inf")
        failed = f", {self.failed} failed" if self.failed else ""
        rows = f", {self.rows_done}/{self.rows} rows" if self.rows_done else ""
        return (f"salmat: {self.done}/{self.clips} clips ({100 * self.done // max(self.clips, 1)}%){rows}{failed}, "
                f"{rate:.2f} clips/s, ETA {_duration(eta)}")

    def __enter__(self) -> ClipProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    s = int(round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, s = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{s:02d}s"
