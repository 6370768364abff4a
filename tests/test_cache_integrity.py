"""The result cache can't lie or crash.

- A clip rewritten in place with its size and mtime restored is hashed again (ctime).
- A damaged entry (stats that are not JSON, of the wrong shape, missing reducers,
  non-numeric, NULL, NaN, out of range; a bad frame count; a checksum that doesn't match)
  is a miss: recomputed, counted in `describe()["damaged"]`, warned about once, replaced.
- A cache file that can't be used (garbage, truncated, broken pages, a directory or a FIFO
  at its path, read-only) never blocks a run: one warning, the run goes on without it, and
  the file is left as it was.
- Hashing is bounded: FIFOs and devices are refused unopened, `/proc` files are refused,
  and a file that can't be hashed before the deadline is computed without the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import salmat
import salmat.cache as cache_mod
from conftest import read_jsonl, run_cli_inprocess, saliency_values, write_jsonl
from salmat.cache import CacheKey, ResultCache, reduce_key, sampling_key
from salmat.sources import ClipSpec
from salmat.values import REDUCERS, ClipResult, ReduceOptions, SamplingOptions
from synthetic_clips import write_disc_clip, write_raw_yuv

FAST = dict(workers=1, quiet=True, frame_samples=3)
STATS = {name: (0.1 + i / 100, 0.01 + i / 1000) for i, name in enumerate(REDUCERS)}
WARNING = "salmat: warning:"


def _ok(stats=STATS, frames=3):
    return ClipResult("ok", stats=dict(stats), frames=frames)


def _key(cache, clip):
    return cache.key(ClipSpec(str(clip)), "model-fp", SamplingOptions(), ReduceOptions(0.6))


def _columns(db, table):
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _tamper(path, key, stats, frames=3, checksum="fix"):
    """Rewrite `key`'s stored row. checksum="fix" gives the row a matching checksum (so the
    content checks, not the checksum, must catch it); None stores none; "keep" leaves it."""
    with sqlite3.connect(path) as db:
        sets, args = ["stats = ?", "frames = ?"], [stats, frames]
        if "row_sha256" in _columns(db, "results") and checksum != "keep":
            from salmat.cache_rows import row_digest

            sets.append("row_sha256 = ?")
            args.append(row_digest(key, stats, frames) if checksum == "fix" else None)
        db.execute(f"UPDATE results SET {', '.join(sets)} WHERE clip = ? AND model = ? AND sampling = ? "
                   "AND reduce = ?", (*args, key.clip, key.model, key.sampling, key.reduce))
        assert db.total_changes == 1


def _permissive_cache(path):
    """A cache file whose results table takes NULLs (another tool's, or a damaged schema)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE results (clip TEXT, model TEXT, sampling TEXT, reduce TEXT, stats, frames, "
                   "seconds REAL, created REAL, PRIMARY KEY (clip, model, sampling, reduce))")


def _stats_json(**changes):
    stats = {name: list(pair) for name, pair in STATS.items()}
    stats.update(changes)
    return json.dumps({k: v for k, v in stats.items() if v is not None})


DAMAGED_ROWS = {
    "not JSON": ("{not json", 3),
    "JSON list": ("[0.5, 0.01]", 3),
    "JSON string": ('"ok"', 3),
    "JSON number": ("0.5", 3),
    "JSON null": ("null", 3),
    "missing reducer": (_stats_json(max=None), 3),
    "extra reducer": (_stats_json(median=[0.5, 0.01]), 3),
    "text values": (_stats_json(mean=["0.5", "0.01"]), 3),
    "null pair": (json.dumps({name: None for name in REDUCERS}), 3),
    "null value": (_stats_json(mean=[None, 0.01]), 3),
    "short pair": (_stats_json(mean=[0.5]), 3),
    "bool value": (_stats_json(mean=[True, 0.01]), 3),
    "NaN": ('{"mean": [NaN, 0.01], "ema": [0.1, 0.01], "max": [0.1, 0.01], "motion-weighted": [0.1, 0.01]}', 3),
    "Infinity": (_stats_json(ema=[0.1, float("inf")]), 3),
    "mean above 1": (_stats_json(mean=[1.5, 0.01]), 3),
    "negative variance": (_stats_json(max=[0.5, -0.2]), 3),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, 3),
    "NULL stats": (None, 3),
    "blob stats": (b"\x00\x01binary", 3),
    "zero frames": (_stats_json(), 0),
    "NULL frames": (_stats_json(), None),
    "text frames": (_stats_json(), "three"),
    "real frames": (_stats_json(), 2.5),
}


@pytest.mark.parametrize("stats, frames", DAMAGED_ROWS.values(), ids=DAMAGED_ROWS.keys())
def test_a_damaged_entry_is_a_counted_warned_miss_then_replaced(tmp_path, capsys, stats, frames):
    clip, path = tmp_path / "clip.mp4", tmp_path / "cache.sqlite"
    clip.write_bytes(b"clip content")
    _permissive_cache(path)
    with ResultCache(str(path)) as cache:
        key = _key(cache, clip)
        cache.put(key, _ok())
        assert cache.get(key).stats == STATS
    _tamper(path, key, stats, frames)
    with ResultCache(str(path)) as cache:
        assert cache.get(_key(cache, clip)) is None
        record = cache.describe()
        assert (record["hits"], record["misses"], record.get("damaged")) == (0, 1, 1)
        assert record["failed"] is False  # one bad row is not a bad cache
        err = capsys.readouterr().err
        assert err.count(WARNING) == 1 and "damaged entry" in err and str(path) in err
        cache.put(key, _ok())  # the recomputed result replaces it
        assert cache.get(key).stats == STATS


@pytest.mark.parametrize("checksum", ["keep", None])
def test_a_plausible_value_that_is_not_what_was_stored_is_a_miss(tmp_path, checksum):
    """Bit rot or an edit that leaves a well-formed row: the row's checksum catches it."""
    clip, path = tmp_path / "clip.mp4", tmp_path / "cache.sqlite"
    clip.write_bytes(b"clip content")
    with ResultCache(str(path)) as cache:
        key = _key(cache, clip)
        cache.put(key, _ok())
    _tamper(path, key, _stats_json(mean=[0.7, 0.01]), 3, checksum=checksum)
    with ResultCache(str(path)) as cache:
        assert cache.get(key) is None and cache.describe()["damaged"] == 1


def test_damaged_entries_are_warned_about_once_and_each_counted(tmp_path, capsys):
    path = tmp_path / "cache.sqlite"
    clips = [tmp_path / f"clip{i}.mp4" for i in range(3)]
    with ResultCache(str(path)) as cache:
        keys = []
        for i, clip in enumerate(clips):
            clip.write_bytes(f"clip {i}".encode())
            keys.append(_key(cache, clip))
            cache.put(keys[-1], _ok())
    for key in keys:
        _tamper(path, key, "garbage")
    with ResultCache(str(path)) as cache:
        assert [cache.get(k) for k in keys] == [None, None, None]
        assert cache.describe()["damaged"] == 3 and cache.describe()["misses"] == 3
    assert capsys.readouterr().err.count(WARNING) == 1


def test_a_non_finite_or_incomplete_result_is_never_stored(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"clip content")
    with ResultCache(str(tmp_path / "cache.sqlite")) as cache:
        key = _key(cache, clip)
        for bad in ({**STATS, "mean": (float("nan"), 0.01)}, {**STATS, "max": (0.5, float("inf"))},
                    {"mean": (0.5, 0.01)}):
            cache.put(key, _ok(bad))
            assert cache.get(key) is None
        assert cache.describe()["stored"] == 0 and cache.count() == 0


# ---- end to end: a damaged entry and an in-place rewrite -----------------------------------


@pytest.fixture(scope="module")
def disc_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("disc")
    write_disc_clip(folder / "a.mp4", 64, 48, frames=10)
    write_disc_clip(folder / "b.mp4", 80, 48, frames=9)
    return folder


def test_a_damaged_entry_in_a_run_is_recomputed_with_the_right_value(tmp_path, disc_folder, capsys):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4"}, {"src": "b.mp4"}])
    cache = tmp_path / "cache.sqlite"
    first = salmat.materialize(table, tmp_path / "1.jsonl", root=str(disc_folder), cache=str(cache), **FAST)
    assert first.audit["cache"]["stored"] == 2
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE results SET stats = 'NaN'")
    capsys.readouterr()
    second = salmat.materialize(table, tmp_path / "2.jsonl", root=str(disc_folder), cache=str(cache), **FAST)
    assert second.counts == {"ok": 2}
    assert saliency_values(tmp_path / "2.jsonl") == saliency_values(tmp_path / "1.jsonl")
    record = second.audit["cache"]
    assert (record["hits"], record["misses"], record["damaged"], record["stored"]) == (0, 2, 2, 2)
    err = capsys.readouterr().err
    assert err.count(WARNING) == 1 and "Traceback" not in err
    third = salmat.materialize(table, tmp_path / "3.jsonl", root=str(disc_folder), cache=str(cache), **FAST)
    assert third.audit["cache"]["hits"] == 2 and saliency_values(tmp_path / "3.jsonl") == saliency_values(tmp_path / "1.jsonl")


def _rewrite_in_place(path, data):
    """New content, same size, same inode, and the old atime/mtime put back."""
    before = os.stat(path)
    assert len(data) == before.st_size
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_a_clip_rewritten_in_place_with_its_mtime_restored_is_recomputed(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    clip = write_raw_yuv(clips / "clip_64x48.yuv", 64, 48, frames=4)
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": clip.name}])
    cache = str(tmp_path / "cache.sqlite")
    first = salmat.materialize(table, tmp_path / "1.jsonl", root=str(clips), cache=cache, **FAST)
    assert first.counts == {"ok": 1}

    # any bytes are a valid raw clip: the same size, other content
    rng = np.random.default_rng(3)
    _rewrite_in_place(clip, rng.integers(0, 256, clip.stat().st_size, dtype=np.uint8).tobytes())
    second = salmat.materialize(table, tmp_path / "2.jsonl", root=str(clips), cache=cache, **FAST)
    fresh = salmat.materialize(table, tmp_path / "3.jsonl", root=str(clips), no_cache=True, **FAST)
    assert second.audit["cache"]["hits"] == 0 and second.audit["cache"]["misses"] == 1
    assert fresh.counts == second.counts == {"ok": 1}
    assert saliency_values(tmp_path / "2.jsonl") == saliency_values(tmp_path / "3.jsonl")
    assert saliency_values(tmp_path / "2.jsonl") != saliency_values(tmp_path / "1.jsonl")


def test_the_content_hash_follows_in_place_rewrites_and_is_remembered_otherwise(tmp_path):
    import hashlib

    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"A" * 4096)
    with ResultCache(str(tmp_path / "cache.sqlite")) as cache:
        first = _key(cache, clip)
        assert first.clip == hashlib.sha256(b"A" * 4096).hexdigest()
        spent = cache.stats.hash_seconds
        assert _key(cache, clip) == first and cache.stats.hash_seconds == spent  # remembered, not re-hashed
        _rewrite_in_place(clip, b"B" * 4096)
        assert _key(cache, clip).clip == hashlib.sha256(b"B" * 4096).hexdigest()


def test_a_file_changed_after_its_key_is_not_stored(tmp_path):
    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"A" * 100)
    with ResultCache(str(tmp_path / "cache.sqlite")) as cache:
        key = _key(cache, clip)
        _rewrite_in_place(clip, b"B" * 100)  # e.g. while its clip was being decoded
        cache.put(key, _ok())
        assert cache.describe()["stored"] == 0 and cache.describe()["changed"] == 1
        assert cache.count() == 0


def test_a_file_changing_while_it_is_hashed_is_uncacheable(tmp_path, monkeypatch):
    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"A" * 100)
    real = cache_mod.file_sha256

    def hash_then_append(path, deadline=None, expect=None):
        digest = real(path, deadline, expect)
        with open(path, "ab") as handle:
            handle.write(b"more")
        return digest

    monkeypatch.setattr(cache_mod, "file_sha256", hash_then_append)
    with ResultCache(str(tmp_path / "cache.sqlite")) as cache:
        assert _key(cache, clip) is None and cache.describe()["uncacheable"] == 1


# ---- a cache file that can't be used never blocks a run ---------------------------------------


def _real_cache(path, folder, table):
    """A real cache with the run's rows and enough others to span many pages, checkpointed."""
    salmat.materialize(table, path.parent / "seed.jsonl", root=str(folder), cache=str(path), **FAST)
    with ResultCache(str(path)) as cache:
        s, r = sampling_key(SamplingOptions()), reduce_key(ReduceOptions(0.6))
        for i in range(400):
            cache.put(CacheKey(f"{i:064x}", "model-" + "x" * 100, s, r), _ok())
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.read_bytes()


def _corrupt(path, kind, data):
    rng = np.random.default_rng(5)
    noise = lambda n: rng.integers(0, 256, n, dtype=np.uint8).tobytes()  # noqa: E731
    if kind == "garbage":
        path.write_bytes(noise(len(data)))
    elif kind == "zeros":
        path.write_bytes(bytes(len(data)))
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif kind == "header only":
        path.write_bytes(data[:100])
    elif kind == "broken first page":
        path.write_bytes(data[:100] + noise(4096 - 100) + data[4096:])
    elif kind == "broken pages":
        path.write_bytes(data[:4096] + noise(len(data) - 4096))
    elif kind == "directory":
        path.unlink()
        path.mkdir()
        (path / "x").write_text("x")
    elif kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif kind == "read-only":
        path.chmod(0o444)
        path.parent.chmod(0o555)  # no -wal/-shm can be created either
    else:
        raise AssertionError(kind)


UNUSABLE_AT_OPEN = {"garbage", "zeros", "truncated", "header only", "broken first page", "directory", "fifo"}
KINDS = sorted(UNUSABLE_AT_OPEN) + ["broken pages", "read-only"]


_NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


def _without_root_powers() -> list[str] | None:
    """A command prefix under which root obeys file modes (so a read-only file is read-only),
    or None where that isn't possible (then the read-only case still runs, less strictly)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    probe = subprocess.run([*_NO_DAC, sys.executable, "-c", "open('/proc/self/status').read()"],
                           capture_output=True)
    return _NO_DAC if probe.returncode == 0 else None


def _run(table, out, folder, cache, kind, capsys, prefix=()):
    """(counts, audit cache record, stderr). A FIFO runs in a child process, so a cache that
    blocks (an older salmat reading it) fails the test on a timeout instead of hanging it; a
    read-only file runs in one without root's power to write anyway."""
    if kind not in ("fifo", "read-only"):
        capsys.readouterr()
        report = salmat.materialize(table, out, root=str(folder), cache=str(cache), **FAST)
        return report.counts, report.audit["cache"], capsys.readouterr().err
    code = ("import json, sys, salmat; r = salmat.materialize(*sys.argv[1:3], root=sys.argv[3], cache=sys.argv[4], "
            "workers=1, quiet=True, frame_samples=3); print(json.dumps([r.counts, r.audit['cache']]))")
    proc = subprocess.run([*prefix, sys.executable, "-c", code, str(table), str(out), str(folder), str(cache)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    counts, record = json.loads(proc.stdout)
    return counts, record, proc.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_an_unusable_cache_file_never_blocks_a_run(tmp_path, disc_folder, kind, capsys):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4"}, {"src": "b.mp4"}])
    reference = salmat.materialize(table, tmp_path / "ref.jsonl", root=str(disc_folder), no_cache=True, **FAST)
    folder = tmp_path / "cachedir"
    folder.mkdir()
    path = folder / "cache.sqlite"
    seed = write_jsonl(tmp_path / "seed.jsonl", [{"src": "a.mp4"}])  # b.mp4 is a miss, to be stored
    data = _real_cache(path, disc_folder, seed)
    _corrupt(path, kind, data)
    before = path.read_bytes() if path.is_file() else None
    prefix = _without_root_powers() if kind == "read-only" else []
    try:
        counts, record, err = _run(table, tmp_path / "out.jsonl", disc_folder, path, kind, capsys, prefix or [])
    finally:
        folder.chmod(0o755)
    assert "Traceback" not in err and "somewhere writable" not in err
    assert counts == reference.counts == {"ok": 2}
    assert saliency_values(tmp_path / "out.jsonl") == saliency_values(tmp_path / "ref.jsonl")
    assert err.count(WARNING) <= 1
    if kind in UNUSABLE_AT_OPEN:
        assert record["failed"] is True and err.count(WARNING) == 1
        assert str(path) in err and "continuing without it" in err
    if kind == "read-only" and prefix is not None:
        # what it holds is still served; the first write fails once, and the run goes on
        assert record["hits"] == 1 and record["failed"] is True and err.count(WARNING) == 1
    if before is not None and prefix is not None:  # (root writes a "read-only" file anyway)
        assert path.read_bytes() == before  # left as it was: never deleted, moved or rewritten


def test_a_garbage_cache_file_through_the_cli_exits_0_with_one_warning(tmp_path, disc_folder):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4"}])
    cache = tmp_path / "cache.sqlite"
    cache.write_bytes(b"this is not a database " * 200)
    result = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--root",
                               disc_folder, "--cache", cache, "--workers", "1", "--frame-samples", "3")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(WARNING) == 1 and "not a database" in result.stderr
    assert "somewhere writable" not in result.stderr
    assert read_jsonl(tmp_path / "o.jsonl")[0]["saliency_status"] == "ok"


def test_an_unusable_default_cache_location_is_a_warning(tmp_path, disc_folder, monkeypatch, capsys):
    """Only an explicit --cache whose folder can't be created stops a run (exit 2, see
    test_cache.py); the default location the user never chose only costs a warning."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("SALMAT_CACHE_DIR", str(blocker / "sub"))
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4"}])
    report = salmat.materialize(table, tmp_path / "o.jsonl", root=str(disc_folder), **FAST)
    assert report.counts == {"ok": 1} and report.audit["cache"]["failed"] is True
    assert capsys.readouterr().err.count(WARNING) == 1


def test_an_older_cache_file_is_upgraded_and_its_rows_not_trusted(tmp_path):
    """A schema-1 file: its (path, size, mtime, inode) → sha256 rows could be stale after an
    in-place rewrite, so neither they nor the results stored through them are used."""
    clip, path = tmp_path / "clip.bin", tmp_path / "cache.sqlite"
    clip.write_bytes(b"new content")
    st = os.stat(clip)
    stale = "0" * 64
    old_sampling = json.dumps({"sampling": "clip", "frame_samples": 8, "max_frames": 8, "max_pixels": None,
                               "results": "salmat-results/2"}, sort_keys=True)
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                                inode INTEGER NOT NULL, sha256 TEXT NOT NULL);
            CREATE TABLE results (clip TEXT NOT NULL, model TEXT NOT NULL, sampling TEXT NOT NULL,
                                  reduce TEXT NOT NULL, stats TEXT NOT NULL, frames INTEGER NOT NULL,
                                  seconds REAL NOT NULL, created REAL NOT NULL,
                                  PRIMARY KEY (clip, model, sampling, reduce));
            PRAGMA user_version = 1;
        """)
        db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                   (os.path.realpath(clip), st.st_size, st.st_mtime_ns, st.st_ino, stale))
        db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (stale, "model-fp", old_sampling, reduce_key(ReduceOptions(0.6)),
                    json.dumps({n: [0.9, 0.01] for n in REDUCERS}), 3, 0.1, 0.0))
    with ResultCache(str(path)) as cache:
        key = _key(cache, clip)
        assert key.clip != stale and cache.get(key) is None
        cache.put(key, _ok())
        assert cache.get(key).stats == STATS
    with sqlite3.connect(path) as db:  # an older salmat can still write its rows
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 2
        db.execute("INSERT OR REPLACE INTO files (path, size, mtime_ns, inode, sha256) VALUES ('x', 1, 1, 1, ?)",
                   (stale,))


# ---- hashing is bounded --------------------------------------------------------------------


def test_fifos_and_devices_are_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "clip.fifo"
    os.mkfifo(fifo)  # nobody writes it: opening or reading it blocking would hang here
    with ResultCache(str(tmp_path / "cache.sqlite")) as cache:
        for path in (fifo, "/dev/zero", "/dev/null"):
            assert cache.key(ClipSpec(str(path)), "m", SamplingOptions(), ReduceOptions(0.6)) is None
        assert cache.describe()["uncacheable"] == 3
    with pytest.raises(cache_mod.NotHashable):
        cache_mod.file_sha256(str(fifo))


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="Linux /proc only")
def test_a_proc_file_is_refused_at_once():
    """/proc/self/pagemap says it is 0 bytes and reads on for hundreds of gigabytes."""
    with pytest.raises(cache_mod.NotHashable):
        cache_mod.file_sha256("/proc/self/pagemap")


def test_a_huge_sparse_file_stops_at_the_deadline(tmp_path, capsys):
    sparse = tmp_path / "huge.yuv"
    with open(sparse, "wb") as handle:
        handle.truncate(100 << 30)  # 100 GiB of holes: minutes to hash
    with ResultCache(str(tmp_path / "cache.sqlite"), hash_timeout=0.3) as cache:
        started = time.monotonic()
        key = cache.key(ClipSpec(str(sparse)), "m", SamplingOptions(), ReduceOptions(0.6))
        assert key is None and time.monotonic() - started < 3
        record = cache.describe()
        assert (record["uncacheable"], record["hash_timeouts"]) == (1, 1)
    assert capsys.readouterr().err.count(WARNING) == 1
    with pytest.raises(cache_mod.HashTimeout):
        cache_mod.file_sha256(str(sparse), time.monotonic() - 1)


def test_a_clip_not_hashed_in_time_is_computed_without_the_cache(tmp_path, disc_folder, monkeypatch):
    open_cache = salmat.pipeline.open_cache  # the run passes its clip timeout; here hashing gets none at all
    monkeypatch.setattr(salmat.pipeline, "open_cache",
                        lambda path, enabled=True, hash_timeout=None: open_cache(path, enabled, hash_timeout=0.0))
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4"}])
    report = salmat.materialize(table, tmp_path / "o.jsonl", root=str(disc_folder), cache=str(tmp_path / "c.sqlite"),
                                **FAST)
    fresh = salmat.materialize(table, tmp_path / "f.jsonl", root=str(disc_folder), no_cache=True, **FAST)
    assert report.counts == {"ok": 1}
    assert saliency_values(tmp_path / "o.jsonl") == saliency_values(tmp_path / "f.jsonl")
    record = report.audit["cache"]
    assert (record["uncacheable"], record["hash_timeouts"], record["stored"]) == (1, 1, 0)
    assert fresh.counts == {"ok": 1}
