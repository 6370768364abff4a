"""YUV → RGB conversion.

One path, the historical one, exactly: BT.709 limited range, nearest-neighbour
chroma (each chroma sample repeated 2×2 and cropped to the luma size), result
clipped to [0, 1]. Deeper sources are first rounded to 8 bits (see
`YuvFrame.to_8bit`), so a 10-bit clip and its 8-bit rendition give one answer.

Every term of the matrix depends on one 8-bit code value, so each is a 256-entry
float32 table, computed with the same float32 operations as the per-pixel
formula (`(v − 128) / 224`, then `× 1.5748`, …), so a lookup gives the same
bits. The sums are taken in the formula's order: the result is bit-identical to
the NumPy formula, about 4× faster.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np

from .frames import YuvFrame

# BT.709 Y'CbCr → R'G'B' on unit-scaled samples: R = y + KR_V·cr, G = y − KG_U·cb − KG_V·cr,
# B = y + KB_U·cb. The one home of the matrix: the built-in models' conversion reads it too.
BT709_TERMS = (1.5748, 0.1873, 0.4681, 1.8556)  # (KR_V, KG_U, KG_V, KB_U)

_CODES = np.arange(256, dtype=np.float32)
_LUMA = (_CODES - 16.0) / 219.0
_CHROMA = (_CODES - 128.0) / 224.0
_R_CR = BT709_TERMS[0] * _CHROMA
_G_CB = BT709_TERMS[1] * _CHROMA
_G_CR = BT709_TERMS[2] * _CHROMA
_B_CB = BT709_TERMS[3] * _CHROMA


def upsample_chroma(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Repeat each chroma sample 2×2 and crop to the luma size."""
    rows, cols = plane.shape
    # Nearest-neighbour at exactly 2× is the 2×2 repeat (tested against np.repeat).
    doubled = cv2.resize(plane, (2 * cols, 2 * rows), interpolation=cv2.INTER_NEAREST)
    return doubled[:height, :width]


def rgb_planes(frame: YuvFrame) -> np.ndarray:
    """(3, H, W) float32 R, G, B planes in [0, 1] from an 8-bit-rounded BT.709 limited-range frame."""
    f8 = frame.to_8bit()
    h, w = f8.height, f8.width
    y = cv2.LUT(f8.y, _LUMA)
    # Repeat the 8-bit codes (a quarter of the bytes of float terms), then look up.
    u = np.ascontiguousarray(upsample_chroma(f8.u, h, w))
    v = np.ascontiguousarray(upsample_chroma(f8.v, h, w))
    rgb = np.empty((3, h, w), dtype=np.float32)
    np.add(y, cv2.LUT(v, _R_CR), out=rgb[0])                  # y + 1.5748·cr
    np.subtract(y, cv2.LUT(u, _G_CB), out=rgb[1])             # y − 0.1873·cb − 0.4681·cr
    np.subtract(rgb[1], cv2.LUT(v, _G_CR), out=rgb[1])
    np.add(y, cv2.LUT(u, _B_CB), out=rgb[2])                  # y + 1.8556·cb
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def yuv_to_rgb(frame: YuvFrame) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]; the same values as `rgb_planes`, interleaved."""
    return cast(np.ndarray, cv2.merge(list(rgb_planes(frame))))
