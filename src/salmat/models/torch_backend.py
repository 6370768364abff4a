"""ONNX saliency models run by PyTorch (via `onnx2torch`), for GPUs without onnxruntime-gpu.

`--device cuda` (or `auto`) with an ONNX model uses onnxruntime's CUDA provider
when `onnxruntime-gpu` is installed. A machine with PyTorch + CUDA but no
onnxruntime-gpu runs the same ONNX file here instead: the graph is converted
once with `onnx2torch`, the sampled frames of a clip go through it in batches,
and the preprocessing preset is exactly the ONNX adapter's (`presets.py`).

Precision: fp32 with TF32 off by default, so the maps match the CPU path to
float32 rounding; `--precision fp16` is opt-in (faster, not bit-comparable,
and part of the model fingerprint, so cached fp32 results are never reused).

Install: `pip install 'salmat[torch]'` (onnx2torch) next to a CUDA build of torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import ClipError, SalmatError
from ..frames import YuvFrame, common_size
from ..option_spec import named, passing
from ..values import MODEL_FAILED
from .knobs import Knobs
from .onnx import with_model_card
from .presets import Preprocess, resolve_preset
from .registry import file_sha256
from .registry import model_id as registry_model_id

ALGORITHM_VERSION = "torch-adapter-1"
MAX_BATCH = 8


def torch_cuda_available() -> bool:
    try:
        import torch
    except Exception:  # noqa: BLE001 - no torch, no torch path
        return False
    return bool(torch.cuda.is_available())


def onnxruntime_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def wants_torch(device: str) -> bool:
    """Whether `device` should run ONNX models through torch: a GPU is asked for (or `auto`),
    onnxruntime has no CUDA provider, and torch sees a CUDA device."""
    return device in ("cuda", "auto") and not onnxruntime_has_cuda() and torch_cuda_available()


class TorchOnnxModel:
    """An ONNX saliency model converted to a torch module; satisfies `SaliencyModel`."""

    def __init__(self, path: str | Path, preset: Preprocess, model_id: str | None = None,
                 knobs: Knobs | None = None) -> None:
        knobs = knobs or Knobs(device="cuda", runtime="onnxruntime")
        device, precision = knobs.device, knobs.precision
        try:
            import onnx2torch
            import torch
        except ImportError as exc:
            raise SalmatError(f"the torch path needs torch and onnx2torch ({exc}); pip install 'salmat[torch]' "
                              f"or use {passing('device', 'cpu')}") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise SalmatError(f"ONNX model file not found: {self.path}; check {named('model_path')}")
        if precision not in ("fp32", "fp16"):
            raise SalmatError(f"{named('precision')} must be fp32 or fp16, got {precision!r}")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self._torch = torch
        self.device = "cuda" if device in ("cuda", "auto") else device
        self.precision = precision
        self.preset = preset
        self.sha256 = file_sha256(self.path)
        self.id = registry_model_id(self.path, self.sha256, model_id)
        try:
            module = onnx2torch.convert(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any conversion failure is a configuration problem
            raise SalmatError(f"onnx2torch cannot convert {self.path.name}: {exc}; use {passing('device', 'cpu')} "
                              "(onnxruntime) for this model") from None
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = module.eval().to(self.device, dtype=self._dtype)
        self.batch_ok = True  # cleared when the graph turns out to be fixed to batch 1
        self.fingerprint = (f"torch/{ALGORITHM_VERSION}/{self.sha256}/{preset.name}/{preset.fingerprint()}"
                            f"/{precision}")

    def _run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(x).to(self.device, dtype=self._dtype))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return cast(np.ndarray, out.float().cpu().numpy())

    def predict_working(self, frames: Sequence[YuvFrame]) -> np.ndarray:
        return self.predict(frames)

    def predict(self, frames: Sequence[YuvFrame]) -> np.ndarray:
        if not frames:
            raise ClipError(MODEL_FAILED, "no frames to run the model on")
        height, width = common_size(frames)
        maps = []
        step = MAX_BATCH if self.batch_ok else 1
        start = 0
        while start < len(frames):
            chunk = frames[start : start + step]
            x = self.preset.encode(chunk)
            try:
                out = self._run(x)
                if out.shape[:1] != (len(chunk),):
                    raise ValueError(f"output batch {out.shape[:1]} for {len(chunk)} frames")
            except Exception as exc:  # noqa: BLE001
                if step > 1:  # a graph with batch 1 baked in: one frame per call from now on
                    self.batch_ok, step = False, 1
                    continue
                raise ClipError(MODEL_FAILED, f"torch failed: {' '.join(str(exc).split())}") from exc
            maps.append(self.preset.decode(out, height, width))
            start += len(chunk)
        return maps[0] if len(maps) == 1 else np.concatenate(maps)

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        return {
            "id": self.id,
            "kind": "onnx-torch",
            "path": str(self.path),
            "sha256": self.sha256,
            "fingerprint": self.fingerprint,
            "algorithm_version": ALGORITHM_VERSION,
            "preset": self.preset.name,
            "preprocess": self.preset.to_dict(),
            "device": self.device,
            "precision": self.precision,
            "tf32": False,
            "torch": torch.__version__,
            "cuda_device": torch.cuda.get_device_name(0) if self.device == "cuda" else None,
        }


def load_torch_model(path: str | Path, preprocess: str | None = None, model_id: str | None = None,
                     knobs: Knobs | None = None) -> TorchOnnxModel:
    preset = with_model_card(resolve_preset(preprocess), path)
    return TorchOnnxModel(path, preset, model_id, knobs)
