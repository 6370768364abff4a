"""Which frames a clip's sample is (CONTRACT §4), and what demuxing (no decoding) says about a
stream: each presented frame's pts, its keyframes, and whether seeking to them is cheaper."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import av.container
import av.video.stream
import numpy as np

from ..values import SamplingOptions


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
