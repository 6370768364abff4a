"""A clip's sampled frames (`decode_sampled`): head sampling, or `--sampling clip` decoded by
seeking or by one sequential pass, whichever decodes fewer frames; and frame presentation times."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import av
import av.container
import av.video.stream

from ..frames import YuvFrame
from ..sources import ClipSpec
from ..values import SamplingOptions
from .checks import _check_frame_pixels, _decode_errors, _no_frames
from .convert import converter, to_yuv_frame
from .indices import PacketIndex, choose_strategy, clip_indices, head_indices, packet_index, plan_seeks, sample_indices
from .open_stream import _open_stream
from .raw import _decode_raw, _raw_layout


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


def presentation_times(spec: ClipSpec) -> list[float | None]:
    """Each frame's presentation time in seconds, in the order frames are numbered from 0 (read
    from the packets, no decoding; None where a packet has no pts). Raises like `decode_sampled`."""
    with _decode_errors(spec), _open_stream(spec) as (container, stream):
        base = Fraction(stream.time_base) if stream.time_base else None
        index = packet_index(container, stream)
    return [float(p * base) if base is not None and p >= 0 else None for p in index.pts]


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
