"""Saliency models: built-in classical ones and an ONNX adapter, behind one protocol."""

from __future__ import annotations

from pathlib import Path

from ..errors import SalmatError
from .base import SaliencyModel
from .classical import BUILTIN_MODELS, DEFAULT_MODEL_ID

__all__ = ["SaliencyModel", "BUILTIN_MODELS", "DEFAULT_MODEL_ID", "load_model"]


def load_model(
    model: str | None = None,
    model_path: str | Path | None = None,
    preprocess: str | None = None,
    model_id: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> SaliencyModel:
    """Load a built-in by id, or an ONNX file; raise `SalmatError` on anything unusable.

    `model_id` renames an ONNX model's label; it may not relabel a built-in, so a
    row never claims a model that did not run.
    """
    if model_path is not None:
        if model is not None:
            raise SalmatError("pass either --model NAME (a built-in) or --model-path FILE.onnx, not both")
        from .onnx import load_onnx_model

        return load_onnx_model(model_path, preprocess=preprocess, model_id=model_id, device=device, threads=threads)
    if model_id is not None:
        raise SalmatError("--model-id renames an ONNX model only; pass --model-path FILE.onnx, or drop --model-id")
    if preprocess is not None:
        raise SalmatError("--preprocess applies to ONNX models only; pass --model-path FILE.onnx, or drop --preprocess")
    name = model or DEFAULT_MODEL_ID
    if name not in BUILTIN_MODELS:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise SalmatError(f"unknown model {name!r}; choose one of {known}, or pass --model-path FILE.onnx")
    return BUILTIN_MODELS[name]()
