"""Saliency maps kept at a model's working size until something needs full size.

The built-in models compute each map on a small copy of the frame (64 px wide)
and upsample it bilinearly. Bilinear upsampling is linear, so the mean, EMA and
motion-weighted reducers give the same clip map whether they run before or
after it; running them first, on 64×36 maps instead of 1920×1080 ones, saves
most of a 1080p clip's non-decode time. `WorkingMaps` carries the small maps
and the frame size they stand for; `temporal.reduce_all` accepts it as well as
full-size maps.
"""

from __future__ import annotations

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

    def upsample(self, small: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One (h, w) map → (H, W) float32: bilinear (OpenCV, half-pixel centres), clipped to [0, 1]."""
        height, width = self.frame_size
        if out is None:
            out = np.empty((height, width), dtype=np.float32)
        result = cv2.resize(np.asarray(small, dtype=np.float32), (width, height), dst=out,
                            interpolation=cv2.INTER_LINEAR)
        if not np.may_share_memory(result, out):  # OpenCV fell back to a new buffer
            out[...] = result
        # Bilinear weights are convex, so this only trims round-off; in-place OpenCV
        # clipping is ~5x cheaper than np.clip on a 1080p map.
        cv2.threshold(out, 1.0, 1.0, cv2.THRESH_TRUNC, dst=out)
        cv2.threshold(out, 0.0, 0.0, cv2.THRESH_TOZERO, dst=out)
        return out

    def full(self) -> np.ndarray:
        """Every map at frame size, (n, H, W) float32."""
        out = np.empty((len(self.maps), *self.frame_size), dtype=np.float32)
        for small, full in zip(self.maps, out):
            self.upsample(small, full)
        return out


def full_size(maps: np.ndarray | WorkingMaps) -> np.ndarray:
    """Full-size (n, H, W) maps, whichever form a model returned."""
    return maps.full() if isinstance(maps, WorkingMaps) else maps
