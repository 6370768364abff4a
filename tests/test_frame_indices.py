"""Which frames are decoded: the presented ones, never what a container's header claims (issue 20, point 3).

A frame index is the frame's place in presentation order after the container's edit lists, from 0,
in the video stream a player would show (never an attached picture). Every clip here is numbered:
frame i's corner has luma 16 + 2·i and it is encoded losslessly, so a decoded frame says its index.
The edit-list and AVI clips are built with PyAV; the cover-art files need the `ffmpeg` binary
(PyAV's Matroska muxer takes no PNG track) and are skipped without it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

import salmat
from conftest import read_jsonl, run_cli_inprocess, write_jsonl
from salmat.decode import FramesAt, SamplingOptions, clip_indices, decode_sampled, sampled_indices
from salmat.errors import ClipError
from salmat.sources import ClipSpec

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg binary to build the file")
WIDTH, HEIGHT, RATE = 66, 38, 25  # odd-ish, non-square: chroma 33x19


def _numbered_yuv(i: int, width: int = WIDTH, height: int = HEIGHT) -> av.VideoFrame:
    """4:2:0 frame i: a texture and a bright square that move with i; a 4x4 corner of luma 16 + 2·i."""
    data = np.empty((height * 3 // 2, width), np.uint8)
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    data[:height] = 30 + (3 * rows + 2 * cols + 7 * i) % 150
    x, y = (5 * i) % (width - 10), (3 * i) % (height - 10)
    data[y : y + 10, x : x + 10] = 235
    data[:4, :4] = 16 + 2 * i
    data[height:] = (60 + np.arange(width)[None, :] + 5 * i) % 200
    return av.VideoFrame.from_ndarray(data, format="yuv420p")


def _index_of(frame) -> int:
    return (int(frame.y[0, 0]) - 16) // 2


def numbered_clip(path: Path, frames: int, shift: int = 0, codec: str = "libx264") -> Path:
    """A lossless numbered clip. `shift` > 0 moves every timestamp `shift` frames earlier, as
    `ffmpeg -ss … -c copy` does: the MP4 muxer then writes an edit list that starts at frame
    `shift`, the header still counts every frame, and a player presents `frames − shift`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "qp": "0",
                              "x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
        else:
            stream.codec_context.gop_size = 12
        packets = [p for i in range(frames) for p in stream.encode(_numbered_yuv(i))] + list(stream.encode())
        step = int(1 / (RATE * packets[0].time_base))
        for packet in packets:
            packet.pts -= shift * step
            packet.dts -= shift * step
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    """(edit-listed clip: header 90 frames, 77 presented; the same 77 frames encoded on their own)."""
    folder = tmp_path_factory.mktemp("editlist")
    trim = numbered_clip(folder / "trimmed.mp4", 90, shift=13)
    with av.open(str(trim)) as container:
        assert container.streams.video[0].frames == 90  # what the header claims
    plain = folder / "plain.mp4"
    with av.open(str(plain), "w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "0"}
        for i in range(13, 90):
            container.mux(stream.encode(_numbered_yuv(i)))
        container.mux(stream.encode())
    return trim, plain


def test_an_edit_list_is_applied_and_the_presented_frames_are_sampled(trimmed):
    trim, plain = trimmed
    for sampling in ("clip", "head"):
        options = SamplingOptions(sampling, 8, 8)
        got = [_index_of(f) - 13 for f in decode_sampled(ClipSpec(str(trim)), options)]
        want = clip_indices(77, 8) if sampling == "clip" else list(range(8))
        assert got == want, sampling
        assert sampled_indices(ClipSpec(str(trim)), options) == want
        assert [_index_of(f) for f in decode_sampled(ClipSpec(str(plain)), options)] == [i + 13 for i in want]


def test_an_edit_listed_clip_has_the_values_of_its_frames_reencoded(trimmed, tmp_path):
    trim, plain = trimmed
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(trim)}, {"src": str(plain)}])
    report = salmat.materialize(table, tmp_path / "out.jsonl", no_cache=True, workers=1, quiet=True)
    assert report.counts == {"ok": 2}
    a, b = read_jsonl(tmp_path / "out.jsonl")
    assert (a["saliency_mean"], a["saliency_var"]) == (b["saliency_mean"], b["saliency_var"])


def test_preview_names_the_frames_of_an_edit_listed_clip(trimmed, tmp_path):
    result = run_cli_inprocess("preview", trimmed[0], "--out", tmp_path / "p.png")
    assert result.returncode == 0, result.stderr
    assert f"indices={','.join(map(str, clip_indices(77, 8)))} " in result.stdout + result.stderr


def test_per_frame_indices_are_presentation_indices(trimmed):
    frames = FramesAt(ClipSpec(str(trimmed[0])), [0, 40, 76, 77], SamplingOptions())
    assert [(i, _index_of(f)) for i, f in frames] == [(0, 13), (40, 53), (76, 89)]
    assert frames.total == 77


# ---- a header that lies about the frame count --------------------------------------------


def _patched_avi(source: Path, target: Path, frames: int) -> Path:
    """`source` with the frame count in its main header (avih dwTotalFrames), its video stream
    header (strh dwLength) and its OpenDML header (dmlh), where it has one, set to `frames`."""
    data = bytearray(source.read_bytes())
    main = data.find(b"avih")
    struct.pack_into("<I", data, main + 8 + 16, frames)
    video = data.find(b"strh")
    assert data[video + 8 : video + 12] == b"vids"
    struct.pack_into("<I", data, video + 8 + 32, frames)
    if (odml := data.find(b"dmlh")) >= 0:
        struct.pack_into("<I", data, odml + 8, frames)
    target.write_bytes(bytes(data))
    return target


def test_an_avi_frame_count_in_the_header_decides_nothing(tmp_path):
    real = numbered_clip(tmp_path / "real.avi", 40, codec="ffv1")
    patched = [_patched_avi(real, tmp_path / f"claims{n}.avi", n) for n in (3, 3000)]
    for path in patched:
        with av.open(str(path)) as container:
            assert container.streams.video[0].frames != 40  # the patch took
    options = SamplingOptions("clip", 8)
    want = [_index_of(f) for f in decode_sampled(ClipSpec(str(real)), options)]
    assert want == clip_indices(40, 8)
    for path in patched:
        assert [_index_of(f) for f in decode_sampled(ClipSpec(str(path)), options)] == want, path.name
        assert sampled_indices(ClipSpec(str(path)), options) == want
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(p)} for p in (real, *patched)])
    report = salmat.materialize(table, tmp_path / "out.jsonl", no_cache=True, workers=1, quiet=True)
    assert report.counts == {"ok": 3}
    assert len({(r["saliency_mean"], r["saliency_var"]) for r in read_jsonl(tmp_path / "out.jsonl")}) == 1


# ---- the stream a player shows -----------------------------------------------------------


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run([FFMPEG or "ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)


@pytest.fixture(scope="module")
def covers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("covers")
    video = numbered_clip(folder / "video.mp4", 30)
    cover = folder / "cover.png"
    picture = np.zeros((32, 48, 3), np.uint8)
    picture[:, :, 0] = 200
    with av.open(str(cover), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return folder, video, cover


@needs_ffmpeg
def test_a_still_first_track_is_not_the_video(covers):
    """An MKV whose first video track is a 1-frame cover (not default), then the real video."""
    folder, video, cover = covers
    path = folder / "cover_first.mkv"
    _ffmpeg("-i", cover, "-i", video, "-map", "0", "-map", "1", "-c", "copy", "-disposition:v:0", "attached_pic",
            path)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "png"  # the case: the still comes first
    assert [_index_of(f) for f in decode_sampled(ClipSpec(str(path)), SamplingOptions("clip", 4))] == \
        clip_indices(30, 4)


@needs_ffmpeg
def test_an_attached_picture_is_never_the_video(covers):
    """An MKV attachment (a cover) is an attached-picture stream; the real video is decoded."""
    folder, video, cover = covers
    path = folder / "attached.mkv"
    _ffmpeg("-i", video, "-c", "copy", "-attach", cover, "-metadata:s:t", "mimetype=image/png", path)
    assert [_index_of(f) for f in decode_sampled(ClipSpec(str(path)), SamplingOptions("head", 3, 8))] == [0, 2, 4]


@needs_ffmpeg
@pytest.mark.parametrize("name, layout", [
    ("audio.m4a", ["-map", "0", "-map", "1", "-c:v", "copy", "-disposition:v:0", "attached_pic"]),
    ("audio.mkv", ["-map", "0", "-attach", "{cover}", "-metadata:s:t", "mimetype=image/png"]),
])
def test_audio_with_only_a_cover_is_decode_failed(covers, tmp_path, name, layout):
    folder, _, cover = covers
    path = tmp_path / name
    inputs = ["-f", "lavfi", "-i", "sine=d=1"] + ([] if "-attach" in layout else ["-i", str(cover)])
    _ffmpeg(*inputs, *[str(cover) if a == "{cover}" else a for a in layout], "-c:a", "aac", path)
    with pytest.raises(ClipError, match="only a cover picture") as caught:
        decode_sampled(ClipSpec(str(path)), SamplingOptions())
    assert caught.value.status == "decode-failed"
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(path)}])
    report = salmat.materialize(table, tmp_path / "out.jsonl", no_cache=True, workers=1, quiet=True)
    assert report.counts == {"decode-failed": 1}
    assert "only a cover picture" in read_jsonl(tmp_path / "out.jsonl")[0]["saliency_error"]
