"""Frames/s of `salmat materialize --per-frame` at 1080p with the default model.

Builds 1920×1080 H.264 clips (bench.py's content: a drifting textured background,
grain and a moving disc; x264 superfast, GOP 50, B-frames) and a per-frame
table naming every frame of each, then times whole runs (table read to output
written, no cache), best of `--repeats`:

- one clip, `--workers 1`: the rate of one clip (a clip is one unit of work);
- `--clips` clips, `--workers` = every core: the rate of the machine;
- the decode pass alone (`FramesAt` over every frame) and the model alone on
  those frames, in this process, to show where one frame's time goes.

    .venv/bin/python benchmarks/bench_per_frame.py [--frames 250] [--clips 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench import encode_clip

import salmat
from salmat.compute import frame_stats, predict_maps
from salmat.decode import FramesAt
from salmat.engines import available_cores
from salmat.models import load_model
from salmat.sources import ClipSpec
from salmat.values import SamplingOptions


def write_table(path: Path, clips: list[Path], frames: int) -> Path:
    rows = [{"src": str(clip), "frame_index": i} for clip in clips for i in range(frames)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_rate(table: Path, out: Path, rows: int, workers: int, repeats: int) -> float:
    """Best frames/s over `repeats` whole runs."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        report = salmat.materialize(str(table), str(out), per_frame=True, frame_column="frame_index",
                                    workers=workers, no_cache=True, quiet=True)
        assert report.ok == rows, report.counts
        best = max(best, rows / (time.perf_counter() - start))
    return best


def stage_rates(clip: Path, frames: int) -> dict[str, float]:
    """Decode alone, then decode + model (one frame at a time, as --per-frame runs), frames/s."""
    spec, options = ClipSpec(str(clip)), SamplingOptions()
    start = time.perf_counter()
    decoded = sum(1 for _ in FramesAt(spec, range(frames), options))
    decode_s = time.perf_counter() - start
    model = load_model(None)
    start = time.perf_counter()
    for _, frame in FramesAt(spec, range(frames), options):
        frame_stats(predict_maps(model, [frame]))
    both_s = time.perf_counter() - start
    return {"decode_fps": decoded / decode_s, "decode_and_model_fps": decoded / both_s,
            "model_ms_per_frame": 1000 * (both_s - decode_s) / decoded}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=250, help="frames per clip (25 fps)")
    parser.add_argument("--clips", type=int, default=2, help="clips in the multi-worker run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = available_cores()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        clips = [work / f"c1080_{i}.mp4" for i in range(args.clips)]
        for seed, clip in enumerate(clips):
            encode_clip(clip, 1920, 1080, 50, args.frames, seed)
        one = run_rate(write_table(work / "one.jsonl", clips[:1], args.frames), work / "o1.jsonl", args.frames, 1,
                       args.repeats)
        many = run_rate(write_table(work / "all.jsonl", clips, args.frames), work / "o2.jsonl",
                        args.frames * len(clips), cores, args.repeats)
        stages = stage_rates(clips[0], args.frames)
    print(json.dumps({
        "resolution": "1920x1080", "model": "image_signature_v1", "frames_per_clip": args.frames,
        "cores": cores, "cpu": os.uname().machine,
        "one_clip_workers_1_fps": round(one, 1),
        f"{len(clips)}_clips_workers_{cores}_fps": round(many, 1),
        **{k: round(v, 2) for k, v in stages.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
