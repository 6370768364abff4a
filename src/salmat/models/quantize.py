"""`--precision int8`: an ONNX model quantized by onnxruntime, calibrated on one fixed set.

Recipe (`RECIPE`): onnxruntime's `quant_pre_process` (shape inference and graph
clean-up), then static QDQ quantization — uint8 activations, int8 weights per
output channel — with MinMax ranges calibrated on `CALIBRATION_SET`. `Resize`
nodes stay in float: quantizing around them cost more than it saved (measured on
saliency_student_v2). Dynamic quantization was measured too and was several
times *slower* than fp32 on these conv nets (onnxruntime's ConvInteger path), so
it is not offered.

Calibration is one fixed set, the same everywhere (`calibration_frames`):
`CALIBRATION_FRAMES` synthetic 960×540 colour frames salmat draws itself from a
fixed seed — multi-scale noise with a natural image's falling spectrum, smooth
gradients and sharp-edged shapes, the range of content whose activations the
ranges must cover. So calibration reads no file of the user's (nothing outside
`--root`, nothing over `--max-pixels`, no clip that could hang), a model has one
int8 version per onnxruntime version and recipe, and `@int8` always names that
one: two different int8 models never share an id. The set's sha256 is in the
int8 file's name and record. Earlier salmat calibrated on the run's first clips,
so two tables gave two models under one id (issue #21).

The quantized model is kept in the user cache folder (`$SALMAT_CACHE_DIR`, else
`$XDG_CACHE_HOME/salmat`, …) under `int8/`; later runs reuse it. A lock file
beside it makes concurrent first runs quantize once: the second waits and reads
the first's model. A JSON file beside the model records how it was made; the
audit shows it, and the int8 file's own sha256 is part of the model fingerprint.
Delete the file to quantize again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..cache import default_cache_path
from ..errors import SalmatError, warn
from ..frames import YuvFrame
from ..option_spec import passing
from .presets import Preprocess
from .registry import file_sha256

RECIPE = "qdq-u8s8-perchannel-noresize-v1"  # change it whenever the quantized model would change
CALIBRATION_SET = "synthetic-v1"  # change it whenever `calibration_frames` would draw other frames
CALIBRATION_FRAMES = 16
CALIBRATION_SIZE = (540, 960)  # (height, width) of each calibration frame
_FLOAT_OPS = {"Resize"}


@dataclass(frozen=True)
class Int8Model:
    """A quantized model file and the record of how it was made."""

    path: Path
    sha256: str
    record: dict[str, Any]


def _ort_version() -> str:
    import onnxruntime  # loaded already wherever a model is; not at `import salmat.pipeline`

    return str(onnxruntime.__version__)


def int8_folder() -> Path:
    """`int8/` beside the result cache (the user cache folder; `$SALMAT_CACHE_DIR` when set)."""
    return Path(os.path.dirname(default_cache_path())) / "int8"


def int8_file(source_sha256: str) -> Path:
    return int8_folder() / (f"{source_sha256}-ort{_ort_version()}-{RECIPE}-{CALIBRATION_SET}-"
                            f"{calibration_sha256()[:12]}.onnx")


def int8_model(source: Path, source_sha256: str, preset: Preprocess, input_name: str) -> Int8Model:
    """The cached int8 model of `source`, quantized first when there is none yet (once, even when
    several processes ask at the same time)."""
    path = int8_file(source_sha256)
    cached = _verified(path, quiet=True)
    if cached is not None:
        return cached
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_suffix(".lock")):
            cached = _verified(path)  # another process may have made it while this one waited
            if cached is None:
                _quantize_fixed(source, source_sha256, preset, input_name, path)
    except OSError as exc:
        raise SalmatError(f"cannot keep the int8 model in {path.parent}: {exc.strerror or exc}; set "
                          "SALMAT_CACHE_DIR to a writable folder") from None
    verified = _verified(path)
    if verified is None:
        raise SalmatError(f"the int8 model just written to {path} does not read back; check that folder's disk")
    return verified


def _quantize_fixed(source: Path, source_sha256: str, preset: Preprocess, input_name: str, path: Path) -> None:
    frames = calibration_frames()
    print(f"salmat: int8: quantizing {source.name} once, calibrated on salmat's fixed calibration set "
          f"{CALIBRATION_SET} ({len(frames)} synthetic {CALIBRATION_SIZE[1]}x{CALIBRATION_SIZE[0]} frames, "
          f"no clip of yours); kept in {path.parent}", file=sys.stderr, flush=True)
    tensors = [preset.encode([frame]) for frame in frames]
    record = {"source_sha256": source_sha256, "onnxruntime": _ort_version(), "recipe": RECIPE,
              "calibration": {"set": CALIBRATION_SET, "frames": len(frames), "clips": 0,
                              "size": f"{CALIBRATION_SIZE[1]}x{CALIBRATION_SIZE[0]}",
                              "sha256": calibration_sha256()}}
    quantize(source, input_name, tensors, path, record)


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    with open(lock, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _verified(path: Path, quiet: bool = False) -> Int8Model | None:
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
    if quiet:  # said once, under the lock
        return None
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


@cache
def calibration_frames() -> tuple[YuvFrame, ...]:
    """The fixed calibration set: `CALIBRATION_FRAMES` 8-bit 4:2:0 frames drawn from a fixed seed."""
    rng = np.random.default_rng(20261206)
    return tuple(_calibration_frame(rng, i) for i in range(CALIBRATION_FRAMES))


def _calibration_frame(rng: np.random.Generator, index: int) -> YuvFrame:
    height, width = CALIBRATION_SIZE
    rgb = _noise(rng, height, width, 3) * (0.4 + 0.6 * rng.random(3))  # coloured 1/f-like noise
    ramp = np.linspace(0.0, 1.0, width)[None, :, None] * rng.random(3)  # a smooth gradient
    rgb = 0.7 * rgb + 0.3 * ramp
    rgb = (rgb - rgb.min()) / max(float(np.ptp(rgb)), 1e-9)  # the full range: black to white
    image = np.ascontiguousarray((rgb * 255.0).round().astype(np.uint8))
    for k in range(3 + index % 5):  # sharp-edged objects: one black, one white, then any colour
        colour = (0, 0, 0) if k == 0 else (255, 255, 255) if k == 1 else tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(10, height // 3))
        if rng.random() < 0.5:
            cv2.circle(image, centre, radius, colour, -1)
        else:
            cv2.rectangle(image, centre, (centre[0] + radius, centre[1] + radius // 2), colour, -1)
    yuv = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)
    y = yuv[:height]
    chroma = yuv[height:].reshape(2, height // 2, width // 2)
    return YuvFrame(np.ascontiguousarray(y), np.ascontiguousarray(chroma[0]), np.ascontiguousarray(chroma[1]))


def _noise(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """Octaves of bilinearly upsampled uniform noise, each finer one weaker (a falling spectrum)."""
    total = np.zeros((height, width, channels))
    for octave in range(1, 8):
        h, w = max(2, height >> (8 - octave)), max(2, width >> (8 - octave))
        coarse = rng.random((h, w, channels)).astype(np.float32)
        total += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR) / octave
    total -= total.min()
    result: np.ndarray = total / max(float(total.max()), 1e-9)
    return result


@cache
def calibration_sha256() -> str:
    digest = hashlib.sha256()
    for frame in calibration_frames():
        for plane in (frame.y, frame.u, frame.v):
            digest.update(plane.tobytes())
    return digest.hexdigest()


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
