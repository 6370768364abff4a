"""YUV → RGB conversion.

One path, the historical one, exactly: BT.709 limited range, nearest-neighbour
chroma (each chroma sample repeated 2×2 and cropped to the luma size), result
clipped to [0, 1]. Deeper sources are first rounded to 8 bits (see
`YuvFrame.to_8bit`), so a 10-bit clip and its 8-bit rendition give one answer.
"""

from __future__ import annotations

import numpy as np

from .frames import YuvFrame


def upsample_chroma(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Repeat each chroma sample 2×2 and crop to the luma size."""
    return np.repeat(np.repeat(plane, 2, axis=0), 2, axis=1)[:height, :width]


def yuv_to_rgb(frame: YuvFrame) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] from an 8-bit-rounded BT.709 limited-range frame."""
    f8 = frame.to_8bit()
    h, w = f8.height, f8.width
    y = (f8.y.astype(np.float32) - 16.0) / 219.0
    cb = (upsample_chroma(f8.u, h, w).astype(np.float32) - 128.0) / 224.0
    cr = (upsample_chroma(f8.v, h, w).astype(np.float32) - 128.0) / 224.0
    rgb = np.empty((h, w, 3), dtype=np.float32)
    rgb[..., 0] = y + 1.5748 * cr
    rgb[..., 1] = y - 0.1873 * cb - 0.4681 * cr
    rgb[..., 2] = y + 1.8556 * cb
    return np.clip(rgb, 0.0, 1.0, out=rgb)
