"""`salmat audit` knows the feature families (issue #19 point 6) and audits several prefixed
saliency sets, each per model (issue #21 point 7): synthetic tables with a known effect."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli_inprocess
from salmat.errors import SalmatError
from salmat.signal_audit import audit_arrow, name_role
from salmat.signal_audit.columns import family_of
from salmat.signal_audit.families import counterpart

ROI_COLUMNS = ["sw_psnr_y", "sw_ssim_y", "roi_psnr_y", "roi_ssim_y", "bg_psnr_y", "bg_ssim_y", "saliency_shift_cc"]


def fr_table(n=240, seed=5, roi_matters=True, prefix=""):
    """A full-reference table as `materialize --reference-column` writes it. `roi_extra` is how much
    better or worse the salient region is than the frame's average; the target depends on it only
    when `roi_matters`, so only then may ROI weighting add anything over plain PSNR/SSIM."""
    rng = np.random.default_rng(seed)
    psnr = rng.normal(36, 3, n)
    ssim = 0.93 + 0.01 * (psnr - 36) + rng.normal(0, 0.004, n)
    roi_extra = rng.normal(0, 2, n)
    mos = 3 + 0.25 * (psnr - 36) + (0.4 * roi_extra if roi_matters else 0) + rng.normal(0, 0.25, n)
    cols = {
        "dis": [f"d{i:03d}.mp4" for i in range(n)], "bitrate_kbps": rng.normal(2000, 300, n),
        f"{prefix}psnr_y": psnr, f"{prefix}ssim_y": ssim,
        f"{prefix}sw_psnr_y": psnr + 0.8 * roi_extra + rng.normal(0, 0.3, n),
        f"{prefix}sw_ssim_y": ssim + 0.004 * roi_extra + rng.normal(0, 0.001, n),
        f"{prefix}roi_psnr_y": psnr + roi_extra, f"{prefix}roi_ssim_y": ssim + 0.005 * roi_extra,
        f"{prefix}bg_psnr_y": psnr - 0.25 * roi_extra, f"{prefix}bg_ssim_y": ssim - 0.001 * roi_extra,
        f"{prefix}saliency_shift_cc": rng.uniform(0.8, 1.0, n),
        f"{prefix}saliency_mean": rng.uniform(0.1, 0.5, n), f"{prefix}saliency_var": rng.uniform(0, 0.02, n),
        f"{prefix}saliency_model_id": ["saliency_student_v1"] * n, f"{prefix}saliency_aggregator": ["mean"] * n,
        f"{prefix}roi_config": ["weights=ref;fraction=0.2;pooling=mean"] * n,
        f"{prefix}saliency_frames": ["clip:8"] * n,
        "mos": mos,
    }
    return pa.table(cols)


@pytest.mark.parametrize("column, found", [
    ("psnr_y", ("plain_fr", "")), ("v1_ssim_y", ("plain_fr", "v1_")), ("sw_psnr_y", ("roi", "")),
    ("v2_bg_ssim_y", ("roi", "v2_")), ("saliency_shift_cc", ("roi", "")), ("ref_saliency_mean", ("saliency", "ref_")),
    ("v1_saliency_var", ("saliency", "v1_")), ("saliency_model_id", None), ("bitrate_kbps", None),
])
def test_family_of_a_column_name(column, found):
    assert family_of(column) == found


def test_a_roi_column_is_compared_with_its_plain_counterpart():
    assert counterpart("v1_sw_ssim_y", ["psnr_y", "v1_ssim_y", "ssim_y"]) == "v1_ssim_y"
    assert counterpart("roi_psnr_y", ["v1_psnr_y"]) == "v1_psnr_y"
    assert counterpart("saliency_shift_cc", ["psnr_y"]) is None and counterpart("psnr_y", ["psnr_y"]) is None


@pytest.mark.parametrize("prefix", ["", "v1_", "ref_"])
def test_a_family_column_is_never_taken_for_an_id_a_target_or_provenance(prefix):
    assert [c for c in ["psnr_y", "ssim_y", *ROI_COLUMNS, "saliency_mean", "saliency_var"]
            if name_role(prefix + c) is not None] == []


@pytest.mark.parametrize("column", ["roi_config", "v1_roi_config", "saliency_frames", "ref_saliency_frames"])
def test_roi_and_sampling_provenance_are_never_features(column):
    assert name_role(column) == "provenance"


def test_roi_weighting_that_carries_signal_shows_a_gain_over_plain_fr(tmp_path):
    path = tmp_path / "fr.parquet"
    pq.write_table(fr_table(roi_matters=True), path)
    proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "a", "--bootstrap", "300", "--target", "mos")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "a" / "signal_audit.json").read_text())
    fams = rep["families"]
    assert fams["plain_fr"]["columns"] == ["psnr_y", "ssim_y"]
    assert fams["roi"]["columns"] == ROI_COLUMNS
    assert fams["saliency"]["columns"] == ["saliency_mean", "saliency_var"]
    assert fams["baseline"]["columns"] == ["bitrate_kbps"]
    assert {c["column"]: c["reason"] for c in rep["columns"]["left_out"]}["roi_config"] == "provenance"
    roi = rep["roi"]
    assert roi["gain"]["base_columns"] == ["bitrate_kbps", "psnr_y", "ssim_y"]
    assert roi["gain"]["added_columns"] == ROI_COLUMNS
    assert roi["gain"]["delta"]["srocc"] > 0.05 and roi["gain"]["ci95"]["srocc"][0] > 0
    assert roi["verdict"].startswith("ROI weighting adds predictive value over plain PSNR/SSIM")
    versus = {v["column"]: v for v in roi["versus_plain"]}
    assert versus["roi_psnr_y"]["plain"] == "psnr_y" and versus["roi_psnr_y"]["abs_spearman_gain"] > 0
    assert versus["sw_ssim_y"]["plain"] == "ssim_y" and "saliency_shift_cc" not in versus
    md = (tmp_path / "a" / "signal_audit.md").read_text()
    assert "## What ROI weighting adds over plain PSNR/SSIM" in md and "Verdict: ROI weighting adds" in md
    assert "| ROI-weighted | `sw_psnr_y`, " in md and "| plain full-reference | `psnr_y`, `ssim_y` |" in md
    assert f"roi_delta_srocc={roi['gain']['delta']['srocc']}" in proc.stderr
    assert "families=baseline:1,plain_fr:2,roi:7,saliency:2" in proc.stderr
    assert (tmp_path / "a" / "signal_audit.png").read_bytes()[:4] == b"\x89PNG"


def test_roi_columns_that_only_restate_psnr_show_no_gain():
    rep = audit_arrow(fr_table(roi_matters=False), target="mos", bootstrap=300).report
    gain = rep["roi"]["gain"]
    assert gain["status"] == "done" and abs(gain["delta"]["srocc"]) < 0.02
    assert gain["ci95"]["srocc"][0] <= 0 and rep["roi"]["verdict"].startswith("no clear gain over plain PSNR/SSIM")


def test_every_gain_of_a_report_uses_the_same_folds():
    rep = audit_arrow(fr_table(), target="mos", bootstrap=50).report
    inc, (one,) = rep["incremental"], rep["sets"]
    # one set: the saliency set's base (baseline + plain + its ROI) is the incremental's base (every other feature)
    assert one["saliency_gain"]["base_columns"] == inc["base_columns"]
    assert one["saliency_gain"]["without"] == inc["without_saliency"]
    assert one["saliency_gain"]["with"] == inc["with_saliency"] and one["saliency_gain"]["ci95"] == inc["ci95"]
    assert one["roi_gain"] == rep["roi"]["gain"]
    assert one["prefix"] == "" and one["model_id"] == "saliency_student_v1"
    assert one["model_column"] == "saliency_model_id"


def test_missing_roi_or_plain_columns_are_said():
    t = fr_table().drop(ROI_COLUMNS)
    rep = audit_arrow(t, target="mos", bootstrap=0).report
    assert rep["roi"]["status"] == "missing" and "--reference-column" in rep["roi"]["reason"]
    assert rep["sets"][0]["roi_gain"] is None and rep["families"]["roi"]["columns"] == []
    rep = audit_arrow(fr_table().drop(["psnr_y", "ssim_y"]), target="mos", bootstrap=100).report
    assert rep["roi"]["gain"]["base_columns"] == ["bitrate_kbps"] and rep["roi"]["plain_columns"] == []
    assert "over the baseline (the table has no plain psnr_y/ssim_y)" in rep["roi"]["verdict"]


def two_models(n=200, seed=9):
    """v1_ and v2_ saliency sets from two models; the target depends on v2's saliency_mean only,
    and `ref_saliency_mean` (the reference clip's) tracks the target too."""
    rng = np.random.default_rng(seed)
    key = rng.normal(size=n)
    v2 = rng.uniform(0.1, 0.6, n)
    mos = 3 + key + 4 * (v2 - v2.mean()) + rng.normal(0, 0.3, n)
    cols: dict[str, object] = {"clip_id": [f"c{i}" for i in range(n)], "key_metric": key}
    for prefix, mean, model in (("v1_", rng.uniform(0.1, 0.6, n), "saliency_student_v1"),
                                ("v2_", v2, "saliency_student_v2")):
        cols |= {f"{prefix}saliency_mean": mean, f"{prefix}saliency_var": rng.uniform(0, 0.02, n),
                 f"{prefix}saliency_model_id": [model] * n, f"{prefix}saliency_aggregator": ["mean"] * n}
    cols["ref_saliency_mean"] = mos + rng.normal(0, 0.5, n)
    cols["mos"] = mos
    return pa.table(cols)


def test_each_prefixed_set_is_audited_per_model():
    rep = audit_arrow(two_models(), bootstrap=300).report
    sets = {s["prefix"]: s for s in rep["sets"]}
    assert list(sets) == ["v1_", "v2_", "ref_"]
    assert sets["v1_"]["model_id"] == "saliency_student_v1" and sets["v2_"]["model_id"] == "saliency_student_v2"
    assert sets["v1_"]["configurations"] == {"saliency_student_v1/mean": 200}
    assert sets["ref_"]["model_id"] is None and sets["ref_"]["model_column"] is None
    assert sets["v2_"]["saliency_gain"]["ci95"]["srocc"][0] > 0                        # v2 carries the signal
    v1 = sets["v1_"]["saliency_gain"]
    assert v1["ci95"]["srocc"][0] <= 0 and v1["delta"]["srocc"] < 0.02 and not v1["adds"]     # v1 is noise
    # each set is measured against the baseline alone: no other model's columns in its base
    assert sets["v1_"]["saliency_gain"]["base_columns"] == ["key_metric"]
    inc = rep["incremental"]
    assert inc["base_columns"] == ["key_metric"]          # prefixed saliency columns are never baseline features
    assert "ref_saliency_mean" in inc["saliency_columns"] and rep["families"]["baseline"]["columns"] == ["key_metric"]
    assert rep["saliency"]["configurations"] == {"saliency_student_v1/mean": 200, "saliency_student_v2/mean": 200}


def test_saliency_prefixes_pick_the_sets_and_leave_the_others_out(tmp_path):
    path = tmp_path / "two.parquet"
    pq.write_table(two_models(), path)
    proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "a", "--saliency-prefixes", "v1_,v2_",
                             "--bootstrap", "100", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "a" / "signal_audit.json").read_text())
    assert [s["prefix"] for s in rep["sets"]] == ["v1_", "v2_"]
    left = {c["column"]: c["reason"] for c in rep["columns"]["left_out"]}
    assert left["ref_saliency_mean"] == "other set" and left["v1_saliency_model_id"] == "provenance"
    assert "ref_saliency_mean" not in rep["columns"]["features"]
    assert "sets=v1_=saliency_student_v1,v2_=saliency_student_v2" in proc.stderr
    md = (tmp_path / "a" / "signal_audit.md").read_text()
    assert "| `v2_` | `saliency_student_v2` | covered |" in md
    assert "| `ref_saliency_mean` | a saliency or ROI column of a set not audited" in md


@pytest.mark.parametrize("settings, message", [
    ({"saliency_prefixes": "v3_"}, r"no numeric v3_saliency_mean, v3_saliency_var or v3_sw_psnr_y \(…\) column; "
                                   r"its saliency prefixes: v1_, v2_, ref_; pass saliency_prefixes P,P"),
    ({"saliency_prefixes": "none"}, r"no numeric saliency_mean"),
    ({"saliency_prefixes": "v1_", "features": "key_metric,v2_saliency_mean"},
     r"features names saliency or ROI column\(s\) 'v2_saliency_mean' of a set not audited"),
    ({"saliency_prefixes": "v1_", "saliency_columns": "v2_saliency_mean"}, r"both choose the saliency columns"),
])
def test_saliency_set_errors_name_the_setting(settings, message):
    with pytest.raises(SalmatError, match=message):
        audit_arrow(two_models(n=40), bootstrap=0, **settings)


def test_unprefixed_set_is_named_none_and_one_set_holding_two_models_is_still_refused(tmp_path):
    t = fr_table(n=60)
    rep = audit_arrow(t, target="mos", saliency_prefixes="none", bootstrap=0).report
    assert [s["prefix"] for s in rep["sets"]] == [""]
    mixed = t.set_column(t.schema.get_field_index("saliency_model_id"), "saliency_model_id",
                         pa.array(["saliency_student_v1"] * 30 + ["saliency_student_v2"] * 30))
    pq.write_table(mixed, tmp_path / "mixed.parquet")
    proc = run_cli_inprocess("audit", "--input", tmp_path / "mixed.parquet", "--out", tmp_path / "a", "--target",
                             "mos", "--saliency-prefixes", "none", "--no-plots")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "come from 2 configurations" in proc.stderr and "filter the table on saliency_model_id" in proc.stderr


def test_the_summary_stays_one_line_whatever_the_tables_names_hold(tmp_path):
    t = two_models(n=60)
    t = t.rename_columns([c.replace("v1_", "v\n1_") for c in t.column_names])
    t = t.set_column(t.schema.get_field_index("v2_saliency_model_id"), "v2_saliency_model_id", pa.array(["m\r\nx"] * 60))
    pq.write_table(t, tmp_path / "odd.parquet")
    proc = run_cli_inprocess("audit", "--input", tmp_path / "odd.parquet", "--out", tmp_path / "a", "--bootstrap", "0",
                             "--no-plots")
    assert proc.returncode == 0 and proc.stderr.count("\n") == 1, proc.stderr
    assert "sets=v\\n1_=saliency_student_v1,v2_=m\\r\\nx,ref_=unrecorded" in proc.stderr
