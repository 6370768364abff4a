"""Open one source for decoding: through salmat's own file handle, only single-file formats, no
further file or URL; the video stream a player would show; decoder threads per run."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager

import av
import av.container
import av.video.stream

from ..errors import ClipError
from ..sources import ClipSpec, SourceFile, open_source
from ..values import DECODE_FAILED, SamplingOptions
from .checks import _check_pixels, _reason

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
    except av.FFmpegError as exc:  # no container FFmpeg knows: its reason in words, not "[Errno …] …: '/path'"
        raise ClipError(DECODE_FAILED, f"{name}: not a video FFmpeg can read: {_reason(exc)}") from exc


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
        raise ClipError(DECODE_FAILED, f"{name}: {what}")

    def rank(s: av.video.stream.VideoStream) -> tuple[bool, float, int, int]:
        seconds = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        return bool(s.disposition & av.stream.Disposition.default), seconds, s.frames, -s.index

    return max(real, key=rank)
