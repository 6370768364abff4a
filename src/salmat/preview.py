"""`salmat preview`: one clip's contact sheet.

Three rows of panels, each panel the frame's aspect ratio:

1. the sampled frames (as `materialize` samples them), one panel per frame;
2. each frame's saliency map as a heat overlay on the frame;
3. the reduced clip map for each temporal reducer, with its `saliency_mean` and
   `saliency_var` written under it (the values `materialize` would write).

`sheet_layout` computes the geometry up front, and `preview` returns it: the
PNG is exactly `layout.width × layout.height` pixels (a palette PNG of ≤ `colors`
colours unless `colors=0`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .color import yuv_to_rgb
from .compute import check_uniform_size, predict_maps
from .decode import SamplingOptions, decode_sampled
from .defaults import MIN_PANEL_WIDTH
from .errors import ClipError, SalmatError
from .maps import full_size
from .options import PreviewOptions
from .outputs import preflight
from .plots import pyplot, save_figure
from .sources import SourceFailure, SourceOptions, resolve_source
from .temporal import REDUCERS, reduce_all, reduce_stats

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

_Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), as `SheetLayout.box` gives it

BACKGROUND = (1.0, 1.0, 1.0)
OVERLAY_ALPHA = 0.6


@dataclass(frozen=True)
class SheetLayout:
    """Pixel geometry of a contact sheet. Boxes are (x0, y0, x1, y1), y down, x1/y1 exclusive."""

    frames: int
    reducers: tuple[str, ...]
    panel_width: int
    panel_height: int
    gap: int = 6
    label_height: int = 26
    title_height: int = 22

    @property
    def columns(self) -> int:
        return max(self.frames, len(self.reducers))

    @property
    def rows(self) -> int:
        return 3

    @property
    def width(self) -> int:
        return self.gap + self.columns * (self.panel_width + self.gap)

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

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        x0 = self.gap + col * (self.panel_width + self.gap)
        y0 = self.title_height + row * (self.panel_height + self.label_height + self.gap)
        return x0, y0, x0 + self.panel_width, y0 + self.panel_height

    def frame_boxes(self) -> list[tuple[int, int, int, int]]:
        return [self.box(0, c) for c in range(self.frames)]

    def overlay_boxes(self) -> list[tuple[int, int, int, int]]:
        return [self.box(1, c) for c in range(self.frames)]

    def reducer_boxes(self) -> list[tuple[int, int, int, int]]:
        return [self.box(2, c) for c in range(len(self.reducers))]


def sheet_layout(frames: int, frame_width: int, frame_height: int, reducers: Sequence[str] = REDUCERS,
                 panel_width: int = 200) -> SheetLayout:
    """The geometry for `frames` sampled frames of a `frame_width × frame_height` clip."""
    if frames < 1:
        raise SalmatError("a contact sheet needs at least one frame")
    if panel_width < MIN_PANEL_WIDTH:
        raise SalmatError(f"--panel-width must be ≥ {MIN_PANEL_WIDTH} pixels, got {panel_width}")
    panel_height = max(1, int(round(panel_width * frame_height / max(frame_width, 1))))
    return SheetLayout(frames, tuple(reducers), int(panel_width), panel_height)


@dataclass
class PreviewResult:
    path: str
    layout: SheetLayout
    model_id: str
    stats: dict[str, tuple[float, float]]


def preview(clip: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
            **settings: Any) -> PreviewResult:
    """Decode, run the model, reduce, and draw the sheet; returns its layout and the per-reducer stats.

    `settings` are `salmat.options.PreviewOptions`: the `salmat preview` flags with underscores
    (`reducers` takes a comma-separated string or a list). `out=None` writes `sheet.png`."""
    from .compare import load_models

    opts = PreviewOptions.build(clip=clip, **settings, **({} if out is None else {"out": out}))
    opts.validate()
    # The steps below read plain names; these are the validated settings.
    clip, out, model, preprocess, sampling = opts.clip, opts.out, opts.model, opts.preprocess, opts.sampling
    ema_alpha, reducers, panel_width, colors = opts.ema_alpha, opts.reducers, opts.panel_width, opts.colors
    default_width, default_height = opts.default_width, opts.default_height
    plt = pyplot()
    spec = resolve_source(str(clip), None, None, SourceOptions(default_width=default_width,
                                                               default_height=default_height))
    if isinstance(spec, SourceFailure):
        raise SalmatError(f"{clip}: {spec.message} ({spec.status})")
    saliency = load_models([model or "image_signature_v1"], preprocess=preprocess, device=opts.device)[0]
    preflight({"--out": out}, {"the clip": clip, "the model": model if model and os.path.isfile(model) else None})
    try:
        frames = decode_sampled(spec, SamplingOptions(sampling, opts.frame_samples, opts.max_frames, opts.max_pixels))
        check_uniform_size(frames)
        maps = predict_maps(saliency, frames)
    except ClipError as exc:
        raise SalmatError(f"{clip}: {exc.message} ({exc.status})") from None
    lumas = [f.luma8() for f in frames]
    reduced = reduce_all(maps, lumas, ema_alpha, False)
    all_stats = reduce_stats(maps, lumas, ema_alpha, False, reduced)  # the figures materialize writes
    stats = {r: all_stats[r] for r in reducers}

    layout = sheet_layout(len(frames), frames[0].width, frames[0].height, reducers, panel_width)
    w, h = layout.size
    dpi = 100
    fig: Figure = plt.figure(figsize=(w / dpi, h / dpi), dpi=dpi, facecolor=BACKGROUND)
    cmap = _colormap("inferno")

    def panel(box: _Box, image: np.ndarray, **kw: Any) -> Axes:
        x0, y0, x1, y1 = box
        ax = fig.add_axes((x0 / w, 1 - y1 / h, (x1 - x0) / w, (y1 - y0) / h))
        ax.imshow(image, aspect="auto", interpolation="bilinear", **kw)
        ax.set_axis_off()
        return ax

    def label(box: _Box, text: str) -> None:
        x0, _, x1, y1 = box
        fig.text((x0 + x1) / 2 / w, 1 - (y1 + layout.label_height / 2) / h, text, ha="center", va="center",
                 fontsize=6.5, family="monospace", linespacing=1.1)

    stride = max(1, frames[0].width // (2 * panel_width))
    for i, (frame, frame_map) in enumerate(zip(frames, full_size(maps), strict=True)):
        rgb = yuv_to_rgb(frame)[::stride, ::stride]
        sal = np.clip(frame_map[::stride, ::stride], 0.0, 1.0)
        panel(layout.frame_boxes()[i], rgb)
        label(layout.frame_boxes()[i], f"sample {i + 1}/{len(frames)}")
        heat = cmap(sal)[..., :3]
        panel(layout.overlay_boxes()[i], (1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * heat)
        label(layout.overlay_boxes()[i], f"map mean {float(sal.mean()):.3f}")
    for j, r in enumerate(reducers):
        m = np.clip(reduced[r][::stride, ::stride], 0.0, 1.0)
        panel(layout.reducer_boxes()[j], m, cmap=cmap, vmin=0.0, vmax=1.0)
        mean, var = stats[r]
        name = f"ema α={ema_alpha:g}" if r == "ema" else r
        label(layout.reducer_boxes()[j], f"{name}\nmean {mean:.4f} var {var:.5f}")
    fig.text(layout.gap / w, 1 - (layout.title_height / 2) / h,
             f"{os.path.basename(str(clip))} — {saliency.id}, {len(frames)} sampled frames "
             f"({sampling})", ha="left", va="center", fontsize=8)
    save_figure(fig, out, dpi=dpi, colors=colors, facecolor=BACKGROUND)
    plt.close(fig)
    return PreviewResult(str(out), layout, saliency.id, stats)


def _colormap(name: str) -> Colormap:
    import matplotlib

    return matplotlib.colormaps[name]
