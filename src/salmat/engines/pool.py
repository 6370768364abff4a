"""The process-pool engine: worker processes, clip timeouts, and retries of lost workers.

Workers fork from multiprocessing's fork server, which imports what they need once per run
(`worker_context`); each starts from a fresh interpreter's state, as a spawned one would.
Each worker loads the model once (`job.start`) with `cores // workers` inference
threads and is fed one clip at a time over its own pipe (no shared locks: a
worker killed mid-clip can't leave a queue lock held). A clip whose worker dies
is retried once on a fresh worker, then becomes `worker-lost`; a clip that runs
past `--clip-timeout` has its worker stopped and replaced, and becomes
`decode-timeout` or `model-timeout` by the phase it was in.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import forkserver, reduction, resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from ..compute import ClipJob, ClipRunner
from ..errors import warn
from ..option_spec import cli_spelling, named, passing
from ..sources import ClipSpec
from ..values import DECODE_TIMEOUT, MODEL_TIMEOUT, WORKER_LOST, ClipResult
from .base import EngineSettings, Results, StartableJob, worker_threads
from .inline import run_inline
from .main_guard import unguarded_call

MAX_ATTEMPTS = 2  # a clip whose worker dies is retried once on a fresh worker, then `worker-lost`
_STARTUP_FAILURES_ALLOWED = 3


def _tune_malloc() -> None:
    """Keep freed memory in the worker's heap (glibc): every clip allocates the same few
    hundred MB of frames and maps, and handing them back to the OS after each clip means
    page-faulting them in again for the next (measured: ~35 % of a 1080p clip's time with
    the built-in model). A worker's RSS stays at its per-clip peak instead."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 2**31 - 1)
    except (OSError, AttributeError):  # not glibc: keep the defaults
        pass


def _die_with_parent() -> None:
    """End this worker when the run's process dies, however it dies: a worker blocked on a
    FIFO or a long decode must not outlive a killed run (it would also keep multiprocessing's
    resource tracker, and the fork server, alive).

    A thread waits on the parent's sentinel (a pipe only that process holds) and exits the
    worker when it closes; a worker whose parent is already gone exits at once. On Linux the
    kernel also SIGKILLs the worker when its direct parent dies: a spawned worker's parent is
    the run's process, a forked one's the fork server."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux/glibc: the watching thread still ends it
        pass
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def exit_when_gone(sentinel: int = parent.sentinel) -> None:
        wait([sentinel])
        os._exit(1)

    threading.Thread(target=exit_when_gone, name="salmat-parent-watch", daemon=True).start()


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while processes start. They inherit the mask across exec,
    so a Ctrl-C while one still imports (a spawned worker, the fork server loading
    `WORKER_PRELOAD`) prints no traceback from it; a worker ignores SIGINT before unblocking it,
    since Ctrl-C is the run's to handle. A Ctrl-C meanwhile stays pending for this process.
    multiprocessing's resource tracker is started first: starting it unblocks SIGINT."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _start_worker(job: StartableJob, threads: int) -> ClipRunner:
    from ..decode import set_decode_threads

    set_decode_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:  # noqa: BLE001 - thread tuning is best effort
        pass
    return job.start(threads=threads)


def _take_environment(environment: dict[str, str]) -> None:
    """The run's environment as it is now, not as it was when the fork server started (a
    notebook may set SALMAT_CACHE_DIR between runs): what a spawned worker would inherit."""
    os.environ.clear()
    os.environ.update(environment)


class _InheritedFd:
    """One of this process's file descriptors, handed to a worker as it starts (multiprocessing's
    own way of passing a pipe): the worker gets the descriptor itself, not what the fork server
    had when it started."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _detached, (reduction.DupFd(self.fd),)


def _detached(dup: Any) -> int:
    fd: int = dup.detach()
    return fd


def _stdio() -> list[_InheritedFd | None]:
    """This process's stdout and stderr as they are now (a run writing its table to stdout
    points its stdout elsewhere while workers run), each None if it is closed."""
    fds: list[_InheritedFd | None] = []
    for fd in (1, 2):
        try:
            os.fstat(fd)
            fds.append(_InheritedFd(fd))
        except OSError:
            fds.append(None)
    return fds


def _take_stdio(stdio: list[int | None]) -> None:
    for target, fd in zip((1, 2), stdio, strict=True):
        if fd is not None:
            os.dup2(fd, target)
            os.close(fd)


def _worker_main(conn: Connection, job: StartableJob, threads: int, environment: dict[str, str],
                 stdio: list[int | None]) -> None:
    """A pool worker: start the job once, then compute clips sent over `conn` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with_parent()
    _take_environment(environment)
    _take_stdio(stdio)
    _tune_malloc()
    try:
        try:
            runner = _start_worker(job, threads)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
            conn.send(("init-failed", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("ready",))
        _serve(conn, runner)
    except OSError:
        return  # the parent is gone (killed, or it closed our pipe): nothing to report to


def _serve(conn: Connection, runner: ClipRunner) -> None:
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return  # the parent is gone
        if task is None:
            return
        index, spec = task

        def report_phase(phase: str, i: int = index) -> None:
            conn.send(("phase", i, phase))

        result = runner.compute(spec, on_phase=report_phase)
        conn.send(("done", index, result))


# What every worker imports, imported once by the fork server instead of by each worker: a
# spawned worker spent ~1.4 s of CPU importing these (and the built-in model's SciPy) before its
# first clip, most of a small run's time. None of them starts a thread that fork can't survive
# (OpenBLAS and jemalloc stop and restart theirs around a fork).
WORKER_PRELOAD = ("salmat.engines.pool", "salmat.models.onnx", "salmat.models.classical", "scipy.fft",
                  "scipy.ndimage")


def worker_context() -> ForkServerContext | SpawnContext:
    """Workers fork from multiprocessing's fork server (started once per process, with
    `WORKER_PRELOAD` imported); off Linux, or where it can't start, they are spawned.

    Either way a worker starts from a fresh interpreter's state, not a copy of this process:
    it runs the `__main__` script again as a spawned worker would (hence `main_guard`), and
    takes this process's working directory, `sys.path`, environment variables, stdout and
    stderr as they are when it starts (`_worker_main`). What a library reads once at import
    (such as OpenBLAS's thread count) comes from when the server started. The server is
    shared with anything else in this process that uses "forkserver": one started before
    salmat's first pool is used as it is (its workers then import what they need)."""
    if sys.platform.startswith("linux"):  # forking after importing OpenCV is unsafe on macOS
        context = multiprocessing.get_context("forkserver")
        try:
            _start_fork_server()
            return context
        except OSError:  # its socket can't be made (a TMPDIR path too long for AF_UNIX): spawn
            pass
    return multiprocessing.get_context("spawn")


_SERVER_START = threading.Lock()


def _start_fork_server() -> None:
    """The server imports `WORKER_PRELOAD` from this process's `sys.path` (Python 3.11 starts it
    with the interpreter's default path: a salmat found only through a `sys.path` entry added
    at run time would be missed, or another installed salmat imported instead), with SIGINT
    blocked, so a Ctrl-C while it imports prints no traceback; the workers it forks inherit that."""
    with _SERVER_START:  # two threads' pools: one saves and restores PYTHONPATH at a time
        saved_path = os.environ.get("PYTHONPATH")
        forkserver.set_forkserver_preload(list(WORKER_PRELOAD))
        os.environ["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        try:
            with _sigint_blocked():
                forkserver.ensure_running()
        finally:
            if saved_path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved_path
            forkserver.set_forkserver_preload([])  # process-wide: set only for this start


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    task: int | None = None
    phase: str = "decode"
    started: float = 0.0


class WorkerPool:
    """Workers that outlive one batch of clips: `submit` clips, then read `results` until
    they are all settled; `close` when done (a Ray actor keeps one for its whole life)."""

    def __init__(self, job: StartableJob, settings: EngineSettings, workers: int) -> None:
        self.ctx = worker_context()
        self.specs: list[ClipSpec] = []
        self.job = job
        self.threads = worker_threads(workers)
        self.timeout = settings.clip_timeout
        self.pending: deque[int] = deque()
        self.attempts: list[int] = []
        self.remaining = 0
        self.startup_failures = 0
        self.last_startup_error = ""
        self.workers = [self._spawn() for _ in range(workers)]

    def submit(self, specs: Sequence[ClipSpec]) -> list[int]:
        """Queue clips; returns their indices (what `results` yields them with)."""
        indices = list(range(len(self.specs), len(self.specs) + len(specs)))
        self.specs.extend(specs)
        self.attempts.extend(0 for _ in specs)
        self.pending.extend(indices)
        self.remaining += len(specs)
        return indices

    def _spawn(self) -> _Worker:
        try:
            return self._start(self.ctx)
        except (OSError, EOFError):  # the fork server is gone (killed, its socket removed): spawn from now on
            if self.ctx.get_start_method() != "forkserver":
                raise
            self.ctx = multiprocessing.get_context("spawn")
            return self._start(self.ctx)

    def _start(self, context: ForkServerContext | SpawnContext) -> _Worker:
        parent, child = context.Pipe(duplex=True)
        process = context.Process(target=_worker_main, name="salmat-worker", daemon=True,
                                  args=(child, self.job, self.threads, dict(os.environ), _stdio()))
        try:
            if context.get_start_method() == "spawn":
                with _sigint_blocked():
                    process.start()
            else:  # forked by the server, which started with SIGINT blocked; this process keeps Ctrl-C
                process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return _Worker(process, parent)

    def _assign(self) -> None:
        for worker in self.workers:
            if worker.ready and worker.task is None and self.pending:
                index = self.pending.popleft()
                worker.task, worker.phase, worker.started = index, "decode", time.monotonic()
                self.attempts[index] += 1
                try:
                    worker.conn.send((index, self.specs[index]))
                except OSError:
                    pass  # the worker died; its sentinel shows it and the clip is retried

    def _wait(self) -> None:
        timeout = None
        if self.timeout:
            deadlines = [w.started + self.timeout for w in self.workers if w.task is not None]
            if deadlines:  # capped: the loop wakes, finds nothing and waits again
                timeout = min(max(0.0, min(deadlines) - time.monotonic()), 3600.0)
        handles = [w.conn for w in self.workers] + [w.process.sentinel for w in self.workers]
        wait(handles, timeout=timeout)

    def _drain(self, worker: _Worker) -> tuple[list[tuple[int, ClipResult]], bool]:
        """Read what `worker` sent; (finished clips, whether the worker is gone)."""
        finished = []
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                kind = message[0]
                if kind == "ready":
                    worker.ready = True
                    self.startup_failures = 0
                elif kind == "phase" and worker.task == message[1]:
                    worker.phase = message[2]
                elif kind == "done" and worker.task == message[1]:
                    finished.append((message[1], message[2]))
                    worker.task = None
                elif kind == "init-failed":
                    self.last_startup_error = message[1]
        except (EOFError, OSError):
            return finished, True
        return finished, not worker.process.is_alive()

    def _stop(self, worker: _Worker) -> None:
        try:
            worker.process.kill()
        except Exception:  # noqa: BLE001
            pass
        worker.process.join(5)
        worker.conn.close()

    def _replace(self, worker: _Worker, result: ClipResult | None) -> list[tuple[int, ClipResult]]:
        """Stop `worker`, settle its clip (`result`, a retry, or `worker-lost`), start another."""
        self._stop(worker)
        finished = []
        if not worker.ready:
            self.startup_failures += 1
        index = worker.task
        if index is not None:
            if result is not None:
                finished.append((index, result))
            elif self.attempts[index] < MAX_ATTEMPTS:
                self.pending.appendleft(index)
            else:
                name = os.path.basename(self.specs[index].path)
                finished.append((index, ClipResult(WORKER_LOST, error=(
                    f"{name}: the worker process died while computing this clip, twice "
                    f"(exit code {worker.process.exitcode}); the clip was not computed"))))
        position = self.workers.index(worker)
        if self.startup_failures >= _STARTUP_FAILURES_ALLOWED:
            del self.workers[position]
        else:
            self.workers[position] = self._spawn()
        return finished  # with no worker left, `pending` is what the pool could not run

    def _timeouts(self) -> list[tuple[int, ClipResult]]:
        """Clips past `--clip-timeout`, their workers replaced. A late worker's messages are read
        first: a consumer that held a result for long (the feeder's busy model) must not turn a
        clip that finished meanwhile, its result unread, into a timeout."""
        finished: list[tuple[int, ClipResult]] = []
        if not self.timeout:
            return finished
        for worker in list(self.workers):
            if worker.task is None or time.monotonic() - worker.started < self.timeout:
                continue
            drained, gone = self._drain(worker)
            finished += drained
            if gone:
                finished += self._replace(worker, None)
            elif worker.task is not None:  # still on its clip
                finished += self._replace(worker, self._timed_out(worker))
        return finished

    def _timed_out(self, worker: _Worker) -> ClipResult:
        assert worker.task is not None
        name = os.path.basename(self.specs[worker.task].path)
        doing = "decoding" if worker.phase == "decode" else "the model"
        status = DECODE_TIMEOUT if worker.phase == "decode" else MODEL_TIMEOUT
        with cli_spelling(self.job.cli_spelling):  # a Ray actor's pool runs outside the caller's context
            limit = passing("clip_timeout", f"{self.timeout:g}")
        return ClipResult(status, seconds=time.monotonic() - worker.started, error=(
            f"{name}: {doing} took longer than {limit} s; the worker was stopped and replaced"))

    def results(self) -> Iterator[tuple[int, ClipResult]]:
        """Settle every submitted clip; with no worker left, what is unsettled stays `pending`.
        Results are yielded as each worker's are read, so a slow consumer holds back the rest
        (the feeder keeps at most its queue of decoded clips in memory)."""
        while self.remaining > 0 and self.workers:
            self._assign()
            self._wait()
            for worker in list(self.workers):
                finished, gone = self._drain(worker)
                if gone:
                    finished += self._replace(worker, None)
                for index, result in finished:
                    self.remaining -= 1
                    yield index, result
            for index, result in self._timeouts():
                self.remaining -= 1
                yield index, result

    def close(self, force: bool = False) -> None:
        for worker in self.workers:
            try:
                if force:
                    worker.process.kill()
                else:
                    worker.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
        self.workers = []


def run_pool(specs: Sequence[ClipSpec], job: ClipJob, settings: EngineSettings) -> Results:
    """`settings.workers` worker processes (fewer if there are fewer clips); clips are handed
    out in input order, one at a time, and yielded as they finish.

    A script that calls salmat outside `if __name__ == "__main__":` (worker processes run it
    again, forked or spawned) is found before any worker starts, and its clips run in this process with one
    warning; if no worker process can start for another reason, the clips left run here too."""
    if not specs:
        return
    where = unguarded_call()
    if where is not None:
        warn(f"{where} calls salmat outside `if __name__ == \"__main__\":`, and worker processes run the script "
             f"again; running the {len(specs)} clip(s) in this process (no parallel workers, "
             f"no {named('clip_timeout')}). "
             "Put the call under that guard to use worker processes")
        yield from run_inline(specs, job, settings)
        return
    pool = WorkerPool(job, settings, max(1, min(settings.workers, len(specs))))
    pool.submit(specs)
    try:
        for index, result in pool.results():
            yield specs[index], result
    except BaseException:  # Ctrl-C, or the consumer stopped early: don't wait for busy workers
        pool.close(force=True)
        raise
    finally:
        pool.close()
    if pool.pending:
        # A worker that exits before reporting anything is what a script without a main guard
        # causes (worker processes re-run it); a worker that reports why it failed says so itself.
        reason = pool.last_startup_error or ("worker processes exited before they were ready; a script that calls "
                                             "salmat.materialize needs an `if __name__ == \"__main__\":` guard")
        warn(f"no worker process could start ({reason}); running the remaining {len(pool.pending)} clip(s) in "
             "this process")
        yield from run_inline([specs[i] for i in pool.pending], job, settings)
