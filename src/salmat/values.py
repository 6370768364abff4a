"""The value types every stage shares: statuses, reducer names, clip settings and results.

A leaf module (standard library only): the engines, the cache, the row builder
and the orchestrator all import from here, and it imports nothing of salmat's,
so no stage has to import another stage to name what passes between them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

# ---- row statuses (docs/contract.md §3) ----------------------------------------

OK = "ok"
SKIPPED = "skipped-existing"
MISSING_SOURCE = "missing-source"
MISSING_GEOMETRY = "missing-geometry"
DECODE_FAILED = "decode-failed"
MODEL_FAILED = "model-failed"
DECODE_TIMEOUT = "decode-timeout"
MODEL_TIMEOUT = "model-timeout"
OUTSIDE_ROOT = "outside-root"
WORKER_LOST = "worker-lost"
MISSING_FRAME = "missing-frame"  # --per-frame: the row's frame index is empty, invalid or past the clip's end

STATUSES = (OK, SKIPPED, MISSING_SOURCE, MISSING_GEOMETRY, DECODE_FAILED, MODEL_FAILED,
            DECODE_TIMEOUT, MODEL_TIMEOUT, OUTSIDE_ROOT, WORKER_LOST, MISSING_FRAME)

# ---- output columns (docs/contract.md §2): role → name, before --column-prefix and the --*-column renames

OUTPUT_COLUMNS = {
    "mean": "saliency_mean", "var": "saliency_var", "status": "saliency_status",
    "model_id": "saliency_model_id", "aggregator": "saliency_aggregator", "ema_alpha": "saliency_ema_alpha",
    "error": "saliency_error", "frames": "saliency_frames",
}
VALUE_COLUMNS = (OUTPUT_COLUMNS["mean"], OUTPUT_COLUMNS["var"])

# The full-reference ROI family (--reference-column; docs/quality.md): its value columns, by role
# (each role's name is the column's), and the provenance column of its settings.
QUALITY_COLUMNS = ("psnr_y", "ssim_y", "sw_psnr_y", "sw_ssim_y", "roi_psnr_y", "roi_ssim_y",
                   "bg_psnr_y", "bg_ssim_y", "saliency_shift_cc")
OUTPUT_COLUMNS.update({role: role for role in QUALITY_COLUMNS})
OUTPUT_COLUMNS["roi_config"] = "roi_config"
QUALITY_POOLINGS = ("mean", "harmonic", "min")  # libvmaf's pooling choices
WEIGHT_SOURCES = ("ref", "dis")

# ---- temporal reducers (docs/contract.md §4) -----------------------------------

REDUCERS = ("mean", "ema", "max", "motion-weighted")
# What `saliency_aggregator` says on `--per-frame` rows: one frame's own map, no reducer.
FRAME_REDUCER = "frame"


def file_stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What tells one version of a file from another without reading it: size, mtime, and
    ctime (which no one can set back, so an in-place rewrite with its mtime restored still
    shows), on the same inode and device."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


@dataclass(frozen=True)
class SamplingOptions:
    """Which frames of a clip are decoded (see `salmat.decode`)."""

    sampling: str = "clip"
    frame_samples: int = 8
    max_frames: int = 8
    max_pixels: int | None = None
    # `--compat historical`: every frame as the earlier tool's `ffmpeg … -pix_fmt yuv420p` made it
    # (FFmpeg's scaler, bicubic, its dither), not salmat's own 4:2:0 / bit-depth conversion.
    historical_planes: bool = False

    @property
    def label(self) -> str:
        """What `saliency_frames` says: `clip:8` (8 frames over the clip), `head:8/8` (8 among the first 8)."""
        if self.sampling == "head":
            return f"head:{self.frame_samples}/{self.max_frames}"
        return f"{self.sampling}:{self.frame_samples}"


@dataclass(frozen=True)
class ReduceOptions:
    """How per-frame maps are reduced over time; every reducer runs with these."""

    ema_alpha: float
    historical_motion: bool = False


@dataclass(frozen=True)
class RoiOptions:
    """How the full-reference values are made: whose saliency weights them, the ROI's share of
    the pixels, and how frames pool into a clip value. `config()` is the `roi_config` text."""

    weights_from: str = "ref"
    fraction: float = 0.2
    pooling: str = "mean"

    def config(self) -> str:
        return f"weights={self.weights_from};fraction={self.fraction:g};pooling={self.pooling}"


@dataclass
class ClipResult:
    """One clip's outcome: `stats[reducer] = (mean, var)` when `status == "ok"`.

    A per-frame clip (`ClipSpec.frames` set) fills `frame_stats[index] = (mean, var)` instead,
    for each wanted index the clip has; `frame_total` is the clip's frame count when the
    decode pass reached its end (it does whenever a wanted index is past the end)."""

    status: str
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0
    frame_stats: dict[int, tuple[float, float]] = field(default_factory=dict)
    frame_total: int | None = None
    maps: bytes | None = None  # the clip's encoded `clip_maps.ClipMaps`, when the job keeps them
    # With a reference (`ClipSpec.reference`): the clip's pooled values (`QUALITY_COLUMNS`; NaN where
    # undefined), or per frame for a per-frame clip; `maps_file` is where --maps-out put its maps.
    quality: dict[str, float] = field(default_factory=dict)
    frame_quality: dict[int, dict[str, float]] = field(default_factory=dict)
    maps_file: str | None = None

    def has_payload(self) -> bool:
        """Whether `frame_payload()` carries anything."""
        return bool(self.frame_stats or self.frame_total or self.quality or self.frame_quality or self.maps_file)

    def frame_payload(self) -> str:
        """The per-frame and full-reference fields as JSON text, for engines that carry results as table cells."""
        return json.dumps({"stats": [[i, m, v] for i, (m, v) in self.frame_stats.items()],
                           "total": self.frame_total, "quality": _json_floats(self.quality),
                           "frame_quality": [[i, _json_floats(q)] for i, q in self.frame_quality.items()],
                           "maps_file": self.maps_file})

    def with_frame_payload(self, payload: str | None) -> ClipResult:
        """This result with the per-frame fields read back from `frame_payload()` text (None: none)."""
        if payload:
            data = json.loads(payload)
            self.frame_stats = {int(i): (float(m), float(v)) for i, m, v in data["stats"]}
            self.frame_total = data["total"]
            self.quality = _floats(data.get("quality") or {})
            self.frame_quality = {int(i): _floats(q) for i, q in data.get("frame_quality") or []}
            self.maps_file = data.get("maps_file")
        return self


def _json_floats(values: dict[str, float]) -> dict[str, float | None]:
    """NaN as null: JSON has no NaN."""
    return {k: (v if v == v else None) for k, v in values.items()}


def _floats(values: dict[str, float | None]) -> dict[str, float]:
    return {k: float("nan") if v is None else float(v) for k, v in values.items()}
