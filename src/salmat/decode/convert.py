"""A decoded PyAV frame as a planar 4:2:0 `YuvFrame`: as it is, or as `--compat historical`'s
ffmpeg command line made it (`HistoricalPlanes`)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import av
import av.filter
import av.video.format
import av.video.plane
import numpy as np
import numpy.typing as npt

from ..frames import YuvFrame
from ..values import SamplingOptions


def to_yuv_frame(frame: av.VideoFrame) -> YuvFrame:
    """Any decoded frame → planar 4:2:0 at 8 or 16-bit storage, geometry preserved."""
    depth = _bit_depth(frame.format)
    target = "yuv420p" if depth <= 8 else "yuv420p10le"
    if frame.format.name != target:
        frame = frame.reformat(format=target)
        depth = 8 if target == "yuv420p" else 10
    dtype = np.uint8 if depth <= 8 else np.dtype("<u2")
    planes = [_plane_array(plane, dtype) for plane in frame.planes[:3]]
    return YuvFrame(planes[0], planes[1], planes[2], depth)


def converter(options: SamplingOptions | None) -> Callable[[av.VideoFrame], YuvFrame]:
    """How `options` turns each decoded frame into a `YuvFrame` (a fresh converter per pass)."""
    return HistoricalPlanes() if options is not None and options.historical_planes else to_yuv_frame


class HistoricalPlanes:
    """`--compat historical`: a frame as the earlier tool read it, from
    `ffmpeg -i CLIP -frames:v N -pix_fmt yuv420p -f rawvideo -`.

    8-bit 4:2:0 frames pass as they are (the command line inserts no scaler for them); a frame
    of another size than the first is scaled to it (bicubic), as the command line does; full-range
    4:2:0 (`yuvj420p`) gets swscale's range conversion, written out below. Any other format goes
    through FFmpeg's own `scale` filter with the command line's defaults: bicubic, swscale's
    dither for a deeper source, and a full-range source brought to limited range. Measured
    against Debian's ffmpeg 5.1 (tests/test_compat_planes.py): equal planes for 4:4:4, 4:2:2,
    4:4:0, 4:1:1, 4:1:0, 10/12-bit, gray, RGB, alpha and `yuvj420p` sources; full-range 4:2:2 and
    4:4:4 (`yuvj422p`, `yuvj444p`) and 10-bit gray differ by one code value in some samples, as
    FFmpeg changed those rounding paths since 5.1 (docs/usage.md lists them)."""

    def __init__(self) -> None:
        self._graph: av.filter.Graph | None = None
        self._layout: tuple[int, int, str, int] | None = None
        self._size: tuple[int, int] | None = None

    def __call__(self, frame: av.VideoFrame) -> YuvFrame:
        size = (frame.width, frame.height)
        self._size = self._size or size  # the command line scales a later frame of another size to the first's
        if size == self._size and frame.format.name == "yuv420p":
            return to_yuv_frame(frame)
        if size == self._size and frame.format.name == "yuvj420p":
            return _limited_range(to_yuv_frame(frame))
        layout = (*size, frame.format.name, int(frame.color_range))
        if self._graph is None or layout != self._layout:  # a new graph if the stream changes mid-way
            self._graph, self._layout = self._build(frame, self._size), layout
        self._graph.vpush(frame)
        return to_yuv_frame(self._graph.vpull())

    @staticmethod
    def _build(frame: av.VideoFrame, size: tuple[int, int]) -> av.filter.Graph:
        full_range = frame.format.name.startswith("yuvj") or int(frame.color_range) == 2  # AVCOL_RANGE_JPEG
        scale = f"w={size[0]}:h={size[1]}:flags=bicubic" + (":in_range=full:out_range=limited" if full_range else "")
        graph = av.filter.Graph()
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                  time_base=frame.time_base or Fraction(1, 25))
        source.link_to(scaler := graph.add("scale", scale))
        scaler.link_to(pixels := graph.add("format", "yuv420p"))
        pixels.link_to(graph.add("buffersink"))
        graph.configure()
        return graph


def _limited_range(frame: YuvFrame) -> YuvFrame:
    """Full-range 8-bit 4:2:0 → limited range as swscale 5.x does it at one scale: each sample
    to its 15-bit intermediate (·128), `lumRangeFromJpeg`/`chrRangeFromJpeg`, then rounded back
    (+64 >> 7). FFmpeg's later versions round differently, so it is written out here."""

    def convert(plane: np.ndarray, mul: int, add: int, shift: int) -> np.ndarray:
        wide = ((plane.astype(np.int64) << 7) * mul + add) >> shift
        narrowed: np.ndarray = np.clip((wide + 64) >> 7, 0, 255).astype(np.uint8)
        return narrowed

    return YuvFrame(convert(frame.y, 14071, 33561947, 14), convert(frame.u, 1799, 4081085, 11),
                    convert(frame.v, 1799, 4081085, 11), 8)


def _bit_depth(fmt: av.video.format.VideoFormat) -> int:
    try:
        return max(component.bits for component in fmt.components)
    except (AttributeError, ValueError):
        return 8


def _plane_array(plane: av.video.plane.VideoPlane, dtype: npt.DTypeLike) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    raw = np.frombuffer(memoryview(plane), dtype=dtype)
    rows = raw.reshape(plane.height, plane.line_size // itemsize)
    return np.ascontiguousarray(rows[:, : plane.width])
