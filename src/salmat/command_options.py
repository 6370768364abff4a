"""The settings of the commands that run through `materialize` or beside it: `frames`, `compare`,
`models`, `preview`, `batch`, `audit` and `models pull`, one frozen dataclass each, built from the
settings `salmat.options` declares once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

from .defaults import (
    DEFAULT_PANEL_WIDTH,
    IMAGE_FORMATS,
    MIN_PANEL_WIDTH,
)
from .errors import SalmatError
from .option_spec import (
    Options,
    Setting,
    comma_list,
    item_list,
    named,
    non_empty,
    non_negative,
    path,
    setting,
    settings,
    whole,
)
from .options import (
    CACHE,
    CLIP_TIMEOUT,
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    DEVICE,
    EMA_ALPHA,
    ENGINE,
    FRAME_SAMPLES,
    HEIGHT_COLUMN,
    INFERENCE_SIZE,
    INPUT,
    LONG_FORMATS,
    MAX_FRAMES,
    MAX_PIXELS,
    MODEL,
    MODEL_DIR,
    NO_CACHE,
    NUM_GPUS_PER_WORKER,
    PATH_COLUMN,
    PLOTS,
    PREPROCESS,
    QUIET,
    RAY_ADDRESS,
    REDUCER_LIST,
    ROOT,
    RUN,
    SAMPLING,
    WIDTH_COLUMN,
    WORKERS,
    MaterializeOptions,
)

FRAME_TABLE_FORMATS = ("jsonl", "csv")


def materialize_setting(name: str) -> Setting:
    """`materialize`'s declaration of a setting, for a command that runs through it and takes it as is."""
    found: Setting = next(s for f, s in settings(MaterializeOptions) if f.name == name)
    return found


@dataclass(frozen=True)
class FramesOptions(Options):
    """`salmat frames DIS [REF]` / `salmat.frame_table(dis, ref, out, **settings)`: one row per frame of
    DIS, through `materialize --per-frame` (same engine and statuses; per-frame results are never cached)."""

    command: ClassVar[str] = "frames"

    dis: str = setting(help="the (distorted) clip: a video file, or raw .yuv named with its size", positional=True,
                       convert=path)
    ref: str | None = setting(None, "its reference clip: adds every full-reference column", positional=True,
                              convert=path)
    # The API may leave `out` unset: the table then comes back as a pandas DataFrame.
    out: str | None = setting(None, "the frame table, format from the suffix (.jsonl, .csv, .parquet; - is stdout, "
                              "see --format)", required=True, convert=path)
    format: str | None = setting(None, "format of --out - (stdout): jsonl or csv (default: jsonl)",
                                 choices=FRAME_TABLE_FORMATS)
    model: str | None = materialize_setting("model").field()
    model_path: str | None = materialize_setting("model_path").field()
    model_dir: str | None = MODEL_DIR.field()
    preprocess: str | None = PREPROCESS.field()
    device: str = DEVICE.field()
    inference_size: str = INFERENCE_SIZE.field()
    max_pixels: int | None = MAX_PIXELS.field()
    roi_fraction: float = materialize_setting("roi_fraction").field()
    weights_from: str = materialize_setting("weights_from").field()
    maps_out: str | None = materialize_setting("maps_out").field()
    clip_timeout: float | None = materialize_setting("clip_timeout").field()
    quiet: bool = QUIET.field()

    def cross_check(self) -> None:
        if self.format is not None and self.out != "-":
            raise SalmatError(f"{named('format')} sets the format of {named('out')} - (stdout) only; a file's "
                              "format comes from its suffix (.jsonl, .csv, .parquet)")
        if self.ref is None:
            given = [name for name in ("roi_fraction", "weights_from") if name in self.non_default()]
            if given:
                raise SalmatError(f"{named(given[0])} only applies with a reference clip (REF); add it, or drop "
                                  f"{named(given[0])}")


@dataclass(frozen=True)
class CompareOptions(Options):
    """`salmat compare` / `salmat.compare_models(input, out, **settings)`."""

    command: ClassVar[str] = "compare"

    input: str = INPUT.field(help="feature table naming the clips")
    out: str = setting(help="folder for long.*, report.json, report.md and PNGs", required=True, convert=path)
    models: tuple[str, ...] = setting(("image_signature_v1",), "comma-separated model ids (built-in or learned, "
                                      "knob suffixes included: saliency_student_v1@int8, @540) or .onnx paths",
                                      convert=comma_list, check=item_list, group=MODEL, metavar="M,M")
    # `--aggregators`: the flag's earlier name, still accepted.
    reducers: tuple[str, ...] = REDUCER_LIST.field(aliases=("--aggregators",))
    target: str | None = setting(None, "quality column to correlate with (e.g. mos, vmaf)")
    key_column: str | None = setting(None, "row key column for the long table; unset: clip_id, id, … if present")
    path_column: str = PATH_COLUMN.field()
    root: str | None = ROOT.field()
    width_column: str = WIDTH_COLUMN.field()
    height_column: str = HEIGHT_COLUMN.field()
    default_width: int | None = DEFAULT_WIDTH.field()
    default_height: int | None = DEFAULT_HEIGHT.field()
    max_pixels: int | None = MAX_PIXELS.field()
    frame_samples: int = FRAME_SAMPLES.field()
    sampling: str = SAMPLING.field()
    max_frames: int = MAX_FRAMES.field()
    ema_alpha: float = EMA_ALPHA.field()
    model_dir: str | None = MODEL_DIR.field()
    preprocess: str | None = PREPROCESS.field(help="preprocessing preset for every ONNX model (default: a learned "
                                              "model's own, else vmaf-student)")
    device: str = DEVICE.field()
    long_format: str = setting("parquet", "long table format", choices=LONG_FORMATS, group=RUN)
    plots: bool = PLOTS.field()
    quiet: bool = QUIET.field()
    workers: int = WORKERS.field()
    clip_timeout: float | None = CLIP_TIMEOUT.field()
    cache: str | None = CACHE.field()
    no_cache: bool = NO_CACHE.field()
    engine: str = ENGINE.field()
    ray_address: str | None = RAY_ADDRESS.field()
    num_gpus_per_worker: float = NUM_GPUS_PER_WORKER.field()


@dataclass(frozen=True)
class ModelsOptions(Options):
    """`salmat models`: the known models and where their files are, or one ONNX file described."""

    command: ClassVar[str] = "models"

    model_dir: str | None = MODEL_DIR.field(help="folders searched for the learned models' files, ':'-separated "
                                            "(default: $SALMAT_MODEL_DIR)", metavar="DIR")
    model_path: str | None = setting(None, "an ONNX file to describe (the id it runs as, sha256, model card, "
                                     "inputs/outputs)", convert=path, group=MODEL)

    def cross_check(self) -> None:
        """A --model-dir naming a file, or only folders that don't exist, would list every learned
        model as not found: a typo taken for missing files. (One missing folder of several is
        shown in the listing.)"""
        given = os.fspath(self.model_dir) if self.model_dir is not None else ""
        folders = [os.path.expanduser(p) for p in given.split(os.pathsep) if p.strip()]
        files = [p for p in folders if os.path.exists(p) and not os.path.isdir(p)]
        if files:
            raise SalmatError(f"{named('model_dir')} {files[0]} is a file, not a folder: name the folder that holds "
                              "the models' files")
        if folders and not any(os.path.isdir(p) for p in folders):
            raise SalmatError(f"{named('model_dir')} {given}: no such folder; name the folder that holds the models' "
                              "files (`salmat models pull NAME` fills one)")


def sheet_file(value: Any) -> str | None:
    """A picture name whose suffix says PNG or JPEG (checked before any work)."""
    ok = isinstance(value, str) and os.path.splitext(value)[1].lower() in IMAGE_FORMATS
    return None if ok else f"a file name ending in {', '.join(IMAGE_FORMATS)}"


@dataclass(frozen=True)
class PreviewOptions(Options):
    """`salmat preview` / `salmat.contact_sheet(clip, out, **settings)`."""

    command: ClassVar[str] = "preview"

    clip: str = setting(help="a video file (or raw .yuv named with its size)", positional=True, convert=path)
    out: str = setting("sheet.png", "the sheet: .png, or .jpg/.jpeg for a JPEG", convert=path, check=sheet_file,
                       example="sheet.png")
    model: str | None = setting(None, "model id (built-in or learned) or .onnx path; unset: image_signature_v1",
                                group=MODEL)
    model_dir: str | None = MODEL_DIR.field()
    preprocess: str | None = PREPROCESS.field(help="preprocessing preset for an ONNX model (default: a learned "
                                              "model's own, else vmaf-student)")
    device: str = DEVICE.field()
    default_width: int | None = DEFAULT_WIDTH.field(help="raw .yuv width (else from a _WxH_ name token)")
    default_height: int | None = DEFAULT_HEIGHT.field(help="raw .yuv height (else from a _WxH_ name token)")
    max_pixels: int | None = MAX_PIXELS.field()
    frame_samples: int = FRAME_SAMPLES.field(help="frames sampled, as materialize samples them")
    sampling: str = SAMPLING.field()
    max_frames: int = MAX_FRAMES.field()
    ema_alpha: float = EMA_ALPHA.field()
    reducers: tuple[str, ...] = REDUCER_LIST.field(help="comma-separated temporal reducers, one panel each")
    panel_width: int = setting(DEFAULT_PANEL_WIDTH, "pixel width of each panel", check=whole(MIN_PANEL_WIDTH))
    colors: int = setting(256, "palette size of a PNG sheet (0: full colour; a JPEG is always full colour)",
                          check=whole(0, 256))
    cache: str | None = CACHE.field()
    no_cache: bool = NO_CACHE.field()


@dataclass(frozen=True)
class BatchOptions(Options):
    """`salmat batch` / `salmat.run_batch(manifest, **settings)`; the tables' settings are in the manifest."""

    command: ClassVar[str] = "batch"

    # The API also takes a loaded `salmat.batch.Manifest` here.
    manifest: str = setting(help="manifest .json or .toml; relative paths are its folder's", required=True,
                            convert=path)
    report_json: str | None = setting(None, "write the batch report (salmat.batch/v1) here", convert=path)
    report_md: str | None = setting(None, "write a Markdown table of the tables here", convert=path)
    fail_fast: bool = setting(False, "stop at the first table that is not ok")
    allow_row_failures: bool = setting(False, "exit 0 when rows failed (a table that errored still exits 1)")
    # None leaves each table's own `quiet`; True silences every table.
    quiet: bool | None = QUIET.field(default=None, help="no progress bars (unset: each table's own quiet)",
                                     group=None)


@dataclass(frozen=True)
class AuditOptions(Options):
    """`salmat audit` / `salmat.audit_table(input, out, **settings)`."""

    command: ClassVar[str] = "audit"

    input: str = INPUT.field(help="feature table (per clip or per frame)")
    # The API may leave `out` unset (report only, no files); the command exists to write them.
    out: str | None = setting(None, "folder for signal_audit.json, signal_audit.md and signal_audit.png",
                              required=True, convert=path)
    target: str = setting("auto", "target column, or auto: the one of vmaf, vmaf_score, mos_raw_0_100, mos, dmos, "
                          "score present (two present: name one)", check=non_empty)
    group_by: str | None = setting(None, "average rows per value of this column first")
    saliency_columns: tuple[str, ...] | None = setting(None, "comma-separated saliency columns (unset: each set's "
                                                       "saliency_mean, saliency_var; see --saliency-prefixes)",
                                                       convert=comma_list, check=item_list, metavar="C,C")
    saliency_prefixes: tuple[str, ...] | None = setting(
        None, "comma-separated prefixes of the saliency column sets to audit, each on its own (v1_,v2_; none: the "
        "unprefixed set; unset: every <prefix>saliency_mean/var or ROI column's prefix)", convert=comma_list,
        check=item_list, metavar="P,P")
    features: tuple[str, ...] | None = setting(None, "comma-separated columns audited beside the saliency columns "
                                               "(unset: every numeric column not named like a target, an id or "
                                               "provenance)", convert=comma_list, check=item_list, metavar="C,C")
    exclude: tuple[str, ...] | None = setting(None, "comma-separated columns never used as features",
                                              convert=comma_list, check=item_list, metavar="C,C")
    folds: int = setting(5, "cross-validation folds", check=whole(2))
    bootstrap: int = setting(1000, "bootstrap resamples for the interval (0: none)", check=whole(0))
    ridge_alpha: float = setting(1.0, "ridge regression penalty", check=non_negative)
    seed: int = setting(0, "random seed (folds, bootstrap)", check=whole(0))
    plots: bool = PLOTS.field(help="write signal_audit.png (--no-plots skips it)", group=None)

    def cross_check(self) -> None:
        excluded = set(self.exclude or ())
        for setting_name in ("features", "saliency_columns"):
            both = [c for c in getattr(self, setting_name) or () if c in excluded]
            if both:
                raise SalmatError(f"{', '.join(both)} named by both {named(setting_name)} and {named('exclude')}; "
                                  "keep one")
        if self.target in excluded:
            raise SalmatError(f"{self.target!r} is the target; leave it out of {named('exclude')}")
        if self.saliency_columns and self.saliency_prefixes:
            raise SalmatError(f"{named('saliency_columns')} and {named('saliency_prefixes')} both choose the saliency "
                              "columns; keep one")


def http_url(value: Any) -> str | None:
    """An address `salmat models pull` can download from."""
    ok = isinstance(value, str) and value.split("://", 1)[0].lower() in ("http", "https") and "://" in value
    return None if ok else "an http:// or https:// address"


@dataclass(frozen=True)
class ModelsPullOptions(Options):
    """`salmat models pull NAME` / `salmat.pull_model(name, **settings)`."""

    command: ClassVar[str] = "models pull"

    name: str = setting(help="the known learned model to download (see `salmat models`)", positional=True)
    model_dir: str | None = setting(None, "folder the file is installed in (default: the first folder of "
                                    "$SALMAT_MODEL_DIR)", convert=path, metavar="DIR")
    url: str | None = setting(None, "download from here instead of the model's published address (its sha256 is "
                              "checked all the same)", check=http_url, metavar="URL")
