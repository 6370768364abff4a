"""`--runtime openvino`: an ONNX graph run by OpenVINO's CPU plugin, behind onnxruntime's `run` call.

OpenVINO reads the ONNX file itself. A graph compiled for one input shape runs faster
than a dynamic one, so each (batch, 3, H, W) shape is compiled once per process and
kept (`OpenVinoSession._compiled`): a corpus of one resolution compiles once per
worker. Compiling `saliency_student_v1` for a 1080p frame takes about as long as one
frame's inference (benchmarks/bench_students.py reports it as `compile (once)`); the
`MAX_SHAPES` most recently used shapes are kept.

Precision is explicit, never OpenVINO's default: `f32` for `--precision fp32` (values
within float rounding of onnxruntime's), `bf16` for `--precision bf16`.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SalmatError
from ..option_spec import passing

_HINTS = {"fp32": "f32", "bf16": "bf16"}
MAX_SHAPES = 8  # compiled shapes kept per model: a batch model has two per clip size (full and last chunk)


@cache
def _core() -> Any:
    import openvino

    return openvino.Core()


def version() -> str:
    import openvino

    return str(openvino.__version__)


def cpu_capabilities() -> set[str]:
    """OpenVINO's CPU optimisation capabilities, plus `BF16` where /proc/cpuinfo shows avx512_bf16
    or AMX (OpenVINO lists BF16 on some of those CPUs only)."""
    capabilities = {str(c) for c in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = set(next((line for line in info if line.startswith("flags")), "").split())
    except OSError:
        flags = set()
    if flags & {"avx512_bf16", "amx_bf16"}:
        capabilities.add("BF16")
    return capabilities


class OpenVinoSession:
    """One ONNX graph on OpenVINO's CPU plugin; `run` takes and returns what onnxruntime's does."""

    def __init__(self, path: Path, precision: str, threads: int | None) -> None:
        if precision not in _HINTS:
            raise SalmatError(f"OpenVINO runs fp32 or bf16 here, not {precision}")
        try:
            self._model = _core().read_model(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own RuntimeError subtypes
            raise SalmatError(f"OpenVINO cannot read {path.name}: {' '.join(str(exc).split())[:300]}; use "
                              f"{passing('runtime', 'onnxruntime')}") from None
        self._config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINTS[precision],
                                        "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            self._config["INFERENCE_NUM_THREADS"] = threads
        self._compiled: dict[tuple[int, ...], Any] = {}
        # One infer request per shape, and a request runs one inference at a time ("Infer Request is
        # busy"): threads sharing this model (`--engine feeder`) take turns, as onnxruntime's callers may not.
        self._lock = threading.Lock()

    def compiled_shapes(self) -> list[tuple[int, ...]]:
        return list(self._compiled)

    def _request(self, input_name: str, shape: tuple[int, ...]) -> Any:
        request = self._compiled.pop(shape, None)
        if request is None:
            model = self._model.clone()
            model.reshape({input_name: list(shape)})
            request = _core().compile_model(model, "CPU", self._config).create_infer_request()
            if len(self._compiled) >= MAX_SHAPES:  # a corpus of many sizes: forget the least recently used
                self._compiled.pop(next(iter(self._compiled)))
        self._compiled[shape] = request  # most recently used last
        return request

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs named `output_names` for the one input in `feeds` (onnxruntime's signature)."""
        ((input_name, x),) = feeds.items()
        with self._lock:
            request = self._request(input_name, tuple(x.shape))
            request.infer({input_name: x})
            outputs = {name: request.get_tensor(name).data.copy() for name in output_names}
        return [outputs[name] for name in output_names]
