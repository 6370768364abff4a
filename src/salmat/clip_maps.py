"""A clip's sampled maps and motion weights: what every reducer and compare's map agreement need.

Every temporal reducer is a function of the per-frame maps and the motion weights
(read off the 8-bit luma), so keeping those two lets a later run reduce the clip
again with another EMA alpha or reducer, or correlate its maps with another
model's, without decoding or running the model. The built-in models hand over
`WorkingMaps` (64 px wide: ~74 kB for 8 frames); an ONNX model's maps are full
size and usually too big to keep (`MAPS_CAP_BYTES`).

`encode`/`decode` give the record as bytes (NumPy's compressed archive, float32
kept exactly, no pickle), so it travels through every engine (a pool's pipe, a
Ray table cell) and into the result cache unchanged: values reduced from a
decoded record equal the ones computed from the model's own maps, bit for bit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from .maps import WorkingMaps
from .temporal import historical_motion_weights, motion_weights, reduce_all, reduce_stats
from .values import ReduceOptions

# The largest map record (raw float32 bytes) a run keeps for the cache: a built-in's 8 working
# maps are ~74 kB; 8 full-size maps of a 480p clip ~10 MB; of a 1080p clip 66 MB (not kept).
MAPS_CAP_BYTES = 12 << 20


@dataclass(frozen=True)
class ClipMaps:
    """The model's maps of a clip's sampled frames and both kinds of motion weights."""

    maps: np.ndarray | WorkingMaps
    weights: np.ndarray             # `temporal.motion_weights`
    historical_weights: np.ndarray  # `temporal.historical_motion_weights` (--compat historical)

    @classmethod
    def build(cls, maps: np.ndarray | WorkingMaps, lumas: list[np.ndarray]) -> ClipMaps:
        return cls(maps, motion_weights(lumas), historical_motion_weights(lumas))

    @property
    def raw_bytes(self) -> int:
        """The maps' size before compression (what `MAPS_CAP_BYTES` bounds)."""
        maps = self.maps.maps if isinstance(self.maps, WorkingMaps) else self.maps
        return int(np.asarray(maps).size) * 4

    def weights_for(self, reduce: ReduceOptions) -> np.ndarray:
        return self.historical_weights if reduce.historical_motion else self.weights

    def stats(self, reduce: ReduceOptions) -> dict[str, tuple[float, float]]:
        """Every reducer's (mean, var): the figures `compute_clip` gives for the same clip."""
        return reduce_stats(self.maps, (), reduce.ema_alpha, weights=self.weights_for(reduce))

    def reduced(self, reduce: ReduceOptions) -> dict[str, np.ndarray]:
        """Every reducer's full-size clip map."""
        return reduce_all(self.maps, (), reduce.ema_alpha, weights=self.weights_for(reduce))


def encode(record: ClipMaps) -> bytes:
    """The record as bytes (deflate-compressed float32, exact)."""
    working = isinstance(record.maps, WorkingMaps)
    maps = record.maps.maps if isinstance(record.maps, WorkingMaps) else record.maps
    size = record.maps.frame_size if isinstance(record.maps, WorkingMaps) else (0, 0)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, maps=np.asarray(maps, dtype=np.float32), working=np.array(working),
                        frame_size=np.array(size, dtype=np.int64), weights=np.asarray(record.weights, np.float64),
                        historical=np.asarray(record.historical_weights, np.float64))
    return buffer.getvalue()


def decode(blob: bytes) -> ClipMaps:
    """The record `encode` wrote; raises `ValueError` for anything else (a damaged cache row)."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            maps, working = data["maps"], data["working"]
            frame_size, weights, historical = data["frame_size"], data["weights"], data["historical"]
    except Exception as exc:  # noqa: BLE001 - zip, zlib and format errors alike
        raise ValueError(f"not a map record ({type(exc).__name__}: {exc})") from None
    if not _fits(maps, working, frame_size, weights, historical):
        raise ValueError("the map record's arrays do not fit together")
    size = (int(frame_size[0]), int(frame_size[1]))
    held: np.ndarray | WorkingMaps = WorkingMaps(maps, size) if bool(working) else maps
    return ClipMaps(held, weights, historical)


def _fits(maps: np.ndarray, working: np.ndarray, frame_size: np.ndarray, weights: np.ndarray,
          historical: np.ndarray) -> bool:
    """Whether the arrays are what `encode` writes: anything else would crash a reducer or reduce
    to a value no model gives (maps outside [0, 1], negative or non-finite weights)."""
    if maps.ndim != 3 or maps.dtype != np.float32 or len(maps) < 1 or working.shape != () \
            or working.dtype != np.bool_ or frame_size.shape != (2,) or frame_size.dtype.kind != "i":
        return False
    if bool(working) and not (frame_size > 0).all():
        return False
    for w in (weights, historical):
        if w.shape != (len(maps),) or w.dtype != np.float64 or not (np.isfinite(w).all() and (w >= 0).all()):
            return False
    return bool(np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0)
