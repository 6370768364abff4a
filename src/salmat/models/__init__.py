"""Saliency models: built-in classical ones, known learned ones found by name, and an ONNX adapter,
behind one protocol."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SalmatError
from ..option_spec import named
from .base import SaliencyModel
from .classical import BUILTIN_MODELS, DEFAULT_MODEL_ID
from .knobs import check_knobs
from .registry import KNOWN_MODELS, resolve_named, unknown_model_message

if TYPE_CHECKING:
    from .quantize import CalibrationSource

__all__ = ["SaliencyModel", "BUILTIN_MODELS", "DEFAULT_MODEL_ID", "KNOWN_MODELS", "load_model"]


def load_model(
    model: str | None = None,
    model_path: str | Path | None = None,
    preprocess: str | None = None,
    model_id: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    inference_size: int | None = None,
    precision: str = "fp32",
    calibration: CalibrationSource | None = None,
) -> SaliencyModel:
    """Load a built-in by id, a known learned model by id (its file found in `model_dir`, else
    `$SALMAT_MODEL_DIR`; see `registry`), or an ONNX file; raise `SalmatError` on anything unusable.

    `model_id` renames an ONNX model's label; it may not relabel a built-in, so a
    row never claims a model that did not run. `inference_size`, `precision` and `calibration`
    (int8) are the ONNX speed knobs (`knobs`); a built-in refuses them.
    """
    model, model_path, preprocess = resolve_named(model, None if model_path is None else str(model_path),
                                                  preprocess, model_dir)
    if model_path is not None:
        from .onnx import load_onnx_model

        return load_onnx_model(model_path, preprocess=preprocess, model_id=model_id, device=device, threads=threads,
                               inference_size=inference_size, precision=precision, calibration=calibration)
    name = model or DEFAULT_MODEL_ID
    if name not in BUILTIN_MODELS:
        raise SalmatError(unknown_model_message(name))
    learned = f"pass {named('model_path')} FILE.onnx or a learned model's name ({', '.join(KNOWN_MODELS)})"
    if model_id is not None:
        raise SalmatError(f"{named('model_id')} renames an ONNX model only; {learned}, or drop {named('model_id')}")
    if preprocess is not None:
        raise SalmatError(f"{named('preprocess')} applies to ONNX models only; {learned}, or drop "
                          f"{named('preprocess')}")
    check_knobs(builtin=True, device=device, precision=precision, inference_size=inference_size)
    return BUILTIN_MODELS[name]()
