"""`salmat audit`: the signal audit on synthetic tables with known structure."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli_inprocess, write_jsonl
from salmat.errors import SalmatError
from salmat.signal_audit import audit_arrow, audit_table


def synthetic(n=240, seed=7, informative_saliency=False):
    rng = np.random.default_rng(seed)
    cols = {f"feat_{c}": rng.normal(size=n) for c in "abcd"}
    cols["key_metric"] = rng.normal(size=n)
    cols["key_metric_copy"] = cols["key_metric"] * 2.0 + rng.normal(size=n) * 0.01   # redundant with it
    sal = rng.uniform(0.1, 0.6, size=n)
    vmaf = 60 + 10 * cols["key_metric"] + 4 * rng.normal(size=n)
    if informative_saliency:
        vmaf = vmaf + 40 * (sal - sal.mean())
    cols["saliency_mean"] = sal
    cols["saliency_var"] = rng.uniform(0.0, 0.02, size=n)
    cols["saliency_ema_alpha"] = np.full(n, 0.6)
    cols["vmaf"] = vmaf
    cols["clip_id"] = [f"c{i:04d}" for i in range(n)]
    return pa.table(cols)


def test_known_feature_ranks_first_and_unrelated_saliency_adds_nothing(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(synthetic(), path)
    result = audit_table(str(path), str(tmp_path / "audit"))
    rep = result.report
    assert rep["target"] == "vmaf"                                          # auto-detected
    assert result.ranking[0] in ("key_metric", "key_metric_copy")
    assert set(result.ranking[:2]) == {"key_metric", "key_metric_copy"}
    assert "saliency_ema_alpha" not in result.ranking                       # provenance, not a feature
    first = rep["features"][0]
    assert first["spearman"] > 0.8 and first["finite_ratio"] == 1.0 and first["std"] > 0
    assert {"a": "key_metric", "b": "key_metric_copy"} in [{"a": p["a"], "b": p["b"]} for p in rep["redundant_pairs"]]
    assert rep["saliency"]["status"] == "weak"
    inc = result.incremental
    assert inc["status"] == "done" and inc["n"] == 240
    assert inc["saliency_columns"] == ["saliency_mean", "saliency_var"]
    assert abs(inc["delta"]["srocc"]) < 0.02
    low, high = inc["ci95"]["srocc"]
    assert low <= 0 <= high
    assert inc["without_saliency"]["srocc"] > 0.8
    written = json.loads((tmp_path / "audit" / "signal_audit.json").read_text())
    assert written["schema"] == "salmat.signal-audit/v1"
    md = (tmp_path / "audit" / "signal_audit.md").read_text()
    assert "| 1 | key_metric" in md and "Saliency family: **weak**" in md
    assert (tmp_path / "audit" / "signal_audit.png").read_bytes()[:4] == b"\x89PNG"
    assert written["plot"] == "signal_audit.png" and "signal_audit.png" in md


def test_informative_saliency_is_covered_and_adds_value():
    result = audit_arrow(synthetic(informative_saliency=True), bootstrap=300)
    assert result.report["saliency"]["status"] == "covered"
    inc = result.incremental
    assert inc["delta"]["srocc"] > 0.03
    assert inc["ci95"]["srocc"][0] > 0


def test_missing_saliency_family():
    t = synthetic().drop(["saliency_mean", "saliency_var"])
    rep = audit_arrow(t, bootstrap=50).report
    assert rep["saliency"]["status"] == "missing"
    assert rep["incremental"]["status"] == "skipped"


def test_mostly_nonfinite_saliency_is_weak():
    t = synthetic(informative_saliency=True)
    sal = t.column("saliency_mean").to_numpy().copy()
    sal[: int(len(sal) * 0.8)] = np.nan
    var = t.column("saliency_var").to_numpy().copy()
    var[: int(len(var) * 0.8)] = np.nan
    t = t.set_column(t.schema.get_field_index("saliency_mean"), "saliency_mean", pa.array(sal))
    t = t.set_column(t.schema.get_field_index("saliency_var"), "saliency_var", pa.array(var))
    rep = audit_arrow(t, bootstrap=50).report
    assert rep["saliency"]["status"] == "weak" and "non-finite" in rep["saliency"]["reason"]


def test_complementary_pairs():
    rng = np.random.default_rng(3)
    n = 300
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    t = pa.table({"x1": x1, "x2": x2, "noise": rng.normal(size=n), "mos": x1 + x2 + 0.3 * rng.normal(size=n)})
    rep = audit_arrow(t, bootstrap=0).report
    assert [(p["a"], p["b"]) for p in rep["complementary_pairs"]] == [("x1", "x2")]


def test_per_frame_table_is_reduced_to_one_row_per_clip(tmp_path):
    clips = synthetic(n=60)
    rows = []
    for r in clips.to_pylist():
        for f in range(10):   # frames vary around the clip value; the target is per frame too
            rows.append({"dis_basename": r["clip_id"], "frame_index": f, "key_metric": r["key_metric"] + 0.01 * f,
                         "feat_a": r["feat_a"], "saliency_mean": r["saliency_mean"], "saliency_var": r["saliency_var"],
                         "vmaf": r["vmaf"] + (f - 4.5) * 0.1})
    path = write_jsonl(tmp_path / "frames.jsonl", rows)
    proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "a", "--bootstrap", "100")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "a" / "signal_audit.json").read_text())
    assert rep["rows"] == 60 and rep["rows_in_table"] == 600                 # frames don't inflate n
    assert rep["grouping"]["key"] == "dis_basename" and rep["grouping"]["frame_column"] == "frame_index"
    assert "frame_index" not in [f["column"] for f in rep["features"]]
    assert rep["features"][0]["column"] == "key_metric"
    assert rep["incremental"]["n"] == 60
    assert "n=60" in proc.stderr


def test_group_by_and_target_errors(tmp_path):
    t = synthetic(n=30)
    assert audit_arrow(t, group_by="clip_id", bootstrap=0).report["rows"] == 30
    with pytest.raises(SalmatError, match="no target column"):
        audit_arrow(t.drop(["vmaf"]))
    with pytest.raises(SalmatError, match="nope"):
        audit_arrow(t, target="nope")
    path = write_jsonl(tmp_path / "t.jsonl", [{"a": 1.0, "b": 2.0}] * 5)
    proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "--target" in proc.stderr
