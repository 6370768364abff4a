"""The opt-in speed knobs of ONNX models: `--inference-size S` and `--precision int8`.

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
- `--precision int8`: the model is quantized with onnxruntime's static QDQ
  quantization, calibrated on frames of the run's own clips (`quantize.py`).

`check_knobs` refuses every combination that would otherwise be silently
ignored, with one line.
"""

from __future__ import annotations

import math
import re

from ..errors import SalmatError
from ..option_spec import named, native_or_size

# Sizes are 16..8192 (`option_spec.native_or_size`): at most four digits, so `@S` never reads
# like the registry's eight-hex-digit `@sha8`.
_KNOB_SUFFIX = re.compile(r"@(\d{1,4}|int8)$")

# The int8 gate (issue #13): int8 is offered on the CPU only while it measures at least
# INT8_MIN_SPEEDUP× fp32 inference. INT8_CPU_SPEEDUP is the figure benchmarks/bench_students.py
# measured for saliency_student_v1, one 1080p clip, one thread (6.76 s → 3.93 s of inference;
# docs/performance.md has the tables). Remeasure when onnxruntime or the CPU changes.
INT8_MIN_SPEEDUP = 1.5
INT8_CPU_SPEEDUP = 1.72


def parse_inference_size(value: str | int | None) -> int | None:
    """`"native"`/None → None; `"540"`/540 → 540 (the option's own check ran already)."""
    if value is None or value == "native":
        return None
    problem = native_or_size(str(value)) if not isinstance(value, bool) else "native or a whole number"
    if problem:  # a caller that skipped the option check (load_model from Python)
        raise SalmatError(f"{named('inference_size')} must be {problem}, got {value!r}")
    return int(value)


def model_id_with_knobs(base: str, inference_size: int | None, precision: str) -> str:
    """The id a row records: the model's base id plus `@S` and `@int8` for the knobs in use."""
    if _KNOB_SUFFIX.search(base):
        raise SalmatError(f"model id {base!r} ends like salmat's own @S/@int8 suffixes, which say how the model "
                          "ran; choose a label without it")
    suffix = "" if inference_size is None else f"@{inference_size}"
    return base + suffix + ("@int8" if precision == "int8" else "")


def knob_fingerprint(inference_size: int | None, precision: str) -> str:
    """The fingerprint part for the knobs: empty on the native fp32 path, so its cache keys don't change."""
    return model_id_with_knobs("", inference_size, precision)


def scaled_size(height: int, width: int, short_side: int, multiple: int) -> tuple[int, int]:
    """(height, width) with the short side at `short_side`, the aspect kept, each side rounded to
    the nearest multiple of `multiple` (at least one multiple)."""
    scale = short_side / min(height, width)

    def side(n: int) -> int:
        return max(multiple, int(math.floor(n * scale / multiple + 0.5)) * multiple)

    return side(height), side(width)


def check_knobs(*, builtin: bool, device: str, precision: str, inference_size: int | None,
                torch_path: bool = False) -> None:
    """Refuse, in one line, a knob the chosen model or device would ignore."""
    size, precision_, device_ = named("inference_size"), named("precision"), named("device")
    if builtin:
        if inference_size is not None:
            raise SalmatError(f"{size} applies to ONNX models only (the built-in models already work at 64 px); "
                              "drop it, or pass an ONNX model")
        if precision == "int8":  # fp16 with a built-in is a warning of the run's (`run_notes`)
            raise SalmatError(f"{precision_} int8 applies to ONNX models only; drop it, or pass an ONNX model")
        return
    if precision == "int8" and device != "cpu":
        raise SalmatError(f"{precision_} int8 runs on the CPU only (onnxruntime's int8 kernels); use {device_} "
                          f"cpu, or {precision_} fp32/fp16 on a GPU")
    if precision == "int8" and INT8_CPU_SPEEDUP < INT8_MIN_SPEEDUP:
        raise SalmatError(f"{precision_} int8 is not offered: it measured only {INT8_CPU_SPEEDUP:.2f}x fp32 on "
                          f"the CPU (below {INT8_MIN_SPEEDUP}x; see docs/performance.md); use {size} for speed")
    if precision == "fp16" and not torch_path:
        raise SalmatError(f"{precision_} fp16 runs on a GPU through the torch path only ({device_} cuda with "
                          f"torch and onnx2torch); use {precision_} fp32 or int8 on the CPU")
    if inference_size is not None and torch_path:
        raise SalmatError(f"{size} is not available on the torch GPU path; install onnxruntime-gpu (or use "
                          f"{device_} cpu), or drop {size}")
