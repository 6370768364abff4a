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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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
        commutes with the (convex) bilinear weights.
        """
        m = np.clip(np.asarray(small, dtype=np.float64), 0.0, 1.0)
        height, width = self.frame_size
        uy, gy = _upsampling_moments(m.shape[0], height)
        ux, gx = _upsampling_moments(m.shape[1], width)
        pixels = height * width
        mean = float(uy @ m @ ux) / pixels
        mean_square = float(np.sum((gy @ m @ gx) * m)) / pixels
        return mean, max(mean_square - mean * mean, 0.0)

    def full(self) -> np.ndarray:
        """Every map at frame size, (n, H, W) float32."""
        out = np.empty((len(self.maps), *self.frame_size), dtype=np.float32)
        for small, full in zip(self.maps, out):
            self.upsample(small, full)
        return out


def full_size(maps: np.ndarray | WorkingMaps) -> np.ndarray:
    """Full-size (n, H, W) maps, whichever form a model returned."""
    return maps.full() if isinstance(maps, WorkingMaps) else maps


@lru_cache(maxsize=64)
def _upsampling_moments(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Column sums Uᵀ1 and Gram matrix UᵀU of OpenCV's 1-D bilinear upsampling n_in → n_out."""
    # Resizing the identity along one axis upsamples each unit impulse: column j is U·e_j.
    matrix = cv2.resize(np.eye(n_in, dtype=np.float32), (n_in, n_out), interpolation=cv2.INTER_LINEAR)
    matrix = matrix.astype(np.float64)
    return matrix.sum(axis=0), matrix.T @ matrix
