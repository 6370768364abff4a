"""Every command's settings, each declared once (see `salmat.option_spec`).

One frozen dataclass per command (`MaterializeOptions`, `CompareOptions`,
`PreviewOptions`, `BatchOptions`, `AuditOptions`). Field names are the CLI
flags with dashes turned into underscores, one to one, so
`salmat.materialize(input, output, frame_samples=4)` and
`salmat materialize --input … --frame-samples 4` are the same call; the
parsers in `salmat.cli` are built from these classes. Settings several
commands share (`--ema-alpha`, `--frame-samples`, `--root`, …) are declared
once below and reused, so their defaults, help and checks can't drift apart.

Only the standard library and salmat's leaf modules are imported here, so
`salmat --help` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from .defaults import (
    DEFAULT_CLIP_TIMEOUT,
    DEFAULT_EMA_ALPHA,
    DEFAULT_MAX_PIXELS,
    DEVICES,
)
from .errors import SalmatError
from .option_spec import (
    Options,
    Setting,
    comma_list,
    existing_folder,
    item_list,
    named,
    native_or_size,
    non_empty,
    non_negative,
    passing,
    path,
    seconds,
    setting,
    text,
    unit_interval,
    whole,
)
from .values import OUTPUT_COLUMNS, QUALITY_COLUMNS, QUALITY_POOLINGS, REDUCERS, WEIGHT_SOURCES

SAMPLING_MODES = ("clip", "head")
COMPAT_MODES = ("historical",)
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
RUNTIMES = ("auto", "onnxruntime", "openvino")
ENGINES = ("local", "ray", "feeder")
LONG_FORMATS = ("parquet", "csv")
STREAM_FORMATS = ("jsonl", "csv")

# argparse groups of `salmat materialize --help` (other commands reuse them through the shared settings).
SOURCES, FRAMES, MODEL, COLUMNS, RUN = "sources", "frames and temporal reducer", "model", "columns", "run"
REFERENCE = "full reference (ROI family)"


def open_unit_interval(value: Any) -> str | None:
    """A number strictly between 0 and 1."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value < 1.0
    return None if ok else "a number in (0, 1)"


# The ROI family's settings other than the reference column itself: nothing without one.
ROI_SETTINGS = ("roi_fraction", "weights_from", "quality_pooling")

# ---- settings several commands share: declared here once, each command takes `.field()` of them ----

INPUT = Setting(help="feature table: .jsonl, .csv, .tsv (each may end .gz), .parquet, a folder of .parquet files, "
                "or - for stdin (never modified)", required=True, convert=path)
PATH_COLUMN = Setting("src", "column holding each row's clip path", check=non_empty, group=SOURCES)
ROOT = Setting(None, "folder that relative paths are joined to", check=existing_folder, convert=path,
               group=SOURCES, example="/data/clips")
WIDTH_COLUMN = Setting("width", "raw .yuv width column", group=SOURCES)
HEIGHT_COLUMN = Setting("height", "raw .yuv height column", group=SOURCES)
DEFAULT_WIDTH = Setting(None, "raw .yuv width when the row has none", check=whole(1), group=SOURCES,
                        example="1920")
DEFAULT_HEIGHT = Setting(None, "raw .yuv height when the row has none", check=whole(1), group=SOURCES,
                         example="1080")
MAX_PIXELS = Setting(DEFAULT_MAX_PIXELS, "refuse frames larger than this before decoding", check=whole(1),
                     group=SOURCES)
FRAME_SAMPLES = Setting(8, "frames sampled per clip", check=whole(1), group=FRAMES)
SAMPLING = Setting("clip", "clip: evenly over the whole clip; head: among the first --max-frames (historical)",
                   choices=SAMPLING_MODES, group=FRAMES)
MAX_FRAMES = Setting(8, "frames decoded by --sampling head", check=whole(1), group=FRAMES)
EMA_ALPHA = Setting(DEFAULT_EMA_ALPHA, "EMA alpha in (0, 1]", check=unit_interval, group=FRAMES)
REDUCER_LIST = Setting(REDUCERS, "comma-separated temporal reducers", choices=REDUCERS, convert=comma_list,
                       check=item_list, group=FRAMES, metavar="R,R")
PREPROCESS = Setting(None, "ONNX preprocessing preset: vmaf-student, u2net, custom:FILE (default: a learned model's "
                     "own, else vmaf-student)", group=MODEL)
DEVICE = Setting("cpu", "where ONNX models run", choices=DEVICES, group=MODEL)
MODEL_DIR = Setting(None, "folders searched for a learned model's file, ':'-separated (default: $SALMAT_MODEL_DIR)",
                    group=MODEL, example="/data/models")
INFERENCE_SIZE = Setting("native", "ONNX models: bring frames whose short side is above S down to S pixels before "
                         "the model, never enlarging (faster; changes values; the model id gets @S)", convert=text,
                         check=native_or_size, group=MODEL, example="540", metavar="S")
QUIET = Setting(False, "no progress bar, nor the line saying how many clips the cache answered (the summary stays)",
                group=RUN)
# Where clips run and the result cache (`salmat.run_clips`): the same for every command that computes clips.
WORKERS = Setting(os.cpu_count() or 1, "clip worker processes (default: all cores)", check=whole(1), group=RUN)
CLIP_TIMEOUT = Setting(DEFAULT_CLIP_TIMEOUT, "seconds a clip may take (decode + model) before its worker is stopped "
                       "and its rows get decode-timeout/model-timeout (from Python, None runs --workers 1 in this "
                       "process, unbounded)", check=seconds, group=RUN, example="60")
CACHE = Setting(None, "SQLite result cache path", convert=path, group=RUN)
NO_CACHE = Setting(False, "neither read nor write the result cache", group=RUN)
ENGINE = Setting("local", "local process pool, Ray Data, or feeder: --workers decode processes feed one model in "
                 "this process (one GPU, one model copy)", choices=ENGINES, group=RUN)
RAY_ADDRESS = Setting(None, "Ray cluster address (default: a local cluster)", group=RUN)
NUM_GPUS_PER_WORKER = Setting(0.0, "GPUs per Ray actor", check=non_negative, group=RUN)
PLOTS = Setting(True, "write the PNG plots (--no-plots skips them)", group=RUN)


@dataclass(frozen=True)
class MaterializeOptions(Options):
    command: ClassVar[str] = "materialize"

    input: str = INPUT.field()
    output: str = setting(help="output table, format from the suffix (- is stdout, see --format); written whole "
                               "or not at all", required=True,
                          convert=path)
    path_column: str = PATH_COLUMN.field()
    root: str | None = ROOT.field()
    confine_to_root: bool = setting(False, "refuse sources outside --root (status outside-root)", group=SOURCES)
    width_column: str = WIDTH_COLUMN.field()
    height_column: str = HEIGHT_COLUMN.field()
    default_width: int | None = DEFAULT_WIDTH.field()
    default_height: int | None = DEFAULT_HEIGHT.field()
    max_pixels: int | None = MAX_PIXELS.field()
    frame_samples: int = FRAME_SAMPLES.field()
    sampling: str = SAMPLING.field()
    max_frames: int = MAX_FRAMES.field()
    temporal_aggregator: str = setting("mean", "temporal reducer", choices=REDUCERS, group=FRAMES)
    ema_alpha: float = EMA_ALPHA.field()
    compat: str | None = setting(None, "historical: reproduce the earlier tool (head sampling, its motion "
                                       "weights and preprocessing)", choices=COMPAT_MODES, group=FRAMES)
    model: str | None = setting(None, "a built-in id, or a learned model's id found in --model-dir (default "
                                "image_signature_v1; see `salmat models`)",
                                group=MODEL, example="image_signature_v1")
    model_path: str | None = setting(None, "an ONNX saliency model file", convert=path, group=MODEL)
    model_id: str | None = setting(None, "label for an ONNX model (default: its known id, else the file's stem)",
                                   group=MODEL)
    model_dir: str | None = MODEL_DIR.field()
    preprocess: str | None = PREPROCESS.field()
    device: str = DEVICE.field()
    runtime: str = setting("auto", "what runs an ONNX model on the CPU: openvino (pip install 'salmat[openvino]'), "
                           "onnxruntime, or auto: the fastest exact one installed", choices=RUNTIMES, group=MODEL)
    precision: str = setting("fp32", "fp16: GPU (torch path); int8: quantized ONNX on the CPU (the model id gets "
                             "@int8); bf16: OpenVINO on CPUs with avx512_bf16 or AMX (@bf16)", choices=PRECISIONS,
                             group=MODEL)
    inference_size: str = INFERENCE_SIZE.field()
    per_frame: bool = setting(False, "each row gets its own frame's saliency (needs --frame-column; no reducer)",
                              group=FRAMES)
    frame_column: str | None = setting(None, "with --per-frame: column holding each row's frame index (from 0, "
                                       "presentation order)", group=FRAMES, example="frame_index")
    overwrite: bool = setting(False, "recompute rows that already hold saliency values", group=COLUMNS)
    column_prefix: str = setting("", "prefix of every column salmat writes (ref_ → ref_saliency_mean, …; "
                                     "default: none)", group=COLUMNS, example="ref_")
    status_column: str = setting(OUTPUT_COLUMNS["status"], "status column ('' omits it)", group=COLUMNS)
    model_id_column: str = setting(OUTPUT_COLUMNS["model_id"], "model id column ('' omits it)", group=COLUMNS)
    aggregator_column: str = setting(OUTPUT_COLUMNS["aggregator"], "reducer column ('' omits it)", group=COLUMNS)
    ema_alpha_column: str = setting(OUTPUT_COLUMNS["ema_alpha"], "EMA alpha column ('' omits it)", group=COLUMNS)
    error_column: str = setting(OUTPUT_COLUMNS["error"], "error message column ('' omits it)", group=COLUMNS)
    frames_column: str = setting(OUTPUT_COLUMNS["frames"], "sampling column: clip:8, head:8/8 or frame ('' omits "
                                 "it; absent under --compat historical)", group=COLUMNS)
    reference_column: str | None = setting(None, "column holding each row's reference clip: adds the full-reference "
                                           "columns psnr_y, ssim_y, sw_*, roi_*, bg_*, saliency_shift_cc and "
                                           "roi_config (docs/quality.md)", group=REFERENCE, example="ref")
    roi_fraction: float = setting(0.2, "share of each frame's pixels, most salient first, in the ROI (roi_*); the "
                                  "rest is the background (bg_*)", check=open_unit_interval, group=REFERENCE)
    weights_from: str = setting("ref", "whose saliency maps weight the quality maps: the reference's or the "
                                "distorted clip's", choices=WEIGHT_SOURCES, group=REFERENCE)
    quality_pooling: str = setting("mean", "how a clip row pools its sampled frames' full-reference values "
                                   "(libvmaf's choices)", choices=QUALITY_POOLINGS, group=REFERENCE)
    maps_out: str | None = setting(None, "write each computed clip's sampled saliency maps here (.npz per clip, "
                                   "index.jsonl); clips are then computed, not read from the cache",
                                   convert=path, group=REFERENCE, example="maps/")
    psnr_y_column: str = setting("psnr_y", "luma PSNR column ('' omits it)", group=REFERENCE)
    ssim_y_column: str = setting("ssim_y", "luma SSIM column ('' omits it)", group=REFERENCE)
    sw_psnr_y_column: str = setting("sw_psnr_y", "saliency-weighted PSNR column ('' omits it)", group=REFERENCE)
    sw_ssim_y_column: str = setting("sw_ssim_y", "saliency-weighted SSIM column ('' omits it)", group=REFERENCE)
    roi_psnr_y_column: str = setting("roi_psnr_y", "ROI PSNR column ('' omits it)", group=REFERENCE)
    roi_ssim_y_column: str = setting("roi_ssim_y", "ROI SSIM column ('' omits it)", group=REFERENCE)
    bg_psnr_y_column: str = setting("bg_psnr_y", "background PSNR column ('' omits it)", group=REFERENCE)
    bg_ssim_y_column: str = setting("bg_ssim_y", "background SSIM column ('' omits it)", group=REFERENCE)
    saliency_shift_cc_column: str = setting("saliency_shift_cc", "CC of the distorted and reference maps column "
                                            "('' omits it)", group=REFERENCE)
    roi_config_column: str = setting("roi_config", "ROI settings provenance column ('' omits it)", group=REFERENCE)
    workers: int = WORKERS.field()
    clip_timeout: float | None = CLIP_TIMEOUT.field()
    cache: str | None = CACHE.field()
    no_cache: bool = NO_CACHE.field()
    engine: str = ENGINE.field()
    ray_address: str | None = RAY_ADDRESS.field()
    num_gpus_per_worker: float = NUM_GPUS_PER_WORKER.field()
    audit_json: str | None = setting(None, "write the run record here", convert=path, group=RUN)
    format: str | None = setting(None, "format of --output - (stdout): jsonl or csv (default: jsonl); a file's "
                                 "format comes from its suffix",
                                 choices=STREAM_FORMATS, group=RUN)
    quiet: bool = QUIET.field()

    def effective(self) -> MaterializeOptions:
        """Apply `--compat historical` (head sampling over 8 frames) and check every value."""
        self.validate()  # before the replacement: a sampling setting beside --compat is refused
        return replace(self, **HISTORICAL_SAMPLING) if self.historical else self

    @property
    def historical(self) -> bool:
        return self.compat == "historical"

    def cross_check(self) -> None:
        self._check_together()
        self._check_per_frame()
        self._check_reference()
        if self.format is not None and self.output != "-":
            raise SalmatError(f"{named('format')} sets the format of {named('output')} - (stdout) only; a file's "
                              f"format comes from its suffix (.jsonl, .csv, .tsv, .parquet, .gz): "
                              f"drop {named('format')}")
        names = [n for n in self.output_columns().values() if n]
        bad = next((n for n in names if any(ord(c) < 32 or ord(c) == 127 for c in n)), None)
        if bad is not None:
            raise SalmatError(f"output column name {bad!r} holds a control character (newline, tab, …), which breaks "
                              "CSV headers; give --column-prefix and the --*-column flags printable names")
        if self.model_id is not None and any(ord(c) < 32 or ord(c) == 127 for c in self.model_id):
            raise SalmatError(f"{named('model_id')} {self.model_id!r} holds a control character (newline, tab, …); "
                              "the id is written on every row, so give it printable characters")
        if len(names) != len(set(names)):
            raise SalmatError(f"output column names collide: {names}; give each --*-column flag a distinct name")
        for flag in ("path_column", "width_column", "height_column", "frame_column", "reference_column"):
            if getattr(self, flag) in names:
                raise SalmatError(f"{named(flag)} {getattr(self, flag)!r} is also an output column; "
                                  "rename one of them")

    def _check_together(self) -> None:
        """Settings that are nothing alone: a raw size needs both sides; `--compat historical`
        fixes the sampling itself, so a sampling setting beside it would be silently replaced."""
        for one, other in (("default_width", "default_height"), ("default_height", "default_width")):
            if getattr(self, one) is not None and getattr(self, other) is None:
                raise SalmatError(f"{named(one)} needs {named(other)} too (a raw .yuv frame size has both sides)")
        if self.historical:
            given = self.non_default()
            if "frames_column" in given and self.frames_column:
                raise SalmatError(f"{named('frames_column')} can't be combined with {passing('compat', 'historical')}"
                                  ", which writes the earlier tool's columns exactly (no sampling column); drop one "
                                  "of them")
            for name, value in HISTORICAL_SAMPLING.items():
                if name in given and getattr(self, name) != value:
                    raise SalmatError(f"{named(name)} can't be combined with {passing('compat', 'historical')}, which "
                                      "samples the first 8 frames as the earlier tool did; drop one of them")

    def _check_per_frame(self) -> None:
        """--per-frame needs a frame column and takes no reducer setting: a reducer setting other
        than its default would be ignored, so it is refused instead."""
        if not self.per_frame:
            if self.frame_column:
                raise SalmatError(f"{named('frame_column')} only applies with {named('per_frame')}; add "
                                  f"{named('per_frame')}, or drop {named('frame_column')}")
            return
        if not self.frame_column:
            raise SalmatError(f"{named('per_frame')} needs {passing('frame_column', 'NAME')}, the column holding "
                              "each row's frame index (0 = first frame)")
        given = [name for name in PER_FRAME_EXCLUDES if name in self.non_default()]
        if given:
            raise SalmatError(f"{named(given[0])} does not apply with {named('per_frame')} (each row gets its own "
                              "frame's map; no frames are sampled or reduced); drop it")

    def _check_reference(self) -> None:
        """The ROI settings do nothing without a reference column; per-frame rows pool nothing."""
        if not self.reference_column:
            given = [name for name in ROI_SETTINGS if name in self.non_default()]
            if given:
                raise SalmatError(f"{named(given[0])} only applies with {named('reference_column')} (the column of "
                                  f"reference clips); add it, or drop {named(given[0])}")
        elif self.reference_column == self.path_column:
            raise SalmatError(f"{named('reference_column')} {self.reference_column!r} is the distorted clips' "
                              f"column too ({named('path_column')}); name the column of reference clips")
        elif self.per_frame and "quality_pooling" in self.non_default():
            raise SalmatError(f"{named('quality_pooling')} does not apply with {named('per_frame')} (each row gets "
                              f"its own frame's values; nothing is pooled); drop it")

    def output_columns(self) -> dict[str, str]:
        """Role → name of every column salmat writes, `--column-prefix` applied ('' = omitted).

        The one home of the output names: the writer, the skip rule and the collision checks
        all read them here. The prefix applies to explicit `--*-column` names too, so one flag
        renames the whole set."""
        names = {"mean": OUTPUT_COLUMNS["mean"], "var": OUTPUT_COLUMNS["var"], **self._metadata_names(),
                 **self._quality_names()}
        return {role: self.column_prefix + name if name else "" for role, name in names.items()}

    def _quality_names(self) -> dict[str, str]:
        """The ROI family's columns, written only with --reference-column."""
        if not self.reference_column:
            return {}
        return {role: getattr(self, f"{role}_column") for role in (*QUALITY_COLUMNS, "roi_config")}

    def metadata_columns(self) -> dict[str, str]:
        """Role → metadata column name, prefixed ('' = omitted)."""
        return {role: name for role, name in self.output_columns().items()
                if role not in ("mean", "var", *QUALITY_COLUMNS)}

    def _metadata_names(self) -> dict[str, str]:
        return {
            "status": self.status_column,
            "model_id": self.model_id_column,
            "aggregator": self.aggregator_column,
            "ema_alpha": self.ema_alpha_column,
            "error": self.error_column,
            "frames": "" if self.historical else self.frames_column,  # the earlier tool had no such column
        }


# What `--compat historical` samples: the first 8 frames, as the earlier tool did.
HISTORICAL_SAMPLING: dict[str, Any] = {"sampling": "head", "max_frames": 8, "frame_samples": 8}

# Settings that sample frames or choose/feed a temporal reducer: --per-frame uses none of them.
PER_FRAME_EXCLUDES = ("compat", "temporal_aggregator", "ema_alpha", "frame_samples", "sampling", "max_frames")


def option_names() -> list[str]:
    return [f.name for f in fields(MaterializeOptions)]


def build_options(input: str, output: str, **settings: Any) -> MaterializeOptions:
    """Options from keyword settings; an unknown name is a one-line `SalmatError`."""
    return MaterializeOptions.build(input=input, output=output, **settings)
