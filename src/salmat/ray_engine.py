"""`--engine ray`: the distinct clips as a Ray dataset, computed by an actor pool.

The flow (see docs/ray.md):

1. Each distinct `ClipSpec` becomes one row — its fields as plain columns plus a
   stable clip key (a hash of those fields) — of `ray.data.from_items`.
2. `map_batches` runs `_ClipActor`, a callable class: each actor loads the model
   once (`salmat.pipeline.load_model_for`) and calls
   `salmat.engine.compute_clip` per clip. It returns the status, the error, the
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

import hashlib
import json
import logging
import os
import queue
import threading
import warnings
from typing import Any, Callable, Iterator

from .decode import SamplingOptions
from .engine import ClipResult, ReduceOptions, compute_clip
from .errors import SalmatError
from .sources import ClipSpec
from .temporal import REDUCERS

MAX_ATTEMPTS = 3            # dataset executions per run: the first, then re-runs of missing clips
MAX_RESTARTS = 2            # restarts of one actor after it dies
MAX_TASK_RETRIES = 2        # re-submissions of one batch after its actor died
MAX_INIT_DEATHS = 2         # consecutive actors that may fail to start before an execution gives up
MAX_FIRST_BLOCKS = 4096     # blocks of the first execution (re-runs use one clip per block)

WORKER_LOST = "worker-lost"

ModelFactory = Callable[[Any], Any]


def _stat_column(kind: str, reducer: str) -> str:
    return f"{kind}_{reducer.replace('-', '_')}"


def clip_key(spec: ClipSpec) -> str:
    """A key that names a clip the same way in every run and on every node."""
    fields = [spec.path, bool(spec.raw), spec.width, spec.height, int(spec.bit_depth)]
    return hashlib.sha1(json.dumps(fields).encode("utf-8", "surrogatepass")).hexdigest()


def _spec_row(key: str, spec: ClipSpec) -> dict[str, Any]:
    return {"key": key, "path": spec.path, "raw": bool(spec.raw), "width": int(spec.width or 0),
            "height": int(spec.height or 0), "bit_depth": int(spec.bit_depth)}


def _row_spec(row: dict[str, Any]) -> ClipSpec:
    return ClipSpec(str(row["path"]), raw=bool(row["raw"]), width=int(row["width"]) or None,
                    height=int(row["height"]) or None, bit_depth=int(row["bit_depth"]))


class _ClipActor:
    """One Ray actor: holds the model, turns every clip into a result row, never raises from `__call__`."""

    def __init__(self, opts, sampling: SamplingOptions, reduce: ReduceOptions,
                 model_factory: ModelFactory | None = None) -> None:
        # A model that can't load here (a node without onnxruntime, a missing file) is an actor
        # start failure: Ray Data retries the start a bounded number of times, then the driver
        # re-runs the clips and finally marks them worker-lost with this message.
        if model_factory is None:
            from .pipeline import load_model_for

            model_factory = load_model_for
        self.model = model_factory(opts)
        self.sampling = sampling
        self.reduce = reduce

    def __call__(self, batch):
        import pyarrow as pa

        rows = batch.to_pylist()
        columns: dict[str, list] = {"key": [], "status": [], "error": [], "frames": [], "seconds": []}
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
            for reducer in REDUCERS:
                mean, var = result.stats.get(reducer, (None, None))
                columns[_stat_column("mean", reducer)].append(mean)
                columns[_stat_column("var", reducer)].append(var)
        types = {"key": pa.string(), "status": pa.string(), "error": pa.string(), "frames": pa.int64()}
        return pa.table({name: pa.array(values, type=types.get(name, pa.float64()))
                         for name, values in columns.items()})

    def _one(self, row: dict[str, Any]) -> ClipResult:
        try:
            return compute_clip(_row_spec(row), self.model, self.sampling, self.reduce)
        except Exception as exc:  # noqa: BLE001 - compute_clip never raises; this is the last fence
            return ClipResult("decode-failed", error=f"{type(exc).__name__}: {exc}")


def _result_from_row(row: dict[str, Any]) -> ClipResult:
    stats = {}
    if row["status"] == "ok":
        stats = {r: (row[_stat_column("mean", r)], row[_stat_column("var", r)]) for r in REDUCERS}
    return ClipResult(row["status"], stats=stats, error=row["error"], frames=int(row["frames"] or 0),
                      seconds=float(row["seconds"] or 0.0))


# ---- cluster ---------------------------------------------------------------


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise SalmatError(f"--engine ray needs Ray Data ({exc}); install it with pip install 'salmat[ray]', "
                          "or use --engine local") from None
    return ray


def local_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def ensure_ray(address: str | None) -> bool:
    """Join `address`, or start a local cluster sized to this machine; True when this call started Ray.

    A Ray already initialised in this process (a notebook, a test session) is used as it is.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": False,
                              "logging_level": logging.WARNING, "configure_logging": True}
    if not address and not os.environ.get("RAY_ADDRESS"):
        kwargs["num_cpus"] = local_cpus()  # a new local cluster: this machine's cores, no more
    try:
        ray.init(address=address or None, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError from a bad address
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise SalmatError(f"cannot start or join {where}: {' '.join(str(exc).split()) or type(exc).__name__}; "
                          "check --ray-address (e.g. ray://head:10001 or auto), or use --engine local") from None
    return True


def actor_cpus(cluster_cpus: float, workers: int) -> float:
    """CPUs per actor: at most 1, and never the whole cluster — one CPU (or half) stays for Ray Data's own tasks."""
    spare = max(cluster_cpus - 1.0, cluster_cpus * 0.5)
    return round(max(0.05, min(1.0, spare / max(workers, 1))), 2)


# ---- the engine ------------------------------------------------------------


def run_clips_ray(specs: list[ClipSpec], opts, sampling: SamplingOptions, reduce: ReduceOptions,
                  model_factory: ModelFactory | None = None) -> Iterator[tuple[ClipSpec, ClipResult]]:
    """Yield (spec, result) for every spec, in any order; never raises for a clip or a worker.

    `model_factory(opts)` builds the model inside each actor (default
    `salmat.pipeline.load_model_for`); it must be picklable.
    """
    if not specs:
        return
    ray = _import_ray()
    started = ensure_ray(getattr(opts, "ray_address", None))
    try:
        pending = {clip_key(spec): spec for spec in specs}
        last_error = "the Ray worker computing it died or was lost on every try"
        for attempt in range(MAX_ATTEMPTS):
            if not pending:
                break
            results = _with_stall_timeout(
                _execute(ray, pending, opts, sampling, reduce, model_factory, one_per_block=attempt > 0),
                stall_seconds(opts))
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


def stall_seconds(opts) -> float:
    """How long an execution may go without yielding a result before it counts as lost.

    Ray Data can wait forever on an actor pool whose actors keep dying; this bound
    turns that into a retry and, at the end, `worker-lost` rows. `SALMAT_RAY_STALL_S`
    overrides it; otherwise 4 × `--clip-timeout`, or 600 s without one.
    """
    override = os.environ.get("SALMAT_RAY_STALL_S")
    if override:
        return float(override)
    timeout = getattr(opts, "clip_timeout", None)
    return max(60.0, 4.0 * timeout) if timeout else 600.0


def _with_stall_timeout(results: Iterator, seconds: float) -> Iterator:
    """Re-yield `results` from a helper thread, raising `TimeoutError` after `seconds` without one."""
    handoff: queue.Queue = queue.Queue()

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


def _execute(ray, pending: dict[str, ClipSpec], opts, sampling: SamplingOptions, reduce: ReduceOptions,
             model_factory: ModelFactory | None, one_per_block: bool) -> Iterator[tuple[str, ClipResult]]:
    """One dataset execution over the pending clips; yields (key, result) as result batches arrive."""
    from ray.data import ActorPoolStrategy, DataContext

    items = [_spec_row(key, spec) for key, spec in pending.items()]
    workers = max(1, min(int(getattr(opts, "workers", 1) or 1), len(items)))  # no idle actors
    blocks = len(items) if one_per_block else min(len(items), MAX_FIRST_BLOCKS)
    cluster_cpus = float(ray.cluster_resources().get("CPU", local_cpus()))
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
                fn_constructor_args=(opts, sampling, reduce, model_factory),
                batch_size=1,
                batch_format="pyarrow",
                compute=ActorPoolStrategy(size=workers),
                num_cpus=actor_cpus(cluster_cpus, workers),
                num_gpus=float(getattr(opts, "num_gpus_per_worker", 0.0) or 0.0) or None,
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
