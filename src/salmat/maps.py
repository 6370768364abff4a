"""Saliency maps kept at a model's working size until something needs full size.

The built-in models compute each map on a small copy of the frame (64 px wide)
and upsample it bilinearly. Bilinear upsampling is linear, so the mean, EMA and
motion-weighted reducers give the same clip map whether they run before or
after it; running them first, on 64×36 maps instead of 1920×1080 ones, saves
most of a 1080p clip's non-decode time. `WorkingMaps` carries the small maps
and the frame size they stand for; `temporal.reduce_all` accepts it as well as
full-size maps.

The statistics of an upsampled map don't need the map either: OpenCV's bilinear
resize is separable, full = Uy · m · Uxᵀ, so its mean is a weighted sum of m and
its mean square is Σ (Gy · m · Gx) ∘ m with the small Gram matrices G = UᵀU
(`WorkingMaps.stats`). U is read off OpenCV itself by resizing an identity
matrix, so the weights are exactly the ones `upsample` uses.

The matrices U are (frame side × working side), so this route only pays while
they are small: for a frame side × working side product above
`GRAM_MAX_ELEMENTS` (a 16384-px-wide frame at the default working width is
within it; a 2×2000 or 1×10⁶ frame is not) `stats` upsamples the map instead
(one frame-sized float32 buffer: memory linear in the frame's pixels), and the
Gram matrices kept for reuse are bounded in bytes (`GRAM_CACHE_BYTES`), not
only in number. Every shape within the budget takes exactly the route it took
before, bit for bit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class WorkingMaps:
    """(n, h, w) float32 maps in [0, 1] standing for their upsampling to `frame_size` (H, W)."""

    maps: np.ndarray
    frame_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.maps)

    def upsample(self, small: np.ndarray, out: np.ndarray | None = None, clip: bool = True) -> np.ndarray:
        """One (h, w) map → (H, W) float32: bilinear (OpenCV, half-pixel centres), clipped to [0, 1].

        `clip=False` leaves the round-off for the caller to trim once (the maximum over
        frames commutes with clipping)."""
        height, width = self.frame_size
        if out is None:
            out = np.empty((height, width), dtype=np.float32)
        result = cv2.resize(np.asarray(small, dtype=np.float32), (width, height), dst=out,
                            interpolation=cv2.INTER_LINEAR)
        if not np.may_share_memory(result, out):  # OpenCV fell back to a new buffer
            out[...] = result
        if not clip:
            return out
        # Bilinear weights are convex, so this only trims round-off; in-place OpenCV
        # clipping is ~5x cheaper than np.clip on a 1080p map.
        cv2.threshold(out, 1.0, 1.0, cv2.THRESH_TRUNC, dst=out)
        cv2.threshold(out, 0.0, 0.0, cv2.THRESH_TOZERO, dst=out)
        return out

    def stats(self, small: np.ndarray) -> tuple[float, float]:
        """(mean, population variance) of `upsample(small)`, computed at working size.

        Equals `temporal.map_stats(self.upsample(small))` up to round-off (~1e-8). The map
        is clipped to [0, 1] first; for maps already in [0, 1], as reduced maps are, that
        commutes with the (convex) bilinear weights. Where the upsampling matrices would be
        large (`GRAM_MAX_ELEMENTS`: extreme aspect ratios, huge frames) it is exactly that:
        the statistics of the upsampled map, in memory linear in the frame's pixels.
        """
        height, width = self.frame_size
        rows, cols = np.shape(small)
        if not (_gram_fits(rows, height) and _gram_fits(cols, width)):
            return _full_size_stats(self.upsample(small))
        m = np.clip(np.asarray(small, dtype=np.float64), 0.0, 1.0)
        uy, gy = _upsampling_moments(m.shape[0], height)
        ux, gx = _upsampling_moments(m.shape[1], width)
        pixels = height * width
        mean = float(uy @ m @ ux) / pixels
        mean_square = float(np.sum((gy @ m @ gx) * m)) / pixels
        return mean, max(mean_square - mean * mean, 0.0)

    def full(self) -> np.ndarray:
        """Every map at frame size, (n, H, W) float32."""
        out = np.empty((len(self.maps), *self.frame_size), dtype=np.float32)
        for small, full in zip(self.maps, out, strict=True):
            self.upsample(small, full)
        return out


def full_size(maps: np.ndarray | WorkingMaps) -> np.ndarray:
    """Full-size (n, H, W) maps, whichever form a model returned."""
    return maps.full() if isinstance(maps, WorkingMaps) else maps


# The Gram route builds an n_out × n_in float32 and float64 matrix (plus n_in² for the
# identity and the Gram matrix) per axis: 2**21 elements is ~24 MB at most. A 1080p
# frame at the default working width needs 0.13 M, an 8K one 0.5 M, a 16384-px-wide
# one 1.05 M. (A 2x2000 frame at a 64x64000 working size would need 4.2 G: its 64000²
# float32 identity alone is 16 GB; classical.working_size now caps that case too.)
GRAM_MAX_ELEMENTS = 1 << 21
# What the reused (Uᵀ1, UᵀU) pairs may hold in all; least recently used go first.
GRAM_CACHE_BYTES = 64 << 20

_moments: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_moments_lock = threading.Lock()


def _gram_fits(n_in: int, n_out: int) -> bool:
    """Whether the n_in → n_out upsampling matrices are within `GRAM_MAX_ELEMENTS`."""
    return n_in * (n_in + n_out) <= GRAM_MAX_ELEMENTS


def _full_size_stats(full: np.ndarray) -> tuple[float, float]:
    """(mean, population variance) of a frame-sized map already clipped to [0, 1], as
    `temporal.map_stats` takes them (OpenCV, float64 accumulation)."""
    mean, std = cv2.meanStdDev(full)
    return float(mean[0, 0]), float(std[0, 0]) ** 2


def _upsampling_moments(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Column sums Uᵀ1 and Gram matrix UᵀU of OpenCV's 1-D bilinear upsampling n_in → n_out.

    Kept for reuse (the same sizes recur clip after clip) within `GRAM_CACHE_BYTES`."""
    key = (n_in, n_out)
    with _moments_lock:
        cached = _moments.get(key)
        if cached is not None:
            _moments.move_to_end(key)
            return cached
    # Resizing the identity along one axis upsamples each unit impulse: column j is U·e_j.
    matrix = cv2.resize(np.eye(n_in, dtype=np.float32), (n_in, n_out), interpolation=cv2.INTER_LINEAR)
    matrix = matrix.astype(np.float64)
    moments = matrix.sum(axis=0), matrix.T @ matrix
    with _moments_lock:
        _moments[key] = moments
        while len(_moments) > 1 and sum(a.nbytes + b.nbytes for a, b in _moments.values()) > GRAM_CACHE_BYTES:
            _moments.popitem(last=False)
    return moments
