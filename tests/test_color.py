"""The lookup-table YUV → RGB conversion against the per-pixel formula it replaces."""

import numpy as np
import pytest

from salmat.color import rgb_planes, upsample_chroma, yuv_to_rgb
from salmat.frames import YuvFrame


def formula_rgb(frame: YuvFrame) -> np.ndarray:
    """The historical tool's NumPy formula, written out per pixel (float32)."""
    f8 = frame.to_8bit()
    h, w = f8.height, f8.width
    y = (f8.y.astype(np.float32) - 16.0) / 219.0
    cb = (np.repeat(np.repeat(f8.u, 2, 0), 2, 1)[:h, :w].astype(np.float32) - 128.0) / 224.0
    cr = (np.repeat(np.repeat(f8.v, 2, 0), 2, 1)[:h, :w].astype(np.float32) - 128.0) / 224.0
    rgb = np.stack([y + 1.5748 * cr, y - 0.1873 * cb - 0.4681 * cr, y + 1.8556 * cb], axis=-1)
    return np.clip(rgb, 0.0, 1.0)


def random_frame(h: int, w: int, bit_depth: int = 8, seed: int = 0) -> YuvFrame:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    ch, cw = (h + 1) // 2, (w + 1) // 2
    planes = [rng.integers(0, 2**bit_depth, shape, dtype=dtype) for shape in ((h, w), (ch, cw), (ch, cw))]
    return YuvFrame(*planes, bit_depth)


@pytest.mark.parametrize("h, w, depth", [(1080, 1920, 8), (241, 321, 8), (1, 1, 8), (2, 3, 8), (64, 96, 10)])
def test_lookup_conversion_is_bit_identical_to_the_formula(h, w, depth):
    frame = random_frame(h, w, depth)
    expected = formula_rgb(frame)
    got = yuv_to_rgb(frame)
    assert got.dtype == np.float32 and got.shape == (h, w, 3)
    assert np.array_equal(got, expected)
    assert np.array_equal(rgb_planes(frame), np.moveaxis(expected, -1, 0))


def test_every_code_value_is_covered():
    # All 256 Y codes against all 256 chroma codes once each (a 256x256 frame, chroma 128x128).
    y = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    c = np.arange(128 * 128, dtype=np.int64).reshape(128, 128) % 256
    frame = YuvFrame(y, c.astype(np.uint8), (255 - c).astype(np.uint8))
    assert np.array_equal(yuv_to_rgb(frame), formula_rgb(frame))


def test_chroma_upsampling_is_a_2x2_repeat_cropped():
    plane = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(upsample_chroma(plane, 5, 7), np.repeat(np.repeat(plane, 2, 0), 2, 1)[:5, :7])
