"""`ModelSpec`: a small picklable description of a model that each process loads itself.

The driver loads the model once to learn its id and fingerprint, then pins the
spec to that fingerprint (`pinned`). Every pool worker and Ray actor loads the
spec on its own side; a pinned spec that loads a *different* model there (a
node with another file under the same path, another onnxruntime) refuses to
start, so the model the run records (audit, cache key, `saliency_model_id`) is
always the model that computed the values.

A known learned model named by id (`--model saliency_student_v1`) is resolved
to its file once, in the driver (`resolved`): the absolute path travels, so no
worker searches its own `$SALMAT_MODEL_DIR`.
"""

from __future__ import annotations

import contextvars
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import SalmatError
from .base import SaliencyModel
from .knobs import check_knobs
from .registry import resolve_named

if TYPE_CHECKING:
    from .quantize import CalibrationSource


def _file_state(path: str | None) -> tuple[int, int, int] | None:
    """Changes when the file at `path` is rewritten, so a reused model is never a stale one."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino) if st else None


# The last model loaded in this thread or task: (key, model). A context variable, not a module
# global, so a run in another thread loads (and holds) its own.
_LAST_LOADED: contextvars.ContextVar[tuple[Any, SaliencyModel] | None] = contextvars.ContextVar(
    "salmat_last_loaded_model", default=None)


@dataclass(frozen=True)
class ModelSpec:
    model: str | None = None        # a built-in id (None: the default built-in)
    model_path: str | None = None   # an ONNX file
    model_id: str | None = None     # the label of an ONNX model
    preprocess: str | None = None   # an ONNX preprocessing preset
    device: str = "cpu"
    precision: str = "fp32"
    fingerprint: str | None = None  # set by `pinned`: the model every process must load
    inference_size: int | None = None  # ONNX: the short side frames are resized to (None: native)
    calibration: CalibrationSource | None = None  # int8: the clips the quantized model is calibrated on

    def pinned(self, fingerprint: str) -> ModelSpec:
        return replace(self, fingerprint=fingerprint)

    def resolved(self, model_dir: str | os.PathLike[str] | None = None) -> ModelSpec:
        """This spec with a known learned model's name replaced by its file (found in `model_dir`,
        else `$SALMAT_MODEL_DIR`) and its preset (unless `preprocess` names one)."""
        model, model_path, preprocess = resolve_named(self.model, self.model_path, self.preprocess, model_dir)
        return replace(self, model=model, model_path=model_path, preprocess=preprocess)

    def load(self, threads: int | None = None) -> SaliencyModel:
        """The model; `threads` caps an ONNX model's inference threads (pool workers).

        An ONNX model with `--device cuda|auto` runs through torch (`torch_backend.py`)
        when onnxruntime has no CUDA provider but torch sees a GPU.
        """
        model = self._load_once(threads)
        if self.fingerprint is not None and model.fingerprint != self.fingerprint:
            raise SalmatError(f"the model loaded here ({model.id}, fingerprint {model.fingerprint[:16]}…) is not the "
                              f"one the run started with (fingerprint {self.fingerprint[:16]}…); every worker must "
                              "see the same model file and libraries")
        return model

    def _load_once(self, threads: int | None) -> SaliencyModel:
        """The last model loaded in this process is reused: the driver loads it to learn its
        fingerprint, and the in-process engine then needs the same model again."""
        key = (replace(self, fingerprint=None), threads, _file_state(self.model_path))
        last = _LAST_LOADED.get()
        if last is not None and last[0] == key:
            return last[1]
        model = self._load(threads)
        _LAST_LOADED.set((key, model))
        return model

    def _load(self, threads: int | None) -> SaliencyModel:
        if self.model_path and self.model is None and self.device != "cpu":
            from .torch_backend import load_torch_model, wants_torch

            if wants_torch(self.device):
                check_knobs(builtin=False, device=self.device, precision=self.precision,
                            inference_size=self.inference_size, torch_path=True)
                return load_torch_model(self.model_path, self.preprocess, self.model_id, self.device, self.precision)
        from . import load_model

        return load_model(self.model, self.model_path, self.preprocess, self.model_id, self.device, threads=threads,
                          inference_size=self.inference_size, precision=self.precision, calibration=self.calibration)
