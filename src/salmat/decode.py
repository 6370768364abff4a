"""Open a clip and decode a bounded sample of its frames as `YuvFrame`s.

Containers go through PyAV (FFmpeg inside the wheel; no ffmpeg binary needed).
Raw `.yuv` 4:2:0 files are read with NumPy at the sampled offsets.

Sampling (see CONTRACT §4):
- `clip`: N frame indices evenly spaced over the whole clip,
  `round(linspace(0, total − 1, N))`, duplicates dropped. The packet index
  (demuxed, not decoded) gives each frame's pts and the keyframe layout; the
  frames are then decoded either by seeking (keyframe seek, decode forward to
  the sampled pts) or by one sequential pass, whichever decodes fewer frames.
  Both give exactly the same frames; anything unexpected falls back to the
  sequential pass.
- `head` (historical): decode the first `max_frames` frames, then take
  indices `0, s, 2s, …` with `s = max(1, total // N)`, first N of them.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import av.container
import av.video.format
import av.video.plane
import av.video.stream
import numpy as np
import numpy.typing as npt

from .errors import ClipError
from .frames import YuvFrame
from .sources import ClipSpec, SourceFile, open_source, source_size
from .values import SamplingOptions

__all__ = ["FramesAt", "SamplingOptions", "decode_sampled", "clip_indices"]




def clip_indices(total: int, n: int) -> list[int]:
    """N indices evenly spaced over `total` frames, first and last included."""
    if total <= 0:
        return []
    if n >= total:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, n)})


def head_indices(total: int, n: int) -> list[int]:
    """The historical rule over the `total` decoded head frames."""
    step = max(1, total // max(n, 1))
    return list(range(0, total, step))[:n]


def sample_indices(total: int, options: SamplingOptions) -> list[int]:
    """Which of a clip's `total` frames `options` samples: the one rule for raw files and containers."""
    if options.sampling == "head":
        return head_indices(min(total, options.max_frames), options.frame_samples)
    return clip_indices(total, options.frame_samples)


def sampled_indices(spec: ClipSpec, options: SamplingOptions) -> list[int]:
    """The indices (from 0, decode order) of the frames `decode_sampled` returns, read from the
    file's size or its packets without decoding (`salmat preview` labels its panels with them)."""
    if spec.raw:
        return sample_indices(_raw_layout(spec, options)[1], options)
    with _open_stream(spec, options) as (container, stream):
        index = packet_index(container, stream)
        # Head sampling decodes the first frames, so it counts packets; clip sampling counts as it decodes.
        total = len(index.pts) if options.sampling == "head" else _frame_total(stream, index)
    return sample_indices(total, options)


def decode_sampled(spec: ClipSpec, options: SamplingOptions) -> list[YuvFrame]:
    """The sampled frames of one clip in time order; raises `ClipError` on any decode problem."""
    if spec.raw:
        return _decode_raw(spec, options)
    with _decode_errors(spec):
        return _decode_container(spec, options)


@contextmanager
def _decode_errors(spec: ClipSpec) -> Iterator[None]:
    """What FFmpeg, the file system or a too-large frame raise while a clip decodes, as the clip's
    `decode-failed` naming the file: the one place both decode paths (sampled, per-frame) map them."""
    try:
        yield
    except ClipError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, MemoryError) as exc:
        raise ClipError("decode-failed", f"{os.path.basename(spec.path)}: {_describe(exc)}") from exc


def _no_frames(spec: ClipSpec) -> ClipError:
    return ClipError("decode-failed", f"{os.path.basename(spec.path)}: the stream yields no frames")


def _describe(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


# ---- raw .yuv -------------------------------------------------------------


def _raw_frame_bytes(spec: ClipSpec) -> tuple[int, int]:
    sample_bytes = 2 if spec.bit_depth > 8 else 1
    w, h = spec.width or 0, spec.height or 0
    chroma = math.ceil(w / 2) * math.ceil(h / 2)
    return (w * h + 2 * chroma) * sample_bytes, sample_bytes


def _decode_raw(spec: ClipSpec, options: SamplingOptions) -> list[YuvFrame]:
    frame_bytes, total, dtype = _raw_layout(spec, options)
    indices = sample_indices(total, options)
    with open_source(spec) as handle:
        return [_read_raw_frame(handle, i * frame_bytes, spec, dtype) for i in indices]


def _raw_layout(spec: ClipSpec, options: SamplingOptions) -> tuple[int, int, np.dtype[np.unsignedinteger]]:
    """(bytes per frame, frame count, sample type) of a raw clip whose size fits its geometry."""
    _check_pixels(spec.width or 0, spec.height or 0, options)
    frame_bytes, sample_bytes = _raw_frame_bytes(spec)
    size = source_size(spec)
    total = size // frame_bytes
    if total == 0:
        raise ClipError(
            "decode-failed",
            f"{os.path.basename(spec.path)}: {size} bytes is less than one {spec.width}x{spec.height} "
            f"{spec.bit_depth}-bit 4:2:0 frame ({frame_bytes} bytes); check the geometry",
        )
    if size % frame_bytes:
        # A size that is not a whole number of frames means the declared geometry (or bit depth) is
        # wrong: decoding it anyway would give an `ok` row computed from misaligned planes.
        raise ClipError(
            "decode-failed",
            f"{os.path.basename(spec.path)}: {size} bytes is not a whole number of {spec.width}x{spec.height} "
            f"{spec.bit_depth}-bit 4:2:0 frames ({frame_bytes} bytes each); check the geometry",
        )
    dtype = np.dtype("<u2") if sample_bytes == 2 else np.dtype(np.uint8)
    return frame_bytes, total, dtype


def _read_raw_frame(
    handle: BinaryIO | SourceFile, offset: int, spec: ClipSpec, dtype: np.dtype[np.unsignedinteger]
) -> YuvFrame:
    w, h = spec.width or 0, spec.height or 0
    cw, ch = math.ceil(w / 2), math.ceil(h / 2)
    handle.seek(offset)
    data = np.frombuffer(handle.read((w * h + 2 * cw * ch) * dtype.itemsize), dtype=dtype)
    y = data[: w * h].reshape(h, w)
    u = data[w * h : w * h + cw * ch].reshape(ch, cw)
    v = data[w * h + cw * ch :].reshape(ch, cw)
    if dtype.itemsize == 2:
        y, u, v = (np.minimum(p, (1 << spec.bit_depth) - 1) for p in (y, u, v))
    return YuvFrame(y, u, v, spec.bit_depth)


def _check_pixels(width: int, height: int, options: SamplingOptions) -> None:
    if options.max_pixels and width * height > options.max_pixels:
        raise ClipError(
            "decode-failed",
            f"{width}x{height} exceeds --max-pixels {options.max_pixels}; raise the limit if the size is real",
        )


def _check_frame_pixels(frame: av.VideoFrame, max_pixels: int | None, index: int | None) -> None:
    """Hold one decoded frame to `--max-pixels` before it is converted to arrays.

    The size checked at open is the stream header's, i.e. its first frame's at best: a
    stream can change size mid-stream (a new H.264 SPS), so every decoded frame is checked."""
    if max_pixels and frame.width * frame.height > max_pixels:
        which = f"frame {index}" if index is not None else f"the frame at pts {frame.pts}"
        raise ClipError(
            "decode-failed",
            f"{which} is {frame.width}x{frame.height}, which exceeds --max-pixels {max_pixels} "
            "(the stream's size changes mid-stream or its header understates it); raise the limit if the size is real",
        )


# ---- containers -----------------------------------------------------------


# Decoder threads per stream; 0 lets FFmpeg use every core. Pool workers set their share
# (cores // workers), so N workers decoding at once don't oversubscribe the CPUs.
_decode_threads = 0


def set_decode_threads(threads: int) -> None:
    global _decode_threads
    _decode_threads = max(0, int(threads))


# Decoder options for avformat_find_stream_info's probe only (not for our decoder). By
# default the probe decodes the first frames to learn the pixel format, which we read
# from each decoded frame anyway: skipping that halves the cost of opening a 1080p
# H.264 clip (~45 ms of ~120 ms for 8 head frames). Size, frame rate and the packet
# index come from the container and the parsers, so nothing else changes.
_PROBE_OPTIONS = {"skip_frame": "all"}

# The FFmpeg input formats a source may be: single-file containers and elementary streams that
# carry video, read from the one file salmat opened. Left out on purpose: every format that opens
# other files or URLs named inside the source (hls playlists, dash manifests, concat lists,
# image2 sequence patterns, sdp/rtp/rtsp, ...), devices and lavfi, and audio- or subtitle-only
# formats (no video stream to sample). A source FFmpeg probes as anything else is refused.
SINGLE_FILE_FORMATS = (
    "mov", "mp4", "matroska", "webm", "avi", "flv", "mpegts", "mpeg", "mpegvideo", "m4v", "h261", "h263",
    "h264", "hevc", "vvc", "evc", "av1", "obu", "ivf", "dirac", "vc1", "vc1test", "cavsvideo", "avs2",
    "avs3", "yuv4mpegpipe", "nut", "mxf", "gxf", "ogg", "asf", "rm", "dv", "mjpeg", "mjpeg_2000",
    "smjpeg", "gif", "apng",
)

# avformat (not decoder) options for every source. `protocol_whitelist` names no real protocol:
# the source is read through salmat's own file object, never by FFmpeg from a path or URL, so
# nothing a demuxer finds inside a file (a segment, a list entry, `file:`/`concat:`/`subfile:`/
# `data:`/`http:` URLs) can be opened; mov/mp4 external data references stay off.
_OPEN_OPTIONS = {
    "format_whitelist": ",".join(SINGLE_FILE_FORMATS),
    "protocol_whitelist": "none",
    "enable_drefs": "0",
}


_NOT_SINGLE_FILE = ("salmat reads single-file video containers and streams only, not playlists (.m3u8), "
                    "concat lists, image sequences or other formats that name further files")


def _open_container(handle: SourceFile) -> av.container.InputContainer:
    name = os.path.basename(handle.name)

    def refuse_other_files(url: str, flags: int, options: dict[str, str]) -> None:
        """PyAV's `io_open`: every further file or URL a demuxer asks for is refused."""
        raise ClipError("decode-failed", f"{name}: names another file or URL ({url!r}); {_NOT_SINGLE_FILE}")

    try:
        return av.open(handle, "r", options=_PROBE_OPTIONS, container_options=_OPEN_OPTIONS,
                       io_open=refuse_other_files)
    except av.error.ArgumentError as exc:  # EINVAL: FFmpeg's answer to a format or protocol off its whitelist
        raise ClipError("decode-failed", f"{name}: FFmpeg refused to open it ({exc.strerror}); "
                                         f"{_NOT_SINGLE_FILE}") from exc


@contextmanager
def _open_stream(
    source: str | ClipSpec, options: SamplingOptions | None = None
) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open the first video stream of `source` (a path, or a spec held to its --confine-to-root);
    with `options`, refuse frames over `--max-pixels`. The file is opened and checked by
    `sources.open_source` and FFmpeg reads only through that handle; both close on exit."""
    spec = source if isinstance(source, ClipSpec) else ClipSpec(source)
    with open_source(spec) as handle, _open_container(handle) as container:
        if not container.streams.video:
            raise ClipError("decode-failed", f"{os.path.basename(spec.path)}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if _decode_threads:
            stream.codec_context.thread_count = _decode_threads
        if options is not None:
            _check_pixels(stream.codec_context.width, stream.codec_context.height, options)
        yield container, stream


def _decode_container(spec: ClipSpec, options: SamplingOptions) -> list[YuvFrame]:
    if options.sampling == "head":
        with _open_stream(spec, options) as (container, stream):
            head = _decode_sequential(container, stream, set(range(options.max_frames)), options.max_frames,
                                      options.max_pixels)
        frames = [head[i] for i in head_indices(len(head), options.frame_samples)]
    else:
        frames, _ = decode_clip_sample(spec, options.frame_samples, options=options)
    if not frames:
        raise _no_frames(spec)
    return frames


def _decode_sequential(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    wanted: set[int],
    stop: int | None,
    max_pixels: int | None = None,
) -> list[YuvFrame]:
    """Decode in order, converting only the wanted indices; stop after index `stop − 1`.

    Every decoded frame is held to `max_pixels` before anything else is done with it."""
    kept: list[YuvFrame] = []
    for index, frame in enumerate(container.decode(stream)):
        if stop is not None and index >= stop:
            break
        _check_frame_pixels(frame, max_pixels, index)
        if index in wanted:
            kept.append(to_yuv_frame(frame))
    return kept


# ---- --per-frame: exactly the frames a table names ------------------------------------------


class FramesAt:
    """The frames of one clip at `indices` (sorted, distinct, from 0 in decode order), in one pass.

    Iterating yields `(index, frame)` in index order, one decoded frame at a time, so a clip with
    thousands of wanted frames never holds more than one. A container is decoded sequentially up
    to its last wanted frame, converting only the wanted ones; a raw `.yuv` reads each at its
    offset. Indices past the end are not yielded, and `total` (the clip's frame count) is set once
    the pass has reached the end. Raises `ClipError` like `decode_sampled`; only `options.max_pixels`
    applies.
    """

    def __init__(self, spec: ClipSpec, indices: Sequence[int], options: SamplingOptions) -> None:
        self.spec = spec
        self.indices = list(indices)
        self.options = options
        self.total: int | None = None

    def __iter__(self) -> Iterator[tuple[int, YuvFrame]]:
        if not self.indices:
            return
        with _decode_errors(self.spec):
            yield from (self._raw() if self.spec.raw else self._container())

    def _raw(self) -> Iterator[tuple[int, YuvFrame]]:
        frame_bytes, total, dtype = _raw_layout(self.spec, self.options)
        self.total = total
        with open_source(self.spec) as handle:
            for index in self.indices:
                if index >= total:
                    return
                yield index, _read_raw_frame(handle, index * frame_bytes, self.spec, dtype)

    def _container(self) -> Iterator[tuple[int, YuvFrame]]:
        wanted = iter(self.indices)
        target = next(wanted, None)
        decoded = 0
        with _open_stream(self.spec, self.options) as (container, stream):
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                _check_frame_pixels(frame, self.options.max_pixels, index)
                if index == target:
                    yield index, to_yuv_frame(frame)
                    target = next(wanted, None)
                    if target is None:
                        return
        if decoded == 0:
            raise _no_frames(self.spec)
        self.total = decoded


def count_frames(path: str | ClipSpec) -> int:
    """Exact frame count by demuxing packets (no decoding)."""
    with _open_stream(path) as (container, stream):
        return sum(1 for packet in container.demux(stream) if packet.size)


def presentation_times(spec: ClipSpec) -> list[float | None]:
    """Each frame's presentation time in seconds, in the order frames are numbered from 0 (read
    from the packets, no decoding; None where a packet has no pts). Raises like `decode_sampled`."""
    with _decode_errors(spec), _open_stream(spec) as (container, stream):
        base = Fraction(stream.time_base) if stream.time_base else None
        index = packet_index(container, stream)
    return [float(p * base) if base is not None and p >= 0 else None for p in index.pts]


# Decoding cost of one seek (demuxer seek, decoder flush, frame-thread refill), in frames.
SEEK_COST_FRAMES = 8  # measured 9–14 on 2 cores (benchmarks/bench.py clips)
STRATEGIES = ("auto", "seek", "sequential")


@dataclass(frozen=True)
class PacketIndex:
    """What demuxing (no decoding) tells about a stream: its packets' pts in presentation
    order and its keyframes' presentation indices. `seekable` is False when pts are
    missing, repeated or discarded (edit lists), where only a sequential pass is exact."""

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    seekable: bool


def packet_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> PacketIndex:
    """Demux every packet of `stream` once (no decoding); the container is used up after."""
    pts: list[int] = []
    key_pts: list[int] = []
    seekable = True
    for packet in container.demux(stream):
        if not packet.size:
            continue
        if packet.pts is None or packet.is_discard or packet.is_corrupt:
            seekable = False
            pts.append(-1)
            continue
        pts.append(packet.pts)
        if packet.is_keyframe:
            key_pts.append(packet.pts)
    ordered = sorted(pts)
    if len(set(ordered)) != len(ordered):
        seekable = False
    position = {p: i for i, p in enumerate(ordered)}
    keyframes = tuple(sorted(position[p] for p in key_pts if p in position))
    if not keyframes or keyframes[0] != 0:
        seekable = False
    return PacketIndex(tuple(ordered), keyframes, seekable)


def _keyframe_before(keyframes: tuple[int, ...], index: int) -> int:
    return keyframes[max(0, bisect_right(keyframes, index) - 1)]


def plan_seeks(wanted: list[int], keyframes: tuple[int, ...]) -> tuple[list[list[int]], int, int]:
    """Group sorted `wanted` indices into runs, each starting with one seek and decoding
    forward. Returns (runs, estimated frames decoded with seeks, frames decoded sequentially)."""
    runs: list[list[int]] = []
    cost = 0
    previous = None
    for index in wanted:
        from_key = index - _keyframe_before(keyframes, index) + 1 + SEEK_COST_FRAMES
        if previous is not None and index - previous <= from_key:
            runs[-1].append(index)
            cost += index - previous
        else:
            runs.append([index])
            cost += from_key
        previous = index
    sequential = (wanted[-1] + 1) if wanted else 0
    return runs, cost, sequential


def choose_strategy(wanted: list[int], index: PacketIndex) -> str:
    """`seek` when the keyframe layout makes seeking decode fewer frames, else `sequential`."""
    if not wanted or not index.seekable:
        return "sequential"
    runs, seek_cost, sequential_cost = plan_seeks(wanted, index.keyframes)
    if len(runs) == 1 and _keyframe_before(index.keyframes, runs[0][0]) == 0:
        return "sequential"  # one run from the first keyframe is the sequential pass
    return "seek" if seek_cost < sequential_cost else "sequential"


class _SeekMiss(Exception):
    """A seek did not land where the packet index said; the caller falls back to a sequential pass."""


def _decode_seeking(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    wanted: list[int],
    index: PacketIndex,
    max_pixels: int | None = None,
) -> list[YuvFrame]:
    runs, _, _ = plan_seeks(wanted, index.keyframes)
    kept: list[YuvFrame] = []
    for run in runs:
        targets = [index.pts[i] for i in run]
        container.seek(targets[0], stream=stream, backward=True, any_frame=False)
        position = 0
        for frame in container.decode(stream):
            _check_frame_pixels(frame, max_pixels, None)
            if frame.pts is None:
                raise _SeekMiss("a decoded frame has no pts")
            if frame.pts < targets[position]:
                continue
            if frame.pts != targets[position]:
                raise _SeekMiss(f"expected pts {targets[position]}, decoded {frame.pts}")
            kept.append(to_yuv_frame(frame))
            position += 1
            if position == len(targets):
                break
        if position != len(targets):
            raise _SeekMiss("the stream ended before every sampled frame was decoded")
    return kept


def _frame_total(stream: av.video.stream.VideoStream, index: PacketIndex) -> int:
    """The frame count `--sampling clip` spreads its samples over: the header's, else the packets'."""
    return stream.frames or len(index.pts)


def decode_clip_sample(
    path: str | ClipSpec, n: int, strategy: str = "auto", options: SamplingOptions | None = None
) -> tuple[list[YuvFrame], str]:
    """`--sampling clip` for one container file: `n` evenly spaced frames; (frames, strategy used).

    Exact indices come from the frame count. The frames are decoded by seeking to the
    keyframe before each (group of) sampled frame(s), or by one sequential pass that
    converts only the sampled frames; `auto` picks whichever decodes fewer frames for
    this stream's keyframe layout. Both give the same frames. Each pass opens the file
    afresh (opening costs ~3 ms): raw elementary streams such as `.h264` can't rewind.
    """
    with _open_stream(path, options) as (container, stream):
        index = packet_index(container, stream)
        total = _frame_total(stream, index)
    wanted = clip_indices(total, n)
    max_pixels = options.max_pixels if options is not None else None
    if strategy != "sequential" and wanted and index.seekable and total == len(index.pts):
        if strategy == "seek" or choose_strategy(wanted, index) == "seek":
            with _open_stream(path) as (container, stream):
                try:
                    return _decode_seeking(container, stream, wanted, index, max_pixels), "seek"
                except _SeekMiss:
                    pass  # decode it sequentially below
    with _open_stream(path) as (container, stream):
        frames = _decode_sequential(container, stream, set(wanted), (wanted[-1] + 1) if wanted else 0, max_pixels)
    return frames, "sequential"


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


def frame_rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    rate = stream.average_rate or stream.guessed_rate
    return Fraction(rate) if rate else None
