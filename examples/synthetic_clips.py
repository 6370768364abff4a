"""Synthetic clips whose salient region is known: a bright disc moving over texture.

The example (`make_example.py`), the tests and the benchmarks build their clips with it, so
none of them needs to download data; it is not part of the package (the tests find it through
pyproject's pytest `pythonpath`). Encoding goes through PyAV (FFmpeg inside the wheel).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import av
import numpy as np


def disc_center(index: int, frames: int, width: int, height: int) -> tuple[float, float]:
    """Where the disc is in frame `index`: a slow left-to-right sweep across the middle."""
    progress = index / max(frames - 1, 1)
    return width * (0.25 + 0.5 * progress), height * 0.5


def disc_radius(width: int, height: int) -> float:
    return 0.12 * min(width, height)


def disc_frame_rgb(index: int, frames: int, width: int, height: int, seed: int = 7) -> np.ndarray:
    """(H, W, 3) uint8: a mid-grey, low-contrast textured background and a bright disc."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(90, 130, size=(height, width), dtype=np.int16)
    texture = np.roll(texture, index, axis=1)  # the background drifts too, so motion is not only the disc
    cx, cy = disc_center(index, frames, width, height)
    yy, xx = np.mgrid[0:height, 0:width]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= disc_radius(width, height) ** 2
    rgb = np.repeat(texture[..., None], 3, axis=2)
    rgb[inside] = (250, 220, 40)
    return rgb.astype(np.uint8)


def disc_mask(index: int, frames: int, width: int, height: int) -> np.ndarray:
    cx, cy = disc_center(index, frames, width, height)
    yy, xx = np.mgrid[0:height, 0:width]
    return cast(np.ndarray, (xx - cx) ** 2 + (yy - cy) ** 2 <= disc_radius(width, height) ** 2)


def write_disc_clip(path: str | Path, width: int = 320, height: int = 180, frames: int = 24, fps: int = 25,
                    codec: str = "libx264", gop: int | None = None) -> Path:
    """Encode the moving-disc clip. x264 refuses odd 4:2:0 sizes, so those fall back to MPEG-4 Part 2."""
    path = Path(path)
    if codec == "libx264" and (width % 2 or height % 2):
        codec = "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream), f"{codec} is not a video codec"
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        stream.options = {"preset": "ultrafast"} if codec == "libx264" else {}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(disc_frame_rgb(i, frames, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_raw_yuv(path: str | Path, width: int, height: int, frames: int = 6, bit_depth: int = 8) -> Path:
    """A raw 4:2:0 file of the disc clip (BT.601-ish luma, neutral chroma), 8 or 10-bit little-endian."""
    path = Path(path)
    cw, ch = math.ceil(width / 2), math.ceil(height / 2)
    scale = 1 << (bit_depth - 8)
    dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")
    with open(path, "wb") as handle:
        for i in range(frames):
            rgb = disc_frame_rgb(i, frames, width, height).astype(np.float32)
            luma = 16 + 219 * (0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]) / 255
            planes = [np.round(luma * scale), np.full((ch, cw), 128.0 * scale), np.full((ch, cw), 128.0 * scale)]
            for plane in planes:
                handle.write(plane.astype(dtype).tobytes())
    return path
