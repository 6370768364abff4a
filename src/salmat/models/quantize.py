"""`--precision int8`: an ONNX model quantized by onnxruntime, calibrated on the run's own clips.

Recipe (`RECIPE`): onnxruntime's `quant_pre_process` (shape inference and graph
clean-up), then static QDQ quantization — uint8 activations, int8 weights per
output channel — with MinMax ranges calibrated on frames of the run's own clips.
`Resize` nodes stay in float: quantizing around them cost more than it saved
(measured on saliency_student_v2). Dynamic quantization was measured too and
was several times *slower* than fp32 on these conv nets (onnxruntime's
ConvInteger path), so it is not offered.

Calibration is deterministic: the first `CALIBRATION_CLIPS` distinct paths of
the run's table that decode (table order), `CALIBRATION_FRAMES` frames each,
sampled evenly over the clip, preprocessed exactly as the model's preset does
at a short side of at most `CALIBRATION_SHORT_SIDE` (activation ranges don't
depend on resolution; memory does).

The quantized model is kept in the user cache folder (`$SALMAT_CACHE_DIR`, else
`$XDG_CACHE_HOME/salmat`, …) under `int8/`, named by the source model's sha256,
the onnxruntime version and the recipe; later runs reuse it. A JSON file beside
it records what it was calibrated on; the audit shows both, and the int8 file's
own sha256 is part of the model fingerprint, so cached results of one
calibration are never served for another. Delete the file to recalibrate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import default_cache_path
from ..decode import decode_sampled
from ..defaults import DEFAULT_MAX_PIXELS
from ..errors import ClipError, SalmatError, warn
from ..frames import YuvFrame
from ..option_spec import named, passing
from ..sources import ClipSpec
from ..values import SamplingOptions
from .presets import Preprocess
from .registry import file_sha256

RECIPE = "qdq-u8s8-perchannel-noresize-v1"  # change it whenever the quantized model would change
CALIBRATION_CLIPS = 4
CALIBRATION_FRAMES = 2
CALIBRATION_SHORT_SIDE = 540
_FLOAT_OPS = {"Resize"}


@dataclass(frozen=True)
class CalibrationSource:
    """Where calibration frames come from: the run's own table (its path column, joined to `root`)."""

    table: str
    path_column: str = "src"
    root: str | None = None

    def clip_paths(self) -> Iterator[str]:
        """Distinct, non-empty paths in table order."""
        from ..tables import TableReader  # only when a model is quantized

        column = TableReader(self.table).read_columns([self.path_column]).column(self.path_column)
        seen: set[str] = set()
        for cell in column.to_pylist():
            if not isinstance(cell, str) or not cell.strip() or cell in seen:
                continue
            seen.add(cell)
            yield cell if os.path.isabs(cell) or not self.root else os.path.join(self.root, cell)


@dataclass(frozen=True)
class Int8Model:
    """A quantized model file and the record of how it was made."""

    path: Path
    sha256: str
    record: dict[str, Any]


def calibration_source(precision: str, table: str, path_column: str, root: str | None) -> CalibrationSource | None:
    """The run's own table as the calibration source, for `--precision int8` only."""
    return CalibrationSource(table, path_column, root) if precision == "int8" else None


def _ort_version() -> str:
    import onnxruntime  # loaded already wherever a model is; not at `import salmat.pipeline`

    return str(onnxruntime.__version__)


def int8_folder() -> Path:
    """`int8/` beside the result cache (the user cache folder; `$SALMAT_CACHE_DIR` when set)."""
    return Path(os.path.dirname(default_cache_path())) / "int8"


def int8_file(source_sha256: str) -> Path:
    return int8_folder() / f"{source_sha256}-ort{_ort_version()}-{RECIPE}.onnx"


def int8_model(source: Path, source_sha256: str, preset: Preprocess, input_name: str,
               calibration: CalibrationSource | None) -> Int8Model:
    """The cached int8 model of `source`, quantized first when there is none yet."""
    path = int8_file(source_sha256)
    cached = _verified(path)
    if cached is not None:
        return cached
    if calibration is None:
        raise SalmatError(f"no int8 model of {source.name} is cached here ({path}) and this process has no "
                          "clips to calibrate one on; run salmat materialize --precision int8 on this machine "
                          "first")
    tensors, used = calibration_tensors(calibration, preset)
    record = {"source_sha256": source_sha256, "onnxruntime": _ort_version(), "recipe": RECIPE,
              "calibration": {"table": os.path.abspath(calibration.table), "frames": used}}
    try:
        quantize(source, input_name, tensors, path, record)
    except OSError as exc:
        raise SalmatError(f"cannot keep the int8 model in {path.parent}: {exc.strerror or exc}; set "
                          "SALMAT_CACHE_DIR to a writable folder") from None
    verified = _verified(path)
    if verified is None:
        raise SalmatError(f"the int8 model just written to {path} does not read back; check that folder's disk")
    return verified


def _verified(path: Path) -> Int8Model | None:
    """The cached int8 model at `path` when its bytes are the ones its record names; a file changed,
    cut short or without a record is not used (it is quantized again, with a warning)."""
    try:
        if not path.is_file():
            return None
        sha = file_sha256(path)
    except (OSError, SalmatError):
        return None
    record = _read_record(path)
    if record.get("int8_sha256") == sha:
        return Int8Model(path, sha, record)
    warn(f"the cached int8 model {path} is not the file its record describes (changed, damaged or from an older "
         "salmat); quantizing it again")
    return None


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record: dict[str, Any] = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record


# ---- calibration ----------------------------------------------------------------------


def calibration_tensors(source: CalibrationSource, preset: Preprocess) -> tuple[list[np.ndarray], list[str]]:
    """Preprocessed frames of the first clips that decode, and a line per frame saying which."""
    tensors: list[np.ndarray] = []
    used: list[str] = []
    clips = 0
    sampling = SamplingOptions("clip", CALIBRATION_FRAMES, CALIBRATION_FRAMES, DEFAULT_MAX_PIXELS)
    for path in source.clip_paths():
        try:
            frames = decode_sampled(ClipSpec(path), sampling)
        except ClipError:  # a clip that doesn't decode is the run's to report, not calibration's
            continue
        for i, frame in enumerate(frames):
            tensors.append(calibration_input(frame, preset))
            used.append(f"{path} #{i + 1}/{len(frames)}")
        clips += 1
        if clips == CALIBRATION_CLIPS:
            break
    if not tensors:
        raise SalmatError(f"{passing('precision', 'int8')} calibrates on the run's own clips, and none of "
                          f"{source.table}'s "
                          f"{source.path_column!r} paths decoded as a video file (raw .yuv can't calibrate); fix the "
                          f"paths (or {named('root')}), or use {passing('precision', 'fp32')}")
    return tensors, used


def calibration_input(frame: YuvFrame, preset: Preprocess) -> np.ndarray:
    """One frame as the model's input, its short side at most `CALIBRATION_SHORT_SIDE`."""
    scale_to = None
    if min(frame.height, frame.width) > CALIBRATION_SHORT_SIDE:
        scale_to = preset.scaled_size(frame.height, frame.width, CALIBRATION_SHORT_SIDE)
    return preset.encode([frame], scale_to)


# ---- quantization -------------------------------------------------------------------------


def quantize(source: Path, input_name: str, tensors: Sequence[np.ndarray], dest: Path,
             record: dict[str, Any]) -> None:
    """Write the int8 model of `source` to `dest` (atomically; its record beside it first)."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise SalmatError(f"{passing('precision', 'int8')} needs the onnx package to quantize the model ({exc}); "
                          "pip install 'salmat[int8]'") from None

    class Frames(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._feeds = iter([{input_name: t} for t in tensors])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".quantizing-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        with _logging_silenced():
            try:
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
                ops = sorted({n.op_type for n in onnx.load(str(prepared)).graph.node} - _FLOAT_OPS)
                quantize_static(str(prepared), str(quantized), Frames(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                                op_types_to_quantize=ops)
            except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer raises anything
                raise SalmatError(f"onnxruntime could not quantize {source.name} to int8: "
                                  f"{' '.join(str(exc).split())[:300]}; use {passing('precision', 'fp32')}") from None
        record_tmp = Path(tmp) / "record.json"
        record = {**record, "int8_sha256": file_sha256(quantized)}  # checked on every later use
        record_tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(record_tmp, dest.with_suffix(".json"))
        os.replace(quantized, dest)  # last: the model file's presence means the pair is complete


@contextlib.contextmanager
def _logging_silenced() -> Iterator[None]:
    """The quantizer logs advice through the root logger, so warnings of every logger are held
    back while it runs; a run's output is ours to keep clean."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(level)
