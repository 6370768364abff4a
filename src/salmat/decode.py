"""Open a clip and decode a bounded sample of its frames as `YuvFrame`s.

Containers go through PyAV (FFmpeg inside the wheel; no ffmpeg binary needed).
Raw `.yuv` 4:2:0 files are read with NumPy at the sampled offsets.

Frame indices (CONTRACT §4): presentation order after the container's edit lists, from 0, in
the video stream a player would show (never an attached picture); counted by demuxing and
checked by decoding, never read from a header.

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

import contextvars
import math
import os
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import av.container
import av.filter
import av.video.format
import av.video.plane
import av.video.stream
import numpy as np
import numpy.typing as npt

from .errors import ClipError
from .frames import YuvFrame
from .sources import ClipSpec, SourceFile, open_source, source_size
from .values import DECODE_FAILED, SamplingOptions

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
    """The frame indices (docs/contract.md §4) of the frames `decode_sampled` returns, read from the
    file's size or its packets without decoding (`salmat preview` labels its panels with them)."""
    if spec.raw:
        return sample_indices(_raw_layout(spec, options)[1], options)
    with _open_stream(spec, options) as (container, stream):
        total = len(packet_index(container, stream).pts)
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
        raise ClipError(DECODE_FAILED, f"{os.path.basename(spec.path)}: {_describe(exc)}") from exc


def _no_frames(spec: ClipSpec) -> ClipError:
    return ClipError(DECODE_FAILED, f"{os.path.basename(spec.path)}: the stream yields no frames")


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
            DECODE_FAILED,
            f"{os.path.basename(spec.path)}: {size} bytes is less than one {spec.width}x{spec.height} "
            f"{spec.bit_depth}-bit 4:2:0 frame ({frame_bytes} bytes); check the geometry",
        )
    if size % frame_bytes:
        # A size that is not a whole number of frames means the declared geometry (or bit depth) is
        # wrong: decoding it anyway would give an `ok` row computed from misaligned planes.
        raise ClipError(
            DECODE_FAILED,
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
            DECODE_FAILED,
            f"{width}x{height} exceeds --max-pixels {options.max_pixels}; raise the limit if the size is real",
        )


def _check_frame_pixels(frame: av.VideoFrame, max_pixels: int | None, index: int | None) -> None:
    """Hold one decoded frame to `--max-pixels` before it is converted to arrays.

    The size checked at open is the stream header's, i.e. its first frame's at best: a
    stream can change size mid-stream (a new H.264 SPS), so every decoded frame is checked."""
    if max_pixels and frame.width * frame.height > max_pixels:
        which = f"frame {index}" if index is not None else f"the frame at pts {frame.pts}"
        raise ClipError(
            DECODE_FAILED,
            f"{which} is {frame.width}x{frame.height}, which exceeds --max-pixels {max_pixels} "
            "(the stream's size changes mid-stream or its header understates it); raise the limit if the size is real",
        )


# ---- containers -----------------------------------------------------------


# Decoder threads per stream; 0 lets FFmpeg use every core. Pool workers set their share
# (cores // workers), so N workers decoding at once don't oversubscribe the CPUs.
# A context variable, not a module global: a run in another thread keeps FFmpeg's default.
_DECODE_THREADS: contextvars.ContextVar[int] = contextvars.ContextVar("salmat_decode_threads", default=0)


def set_decode_threads(threads: int) -> None:
    _DECODE_THREADS.set(max(0, int(threads)))


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

# What a file FFmpeg refused is, told by its first bytes, when it is plainly no video at all: then
# the message says that, not the playlist reasons (a still image or a song is no playlist).
_NOT_VIDEO_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a still image (PNG)"), (b"\xff\xd8\xff", "a still image (JPEG)"),
    (b"BM", "a still image (BMP)"), (b"II*\x00", "a still image (TIFF)"), (b"MM\x00*", "a still image (TIFF)"),
    (b"RIFF????WEBP", "a still image (WebP)"), (b"RIFF????WAVE", "an audio file (WAV)"),
    (b"FORM????AIF", "an audio file (AIFF)"), (b"fLaC", "an audio file (FLAC)"), (b"ID3", "an audio file (MP3)"),
    (b"#!AMR", "an audio file (AMR)"), (b".snd", "an audio file (AU)"), (b"caff", "an audio file (CAF)"),
)


def _not_video(handle: SourceFile) -> str | None:
    """'a still image (PNG)' / 'an audio file (MP3)' from the file's first bytes, or None."""
    try:
        handle.seek(0)
        head = handle.read(16)
    except (OSError, ValueError):
        return None
    for magic, kind in _NOT_VIDEO_MAGIC:
        if len(head) >= len(magic) and all(m == ord("?") or m == h for m, h in zip(magic, head, strict=False)):
            return kind
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio / ADTS frame header
        return "an audio file (MP3 or AAC)"
    return None


def _open_container(handle: SourceFile) -> av.container.InputContainer:
    name = os.path.basename(handle.name)

    def refuse_other_files(url: str, flags: int, options: dict[str, str]) -> None:
        """PyAV's `io_open`: every further file or URL a demuxer asks for is refused."""
        raise ClipError(DECODE_FAILED, f"{name}: names another file or URL ({url!r}); {_NOT_SINGLE_FILE}")

    try:
        return av.open(handle, "r", options=_PROBE_OPTIONS, container_options=_OPEN_OPTIONS,
                       io_open=refuse_other_files)
    except av.error.ArgumentError as exc:  # EINVAL: FFmpeg's answer to a format or protocol off its whitelist
        kind = _not_video(handle)
        if kind:
            also = ", not pictures or image sequences" if kind.startswith("a still image") else ""
            raise ClipError(DECODE_FAILED, f"{name}: {kind}, not a video: salmat reads single-file "
                                             f"video clips only{also}") from exc
        raise ClipError(DECODE_FAILED, f"{name}: FFmpeg refused to open it ({exc.strerror}); "
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
        stream = _player_stream(container, os.path.basename(spec.path))
        stream.thread_type = "AUTO"
        if _DECODE_THREADS.get():
            stream.codec_context.thread_count = _DECODE_THREADS.get()
        if options is not None:
            _check_pixels(stream.codec_context.width, stream.codec_context.height, options)
        yield container, stream


# A cover picture or a still image rides in a video stream but is not the clip's video.
_NOT_VIDEO = av.stream.Disposition.attached_pic | av.stream.Disposition.still_image


def _player_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    """The video stream a player would show: never an attached picture (cover art); among the
    others the default one, then the longest, then the first. The header's durations only choose
    a stream here; they never decide which frames are decoded."""
    real = [s for s in container.streams.video if not s.disposition & _NOT_VIDEO]
    if not real:
        what = "only a cover picture (an attached picture), no video" if container.streams.video else "no video stream"
        raise ClipError("decode-failed", f"{name}: {what}")

    def rank(s: av.video.stream.VideoStream) -> tuple[bool, float, int, int]:
        seconds = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        return bool(s.disposition & av.stream.Disposition.default), seconds, s.frames, -s.index

    return max(real, key=rank)


def _decode_container(spec: ClipSpec, options: SamplingOptions) -> list[YuvFrame]:
    if options.sampling == "head":
        with _open_stream(spec, options) as (container, stream):
            head = _decode_sequential(container, stream, set(range(options.max_frames)), options.max_frames,
                                      options.max_pixels, converter(options))
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
    convert: Callable[[av.VideoFrame], YuvFrame] | None = None,
) -> list[YuvFrame]:
    """Decode in order, converting only the wanted indices; stop after index `stop − 1`.

    Every decoded frame is held to `max_pixels` before anything else is done with it."""
    kept: list[YuvFrame] = []
    convert = convert or to_yuv_frame
    for index, frame in enumerate(container.decode(stream)):
        if stop is not None and index >= stop:
            break
        _check_frame_pixels(frame, max_pixels, index)
        if index in wanted:
            kept.append(convert(frame))
    return kept


# ---- --per-frame: exactly the frames a table names ------------------------------------------


class FramesAt:
    """The frames of one clip at `indices` (sorted, distinct frame indices, docs/contract.md §4), in one pass.

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


def presentation_times(spec: ClipSpec) -> list[float | None]:
    """Each frame's presentation time in seconds, in the order frames are numbered from 0 (read
    from the packets, no decoding; None where a packet has no pts). Raises like `decode_sampled`."""
    with _decode_errors(spec), _open_stream(spec) as (container, stream):
        base = Fraction(stream.time_base) if stream.time_base else None
        index = packet_index(container, stream)
    return [float(p * base) if base is not None and p >= 0 else None for p in index.pts]


# Decoding cost of one seek (demuxer seek, decoder flush, frame-thread refill), in frames.
SEEK_COST_FRAMES = 8  # measured 9–14 on 2 cores (benchmarks/bench.py clips)


@dataclass(frozen=True)
class PacketIndex:
    """What demuxing (no decoding) tells about a stream: its presented packets' pts in
    presentation order and its keyframes' presentation indices. A packet the demuxer marks
    discarded (before an MP4 edit list's start) is decoded but never presented, as by a
    player, so it is not counted. `seekable` is False when pts are missing, repeated or
    discarded, where only a sequential pass is exact."""

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
        if packet.is_discard:
            seekable = False
            continue
        if packet.pts is None or packet.is_corrupt:
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
    convert: Callable[[av.VideoFrame], YuvFrame] | None = None,
) -> list[YuvFrame]:
    runs, _, _ = plan_seeks(wanted, index.keyframes)
    convert = convert or to_yuv_frame
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
            kept.append(convert(frame))
            position += 1
            if position == len(targets):
                break
        if position != len(targets):
            raise _SeekMiss("the stream ended before every sampled frame was decoded")
    return kept


def decode_clip_sample(
    path: str | ClipSpec, n: int, strategy: str = "auto", options: SamplingOptions | None = None
) -> tuple[list[YuvFrame], str]:
    """`--sampling clip` for one container file: `n` evenly spaced frames; (frames, strategy used).

    Exact indices come from the frame count: the presented packets', never the header's
    (`stream.frames` is whatever the muxer wrote). A sequential pass decodes to the end and so
    checks that count; when it differs, the decoded count is the truth and the frames are
    sampled again over it. The frames are decoded by seeking to the
    keyframe before each (group of) sampled frame(s), or by one sequential pass that
    converts only the sampled frames; `auto` picks whichever decodes fewer frames for
    this stream's keyframe layout. Both give the same frames. Each pass opens the file
    afresh (opening costs ~3 ms): raw elementary streams such as `.h264` can't rewind.
    """
    with _open_stream(path, options) as (container, stream):
        index = packet_index(container, stream)
    total = len(index.pts)
    wanted = clip_indices(total, n)
    max_pixels = options.max_pixels if options is not None else None
    convert = converter(options)
    if strategy != "sequential" and wanted and index.seekable:
        if strategy == "seek" or choose_strategy(wanted, index) == "seek":
            with _open_stream(path) as (container, stream):
                try:  # each sampled frame is found by its own pts: the index is checked as it is used
                    return _decode_seeking(container, stream, wanted, index, max_pixels, convert), "seek"
                except _SeekMiss:
                    pass  # decode it sequentially below
    frames, decoded = _decode_counting(path, set(wanted), max_pixels, convert)
    if decoded != total:  # the packets miscounted the frames (a damaged or unusual stream)
        frames, _ = _decode_counting(path, set(clip_indices(decoded, n)), max_pixels, convert)
    return frames, "sequential"


def _decode_counting(
    path: str | ClipSpec, wanted: set[int], max_pixels: int | None, convert: Callable[[av.VideoFrame], YuvFrame]
) -> tuple[list[YuvFrame], int]:
    """One sequential pass to the stream's end, converting the wanted indices: (frames, frames decoded).

    The last sampled index is the last frame, so going on to the end costs only the decoder's flush."""
    kept: list[YuvFrame] = []
    decoded = 0
    with _open_stream(path) as (container, stream):
        for decoded, frame in enumerate(container.decode(stream), start=1):
            _check_frame_pixels(frame, max_pixels, decoded - 1)
            if decoded - 1 in wanted:
                kept.append(convert(frame))
    return kept, decoded


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
