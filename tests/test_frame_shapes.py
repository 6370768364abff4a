"""Frame shapes: memory is bounded by the input's pixels, whatever a frame's shape.

The cases come from failures seen before: a 6 KB raw clip of 2x2000 pixels used 16 GB (the working-size statistics built
matrices that grow with the square of the aspect ratio), an 8x2000 FFV1 clip crashed the
process with SIGSEGV (OpenCV resizing a 16000² identity), and `--max-pixels` was checked
on the first frame only. Found here as well: a 3x1001 raw clip crashes the same way, a
1x20000 one fails with MemoryError, a 10⁶x1 one took 0.9 GB for 12 MB of frames.

Clip-level cases run the real pipeline (`salmat.materialize`) in a child process — the
old code crashed the process, so a crash must not take pytest down with it — under an
address-space limit (so a regression fails fast instead of eating the machine), and
compare the child's peak RSS with the documented bound (docs/reliability.md):

    peak RSS ≤ baseline + 3 B × pixels × frames + 48 B × pixels + 96 MB

`baseline` is the peak RSS of the same run on a tiny ordinary clip (interpreter, libraries
and model); `pixels` is one frame's W×H and `frames` the sampled frames. 3 B/px/frame
holds the decoded 4:2:0 frames (2 B/px for 1-px-wide frames, whose chroma is as wide as
their luma); 48 B/px is one frame's transient work (float32 planes, the `max` reducer's
two frame-sized buffers, OpenCV's per-row resize tables, which for a 1-px-wide frame are
per pixel); 96 MB covers the working maps (at most 16·64² px each) and the bounded cache
of upsampling Gram matrices (≤ 64 MB).
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from salmat.decode import SamplingOptions, decode_clip_sample
from salmat.errors import ClipError
from salmat.maps import WorkingMaps
from salmat.models import load_model
from salmat.models.classical import working_size
from salmat.temporal import map_stats, reduce_stats

BYTES_PER_PIXEL_FRAME = 3
BYTES_PER_PIXEL = 48
ALLOWANCE_MB = 96
AS_LIMIT = 6 << 30  # the old code reached 16 GB on a 6 KB clip; fail fast instead

_CHILD = textwrap.dedent("""
    import json, resource, sys
    import salmat
    table, out, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    salmat.materialize(table, out, no_cache=True, quiet=True, **settings)
    rows = [json.loads(line) for line in open(out)]
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"rows": [{k: r.get(k) for k in ("saliency_status", "saliency_error", "saliency_mean")}
                               for r in rows], "rss_kb": rss}))
""")


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_clips(tmp_path: Path, clips: list[tuple[Path, int | None, int | None]], **settings) -> dict:
    """materialize() on a table of `clips` (path, width, height) in a child; its rows and peak RSS (kB)."""
    table = tmp_path / f"table_{len(list(tmp_path.iterdir()))}.csv"
    lines = ["src,width,height"] + [f"{p},{w or ''},{h or ''}" for p, w, h in clips]
    table.write_text("\n".join(lines) + "\n")
    settings.setdefault("workers", 1)
    out = table.with_suffix(".jsonl")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(table), str(out), json.dumps(settings)],
                          capture_output=True, text=True, timeout=120, preexec_fn=_limit_address_space)
    assert proc.returncode == 0, f"the run died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rss_bound_kb(baseline_kb: int, pixels: int, frames: int) -> float:
    return baseline_kb + (BYTES_PER_PIXEL_FRAME * pixels * frames + BYTES_PER_PIXEL * pixels) / 1024 \
        + ALLOWANCE_MB * 1024


def write_raw(path: Path, width: int, height: int, frames: int, seed: int = 0) -> Path:
    """Random 8-bit 4:2:0 frames; chroma planes are ceil(W/2) x ceil(H/2)."""
    rng = np.random.default_rng(seed)
    chroma = 2 * ((width + 1) // 2) * ((height + 1) // 2)
    path.write_bytes(rng.integers(16, 236, (width * height + chroma) * frames, dtype=np.uint8).tobytes())
    return path


def write_ffv1(path: Path, width: int, height: int, frames: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):
            rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def h264_stream(segments: list[tuple[int, int, int]]) -> bytes:
    """An Annex B H.264 stream of concatenated encodes, one per (width, height, frames): the
    frame size changes mid-stream wherever the next segment's SPS does."""
    data = b""
    for seed, (width, height, frames) in enumerate(segments):
        buffer = io.BytesIO()
        rng = np.random.default_rng(seed)
        with av.open(buffer, "w", format="h264") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "ultrafast"}
            for _ in range(frames):
                rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        data += buffer.getvalue()
    return data


@pytest.fixture(scope="module")
def baseline_kb(tmp_path_factory) -> int:
    """Peak RSS of the same child on a tiny ordinary clip: interpreter, libraries and model."""
    folder = tmp_path_factory.mktemp("baseline")
    clip = write_raw(folder / "tiny.yuv", 64, 36, 1)
    result = run_clips(folder, [(clip, 64, 36)])
    assert result["rows"][0]["saliency_status"] == "ok"
    return int(result["rss_kb"])


# ---- the reported clips and their relatives, through the whole pipeline ---------------


@pytest.mark.parametrize("width, height, frames", [
    (2, 2000, 1),        # reported: a 6 KB raw clip that took 16 GB
    (3, 1001, 8),        # odd sizes, 2x501 chroma: SIGSEGV in the old code
    (1, 20000, 8),       # 1xN: MemoryError (model-failed) in the old code
    (1_000_000, 1, 8),   # Nx1: 0.9 GB for 12 MB of frames in the old code
])
def test_extreme_raw_shapes_are_ok_within_the_rss_bound(tmp_path, baseline_kb, width, height, frames):
    clip = write_raw(tmp_path / f"clip_{width}x{height}.yuv", width, height, frames)
    result = run_clips(tmp_path, [(clip, width, height)])
    row = result["rows"][0]
    assert row["saliency_status"] == "ok", row
    assert 0.0 <= row["saliency_mean"] <= 1.0
    bound = rss_bound_kb(baseline_kb, width * height, frames)
    assert result["rss_kb"] <= bound, f"peak RSS {result['rss_kb']} kB > bound {bound:.0f} kB"


@pytest.mark.parametrize("workers", [1, 2])
def test_reported_8x2000_ffv1_clip_is_ok_on_every_engine(tmp_path, baseline_kb, workers):
    """The reported FFV1 clip killed the process (SIGSEGV); on the pool it was `worker-lost`."""
    tall = write_ffv1(tmp_path / "tall_8x2000.mkv", 8, 2000, 8)
    clips = [(tall, None, None)]
    if workers > 1:  # two clips, so the run takes the process pool
        clips.append((write_raw(tmp_path / "tall.yuv", 2, 2000, 1), 2, 2000))
    result = run_clips(tmp_path, clips, workers=workers)
    assert [r["saliency_status"] for r in result["rows"]] == ["ok"] * len(clips), result["rows"]
    bound = rss_bound_kb(baseline_kb, 8 * 2000, 8)
    assert result["rss_kb"] <= bound, f"peak RSS {result['rss_kb']} kB > bound {bound:.0f} kB"


# ---- --max-pixels holds for every frame, not just the first ---------------------------


@pytest.fixture(scope="module")
def growing_stream(tmp_path_factory) -> Path:
    """64x64 for four frames, then 256x256 for four: the header says 64x64."""
    path = tmp_path_factory.mktemp("grow") / "grow.h264"
    path.write_bytes(h264_stream([(64, 64, 4), (256, 256, 4)]))
    return path


@pytest.mark.parametrize("sampling", ["clip", "head"])
def test_a_stream_growing_past_max_pixels_is_refused_for_its_size(tmp_path, growing_stream, sampling):
    result = run_clips(tmp_path, [(growing_stream, None, None)], max_pixels=10_000, sampling=sampling)
    row = result["rows"][0]
    assert row["saliency_status"] == "decode-failed"
    assert "max_pixels=10000" in row["saliency_error"] and "256x256" in row["saliency_error"], row


def test_an_oversized_frame_between_the_sampled_ones_is_refused(tmp_path):
    """One 256x256 frame among 64x64 ones, not itself sampled: the old code returned `ok`."""
    path = tmp_path / "bulge.h264"
    path.write_bytes(h264_stream([(64, 64, 4), (256, 256, 1), (64, 64, 4)]))
    result = run_clips(tmp_path, [(path, None, None)], max_pixels=10_000, frame_samples=2)
    row = result["rows"][0]
    assert row["saliency_status"] == "decode-failed" and "frame 4 is 256x256" in row["saliency_error"], row


def test_no_frame_over_max_pixels_is_converted(growing_stream, monkeypatch):
    """The check comes before the YUV → array conversion, on every decoded frame."""
    import salmat.decode.convert as decode  # where `converter` finds `to_yuv_frame`

    converted: list[tuple[int, int]] = []
    real = decode.to_yuv_frame

    def recording(frame, *args, **kwargs):
        converted.append((frame.width, frame.height))
        return real(frame, *args, **kwargs)

    monkeypatch.setattr(decode, "to_yuv_frame", recording)
    with pytest.raises(ClipError) as info:
        decode_clip_sample(str(growing_stream), 8, "sequential", options=SamplingOptions(max_pixels=10_000))
    assert info.value.status == "decode-failed"
    assert converted and all(w * h <= 10_000 for w, h in converted), converted


# ---- the pieces: working size and statistics -------------------------------------------


SHAPES = [(2000, 2), (2000, 8), (1001, 3), (20000, 1), (2, 2000), (1, 20000), (1, 1), (5, 3),
          (1080, 1920), (1920, 1080), (1025, 64), (3001, 7), (7, 3001), (10**6, 1), (1, 10**6)]


def test_working_maps_are_bounded_for_every_frame_shape():
    """At most 16·64² working pixels whatever the shape; the old rule gave a 2x2000 frame 64x64000."""
    for height, width in SHAPES:
        h, w = working_size(height, width)
        assert h >= 1 and w >= 1 and h * w <= 16 * 64 * 64, ((height, width), (h, w))
        if height <= 16 * width:  # up to 16:1 the rule is unchanged: width 64, aspect kept
            assert (h, w) == (max(1, round(64 * height / width)), 64)


@pytest.mark.parametrize("model_id", ["image_signature_v1", "spectral_residual_v1", "pqft_v1"])
def test_builtin_models_run_on_extreme_shapes(model_id):
    from salmat.frames import YuvFrame

    model = load_model(model_id)
    rng = np.random.default_rng(5)
    for height, width in [(2000, 2), (1001, 3), (20000, 1), (1, 20000), (1, 1), (3, 5)]:
        assert np.prod(working_size(height, width)) <= 16 * 64 * 64  # before allocating anything
        ch, cw = (height + 1) // 2, (width + 1) // 2
        frames = [YuvFrame(rng.integers(16, 236, (height, width), dtype=np.uint8),
                           rng.integers(16, 241, (ch, cw), dtype=np.uint8),
                           rng.integers(16, 241, (ch, cw), dtype=np.uint8)) for _ in range(3)]
        working = model.predict_working(frames)
        assert working.frame_size == (height, width)
        assert working.maps.size <= 3 * 16 * 64 * 64
        assert np.all(np.isfinite(working.maps)) and working.maps.min() >= 0.0 and working.maps.max() <= 1.0
        stats = reduce_stats(working, [f.luma8() for f in frames], ema_alpha=0.6)
        assert all(0.0 <= mean <= 1.0 and var >= 0.0 for mean, var in stats.values()), stats


@pytest.mark.parametrize("small_shape, frame_size", [
    ((1, 64), (1, 400_000)),    # wide: the old route built a 400000x64 float32 and float64 matrix
    ((1024, 1), (20_000, 1)),   # tall: a 20000x1024 one
    ((1024, 3), (3001, 7)),
])
def test_working_size_stats_use_memory_linear_in_frame_pixels(small_shape, frame_size):
    import tracemalloc

    rng = np.random.default_rng(9)
    small = rng.random(small_shape, dtype=np.float32)
    working = WorkingMaps(small[None], frame_size)
    pixels = frame_size[0] * frame_size[1]
    tracemalloc.start()
    try:
        stats = working.stats(small)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One float32 frame-sized map (4 B/px); the Gram route's bounded matrices when it applies.
    assert peak <= 8 * pixels + (25 << 20), f"{peak / 2**20:.0f} MiB traced for {pixels} pixels"
    assert stats == pytest.approx(map_stats(working.upsample(small)), abs=1e-7)
