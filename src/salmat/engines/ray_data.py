"""`--engine ray`: the distinct clips as a Ray dataset, computed by an actor pool.

The flow (see docs/ray.md):

1. Each distinct `ClipSpec` becomes one row — its fields as plain columns plus a
   stable clip key (a hash of those fields) — of `ray.data.from_items`.
2. `map_batches` runs `_ClipActor`, a callable class: each actor starts the job
   once (`ClipJob.start` loads the model) and computes each clip with it
   (`ClipRunner.compute`). It returns the status, the error, the
   frame count and every reducer's (mean, var) as columns, and never raises:
   one raised exception would drop a whole block.
3. The driver streams the result batches back and maps them to specs by clip
   key (Ray Data does not keep row order; `materialize` joins by key anyway).

Guard rails, each measured on a 2-CPU machine:

- Actors ask for a *fractional* CPU (never the whole machine): an actor pool
  that claims every CPU starves Ray Data's read stage and the run hangs.
- Bounded retries. Ray Data's default for actor pools is to restart actors and
  retry tasks forever, so a clip that kills its worker (a decoder segfault, the
  OOM killer) would loop forever; here actors restart at most `MAX_RESTARTS`
  times, tasks retry at most `MAX_TASK_RETRIES` times, consecutive actor start
  failures are capped, and errored blocks are dropped instead of failing the
  run. The driver then re-runs only the clips still missing, one clip per block,
  up to `MAX_ATTEMPTS` rounds in all; whatever is still missing gets the status
  `worker-lost` with the last error in words, and the run finishes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ..compute import ClipJob, ClipRunner
from ..errors import SalmatError
from ..option_spec import named, passing
from ..sources import ClipSpec
from ..values import DECODE_FAILED, OK, REDUCERS, WORKER_LOST, ClipResult
from . import ray_reaper
from .base import EngineSettings, Results, available_cores
from .pool import WorkerPool

T = TypeVar("T")

MAX_ATTEMPTS = 3            # dataset executions per run: the first, then re-runs of missing clips
MAX_RESTARTS = 2            # restarts of one actor after it dies
MAX_TASK_RETRIES = 2        # re-submissions of one batch after its actor died
MAX_INIT_DEATHS = 2         # consecutive actors that may fail to start before an execution gives up
MAX_FIRST_BLOCKS = 4096     # blocks of the first execution (re-runs use one clip per block)


def _stat_column(kind: str, reducer: str) -> str:
    return f"{kind}_{reducer.replace('-', '_')}"


def _spec_json(spec: ClipSpec) -> str:
    """Every field of the spec, so a field added to `ClipSpec` travels without another edit here
    (non-UTF-8 paths survive: JSON escapes their surrogates)."""
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


def clip_key(spec: ClipSpec) -> str:
    """A key that names a clip the same way in every run and on every node."""
    return hashlib.sha1(_spec_json(spec).encode("ascii")).hexdigest()


def _spec_row(key: str, spec: ClipSpec) -> dict[str, Any]:
    return {"key": key, "spec": _spec_json(spec)}


def _row_spec(row: dict[str, Any]) -> ClipSpec:
    return ClipSpec(**json.loads(row["spec"]))


class _CloudpickledJob:
    """The job, carried on to the actor's worker process the way Ray carried it to the actor
    (cloudpickle): a job class Ray pickled by value (defined in a notebook, a script or a test)
    can't be pickled again by reference."""

    def __init__(self, job: ClipJob) -> None:
        from ray import cloudpickle

        self.payload: bytes = cloudpickle.dumps(job)  # type: ignore[no-untyped-call]
        self.cli_spelling = job.cli_spelling

    def start(self, threads: int | None = None) -> ClipRunner:
        from ray import cloudpickle

        job: ClipJob = cloudpickle.loads(self.payload)
        return job.start(threads)


class _ClipActor:
    """One Ray actor: turns every clip into a result row, never raises from `__call__`.

    Without a clip timeout the actor holds the model itself. With one, it runs its clips in a
    one-worker `WorkerPool` (a child process of the actor), which stops a clip that runs past
    the timeout and replaces the worker, so the actor and its other clips carry on."""

    def __init__(self, job: ClipJob, clip_timeout: float | None = None) -> None:
        self.pool: WorkerPool | None = None
        self.runner: ClipRunner | None = None
        if clip_timeout is not None:
            self.pool = WorkerPool(_CloudpickledJob(job), EngineSettings(workers=1, clip_timeout=clip_timeout), 1)
            return
        # A model that can't load here (a node without onnxruntime, a missing file, another
        # model than the driver's) is an actor start failure: Ray Data retries the start a
        # bounded number of times, then the driver re-runs the clips and finally marks them
        # worker-lost with this message.
        self.runner = job.start()

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist()
        columns: dict[str, list[Any]] = {"key": [], "status": [], "error": [], "frames": [], "seconds": [],
                                         "per_frame": [], "maps": []}
        for reducer in REDUCERS:
            columns[_stat_column("mean", reducer)] = []
            columns[_stat_column("var", reducer)] = []
        for row in rows:
            result = self._one(row)
            columns["key"].append(row["key"])
            columns["status"].append(result.status)
            columns["error"].append(result.error)
            columns["frames"].append(int(result.frames))
            columns["seconds"].append(float(result.seconds))
            columns["per_frame"].append(result.frame_payload() if result.has_payload() else None)
            columns["maps"].append(result.maps)
            for reducer in REDUCERS:
                mean, var = result.stats.get(reducer, (None, None))
                columns[_stat_column("mean", reducer)].append(mean)
                columns[_stat_column("var", reducer)].append(var)
        types = {"key": pa.string(), "status": pa.string(), "error": pa.string(), "frames": pa.int64(),
                 "per_frame": pa.string(), "maps": pa.large_binary()}
        return pa.table({name: pa.array(values, type=types.get(name, pa.float64()))
                         for name, values in columns.items()})

    def _one(self, row: dict[str, Any]) -> ClipResult:
        try:
            if self.runner is not None:
                return self.runner.compute(_row_spec(row))
            return self._in_pool(_row_spec(row))
        except Exception as exc:  # noqa: BLE001 - compute never raises; this is the last fence
            return ClipResult(DECODE_FAILED, error=f"{type(exc).__name__}: {exc}")

    def _in_pool(self, spec: ClipSpec) -> ClipResult:
        assert self.pool is not None
        self.pool.submit([spec])
        for _, result in self.pool.results():
            return result
        self.pool.pending.clear()  # no worker could start: nothing will run it
        reason = self.pool.last_startup_error or "the worker process exited before it was ready"
        return ClipResult(WORKER_LOST, error=f"no worker process could start on this Ray node: {reason}")


def _result_from_row(row: dict[str, Any]) -> ClipResult:
    stats = {}
    if row["status"] == OK:
        stats = {r: (row[_stat_column("mean", r)], row[_stat_column("var", r)]) for r in REDUCERS}
    return ClipResult(row["status"], stats=stats, error=row["error"], frames=int(row["frames"] or 0),
                      seconds=float(row["seconds"] or 0.0),
                      maps=row.get("maps")).with_frame_payload(row.get("per_frame"))


# ---- cluster ---------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise SalmatError(f"{passing('engine', 'ray')} needs Ray Data ({exc}); install it with pip install "
                          f"'salmat[ray]', or use {passing('engine', 'local')}") from None
    return ray


def ensure_ray(address: str | None) -> bool:
    """Join `address`, or start a local cluster sized to this machine; True when this call started Ray.

    A Ray already initialised in this process (a notebook, a test session) is used as it is.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": False,
                              "logging_level": logging.WARNING, "configure_logging": True}
    local = not address and not os.environ.get("RAY_ADDRESS")
    if local:
        kwargs["num_cpus"] = available_cores()  # a new local cluster: this machine's cores, no more
    # A new local cluster turns on Ray's token authentication and says so on stderr at WARNING level;
    # that cluster is this run's own and ends with it, so the notice is noise. (Joining a cluster
    # that has *no* authentication still warns: that one is the user's to know.)
    auth_logger = logging.getLogger(_AUTH_LOGGER)
    auth_level = auth_logger.level
    if local:
        auth_logger.setLevel(logging.ERROR)
    try:
        # "local": a new cluster even when this machine runs one already (`ray start`, whose address
        # Ray would otherwise join, and then refuse num_cpus); `--ray-address auto` joins that one.
        with _reaped(local):
            ray.init(address=address or ("local" if local else None), **kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError from a bad address
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise SalmatError(f"cannot start or join {where}: {' '.join(str(exc).split()) or type(exc).__name__}; "
                          f"check {named('ray_address')} (e.g. ray://head:10001 or auto), "
                          f"or use {passing('engine', 'local')}") from None
    finally:
        auth_logger.setLevel(auth_level)
    if not (address or os.environ.get("RAY_ADDRESS") or "").startswith("ray://"):
        _spend_actor_restart_notice(ray)
    return True


@contextmanager
def _reaped(local: bool) -> Iterator[None]:
    """A new local cluster's processes are started carrying the name of a reaper that kills them
    when this process ends, however it ends (`ray_reaper`): Ray's agents outlived a SIGKILL by a
    minute or more. Only while the cluster starts: later children of this process don't carry it."""
    name = ray_reaper.start() if local else None
    if name is None:
        yield
        return
    os.environ[ray_reaper.MARK] = name
    try:
        yield
    finally:
        os.environ.pop(ray_reaper.MARK, None)


_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
_RESTART_NOTICE = "has constructor arguments in the object store"


class _NoticeProbe:
    """An actor that is created only to be killed (see `_spend_actor_restart_notice`)."""

    def __init__(self, _arg: Any) -> None:
        pass


def _spend_actor_restart_notice(ray: Any) -> None:
    """Keep Ray's core worker from writing its actor-restart notice to this process's stderr.

    The first time a process creates an actor that may restart and whose constructor argument
    lives in the object store, Ray's C++ core logs an ERROR line about it (ray-project/ray#53727)
    straight to file descriptor 2, once per process. Every Ray Data actor pool is such an actor
    (Ray Data passes the map function by object reference), so every run printed it, although
    nothing failed. Here one such actor is created, with descriptor 2 pointed at a temporary
    file, and killed at once: the notice is spent there, and anything else written to stderr
    meanwhile is passed on. Best effort: on any failure the notice may simply appear later.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return
    with tempfile.TemporaryFile() as capture:
        try:
            os.dup2(capture.fileno(), 2)
            try:
                probe = ray.remote(num_cpus=0, max_restarts=1)(_NoticeProbe).remote(ray.put(None))
                ray.kill(probe, no_restart=True)
            finally:
                os.dup2(saved, 2)
        except Exception:  # noqa: BLE001 - a cosmetic step must never fail a run
            pass
        finally:
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
    rest = "".join(line for line in text.splitlines(keepends=True) if _RESTART_NOTICE not in line)
    if rest:
        sys.stderr.write(rest)
        sys.stderr.flush()


def actor_cpus(cluster_cpus: float, workers: int) -> float:
    """CPUs per actor: at most 1, and never the whole cluster — one CPU (or half) stays for Ray Data's own tasks."""
    spare = max(cluster_cpus - 1.0, cluster_cpus * 0.5)
    return round(max(0.05, min(1.0, spare / max(workers, 1))), 2)


# ---- the engine ------------------------------------------------------------


def run_ray(specs: Sequence[ClipSpec], job: ClipJob, settings: EngineSettings) -> Results:
    """Yield (spec, result) for every spec, in any order; never raises for a clip or a worker.

    Each actor starts `job` itself (it is pickled to the workers).
    """
    if not specs:
        return
    ray = _import_ray()
    started = ensure_ray(settings.ray_address)
    try:
        pending = {clip_key(spec): spec for spec in specs}
        last_error = "the Ray worker computing it died or was lost on every try"
        for attempt in range(MAX_ATTEMPTS):
            if not pending:
                break
            results = _with_stall_timeout(
                _execute(ray, pending, job, settings, one_per_block=attempt > 0),
                stall_seconds(settings))
            while True:
                try:
                    key, result = next(results)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - RayError, actor start failure: retry what is missing
                    last_error = _describe(exc)
                    logging.getLogger(__name__).warning("Ray execution %d/%d failed: %s",
                                                        attempt + 1, MAX_ATTEMPTS, last_error)
                    break
                spec = pending.pop(key, None)
                if spec is not None:
                    yield spec, result
        for spec in pending.values():
            yield spec, ClipResult(WORKER_LOST, error=f"no result after {MAX_ATTEMPTS} attempts on Ray workers "
                                                      f"(last error: {last_error})")
    finally:
        if started:
            ray.shutdown()
            ray_reaper.stop()  # the agents outlive a shutdown too: the reaper ends them, then itself


def stall_seconds(settings: EngineSettings) -> float:
    """How long an execution may go without yielding a result before it counts as lost.

    Ray Data can wait forever on an actor pool whose actors keep dying; this bound
    turns that into a retry and, at the end, `worker-lost` rows: `settings.stall_seconds`,
    or 600 s (longer when a clip may take longer).
    """
    if settings.stall_seconds is not None:
        return settings.stall_seconds
    return max(600.0, 2.0 * (settings.clip_timeout or 0.0) + 60.0)  # a timed-out clip is not a stall


def _with_stall_timeout(results: Iterator[T], seconds: float) -> Iterator[T]:
    """Re-yield `results` from a helper thread, raising `TimeoutError` after `seconds` without one."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue()

    def pump() -> None:
        try:
            for item in results:
                handoff.put(("item", item))
            handoff.put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which decides
            handoff.put(("error", exc))

    threading.Thread(target=pump, name="salmat-ray-results", daemon=True).start()
    while True:
        try:
            kind, value = handoff.get(timeout=seconds)
        except queue.Empty:
            raise TimeoutError(f"no result from the Ray workers for {seconds:.0f} s") from None
        if kind == "done":
            return
        if kind == "error":
            raise value
        yield value


def _describe(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:500]


def _execute(ray: Any, pending: dict[str, ClipSpec], job: ClipJob, settings: EngineSettings,
             one_per_block: bool) -> Iterator[tuple[str, ClipResult]]:
    """One dataset execution over the pending clips; yields (key, result) as result batches arrive."""
    from ray.data import ActorPoolStrategy, DataContext

    items = [_spec_row(key, spec) for key, spec in pending.items()]
    workers = max(1, min(settings.workers, len(items)))  # no idle actors
    blocks = len(items) if one_per_block else min(len(items), MAX_FIRST_BLOCKS)
    cluster_cpus = float(ray.cluster_resources().get("CPU", available_cores()))
    ctx = DataContext.get_current()
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    wanted = {
        "max_errored_blocks": -1,  # a lost block costs only its clips; they are re-run below
        "max_consecutive_actor_init_deaths": MAX_INIT_DEATHS,  # newer Ray Data only
        "enable_progress_bars": False,
    }
    saved = {name: getattr(ctx, name) for name in wanted if hasattr(ctx, name)}
    try:
        for name in saved:
            setattr(ctx, name, wanted[name])
        # Ray Data logs a failed block with a full traceback; here a lost clip becomes a row status
        # (worker-lost, with the error in words), so the run's stderr stays free of tracebacks.
        data_logger.setLevel(logging.CRITICAL)
        with warnings.catch_warnings():
            # max_restarts/max_task_retries have no named parameter yet, so the generic form warns;
            # copying the DataContext warns about Ray's own deprecated settings.
            warnings.simplefilter("ignore")
            dataset = ray.data.from_items(items, override_num_blocks=blocks)
            dataset = dataset.map_batches(
                _ClipActor,
                fn_constructor_args=(job, settings.clip_timeout),
                batch_size=1,
                batch_format="pyarrow",
                compute=ActorPoolStrategy(size=workers),
                num_cpus=actor_cpus(cluster_cpus, workers),
                num_gpus=settings.num_gpus_per_worker or None,
                max_restarts=MAX_RESTARTS,
                max_task_retries=MAX_TASK_RETRIES,
            )
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                yield row["key"], _result_from_row(row)
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)
        data_logger.setLevel(level)
