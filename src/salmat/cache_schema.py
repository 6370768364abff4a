"""The cache file: where it lives, its tables, and the migration every connection runs first
(`salmat.cache` reads and writes the rows)."""

from __future__ import annotations

import os
import sqlite3

CACHE_ENV = "SALMAT_CACHE_DIR"
CACHE_FILE = "results.sqlite"
SCHEMA_VERSION = 2  # 2: files.ctime_ns/dev, results.row_sha256
BUSY_TIMEOUT_S = 120.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS maps (
    clip TEXT NOT NULL,
    model TEXT NOT NULL,
    sampling TEXT NOT NULL,
    record BLOB NOT NULL,
    row_sha256 TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (clip, model, sampling)
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
CREATE TABLE IF NOT EXISTS quality (
    clip TEXT NOT NULL,
    model TEXT NOT NULL,
    sampling TEXT NOT NULL,
    reduce TEXT NOT NULL,
    quality TEXT NOT NULL,
    row_sha256 TEXT NOT NULL,
    PRIMARY KEY (clip, model, sampling, reduce)
);
"""
# Columns added by schema 2, to fresh and to older cache files alike. They are nullable, so
# an older salmat sharing the file keeps working; its rows (NULL here) are never trusted.
_ADDED_COLUMNS = (("files", "ctime_ns", "INTEGER"), ("files", "dev", "INTEGER"),
                  ("results", "row_sha256", "TEXT"))


def default_cache_path() -> str:
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        import platformdirs

        folder = platformdirs.user_cache_dir("salmat")
    return os.path.join(folder, CACHE_FILE)


def cache_files(path: str | None, enabled: bool = True) -> tuple[str, ...]:
    """The files the cache at `path` (None: the default location) keeps: the database and the
    journal, WAL and shared-memory files SQLite puts beside it; none when disabled."""
    if not enabled:
        return ()
    db = path or default_cache_path()
    return (db, *(db + suffix for suffix in ("-wal", "-shm", "-journal")))


def init_schema(db: sqlite3.Connection) -> None:
    """WAL mode, the busy timeout, and every table and column this salmat reads, added to a fresh
    or an older cache file alike (in one transaction, so concurrent runs migrate one at a time)."""
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"journal mode is {mode}, not WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("BEGIN IMMEDIATE")  # concurrent runs migrate one at a time
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        for table, column, kind in _ADDED_COLUMNS:
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        if int(db.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
