"""How a model runs: `Knobs`, the one value that carries device, runtime, precision and size
from the options to every loader and worker (a new knob is a field here, its check in
`Knobs.check`, and its mark in `Knobs.model_id`/`Knobs.fingerprint`).

The opt-in speed knobs of ONNX models are `--inference-size S`, `--precision int8` and
`--precision bf16`; `--runtime` picks the library that runs the graph.

Each knob trades a little agreement with the native fp32 maps for speed, so each
one is recorded wherever the model is named: `saliency_model_id` gains `@S` and
`@int8` (`saliency_student_v1@540@int8`, composed in `model_id_with_knobs`, the
one place), and the model fingerprint gains the same (the result cache and the
pinned workers key on it). Tables merged from runs with different settings can
then never mix values under one id.

- `--inference-size S`: each frame is resized so its short side is S pixels
  (aspect kept, each side rounded to the preset's pad multiple, so no padding is
  fed), the model runs at that size, and the maps are upsampled back to the
  frame bilinearly (`scaled_size`). `native` (the default) is today's exact path.
  A frame whose short side is already at most S runs at its native size: the knob
  never enlarges (values equal the native ones; the id still says `@S`, "at most S").
- `--precision int8`: the model is quantized with onnxruntime's static QDQ
  quantization, calibrated on salmat's fixed calibration set (`quantize.py`).
- `--precision bf16`: OpenVINO runs the fp32 graph with bfloat16 arithmetic on CPUs
  that have it (avx512_bf16 or AMX); the id gets `@bf16`.
- `--runtime openvino`: the same fp32 graph through OpenVINO (`openvino_runtime.py`);
  values within float rounding of onnxruntime's, so the id is unchanged, while the
  fingerprint (cache key) gains `/openvino`. `auto` picks the fastest exact runtime
  installed, by the figure measured below.

`check_knobs` refuses every combination that would otherwise be silently
ignored, with one line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib.util import find_spec

from ..errors import SalmatError
from ..option_spec import named, native_or_size

# Sizes are 16..8192 (`option_spec.native_or_size`): at most four digits, so `@S` never reads
# like the registry's eight-hex-digit `@sha8`.
_KNOB_SUFFIX = re.compile(r"@(\d{1,4}|int8|bf16)$")

# The int8 gate (issue #13): int8 is offered on the CPU only while it measures at least
# INT8_MIN_SPEEDUP× fp32 inference. INT8_CPU_SPEEDUP is the figure benchmarks/bench_students.py
# measured for saliency_student_v1, one 1080p clip, one thread (6.76 s → 3.93 s of inference;
# docs/performance.md has the tables). Remeasure when onnxruntime or the CPU changes.
INT8_MIN_SPEEDUP = 1.5
INT8_CPU_SPEEDUP = 1.72
# `--runtime auto` (issue #23): OpenVINO's fp32 speed over onnxruntime's where it counts, a whole run.
# One 1080p frame of saliency_student_v1, one thread, alternating in one process (`bench_students.py
# --runtimes`), favoured OpenVINO (1.14x and 1.44x on the busy 2-core AMD EPYC, no AVX-512); but
# `materialize --compat historical` on 12 1080p clips with 2 workers, same run, took 52.95 s on
# onnxruntime and 78.97 s on OpenVINO: 0.67x. `auto` takes OpenVINO on the CPU only while this is
# above 1 (and always for bf16, which only OpenVINO runs). OpenVINO reading the int8 QDQ file
# measured 1.46x/1.12x onnxruntime's int8 but at map Pearson 0.80 vs 0.90, so int8 stays on onnxruntime.
OPENVINO_FP32_SPEEDUP = 0.67
RUNTIMES = ("onnxruntime", "openvino")  # `auto` resolves to one of these in the driver (`Knobs.resolved`)


def parse_inference_size(value: str | int | None) -> int | None:
    """`"native"`/None → None; `"540"`/540 → 540 (the option's own check ran already)."""
    if value is None or value == "native":
        return None
    problem = native_or_size(str(value)) if not isinstance(value, bool) else "native or a whole number"
    if problem:  # a caller that skipped the option check (load_model from Python)
        raise SalmatError(f"{named('inference_size')} must be {problem}, got {value!r}")
    return int(value)


def model_id_with_knobs(base: str, inference_size: int | None, precision: str) -> str:
    """The id a row records: the model's base id plus `@S`, `@int8` or `@bf16` for the knobs in use."""
    if _KNOB_SUFFIX.search(base):
        raise SalmatError(f"model id {base!r} ends like salmat's own @S/@int8/@bf16 suffixes, which say how the "
                          "model ran; choose a label without it")
    suffix = "" if inference_size is None else f"@{inference_size}"
    return base + suffix + (f"@{precision}" if precision in ("int8", "bf16") else "")


def openvino_installed() -> bool:
    return find_spec("openvino") is not None


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (avx512_bf16 or AMX)."""
    from .openvino_runtime import cpu_capabilities

    return "BF16" in cpu_capabilities()


@dataclass(frozen=True)
class Knobs:
    """How an ONNX model runs; picklable, built once from the options (`pipeline.model_spec`) and
    carried inside `ModelSpec` to every loader and worker."""

    device: str = "cpu"
    precision: str = "fp32"
    inference_size: int | None = None  # the short side frames are brought down to (None: native)
    runtime: str = "auto"  # onnxruntime | openvino | auto (resolved in the driver)

    def resolved(self) -> Knobs:
        """`auto` replaced by the runtime that runs: OpenVINO where it is installed, the model runs
        on the CPU and it measured faster (fp32) or is the only one that can (bf16)."""
        if self.runtime != "auto":
            return self
        openvino = (self.device == "cpu" and self.precision in ("fp32", "bf16") and openvino_installed()
                    and (self.precision == "bf16" or OPENVINO_FP32_SPEEDUP > 1))
        return Knobs(self.device, self.precision, self.inference_size, "openvino" if openvino else "onnxruntime")

    def model_id(self, base: str) -> str:
        return model_id_with_knobs(base, self.inference_size, self.precision)

    def fingerprint(self) -> str:
        """The fingerprint part for the knobs: empty on the native onnxruntime fp32 path, so its
        cache keys don't change; OpenVINO's values differ in the last float bits, so it is marked."""
        return self.model_id("") + ("/openvino" if self.runtime == "openvino" else "")

    def check(self, *, builtin: bool, torch_path: bool = False) -> None:
        check_knobs(builtin=builtin, device=self.device, precision=self.precision,
                    inference_size=self.inference_size, torch_path=torch_path, runtime=self.runtime)


def knob_fingerprint(inference_size: int | None, precision: str) -> str:
    """The fingerprint part of onnxruntime's knobs (`Knobs.fingerprint` for every runtime)."""
    return Knobs(precision=precision, inference_size=inference_size, runtime="onnxruntime").fingerprint()


def scaled_size(height: int, width: int, short_side: int, multiple: int) -> tuple[int, int]:
    """(height, width) with the short side at `short_side`, the aspect kept, each side rounded to
    the nearest multiple of `multiple` (at least one multiple)."""
    scale = short_side / min(height, width)

    def side(n: int) -> int:
        return max(multiple, int(math.floor(n * scale / multiple + 0.5)) * multiple)

    return side(height), side(width)


def check_knobs(*, builtin: bool, device: str, precision: str, inference_size: int | None,
                torch_path: bool = False, runtime: str = "onnxruntime") -> None:
    """Refuse, in one line, a knob the chosen model or device would ignore."""
    size, precision_, device_ = named("inference_size"), named("precision"), named("device")
    if builtin:
        if inference_size is not None:
            raise SalmatError(f"{size} applies to ONNX models only (the built-in models already work at 64 px); "
                              "drop it, or pass an ONNX model")
        if precision in ("int8", "bf16"):  # fp16 with a built-in is a warning of the run's (`run_notes`)
            raise SalmatError(f"{precision_} {precision} applies to ONNX models only; drop it, or pass an ONNX "
                              "model")
        if runtime == "openvino":
            raise SalmatError(f"{named('runtime')} openvino applies to ONNX models only; drop it, or pass an "
                              "ONNX model")
        return
    _check_runtime(device, precision, runtime, torch_path)
    if precision == "int8" and device != "cpu":
        raise SalmatError(f"{precision_} int8 runs on the CPU only (onnxruntime's int8 kernels); use {device_} "
                          f"cpu, or {precision_} fp32/fp16 on a GPU")
    if precision == "int8" and INT8_CPU_SPEEDUP < INT8_MIN_SPEEDUP:
        raise SalmatError(f"{precision_} int8 is not offered: it measured only {INT8_CPU_SPEEDUP:.2f}x fp32 on "
                          f"the CPU (below {INT8_MIN_SPEEDUP}x; see docs/performance.md); use {size} for speed")
    if precision == "bf16":
        return  # `_check_runtime` placed it on OpenVINO on a CPU that has bf16
    if precision == "fp16" and not torch_path:
        raise SalmatError(f"{precision_} fp16 runs on a GPU through the torch path only ({device_} cuda with "
                          f"torch and onnx2torch); use {precision_} fp32 or int8 on the CPU")
    if inference_size is not None and torch_path:
        raise SalmatError(f"{size} is not available on the torch GPU path; install onnxruntime-gpu (or use "
                          f"{device_} cpu), or drop {size}")


def _check_runtime(device: str, precision: str, runtime: str, torch_path: bool) -> None:
    runtime_, precision_, device_ = named("runtime"), named("precision"), named("device")
    if runtime not in (*RUNTIMES, "auto"):
        raise SalmatError(f"unknown runtime {runtime!r}; choose one of auto, {', '.join(RUNTIMES)}")
    if runtime == "openvino":
        if device != "cpu" or torch_path:
            raise SalmatError(f"{runtime_} openvino runs on the CPU here; use {device_} cpu, or {runtime_} "
                              "onnxruntime on a GPU")
        if not openvino_installed():
            raise SalmatError(f"{runtime_} openvino needs the openvino package; pip install 'salmat[openvino]', "
                              f"or use {runtime_} onnxruntime")
        if precision == "int8":
            raise SalmatError(f"{precision_} int8 runs on onnxruntime (its QDQ model measured faster); use "
                              f"{runtime_} onnxruntime or auto")
    if precision != "bf16":
        return
    if runtime != "openvino":
        raise SalmatError(f"{precision_} bf16 runs through OpenVINO only; use {runtime_} openvino (pip install "
                          f"'salmat[openvino]'), or {precision_} fp32")
    if not cpu_has_bf16():
        raise SalmatError(f"{precision_} bf16 needs a CPU with avx512_bf16 or AMX, which this one lacks; use "
                          f"{precision_} fp32 (or int8)")
