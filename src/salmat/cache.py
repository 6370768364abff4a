"""Persistent result cache: SQLite in WAL mode, shared safely by concurrent runs.

A cached result is keyed by

- the clip's content: the sha256 of the file (a `files` table maps
  (path, size, mtime_ns, inode) → sha256, so an unchanged file is not re-hashed),
  plus the raw-video geometry for `.yuv` sources;
- the model's fingerprint (weights sha256 + preprocessing + algorithm version);
- the sampling settings (mode, frame samples, max frames, max pixels);
- the reducer settings (EMA alpha, historical motion weights).

All four reducers' (mean, var) are stored together, so switching
`--temporal-aggregator` reruns no inference. Only `ok` results are stored, each
committed as soon as it finishes, so a run killed with SIGKILL keeps what it
finished. Concurrent runs wait on each other's writes (busy timeout) instead
of failing.

Location: `--cache PATH`; otherwise `$SALMAT_CACHE_DIR/results.sqlite` when that
variable is set; otherwise `results.sqlite` in the user cache folder
(`platformdirs.user_cache_dir("salmat")`, e.g. `~/.cache/salmat`). `--no-cache`
neither reads nor writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import sys
import time
from dataclasses import dataclass
from typing import Any

from .engine import ClipResult, ReduceOptions
from .errors import SalmatError
from .sources import ClipSpec

CACHE_ENV = "SALMAT_CACHE_DIR"
CACHE_FILE = "results.sqlite"
SCHEMA_VERSION = 1
# Bump when decoding, sampling or the reducers change in a way that changes results.
RESULTS_VERSION = "salmat-results/2"
BUSY_TIMEOUT_S = 120.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    clip TEXT NOT NULL,
    model TEXT NOT NULL,
    sampling TEXT NOT NULL,
    reduce TEXT NOT NULL,
    stats TEXT NOT NULL,
    frames INTEGER NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (clip, model, sampling, reduce)
);
"""


def default_cache_path() -> str:
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        import platformdirs

        folder = platformdirs.user_cache_dir("salmat")
    return os.path.join(folder, CACHE_FILE)


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stored: int = 0
    uncacheable: int = 0  # sources that are not regular files (pipes): never hashed, never cached
    hash_seconds: float = 0.0
    disabled: bool = False  # the cache failed mid-run; the run went on without it


@dataclass(frozen=True)
class CacheKey:
    clip: str
    model: str
    sampling: str
    reduce: str


def sampling_key(sampling: Any) -> str:
    return json.dumps({"sampling": sampling.sampling, "frame_samples": sampling.frame_samples,
                       "max_frames": sampling.max_frames, "max_pixels": sampling.max_pixels,
                       "results": RESULTS_VERSION}, sort_keys=True)


def reduce_key(reduce: ReduceOptions) -> str:
    return json.dumps({"ema_alpha": float(reduce.ema_alpha), "historical_motion": bool(reduce.historical_motion)},
                      sort_keys=True)


class ResultCache:
    """One connection to a cache file; use as a context manager or call `close()`."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.stats = CacheStats()
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
            self._retry(self._init_schema)
        except (OSError, sqlite3.Error) as exc:
            raise SalmatError(f"cannot open the result cache {self.path}: {exc}; "
                              "pass --cache PATH somewhere writable, or --no-cache") from None

    def _init_schema(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal mode is {mode}, not WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _retry(fn, *args):
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

    def content_hash(self, path: str) -> str | None:
        """sha256 of a regular file's content, via the (path, size, mtime, inode) shortcut; None for pipes etc."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        real = os.path.realpath(path)
        try:
            row = None if self.stats.disabled else self._retry(lambda: self._db.execute(
                "SELECT sha256 FROM files WHERE path = ? AND size = ? AND mtime_ns = ? AND inode = ?",
                (real, st.st_size, st.st_mtime_ns, st.st_ino)).fetchone())
        except sqlite3.Error as exc:
            self._broken(exc)
            row = None
        if row:
            return row[0]
        started = time.perf_counter()
        try:
            digest = file_sha256(path)
        except OSError:
            return None
        self.stats.hash_seconds += time.perf_counter() - started
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and not self.stats.disabled:
            try:
                self._retry(lambda: self._db.execute(
                    "INSERT OR REPLACE INTO files (path, size, mtime_ns, inode, sha256) VALUES (?, ?, ?, ?, ?)",
                    (real, st.st_size, st.st_mtime_ns, st.st_ino, digest)))
            except sqlite3.Error as exc:
                self._broken(exc)
        return digest

    def key(self, spec: ClipSpec, model_fingerprint: str, sampling: Any, reduce: ReduceOptions) -> CacheKey | None:
        digest = self.content_hash(spec.path)
        if digest is None:
            self.stats.uncacheable += 1
            return None
        clip = digest if not spec.raw else f"{digest}/raw/{spec.width}x{spec.height}/{spec.bit_depth}bit"
        return CacheKey(clip, model_fingerprint, sampling_key(sampling), reduce_key(reduce))

    # ---- results --------------------------------------------------------------

    def _broken(self, exc: Exception) -> None:
        """A cache that fails mid-run (disk full, file removed) only costs recomputation: warn once, stop using it."""
        if not self.stats.disabled:
            print(f"salmat: warning: the result cache {self.path} failed ({exc}); continuing without it",
                  file=sys.stderr)
        self.stats.disabled = True

    def get(self, key: CacheKey | None) -> ClipResult | None:
        if key is None:
            return None
        if self.stats.disabled:
            self.stats.misses += 1
            return None
        try:
            row = self._retry(lambda: self._db.execute(
                "SELECT stats, frames FROM results WHERE clip = ? AND model = ? AND sampling = ? AND reduce = ?",
                (key.clip, key.model, key.sampling, key.reduce)).fetchone())
        except sqlite3.Error as exc:
            self._broken(exc)
            row = None
        if row is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        stats = {name: (float(v[0]), float(v[1])) for name, v in json.loads(row[0]).items()}
        return ClipResult("ok", stats=stats, frames=int(row[1]), seconds=0.0)

    def put(self, key: CacheKey | None, result: ClipResult) -> None:
        """Store an `ok` result and commit it now (anything else is not cached)."""
        if key is None or result.status != "ok" or self.stats.disabled:
            return
        stats = json.dumps({name: [mean, var] for name, (mean, var) in result.stats.items()})
        try:
            self._retry(lambda: self._db.execute(
                "INSERT OR REPLACE INTO results (clip, model, sampling, reduce, stats, frames, seconds, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key.clip, key.model, key.sampling, key.reduce, stats, result.frames, result.seconds, time.time())))
        except sqlite3.Error as exc:
            self._broken(exc)
            return
        self.stats.stored += 1

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "hits": self.stats.hits, "misses": self.stats.misses,
                "stored": self.stats.stored, "uncacheable": self.stats.uncacheable,
                "failed": self.stats.disabled,
                "hash_seconds": round(self.stats.hash_seconds, 6)}

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> "ResultCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_cache(opts) -> ResultCache | None:
    """The cache `opts` asks for (`--cache PATH`, the default location, or None for `--no-cache`)."""
    if getattr(opts, "no_cache", False):
        return None
    return ResultCache(opts.cache or default_cache_path())
