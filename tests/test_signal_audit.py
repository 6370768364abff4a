"""`salmat audit`: the signal audit on synthetic tables with known structure."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli_inprocess, write_jsonl
from salmat.errors import SalmatError
from salmat.signal_audit import audit_arrow, audit_table, name_role


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


# ---- which columns are features (issue #12 point 7) ---------------------------------------------


def leaky(n=120, seed=11):
    """A mos target beside columns that would predict it perfectly if they were taken as features:
    other quality scores, ids sorted by quality, a pandas index; plus real features."""
    rng = np.random.default_rng(seed)
    key = rng.normal(size=n)
    mos = 3 + key + 0.5 * rng.normal(size=n)
    order = np.argsort(np.argsort(mos))          # ids numbered by quality: a leak if used
    return pa.table({
        "Unnamed: 0": order, "video_id": order, "row_idx": order, "__index_level_0__": order,
        "src": [f"c{i}.mp4" for i in range(n)], "label": ["good" if m > 3 else "bad" for m in mos],
        "key_metric": key, "noise": rng.normal(size=n),
        "vmaf_feature_adm2_score": key + rng.normal(size=n),      # VMAF's elementary feature: a feature
        "mos": mos, "mos_std": 0.1 * mos, "dmos": 5 - mos, "predictedMOS": mos + 0.01 * rng.normal(size=n),
        "vmaf_neg": 20 * mos, "score_pct": rng.normal(size=n),
        "saliency_mean": rng.uniform(size=n), "saliency_var": rng.uniform(size=n) * 0.01,
        "saliency_ema_alpha": np.full(n, 0.6), "ref_saliency_ema_alpha": np.full(n, 0.6),
    })


REASONS = {"Unnamed: 0": "id", "video_id": "id", "row_idx": "id", "__index_level_0__": "id", "src": "id", "label": "not numeric",
           "mos": "target", "mos_std": "target-like", "dmos": "target-like", "predictedMOS": "target-like",
           "vmaf_neg": "target-like", "saliency_ema_alpha": "provenance", "ref_saliency_ema_alpha": "provenance"}


@pytest.mark.parametrize("column, role", [
    ("mos", "target-like"), ("MOS_raw_0_100", "target-like"), ("dmos_std", "target-like"), ("zmos", "target-like"),
    ("vmaf", "target-like"), ("VMAF_score", "target-like"), ("vmaf_4k", "target-like"), ("vmafneg", "target-like"),
    ("predicted_mos", "target-like"), ("score", "target-like"), ("clip_id", "id"), ("clipId", "id"), ("id", "id"),
    ("frame_index", "id"), ("frame", "id"), ("Unnamed: 0", "id"), ("row_idx", "id"), ("index", "id"),
    ("saliency_ema_alpha", "provenance"), ("ref_saliency_model_id", "provenance"),
    ("vmaf_feature_adm2_score", None), ("psnr_y", None), ("moscow", None), ("valid_ratio", None),
    ("colorfulness_index", None), ("height", None), ("bitrate_kbps", None), ("score_pct", None),
])
def test_name_roles(column, role):
    assert name_role(column) == role


def test_target_like_id_and_provenance_columns_are_never_features(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(leaky(), path)
    proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "a", "--bootstrap", "50")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1                  # mos and dmos: which one?
    assert "2 candidate targets (mos, dmos); pass --target" in proc.stderr
    proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "a", "--bootstrap", "50", "--target", "mos")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "a" / "signal_audit.json").read_text())
    cols = rep["columns"]
    assert cols["selected_by"] == "auto"
    assert cols["features"] == ["key_metric", "noise", "vmaf_feature_adm2_score", "score_pct", "saliency_mean",
                                "saliency_var"]
    assert {c["column"]: c["reason"] for c in cols["left_out"]} == REASONS
    assert sorted(f["column"] for f in rep["features"]) == sorted(cols["features"])
    assert rep["features"][0]["column"] == "key_metric"
    inc = rep["incremental"]
    assert inc["base_columns"] == ["key_metric", "noise", "vmaf_feature_adm2_score", "score_pct"]
    assert inc["without_saliency"]["srocc"] < 0.95             # no leak: a leaked score would give ≈ 1
    md = (tmp_path / "a" / "signal_audit.md").read_text()
    assert "| `dmos` | another quality target (a MOS or VMAF score) |" in md
    assert "| `video_id` | an id, key or row/frame counter |" in md
    assert "features=6 left_out=13" in proc.stderr


def test_features_and_exclude_select_columns(tmp_path):
    t = leaky()
    rep = audit_arrow(t, target="mos", features="noise,vmaf_neg", bootstrap=0).report
    assert rep["columns"] == {"selected_by": "features", "features": ["noise", "vmaf_neg", "saliency_mean",
                                                                      "saliency_var"],
                              "left_out": rep["columns"]["left_out"]}
    reasons = {c["column"]: c["reason"] for c in rep["columns"]["left_out"]}
    assert reasons["key_metric"] == "not selected" and reasons["mos"] == "target"
    assert rep["features"][0]["column"] == "vmaf_neg"          # named explicitly: a target-like column may be one
    rep = audit_arrow(t, target="mos", exclude=["key_metric", "saliency_var"], bootstrap=0).report
    assert rep["columns"]["features"] == ["noise", "vmaf_feature_adm2_score", "score_pct", "saliency_mean"]
    assert {"column": "key_metric", "reason": "excluded"} in rep["columns"]["left_out"]
    assert rep["saliency"]["columns"] == ["saliency_mean"]
    path = tmp_path / "t.parquet"
    pq.write_table(t, path)
    proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "a", "--target", "dmos", "--bootstrap",
                             "0", "--features", "key_metric", "--exclude", "saliency_mean", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "a" / "signal_audit.json").read_text())
    assert rep["target"] == "dmos" and rep["columns"]["features"] == ["key_metric", "saliency_var"]


@pytest.mark.parametrize("settings, message", [
    ({"features": "key_metric,nope"}, r"features names 'nope', not column\(s\) of <table>; its columns: Unnamed: 0"),
    ({"exclude": "Noise"}, r"exclude names 'Noise', not column"),
    ({"features": "src,label"}, r"features names non-numeric column\(s\) 'src', 'label'"),
    ({"features": "mos"}, r"'mos' is the target; leave it out of features and exclude"),
    ({"exclude": "mos"}, r"'mos' is the target; leave it out of exclude"),
    ({"features": "noise", "exclude": "noise"}, r"noise named by both features and exclude"),
    ({"saliency_columns": "saliency_mean", "exclude": "saliency_mean"}, r"by both saliency_columns and exclude"),
    ({"saliency_columns": "mos"}, r"'mos' is the target; leave it out of saliency_columns"),
    ({"group_by": "video_id", "features": "video_id"}, r"'video_id' is the key rows are averaged by"),
    ({"group_by": "mos"}, r"'mos' is the target; it can't also be group_by"),
])
def test_selection_errors_name_the_setting(settings, message):
    with pytest.raises(SalmatError, match=message):
        audit_arrow(leaky(), target="mos", bootstrap=0, **settings)


def test_selection_errors_on_the_command_line_name_flags(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(leaky(), path)
    for args, message in [(["--features", "nope"], "salmat: error: --features names 'nope'"),
                          (["--exclude", "mos"], "leave it out of --exclude"),
                          (["--features", "a", "--exclude", "a"], "a named by both --features and --exclude")]:
        proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "a", "--target", "mos", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "a").exists()


def test_grouping_by_the_target_chosen_by_auto_is_one_line_exit_2(tmp_path):
    """Averaging rows per target value made every group its own target: an audit of nothing, exit 0."""
    path = tmp_path / "t.parquet"
    pq.write_table(synthetic(n=30), path)  # target auto: vmaf
    proc = run_cli_inprocess("audit", "--input", path, "--out", tmp_path / "a", "--group-by", "vmaf")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "'vmaf' is the target; it can't also be --group-by" in proc.stderr, proc.stderr
    assert not (tmp_path / "a").exists()


def test_hostile_column_names_keep_the_markdown_rows_whole(tmp_path):
    t = leaky(n=40).append_column("a|b\nc", pa.array(np.arange(40.0) % 7))
    audit_arrow(t, target="mos", out=tmp_path / "a", bootstrap=0, plots=False, exclude=["noise"])
    md = (tmp_path / "a" / "signal_audit.md").read_text()
    assert "| a\\|b c |" in md and "| `noise` | named by --exclude |" in md
    tables: list[list[int]] = [[]]
    for line in md.splitlines():   # each table's rows have as many cells as its header
        if line.startswith("| "):
            tables[-1].append(line.count("|") - line.count("\\|"))
        elif tables[-1]:
            tables.append([])
    assert len(tables) >= 3 and all(len(set(t)) == 1 for t in tables if t), tables


def _with_provenance(table, models, reducers):
    return table.append_column("saliency_model_id", pa.array(models)).append_column(
        "saliency_aggregator", pa.array(reducers))


def test_saliency_values_of_two_configurations_are_refused(tmp_path):
    """One feature column holding two models' values is no feature: it used to be audited as one."""
    table = synthetic(n=60)
    half = ["saliency_student_v1"] * 30 + ["image_signature_v1"] * 30
    mixed = _with_provenance(table, half, ["mean"] * 60)
    with pytest.raises(SalmatError, match=r"come from 2 configurations: .*image_signature_v1/mean \(30 rows\)"):
        audit_arrow(mixed, "mixed", bootstrap=0)
    pq.write_table(mixed, tmp_path / "mixed.parquet")
    proc = run_cli_inprocess("audit", "--input", tmp_path / "mixed.parquet", "--out", tmp_path / "a", "--no-plots")
    assert proc.returncode == 2 and "filter the table on saliency_model_id" in proc.stderr
    same = _with_provenance(table, ["image_signature_v1"] * 59 + [None], ["mean"] * 60)
    report = audit_arrow(same, "same", bootstrap=0).report
    assert report["saliency"]["configurations"] == {"image_signature_v1/mean": 59, "unrecorded": 1}
