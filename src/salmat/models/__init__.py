"""Saliency models: built-in classical ones, known learned ones found by name, and an ONNX adapter,
behind one protocol."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import SaliencyModel
from .classical import BUILTIN_MODELS, DEFAULT_MODEL_ID
from .knobs import Knobs
from .registry import KNOWN_MODELS
from .spec import ModelSpec

__all__ = ["SaliencyModel", "BUILTIN_MODELS", "DEFAULT_MODEL_ID", "KNOWN_MODELS", "Knobs", "ModelSpec",
           "load_model"]


def load_model(
    model: str | None = None,
    model_path: str | Path | None = None,
    preprocess: str | None = None,
    model_id: str | None = None,
    *,
    model_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    **knobs: Any,
) -> SaliencyModel:
    """Load a built-in by id, a known learned model by id (its file found in `model_dir`, else
    `$SALMAT_MODEL_DIR`; see `registry`), or an ONNX file; raise `SalmatError` on anything unusable.

    `model_id` renames an ONNX model's label; it may not relabel a built-in, so a
    row never claims a model that did not run. `knobs` are `Knobs`' fields (`device`,
    `runtime`, `precision`, `inference_size`); a built-in refuses the ONNX-only ones.
    """
    spec = ModelSpec(model, None if model_path is None else str(model_path), model_id, preprocess, Knobs(**knobs))
    return spec.resolved(model_dir).open(threads)
