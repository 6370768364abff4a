"""The decoded-frame type every stage shares: planar YUV 4:2:0 at its native bit depth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ClipError
from .values import DECODE_FAILED


@dataclass(frozen=True)
class YuvFrame:
    """One decoded frame as planar 4:2:0.

    `y` is (H, W); `u` and `v` are (ceil(H/2), ceil(W/2)). Samples are uint8 for
    8-bit sources and uint16 (values < 2**bit_depth) for deeper ones.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    bit_depth: int = 8

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    def to_8bit(self) -> YuvFrame:
        """8-bit copy; deeper samples are rounded as `(v + 2**(d-9)) >> (d-8)` (10-bit: `(v + 2) >> 2`)."""
        if self.bit_depth == 8:
            return self
        shift = self.bit_depth - 8
        half = 1 << (shift - 1)

        def down(plane: np.ndarray) -> np.ndarray:
            narrowed: np.ndarray = np.minimum((plane.astype(np.uint32) + half) >> shift, 255).astype(np.uint8)
            return narrowed

        return YuvFrame(down(self.y), down(self.u), down(self.v), 8)

    def luma8(self) -> np.ndarray:
        """Luma on the 8-bit scale as uint8 (the motion weights read it; no float copy per frame)."""
        return self.to_8bit().y


def common_size(frames: Sequence[YuvFrame]) -> tuple[int, int]:
    """The one (height, width) every frame of a clip shares: the one home of this check (the
    engine runs it before any model; the models run it for direct callers). A clip without
    frames, or whose size changes, is `decode-failed`."""
    sizes = {(f.height, f.width) for f in frames}
    if len(sizes) != 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sorted(sizes)) or "no frames"
        raise ClipError(DECODE_FAILED, f"the frame size changes within the clip ({listed}); one map size per clip")
    height, width = sizes.pop()
    if height < 1 or width < 1:
        raise ClipError(DECODE_FAILED, f"empty frame of size {width}x{height}")
    return height, width
