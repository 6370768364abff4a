"""Small runs with workers forked from the fork server vs spawned (the way salmat started them before).

A run of a few small clips is mostly the cost of starting its workers: a spawned worker imports
NumPy, PyAV, pyarrow, onnxruntime, OpenCV, SciPy and salmat itself before its first clip. Each
start method runs the same `salmat materialize` command `--runs` times, in a fresh interpreter
of its own (the fork server is started once per process, so the first run pays for it), with
`--workers 2`, no cache, the built-in model. Wall-clock seconds, and the ratio between the two.

    .venv/bin/python benchmarks/bench_worker_start.py [--runs 8] [--clips 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from synthetic_clips import write_disc_clip  # noqa: E402

# Run in a fresh interpreter: `runs` materialize calls, each one's seconds printed as JSON.
# "spawn" swaps the pool's start method for multiprocessing's spawn (salmat's before the fork server).
_CHILD = """
import json, multiprocessing, sys, time
import salmat
from salmat.engines import pool
method, table, out, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if method == "spawn":
    pool.worker_context = lambda: multiprocessing.get_context("spawn")
if __name__ == "__main__":
    seconds = []
    for i in range(runs):
        start = time.perf_counter()
        report = salmat.materialize(table, f"{out}.{i}.jsonl", workers=2, no_cache=True, quiet=True)
        assert report.ok == report.total, report.counts
        seconds.append(time.perf_counter() - start)
    print(json.dumps(seconds))
"""


def run_seconds(method: str, table: Path, out: Path, runs: int) -> list[float]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, method, str(table), str(out), str(runs)],
                          capture_output=True, text=True, check=True)
    seconds: list[float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--clips", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clips = [write_disc_clip(Path(folder) / f"disc{i}.mp4", 320, 180, frames=24) for i in range(args.clips)]
        table = Path(folder) / "t.jsonl"
        table.write_text("".join(json.dumps({"src": str(c)}) + "\n" for c in clips))
        results = {method: run_seconds(method, table, Path(folder) / method, args.runs)
                   for method in ("spawn", "forkserver")}
    print(f"{args.runs} runs of {args.clips} clip(s) (320x180, 24 frames), --workers 2, built-in model, no cache:")
    for method, seconds in results.items():
        print(f"  {method:10s}: first run {seconds[0]:.2f} s, later runs {sum(seconds[1:]) / (len(seconds) - 1):.2f} s "
              f"each, all {sum(seconds):.2f} s")
    spawn, fork = results["spawn"], results["forkserver"]
    print(f"  spawn / forkserver: first run {spawn[0] / fork[0]:.2f}x, "
          f"later runs {sum(spawn[1:]) / sum(fork[1:]):.2f}x, all {sum(spawn) / sum(fork):.2f}x")


if __name__ == "__main__":
    main()
