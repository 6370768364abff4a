"""Tables in and out of Python and pipes: `salmat.materialize(df)`, `-` as stdin/stdout, and
errors that name settings the way the caller passes them."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import salmat
from conftest import one_error_line, run_cli_inprocess, write_jsonl
from salmat.errors import SalmatError

pd = pytest.importorskip("pandas")

INLINE = {"workers": 1, "clip_timeout": None, "frame_samples": 2, "quiet": True, "no_cache": True}


def _frame(clip) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "src": [str(clip), "missing.mp4", str(clip)],
            "mos": [4.5, 2.0, 3.25],
            "votes": pd.array([12, None, 7], dtype="Int64"),
            "codec": pd.Categorical(["h264", "hevc", "h264"]),
            "shot": pd.to_datetime(["2024-01-02 03:04:05", "2024-02-03 00:00:00", None]).tz_localize("UTC"),
            "keep": [True, False, True],
        },
        index=pd.Index(["c1", "c2", "c3"], name="clip_id"),
    )


def test_a_dataframe_round_trips_like_the_parquet_file_path(tmp_path, disc_clip):
    df = _frame(disc_clip)
    out, report = salmat.materialize(df, **INLINE)
    assert isinstance(out, pd.DataFrame) and isinstance(report, salmat.RunReport)
    assert (report.ok, report.failed, report.clips) == (2, 1, 1)
    # The file path: the same frame through Parquet files.
    df.to_parquet(tmp_path / "in.parquet")
    salmat.materialize(tmp_path / "in.parquet", tmp_path / "out.parquet", **INLINE)
    via_file = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(out, via_file)
    # ... and the input's own columns and index come back exactly as they went in.
    pd.testing.assert_frame_equal(out[df.columns], df)
    assert list(out.columns[len(df.columns):]) == ["saliency_mean", "saliency_var", "saliency_status",
                                                   "saliency_model_id", "saliency_aggregator",
                                                   "saliency_ema_alpha", "saliency_error", "saliency_frames"]
    assert out["saliency_status"].tolist() == ["ok", "missing-source", "ok"]
    assert out.loc["c1", "saliency_mean"] == out.loc["c3", "saliency_mean"] > 0


def test_a_pyarrow_table_comes_back_a_table_with_its_types(disc_clip):
    table = pa.table({
        "src": pa.array([str(disc_clip), None], pa.large_string()),
        "codec": pa.array(["h264", "av1"]).dictionary_encode(),
        "n": pa.array([1, 2], pa.uint16()),
        "when": pa.array([1, 2], pa.timestamp("ns")),
        "secs": pa.array([1, 2], pa.timestamp("s", tz="UTC")),  # Parquet keeps these as milliseconds
        "tags": pa.array([["a"], []], pa.list_(pa.string())),
    })
    out, report = salmat.materialize(table, **INLINE)
    assert isinstance(out, pa.Table) and out.num_rows == 2 and report.ok == 1
    assert out.select(table.column_names).equals(table)  # every input type, dictionary included
    assert out.schema.field("secs").type == pa.timestamp("s", tz="UTC")
    assert out.column("saliency_status").to_pylist() == ["ok", "missing-source"]


def test_an_overwrite_of_int_saliency_columns_gives_float_columns(disc_clip):
    """An input `saliency_mean` of dtype Int64 is float64 after the run, not forced back to Int64."""
    df = pd.DataFrame({"src": [str(disc_clip)], "saliency_mean": pd.array([1], dtype="Int64"),
                       "saliency_var": pd.array([0], dtype="Int64")})
    out, report = salmat.materialize(df, overwrite=True, **INLINE)
    assert report.ok == 1 and str(out["saliency_mean"].dtype) == "float64" and 0 < out["saliency_mean"][0] < 1


def test_a_dataframe_with_an_output_path_writes_the_file(tmp_path, disc_clip):
    report = salmat.materialize(_frame(disc_clip), tmp_path / "out.csv", audit_json=tmp_path / "a.json", **INLINE)
    assert isinstance(report, salmat.RunReport) and report.output == str(tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().startswith("src,mos,votes,codec,shot,keep,clip_id")
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["input"] == "the pandas.DataFrame" and audit["output"] == str(tmp_path / "out.csv")


def test_the_audit_names_the_frame_not_a_temporary_file(disc_clip):
    _, report = salmat.materialize(_frame(disc_clip), **INLINE)
    assert report.audit["input"] == report.audit["config"]["input"] == "the pandas.DataFrame"
    assert report.audit["output"] == report.audit["config"]["output"] == report.output == "the returned pandas.DataFrame"
    assert len(report.audit["input_sha256"]) == 64


@pytest.mark.parametrize("call, message", [
    (lambda df: salmat.materialize(df, ema_alpha=2), "ema_alpha must be in (0, 1], got 2; e.g. ema_alpha=0.6"),
    (lambda df: salmat.materialize(df, temporal_aggregator="median"),
     "temporal_aggregator must be one of mean, ema, max, motion-weighted, got 'median'; "
     "e.g. temporal_aggregator='mean'"),
    (lambda df: salmat.materialize(df.rename(columns={"src": "path"}), workers=1),
     "the pandas.DataFrame has no column 'src' (columns: 'path', 'mos', 'votes', 'codec', 'shot', 'keep', "
     "'clip_id'); pass path_column=NAME"),
    (lambda df: salmat.materialize(df, format="csv"), "format sets the format of output - (stdout) only"),
    (lambda df: salmat.materialize(df.set_axis(["src", 1, "votes", "codec", "shot", "keep"], axis=1)),
     "the DataFrame's column names must be text, and 1 is a int"),
    (lambda df: salmat.materialize(df.set_axis(["src", "src", "votes", "codec", "shot", "keep"], axis=1)),
     "the DataFrame has two columns named 'src'"),
    (lambda df: salmat.materialize(df.assign(mos=[1, "two", 3.0])), "the DataFrame cannot become an Arrow table"),
    (lambda df: salmat.materialize(df.to_dict()), "input must be a table file, a folder of Parquet files, '-'"),
    (lambda df: salmat.materialize("table.jsonl"), "materialize needs output for a table file"),
    (lambda df: salmat.materialize(df, confine_to_root=True), "confine_to_root needs root"),
])
def test_python_errors_name_keywords_not_flags(disc_clip, call, message):
    with pytest.raises(SalmatError) as err:
        call(_frame(disc_clip))
    text = str(err.value)
    assert message in text and "--" not in text and "\n" not in text and "salmat-tmp" not in text


# ---- the command line: pipes and new input kinds ----------------------------------------------------------


def _cli(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "salmat", "materialize", *map(str, args)], input=stdin,
                          capture_output=True, timeout=300)


ARGS = ["--frame-samples", "2", "--no-cache"]


def test_stdin_to_stdout_carries_the_table_and_nothing_else(tmp_path, disc_clip):
    rows = [{"src": str(disc_clip), "mos": 1}, {"src": "missing.mp4", "mos": 2}, {"src": str(disc_clip), "mos": 3}]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    done = _cli(["--input", "-", "--output", "-", "--workers", "2", "--audit-json", tmp_path / "a.json", *ARGS],
                stdin=data)
    assert done.returncode == 1, done.stderr  # one row failed
    table = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["mos"] for r in table] == [1, 2, 3]
    assert [r["saliency_status"] for r in table] == ["ok", "missing-source", "ok"]
    assert done.stderr.decode().splitlines()[-1].startswith("salmat: total=3 ok=2 skipped=0 failed=1")
    audit = json.loads((tmp_path / "a.json").read_text())
    assert (audit["input"], audit["output"]) == ("-", "-")
    assert audit["input_sha256"] == hashlib.sha256(data).hexdigest()


def test_stdout_as_csv_and_stdin_sniffed_as_csv(disc_clip):
    data = f"src,mos\n{disc_clip},1.5\n".encode()
    done = _cli(["--input", "-", "--output", "-", "--format", "csv", "--workers", "1", *ARGS], stdin=data)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("src,mos,saliency_mean") and len(lines) == 2 and ",ok," in lines[1]


@pytest.mark.parametrize("stdin, args, needle", [
    (b'{"src": "a.mp4"}\n{"src": 2}\n', [], "stdin is not a valid table: line 2: column 'src'"),
    (b'{"src": "a.mp4"}\n', ["--ema-alpha", "2"], "--ema-alpha must be in (0, 1], got 2.0; e.g. --ema-alpha 0.6"),
    (b'{"path": "a.mp4"}\n', [], "stdin has no column 'src' (columns: 'path'); pass --path-column NAME"),
    (b'{"src": "a.mp4"}\n', ["--audit-json", "-"], "--audit-json and --output both name - (stdout)"),
])
def test_a_failed_pipe_writes_nothing_to_stdout(stdin, args, needle):
    done = _cli(["--input", "-", "--output", "-", "--workers", "1", *args, *ARGS], stdin=stdin)
    assert done.returncode == 2 and done.stdout == b""
    err = done.stderr.decode()
    assert needle in one_error_line(err)


def test_format_is_refused_for_a_file_output(tmp_path):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4"}])
    done = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--format", "csv")
    assert done.returncode == 2 and "--format sets the format of --output - (stdout) only" in done.stderr


def test_gzip_tsv_and_parquet_folder_through_the_cli(tmp_path, disc_clip):
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"src": ["missing.mp4"], "k": [2]}), parts / "b.parquet")
    pq.write_table(pa.table({"src": [str(disc_clip)], "k": [1]}), parts / "a.parquet")
    first = run_cli_inprocess("materialize", "--input", parts, "--output", tmp_path / "o.tsv.gz", "--workers", "1",
                              "--quiet", *ARGS)
    assert first.returncode == 1, first.stderr
    lines = gzip.decompress((tmp_path / "o.tsv.gz").read_bytes()).decode().splitlines()
    assert lines[0].split("\t")[:3] == ["src", "k", "saliency_mean"]
    assert [line.split("\t")[1] for line in lines[1:]] == ["1", "2"]  # a.parquet's row first
    # The .tsv.gz output is itself an input: its computed row is now skipped, its failed row retried.
    second = run_cli_inprocess("materialize", "--input", tmp_path / "o.tsv.gz", "--output", tmp_path / "o2.jsonl.gz",
                               "--workers", "1", "--quiet", *ARGS)
    assert second.returncode == 1 and "ok=0 skipped=1 failed=1" in second.stderr
    rows = [json.loads(line) for line in gzip.decompress((tmp_path / "o2.jsonl.gz").read_bytes()).splitlines()]
    assert [r["saliency_status"] for r in rows] == ["skipped-existing", "missing-source"]
