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
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import SalmatError
from ..option_spec import named
from .base import SaliencyModel
from .knobs import Knobs
from .registry import KNOWN_MODELS, resolve_named, unknown_model_message


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
    """Which model (`model`/`model_path`, its label and preset) and how it runs (`knobs`): the one
    model-settings value, built once from the options and carried to every loader and worker."""

    model: str | None = None        # a built-in id (None: the default built-in)
    model_path: str | None = None   # an ONNX file
    model_id: str | None = None     # the label of an ONNX model
    preprocess: str | None = None   # an ONNX preprocessing preset
    knobs: Knobs = field(default_factory=Knobs)  # device, runtime, precision, inference size
    fingerprint: str | None = None  # set by `pinned`: the model every process must load

    def pinned(self, fingerprint: str) -> ModelSpec:
        return replace(self, fingerprint=fingerprint)

    def resolved(self, model_dir: str | os.PathLike[str] | None = None) -> ModelSpec:
        """This spec with a known learned model's name replaced by its file (found in `model_dir`,
        else `$SALMAT_MODEL_DIR`) and its preset (unless `preprocess` names one), and `--runtime auto`
        by the runtime that will run. Done once, in the driver: workers get the result."""
        model, model_path, preprocess = resolve_named(self.model, self.model_path, self.preprocess, model_dir)
        knobs = self.knobs if model_path is None else self.knobs.resolved()  # a built-in has no runtime to pick
        return replace(self, model=model, model_path=model_path, preprocess=preprocess, knobs=knobs)

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
        model = self.open(threads)
        _LAST_LOADED.set((key, model))
        return model

    def open(self, threads: int | None = None) -> SaliencyModel:
        """A fresh model object for this (resolved) spec; raises `SalmatError` on anything unusable."""
        if self.model_path is not None:
            knobs = self.knobs.resolved()
            if knobs.device != "cpu":
                from .torch_backend import load_torch_model, wants_torch

                if wants_torch(knobs.device):
                    knobs.check(builtin=False, torch_path=True)
                    return load_torch_model(self.model_path, self.preprocess, self.model_id, knobs)
            from .onnx import open_onnx_model

            return open_onnx_model(self.model_path, self.preprocess, self.model_id, knobs, threads)
        return self._builtin(self.knobs)

    def _builtin(self, knobs: Knobs) -> SaliencyModel:
        from .classical import BUILTIN_MODELS, DEFAULT_MODEL_ID

        name = self.model or DEFAULT_MODEL_ID
        if name not in BUILTIN_MODELS:
            raise SalmatError(unknown_model_message(name))
        learned = f"pass {named('model_path')} FILE.onnx or a learned model's name ({', '.join(KNOWN_MODELS)})"
        if self.model_id is not None:
            raise SalmatError(f"{named('model_id')} renames an ONNX model only; {learned}, or drop "
                              f"{named('model_id')}")
        if self.preprocess is not None:
            raise SalmatError(f"{named('preprocess')} applies to ONNX models only; {learned}, or drop "
                              f"{named('preprocess')}")
        knobs.check(builtin=True)
        return BUILTIN_MODELS[name]()
