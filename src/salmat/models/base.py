"""The one protocol every saliency model satisfies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..frames import YuvFrame
from ..maps import WorkingMaps


@runtime_checkable
class SaliencyModel(Protocol):
    """A saliency model loaded once and reused for every clip.

    - `id`: the label written to `saliency_model_id` (the model that actually runs).
    - `fingerprint`: a string that changes whenever the model's output could change
      (weights sha256, preprocessing, algorithm version); the cache keys on it.
    - `predict(frames)`: one map per frame, shape (n, H, W) float32 in [0, 1] at
      each frame's own size. Raises on failure; the engine turns that into a row status.
    - `predict_working(frames)`: what `compute` runs: either `predict`'s full-size maps or
      `WorkingMaps` (maps at a smaller working size standing for their bilinear upsampling),
      which the linear reducers use before upsampling (the built-ins, `--inference-size`).
    - `describe()`: JSON-able facts for the audit (id, kind, sha256, preset, parameters).
    """

    id: str
    fingerprint: str

    def predict(self, frames: Sequence[YuvFrame]) -> np.ndarray: ...

    def predict_working(self, frames: Sequence[YuvFrame]) -> np.ndarray | WorkingMaps: ...

    def describe(self) -> dict[str, Any]: ...
