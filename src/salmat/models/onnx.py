"""Any ONNX saliency model, behind the `SaliencyModel` protocol.

`load_onnx_model(path, preprocess=...)` opens one onnxruntime session per model
object and reuses it for every frame of every clip. The preprocessing preset
(`presets.py`) turns frames into the input tensor and the output back into
maps. Everything that can be checked before any clip runs is checked at load
time and refused with a one-line `SalmatError`; problems that only show on a
real frame (a map of the wrong shape, NaN/inf values, an onnxruntime error)
raise `ClipError("model-failed", ...)` for that clip.

Batching: a model whose input batch dimension is fixed to 1 (the historical
students) runs one frame per call; a batch-dynamic model gets up to
`MAX_BATCH` same-sized frames per call. Frames of different sizes never share
a call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import ClipError, SalmatError
from ..frames import YuvFrame
from .presets import Preprocess, resolve_preset

# Bump when this adapter changes in a way that can change the maps.
ALGORITHM_VERSION = "onnx-adapter-1"
MAX_BATCH = 8
DEVICES = ("cpu", "cuda", "auto")

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _shape(dims: Any) -> list[int | str | None]:
    """onnxruntime's declared shape, symbolic dims as their names (None when unnamed)."""
    if dims is None:
        return []
    return [d if isinstance(d, (int, str)) or d is None else str(d) for d in dims]


def _fmt_shape(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _io_facts(args: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"name": a.name, "shape": _shape(a.shape), "type": a.type} for a in args]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SalmatError(f"ONNX model file not found: {path}; check --model-path")
    if not path.is_file():
        raise SalmatError(f"--model-path {path} is not a file; pass the .onnx file itself")


def _open_session(path: Path, providers: list[str], threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: shape-inference warnings are ours to report
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise SalmatError(
            f"cannot load ONNX model {path}: {_one_line(exc)}; check that the file is a complete ONNX model"
        ) from exc


def _providers_for(device: str) -> list[str]:
    if device not in DEVICES:
        raise SalmatError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda":
        if not has_cuda:
            raise SalmatError(
                "device 'cuda' needs onnxruntime's CUDAExecutionProvider, which this install lacks "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _pick(args: Sequence[Any], wanted: str | None, kind: str, path: Path, default_first: bool) -> Any:
    names = [a.name for a in args]
    if wanted is not None:
        for a in args:
            if a.name == wanted:
                return a
        raise SalmatError(
            f"ONNX model {path.name} has no {kind} named {wanted!r} (it has {', '.join(names)}); "
            f"fix {kind}_name in the preprocessing config"
        )
    if len(args) == 1 or default_first:
        return args[0]
    for a in args:
        if a.name == "input":
            return a
    raise SalmatError(
        f"ONNX model {path.name} has {len(args)} inputs ({', '.join(names)}); "
        "name the image input with input_name in a custom preprocessing config (--preprocess custom:PATH)"
    )


class OnnxSaliencyModel:
    """An ONNX saliency model with its preprocessing preset; satisfies `SaliencyModel`."""

    def __init__(
        self,
        path: str | Path,
        preset: Preprocess,
        model_id: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        _check_file(self.path)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise SalmatError(f"threads must be a positive integer, not {threads!r}")
        if model_id is not None and not model_id.strip():
            raise SalmatError("--model-id is empty; give a label, or drop --model-id to use the file's stem")
        self.preset = preset
        self.device = device
        self.threads = threads
        self.id = model_id if model_id is not None else self.path.stem
        providers = _providers_for(device)
        self.sha256 = file_sha256(self.path)
        self.session = _open_session(self.path, providers, threads)
        self.providers = list(self.session.get_providers())
        if device == "cuda" and "CUDAExecutionProvider" not in self.providers:
            raise SalmatError(
                "onnxruntime could not start its CUDA provider (missing CUDA/cuDNN libraries?); "
                "fix the CUDA install or use --device cpu"
            )
        self._inputs = self.session.get_inputs()
        self._outputs = self.session.get_outputs()
        self._input = _pick(self._inputs, preset.input_name, "input", self.path, default_first=False)
        self._output = _pick(self._outputs, preset.output_name, "output", self.path, default_first=True)
        self._validate()
        self._dtype = _NUMPY_TYPES[self._input.type]
        self.batch_fixed = self._input.shape[0] == 1
        self.fingerprint = f"onnx/{ALGORITHM_VERSION}/{self.sha256}/{preset.name}/{preset.fingerprint()}"

    # ---- load-time checks ---------------------------------------------------

    def _validate(self) -> None:
        name = self.path.name
        inp, out = self._input, self._output
        ishape, oshape = _shape(inp.shape), _shape(out.shape)
        if len(ishape) != 4:
            raise SalmatError(
                f"ONNX model {name}: input {inp.name!r} has shape {_fmt_shape(ishape)} (rank {len(ishape)}); "
                "salmat feeds images as [batch, 3, height, width], so the model must take a rank-4 input"
            )
        if isinstance(ishape[1], int) and ishape[1] != 3:
            raise SalmatError(
                f"ONNX model {name}: input {inp.name!r} has {ishape[1]} channels ({_fmt_shape(ishape)}); "
                "salmat feeds 3-channel RGB as [batch, 3, height, width]; export the model with 3 input channels"
            )
        if isinstance(ishape[0], int) and ishape[0] != 1:
            raise SalmatError(
                f"ONNX model {name}: input {inp.name!r} has a fixed batch of {ishape[0]} ({_fmt_shape(ishape)}); "
                "export it with batch 1 or a dynamic batch dimension"
            )
        if inp.type not in _NUMPY_TYPES:
            raise SalmatError(
                f"ONNX model {name}: input {inp.name!r} is {inp.type}; salmat feeds float images "
                "(float, float16 or double); export the model with a float input"
            )
        if oshape and len(oshape) != 4:  # an empty shape is unknown; checked at run time
            raise SalmatError(
                f"ONNX model {name}: output {out.name!r} has shape {_fmt_shape(oshape)} (rank {len(oshape)}); "
                "a saliency map must be [batch, 1, height, width]; pick another output with output_name "
                "in a custom preprocessing config, or re-export the model"
            )
        if len(oshape) == 4 and isinstance(oshape[1], int) and oshape[1] != 1:
            raise SalmatError(
                f"ONNX model {name}: output {out.name!r} has {oshape[1]} channels ({_fmt_shape(oshape)}); "
                "a saliency map has 1 channel; pick another output with output_name in a custom "
                "preprocessing config, or re-export the model"
            )
        fixed_hw = [d if isinstance(d, int) else None for d in ishape[2:]]
        preset = self.preset
        if preset.size == "resize":
            assert preset.resize_to is not None
            want = [preset.resize_to[1], preset.resize_to[0]]
            for got, w in zip(fixed_hw, want, strict=True):  # both height, width (rank-4 input checked)
                if got is not None and got != w:
                    raise SalmatError(
                        f"ONNX model {name}: input {inp.name!r} is fixed to {_fmt_shape(ishape)} but preset "
                        f"{preset.name!r} resizes frames to {want[1]}x{want[0]}; use a preset whose size matches"
                    )
        elif any(d is not None for d in fixed_hw):
            raise SalmatError(
                f"ONNX model {name}: input {inp.name!r} has a fixed size {_fmt_shape(ishape)} but preset "
                f"{preset.name!r} feeds frames at their own size; use --preprocess u2net or a custom preset "
                "with size = \"resize:WxH\", or export the model with dynamic height and width"
            )

    # ---- protocol -------------------------------------------------------------

    def predict(self, frames: Sequence[YuvFrame]) -> np.ndarray:
        """(n, H, W) float32 maps; raises `ClipError("model-failed")` on any model problem."""
        if not frames:
            raise ClipError("model-failed", "no frames to run the model on")
        sizes = {(f.height, f.width) for f in frames}
        if len(sizes) > 1:
            listed = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
            raise ClipError("model-failed", f"the sampled frames differ in size ({listed}); one map size per clip")
        height, width = frames[0].height, frames[0].width
        step = 1 if self.batch_fixed else MAX_BATCH
        maps = []
        for start in range(0, len(frames), step):
            chunk = frames[start : start + step]
            x = self.preset.encode(chunk)
            out = self._run(x)
            if out.shape[:1] != (len(chunk),):
                raise ClipError(
                    "model-failed", f"model output has shape {tuple(out.shape)} for a batch of {len(chunk)} frames"
                )
            maps.append(self.preset.decode(out, height, width))
        return maps[0] if len(maps) == 1 else np.concatenate(maps)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._dtype is not np.float32:
            x = x.astype(self._dtype)
        try:
            (out,) = self.session.run([self._output.name], {self._input.name: x})
        except Exception as exc:  # onnxruntime's pybind exceptions share no useful base class
            raise ClipError("model-failed", f"onnxruntime failed: {_one_line(exc)}") from exc
        out = np.asarray(out)
        if not np.issubdtype(out.dtype, np.floating):
            raise ClipError("model-failed", f"model output is {out.dtype}, not a float map")
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "onnx",
            "path": str(self.path),
            "sha256": self.sha256,
            "fingerprint": self.fingerprint,
            "algorithm_version": ALGORITHM_VERSION,
            "preset": self.preset.name,
            "preprocess": self.preset.to_dict(),
            "input": {"name": self._input.name, "shape": _shape(self._input.shape), "type": self._input.type},
            "output": {"name": self._output.name, "shape": _shape(self._output.shape), "type": self._output.type},
            "inputs": _io_facts(self._inputs),
            "outputs": _io_facts(self._outputs),
            "batch": "one frame per call" if self.batch_fixed else f"up to {MAX_BATCH} frames per call",
            "device": self.device,
            "providers": self.providers,
            "threads": self.threads,
            "onnxruntime": ort.__version__,
        }

    def __repr__(self) -> str:
        return f"OnnxSaliencyModel(id={self.id!r}, preset={self.preset.name!r}, sha256={self.sha256[:12]}…)"


def load_onnx_model(
    path: str | Path,
    preprocess: str | None = None,
    model_id: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> OnnxSaliencyModel:
    """Open an ONNX saliency model with a preprocessing preset (`vmaf-student` when None).

    `preprocess` is a preset name (`vmaf-student`, `u2net`) or `custom:PATH` to a
    TOML/JSON file (see `presets`). Raises `SalmatError` (one line: the problem
    and the fix) on a missing or unloadable file, an input that is not
    [batch, 3, H, W], an output that is not [batch, 1, H, W], an unknown preset
    or an unavailable device.
    """
    preset = resolve_preset(preprocess)
    return OnnxSaliencyModel(path, preset, model_id=model_id, device=device, threads=threads)


def describe_model_file(path: str | Path) -> dict[str, Any]:
    """Facts about an ONNX file for `salmat models`: id (stem), sha256, inputs and outputs."""
    p = Path(path)
    _check_file(p)
    session = _open_session(p, ["CPUExecutionProvider"], threads=1)
    meta = session.get_modelmeta()
    return {
        "id": p.stem,
        "kind": "onnx",
        "path": str(p),
        "size_bytes": p.stat().st_size,
        "sha256": file_sha256(p),
        "producer": meta.producer_name or None,
        "graph": meta.graph_name or None,
        "inputs": _io_facts(session.get_inputs()),
        "outputs": _io_facts(session.get_outputs()),
    }


def format_model_description(d: dict[str, Any]) -> str:
    """Human-readable lines for a `describe_model_file` (or `describe()`) dict."""
    lines = [f"{d.get('id', '?')}  ({d.get('kind', 'onnx')})"]
    for key in ("path", "sha256", "size_bytes", "producer", "graph", "preset", "providers"):
        value = d.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        lines.append(f"  {key + ':':<11} {value}")
    for key, label in (("inputs", "input"), ("outputs", "output")):
        for io in d.get(key, []):
            lines.append(f"  {label + ':':<11} {io['name']}  {_fmt_shape(io['shape'])}  {io['type']}")
    return "\n".join(lines)
