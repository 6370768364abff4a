"""Preprocessing presets for ONNX saliency models.

A preset says how decoded frames become the model's input tensor and how the
model's output becomes one map per frame. Every preset is one `Preprocess`
value; the named presets are fixed instances and a custom preset is the same
type read from a file.

Named presets (`--preprocess NAME`):

- `vmaf-student` (the default): the historical tool's preprocessing, exactly.
  Frames are rounded to 8 bits, converted BT.709 limited-range YUV → RGB with
  nearest-neighbour chroma and clipped to [0, 1] (`color.rgb_planes`),
  ImageNet-normalised, laid out float32 NCHW and zero-padded (zeros in the
  normalised space) at the bottom and right to the next multiple of 32. The
  first output's `[0, 0, :H, :W]` is the map, taken as is: like the historical
  tool, nothing clips it here; the temporal stage clips the reduced map to
  [0, 1] (CONTRACT §4).
- `u2net`: RGB resized to 320×320 (bilinear), divided by its maximum,
  ImageNet-normalised; the map is resized back to the frame size (bilinear)
  and min-max normalised per frame.

Custom presets (`--preprocess custom:PATH`, PATH a `.toml` or `.json` file).
Every key is optional; an omitted key keeps the `vmaf-student` value::

    input_name   = "input"          # the model input to feed (default: its only input, or the one named "input")
    output_name  = "saliency_map"   # the model output to read (default: its first output)
    channels     = "rgb"            # "rgb" or "bgr"; both via the BT.709 limited-range conversion above
    divide_by_max = false           # divide each (resized) image by its maximum, as U2Net does
    scale        = 1.0              # multiply the [0, 1] image by this (255.0 for models fed 0..255)
    normalize    = "imagenet"       # "imagenet" or "none"; or give `mean` and `std` instead
    mean         = [0.485, 0.456, 0.406]   # per channel, in the model's channel order
    std          = [0.229, 0.224, 0.225]
    size         = "pad:32"         # "native", "pad:K" (zero-pad to a multiple of K) or "resize:WxH"
    output       = "as-is"          # "as-is" (already in [0, 1]), "minmax" (per frame) or "sigmoid"

The order is fixed: colour conversion → resize → divide by max → scale →
mean/std → pad. `--inference-size S` (`scaled_size`, `encode(..., scale_to)`)
resizes each frame before all of that, plane by plane in YUV, to a short side
of S rounded to the pad multiple, so nothing is padded; `decode` then gives
maps at that size (the ONNX adapter hands them on as `WorkingMaps`). Unknown
keys and bad values are refused with a one-line `SalmatError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..color import rgb_planes
from ..errors import ClipError, SalmatError
from ..frames import YuvFrame
from ..option_spec import named
from ..values import MODEL_FAILED
from .knobs import scaled_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_PRESET = "vmaf-student"
OUTPUT_MODES = ("as-is", "minmax", "sigmoid")


@dataclass(frozen=True)
class Preprocess:
    """One preprocessing recipe; see the module docstring for the meaning of each field."""

    name: str
    input_name: str | None = None
    output_name: str | None = None
    channels: str = "rgb"
    divide_by_max: bool = False
    scale: float = 1.0
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    size: str = "pad"  # "native" | "pad" | "resize"
    pad_multiple: int = 32
    resize_to: tuple[int, int] | None = None  # (width, height)
    output: str = "as-is"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("mean", "std", "resize_to"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    def fingerprint(self) -> str:
        """Changes whenever any field that can change the maps changes."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ---- frames → input -------------------------------------------------

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) of the tensor fed for a frame of this size."""
        if self.size == "resize":
            assert self.resize_to is not None
            return self.resize_to[1], self.resize_to[0]
        if self.size == "pad":
            k = self.pad_multiple
            return math.ceil(height / k) * k, math.ceil(width / k) * k
        return height, width

    def scaled_size(self, height: int, width: int, short_side: int) -> tuple[int, int]:
        """The (height, width) a frame is resized to for `--inference-size short_side`: the short
        side at `short_side`, each side rounded to this preset's pad multiple (no padding fed)."""
        if self.size == "resize":
            raise SalmatError(f"{named('inference_size')} does not apply to preset {self.name!r}, which already "
                              f"resizes every frame to a fixed size; drop {named('inference_size')}")
        return scaled_size(height, width, short_side, self.pad_multiple if self.size == "pad" else 1)

    def encode(self, frames: Sequence[YuvFrame], scale_to: tuple[int, int] | None = None) -> np.ndarray:
        """(n, 3, h, w) float32 input for frames that all share one size.

        `scale_to` (height, width), from `scaled_size`: each frame is resized to it first, plane
        by plane in YUV (`_scaled_frame`), so the colour conversion runs at the smaller size."""
        height, width = scale_to or (frames[0].height, frames[0].width)
        ih, iw = self.input_size(height, width)
        # Zeros in the normalised space are the padding.
        batch = np.zeros((len(frames), 3, ih, iw), dtype=np.float32)
        for i, frame in enumerate(frames):
            if scale_to is not None:
                frame = _scaled_frame(frame, height, width)
            planes = rgb_planes(frame)  # (3, H, W) R, G, B in [0, 1]
            if self.channels == "bgr":
                planes = planes[::-1]
            if self.size == "resize":
                planes = np.stack([cv2.resize(p, (iw, ih), interpolation=cv2.INTER_LINEAR) for p in planes])
            if self.divide_by_max:
                peak = float(planes.max())
                if peak > 0.0:
                    planes = planes / np.float32(peak)
            h, w = planes.shape[1:]
            for c in range(3):
                # Channel by channel straight into the NCHW slot: (x·scale − mean) / std.
                plane = batch[i, c, :h, :w]
                if self.scale != 1.0:
                    np.multiply(planes[c], np.float32(self.scale), out=plane)
                else:
                    plane[...] = planes[c]
                if self.mean is not None:
                    assert self.std is not None
                    np.subtract(plane, np.float32(self.mean[c]), out=plane)
                    np.divide(plane, np.float32(self.std[c]), out=plane)
        return batch

    # ---- output → maps --------------------------------------------------

    def decode(self, output: np.ndarray, height: int, width: int) -> np.ndarray:
        """(n, H, W) float32 maps from the model's (n, 1, h, w) output.

        Raises `ClipError("model-failed")` on a wrong shape or non-finite values.
        """
        n = output.shape[0] if output.ndim else 0
        ih, iw = self.input_size(height, width)
        if output.ndim != 4 or output.shape[1] != 1:
            raise ClipError(
                MODEL_FAILED, f"model output has shape {tuple(output.shape)}, expected ({n}, 1, {ih}, {iw})"
            )
        if self.size != "resize" and output.shape[2:] != (ih, iw):
            raise ClipError(
                MODEL_FAILED,
                f"model output has shape {tuple(output.shape)} for an input of {ih}x{iw} (HxW), "
                f"expected ({n}, 1, {ih}, {iw})",
            )
        if min(output.shape[2:]) < 1:
            raise ClipError(MODEL_FAILED, f"model output has shape {tuple(output.shape)}: an empty map")
        maps = output[:, 0]
        if self.size == "resize":
            if maps.shape[1:] != (height, width):
                maps = np.stack(
                    [cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps.astype(np.float32)]
                )
        else:
            maps = maps[:, :height, :width]
        maps = maps.astype(np.float32, copy=False)
        if not np.isfinite(maps).all():
            bad = int(np.count_nonzero(~np.isfinite(maps)))
            raise ClipError(MODEL_FAILED, f"model output has {bad} non-finite values (NaN or inf)")
        if self.output == "sigmoid":
            with np.errstate(over="ignore"):  # exp overflow → inf → a map value of 0, as it should
                maps = 1.0 / (1.0 + np.exp(-maps))
        elif self.output == "minmax":
            lo = maps.min(axis=(1, 2), keepdims=True)
            span = maps.max(axis=(1, 2), keepdims=True) - lo
            # A flat map carries no saliency: zeros rather than 0/0.
            maps = np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1.0), 0.0)
        return np.ascontiguousarray(maps, dtype=np.float32)


def _scaled_frame(frame: YuvFrame, height: int, width: int) -> YuvFrame:
    """The 8-bit frame at (height, width) 4:2:0, each plane resized on its own: area averaging
    when shrinking (no aliasing), bilinear when growing. Resizing before the colour conversion
    costs a quarter of converting at 1080p and resizing RGB (measured: ~25 ms a frame saved)."""
    f8 = frame.to_8bit()
    how = cv2.INTER_AREA if height <= frame.height and width <= frame.width else cv2.INTER_LINEAR

    def fit(plane: np.ndarray, h: int, w: int) -> np.ndarray:
        return plane if plane.shape == (h, w) else cv2.resize(plane, (w, h), interpolation=how)

    ch, cw = (height + 1) // 2, (width + 1) // 2
    return YuvFrame(fit(f8.y, height, width), fit(f8.u, ch, cw), fit(f8.v, ch, cw), 8)


PRESETS: dict[str, Preprocess] = {
    "vmaf-student": Preprocess(name="vmaf-student"),
    "u2net": Preprocess(
        name="u2net",
        divide_by_max=True,
        size="resize",
        resize_to=(320, 320),
        output="minmax",
    ),
}

_CUSTOM_KEYS = (
    "input_name",
    "output_name",
    "channels",
    "divide_by_max",
    "scale",
    "normalize",
    "mean",
    "std",
    "size",
    "output",
)


def resolve_preset(spec: str | None) -> Preprocess:
    """A named preset, `custom:PATH`, or the default when `spec` is None."""
    if spec is None or spec == "":
        return PRESETS[DEFAULT_PRESET]
    if spec in PRESETS:
        return PRESETS[spec]
    if spec.startswith("custom:"):
        return load_custom_preset(spec[len("custom:") :])
    known = ", ".join(sorted(PRESETS))
    raise SalmatError(f"unknown {named('preprocess')} {spec!r}; choose one of {known}, or custom:PATH "
                      "(a .toml or .json file)")


def load_custom_preset(path: str | Path) -> Preprocess:
    """Read and validate a custom preset file (TOML or JSON; see the module docstring)."""
    p = Path(path)
    where = f"preprocessing config {str(p)!r}"
    if not str(path):
        raise SalmatError(f"{named('preprocess')} custom: needs a file, e.g. custom:my_model.toml")
    if not p.is_file():
        raise SalmatError(f"{where} not found; check the path after custom:")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        elif p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            raise SalmatError(f"{where} must end in .toml or .json")
    except (OSError, UnicodeDecodeError) as exc:
        raise SalmatError(f"cannot read {where}: {exc}; check the file") from exc
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise SalmatError(f"cannot parse {where}: {msg}; fix the syntax") from exc
    if not isinstance(data, dict):
        raise SalmatError(f"{where} must hold a table/object of keys, not {type(data).__name__}")
    return preset_from_mapping(data, name=f"custom:{p.name}", where=where)


def preset_from_mapping(data: dict[str, Any], name: str = "custom", where: str = "preprocessing config") -> Preprocess:
    """Build a validated preset from a mapping of custom-preset keys; omitted keys keep `vmaf-student` values."""
    unknown = sorted(set(data) - set(_CUSTOM_KEYS))
    if unknown:
        raise SalmatError(
            f"unknown key {unknown[0]!r} in {where}; known keys: {', '.join(_CUSTOM_KEYS)}"
        )
    base = PRESETS[DEFAULT_PRESET]
    fields: dict[str, Any] = {"name": name}

    def bad(key: str, want: str) -> SalmatError:
        return SalmatError(f"{where}: {key} = {data[key]!r} is not valid; expected {want}")

    for key in ("input_name", "output_name"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise bad(key, "a non-empty string")
            fields[key] = data[key]
    if "channels" in data:
        if data["channels"] not in ("rgb", "bgr"):
            raise bad("channels", '"rgb" or "bgr"')
        fields["channels"] = data["channels"]
    if "divide_by_max" in data:
        if not isinstance(data["divide_by_max"], bool):
            raise bad("divide_by_max", "true or false")
        fields["divide_by_max"] = data["divide_by_max"]
    if "scale" in data:
        v = data["scale"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise bad("scale", "a positive number")
        fields["scale"] = float(v)

    if "normalize" in data and ("mean" in data or "std" in data):
        raise SalmatError(f"{where}: give either normalize or mean/std, not both")
    if "normalize" in data:
        if data["normalize"] == "imagenet":
            fields["mean"], fields["std"] = IMAGENET_MEAN, IMAGENET_STD
        elif data["normalize"] == "none":
            fields["mean"], fields["std"] = None, None
        else:
            raise bad("normalize", '"imagenet" or "none" (or mean and std lists)')
    elif "mean" in data or "std" in data:
        if "mean" not in data or "std" not in data:
            raise SalmatError(f"{where}: mean and std go together; give both (three numbers each)")
        for key in ("mean", "std"):
            v = data[key]
            if (
                not isinstance(v, list)
                or len(v) != 3
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
            ):
                raise bad(key, "a list of three numbers")
        if any(x <= 0 for x in data["std"]):
            raise bad("std", "three positive numbers")
        fields["mean"] = tuple(float(x) for x in data["mean"])
        fields["std"] = tuple(float(x) for x in data["std"])

    if "size" in data:
        fields.update(_parse_size(data["size"], where))
    if "output" in data:
        if data["output"] not in OUTPUT_MODES:
            raise bad("output", " or ".join(f'"{m}"' for m in OUTPUT_MODES))
        fields["output"] = data["output"]
    return replace(base, **fields)


def _parse_size(value: Any, where: str) -> dict[str, Any]:
    want = '"native", "pad:K" (K a positive integer) or "resize:WxH"'
    err = SalmatError(f"{where}: size = {value!r} is not valid; expected {want}")
    if not isinstance(value, str):
        raise err
    if value == "native":
        return {"size": "native", "pad_multiple": 1, "resize_to": None}
    kind, _, arg = value.partition(":")
    if kind == "pad":
        if not arg.isdigit() or int(arg) < 1:
            raise err
        return {"size": "pad", "pad_multiple": int(arg), "resize_to": None}
    if kind == "resize":
        w, _, h = arg.lower().partition("x")
        if not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
            raise err
        return {"size": "resize", "pad_multiple": 1, "resize_to": (int(w), int(h))}
    raise err
