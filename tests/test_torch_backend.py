"""The torch path for ONNX models (onnx2torch): same maps as onnxruntime; GPU checks skip without CUDA."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

import onnx_graphs as graphs  # noqa: E402
from salmat.decode import SamplingOptions, decode_sampled  # noqa: E402
from salmat.models import load_model  # noqa: E402
from salmat.models.torch_backend import TorchOnnxModel, load_torch_model  # noqa: E402
from salmat.sources import ClipSpec  # noqa: E402


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from synthetic_clips import write_disc_clip

    clip = write_disc_clip(tmp_path_factory.mktemp("torch") / "disc.mp4", 200, 120, frames=12)
    return decode_sampled(ClipSpec(str(clip)), SamplingOptions("clip", 5))


@pytest.mark.parametrize("graph", ["conv_sigmoid", "encoder_decoder"])
def test_torch_cpu_matches_onnxruntime(tmp_path, frames, graph):
    path = graphs.save(getattr(graphs, graph)(), tmp_path / f"{graph}.onnx")
    reference = load_model(model_path=str(path)).predict(frames)
    model = load_torch_model(path, device="cpu")
    assert isinstance(model, TorchOnnxModel)
    maps = model.predict(frames)
    assert maps.shape == reference.shape
    np.testing.assert_allclose(maps, reference, atol=1e-5)
    # fp16 results are never served from the cache for fp32 (and vice versa)
    assert model.fingerprint != load_torch_model(path, device="cpu", precision="fp16").fingerprint


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_cuda_fp32_matches_cpu(tmp_path, frames):
    path = graphs.save(graphs.encoder_decoder(), tmp_path / "enc.onnx")
    reference = load_model(model_path=str(path)).predict(frames)
    maps = load_torch_model(path, device="cuda").predict(frames)
    np.testing.assert_allclose(maps, reference, atol=1e-5)
    half = load_torch_model(path, device="cuda", precision="fp16").predict(frames)
    np.testing.assert_allclose(half, reference, atol=5e-3)
