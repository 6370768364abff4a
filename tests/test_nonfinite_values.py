"""A user's NaN and infinities (issue #20, point 4): kept where the output format holds them
(Parquet, CSV), and where it can't (JSON) written as null with one warning that counts them."""

from __future__ import annotations

import json
import math
import shutil

import pyarrow.parquet as pq
import pytest

from conftest import run_cli_inprocess
from salmat.tables import TableReader

JSONL_ROWS = ('{"src":"disc.mp4","x":Infinity,"y":1.5}\n'
              '{"src":"disc.mp4","x":-Infinity,"y":NaN}\n'
              '{"src":"disc.mp4","x":2.5,"y":3.0}\n')
CSV_ROWS = "src,x,y\ndisc.mp4,inf,nan\ndisc.mp4,-inf,1.5\ndisc.mp4,Infinity,-INF\n"
EXPECTED = {"jsonl": {"x": [math.inf, -math.inf, 2.5], "y": [1.5, math.nan, 3.0]},
            "csv": {"x": [math.inf, -math.inf, math.inf], "y": [math.nan, 1.5, -math.inf]}}


@pytest.fixture()
def folder(tmp_path, disc_clip):
    shutil.copy(disc_clip, tmp_path / "disc.mp4")
    (tmp_path / "in.jsonl").write_text(JSONL_ROWS, encoding="utf-8")
    (tmp_path / "in.csv").write_text(CSV_ROWS, encoding="utf-8")
    return tmp_path


def materialize(folder, source: str, output: str):
    proc = run_cli_inprocess("materialize", "--input", folder / source, "--output", output,
                             "--root", folder, "--frame-samples", "1", "--no-cache", "--quiet", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return proc


def same(got: list, want: list) -> bool:
    return all((math.isnan(a) and math.isnan(b)) if isinstance(a, float) and math.isnan(b) else a == b
               for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("source", ["jsonl", "csv"])
@pytest.mark.parametrize("output", ["o.parquet", "o.csv", "o.tsv.gz"])
def test_formats_that_hold_non_finite_numbers_keep_them(folder, source, output):
    proc = materialize(folder, f"in.{source}", output)
    assert "warning" not in proc.stderr
    table = TableReader(str(folder / output)).read_columns(["x", "y"])  # read back as salmat reads it
    for column, want in EXPECTED[source].items():
        assert same(table.column(column).to_pylist(), want), (column, table.column(column).to_pylist())
    if output == "o.parquet":
        assert pq.read_schema(folder / output).field("x").type == "double"


@pytest.mark.parametrize("source", ["jsonl", "csv"])
def test_json_output_nulls_them_and_says_how_many(folder, source):
    proc = materialize(folder, f"in.{source}", "o.jsonl")
    rows = [json.loads(line) for line in (folder / "o.jsonl").read_text().splitlines()]  # strict JSON: no NaN
    want = EXPECTED[source]
    for column in ("x", "y"):
        assert [r[column] for r in rows] == [v if math.isfinite(v) else None for v in want[column]]
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, proc.stderr
    if source == "jsonl":
        assert "3 such value(s) were written as null (column 'x': 1 -Infinity, 1 Infinity; column 'y': 1 NaN)" \
            in warnings[0]
    else:
        assert ("5 such value(s) were written as null (column 'x': 1 -Infinity, 2 Infinity; "
                "column 'y': 1 -Infinity, 1 NaN)") in warnings[0]
    assert "write .parquet or .csv to keep them" in warnings[0]


def test_nested_values_are_counted_too(folder):
    (folder / "nested.jsonl").write_text('{"src":"disc.mp4","v":[1.0,NaN],"s":{"a":Infinity}}\n'
                                         '{"src":"disc.mp4","v":[Infinity,-Infinity],"s":{"a":0.5}}\n',
                                         encoding="utf-8")
    proc = materialize(folder, "nested.jsonl", "o.jsonl")
    rows = [json.loads(line) for line in (folder / "o.jsonl").read_text().splitlines()]
    assert [(r["v"], r["s"]) for r in rows] == [([1.0, None], {"a": None}), ([None, None], {"a": 0.5})]
    assert ("4 such value(s) were written as null (column 'v': 1 -Infinity, 1 Infinity, 1 NaN; "
            "column 's': 1 Infinity)") in proc.stderr
    kept = materialize(folder, "nested.jsonl", "o.parquet")
    assert "warning" not in kept.stderr
    assert pq.read_table(folder / "o.parquet").column("v").to_pylist()[1] == [math.inf, -math.inf]


def test_json_to_stdout_warns_on_stderr_and_keeps_stdout_a_table(folder):
    proc = run_cli_inprocess("materialize", "--input", folder / "in.csv", "--output", "-", "--root", folder,
                             "--frame-samples", "1", "--no-cache", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["x"] for line in proc.stdout.splitlines()] == [None, None, None]
    assert "stdout: JSON has no NaN or Infinity, so 5 such value(s)" in proc.stderr


def test_finite_tables_get_no_warning(folder):
    (folder / "fine.jsonl").write_text('{"src":"disc.mp4","x":1.5,"y":null}\n', encoding="utf-8")
    assert "warning" not in materialize(folder, "fine.jsonl", "o.jsonl").stderr
