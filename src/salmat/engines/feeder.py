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

The model phase has no timeout here: stopping it would mean stopping the
process that holds the GPU. `--per-frame` clips decode in this process (they
hold one frame at a time). See docs/performance.md (GPU) for when this engine
pays: preprocessing still runs on this process's cores.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..compute import ClipJob, ClipRunner, PhaseFn, compute_decoded, decoded_frames
from ..errors import warn
from ..frames import YuvFrame
from ..models.base import SaliencyModel
from ..sources import ClipSpec
from ..values import WORKER_LOST, ClipResult, SamplingOptions
from .base import EngineSettings, Results
from .main_guard import unguarded_call
from .pool import WorkerPool, run_pool

INFERENCE_THREADS = 2  # one thread's clip runs on the device while the other's is prepared or reduced
QUEUED_PER_THREAD = 2  # decoded clips waiting for the model, per thread (a 1080p clip's 8 frames: ~25 MB)

Running = set[Future[tuple[ClipSpec, ClipResult]]]


@dataclass
class DecodedClip(ClipResult):
    """A decode worker's `ok` result: the clip's frames travel with it to the model."""

    yuv: list[YuvFrame] = field(default_factory=list)


@dataclass(frozen=True)
class DecodeJob:
    """What a decode worker is sent: the sampling; it loads no model."""

    sampling: SamplingOptions

    def start(self, threads: int | None = None) -> ClipRunner:
        return DecodeRunner(self.sampling)


class DecodeRunner(ClipRunner):
    """A decode worker's runner: `compute` decodes only (never raises)."""

    def __init__(self, sampling: SamplingOptions) -> None:  # no job, no model
        self.sampling = sampling

    def compute(self, spec: ClipSpec, on_phase: PhaseFn | None = None) -> ClipResult:
        frames, result = decoded_frames(spec, self.sampling)
        if not frames:
            return result
        return DecodedClip(result.status, frames=result.frames, seconds=result.seconds, yuv=frames)


def inference_threads(model: SaliencyModel) -> int:
    """Several threads only for an onnxruntime session, whose `run` is documented thread-safe."""
    return INFERENCE_THREADS if getattr(model, "session", None) is not None else 1


def _finish(runner: ClipRunner, spec: ClipSpec, decoded: ClipResult) -> tuple[ClipSpec, ClipResult]:
    """The model and reducers for a decoded clip; a decode failure passes through as it is."""
    if not isinstance(decoded, DecodedClip):
        return spec, decoded
    return spec, compute_decoded(spec, decoded.yuv, runner.model, runner.job.reduce, decoded.seconds)


def _whole(runner: ClipRunner, spec: ClipSpec) -> tuple[ClipSpec, ClipResult]:
    """A clip decoded and computed in this process (per-frame clips; no decode worker could start)."""
    return spec, runner.compute(spec)


def _settle(running: Running, keep: int) -> Results:
    """Yield finished clips; block while more than `keep` are waiting or running."""
    while running:
        done, _ = wait(running, timeout=None if len(running) > keep else 0, return_when=FIRST_COMPLETED)
        if not done:
            return
        for future in done:
            running.discard(future)
            yield future.result()


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
    sampled = [spec for spec in specs if spec.frames is None]
    with ThreadPoolExecutor(threads, thread_name_prefix="salmat-feeder") as infer:
        running: Running = {infer.submit(_whole, runner, spec) for spec in specs if spec.frames is not None}
        left = yield from _feed(sampled, job, settings, runner, infer, running, threads * QUEUED_PER_THREAD)
        if left:
            warn(f"no decode worker process could start; decoding the remaining {len(left)} clip(s) in this process")
            running |= {infer.submit(_whole, runner, spec) for spec in left}
        yield from _settle(running, keep=0)


def _feed(sampled: list[ClipSpec], job: ClipJob, settings: EngineSettings, runner: ClipRunner,
          infer: ThreadPoolExecutor, running: Running,
          queued: int) -> Generator[tuple[ClipSpec, ClipResult], None, list[ClipSpec]]:
    """Decode `sampled` in worker processes, handing each decoded clip to `infer`; returns (as the
    generator's value) the clips no worker could take."""
    if not sampled:
        return []
    pool = WorkerPool(DecodeJob(job.sampling), settings, max(1, min(settings.workers, len(sampled))))
    pool.submit(sampled)
    try:
        for index, decoded in pool.results():
            running.add(infer.submit(_finish, runner, sampled[index], decoded))
            yield from _settle(running, keep=queued)
    except BaseException:  # Ctrl-C, or the consumer stopped early: don't wait for busy workers
        pool.close(force=True)
        raise
    finally:
        pool.close()
    return [sampled[i] for i in pool.pending]
