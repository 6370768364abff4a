"""`--runtime` and `--precision bf16` (issue #23), and the one model-settings value (issue #18.2).

Real ONNX graphs built here (`onnx_graphs`), real clips, real OpenVINO where it is installed
(its cases skip cleanly where it isn't); the runtime choice, ids, fingerprints and refusals
need neither OpenVINO nor `../shared/models`.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import onnx_graphs as graphs
from conftest import error_exit_line, materialize_ok, read_jsonl, run_cli_inprocess
from salmat import materialize
from salmat.errors import SalmatError
from salmat.models import base, knobs, load_model
from salmat.models.knobs import Knobs
from salmat.models.spec import ModelSpec

HAS_OPENVINO = knobs.openvino_installed()
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nets")
    graphs.save(graphs.encoder_decoder(seed=5), folder / "encdec.onnx")
    return folder


# ---- the one settings value ------------------------------------------------------------------------


def test_one_settings_value_reaches_the_loader_and_survives_pickling(nets):
    spec = ModelSpec(model_path=str(nets / "encdec.onnx"), knobs=Knobs(inference_size=64, runtime="onnxruntime"))
    again = pickle.loads(pickle.dumps(spec.resolved()))
    assert again == spec.resolved() and again.knobs.runtime == "onnxruntime"
    model = again.open()
    assert model.id == "encdec@64" and model.knobs == again.knobs


def test_the_protocol_declares_what_compute_runs():
    assert "predict_working" in base.SaliencyModel.__dict__

    class PredictOnly:  # a model without predict_working no longer passes as a SaliencyModel
        id = fingerprint = "x"

        def predict(self, frames):
            return np.zeros((len(frames), 1, 1), np.float32)

        def describe(self):
            return {}

    assert not isinstance(PredictOnly(), base.SaliencyModel)
    assert isinstance(load_model(), base.SaliencyModel)


def test_load_model_takes_the_knobs_by_name_only(nets):
    with pytest.raises(TypeError, match="unexpected keyword"):
        load_model(model_path=nets / "encdec.onnx", inference_sise=64)


# ---- choosing the runtime ------------------------------------------------------------------------


def test_auto_picks_the_measured_fastest_exact_runtime(monkeypatch):
    monkeypatch.setattr(knobs, "openvino_installed", lambda: True)
    assert Knobs().resolved().runtime == ("openvino" if knobs.OPENVINO_FP32_SPEEDUP > 1 else "onnxruntime")
    monkeypatch.setattr(knobs, "OPENVINO_FP32_SPEEDUP", 1.3)  # measured faster: chosen for fp32
    assert Knobs().resolved().runtime == "openvino"
    assert Knobs(precision="bf16").resolved().runtime == "openvino"
    assert Knobs(precision="int8").resolved().runtime == "onnxruntime"  # its QDQ model is onnxruntime's
    assert Knobs(device="cuda").resolved().runtime == "onnxruntime"
    assert Knobs(runtime="onnxruntime").resolved().runtime == "onnxruntime"  # asked for: kept
    monkeypatch.setattr(knobs, "OPENVINO_FP32_SPEEDUP", 0.9)  # measured slower: not chosen for fp32
    assert Knobs().resolved().runtime == "onnxruntime"
    monkeypatch.setattr(knobs, "openvino_installed", lambda: False)
    assert Knobs().resolved().runtime == "onnxruntime"


def test_ids_and_fingerprints_of_the_runtime_and_bf16():
    assert knobs.model_id_with_knobs("saliency_student_v1", None, "bf16") == "saliency_student_v1@bf16"
    assert knobs.model_id_with_knobs("m", 540, "bf16") == "m@540@bf16"
    assert Knobs(runtime="onnxruntime").fingerprint() == ""  # the earlier cache keys
    assert Knobs(runtime="openvino").fingerprint() == "/openvino"
    assert Knobs(precision="bf16", runtime="openvino").fingerprint() == "@bf16/openvino"
    with pytest.raises(SalmatError, match="suffix"):
        knobs.model_id_with_knobs("mine@bf16", None, "fp32")


# ---- refusals: one line, exit 2 -------------------------------------------------------------------


@pytest.mark.parametrize(("args", "needle"), [
    (["--precision", "bf16", "--runtime", "onnxruntime"], "bf16 runs through OpenVINO only"),
    (["--runtime", "openvino", "--device", "cuda"], "--runtime openvino runs on the CPU here"),
    (["--runtime", "openvino", "--precision", "int8"], "--precision int8 runs on onnxruntime"),
    (["--runtime", "openvino", "--builtin"], "--runtime openvino applies to ONNX models only"),
    (["--precision", "bf16", "--builtin"], "--precision bf16 applies to ONNX models only"),
])
def test_runtime_and_bf16_misuse_is_one_line(nets, two_clip_table, tmp_path, args, needle, monkeypatch):
    monkeypatch.setattr(knobs, "openvino_installed", lambda: True)
    model = [] if "--builtin" in args else ["--model-path", str(nets / "encdec.onnx")]
    args = [a for a in args if a != "--builtin"]
    result = run_cli_inprocess("materialize", "--input", two_clip_table, "--output", tmp_path / "o.jsonl", "--quiet",
                               *model, *args)
    assert needle in error_exit_line(result), result.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_bf16_refused_where_the_cpu_lacks_it(nets, monkeypatch):
    monkeypatch.setattr(knobs, "openvino_installed", lambda: True)
    monkeypatch.setattr(knobs, "cpu_has_bf16", lambda: False)
    with pytest.raises(SalmatError, match="avx512_bf16 or AMX, which this one lacks"):
        load_model(model_path=nets / "encdec.onnx", precision="bf16")


def test_openvino_refused_where_it_is_not_installed(nets, monkeypatch):
    monkeypatch.setattr(knobs, "openvino_installed", lambda: False)
    with pytest.raises(SalmatError, match=r"pip install 'salmat\[openvino\]'"):
        load_model(model_path=nets / "encdec.onnx", runtime="openvino")
    assert load_model(model_path=nets / "encdec.onnx").knobs.runtime == "onnxruntime"  # auto falls back


# ---- OpenVINO itself (skipped without it) --------------------------------------------------------------


@needs_openvino
def test_openvino_matches_onnxruntime_keeps_the_id_and_not_the_cache_key(nets, two_clip_table, tmp_path):
    cache = str(tmp_path / "c.sqlite")
    model = str(nets / "encdec.onnx")
    ort_report, ort_rows = materialize_ok(two_clip_table, tmp_path / "a.jsonl", model_path=model, runtime="onnxruntime", cache=cache)
    ov_report, ov_rows = materialize_ok(two_clip_table, tmp_path / "b.jsonl", model_path=model, runtime="openvino", cache=cache,
                             audit_json=str(tmp_path / "audit.json"))
    assert ov_report.audit["cache"]["hits"] == 0  # onnxruntime's values are never served for OpenVINO's
    assert [r["saliency_model_id"] for r in ov_rows] == [r["saliency_model_id"] for r in ort_rows] == ["encdec"] * 2
    for key in ("saliency_mean", "saliency_var"):
        assert np.allclose([r[key] for r in ov_rows], [r[key] for r in ort_rows], rtol=0, atol=1e-5)
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["model"]["runtime"] == "openvino" and audit["model"]["openvino"]
    assert audit["model"]["fingerprint"] == ort_report.audit["model"]["fingerprint"] + "/openvino"
    auto_report, _ = materialize_ok(two_clip_table, tmp_path / "c.jsonl", model_path=model, cache=cache)
    assert auto_report.audit["model"]["runtime"] == Knobs().resolved().runtime  # whichever measured faster
    assert auto_report.audit["cache"]["hits"] == 2  # that runtime's values, from the cache


@needs_openvino
def test_openvino_maps_match_onnxruntime_per_pixel(nets, disc_clip):
    from salmat.decode import decode_sampled
    from salmat.sources import ClipSpec
    from salmat.values import SamplingOptions

    frames = decode_sampled(ClipSpec(str(disc_clip)), SamplingOptions("clip", 3, 3))
    ref = load_model(model_path=nets / "encdec.onnx", runtime="onnxruntime").predict(frames)
    got = load_model(model_path=nets / "encdec.onnx", runtime="openvino").predict(frames)
    assert got.shape == ref.shape and float(np.abs(got - ref).max()) < 1e-5


@needs_openvino
def test_one_openvino_model_serves_several_threads_at_once(nets, disc_clip):
    """`--engine feeder` runs one model from two threads: an OpenVINO infer request refused the second
    ("Infer Request is busy"), so half the clips were model-failed."""
    from concurrent.futures import ThreadPoolExecutor

    from salmat.decode import decode_sampled
    from salmat.sources import ClipSpec
    from salmat.values import SamplingOptions

    frames = decode_sampled(ClipSpec(str(disc_clip)), SamplingOptions("clip", 2, 2))
    model = load_model(model_path=nets / "encdec.onnx", runtime="openvino")
    alone = model.predict(frames)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: model.predict(frames), range(16)))
    assert all(np.array_equal(maps, alone) for maps in together)


@needs_openvino
def test_openvino_compiles_once_per_frame_shape(nets, disc_clip, odd_clip):
    from salmat.decode import decode_sampled
    from salmat.sources import ClipSpec
    from salmat.values import SamplingOptions

    model = load_model(model_path=nets / "encdec.onnx", runtime="openvino")
    for clip in (disc_clip, disc_clip, odd_clip):
        model.predict(decode_sampled(ClipSpec(str(clip)), SamplingOptions("clip", 2, 2)))
    assert sorted(model.session.compiled_shapes()) == [(1, 3, 192, 320), (1, 3, 256, 352)]


@needs_openvino
def test_openvino_keeps_a_bounded_number_of_compiled_shapes(nets, monkeypatch):
    from salmat.models import openvino_runtime

    monkeypatch.setattr(openvino_runtime, "MAX_SHAPES", 2)
    model = load_model(model_path=nets / "encdec.onnx", runtime="openvino")
    x = {"input": np.zeros((1, 3, 32, 32), np.float32)}
    for size in (32, 64, 32, 96):
        model.session.run(["saliency_map"], {"input": np.zeros((1, 3, size, size), np.float32)})
    assert model.session.compiled_shapes() == [(1, 3, 32, 32), (1, 3, 96, 96)]  # 64 was least recently used
    assert model.session.run(["saliency_map"], x)[0].shape == (1, 1, 32, 32)


@needs_openvino
def test_pool_workers_run_openvino_too(nets, two_clip_table, tmp_path):
    _, inline = materialize_ok(two_clip_table, tmp_path / "a.jsonl", model_path=str(nets / "encdec.onnx"), runtime="openvino")
    report = materialize(str(two_clip_table), str(tmp_path / "b.jsonl"), quiet=True, workers=2, no_cache=True,
                         model_path=str(nets / "encdec.onnx"), runtime="openvino")
    assert report.ok == 2 and report.audit["model"]["runtime"] == "openvino"
    assert read_jsonl(tmp_path / "b.jsonl") == inline


@needs_openvino
def test_bf16_gets_its_id_fingerprint_and_cache_key(nets, two_clip_table, tmp_path, monkeypatch):
    """Runs on any CPU by vouching for bf16 (OpenVINO then computes in fp32 where the CPU lacks it):
    what is checked is the labelling, which must not depend on the machine."""
    monkeypatch.setattr(knobs, "cpu_has_bf16", lambda: True)
    cache = str(tmp_path / "c.sqlite")
    _, fp32 = materialize_ok(two_clip_table, tmp_path / "a.jsonl", model_path=str(nets / "encdec.onnx"), cache=cache)
    report, bf16 = materialize_ok(two_clip_table, tmp_path / "b.jsonl", model_path=str(nets / "encdec.onnx"), precision="bf16",
                       cache=cache)
    assert report.audit["cache"]["hits"] == 0
    assert {r["saliency_model_id"] for r in bf16} == {"encdec@bf16"}
    assert report.audit["model"]["fingerprint"].endswith("@bf16/openvino")
    assert report.audit["model"]["precision"] == "bf16" and report.audit["model"]["runtime"] == "openvino"
    assert np.allclose([r["saliency_mean"] for r in bf16], [r["saliency_mean"] for r in fp32], atol=0.02)


def test_the_gpu_settings_travel_through_the_same_value():
    """`--device cuda --precision fp16` (the GPU check's settings) stay on onnxruntime/torch."""
    gpu = Knobs(device="cuda", precision="fp16").resolved()
    assert gpu.runtime == "onnxruntime"
    gpu.check(builtin=False, torch_path=True)  # allowed on the torch path
    with pytest.raises(SalmatError, match="fp16 runs on a GPU through the torch path only"):
        gpu.check(builtin=False)
    assert pickle.loads(pickle.dumps(ModelSpec(model_path="m.onnx", knobs=gpu))).knobs == gpu


def test_the_driver_resolves_names_and_the_runtime_once(nets, two_clip_table, tmp_path, monkeypatch):
    """Workers get a concrete runtime (never `auto`, which could resolve otherwise on another node),
    and a run looks its model up once (`resolve_named` ran twice before)."""
    from salmat.models import spec as spec_module

    calls = []
    real = spec_module.resolve_named
    monkeypatch.setattr(spec_module, "resolve_named", lambda *a: calls.append(a) or real(*a))
    resolved = ModelSpec(model_path=str(nets / "encdec.onnx")).resolved()
    assert resolved.knobs.runtime in knobs.RUNTIMES and len(calls) == 1
    calls.clear()
    materialize_ok(two_clip_table, tmp_path / "o.jsonl", model_path=str(nets / "encdec.onnx"), no_cache=True)
    assert len(calls) == 1
