"""A run's lifecycle against signals: what it published, a stop asked for (Ctrl-C, SIGTERM) that
no later output may ignore, and the SIGTERM handler that removes live temp files and exits 143."""

from __future__ import annotations

import contextvars
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

from .temps import _LIVE

# Signals, fd 1 and the temp files a SIGTERM removes belong to the process (`_STOPPED_BY`,
# `_STDOUT_FD`, `_LIVE`, `_HANDLER_PID`); what a run published is the run's own: a context
# variable, so a run in another thread or task never reports this one's files.
_HANDLER_PID: int | None = None  # the process whose SIGTERM handler this is
_STOPPED_BY: list[int] = []  # the signal that asked this process to stop, once one has
_IN_RUN: list[bool] = [False]  # between `begin_run` and `end_run`: a Ctrl-C stops the run
_PUBLISHED: contextvars.ContextVar[list[str]] = contextvars.ContextVar("salmat_published")


def _published() -> list[str]:
    """The outputs this run (this thread or task's current run) has renamed into place."""
    found = _PUBLISHED.get(None)
    if found is None:
        found = []
        _PUBLISHED.set(found)
    return found


def begin_run() -> None:
    """Start a run's record afresh, and forget a stop an earlier run in this process was asked
    for (the CLI can be called more than once in one process: tests, notebooks)."""
    _PUBLISHED.set([])
    _STOPPED_BY.clear()
    _IN_RUN[0] = True


def end_run() -> None:
    """Forget this run's stop once its exit status is decided, so that a later call in this
    process (the Python API after `cli.main`, in a notebook or a test) is not stopped by it, nor
    by a Ctrl-C of other code meanwhile (the SIGINT handler stays installed)."""
    _STOPPED_BY.clear()
    _IN_RUN[0] = False


def stopped_message(how: str) -> str:
    """The line said when a signal stops the run: what, if anything, was already written."""
    published = _published()
    if not published:
        return f"salmat: {how}; no output was written"
    return f"salmat: {how}; already written before that: {', '.join(published)}"


def _raise_if_stopped() -> None:
    """A stop asked for is final: no output is published after Ctrl-C or SIGTERM, even when a
    library swallowed the exception the signal raised (seen during pyarrow's lazy imports)."""
    if _STOPPED_BY:
        raise KeyboardInterrupt if _STOPPED_BY[0] == signal.SIGINT else SystemExit(128 + _STOPPED_BY[0])


def stop_requested() -> int | None:
    """The exit status a signal asked for (130, 143), or None."""
    return 128 + _STOPPED_BY[0] if _STOPPED_BY else None


def _on_sigint(signum: int, frame: Any) -> None:
    if _IN_RUN[0]:  # outside a CLI run, Ctrl-C is Python's own KeyboardInterrupt and nothing more
        _STOPPED_BY.append(signum)
    raise KeyboardInterrupt


def install_sigterm_cleanup() -> None:
    """On SIGTERM, remove this process's live temp files, say so, and exit 143 (128 + 15).

    Installed once, only by the main thread of a main process (a signal handler can only be
    set there, and a worker must keep its default), and only over the default disposition so
    an embedding application's own handler wins.
    """
    global _HANDLER_PID
    if _HANDLER_PID is not None or threading.current_thread() is not threading.main_thread():
        return
    if multiprocessing.parent_process() is not None or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    _HANDLER_PID = os.getpid()


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM kills at once
    _STOPPED_BY.append(signum)
    if os.getpid() != _HANDLER_PID:  # a forked child inherited the handler: die as by default
        os.kill(os.getpid(), signum)
        return
    for temp in list(_LIVE):
        try:
            os.unlink(temp)
        except OSError:
            pass
        _LIVE.discard(temp)
    print(stopped_message("terminated"), file=sys.stderr, flush=True)
    # SystemExit, not os._exit: `finally` blocks still run, so pool workers are stopped and the
    # cache is closed; the temp files are already gone should that unwinding be cut short.
    raise SystemExit(128 + signum)
