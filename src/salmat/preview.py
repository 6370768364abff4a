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
from typing import TYPE_CHECKING, Any

import numpy as np

from .color import yuv_to_rgb
from .compute import sampled_maps
from .decode import SamplingOptions, sampled_indices
from .defaults import DEFAULT_PANEL_WIDTH, MIN_PANEL_WIDTH
from .errors import ClipError, SalmatError
from .frames import YuvFrame
from .maps import WorkingMaps, full_size
from .models import DEFAULT_MODEL_ID, SaliencyModel
from .options import PreviewOptions
from .outputs import preflight
from .plots import pyplot, save_figure
from .sources import ClipSpec, SourceFailure, SourceOptions, resolve_source
from .temporal import REDUCERS, reduce_all, reduce_stats

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
        raise SalmatError(f"--panel-width must be ≥ {MIN_PANEL_WIDTH} pixels, got {panel_width}")
    panel_height = max(1, int(round(panel_width * frame_height / max(frame_width, 1))))
    return SheetLayout(frames, tuple(reducers), int(panel_width), panel_height)


@dataclass
class PreviewResult:
    """What `preview` drew: `stats[reducer] = (saliency_mean, saliency_var)` as `materialize` writes
    them; `indices` are the sampled frames' indices (from 0, decode order), None if they can't be told."""

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
            **settings: Any) -> PreviewResult:
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
    saliency = _load_model(opts)
    preflight({"--out": opts.out}, {"the clip": opts.clip,
                                    "the model": opts.model if opts.model and os.path.isfile(opts.model) else None})
    sample = _sample(spec, saliency, SamplingOptions(opts.sampling, opts.frame_samples, opts.max_frames,
                                                     opts.max_pixels))
    lumas = [f.luma8() for f in sample.frames]
    reduced = reduce_all(sample.maps, lumas, opts.ema_alpha, False)
    all_stats = reduce_stats(sample.maps, lumas, opts.ema_alpha, False, reduced)  # the figures materialize writes
    stats = {r: all_stats[r] for r in opts.reducers}
    first = sample.frames[0]
    layout = sheet_layout(len(sample.frames), first.width, first.height, opts.reducers, opts.panel_width)
    fig = _draw(plt, layout, sample, reduced, stats, opts, saliency.id)
    save_figure(fig, opts.out, dpi=DPI, colors=opts.colors, facecolor=BACKGROUND)
    plt.close(fig)
    return PreviewResult(opts.out, layout, saliency.id, stats, sample.indices)


def _load_model(opts: PreviewOptions) -> SaliencyModel:
    from .compare import load_models

    return load_models([opts.model or DEFAULT_MODEL_ID], preprocess=opts.preprocess, device=opts.device,
                       model_dir=opts.model_dir)[0]


def _sample(spec: ClipSpec, saliency: SaliencyModel, sampling: SamplingOptions) -> _Sample:
    """The frames `materialize` would sample, their maps, and their indices."""
    try:
        indices = sampled_indices(spec, sampling)
        frames, maps = sampled_maps(spec, saliency, sampling)  # materialize's own path, so its values
    except ClipError as exc:
        raise SalmatError(f"{spec.path}: {exc.message} ({exc.status})") from None
    # The count read from the packets disagrees with what decoded (a damaged stream): show no indices
    # rather than wrong ones.
    return _Sample(frames, maps, indices if len(indices) == len(frames) else None)


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
