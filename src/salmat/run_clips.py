"""The one run path for clips: cache hits first, the engine for the misses, the cache filled.

`materialize`, `compare` and `preview` (and `frames`) all hand their planned
sources and a `ClipJob` to `run_clips`. For each distinct clip, in this order:

1. a resolution failure (missing source, no geometry, …) is its result as it is;
2. a stored result for this model, sampling *and* reduce settings answers it
   (unless the caller needs the clip's maps and none are stored);
3. stored maps for this model and sampling (any reduce settings: an EMA-alpha
   sweep, another reducer, compare's map agreement) are reduced again here: no
   decode, no model;
4. the rest run through `engines.get_engine` (inline, pool or Ray; `--workers`,
   `--clip-timeout`), and each `ok` result, with its maps when they fit
   (`clip_maps.MAPS_CAP_BYTES`), is committed to the cache as it finishes.

A run the cache answered says how many clips came from it (`ClipRun.line`, on
stderr unless quiet; the audit and compare's report count them too).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .cache import ResultCache
from .cache_rows import CacheKey
from .clip_maps import MAPS_CAP_BYTES, ClipMaps, decode
from .compute import ClipJob
from .engines import EngineSettings, get_engine
from .progress import ClipProgress
from .sources import ClipSpec, SourceFailure
from .values import OK, WORKER_LOST, ClipResult

KEEP_ALL_MAPS = sys.maxsize  # a caller that needs every clip's maps, whatever their size


@dataclass(frozen=True)
class RunSettings:
    """Where and how clips run; nothing here changes a value (so none of it is in a cache key)."""

    engine: str = "local"
    workers: int = 1
    clip_timeout: float | None = None
    ray_address: str | None = None
    num_gpus_per_worker: float = 0.0
    quiet: bool = False

    @classmethod
    def of(cls, opts: object) -> RunSettings:
        """The run settings of a command's options (each field read where the command has it)."""
        return cls(**{f: getattr(opts, f) for f in cls.__dataclass_fields__ if hasattr(opts, f)})

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(self.workers, self.clip_timeout, self.ray_address, self.num_gpus_per_worker)


def engine_name(settings: RunSettings, clips: int) -> str:
    """Ray or the feeder when asked; the pool for several workers and clips, or whenever a clip
    timeout is set (it needs a process it can stop); otherwise this process."""
    if settings.engine in ("ray", "feeder"):
        return settings.engine
    if clips > 0 and (settings.clip_timeout or (settings.workers > 1 and clips > 1)):
        return "pool"
    return "inline"


@dataclass
class ClipRun:
    """A result per source, each clip's maps when they were asked for, and where results came from."""

    results: list[ClipResult]
    maps: list[ClipMaps | None] = field(default_factory=list)
    cached: int = 0     # clips answered by a stored result
    reduced: int = 0    # clips reduced again from stored maps (no decode, no model)
    computed: int = 0   # clips sent to the engine

    @property
    def from_cache(self) -> int:
        return self.cached + self.reduced

    def line(self) -> str:
        clips = self.from_cache + self.computed
        return (f"{self.from_cache} of {clips} clip(s) came from the result cache ({self.cached} stored results, "
                f"{self.reduced} reduced again from stored maps); {self.computed} computed")


def run_clips(sources: Sequence[ClipSpec | SourceFailure], job: ClipJob, settings: RunSettings,
              cache: ResultCache | None, *, rows: int | None = None, source_rows: np.ndarray | None = None,
              need_maps: bool = False) -> ClipRun:
    """A result per source (see the module docstring); never raises for a clip.

    `source_rows[i]`: how many rows take source i's values (progress counts rows with it;
    `rows` is their total). `need_maps`: every `ok` clip's `ClipMaps` are returned too."""
    per_source = [1] * len(sources) if source_rows is None else source_rows.tolist()
    job = replace(job, keep_maps=KEEP_ALL_MAPS if need_maps else (MAPS_CAP_BYTES if cache is not None else 0))
    run = ClipRun([ClipResult(s.status, error=s.message) if isinstance(s, SourceFailure)
                   else ClipResult(WORKER_LOST, error="the engine returned no result for this clip")
                   for s in sources], [None] * len(sources))
    todo = {i: s for i, s in enumerate(sources) if isinstance(s, ClipSpec)}
    keys: dict[int, CacheKey | None] = {}
    with ClipProgress(len(todo), sum(per_source) if rows is None else rows, quiet=settings.quiet) as progress:
        if cache is not None:
            for i, spec in list(todo.items()):
                keys[i] = cache.key(spec, job.model.fingerprint or "", job.sampling, job.reduce, roi=job.roi)
                if _from_cache(run, i, cache, keys[i], job, need_maps, _full_reference(spec, job)):
                    progress.update(run.results[i], rows=per_source[i])
                    del todo[i]
        position = {spec: i for i, spec in todo.items()}
        engine = get_engine(engine_name(settings, len(todo)))
        for spec, result in engine(list(todo.values()), job, settings.engine_settings()):
            i = position[spec]
            run.results[i], run.computed = result, run.computed + 1
            if cache is not None:
                _store(cache, keys[i], result, _full_reference(spec, job))
            if need_maps and result.status == OK and result.maps is not None:
                run.maps[i] = decode(result.maps)
            result.maps = None  # held once, decoded: the bytes are not needed past here
            progress.update(result, rows=per_source[i])
    if run.from_cache and not settings.quiet:  # a run the cache served says so (a fresh one has nothing to say)
        print(f"salmat: {run.line()}", file=sys.stderr, flush=True)
    return run


def _full_reference(spec: ClipSpec, job: ClipJob) -> bool:
    """Whether the clip's result carries full-reference values (stored and read beside it)."""
    return job.roi is not None and spec.reference is not None


def _store(cache: ResultCache, key: CacheKey | None, result: ClipResult, full_reference: bool) -> None:
    """A computed result into the cache, with its full-reference values when the clip has a reference."""
    if full_reference:
        cache.put_with_quality(key, result)
    else:
        cache.put(key, result)


def _from_cache(run: ClipRun, i: int, cache: ResultCache, key: CacheKey | None, job: ClipJob,
                need_maps: bool, full_reference: bool) -> bool:
    """Answer clip i from the cache (a stored result, else stored maps reduced again); False: a miss."""
    hit = None if key is None else cache.get_with_quality(key) if full_reference else cache.get(key)
    record = cache.get_maps(key) if key is not None and (need_maps or hit is None) else None
    if hit is not None and (record is not None or not need_maps):
        run.results[i], run.maps[i], run.cached = hit, record, run.cached + 1
        return True
    if record is None or full_reference:  # stored maps hold no full-reference values: computed again
        return False
    result = ClipResult(OK, stats=record.stats(job.reduce), frames=len(record.maps))
    cache.put(key, result)
    run.results[i], run.maps[i], run.reduced = result, record, run.reduced + 1
    return True
