"""Persistent result cache: SQLite in WAL mode, shared safely by concurrent runs.

A cached result is keyed by

- the clip's content: the sha256 of the file, plus the raw-video geometry for
  `.yuv` sources. A `files` table maps (path, size, mtime_ns, ctime_ns, inode,
  device) → sha256 so an unchanged file is not re-hashed. The ctime is what
  makes this safe: the kernel sets it on every write, truncate, chmod or utime
  and no user can set it back, so a file rewritten in place with its size and
  mtime restored is hashed again. A file changed within one timestamp tick of
  now could change again unseen within that tick, so hashing waits the tick out
  first (≤ 20 ms; 2 s on filesystems with coarse timestamps);
- the model's fingerprint (weights sha256 + preprocessing + algorithm version);
- the sampling settings and the reducer settings: every field of
  `SamplingOptions` and `ReduceOptions`, enumerated from the dataclasses, so a
  new setting is part of the key without anyone remembering to add it.

Hashing is bounded: only regular files are hashed (a FIFO or device is refused
without being opened), a file that does not read back exactly its stat size
(`/proc` files) is refused, and hashing stops at a deadline (`hash_timeout`,
default 60 s; the pipeline passes the clip timeout). A clip that can't be hashed
is uncacheable for this run (`key()` returns None) and is computed normally. A
file that changes while it is hashed, or between its key and its `put()`, is
not cached either.

The cache can't lie or crash. Each result row carries a sha256 over its key,
its stats and its frame count, and every value is checked when read (all four
reducers, finite numbers in [0, 1], a variance in [0, 1/4], at least one
frame). A row that fails any check is a *damaged entry*: it is a miss (the clip
is recomputed and the row replaced), it is counted in `describe()["damaged"]`,
and the first one is reported on stderr. A cache file that can't be used at all
(not a database, truncated, malformed pages, a directory or other non-regular
file at its path, read-only, no WAL support) never blocks a run: salmat warns
once on stderr, runs without the cache (`describe()["failed"]` is true) and
leaves the file alone: it never deletes or moves a file it could not read, since
another run may still have it open (moving a WAL database aside under a live
connection can corrupt it). Delete it by hand to start a fresh cache. The one
cache problem that stops a run is an explicit `--cache PATH` whose folder can't
be created (exit 2, before any work); for the default location that is a
warning too.

All four reducers' (mean, var) are stored together, so switching
`--temporal-aggregator` reruns no inference. The `maps` table keeps each clip's
`clip_maps.ClipMaps` (up to `MAPS_CAP_BYTES`) keyed by content, model and sampling
only: another EMA alpha or compare's map agreement reduce them again, no decode
(`run_clips`). Keys and row checks: `cache_rows`; hashing: `file_hash`. Only `ok` results are stored, each
committed as soon as it finishes, so a run killed with SIGKILL keeps what it
finished. Concurrent runs wait on each other's writes (busy timeout) instead
of failing.

Location: `--cache PATH`; otherwise `$SALMAT_CACHE_DIR/results.sqlite` when that
variable is set; otherwise `results.sqlite` in the user cache folder
(`platformdirs.user_cache_dir("salmat")`, e.g. `~/.cache/salmat`). `--no-cache`
neither reads nor writes.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

from .cache_rows import RESULTS_VERSION as RESULTS_VERSION
from .cache_rows import (
    CacheKey,
    decode_row,
    encode_stats,
    maps_digest,
    quality_digest,
    quality_problem,
    reject_constant,
    row_digest,
    settings_json,
)
from .cache_rows import reduce_key as reduce_key
from .cache_rows import sampling_key as sampling_key
from .cache_schema import BUSY_TIMEOUT_S, init_schema
from .cache_schema import CACHE_ENV as CACHE_ENV
from .cache_schema import cache_files as cache_files
from .cache_schema import default_cache_path as default_cache_path
from .clip_maps import MAPS_CAP_BYTES, ClipMaps, decode, within_cap
from .errors import ClipError, SalmatError, warn
from .file_hash import HashTimeout, NotHashable, file_sha256
from .file_hash import signature as _signature
from .option_spec import passing, switched_on
from .sources import ClipSpec, open_source
from .values import OK, QUALITY_COLUMNS, ClipResult, ReduceOptions, RoiOptions, SamplingOptions

DEFAULT_HASH_TIMEOUT_S = 60.0

_T = TypeVar("_T")

def _timestamp_tick_ns(st: os.stat_result) -> int:
    """How long a file timestamp can stay the same while the file changes again. Timestamps
    that look whole-millisecond come from a coarse filesystem (FAT, exFAT, HFS+, some network
    mounts): two seconds. Otherwise the kernel stamps files from its coarse clock, which
    ticks every 1–10 ms: 20 ms."""
    return 2_000_000_000 if st.st_ctime_ns % 1_000_000 == 0 else 20_000_000


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stored: int = 0
    uncacheable: int = 0  # not cached this run: not regular files (pipes), unhashable in time, or changing
    damaged: int = 0  # entries that failed their checks: each was a miss, recomputed
    hash_timeouts: int = 0  # files whose hash did not finish before the deadline (also uncacheable)
    changed: int = 0  # results not stored because their file changed after it was hashed
    hash_seconds: float = 0.0
    map_hits: int = 0  # clips whose maps came from the cache (reduced again: no decode, no model)
    maps_stored: int = 0
    disabled: bool = False  # the cache could not be opened, or failed mid-run; the run went on without it


class ResultCache:
    """One connection to a cache file; use as a context manager or call `close()`.

    `hash_timeout`: seconds one file's content hash may take (None: 60 s); a file not
    hashed in time is uncacheable for this run. `strict`: an unusable cache folder raises
    `SalmatError` (an explicit `--cache`) instead of a warning (the default location).
    A cache file that can't be used never raises: the cache is disabled with a warning.
    """

    def __init__(self, path: str, hash_timeout: float | None = None, *, strict: bool = True) -> None:
        self.path = os.path.abspath(path)
        self.stats = CacheStats()
        self.hash_timeout = DEFAULT_HASH_TIMEOUT_S if hash_timeout is None else float(hash_timeout)
        self._db: sqlite3.Connection | None = None
        self._warned: set[str] = set()
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            if strict:
                raise SalmatError(f"cannot create the folder {folder} for the result cache: "
                                  f"{exc.strerror or exc}; pass {passing('cache', 'PATH')} in a folder that "
                                  f"exists or can be created, or {switched_on('no_cache')}") from None
            self._unusable(f"its folder can't be created: {exc.strerror or exc}")
            return
        problem = self._open()
        if problem:
            self._unusable(problem)

    def _open(self) -> str | None:
        """Connect and set up the schema; why the file can't be used, or None."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            return exc.strerror or str(exc)
        if st is not None and not stat.S_ISREG(st.st_mode):  # a FIFO would block SQLite's first read
            return "it is a directory" if stat.S_ISDIR(st.st_mode) else "it is not a regular file"
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
            self._retry(self._init_schema)
        except (OSError, sqlite3.Error) as exc:
            self.close()
            self._db = None
            damaged = isinstance(exc, sqlite3.DatabaseError) and any(
                word in str(exc) for word in ("not a database", "malformed", "corrupt"))
            return f"it is damaged or not a salmat cache: {exc}" if damaged else str(exc)
        return None

    def _unusable(self, reason: str) -> None:
        self.stats.disabled = True
        warn(f"cannot use the result cache {self.path} ({reason}); continuing without it, "
             "so every clip is computed; remove or replace that file to start a fresh cache, or pass "
             f"{passing('cache', 'PATH')} or {switched_on('no_cache')}")
        self._warned.add("broken")

    def _init_schema(self) -> None:
        init_schema(cast(sqlite3.Connection, self._db))

    @staticmethod
    def _retry(fn: Callable[..., _T], *args: Any) -> _T:
        """SQLite's busy handler doesn't cover every lock (e.g. switching to WAL): retry those."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # ---- keys -----------------------------------------------------------------

    def content_hash(self, path: str, deadline: float | None = None) -> str | None:
        """sha256 of a regular file's content (None: not hashable now; see `file_sha256`)."""
        found = self._content(path, deadline)
        return found[0] if found else None

    def _content(self, path: str, deadline: float | None) -> tuple[str, tuple[int, ...]] | None:
        """(sha256, signature) via the files-table shortcut; None for pipes, devices, files that
        can't be hashed before `deadline`, and files that change while they are hashed."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        signature = _signature(st)
        real = os.path.realpath(path)
        row = self._query("SELECT sha256 FROM files WHERE path = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ? "
                          "AND inode = ? AND dev = ?", (real, *signature))
        if row is not None:
            if isinstance(row[0], str) and len(row[0]) == 64 and all(c in "0123456789abcdef" for c in row[0]):
                return row[0], signature
            self._damaged(f"the remembered hash of {real} is {row[0]!r}")
        started = time.perf_counter()
        # A change within the same timestamp tick as `st` would leave the signature as it is.
        # For a file changed that recently, wait the tick out first (≤ 20 ms on local disks):
        # any later change then gets a new ctime. A ctime in the future (clock skew) is never
        # remembered.
        remember = True
        wait_ns = st.st_ctime_ns + _timestamp_tick_ns(st) - time.time_ns()
        if wait_ns > _timestamp_tick_ns(st):
            remember = False
        elif wait_ns > 0:
            time.sleep(wait_ns / 1e9)
            try:
                if _signature(os.stat(path)) != signature:
                    return None  # it is being changed
            except OSError:
                return None
        try:
            digest = file_sha256(path, deadline, expect=signature)
        except HashTimeout:
            self.stats.hash_timeouts += 1
            self._warn_once("timeout", f"hashing {path} for the result cache took longer than "
                                       f"{self.hash_timeout:g} s; it is computed without the cache this run "
                                       "(later ones are only counted in the audit)")
            return None
        except (OSError, NotHashable):
            return None
        finally:
            self.stats.hash_seconds += time.perf_counter() - started
        try:
            after = os.stat(path)
        except OSError:
            return None
        if _signature(after) != signature:
            return None  # it changed while it was hashed: the digest may describe no version of it
        if remember:
            self._execute("INSERT OR REPLACE INTO files (path, size, mtime_ns, ctime_ns, inode, dev, sha256) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", (real, *signature, digest))
        return digest, signature

    def key(self, spec: ClipSpec, model_fingerprint: str, sampling: SamplingOptions,
            reduce: ReduceOptions, hash_timeout: float | None = None, roi: RoiOptions | None = None) -> CacheKey | None:
        """The cache key of one clip; None when it can't be cached this run (counted as uncacheable).

        `hash_timeout` overrides the cache's for this call (seconds). A per-frame spec (`frames`
        set) is never cached: its result is not the clip's sampled one this key stands for. A spec
        with a reference is keyed on the reference's content and `roi` too (`_with_reference`)."""
        if spec.frames is not None:
            self.stats.uncacheable += 1
            return None
        timeout = self.hash_timeout if hash_timeout is None else hash_timeout
        found = self._content(spec.path, time.monotonic() + timeout)
        if found is None or not self._is_the_checked_file(spec, found[1]):
            self.stats.uncacheable += 1
            return None
        digest, signature = found
        clip = digest if not spec.raw else f"{digest}/raw/{spec.width}x{spec.height}/{spec.bit_depth}bit"
        key = CacheKey(clip, model_fingerprint, sampling_key(sampling), reduce_key(reduce),
                       path=spec.path, signature=signature)
        return key if spec.reference is None else self._with_reference(key, spec.reference, roi, timeout)

    def _with_reference(self, key: CacheKey, reference: ClipSpec, roi: RoiOptions | None,
                        timeout: float) -> CacheKey | None:
        """`key` extended with the reference's content and the ROI settings (None: uncacheable)."""
        found = self._content(reference.path, time.monotonic() + timeout)
        if found is None or not self._is_the_checked_file(reference, found[1]):
            self.stats.uncacheable += 1
            return None
        digest = found[0] if not reference.raw else (f"{found[0]}/raw/{reference.width}x{reference.height}/"
                                                     f"{reference.bit_depth}bit")
        extra = json.dumps({"reference": digest, "roi": settings_json(roi) if roi is not None else None},
                           sort_keys=True)
        return replace(key, reduce=f"{key.reduce}+{extra}")

    def get_with_quality(self, key: CacheKey | None) -> ClipResult | None:
        """`get`, plus the ROI-family values stored under the same key; without them, a miss."""
        found = self.get(key)
        if found is None or key is None:
            return found
        row = self._query("SELECT quality, row_sha256 FROM quality WHERE clip = ? AND model = ? AND sampling = ? "
                          "AND reduce = ?", (key.clip, key.model, key.sampling, key.reduce))
        problem = self._quality_row_problem(key, *row) if row is not None else "none stored"
        if row is None or problem:
            if row is not None and problem:
                self._damaged(problem)
            self.stats.hits -= 1
            self.stats.misses += 1
            return None
        found.quality = {k: float("nan") if v is None else float(v) for k, v in json.loads(row[0]).items()}
        return found

    @staticmethod
    def _quality_row_problem(key: CacheKey, text: object, check: object) -> str | None:
        if not isinstance(text, str) or check != quality_digest(key, text):
            return "its full-reference values' checksum does not match"
        try:
            return quality_problem(json.loads(text, parse_constant=reject_constant))
        except (ValueError, RecursionError) as exc:
            return f"its full-reference values are not JSON ({exc})"

    def put_with_quality(self, key: CacheKey | None, result: ClipResult) -> None:
        """`put`, plus the result's ROI-family values (stored first: a result without them is a miss)."""
        if key is None or result.status != OK or self.stats.disabled:
            return
        values = {name: result.quality.get(name) for name in QUALITY_COLUMNS}
        values = {k: (v if v is not None and math.isfinite(v) else None) for k, v in values.items()}
        if quality_problem(values):
            return
        text = json.dumps(values, sort_keys=True, allow_nan=False)
        if self._execute("INSERT OR REPLACE INTO quality (clip, model, sampling, reduce, quality, row_sha256) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (key.clip, key.model, key.sampling, key.reduce, text, quality_digest(key, text))):
            self.put(key, result)

    @staticmethod
    def _is_the_checked_file(spec: ClipSpec, signature: tuple[int, ...]) -> bool:
        """With confinement, the file hashed must be the one `open_source` checks inside the
        root (the same inode, unchanged): a link re-pointed outside after planning must not
        be answered from the cache with another file's result."""
        if spec.confine is None:
            return True
        try:
            with open_source(spec) as checked:
                return _signature(checked.stat) == signature
        except ClipError:
            return False  # the engine opens it again and reports why

    # ---- results --------------------------------------------------------------

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warn(message)

    def _broken(self, exc: Exception) -> None:
        """A cache that fails mid-run (disk full, file removed, malformed pages) only costs
        recomputation: warn once, stop using it."""
        if not self.stats.disabled:
            damaged = isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc)
            self._warn_once("broken", f"the result cache {self.path} failed ({exc}); continuing "
                                      "without it" + ("; the file is damaged: remove it to start a fresh cache"
                                                      if damaged else ""))
        self.stats.disabled = True

    def _damaged(self, reason: str) -> None:
        """A row that fails its checks is a miss, never a value: count it, report the first."""
        self.stats.damaged += 1
        self._warn_once("damaged", f"the result cache {self.path} holds a damaged entry ({reason}); "
                                   "it is recomputed and replaced (later damaged entries are only counted in the "
                                   "audit)")

    def _query(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row, or None (also when the cache is disabled or fails now)."""
        if self.stats.disabled or self._db is None:
            return None
        db = self._db
        try:
            return cast("tuple[Any, ...] | None", self._retry(lambda: db.execute(sql, args).fetchone()))
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            self._broken(exc)
            return None

    def _execute(self, sql: str, args: tuple[Any, ...]) -> bool:
        if self.stats.disabled or self._db is None:
            return False
        db = self._db
        try:
            self._retry(lambda: db.execute(sql, args))
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            self._broken(exc)
            return False
        return True

    def get(self, key: CacheKey | None) -> ClipResult | None:
        """The stored result for `key`, or None (a miss); a damaged entry is a miss."""
        if key is None:
            return None
        row = self._query("SELECT stats, frames, row_sha256 FROM results WHERE clip = ? AND model = ? "
                          "AND sampling = ? AND reduce = ?", (key.clip, key.model, key.sampling, key.reduce))
        if row is None:
            self.stats.misses += 1
            return None
        try:
            found = decode_row(key, *row)
        except Exception as exc:  # noqa: BLE001 - whatever is stored, a bad row is a miss, never a crash
            found = f"{type(exc).__name__}: {exc}"
        if not isinstance(found, ClipResult):
            self._damaged(found)
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return found

    def get_maps(self, key: CacheKey | None) -> ClipMaps | None:
        """The clip's stored maps (any reduce settings), or None; a damaged row is a miss."""
        if key is None:
            return None
        row = self._query("SELECT record, row_sha256 FROM maps WHERE clip = ? AND model = ? AND sampling = ?",
                          (key.clip, key.model, key.sampling))
        if row is None:
            return None
        record, check = row
        if not isinstance(record, bytes) or check != maps_digest(key, record):
            self._damaged("a map record's checksum does not match its content")
            return None
        try:
            found = decode(record, MAPS_CAP_BYTES)
        except ValueError as exc:
            self._damaged(str(exc))
            return None
        self.stats.map_hits += 1
        return found

    def _put_maps(self, key: CacheKey, record: bytes | None) -> None:
        if record is None or not within_cap(record, MAPS_CAP_BYTES):  # what a read would take, no more
            return
        if self._execute("INSERT OR REPLACE INTO maps (clip, model, sampling, record, row_sha256, created) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (key.clip, key.model, key.sampling, record, maps_digest(key, record), time.time())):
            self.stats.maps_stored += 1

    def put(self, key: CacheKey | None, result: ClipResult) -> None:
        """Store an `ok` result and commit it now. Anything else is not cached: other statuses,
        incomplete or impossible stats, and results whose file changed after it was hashed."""
        if key is None or result.status != OK or self.stats.disabled:
            return
        stats = encode_stats(result)
        if stats is None:
            return
        if key.path:
            try:
                unchanged = _signature(os.stat(key.path)) == key.signature
            except OSError:
                unchanged = False
            if not unchanged:
                self.stats.changed += 1
                return
        frames = int(result.frames)
        if self._execute("INSERT OR REPLACE INTO results (clip, model, sampling, reduce, stats, frames, seconds, "
                         "created, row_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key.clip, key.model, key.sampling, key.reduce, stats, frames, float(result.seconds),
                          time.time(), row_digest(key, stats, frames))):
            self.stats.stored += 1
        self._put_maps(key, result.maps)

    def count(self) -> int:
        """Rows in the results table (0 when the cache could not be opened)."""
        if self._db is None:
            return 0
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "hits": self.stats.hits, "misses": self.stats.misses,
                "stored": self.stats.stored, "uncacheable": self.stats.uncacheable,
                "damaged": self.stats.damaged, "hash_timeouts": self.stats.hash_timeouts,
                "changed": self.stats.changed, "failed": self.stats.disabled,
                "map_hits": self.stats.map_hits, "maps_stored": self.stats.maps_stored,
                "hash_seconds": round(self.stats.hash_seconds, 6)}

    def close(self) -> None:
        if self._db is None:
            return
        try:
            self._db.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cache(path: str | None, enabled: bool = True, hash_timeout: float | None = None) -> ResultCache | None:
    """The cache at `path` (None: the default location), or None when disabled (`--no-cache`).

    `hash_timeout`: seconds one clip's content hash may take (None: 60 s; the pipeline
    passes `--clip-timeout`). Only an explicit `path` whose folder can't be created raises
    (`SalmatError`); any other problem with the cache is a warning and a run without it."""
    if not enabled:
        return None
    return ResultCache(path or default_cache_path(), hash_timeout, strict=path is not None)
