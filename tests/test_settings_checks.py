"""Settings checked before any work: an output column never lands on an input column of another
kind (nor on a saved DataFrame index), a setting of the wrong type or encoding is a one-line
error, and an audit that can't reach a full stdout says the table was written."""

from __future__ import annotations

import subprocess
import sys

import pytest

import salmat
from conftest import error_exit_line, read_jsonl, run_cli_inprocess, write_jsonl
from salmat.errors import SalmatError


def _table(tmp_path, clip_folder, **extra):
    return write_jsonl(tmp_path / "t.jsonl", [{"src": str(clip_folder / "disc.mp4"), "mos": 3.5, **extra}])


@pytest.mark.parametrize("flags, column", [
    (["--status-column", "mos"], "mos"),                                # the target would read "ok"
    (["--column-prefix", "m", "--model-id-column", "os"], "mos"),
    (["--column-prefix", "saliency_", "--status-column", "mean"], "saliency_mean"),  # an earlier run's values
])
def test_an_output_column_never_lands_on_an_input_column_of_another_kind(tmp_path, clip_folder, flags, column):
    table = _table(tmp_path, clip_folder, saliency_mean=0.25, saliency_var=0.01)
    line = error_exit_line(run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", *flags))
    assert f"already has a column {column!r}" in line and "choose another name" in line
    assert not (tmp_path / "o.jsonl").exists()


def test_an_earlier_runs_columns_and_text_values_may_still_be_rewritten(tmp_path, clip_folder):
    """Landing on a column of its own kind is how reruns work (and "n/a" text in a value column)."""
    table = _table(tmp_path, clip_folder, saliency_mean="n/a", saliency_status="skipped-existing")
    report = salmat.materialize(table, tmp_path / "o.jsonl", workers=1, frame_samples=2, quiet=True)
    assert report.counts == {"ok": 1}
    assert read_jsonl(tmp_path / "o.jsonl")[0]["mos"] == 3.5


@pytest.mark.parametrize("index_names", [["saliency_mean"], ["saliency_status"], ["a", "saliency_var"]])
def test_a_dataframe_index_named_like_an_output_column_is_refused(clip_folder, index_names):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"src": [str(clip_folder / "disc.mp4")] * 2, "n": [1, 2], "k": ["p", "q"]})
    frame = frame.set_index(["n", "k"][: len(index_names)])
    frame.index.names = index_names
    with pytest.raises(SalmatError, match="saved pandas index.*rename the index"):
        salmat.materialize(frame, workers=1, frame_samples=2, quiet=True)


def test_a_parquet_file_with_an_index_named_like_an_output_column_is_refused(tmp_path, clip_folder):
    """The same landing, through a `df.to_parquet` file on the command line (it came back "ok")."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"src": [str(clip_folder / "disc.mp4")] * 2}, index=pd.Index(["p", "q"],
                                                                                  name="saliency_status"))
    frame.to_parquet(tmp_path / "t.parquet")
    proc = run_cli_inprocess("materialize", "--input", tmp_path / "t.parquet", "--output", tmp_path / "o.parquet")
    assert "saved pandas index" in error_exit_line(proc) and not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("settings, message", [
    ({"column_prefix": 5}, "column_prefix must be text, got 5"),
    ({"status_column": b"x"}, "status_column must be text"),
    ({"model_id": "a\nb", "model_path": "x.onnx"}, "model_id 'a\\\\nb' holds a control character"),
])
def test_python_settings_of_the_wrong_kind_are_one_line_errors(tmp_path, clip_folder, settings, message):
    with pytest.raises(SalmatError, match=message):
        salmat.materialize(_table(tmp_path, clip_folder), tmp_path / "o.jsonl", **settings)


def test_a_non_utf8_column_name_from_the_command_line_is_a_usage_error(tmp_path, clip_folder):
    table = _table(tmp_path, clip_folder)
    proc = subprocess.run([sys.executable, "-m", "salmat", "materialize", "--input", str(table), "--output",
                           str(tmp_path / "o.jsonl"), "--column-prefix", b"\x85".decode("utf-8", "surrogateescape")],
                          capture_output=True, timeout=120)
    assert proc.returncode == 2
    assert b"--column-prefix must be valid UTF-8 text" in proc.stderr and b"Traceback" not in proc.stderr


def test_an_audit_that_cannot_reach_stdout_says_the_table_was_written(tmp_path, clip_folder):
    """It said "internal error …; nothing was written" after the table had been published."""
    out = tmp_path / "o.jsonl"
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "salmat", "materialize", "--input",
                               str(_table(tmp_path, clip_folder)), "--output", str(out), "--audit-json", "-",
                               "--workers", "1", "--frame-samples", "2", "--quiet"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot write --audit-json -" in proc.stderr and f"the output table {out} was written" in proc.stderr
    assert read_jsonl(out)[0]["saliency_status"] == "ok"
