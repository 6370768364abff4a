"""The feeder engine: decode worker processes feed the one model this process holds.

With `--device cuda`, the pool gives every worker its own model, so its own CUDA
context and memory arena: N workers, N copies on one GPU. Here the workers hold
no model. They are the pool's (`WorkerPool`, so retries of lost workers and the
`--clip-timeout` of decoding behave as in the pool), sent a `DecodeJob`: each
decodes a clip's sampled frames and sends back its 8-bit planes. This process
loads the model once and runs the decoded clips through it, then the reducers,
from `INFERENCE_THREADS` threads when the model is an onnxruntime session (whose
`run` may be called from several threads at once and releases the GIL), else
from one. The values are `compute_clip`'s: the same decoding, model and reducers,
only split between processes.

`--clip-timeout` bounds a clip's decoding and model together, as in the pool:
the decode worker's share is the pool's; the model gets what is left. A clip
past it is settled as a timeout and its inference thread abandoned and
replaced, never the process that holds the GPU. `--per-frame` clips decode in
this process (they hold one frame at a time). See docs/performance.md (GPU)
for when this engine pays: preprocessing still runs on this process's cores.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial

from ..compute import ClipJob, ClipRunner, PhaseFn, decoded_frames
from ..errors import warn
from ..frames import YuvFrame
from ..models.base import SaliencyModel
from ..option_spec import cli_spelling, named, spelling_in_use
from ..sources import ClipSpec
from ..values import DECODE_TIMEOUT, MODEL_TIMEOUT, WORKER_LOST, ClipResult, SamplingOptions
from .base import EngineSettings, Results
from .main_guard import unguarded_call
from .pool import WorkerPool, run_pool

INFERENCE_THREADS = 2  # one thread's clip runs on the device while the other's is prepared or reduced
CLOSE_WAIT = 60.0  # seconds `Inference.close` waits for the clips in the model to finish
QUEUED_PER_THREAD = 2  # decoded clips waiting for the model, per thread (a 1080p clip's 8 frames: ~25 MB)

Work = Callable[[PhaseFn], ClipResult]


@dataclass
class DecodedClip(ClipResult):
    """A decode worker's `ok` result: the clip's frames travel with it to the model."""

    yuv: list[YuvFrame] = field(default_factory=list)


@dataclass(frozen=True)
class DecodeJob:
    """What a decode worker is sent: the sampling; it loads no model."""

    sampling: SamplingOptions
    cli_spelling: bool = field(default_factory=spelling_in_use)  # how decode errors name settings

    def start(self, threads: int | None = None) -> ClipRunner:
        return DecodeRunner(self.sampling, self.cli_spelling)


class DecodeRunner(ClipRunner):
    """A decode worker's runner: `compute` decodes only (never raises)."""

    def __init__(self, sampling: SamplingOptions, spelling: bool) -> None:  # no job, no model
        self.sampling = sampling
        self.spelling = spelling

    def compute(self, spec: ClipSpec, on_phase: PhaseFn | None = None) -> ClipResult:
        with cli_spelling(self.spelling):
            frames, result = decoded_frames(spec, self.sampling)
        if not frames:
            return result
        return DecodedClip(result.status, frames=result.frames, seconds=result.seconds, yuv=frames)


def inference_threads(model: SaliencyModel) -> int:
    """Several threads only for an onnxruntime session, whose `run` is documented thread-safe."""
    return INFERENCE_THREADS if getattr(model, "session", None) is not None else 1


@dataclass
class _Ticket:
    spec: ClipSpec
    work: Work
    budget: float | None            # seconds this clip may still take here (None: unbounded)
    started: float | None = None    # when a thread took it up
    phase: str = "model"
    thread: threading.Thread | None = None  # the thread that took it up


class Inference:
    """Threads that run clips through this process's one model, with `--clip-timeout`.

    A clip past its deadline is settled as `model-timeout` (`decode-timeout` while a clip
    decoded here is still decoding) and its thread abandoned and replaced: the threads are
    daemons, so one blocked in the model can't hold the run open, and the others go on."""

    def __init__(self, threads: int) -> None:
        self.todo: queue.Queue[tuple[int, _Ticket] | None] = queue.Queue()
        self.done: queue.Queue[tuple[int, ClipResult]] = queue.Queue()
        self.lock = threading.Lock()
        self.open: dict[int, _Ticket] = {}  # submitted and not settled
        self.count = 0
        self.threads = 0
        self.running: set[threading.Thread] = set()  # not abandoned
        for _ in range(threads):
            self._spawn()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._loop, name="salmat-feeder", daemon=True)
        with self.lock:
            self.threads += 1
            self.running.add(thread)
        thread.start()

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """End the threads: clips not yet taken up are dropped, and a clip in the model is let
        finish (up to `wait` seconds), because onnxruntime aborts the process (SIGABRT) when the
        interpreter exits under a thread still inside a session's run, as after Ctrl-C.
        Abandoned threads (timed-out clips) are not waited for; they end when their clip does."""
        with self.lock:
            self.open.clear()
            running = list(self.running)
        for _ in range(self.threads):
            self.todo.put(None)
        deadline = time.monotonic() + wait
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, spec: ClipSpec, work: Work, budget: float | None) -> None:
        with self.lock:
            self.count += 1
            self.open[self.count] = ticket = _Ticket(spec, work, budget)
        self.todo.put((self.count, ticket))

    def _loop(self) -> None:
        while True:
            item = self.todo.get()
            if item is None:
                return
            number, ticket = item
            with self.lock:
                if number not in self.open:
                    continue
                ticket.started, ticket.thread = time.monotonic(), threading.current_thread()

            def report(phase: str, ticket: _Ticket = ticket) -> None:
                ticket.phase = phase

            result = ticket.work(report)  # never raises (compute's contract)
            with self.lock:
                if self.open.get(number) is not ticket:
                    self.threads -= 1
                    return  # settled as a timeout meanwhile: a replacement thread took this one's place
            self.done.put((number, result))

    def results(self, keep: int) -> Results:
        """Settled clips; blocks while more than `keep` are open."""
        while self.open:
            try:
                number, result = self.done.get(timeout=self._wait(len(self.open) > keep))
            except queue.Empty:
                if len(self.open) <= keep:
                    return
                yield from self._timeouts()
                continue
            with self.lock:
                ticket = self.open.pop(number, None)
            if ticket is not None:
                yield ticket.spec, result

    def _wait(self, block: bool) -> float:
        """How long to wait for the next result: until the first deadline; a clip with a budget that
        no thread has taken up yet gets its deadline soon, so look again within half a second."""
        if not block:
            return 0.0
        with self.lock:
            bounded = [t for t in self.open.values() if t.budget is not None]
            ends = [t.started + t.budget for t in bounded if t.started is not None and t.budget is not None]
            waiting = any(t.started is None for t in bounded)
        wait = min(ends) - time.monotonic() if ends else 3600.0
        return max(0.0, min(wait, 0.5 if waiting else 3600.0))

    def _timeouts(self) -> Results:
        now = time.monotonic()
        with self.lock:
            late = [(n, t) for n, t in self.open.items()
                    if t.started is not None and t.budget is not None and now - t.started >= t.budget]
            for number, ticket in late:
                del self.open[number]
                self.running.discard(ticket.thread)
        for _, ticket in late:
            self._spawn()
            name = os.path.basename(ticket.spec.path)
            doing = "decoding" if ticket.phase == "decode" else "the model"
            status = DECODE_TIMEOUT if ticket.phase == "decode" else MODEL_TIMEOUT
            yield ticket.spec, ClipResult(status, seconds=now - (ticket.started or now), error=(
                f"{name}: {doing} took longer than {named('clip_timeout')}; the clip was given up (its thread is "
                "left to finish on its own)"))


def _model_budget(timeout: float | None, decoded: ClipResult) -> float | None:
    """What is left of a clip's `--clip-timeout` after its decoding (at least a second)."""
    return None if not timeout else max(1.0, timeout - decoded.seconds)


def run_feeder(specs: Sequence[ClipSpec], job: ClipJob, settings: EngineSettings) -> Results:
    """`settings.workers` decode processes (fewer for fewer clips) feed this process's one model;
    results are yielded as clips finish, in any order. Never raises for a clip or a lost worker."""
    if not specs:
        return
    if unguarded_call() is not None:  # the pool says why once and runs the clips in this process
        yield from run_pool(specs, job, settings)
        return
    try:
        runner = job.start()
    except Exception as exc:  # noqa: BLE001 - like a pool worker that can't start
        for spec in specs:
            yield spec, ClipResult(WORKER_LOST, error=f"the model could not be loaded: {type(exc).__name__}: {exc}")
        return
    threads = inference_threads(runner.model)
    inference = Inference(threads)
    try:
        for spec in specs:
            if spec.frames is not None:  # per-frame clips hold one frame at a time: decoded here
                inference.submit(spec, partial(_whole, runner, spec), settings.clip_timeout)
        sampled = [spec for spec in specs if spec.frames is None]
        left = yield from _feed(sampled, job, settings, runner, inference, threads * QUEUED_PER_THREAD)
        if left:
            warn(f"no decode worker process could start; decoding the remaining {len(left)} clip(s) in this "
                 "process")
            for spec in left:
                inference.submit(spec, partial(_whole, runner, spec), settings.clip_timeout)
        yield from inference.results(keep=0)
    finally:
        inference.close()


def _whole(runner: ClipRunner, spec: ClipSpec, report: PhaseFn) -> ClipResult:
    """A clip decoded and computed in this process."""
    report("decode")
    return runner.compute(spec, on_phase=report)


def _finish(runner: ClipRunner, spec: ClipSpec, decoded: DecodedClip, report: PhaseFn) -> ClipResult:
    return runner.compute_decoded(spec, decoded.yuv, decoded.seconds)


def _feed(sampled: list[ClipSpec], job: ClipJob, settings: EngineSettings, runner: ClipRunner,
          inference: Inference, queued: int) -> Generator[tuple[ClipSpec, ClipResult], None, list[ClipSpec]]:
    """Decode `sampled` in worker processes, handing each decoded clip to `inference` (a decode
    failure is settled as it is); returns (as the generator's value) the clips no worker could take."""
    if not sampled:
        return []
    pool = WorkerPool(DecodeJob(job.sampling, job.cli_spelling), settings, max(1, min(settings.workers, len(sampled))))
    pool.submit(sampled)
    try:
        for index, decoded in pool.results():
            spec = sampled[index]
            if not isinstance(decoded, DecodedClip):
                yield spec, decoded
                continue
            budget = _model_budget(settings.clip_timeout, decoded)
            inference.submit(spec, partial(_finish, runner, spec, decoded), budget)
            yield from inference.results(keep=queued)
    except BaseException:  # Ctrl-C, or the consumer stopped early: don't wait for busy workers
        pool.close(force=True)
        raise
    finally:
        pool.close()
    return [sampled[i] for i in pool.pending]
