"""Compute clips: decode → model → every temporal reducer → stats.

`compute_clip` never raises: any failure becomes a `ClipResult` with a contract
status and a message, so one bad clip can't take down a run (or a Ray block).
`run_clips` schedules many clips: `--workers 1` (or a single clip) runs them in
this process; `--workers N` runs a pool of N spawned worker processes
(`run_clips_pool`), each loading the model once. `--clip-timeout S` needs a
process it can kill, so it always runs the pool (of one worker for `--workers 1`).
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from .decode import SamplingOptions, decode_sampled
from .errors import ClipError
from .frames import YuvFrame
from .maps import WorkingMaps
from .models.base import SaliencyModel
from .sources import ClipSpec
from .temporal import reduce_stats


@dataclass(frozen=True)
class ReduceOptions:
    ema_alpha: float = 0.6
    historical_motion: bool = False


@dataclass
class ClipResult:
    """One clip's outcome: `stats[reducer] = (mean, var)` when `status == "ok"`."""

    status: str
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0


def predict_maps(model: SaliencyModel, frames: list[YuvFrame]) -> np.ndarray | WorkingMaps:
    """Run the model and check its contract: one finite map per frame at the frame's size.

    A model with `predict_working` (the built-ins) returns its maps before upsampling,
    which the reducers use at working size; `salmat.maps.full_size` gives full-size maps.
    """
    try:
        if hasattr(model, "predict_working"):
            working = model.predict_working(frames)
            _check_maps(model, np.asarray(working.maps), tuple(working.frame_size), frames)
            return working
        maps = np.asarray(model.predict(frames), dtype=np.float32)
    except ClipError:
        raise
    except Exception as exc:  # noqa: BLE001 - any model failure is this clip's status
        raise ClipError("model-failed", f"{model.id} raised {type(exc).__name__}: {exc}") from exc
    _check_maps(model, maps, maps.shape[1:], frames)
    return maps


def _check_maps(model: SaliencyModel, maps: np.ndarray, frame_size: tuple, frames: list[YuvFrame]) -> None:
    """`maps`: the model's (n, h, w) array; `frame_size`: the (H, W) it stands for."""
    expected = (len(frames), frames[0].height, frames[0].width)
    shape = (*maps.shape[:1], *frame_size) if maps.ndim == 3 else maps.shape
    if shape != expected:
        raise ClipError("model-failed", f"{model.id} returned maps of shape {shape}, expected {expected}")
    # One float64 sum is finite exactly when every value is (NaN and inf propagate), unless
    # huge finite values overflow it — then the full check decides.
    if not np.isfinite(maps.sum(dtype=np.float64)) and not np.all(np.isfinite(maps)):
        raise ClipError("model-failed", f"{model.id} returned non-finite values")


PhaseFn = Callable[[str], None]


def sampled_maps(
    spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions, on_phase: PhaseFn | None = None,
) -> tuple[list[YuvFrame], np.ndarray | WorkingMaps]:
    """Sampled frames and their maps (raises `ClipError`).

    `on_phase("model")` is called once decoding is done and inference starts (the
    pool uses it to tell a decode timeout from a model timeout).
    """
    frames = decode_sampled(spec, sampling)
    _check_uniform_size(frames)
    if on_phase is not None:
        on_phase("model")
    return frames, predict_maps(model, frames)


def _check_uniform_size(frames: list[YuvFrame]) -> None:
    sizes = {(f.height, f.width) for f in frames}
    if len(sizes) > 1:
        raise ClipError("decode-failed", f"frame size changes within the clip: {sorted(sizes)}")


def compute_clip(
    spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions, reduce: ReduceOptions,
    on_phase: PhaseFn | None = None,
) -> ClipResult:
    """One clip, start to finish; every failure is returned as a status, never raised."""
    start = time.perf_counter()
    try:
        frames, maps = sampled_maps(spec, model, sampling, on_phase)
        lumas = [frame.luma8() for frame in frames]
        stats = reduce_stats(maps, lumas, reduce.ema_alpha, reduce.historical_motion)
    except ClipError as exc:
        return ClipResult(exc.status, error=exc.message, seconds=time.perf_counter() - start)
    except MemoryError:
        return ClipResult("decode-failed", error=f"{os.path.basename(spec.path)}: out of memory",
                          seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - the engine must never raise for a bad clip
        return ClipResult("decode-failed", error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
    return ClipResult("ok", stats=stats, frames=len(frames), seconds=time.perf_counter() - start)


ProgressFn = Callable[[ClipSpec, ClipResult], None]


def run_clips_inline(
    specs: Iterable[ClipSpec], model: SaliencyModel, sampling: SamplingOptions, reduce: ReduceOptions
) -> Iterator[tuple[ClipSpec, ClipResult]]:
    """The in-process engine: one clip after another, results as they finish."""
    for spec in specs:
        yield spec, compute_clip(spec, model, sampling, reduce)


def use_pool(opts, clips: int) -> bool:
    """The pool runs for several workers and several clips, or whenever a clip timeout is set."""
    if clips == 0:
        return False
    if getattr(opts, "clip_timeout", None):
        return True
    return int(getattr(opts, "workers", 1) or 1) > 1 and clips > 1


def run_clips(
    specs: list[ClipSpec], model: SaliencyModel, opts, sampling: SamplingOptions, reduce: ReduceOptions
) -> Iterator[tuple[ClipSpec, ClipResult]]:
    """Pick the engine for `opts` and yield (spec, result) as clips finish, in any order."""
    if getattr(opts, "engine", "local") == "ray":
        from .ray_engine import run_clips_ray

        return run_clips_ray(specs, opts, sampling, reduce)
    if use_pool(opts, len(specs)):
        return run_clips_pool(specs, opts, sampling, reduce, model)
    return run_clips_inline(specs, model, sampling, reduce)


# ---- the process pool -------------------------------------------------------

# Test-only hook: `SALMAT_TEST_KILL_WORKER="clip.mp4=/tmp/marker"` makes a pool worker
# SIGKILL itself when it starts on a clip of that file name, once (the marker file
# records that it happened), so the tests can check that a lost worker's clip is retried.
KILL_HOOK_ENV = "SALMAT_TEST_KILL_WORKER"
MAX_ATTEMPTS = 2  # a clip whose worker dies is retried once on a fresh worker, then `worker-lost`
_STARTUP_FAILURES_ALLOWED = 3


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_threads(workers: int, cores: int | None = None) -> int:
    """Inference threads per worker, so that threads × workers = cores."""
    return max(1, (cores or available_cores()) // max(1, workers))


def _kill_hook(spec: ClipSpec) -> None:
    hook = os.environ.get(KILL_HOOK_ENV)
    if not hook or "=" not in hook:
        return
    name, marker = hook.split("=", 1)
    if os.path.basename(spec.path) == name and not os.path.exists(marker):
        with open(marker, "w", encoding="utf-8") as handle:
            handle.write(str(os.getpid()))
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _tune_malloc() -> None:
    """Keep freed memory in the worker's heap (glibc): every clip allocates the same few
    hundred MB of full-frame maps, and handing them back to the OS after each clip means
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


def _load_worker_model(opts, threads: int) -> SaliencyModel:
    from .decode import set_decode_threads

    set_decode_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:  # noqa: BLE001 - thread tuning is best effort
        pass
    from .pipeline import load_model_for

    return load_model_for(opts, threads=threads)


def _worker_main(conn, opts, threads: int, sampling: SamplingOptions, reduce: ReduceOptions) -> None:
    """A pool worker: load the model once, then compute clips sent over `conn` until told to stop."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _tune_malloc()
    try:
        model = _load_worker_model(opts, threads)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("init-failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if task is None:
            return
        index, spec = task
        _kill_hook(spec)
        try:
            result = compute_clip(spec, model, sampling, reduce,
                                  on_phase=lambda phase, i=index: conn.send(("phase", i, phase)))
            conn.send(("done", index, result))
        except OSError:
            return  # the parent is gone (killed): nothing to report to


@dataclass
class _Worker:
    process: object
    conn: object
    ready: bool = False
    task: int | None = None
    phase: str = "decode"
    started: float = 0.0


class _Pool:
    """Spawned workers, each fed one clip at a time over its own pipe (no shared locks:
    a worker killed mid-clip can't leave a queue lock held)."""

    def __init__(self, specs: list[ClipSpec], opts, sampling: SamplingOptions, reduce: ReduceOptions,
                 workers: int) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.specs = specs
        self.opts = opts
        self.sampling = sampling
        self.reduce = reduce
        self.threads = worker_threads(workers)
        self.timeout = getattr(opts, "clip_timeout", None)
        self.pending: deque[int] = deque(range(len(specs)))
        self.attempts = [0] * len(specs)
        self.remaining = len(specs)
        self.startup_failures = 0
        self.last_startup_error = ""
        self.workers = [self._spawn() for _ in range(workers)]

    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        process = self.ctx.Process(target=_worker_main, name="salmat-worker", daemon=True,
                                   args=(child, self.opts, self.threads, self.sampling, self.reduce))
        process.start()
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
        from multiprocessing.connection import wait

        timeout = None
        if self.timeout:
            deadlines = [w.started + self.timeout for w in self.workers if w.task is not None]
            if deadlines:
                timeout = max(0.0, min(deadlines) - time.monotonic())
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
                finished.append((index, ClipResult("worker-lost", error=(
                    f"{name}: the worker process died while computing this clip, twice "
                    f"(exit code {worker.process.exitcode}); the clip was not computed"))))
        position = self.workers.index(worker)
        if self.startup_failures >= _STARTUP_FAILURES_ALLOWED:
            del self.workers[position]
        else:
            self.workers[position] = self._spawn()
        return finished  # with no worker left, `pending` is what the pool could not run

    def _timeouts(self) -> list[tuple[int, ClipResult]]:
        finished = []
        if not self.timeout:
            return finished
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.task is not None and now - worker.started >= self.timeout:
                name = os.path.basename(self.specs[worker.task].path)
                doing = "decoding" if worker.phase == "decode" else "the model"
                result = ClipResult(f"{worker.phase}-timeout", seconds=now - worker.started, error=(
                    f"{name}: {doing} took longer than --clip-timeout {self.timeout:g} s; "
                    "the worker was stopped and replaced"))
                finished += self._replace(worker, result)
        return finished

    def run(self) -> Iterator[tuple[int, ClipResult]]:
        try:
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
        except BaseException:  # Ctrl-C, or the consumer stopped early: don't wait for busy workers
            self.close(force=True)
            raise
        finally:
            self.close()

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


def run_clips_pool(
    specs: list[ClipSpec], opts, sampling: SamplingOptions, reduce: ReduceOptions,
    model: SaliencyModel | None = None,
) -> Iterator[tuple[ClipSpec, ClipResult]]:
    """The process-pool engine: `opts.workers` spawned workers (fewer if there are fewer
    clips), each loading the model once with `cores // workers` inference threads; clips
    are handed out in input order, one at a time, and yielded as they finish.

    If no worker process can start at all (e.g. a script calling `salmat.materialize`
    without an `if __name__ == "__main__":` guard, which spawned processes need), the
    clips left run in this process with `model` (or become `worker-lost` without one)."""
    workers = max(1, min(int(getattr(opts, "workers", 1) or 1), len(specs)))
    pool = _Pool(specs, opts, sampling, reduce, workers)
    for index, result in pool.run():
        yield specs[index], result
    if pool.pending:
        reason = pool.last_startup_error or "worker processes exited before they were ready"
        if model is None:
            for index in pool.pending:
                yield specs[index], ClipResult("worker-lost", error=f"no worker process could start: {reason}")
            return
        import sys

        print(f"salmat: warning: no worker process could start ({reason}); running the remaining "
              f"{len(pool.pending)} clip(s) in this process (a script that calls salmat.materialize "
              "needs an `if __name__ == \"__main__\":` guard for --workers > 1)", file=sys.stderr)
        yield from run_clips_inline([specs[i] for i in pool.pending], model, sampling, reduce)
