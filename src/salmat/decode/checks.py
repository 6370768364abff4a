"""How a decode problem reaches the caller: one clip's `decode-failed` naming the file, and the
`--max-pixels` checks on a stream's header size and on every decoded frame."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import av

from ..errors import ClipError
from ..option_spec import passing
from ..sources import ClipSpec
from ..values import DECODE_FAILED, SamplingOptions


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
    if isinstance(exc, av.FFmpegError):
        return f"FFmpeg could not decode it: {_reason(exc)}"
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    """FFmpeg's or the system's reason in words: 'invalid data found when processing input', not
    "[Errno 1094995529] Invalid data found when processing input: '/abs/path'" (the caller names
    the file)."""
    reason = getattr(exc, "strerror", None) if isinstance(exc, (av.FFmpegError, OSError)) else None
    if not isinstance(reason, str) or not reason.strip():
        return str(exc).strip() or type(exc).__name__
    reason = reason.strip()
    return reason[0].lower() + reason[1:] if reason[1:2].islower() else reason


def _check_pixels(width: int, height: int, options: SamplingOptions) -> None:
    if options.max_pixels and width * height > options.max_pixels:
        raise ClipError(
            DECODE_FAILED,
            f"{width}x{height} exceeds {passing('max_pixels', options.max_pixels)}; raise the limit if the size "
            "is real",
        )


def _check_frame_pixels(frame: av.VideoFrame, max_pixels: int | None, index: int | None) -> None:
    """Hold one decoded frame to `--max-pixels` before it is converted to arrays.

    The size checked at open is the stream header's, i.e. its first frame's at best: a
    stream can change size mid-stream (a new H.264 SPS), so every decoded frame is checked."""
    if max_pixels and frame.width * frame.height > max_pixels:
        which = f"frame {index}" if index is not None else f"the frame at pts {frame.pts}"
        raise ClipError(
            DECODE_FAILED,
            f"{which} is {frame.width}x{frame.height}, which exceeds {passing('max_pixels', max_pixels)} "
            "(the stream's size changes mid-stream or its header understates it); raise the limit if the size is real",
        )
