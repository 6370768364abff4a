"""`--per-frame`: exactly the frames a table names, each decoded once, in one pass."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..frames import YuvFrame
from ..sources import ClipSpec, open_source
from ..values import SamplingOptions
from .checks import _check_frame_pixels, _decode_errors, _no_frames
from .convert import to_yuv_frame
from .open_stream import _open_stream
from .raw import _raw_layout, _read_raw_frame


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
