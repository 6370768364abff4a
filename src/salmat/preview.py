"""`salmat preview`: one clip's contact sheet.

Three rows of panels, each panel the frame's aspect ratio, and the colour bar
(the map scale, 0 to 1) beside the last two:

1. the sampled frames, each labelled with its frame index; by default the frames
   `materialize` samples (same count, same rule);
2. each frame's saliency map as a heat overlay on the frame;
3. the reduced clip map for each temporal reducer, with its `saliency_mean` and
   `saliency_var` written under it (the values `materialize` writes).

`sheet_layout` computes the geometry up front, and `preview` returns it: the
picture is exactly `layout.width × layout.height` pixels, a PNG (a palette of
≤ `colors` colours unless `colors=0`) or, for a `.jpg`/`.jpeg` name, a JPEG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
from av.error import FFmpegError

from .cache import open_cache
from .clip_maps import ClipMaps
from .color import yuv_to_rgb
from .command_options import PreviewOptions
from .compute import ClipJob
from .decode import SamplingOptions, decode_sampled, sampled_indices
from .defaults import DEFAULT_PANEL_WIDTH, MIN_PANEL_WIDTH
from .errors import ClipError, SalmatError
from .frames import YuvFrame
from .maps import WorkingMaps, full_size
from .model_choice import model_spec
from .models import DEFAULT_MODEL_ID
from .models.knobs import Knobs
from .models.spec import ModelSpec
from .option_spec import named
from .outputs import preflight
from .plots import pyplot, save_figure
from .run_clips import RunSettings, run_clips
from .settings_types import PreviewSettings
from .sources import ClipSpec, SourceFailure, SourceOptions, resolve_source
from .temporal import REDUCERS
from .values import OK, ClipResult, ReduceOptions

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

_Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), as `SheetLayout.box` gives it

BACKGROUND = (1.0, 1.0, 1.0)
OVERLAY_ALPHA = 0.6
COLORMAP = "inferno"
DPI = 100


@dataclass(frozen=True)
class SheetLayout:
    """Pixel geometry of a contact sheet. Boxes are (x0, y0, x1, y1), y down, x1/y1 exclusive.

    The colour bar (the map scale) stands right of the last column, beside the overlay and
    reducer rows; its tick labels take `colorbar_label_width` pixels to its right."""

    frames: int
    reducers: tuple[str, ...]
    panel_width: int
    panel_height: int
    gap: int = 6
    label_height: int = 26
    title_height: int = 22
    colorbar_width: int = 10
    colorbar_label_width: int = 48

    @property
    def columns(self) -> int:
        return max(self.frames, len(self.reducers))

    @property
    def rows(self) -> int:
        return 3

    @property
    def width(self) -> int:
        return self.gap + self.columns * (self.panel_width + self.gap) + self.colorbar_width + self.colorbar_label_width

    @property
    def height(self) -> int:
        return self.title_height + self.rows * (self.panel_height + self.label_height + self.gap)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def panels(self) -> int:
        """Frame panels + overlay panels + reducer panels."""
        return 2 * self.frames + len(self.reducers)

    def box(self, row: int, col: int) -> _Box:
        x0 = self.gap + col * (self.panel_width + self.gap)
        y0 = self.title_height + row * (self.panel_height + self.label_height + self.gap)
        return x0, y0, x0 + self.panel_width, y0 + self.panel_height

    def frame_boxes(self) -> list[_Box]:
        return [self.box(0, c) for c in range(self.frames)]

    def overlay_boxes(self) -> list[_Box]:
        return [self.box(1, c) for c in range(self.frames)]

    def reducer_boxes(self) -> list[_Box]:
        return [self.box(2, c) for c in range(len(self.reducers))]

    def colorbar_box(self) -> _Box:
        """From the top of the overlay row to the bottom of the reducer row."""
        x0 = self.gap + self.columns * (self.panel_width + self.gap)
        return x0, self.box(1, 0)[1], x0 + self.colorbar_width, self.box(2, 0)[3]


def sheet_layout(frames: int, frame_width: int, frame_height: int, reducers: Sequence[str] = REDUCERS,
                 panel_width: int = DEFAULT_PANEL_WIDTH) -> SheetLayout:
    """The geometry for `frames` sampled frames of a `frame_width × frame_height` clip."""
    if frames < 1:
        raise SalmatError("a contact sheet needs at least one frame")
    if panel_width < MIN_PANEL_WIDTH:
        raise SalmatError(f"{named('panel_width')} must be ≥ {MIN_PANEL_WIDTH} pixels, got {panel_width}")
    panel_height = max(1, int(round(panel_width * frame_height / max(frame_width, 1))))
    return SheetLayout(frames, tuple(reducers), int(panel_width), panel_height)


@dataclass
class PreviewResult:
    """What `preview` drew: `stats[reducer] = (saliency_mean, saliency_var)` as `materialize` writes
    them; `indices` are the sampled frames' indices (frame indices, docs/contract.md §4), None if they can't be told."""

    path: str
    layout: SheetLayout
    model_id: str
    stats: dict[str, tuple[float, float]]
    indices: list[int] | None = None


@dataclass
class _Sample:
    frames: list[YuvFrame]
    maps: np.ndarray | WorkingMaps
    indices: list[int] | None


def preview(clip: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
            **settings: Unpack[PreviewSettings]) -> PreviewResult:
    """Decode, run the model, reduce, and draw the sheet; returns its layout and the per-reducer stats.

    `settings` are `salmat.options.PreviewOptions`: the `salmat preview` flags with underscores
    (`reducers` takes a comma-separated string or a list). `out=None` writes `sheet.png`; a `.jpg`
    or `.jpeg` name writes a JPEG. The defaults sample the frames `materialize` samples, so the
    stats are the values it writes for this clip with the same model and settings."""
    opts = PreviewOptions.build(clip=clip, **settings, **({} if out is None else {"out": out}))
    opts.validate()   # a bad --out suffix or value is refused here, before any work
    plt = pyplot()
    spec = resolve_source(opts.clip, None, None, SourceOptions(default_width=opts.default_width,
                                                               default_height=opts.default_height))
    if isinstance(spec, SourceFailure):
        # The message names the clip already (resolve_source says which path failed and how).
        shown = spec.message if opts.clip in spec.message else f"{opts.clip}: {spec.message}"
        raise SalmatError(f"{shown} ({spec.status})")
    given = ModelSpec(preprocess=opts.preprocess, knobs=Knobs(device=opts.device))
    chosen = model_spec(opts.model or DEFAULT_MODEL_ID, given, model_dir=opts.model_dir, paths=True)
    saliency = chosen.load()
    preflight({"--out": opts.out}, {"the clip": opts.clip,
                                    "the model": opts.model if opts.model and os.path.isfile(opts.model) else None})
    sampling = SamplingOptions(opts.sampling, opts.frame_samples, opts.max_frames, opts.max_pixels)
    reduce = ReduceOptions(opts.ema_alpha)
    result, record = _run(spec, ClipJob(chosen.pinned(saliency.fingerprint), sampling, reduce), opts)
    sample = _sample(spec, record.maps, sampling)
    reduced = record.reduced(reduce)
    stats = {r: result.stats[r] for r in opts.reducers}  # the figures materialize writes
    first = sample.frames[0]
    layout = sheet_layout(len(sample.frames), first.width, first.height, opts.reducers, opts.panel_width)
    fig = _draw(plt, layout, sample, reduced, stats, opts, saliency.id)
    save_figure(fig, opts.out, dpi=DPI, colors=opts.colors, facecolor=BACKGROUND)
    plt.close(fig)
    return PreviewResult(opts.out, layout, saliency.id, stats, sample.indices)


def _run(spec: ClipSpec, job: ClipJob, opts: PreviewOptions) -> tuple[ClipResult, ClipMaps]:
    """The clip through the one run path (`run_clips`: the result cache, then this process)."""
    cache = open_cache(opts.cache, enabled=not opts.no_cache)
    try:
        run = run_clips([spec], job, RunSettings(workers=1, clip_timeout=None, quiet=True), cache, need_maps=True)
    finally:
        if cache is not None:
            cache.close()
    result, record = run.results[0], run.maps[0]
    if result.status != OK or record is None:
        raise _clip_error(spec, result.error or "no maps came back", result.status)
    return result, record


def _sample(spec: ClipSpec, maps: np.ndarray | WorkingMaps, sampling: SamplingOptions) -> _Sample:
    """The frames `materialize` samples (decoded again to be drawn), their maps, and their indices."""
    try:
        frames = decode_sampled(spec, sampling)
    except ClipError as exc:
        raise _clip_error(spec, exc.message, exc.status) from None
    indices = _indices(spec, sampling)
    # The count read from the packets disagrees with what decoded (a damaged stream): show no indices
    # rather than wrong ones.
    return _Sample(frames, maps, indices if indices is not None and len(indices) == len(frames) else None)


def _clip_error(spec: ClipSpec, message: str, status: str) -> SalmatError:
    """The clip's failure in one line; decode's messages name the file already, so it is said once."""
    shown = message if spec.path in message else f"{spec.path}: {message}"
    return SalmatError(f"{shown} ({status})")


def _indices(spec: ClipSpec, sampling: SamplingOptions) -> list[int] | None:
    """The sampled frames' indices from the packets, or None when they can't be read (the frames
    decoded, so the sheet is drawn, labelled by sample number)."""
    try:
        return sampled_indices(spec, sampling)
    except (ClipError, OSError, ValueError, FFmpegError):
        return None


def _draw(plt: ModuleType, layout: SheetLayout, sample: _Sample, reduced: dict[str, np.ndarray],
          stats: dict[str, tuple[float, float]], opts: PreviewOptions, model_id: str) -> Figure:
    w, h = layout.size
    fig: Figure = plt.figure(figsize=(w / DPI, h / DPI), dpi=DPI, facecolor=BACKGROUND)
    cmap = _colormap(COLORMAP)

    def axes(box: _Box) -> Axes:
        x0, y0, x1, y1 = box
        return fig.add_axes((x0 / w, 1 - y1 / h, (x1 - x0) / w, (y1 - y0) / h))

    def panel(box: _Box, image: np.ndarray, **kw: Any) -> None:
        ax = axes(box)
        ax.imshow(image, aspect="auto", interpolation="bilinear", **kw)
        ax.set_axis_off()

    def label(box: _Box, text: str) -> None:
        x0, _, x1, y1 = box
        fig.text((x0 + x1) / 2 / w, 1 - (y1 + layout.label_height / 2) / h, text, ha="center", va="center",
                 fontsize=6.5, family="monospace", linespacing=1.1)

    frames = sample.frames
    stride = max(1, frames[0].width // (2 * layout.panel_width))
    for i, (frame, frame_map) in enumerate(zip(frames, full_size(sample.maps), strict=True)):
        rgb = yuv_to_rgb(frame)[::stride, ::stride]
        sal = np.clip(frame_map[::stride, ::stride], 0.0, 1.0)
        panel(layout.frame_boxes()[i], rgb)
        count = f"{i + 1}/{len(frames)}"
        label(layout.frame_boxes()[i], f"frame {sample.indices[i]} ({count})" if sample.indices else f"sample {count}")
        heat = cmap(sal)[..., :3]
        panel(layout.overlay_boxes()[i], (1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * heat)
        label(layout.overlay_boxes()[i], f"map mean {float(sal.mean()):.3f}")
    for j, r in enumerate(layout.reducers):
        m = np.clip(reduced[r][::stride, ::stride], 0.0, 1.0)
        panel(layout.reducer_boxes()[j], m, cmap=cmap, vmin=0.0, vmax=1.0)
        mean, var = stats[r]
        name = f"ema α={opts.ema_alpha:g}" if r == "ema" else r
        label(layout.reducer_boxes()[j], f"{name}\nmean {mean:.4f} var {var:.5f}")
    _colorbar(fig, axes(layout.colorbar_box()), cmap)
    fig.text(layout.gap / w, 1 - (layout.title_height / 2) / h,
             f"{os.path.basename(opts.clip)} — {model_id}, {len(frames)} sampled frames ({opts.sampling})",
             ha="left", va="center", fontsize=8)
    return fig


def _colorbar(fig: Figure, cax: Axes, cmap: Colormap) -> None:
    """The map scale: the heat colours of the overlays and reducer panels, 0 (bottom) to 1 (top)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), cax=cax, ticks=[0.0, 0.5, 1.0])
    bar.outline.set_visible(False)
    # Tick marks clear of their labels (a mark touching "0.5" read as "-0.5"), and the name above the
    # bar, where nothing else is drawn: beside it, rotated, it ran into the middle tick label.
    bar.ax.tick_params(labelsize=6.5, length=3, width=0.6, pad=3)
    bar.ax.set_title("saliency", fontsize=6.5, pad=8)


def _colormap(name: str) -> Colormap:
    import matplotlib

    return matplotlib.colormaps[name]
