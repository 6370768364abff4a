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

Each job has its own module: `open_stream` (open a source, pick the stream), `indices` (which
frames, the packet index, seek planning), `sampled` (the sequential and seeking decoders),
`frames_at` (`--per-frame`), `convert` (PyAV frame → `YuvFrame`, `--compat historical`), `raw`
(`.yuv` files), `checks` (decode errors, `--max-pixels`). This face keeps every name importable
from `salmat.decode`.
"""

from __future__ import annotations

from ..values import SamplingOptions
from .convert import HistoricalPlanes, converter, to_yuv_frame
from .frames_at import FramesAt
from .indices import (
    SEEK_COST_FRAMES,
    PacketIndex,
    choose_strategy,
    clip_indices,
    head_indices,
    packet_index,
    plan_seeks,
    sample_indices,
)
from .open_stream import _DECODE_THREADS, SINGLE_FILE_FORMATS, set_decode_threads
from .sampled import decode_clip_sample, decode_sampled, presentation_times, sampled_indices

__all__ = [
    "SEEK_COST_FRAMES", "SINGLE_FILE_FORMATS", "FramesAt", "HistoricalPlanes", "PacketIndex", "SamplingOptions",
    "_DECODE_THREADS", "choose_strategy", "clip_indices", "converter", "decode_clip_sample", "decode_sampled",
    "head_indices", "packet_index", "plan_seeks", "presentation_times", "sample_indices", "sampled_indices",
    "set_decode_threads", "to_yuv_frame",
]
