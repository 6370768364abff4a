"""An EMA-alpha sweep and a second compare from the result cache vs computing, in one run.

    .venv/bin/python benchmarks/bench_sweep.py [--clips N] [--model saliency_student_v1]

Builds N 640x360 clips (PyAV, kept in `benchmarks/work/sweep/`), then times, in
this order, after one untimed warm-up run:

  (a) `materialize` at ema_alpha 0.6 (computed: decode + model), the baseline;
  (b) the same table at ema_alpha 0.3: every clip reduced again from the cached
      maps (no decode, no model);
  (c) `compare` with two reducers (computed, its own fresh cache), then a second
      `compare` with other reducers, alpha and target: from the cache.

It prints each time and the ratios (b)/(a) and second/first compare, measured in
the same run. `--model` picks a learned model (found in `../shared/models`) for a
model whose maps are full size: they are cached while they fit
`clip_maps.MAPS_CAP_BYTES` (640x360x8 float32 = 7.4 MB does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import salmat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from synthetic_clips import write_disc_clip  # noqa: E402 - the example's clip builder, beside it

HERE = Path(__file__).resolve().parent
SHARED_MODELS = HERE.parents[1] / "shared" / "models"


def _clips(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        clip = folder / f"c{i}.mp4"
        if not clip.exists():
            write_disc_clip(clip, 640, 360, frames=24 + i)
        rows.append({"src": clip.name, "mos": float(i % 5)})
    table = folder / "table.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return table


def _timed(label: str, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label:<48} {seconds:8.2f} s", flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--model", default="image_signature_v1")
    args = parser.parse_args()
    model_dir = str(SHARED_MODELS) if SHARED_MODELS.is_dir() else None
    table = _clips(HERE / "work" / "sweep", args.clips)
    work = Path(tempfile.mkdtemp(prefix="salmat-sweep-"))
    try:
        common = dict(root=str(table.parent), cache=str(work / "cache.sqlite"), model=args.model,
                      model_dir=model_dir, workers=1, clip_timeout=None, quiet=True, temporal_aggregator="ema")
        # Warm-up (imports, decoder and model set-up), not timed.
        salmat.materialize(table, work / "w.parquet", ema_alpha=0.6, **{**common, "cache": None, "no_cache": True})
        first = _timed("(a) materialize, alpha 0.6 (computed)",
                       lambda: salmat.materialize(table, work / "a.parquet", ema_alpha=0.6, **common))
        sweep = _timed("(b) materialize, alpha 0.3 (from cached maps)",
                       lambda: salmat.materialize(table, work / "b.parquet", ema_alpha=0.3, **common))
        cmp = dict(root=str(table.parent), cache=str(work / "compare.sqlite"), models=[args.model], model_dir=model_dir,
                   workers=1, clip_timeout=None, quiet=True, plots=False)
        one = _timed("(c) compare mean,max (computed)",
                     lambda: salmat.compare_models(str(table), str(work / "c1"), reducers="mean,max", **cmp))
        two = _timed("(c) compare ema,motion-weighted + target (cache)",
                     lambda: salmat.compare_models(str(table), str(work / "c2"), reducers="ema,motion-weighted",
                                                   ema_alpha=0.3, target="mos", **cmp))
        print(f"alpha sweep / first run: {sweep / first:.3f}; second compare / first: {two / one:.3f} "
              f"({args.clips} clips, model {args.model}, {os.cpu_count()} cores)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
