"""`--compat historical` reads every pixel format as the earlier tool did (issue 20, point 7).

The earlier tool read `ffmpeg -i CLIP -frames:v 8 -pix_fmt yuv420p -f rawvideo -`: FFmpeg's scaler
did the chroma subsampling, the bit-depth reduction and the range conversion. Each test builds a
clip in one pixel format (PyAV), asks the `ffmpeg` binary for those planes, and compares them
with what salmat decodes under compat, plane by plane, then `saliency_mean` end to end (the same
planes written as a raw `.yuv` file, read by salmat, must give the clip's values). Skipped
without the binary.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

import salmat
from conftest import read_jsonl, write_jsonl
from salmat.decode import decode_sampled
from salmat.sources import ClipSpec
from salmat.values import SamplingOptions

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="compares with the ffmpeg binary's planes")
FRAMES = 8
HISTORICAL = SamplingOptions("head", FRAMES, FRAMES, historical_planes=True)

# pixel format, encoder, width, height, encoder options, (largest code difference, share of samples that differ)
EXACT = (0, 0.0)
CASES = [
    ("yuv444p", "libx264", 161, 91, {"qp": "12"}, EXACT),
    ("yuv422p", "libx264", 160, 91, {"qp": "12"}, EXACT),
    ("yuv420p10le", "libx264", 160, 90, {"qp": "12"}, EXACT),
    ("yuv422p10le", "libx264", 160, 90, {"qp": "12"}, EXACT),
    ("yuv444p10le", "libx264", 161, 91, {"qp": "12"}, EXACT),
    ("yuv440p", "ffv1", 160, 90, {}, EXACT),
    ("yuv411p", "ffv1", 160, 90, {}, EXACT),
    ("yuv410p", "ffv1", 160, 90, {}, EXACT),
    ("yuv420p12le", "ffv1", 160, 90, {}, EXACT),
    ("yuva420p", "ffv1", 160, 90, {}, EXACT),
    ("gray", "ffv1", 161, 91, {}, EXACT),
    ("bgr0", "ffv1", 160, 90, {}, EXACT),
    ("yuv420p", "libx264", 160, 90, {"qp": "12"}, EXACT),
    ("yuvj420p", "mjpeg", 160, 90, {}, EXACT),
    ("yuvj420p", "libx264", 160, 90, {"qp": "12"}, EXACT),  # an H.264 stream flagged full range
    ("nv12", "rawvideo", 160, 90, {}, EXACT),
    ("p010le", "rawvideo", 160, 90, {}, EXACT),
    ("yuyv422", "rawvideo", 160, 90, {}, EXACT),
    ("yuv444p16le", "ffv1", 160, 90, {}, EXACT),
    ("rgb24", "rawvideo", 160, 91, {}, EXACT),
    # FFmpeg changed these rounding paths after 5.1: one code value in a share of the samples
    ("gray10le", "ffv1", 160, 90, {}, (1, 0.002)),
    ("yuvj422p", "mjpeg", 160, 90, {}, (1, 0.25)),
    ("yuvj444p", "mjpeg", 161, 91, {}, (1, 0.25)),
    # FFmpeg 5.1 averaged an odd-width RGB row's chroma in pixel pairs, reading past the row's end
    ("rgb24", "rawvideo", 161, 91, {}, (80, 0.35)),
]
# |Δ saliency_mean| (default model) these leave against the ffmpeg binary's planes: documented
# in docs/usage.md (measured 1.3e-5, 1.0e-4, 8.3e-4 on these clips)
DOCUMENTED_MEAN_GAP = {"gray10le": 5e-5, "yuvj422p": 2e-3, "yuvj444p": 2e-3, "rgb24-161": 3e-2}


def _picture(i: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour ramps, a bright moving block and some texture."""
    rows, cols = np.mgrid[0:height, 0:width]
    rgb = np.stack([(2 * cols + 5 * i) % 256, (3 * rows + 40) % 256, (cols + rows + 9 * i) % 256], axis=-1)
    rng = np.random.default_rng(i)
    rgb = rgb + rng.integers(-12, 13, rgb.shape)
    x, y = (7 * i) % (width - 20), (4 * i) % (height - 16)
    rgb[y : y + 16, x : x + 20] = (250, 220, 30)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _clip(path: Path, pix_fmt: str, codec: str, width: int, height: int, options: dict[str, str]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options
        for i in range(FRAMES + 2):
            frame = av.VideoFrame.from_ndarray(_picture(i, width, height), format="rgb24").reformat(format=pix_fmt)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _cli_planes(path: Path, width: int, height: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The earlier tool's read: the ffmpeg binary's 8-bit 4:2:0 planes of the first frames."""
    out = subprocess.run([FFMPEG or "ffmpeg", "-v", "error", "-i", str(path), "-frames:v", str(FRAMES),
                          "-pix_fmt", "yuv420p", "-f", "rawvideo", "-"], capture_output=True, check=True,
                         timeout=120).stdout
    cw, ch = (width + 1) // 2, (height + 1) // 2
    size = width * height + 2 * cw * ch
    assert len(out) == FRAMES * size
    frames = []
    for i in range(FRAMES):
        data = np.frombuffer(out, np.uint8, size, i * size)
        frames.append((data[: width * height].reshape(height, width),
                       data[width * height : width * height + cw * ch].reshape(ch, cw),
                       data[width * height + cw * ch :].reshape(ch, cw)))
    return frames


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("compat_planes")


@pytest.mark.parametrize("pix_fmt, codec, width, height, options, allowed", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_compat_planes_are_the_ffmpeg_command_lines(folder, pix_fmt, codec, width, height, options, allowed):
    try:
        suffix = "nut" if codec == "rawvideo" else "mkv"  # Matroska takes no raw video in FFmpeg 5.1
        path = _clip(folder / f"{pix_fmt}-{codec}-{width}.{suffix}", pix_fmt, codec, width, height, options)
    except av.FFmpegError as exc:
        pytest.skip(f"this PyAV can't encode {pix_fmt} with {codec}: {exc}")
    want = _cli_planes(path, width, height)
    got = decode_sampled(ClipSpec(str(path)), HISTORICAL)
    assert len(got) == FRAMES and all(f.bit_depth == 8 for f in got)
    largest, differing, samples = 0, 0, 0
    for frame, planes in zip(got, want, strict=True):
        for ours, theirs in zip((frame.y, frame.u, frame.v), planes, strict=True):
            assert ours.shape == theirs.shape
            diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
            largest, differing, samples = max(largest, int(diff.max())), differing + int(np.count_nonzero(diff)), \
                samples + diff.size
    assert largest <= allowed[0] and differing <= allowed[1] * samples, (largest, differing / samples)

    # end to end: the clip under compat against the ffmpeg binary's planes as a raw file; the
    # default model's sign(DCT) turns one code value into a visible change, hence the table
    raw = folder / f"{path.stem}_cli.yuv"
    raw.write_bytes(b"".join(p.tobytes() for planes in want for p in planes))
    table = write_jsonl(folder / f"{path.stem}.jsonl", [{"src": str(path)},
                                                      {"src": str(raw), "width": width, "height": height}])
    out = folder / f"{path.stem}_out.jsonl"
    report = salmat.materialize(table, out, compat="historical", no_cache=True, workers=1, quiet=True)
    assert report.counts == {"ok": 2}
    ours, theirs = read_jsonl(out)
    tolerance = DOCUMENTED_MEAN_GAP.get(pix_fmt, DOCUMENTED_MEAN_GAP.get(f"{pix_fmt}-{width}", 0.0))
    assert abs(ours["saliency_mean"] - theirs["saliency_mean"]) <= tolerance, (ours, theirs)
    assert abs(ours["saliency_var"] - theirs["saliency_var"]) <= tolerance, (ours, theirs)


def test_without_compat_a_10_bit_clip_keeps_salmats_own_rounding(folder):
    """Compat changes only compat runs: a default run still rounds 10-bit samples itself."""
    path = _clip(folder / "ten.mkv", "yuv420p10le", "libx264", 160, 90, {"qp": "12"})
    plain = decode_sampled(ClipSpec(str(path)), SamplingOptions("head", FRAMES, FRAMES))
    assert all(f.bit_depth == 10 for f in plain)
    with av.open(str(path)) as container:
        first = next(container.decode(video=0)).to_ndarray()  # (H·3/2, W) uint16 planes, 4:2:0
    np.testing.assert_array_equal(plain[0].y, first[:90])


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p"])
def test_a_size_change_mid_stream_is_scaled_to_the_first_size_as_the_command_line_does(folder, pix_fmt):
    """Two H.264 streams of other sizes, one after the other: the command line scales every later
    frame to the first frame's size (its raw output has one frame size), and so does compat."""
    path = folder / f"grows_{pix_fmt}.h264"
    with path.open("wb") as joined:
        for index, (width, height) in enumerate(((96, 64), (120, 50))):
            part = folder / f"part{index}_{pix_fmt}.h264"
            with av.open(str(part), "w", format="h264") as container:
                stream = container.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
                stream.options = {"qp": "12"}
                for i in range(FRAMES // 2):
                    picture = av.VideoFrame.from_ndarray(_picture(i + 4 * index, width, height), format="rgb24")
                    container.mux(stream.encode(picture.reformat(format=pix_fmt)))
                container.mux(stream.encode())
            joined.write(part.read_bytes())
    want = _cli_planes(path, 96, 64)
    got = decode_sampled(ClipSpec(str(path)), HISTORICAL)
    assert len(got) == FRAMES
    for frame, planes in zip(got, want, strict=True):
        for ours, theirs in zip((frame.y, frame.u, frame.v), planes, strict=True):
            np.testing.assert_array_equal(ours, theirs)
