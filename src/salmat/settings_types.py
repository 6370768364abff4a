"""The keywords of the Python API, typed: one `TypedDict` per command, for `**settings: Unpack[...]`.

They mirror the options dataclasses (`salmat.options`), which stay the one declaration of each
setting's default, help and check; `tests/test_option_spec.py` fails when a TypedDict and its
options class disagree (a setting added to one and not the other, or a type the API would
refuse). The types are what a caller may pass: paths also as `os.PathLike`, list settings as
a comma-separated string or a sequence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypedDict

PathName = str | os.PathLike[str]


class MaterializeSettings(TypedDict, total=False):
    """`salmat.materialize`'s keywords: `MaterializeOptions` without `input` and `output`."""

    path_column: str
    root: PathName | None
    confine_to_root: bool
    width_column: str
    height_column: str
    default_width: int | None
    default_height: int | None
    max_pixels: int | None
    frame_samples: int
    sampling: str
    max_frames: int
    temporal_aggregator: str
    ema_alpha: float
    compat: str | None
    model: str | None
    model_path: PathName | None
    model_id: str | None
    model_dir: str | None
    preprocess: str | None
    device: str
    precision: str
    inference_size: str | int
    runtime: str
    per_frame: bool
    frame_column: str | None
    overwrite: bool
    column_prefix: str
    status_column: str
    model_id_column: str
    aggregator_column: str
    ema_alpha_column: str
    error_column: str
    frames_column: str
    reference_column: str | None
    roi_fraction: float
    weights_from: str
    quality_pooling: str
    maps_out: PathName | None
    psnr_y_column: str
    ssim_y_column: str
    sw_psnr_y_column: str
    sw_ssim_y_column: str
    roi_psnr_y_column: str
    roi_ssim_y_column: str
    bg_psnr_y_column: str
    bg_ssim_y_column: str
    saliency_shift_cc_column: str
    roi_config_column: str
    workers: int
    clip_timeout: float | None
    cache: PathName | None
    no_cache: bool
    engine: str
    ray_address: str | None
    num_gpus_per_worker: float
    audit_json: PathName | None
    format: str | None
    quiet: bool


class CompareSettings(TypedDict, total=False):
    """`salmat.compare_models`' keywords: `CompareOptions` without `input` and `out`."""

    models: str | Sequence[str]
    reducers: str | Sequence[str]
    target: str | None
    key_column: str | None
    path_column: str
    root: PathName | None
    width_column: str
    height_column: str
    default_width: int | None
    default_height: int | None
    max_pixels: int | None
    frame_samples: int
    sampling: str
    max_frames: int
    ema_alpha: float
    model_dir: str | None
    preprocess: str | None
    device: str
    long_format: str
    plots: bool
    quiet: bool
    workers: int
    clip_timeout: float | None
    cache: PathName | None
    no_cache: bool
    engine: str
    ray_address: str | None
    num_gpus_per_worker: float


class PreviewSettings(TypedDict, total=False):
    """`salmat.contact_sheet`'s keywords: `PreviewOptions` without `clip` and `out`."""

    model: str | None
    model_dir: str | None
    preprocess: str | None
    device: str
    default_width: int | None
    default_height: int | None
    max_pixels: int | None
    frame_samples: int
    sampling: str
    max_frames: int
    ema_alpha: float
    reducers: str | Sequence[str]
    panel_width: int
    colors: int
    cache: PathName | None
    no_cache: bool


class FramesSettings(TypedDict, total=False):
    """`salmat.frame_table`'s keywords: `FramesOptions` without `dis`, `ref` and `out`."""

    format: str | None
    model: str | None
    model_path: PathName | None
    model_dir: str | None
    preprocess: str | None
    device: str
    inference_size: str | int
    max_pixels: int | None
    roi_fraction: float
    weights_from: str
    maps_out: PathName | None
    clip_timeout: float | None
    quiet: bool
