"""`salmat preview`: the contact sheet's size and panels are what its layout says."""

from __future__ import annotations

import numpy as np
import pytest

import salmat
from conftest import read_jsonl, run_cli_inprocess, write_jsonl
from salmat.command_options import PreviewOptions
from salmat.decode import SamplingOptions, decode_sampled
from salmat.errors import SalmatError
from salmat.options import MaterializeOptions
from salmat.plots import save_figure
from salmat.preview import BACKGROUND, COLORMAP, preview, sheet_layout
from salmat.sources import ClipSpec
from salmat.temporal import REDUCERS
from synthetic_clips import write_raw_yuv

mpimg = pytest.importorskip("matplotlib.image")
matplotlib = pytest.importorskip("matplotlib")


def read_png(path) -> np.ndarray:
    return mpimg.imread(str(path))[..., :3]


def is_background(region: np.ndarray) -> bool:
    return bool(np.all(np.abs(region - np.array(BACKGROUND)) < 2.5 / 255))  # palette PNG: near-exact


@pytest.mark.parametrize("samples", [3, 5])
def test_png_has_the_layout_size_and_one_panel_per_sampled_frame(disc_clip, tmp_path, samples):
    out = tmp_path / f"sheet{samples}.png"
    result = preview(str(disc_clip), str(out), frame_samples=samples, panel_width=120)
    lay = result.layout
    decoded = decode_sampled(ClipSpec(str(disc_clip)), SamplingOptions("clip", samples))
    assert lay.frames == len(decoded) == samples
    assert lay.panels == 2 * samples + len(REDUCERS)
    assert lay.columns == max(samples, len(REDUCERS))
    assert lay.panel_height == round(120 * 180 / 320)
    img = read_png(out)
    assert img.shape[:2] == (lay.height, lay.width)
    # Each frame panel and each overlay panel is drawn; the column after the last frame is empty.
    for boxes in (lay.frame_boxes(), lay.overlay_boxes()):
        assert len(boxes) == samples
        for x0, y0, x1, y1 in boxes:
            assert not is_background(img[y0 + 2:y1 - 2, x0 + 2:x1 - 2])
    if lay.columns > samples:
        x0, y0, x1, y1 = lay.box(0, samples)
        assert is_background(img[y0:y1, x0:x1])
    for x0, y0, x1, y1 in lay.reducer_boxes():
        assert not is_background(img[y0 + 2:y1 - 2, x0 + 2:x1 - 2])
    # Gaps between panels are background: the panels are separate.
    x0, y0, x1, y1 = lay.frame_boxes()[0]
    assert is_background(img[y0:y1, x1 + 1:x1 + lay.gap - 1])


def test_stats_are_materialize_values(disc_clip, tmp_path):
    result = preview(str(disc_clip), str(tmp_path / "s.png"), model="spectral_residual_v1", frame_samples=3)
    import json

    from conftest import write_jsonl

    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    for reducer in ("mean", "max"):
        rep = salmat.materialize(table, tmp_path / f"{reducer}.jsonl", model="spectral_residual_v1", frame_samples=3,
                                 temporal_aggregator=reducer, workers=1, no_cache=True, quiet=True)
        row = json.loads((tmp_path / f"{reducer}.jsonl").read_text().splitlines()[0])
        assert rep.ok == 1
        assert result.stats[reducer] == (row["saliency_mean"], row["saliency_var"])


def test_cli_and_errors(disc_clip, tmp_path):
    out = tmp_path / "cli.png"
    proc = run_cli_inprocess("preview", disc_clip, "--frame-samples", "2", "--panel-width", "64", "--out", out)
    assert proc.returncode == 0, proc.stderr
    lay = sheet_layout(2, 320, 180, REDUCERS, 64)
    assert f"size={lay.width}x{lay.height}" in proc.stderr
    assert read_png(out).shape[:2] == (lay.height, lay.width)
    with pytest.raises(SalmatError, match="no such file"):
        preview(str(tmp_path / "nope.mp4"), str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


# ---- the values, frames and picture are the truth (issue #12 point 7) ----------------------------


def printed_stats(stdout: str) -> dict[str, tuple[float, float]]:
    """`reducer saliency_mean=M saliency_var=V` lines, as `salmat preview` prints them."""
    stats = {}
    for line in stdout.splitlines():
        reducer, mean, var = line.split()
        stats[reducer] = (float(mean.removeprefix("saliency_mean=")), float(var.removeprefix("saliency_var=")))
    return stats


def test_defaults_sample_what_materialize_samples():
    for name in ("frame_samples", "sampling", "max_frames", "ema_alpha", "max_pixels"):
        assert getattr(PreviewOptions(clip="c.mp4"), name) == getattr(MaterializeOptions(input="t", output="o"), name)


def test_printed_values_are_the_table_values(disc_clip, tmp_path):
    """Preview with its defaults prints, per reducer, exactly what materialize writes for the clip."""
    proc = run_cli_inprocess("preview", disc_clip, "--out", tmp_path / "s.png")
    assert proc.returncode == 0, proc.stderr
    printed = printed_stats(proc.stdout)
    assert list(printed) == list(REDUCERS)
    assert "frames=8 indices=0,3,7,10,13,16,20,23 " in proc.stderr          # materialize's 8 over the whole clip
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    cache = tmp_path / "cache.sqlite"   # the first run stores every reducer; the others read them
    for reducer in REDUCERS:
        out = tmp_path / f"{reducer}.jsonl"
        run = run_cli_inprocess("materialize", "--input", table, "--output", out, "--temporal-aggregator", reducer,
                                "--workers", "1", "--cache", cache, "--quiet")
        assert run.returncode == 0, run.stderr
        row = read_jsonl(out)[0]
        assert (row["saliency_mean"], row["saliency_var"]) == printed[reducer], reducer


def best_match(frame, candidates) -> int:
    diffs = [np.abs(frame.y.astype(np.int32) - c.y).mean() for c in candidates]
    return int(np.argmin(diffs))


@pytest.mark.parametrize("sampling, samples", [("clip", 8), ("clip", 5), ("head", 3)])
def test_frame_indices_are_the_sampled_frames(disc_clip, tmp_path, sampling, samples):
    """Each labelled index is the frame shown: the sampled frame matches that frame of the clip best."""
    result = preview(str(disc_clip), str(tmp_path / "s.png"), frame_samples=samples, sampling=sampling, colors=0)
    every = decode_sampled(ClipSpec(str(disc_clip)), SamplingOptions("clip", 24))
    shown = decode_sampled(ClipSpec(str(disc_clip)), SamplingOptions(sampling, samples))
    assert result.indices == [best_match(f, every) for f in shown]
    expected = {"clip": {8: [0, 3, 7, 10, 13, 16, 20, 23], 5: [0, 6, 12, 17, 23]}, "head": {3: [0, 2, 4]}}
    assert result.indices == expected[sampling][samples]


def test_raw_clip_indices(tmp_path):
    raw = write_raw_yuv(tmp_path / "disc_64x48_.yuv", 64, 48, frames=10)
    result = preview(str(raw), str(tmp_path / "s.png"), frame_samples=4, panel_width=32)
    every = decode_sampled(ClipSpec(str(raw), True, 64, 48), SamplingOptions("clip", 10))
    shown = decode_sampled(ClipSpec(str(raw), True, 64, 48), SamplingOptions("clip", 4))
    assert result.indices == [0, 3, 6, 9] == [best_match(f, every) for f in shown]


def test_colour_bar_and_frame_labels_are_drawn(disc_clip, tmp_path):
    result = preview(str(disc_clip), str(tmp_path / "s.png"), frame_samples=4, colors=0)
    lay = result.layout
    img = read_png(tmp_path / "s.png")
    x0, y0, x1, y1 = lay.colorbar_box()
    assert x1 <= lay.width and (y0, y1) == (lay.box(1, 0)[1], lay.box(2, 0)[3])
    column = img[y0 + 2:y1 - 2, (x0 + x1) // 2]
    cmap = matplotlib.colormaps[COLORMAP]
    assert np.abs(column[0] - np.array(cmap(1.0)[:3])).max() < 0.05      # the top is the map's 1 ...
    assert np.abs(column[-1] - np.array(cmap(0.0)[:3])).max() < 0.05     # ... the bottom its 0
    luminance = column.mean(axis=1)
    assert np.all(np.diff(luminance) <= 0.02)                              # darker all the way down
    assert not is_background(img[y1 - 4:y1, x1 + 1:lay.width])             # tick labels beside it
    for x0, _, x1, y1 in lay.frame_boxes():                                 # each frame's index under it
        assert not is_background(img[y1 + 4:y1 + lay.label_height - 4, x0:x1])


def test_colour_bar_ticks_stand_clear_of_their_labels_and_its_name(disc_clip, tmp_path):
    """The bar's name stood rotated beside it, running into the middle tick label; tick marks touched
    their labels (a "0.5" read as "-0.5")."""
    result = preview(str(disc_clip), str(tmp_path / "s.png"), frame_samples=4, colors=0)
    lay = result.layout
    img = read_png(tmp_path / "s.png")
    x0, y0, x1, y1 = lay.colorbar_box()
    assert not is_background(img[y0 - 20:y0 - 6, x0 - 12:lay.width])     # the name, above the bar
    assert is_background(img[y0 + 8:y1 - 8, x1 + 26:lay.width])          # nothing beyond the tick labels
    middle = img[(y0 + y1) // 2 - 6:(y0 + y1) // 2 + 6, x1:lay.width]    # the 0.5 tick and its label
    inked = [not is_background(middle[:, x]) for x in range(middle.shape[1])]
    mark = inked.index(True)
    gap = inked.index(False, mark)
    label = inked.index(True, gap)
    assert mark <= 1 and label - gap >= 2                                 # a clear gap between mark and label


def test_eight_frames_fit_the_default_sheet(disc_clip, tmp_path):
    result = preview(str(disc_clip), str(tmp_path / "s.png"))
    assert result.layout.frames == 8 and result.layout.columns == 8
    assert read_png(tmp_path / "s.png").shape[:2] == (result.layout.height, result.layout.width)
    assert result.layout.width <= 1320       # about the width six 200-px panels took before


@pytest.mark.parametrize("name, magic", [("s.jpg", b"\xff\xd8\xff"), ("s.JPEG", b"\xff\xd8\xff"),
                                         ("s.png", b"\x89PNG\r\n\x1a\n")])
def test_out_suffix_picks_the_format(disc_clip, tmp_path, name, magic):
    from PIL import Image

    proc = run_cli_inprocess("preview", disc_clip, "--frame-samples", "2", "--panel-width", "48",
                             "--out", tmp_path / name)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / name).read_bytes()[:len(magic)] == magic
    lay = sheet_layout(2, 320, 180, REDUCERS, 48)
    with Image.open(tmp_path / name) as image:
        assert image.size == (lay.width, lay.height) and image.format == ("PNG" if magic[1:4] == b"PNG" else "JPEG")


@pytest.mark.parametrize("name", ["s.gif", "s", "s.png.txt", "s.jpg "])
def test_other_suffixes_are_refused_before_any_work(tmp_path, name):
    """Refused by its name alone: the clip doesn't even exist, and that is not what is reported."""
    proc = run_cli_inprocess("preview", tmp_path / "missing.mp4", "--out", tmp_path / name)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--out must be a file name ending in .png, .jpg, .jpeg" in proc.stderr
    assert "missing.mp4" not in proc.stderr and not (tmp_path / name).exists()
    with pytest.raises(SalmatError, match="^out must be"):
        preview(str(tmp_path / "missing.mp4"), str(tmp_path / name))


def test_a_bad_picture_name_is_refused_by_save_figure_too(tmp_path):
    with pytest.raises(SalmatError, match="must end in .png, .jpg, .jpeg"):
        save_figure(None, tmp_path / "x.bmp")
