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

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from ..defaults import DEVICES
from ..errors import ClipError, SalmatError
from ..frames import YuvFrame, common_size
from ..maps import WorkingMaps
from ..option_spec import named
from ..values import MODEL_FAILED
from .knobs import Knobs
from .presets import Preprocess, resolve_preset
from .registry import file_sha256
from .registry import model_id as registry_model_id

if TYPE_CHECKING:
    from .quantize import Int8Model

# Bump when this adapter changes in a way that can change the maps.
ALGORITHM_VERSION = "onnx-adapter-1"
MAX_BATCH = 8

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


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
        raise SalmatError(f"ONNX model file not found: {path}; check {named('model_path')}")
    if not path.is_file():
        raise SalmatError(f"{named('model_path')} {path} is not a file; pass the .onnx file itself")


# onnxruntime's CUDA provider runs fp32 convolutions in TF32 (10-bit mantissas) by default on
# Ampere and later GPUs; off, `--device cuda` gives the CPU's maps to float32 rounding (issue #22).
CUDA_PROVIDER_OPTIONS = {"use_tf32": "0"}


def session_providers(providers: list[str]) -> list[str | tuple[str, dict[str, str]]]:
    """`providers` as onnxruntime takes them, the CUDA provider with `CUDA_PROVIDER_OPTIONS`."""
    return [(p, CUDA_PROVIDER_OPTIONS) if p == "CUDAExecutionProvider" else p for p in providers]


def _open_session(path: Path, providers: list[str], threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: shape-inference warnings are ours to report
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=session_providers(providers))
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
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use {named('device')} cpu"
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
            f"fix {kind}_name in the preprocessing config or in the model card beside the file"
        )
    if len(args) == 1 or default_first:
        return args[0]
    for a in args:
        if a.name == "input":
            return a
    raise SalmatError(
        f"ONNX model {path.name} has {len(args)} inputs ({', '.join(names)}); "
        f"name the image input with input_name in a custom preprocessing config ({named('preprocess')} custom:PATH)"
    )


class OnnxSaliencyModel:
    """An ONNX saliency model with its preprocessing preset; satisfies `SaliencyModel`."""

    def __init__(self, path: str | Path, preset: Preprocess, model_id: str | None = None,
                 knobs: Knobs | None = None, threads: int | None = None) -> None:
        self.path = Path(path)
        _check_file(self.path)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise SalmatError(f"threads must be a positive integer, not {threads!r}")
        knobs = (knobs or Knobs()).resolved()
        knobs.check(builtin=False)
        if knobs.inference_size is not None:
            preset.scaled_size(knobs.inference_size, knobs.inference_size, knobs.inference_size)  # fixed-size presets
        self.preset = preset
        self.knobs = knobs
        self.device = knobs.device
        self.threads = threads
        self.inference_size = knobs.inference_size
        self.precision = knobs.precision
        providers = _providers_for(knobs.device)
        self.sha256 = file_sha256(self.path)
        self.id = knobs.model_id(registry_model_id(self.path, self.sha256, model_id))
        self.session: Any = _open_session(self.path, providers, threads)
        self.providers = list(self.session.get_providers())
        if knobs.device == "cuda" and "CUDAExecutionProvider" not in self.providers:
            raise SalmatError(
                "onnxruntime could not start its CUDA provider (missing CUDA/cuDNN libraries?); "
                f"fix the CUDA install or use {named('device')} cpu"
            )
        self._inputs = self.session.get_inputs()
        self._outputs = self.session.get_outputs()
        self._input = _pick(self._inputs, preset.input_name, "input", self.path, default_first=False)
        self._output = _pick(self._outputs, preset.output_name, "output", self.path, default_first=True)
        self._validate()
        self._dtype = _NUMPY_TYPES[self._input.type]
        self.batch_fixed = self._input.shape[0] == 1
        self.fingerprint = f"onnx/{ALGORITHM_VERSION}/{self.sha256}/{preset.name}/{preset.fingerprint()}"
        self.fingerprint += knobs.fingerprint()
        self.int8: Int8Model | None = None
        if knobs.precision == "int8":
            self._use_int8(threads)
        if knobs.runtime == "openvino":  # onnxruntime's session checked the graph; OpenVINO runs it
            from .openvino_runtime import OpenVinoSession

            self.session = OpenVinoSession(self.path, knobs.precision, threads)
            self.providers = ["OpenVINO CPU"]

    def _use_int8(self, threads: int | None) -> None:
        """Swap the session for the quantized model's (the fp32 one has passed every check)."""
        from .quantize import int8_model

        self.int8 = int8_model(self.path, self.sha256, self.preset, self._input.name)
        try:
            self.session = _open_session(self.int8.path, ["CPUExecutionProvider"], threads)
        except SalmatError:
            raise SalmatError(f"the cached int8 model {self.int8.path} can't be loaded (damaged?); delete it and "
                              "rerun to quantize it again") from None
        self.fingerprint += f"/{self.int8.sha256}"

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
                f"{preset.name!r} feeds frames at their own size; use {named('preprocess')} u2net or a custom preset "
                "with size = \"resize:WxH\", or export the model with dynamic height and width"
            )

    # ---- protocol -------------------------------------------------------------

    def predict(self, frames: Sequence[YuvFrame]) -> np.ndarray:
        """(n, H, W) float32 maps; raises `ClipError("model-failed")` on any model problem."""
        self.predict_checks(frames)
        return self._maps(frames, None)

    def predict_working(self, frames: Sequence[YuvFrame]) -> np.ndarray | WorkingMaps:
        """At native size the maps are the full-size ones (`predict`)."""
        return self.predict(frames)

    def predict_checks(self, frames: Sequence[YuvFrame]) -> None:
        if not frames:
            raise ClipError(MODEL_FAILED, "no frames to run the model on")
        common_size(frames)

    def _maps(self, frames: Sequence[YuvFrame], scale_to: tuple[int, int] | None) -> np.ndarray:
        """Maps at the size the model ran at: the frames' own, or `scale_to` (height, width)."""
        height, width = scale_to or (frames[0].height, frames[0].width)
        step = 1 if self.batch_fixed else MAX_BATCH
        chunks = [frames[start : start + step] for start in range(0, len(frames), step)]
        maps = []
        for chunk, out in self._overlapped(chunks, scale_to):
            if out.shape[:1] != (len(chunk),):
                raise ClipError(
                    MODEL_FAILED, f"model output has shape {tuple(out.shape)} for a batch of {len(chunk)} frames"
                )
            maps.append(self.preset.decode(out, height, width))
        return maps[0] if len(maps) == 1 else np.concatenate(maps)

    def _overlapped(
        self, chunks: list[Sequence[YuvFrame]], scale_to: tuple[int, int] | None
    ) -> Iterator[tuple[Sequence[YuvFrame], np.ndarray]]:
        """Each chunk with the model's output, the next chunk preprocessed on a helper thread while
        the model runs (onnxruntime, OpenCV and NumPy release the GIL): same inputs, same values."""
        if len(chunks) == 1:
            yield chunks[0], self._run(self.preset.encode(chunks[0], scale_to))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="salmat-preprocess") as helper:
            pending = helper.submit(self.preset.encode, chunks[0], scale_to)
            for i, chunk in enumerate(chunks):
                x = pending.result()
                if i + 1 < len(chunks):
                    pending = helper.submit(self.preset.encode, chunks[i + 1], scale_to)
                yield chunk, self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._dtype is not np.float32:
            x = x.astype(self._dtype)
        try:
            (out,) = self.session.run([self._output.name], {self._input.name: x})
        except Exception as exc:  # onnxruntime's pybind exceptions share no useful base class
            raise ClipError(MODEL_FAILED, f"{self.knobs.runtime} failed: {_one_line(exc)}") from exc
        out = np.asarray(out)
        if not np.issubdtype(out.dtype, np.floating):
            raise ClipError(MODEL_FAILED, f"model output is {out.dtype}, not a float map")
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
            "model_card": None if (card := model_card_path(self.path)) is None else str(card),
            "input": {"name": self._input.name, "shape": _shape(self._input.shape), "type": self._input.type},
            "output": {"name": self._output.name, "shape": _shape(self._output.shape), "type": self._output.type},
            "inputs": _io_facts(self._inputs),
            "outputs": _io_facts(self._outputs),
            "batch": "one frame per call" if self.batch_fixed else f"up to {MAX_BATCH} frames per call",
            "device": self.device,
            "providers": self.providers,
            "threads": self.threads,
            "onnxruntime": ort.__version__,
            "runtime": self.knobs.runtime,
            **({"openvino": _openvino_version()} if self.knobs.runtime == "openvino" else {}),
            "inference_size": self.inference_size or "native",
            "precision": self.precision,
            "int8": None if self.int8 is None else {"path": str(self.int8.path), "sha256": self.int8.sha256,
                                                    **self.int8.record},
        }

    def __repr__(self) -> str:
        return f"OnnxSaliencyModel(id={self.id!r}, preset={self.preset.name!r}, sha256={self.sha256[:12]}…)"


class ScaledOnnxModel(OnnxSaliencyModel):
    """`--inference-size S`: frames whose short side is above S are resized so it is S before the
    model; the maps, at that size, stand for their bilinear upsampling to the frame (`WorkingMaps`),
    so the linear reducers run before upsampling, as with the built-in models. A frame whose short
    side is at most S runs at its own size, exactly as without the knob: it never enlarges."""

    def predict_working(self, frames: Sequence[YuvFrame]) -> np.ndarray | WorkingMaps:
        self.predict_checks(frames)
        height, width = frames[0].height, frames[0].width
        assert self.inference_size is not None
        scale_to = self.preset.scaled_size(height, width, self.inference_size)
        if min(height, width) <= self.inference_size or scale_to[0] >= height or scale_to[1] >= width:
            return self._maps(frames, None)  # S at or above the frame, or rounded up to it
        return WorkingMaps(self._maps(frames, scale_to), (height, width))

    def predict(self, frames: Sequence[YuvFrame]) -> np.ndarray:
        maps = self.predict_working(frames)
        return maps.full() if isinstance(maps, WorkingMaps) else maps


def load_onnx_model(path: str | Path, preprocess: str | None = None, model_id: str | None = None, *,
                    threads: int | None = None, **knobs: Any) -> OnnxSaliencyModel:
    """Open an ONNX saliency model with a preprocessing preset (`vmaf-student` when None); `knobs`
    are `Knobs`' fields. For Python callers and tests; salmat itself goes through `ModelSpec`."""
    return open_onnx_model(path, preprocess, model_id, Knobs(**knobs), threads)


def open_onnx_model(path: str | Path, preprocess: str | None, model_id: str | None, knobs: Knobs,
                    threads: int | None) -> OnnxSaliencyModel:
    """`preprocess` is a preset name (`vmaf-student`, `u2net`) or `custom:PATH` to a
    TOML/JSON file (see `presets`). Raises `SalmatError` (one line: the problem
    and the fix) on a missing or unloadable file, an input that is not
    [batch, 3, H, W], an output that is not [batch, 1, H, W], an unknown preset
    or an unavailable device or runtime.
    """
    _check_file(Path(path))
    preset = with_model_card(resolve_preset(preprocess), path)
    kind = OnnxSaliencyModel if knobs.inference_size is None else ScaledOnnxModel
    return kind(path, preset, model_id, knobs, threads)


def _openvino_version() -> str:
    from .openvino_runtime import version

    return version()


# ---- model cards ------------------------------------------------------------------

CARD_KEYS = {"input_name", "output_name"}  # what salmat reads from a card


def model_card_path(path: str | Path) -> Path | None:
    """The model card `X.json` beside `X.onnx`, when there is one."""
    p = Path(path)
    card = p.with_suffix(".json")
    return card if p.suffix.lower() == ".onnx" and card.exists() else None


def read_model_card(path: str | Path) -> dict[str, str]:
    """`input_name`/`output_name` from the model card beside the ONNX file at `path` (its other keys
    are the card's own business); {} without a card. A malformed card is a one-line error."""
    card = model_card_path(path)
    if card is None:
        return {}
    fix = "fix it or move it away"
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SalmatError(f"cannot read the model card {card}: {_one_line(exc)}; {fix}") from None
    if not isinstance(data, dict):
        raise SalmatError(f"the model card {card} must hold a JSON object, not {type(data).__name__}; {fix}")
    names: dict[str, str] = {}
    for key in sorted(CARD_KEYS & data.keys()):
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise SalmatError(f"the model card {card}: {key} = {value!r} is not a tensor name; {fix}")
        names[key] = value
    return names


def with_model_card(preset: Preprocess, path: str | Path) -> Preprocess:
    """`preset` with the model card's input/output names where the preset names none: a custom
    preset's own names win over the card."""
    card = read_model_card(path)
    return replace(preset, input_name=preset.input_name or card.get("input_name"),
                   output_name=preset.output_name or card.get("output_name"))


def describe_model_file(path: str | Path) -> dict[str, Any]:
    """Facts about an ONNX file for `salmat models`: the id it runs as, sha256, model card, inputs and outputs."""
    p = Path(path)
    _check_file(p)
    session = _open_session(p, ["CPUExecutionProvider"], threads=1)
    meta = session.get_modelmeta()
    sha256 = file_sha256(p)
    card = model_card_path(p)
    return {
        "id": registry_model_id(p, sha256),
        "kind": "onnx",
        "path": str(p),
        "size_bytes": p.stat().st_size,
        "sha256": sha256,
        "model_card": None if card is None else f"{card} {read_model_card(p) or '(no tensor names)'}",
        "producer": meta.producer_name or None,
        "graph": meta.graph_name or None,
        "inputs": _io_facts(session.get_inputs()),
        "outputs": _io_facts(session.get_outputs()),
    }


def format_model_description(d: dict[str, Any]) -> str:
    """Human-readable lines for a `describe_model_file` (or `describe()`) dict."""
    lines = [f"{d.get('id', '?')}  ({d.get('kind', 'onnx')})"]
    for key in ("path", "sha256", "size_bytes", "model_card", "producer", "graph", "preset", "providers"):
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
