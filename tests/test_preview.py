"""`salmat preview`: the contact sheet's size and panels are what its layout says."""

from __future__ import annotations

import numpy as np
import pytest

import salmat
from conftest import run_cli_inprocess
from salmat.decode import SamplingOptions, decode_sampled
from salmat.errors import SalmatError
from salmat.preview import BACKGROUND, preview, sheet_layout
from salmat.sources import ClipSpec
from salmat.temporal import REDUCERS

mpimg = pytest.importorskip("matplotlib.image")


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
