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
`decode` reads each array's header before any array is decompressed: what a
record claims (shapes, types, and with a `cap` the maps' size) is checked before
anything of that size is allocated, so a forged record is refused, never a
memory bomb.
"""

from __future__ import annotations

import io
import math
import zipfile
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


def decode(blob: bytes, cap: int | None = None) -> ClipMaps:
    """The record `encode` wrote; raises `ValueError` for anything else (a damaged cache row).
    With `cap` (the result cache's `MAPS_CAP_BYTES`), a record longer than `cap` or whose maps
    would take more than `cap` raw bytes is refused from its headers, before any allocation."""
    if cap is not None and len(blob) > cap:
        raise ValueError(f"the map record is {len(blob)} bytes, more than the cache keeps ({cap})")
    try:
        claims = _headers(blob)
    except Exception as exc:  # noqa: BLE001 - zip, zlib and header errors alike
        raise ValueError(f"not a map record ({type(exc).__name__}: {exc})") from None
    problem = _claim_problem(claims, cap)
    if problem:
        raise ValueError(problem)
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


def within_cap(blob: bytes, cap: int) -> bool:
    """Whether `decode(blob, cap)` would take the record on its size: what the cache may store."""
    if len(blob) > cap:
        return False
    try:
        return _claim_problem(_headers(blob), cap) is None
    except Exception:  # noqa: BLE001 - not a record at all: not stored either
        return False


def _claim_problem(claims: dict[str, tuple[tuple[int, ...], np.dtype]], cap: int | None) -> str | None:
    """What is wrong with the arrays the headers announce, or None: the shapes and types `encode`
    writes and (with `cap`) maps of at most `cap` raw bytes. Nothing is allocated here."""
    shape, dtype = claims["maps"]
    if len(shape) != 3 or min(shape) < 1 or dtype != np.float32:
        return "the map record's arrays do not fit together"
    expected = {"working": ((), np.dtype(np.bool_)), "frame_size": ((2,), np.dtype(np.int64)),
                "weights": ((shape[0],), np.dtype(np.float64)), "historical": ((shape[0],), np.dtype(np.float64))}
    if any(claims[name] != want for name, want in expected.items()):
        return "the map record's arrays do not fit together"
    raw = math.prod(shape) * 4
    if cap is not None and raw > cap:
        return f"the map record claims {raw} bytes of maps, more than the cache keeps ({cap})"
    return None


_ARRAYS = ("maps", "working", "frame_size", "weights", "historical")


def _headers(blob: bytes) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's (shape, dtype) as its `.npy` header in the archive says, reading only the header."""
    claims: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for name in _ARRAYS:
            with archive.open(name + ".npy") as member:
                version = np.lib.format.read_magic(member)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"{name}: .npy format {version}")
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
                claims[name] = (tuple(shape), dtype)
    return claims


def _fits(maps: np.ndarray, working: np.ndarray, frame_size: np.ndarray, weights: np.ndarray,
          historical: np.ndarray) -> bool:
    """Whether the values are what `encode` writes (the shapes and types were checked from the
    headers): anything else would crash a reducer or reduce to a value no model gives (maps
    outside [0, 1], negative or non-finite weights)."""
    if bool(working) and not (frame_size > 0).all():
        return False
    for w in (weights, historical):
        if not (np.isfinite(w).all() and (w >= 0).all()):
            return False
    return bool(np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0)
