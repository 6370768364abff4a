"""Every `materialize` setting in one validated dataclass.

Field names are the CLI flags with dashes turned into underscores, one to one,
so `salmat.materialize(input, output, frame_samples=4)` and
`salmat materialize --input … --frame-samples 4` are the same call.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import SalmatError
from .temporal import DEFAULT_EMA_ALPHA, REDUCERS

SAMPLING_MODES = ("clip", "head")
COMPAT_MODES = ("historical",)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class MaterializeOptions:
    input: str
    output: str
    # sources
    path_column: str = "src"
    root: str | None = None
    width_column: str = "width"
    height_column: str = "height"
    default_width: int | None = None
    default_height: int | None = None
    confine_to_root: bool = False
    max_pixels: int | None = 8192 * 8192
    # frames and reducer
    frame_samples: int = 8
    sampling: str = "clip"
    max_frames: int = 8
    temporal_aggregator: str = "mean"
    ema_alpha: float = DEFAULT_EMA_ALPHA
    compat: str | None = None
    # model
    model: str | None = None
    model_path: str | None = None
    model_id: str | None = None
    preprocess: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    # rows and columns
    overwrite: bool = False
    status_column: str = "saliency_status"
    model_id_column: str = "saliency_model_id"
    aggregator_column: str = "saliency_aggregator"
    ema_alpha_column: str = "saliency_ema_alpha"
    error_column: str = "saliency_error"
    # run
    workers: int = os.cpu_count() or 1  # all cores; 1 runs clips in this process
    clip_timeout: float | None = None
    cache: str | None = None
    no_cache: bool = False
    engine: str = "local"
    ray_address: str | None = None
    num_gpus_per_worker: float = 0.0
    audit_json: str | None = None
    quiet: bool = False

    def effective(self) -> "MaterializeOptions":
        """Apply `--compat historical` (head sampling over 8 frames) and check every value."""
        opts = self
        if opts.compat == "historical":
            opts = replace(opts, sampling="head", max_frames=8, frame_samples=8)
        opts.validate()
        return opts

    @property
    def historical(self) -> bool:
        return self.compat == "historical"

    def validate(self) -> None:
        _choice("--sampling", self.sampling, SAMPLING_MODES)
        _choice("--temporal-aggregator", self.temporal_aggregator, REDUCERS)
        _choice("--device", self.device, DEVICES)
        _choice("--precision", self.precision, PRECISIONS)
        _choice("--engine", self.engine, ("local", "ray"))
        if self.compat is not None:
            _choice("--compat", self.compat, COMPAT_MODES)
        if not (isinstance(self.ema_alpha, (int, float)) and math.isfinite(self.ema_alpha) and 0 < self.ema_alpha <= 1):
            raise SalmatError(f"--ema-alpha must be in (0, 1], got {self.ema_alpha}; e.g. --ema-alpha 0.6")
        for flag, value in (("--frame-samples", self.frame_samples), ("--max-frames", self.max_frames),
                            ("--workers", self.workers)):
            if not isinstance(value, int) or value < 1:
                raise SalmatError(f"{flag} must be a whole number ≥ 1, got {value!r}")
        for flag, value in (("--default-width", self.default_width), ("--default-height", self.default_height),
                            ("--max-pixels", self.max_pixels)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SalmatError(f"{flag} must be a whole number ≥ 1, got {value!r}")
        if self.clip_timeout is not None and not self.clip_timeout > 0:
            raise SalmatError(f"--clip-timeout must be > 0 seconds, got {self.clip_timeout}")
        if not self.path_column:
            raise SalmatError("--path-column must name the column that holds each row's clip path")
        if self.root is not None and not os.path.isdir(self.root):
            raise SalmatError(f"--root {self.root} is not a folder; pass the folder relative paths start from")
        self._check_column_names()

    def _check_column_names(self) -> None:
        names = [n for n in self.metadata_columns().values() if n]
        names += ["saliency_mean", "saliency_var"]
        if len(names) != len(set(names)):
            raise SalmatError(f"output column names collide: {names}; give each --*-column flag a distinct name")
        if self.path_column in names:
            raise SalmatError(f"--path-column {self.path_column!r} is also an output column; rename one of them")

    def metadata_columns(self) -> dict[str, str]:
        """Role → column name ('' = omitted)."""
        return {
            "status": self.status_column,
            "model_id": self.model_id_column,
            "aggregator": self.aggregator_column,
            "ema_alpha": self.ema_alpha_column,
            "error": self.error_column,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def option_names() -> list[str]:
    return [f.name for f in fields(MaterializeOptions)]


def build_options(input: str, output: str, **settings: Any) -> MaterializeOptions:
    """Options from keyword settings; an unknown name is a one-line `SalmatError`."""
    known = set(option_names())
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SalmatError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known - {'input', 'output'}))}")
    return MaterializeOptions(input=str(input), output=str(output), **settings)


def _choice(flag: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SalmatError(f"{flag} must be one of {', '.join(allowed)}; got {value!r}")
