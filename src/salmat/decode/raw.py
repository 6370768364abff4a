"""Raw `.yuv` 4:2:0 clips: the geometry held to the file's size, each frame read at its offset."""

from __future__ import annotations

import math
import os
from typing import BinaryIO

import numpy as np

from ..errors import ClipError
from ..frames import YuvFrame
from ..sources import ClipSpec, SourceFile, open_source, source_size
from ..values import DECODE_FAILED, SamplingOptions
from .checks import _check_pixels
from .indices import sample_indices


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
