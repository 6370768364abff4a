"""Input tables: no value is silently changed, and a table that can't be read as written is
refused with an exit code that tells the truth.

Values: duplicate column names in every format, integers beyond int64 or that float64 would
round, numbers too large for float64, one unparseable cell in a value or geometry column, an
input that changes between the two passes. Exit codes: deep JSON nesting (a pyarrow segfault, a
RecursionError), a duplicated path column (a KeyError), an input appended mid-run (a
ValueError): exit 2, one line, nothing written; any other unexpected exception: exit 3, one line.

CLI runs go through `salmat.cli.main` in this process, except where the process boundary is the
point (a segfault); every run uses one worker and rows whose outcome needs no engine where the
test allows (existing values: skipped; missing files: missing-source).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import error_exit_line, read_jsonl, run_cli_inprocess, write_jsonl
from salmat.errors import SalmatError
from salmat.tables import TableReader, TableWriter
from synthetic_clips import write_raw_yuv

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
EXISTING = {"saliency_mean": 0.25, "saliency_var": 0.01}  # a row that is skipped: no engine runs


def materialize(table: Path, out: Path, *extra: str, root: Path | None = None) -> subprocess.CompletedProcess:
    return run_cli_inprocess("materialize", "--input", table, "--output", out, "--workers", "1", "--no-cache",
                             "--quiet", "--frame-samples", "1", "--root", root or table.parent, *extra)


def refused(table: Path, tmp_path: Path, *extra: str, code: int = 2) -> str:
    """The run exits `code` (2) with one line and writes no output."""
    out = tmp_path / "out" / "o.jsonl"
    out.parent.mkdir(exist_ok=True)
    line = error_exit_line(materialize(table, out, *extra), code)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary file left either
    return line


def write_parquet(path: Path, columns: list[tuple[str, pa.Array]]) -> Path:
    pq.write_table(pa.Table.from_arrays([c for _, c in columns], names=[n for n, _ in columns]), path)
    return path


# ============================================================ values: duplicate names


@pytest.mark.parametrize("output", ["o.parquet", "o.jsonl", "o.csv"])
def test_parquet_with_two_columns_named_x_is_refused(tmp_path, output):
    """Reported: both `x` columns came out holding the second one's data, exit 0 (old: exit 0)."""
    table = write_parquet(tmp_path / "t.parquet", [
        ("src", pa.array(["a.mp4", "b.mp4"])), ("x", pa.array([1, 2])), ("x", pa.array([3, 4])),
        ("saliency_mean", pa.array([0.1, 0.2])), ("saliency_var", pa.array([0.01, 0.02])),
    ])
    out = tmp_path / output
    line = error_exit_line(materialize(table, out))
    assert "column 'x' appears twice" in line
    assert not out.exists()


@pytest.mark.parametrize(("name", "content"), [
    ("dup.csv", "src,x,x\na.mp4,1,2\n"),
    ("quoted.csv", 'src,"src"\na.mp4,b.mp4\n'),
    ("dup.jsonl", '{"src": "a.mp4", "src": "b.mp4"}\n'),
    ("escaped.jsonl", '{"src": "a.mp4", "\\u0073rc": "b.mp4"}\n'),  # the same key, spelt differently
    ("nested.jsonl", '{"src": "a.mp4", "m": {"k": 1, "k": 2}}\n'),
])
def test_duplicate_names_in_csv_and_jsonl_are_refused(tmp_path, name, content):
    """Already refused by the old code (kept as regression guards)."""
    table = tmp_path / name
    table.write_text(content, encoding="utf-8")
    line = refused(table, tmp_path)
    assert "twice" in line


def test_parquet_struct_with_two_fields_of_one_name_is_refused(tmp_path):
    """Old: a ValueError traceback writing JSONL (exit 1); Parquet out: written, exit 1."""
    struct = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["k", "k"])
    table = write_parquet(tmp_path / "t.parquet", [("src", pa.array(["a.mp4"])), ("m", struct)])
    line = refused(table, tmp_path)
    assert "column 'm' has two fields named 'k'" in line


def test_parquet_struct_column_named_src_is_a_usage_error(tmp_path):
    """A nested column where the path should be (old code: also exit 2; a guard)."""
    src = pa.StructArray.from_arrays([pa.array(["a.mp4"])], names=["src"])
    table = write_parquet(tmp_path / "t.parquet", [("src", src)])
    assert "not clip paths" in refused(table, tmp_path)


# ============================================================ values: integers and floats


def test_jsonl_integers_beyond_int64_stay_exact_as_uint64(tmp_path):
    """Reported: the column became float64 and ids were rounded, exit 0 (old: exit 0, rounded)."""
    ids = [2**63, UINT64_MAX, 0, 12345678901234567890]
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": f"{i}.mp4", "id": v, **EXISTING} for i, v in enumerate(ids)])
    assert TableReader(table).schema.field("id").type == pa.uint64()
    for output in ("o.jsonl", "o.parquet", "o.csv"):
        out = tmp_path / output
        result = materialize(table, out)
        assert result.returncode == 0, result.stderr
        if output.endswith(".jsonl"):
            assert [r["id"] for r in read_jsonl(out)] == ids
            assert all(isinstance(r["id"], int) for r in read_jsonl(out))
        elif output.endswith(".parquet"):
            assert pq.read_table(out).column("id").to_pylist() == ids
        else:  # CSV text: digits exactly (read back as text, beyond int64)
            assert [int(v) for v in TableReader(out).read_columns(["id"]).column("id").to_pylist()] == ids


def test_jsonl_int64_edges_stay_int64(tmp_path):
    """int64's own extremes were already exact (a guard)."""
    ids = [INT64_MIN, INT64_MAX, -1, 0, 2**53 + 1]
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4", "id": v, **EXISTING} for v in ids])
    assert TableReader(table).schema.field("id").type == pa.int64()
    out = tmp_path / "o.jsonl"
    assert materialize(table, out).returncode == 0
    assert [r["id"] for r in read_jsonl(out)] == ids


@pytest.mark.parametrize(("values", "expected"), [
    ([UINT64_MAX + 1], "line 2: column 'v' holds the integer 18446744073709551616, which no 64-bit integer type"),
    ([INT64_MIN - 1], "line 2: column 'v' holds the integer -9223372036854775809, which no 64-bit integer type"),
    ([-1, 2**63], "column 'v' holds the integer 9223372036854775808 (line 3), which is beyond int64, beside "
                  "negative numbers or fractions"),
    ([2**53 + 1, 0.5], "column 'v' holds the integer 9007199254740993 (line 2), which float64 can't hold exactly"),
    ([0.5, -(2**53) - 1], "the integer -9007199254740993 (line 3), which float64 can't hold exactly"),
    ([[1, 2**64]], "line 2: column 'v[]' holds the integer 18446744073709551616"),
    ([{"k": 2**63}, {"k": 0.5}], "column 'v.k' holds the integer 9223372036854775808 (line 2)"),
])
def test_jsonl_integers_no_type_holds_exactly_are_refused(tmp_path, values, expected):
    """Old: read as float64 (rounded: 2**53 + 1 → 2**53), exit 0/1 with output."""
    rows = [{"src": "a.mp4", "v": v, **EXISTING} for v in values]
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4", "pad": 1, **EXISTING}] + rows)
    line = refused(table, tmp_path)
    assert expected in line
    assert line.endswith("(in quotes)")  # the fix


@pytest.mark.parametrize(("literal", "shown"), [
    ("1e400", "the number 1e400 is too large"),  # old: exit 2 too, with pyarrow's words and a range of lines
    ("1.8e308", "the number 1.8e308 is too large"),  # old: read as inf, written as null
    ("[1, -17976931348623159e292]", "the number -17976931348623159e292 is too large"),  # old: -inf
    ("1" + "0" * 400 + ".5", "the number 10000000000000000000...00.5 (403 characters) is too large"),  # old: inf
    ("9" * 5000, "holds the integer 99999999999999999999...9999 (5000 characters), which no 64-bit"),  # old: inf
])
def test_jsonl_number_too_large_for_float64_names_its_line(tmp_path, literal, shown):
    table = tmp_path / "t.jsonl"
    table.write_text('{"src": "a.mp4", "v": 1.5}\n{"src": "b.mp4", "v": ' + literal + "}\n", encoding="utf-8")
    line = refused(table, tmp_path)
    assert f"line 2: {shown}" in line or ("line 2: column 'v' " + shown) in line
    assert len(line) < 400


def test_largest_float_round_trips_exactly(tmp_path):
    """A guard: the largest and smallest floats are not "too large"."""
    values = [1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 0.1]
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4", "v": v, **EXISTING} for v in values])
    out = tmp_path / "o.jsonl"
    assert materialize(table, out).returncode == 0
    assert [r["v"] for r in read_jsonl(out)] == values


@pytest.mark.parametrize("cells", [["9007199254740993", "0.5"], ["1e400", "0.5"], ["-9007199254740993", "1e3"]])
def test_csv_numbers_float64_would_change_keep_the_column_text(tmp_path, cells):
    """Old: float64, so 2**53 + 1 became 2**53 and 1e400 became inf (null in JSONL)."""
    table = tmp_path / "t.csv"
    table.write_text("src,saliency_mean,saliency_var,v\n" + "".join(f"a.mp4,0.25,0.01,{c}\n" for c in cells))
    assert TableReader(table).schema.field("v").type == pa.string()
    out = tmp_path / "o.jsonl"
    assert materialize(table, out).returncode == 0
    assert [r["v"] for r in read_jsonl(out)] == cells


# ============================================================ values: one bad cell


def test_one_text_cell_in_saliency_mean_only_affects_its_row(tmp_path):
    """Reported: "n/a" in saliency_mean made the whole column unreadable, so no row counted as
    existing (old: every row missing-source here, and the valid old values were dropped)."""
    table = tmp_path / "t.csv"
    table.write_text("src,saliency_mean,saliency_var\n"
                     "a.mp4,0.5,0.01\n"
                     "b.mp4,n/a,0.02\n"
                     "c.mp4,0.75,0.03\n")
    out = tmp_path / "o.jsonl"
    result = materialize(table, out)
    assert result.returncode == 1, result.stderr
    rows = read_jsonl(out)
    assert [r["saliency_status"] for r in rows] == ["skipped-existing", "missing-source", "skipped-existing"]
    assert [r["saliency_mean"] for r in rows] == [0.5, None, 0.75]
    assert [r["saliency_var"] for r in rows] == [0.01, None, 0.03]


def test_nan_or_inf_in_saliency_var_only_affects_its_row(tmp_path):
    """A NaN (or inf, or a null) is no existing value; the other rows keep theirs (already so: a guard)."""
    table = write_parquet(tmp_path / "t.parquet", [
        ("src", pa.array(["a.mp4", "b.mp4", "c.mp4", "d.mp4"])),
        ("saliency_mean", pa.array([0.5, 0.5, 0.5, 0.5])),
        ("saliency_var", pa.array([0.01, float("nan"), float("inf"), None])),
    ])
    out = tmp_path / "o.jsonl"
    assert materialize(table, out).returncode == 1
    assert [r["saliency_status"] for r in read_jsonl(out)] == ["skipped-existing"] + ["missing-source"] * 3


def test_existing_values_mask_reads_each_cell_on_its_own():
    from salmat.rows import existing_values_mask

    table = pa.table({
        "saliency_mean": pa.array(["0.5", "n/a", "", None, "1e400", "0.1", " 0.2", "nan"]),
        "saliency_var": pa.array([0.1] * 8),
    })
    assert existing_values_mask(table).tolist() == [True, False, False, False, False, True, False, False]


def test_skipped_rows_keep_their_values_whatever_the_batch_holds(tmp_path):
    """The mask (pass 1, whole column) and the kept values (pass 2, per batch) read each cell the
    same way, so a skipped row never loses its value to a bad cell elsewhere in its batch."""
    from salmat.rows import float_cells

    cells = ["0.5", "n/a", "1.", ".5", "+1", "-inf", "1e5", "x1", None, "nan(7)", "١"]
    whole = float_cells(pa.array(cells)).to_pylist()
    alone = [float_cells(pa.array([c], pa.string())).to_pylist()[0] for c in cells]
    assert [repr(v) for v in whole] == [repr(v) for v in alone]
    assert whole[:3] == [0.5, None, 1.0]


def test_one_text_cell_in_a_geometry_column_only_affects_its_row(tmp_path):
    """Reported: one text width made every row's width unreadable (old: both rows missing-geometry)."""
    clip = write_raw_yuv(tmp_path / "plain.yuv", 64, 48, frames=2)  # no WxH in the name
    table = tmp_path / "t.csv"
    table.write_text(f"src,width,height\n{clip.name},64,48\n{clip.name},n/a,48\n{clip.name},64.0,48\n")
    out = tmp_path / "o.jsonl"
    result = materialize(table, out)
    assert result.returncode == 1, result.stderr
    rows = read_jsonl(out)
    assert [r["saliency_status"] for r in rows] == ["ok", "missing-geometry", "ok"]
    assert rows[0]["width"] == "64" and rows[1]["width"] == "n/a"  # the column itself is unchanged


# ============================================================ values: the input changes mid-run


def _change_during_compute(monkeypatch, change) -> None:
    """Run `change()` after the clips are computed: between pass 1 and pass 2."""
    import salmat.pipeline as pipeline

    compute = pipeline.run_clips

    def compute_then_change(*args, **kwargs):
        results = compute(*args, **kwargs)
        time.sleep(0.05)  # past the file system's time-stamp granularity
        change()
        return results

    monkeypatch.setattr(pipeline, "run_clips", compute_then_change)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_input_rewritten_with_the_same_row_count_is_refused(tmp_path, monkeypatch, suffix):
    """Reported: rows got other rows' results, exit 0/1 (old: output written)."""
    first = [{"src": "a.mp4", "id": "one", **EXISTING}, {"src": "b.mp4", "id": "two"}]
    second = [{"src": "b.mp4", "id": "two"}, {"src": "a.mp4", "id": "one", **EXISTING}]
    table = tmp_path / f"t{suffix}"

    def write(rows):
        batch = pa.Table.from_pylist([{**{"saliency_mean": None, "saliency_var": None}, **r} for r in rows])
        with TableWriter(table, batch.schema) as writer:
            writer.write_batch(batch)

    write(first)
    out = tmp_path / "out" / "o.jsonl"
    out.parent.mkdir()
    out.write_text("the previous output\n")
    _change_during_compute(monkeypatch, lambda: write(second))
    line = error_exit_line(materialize(table, out))
    assert "changed while it was read" in line and "rerun when it is stable" in line
    assert out.read_text() == "the previous output\n"
    assert [p.name for p in out.parent.iterdir()] == ["o.jsonl"]


@pytest.mark.parametrize("change", ["append", "truncate"])
def test_input_whose_row_count_changes_mid_run_is_refused(tmp_path, monkeypatch, change):
    """Reported: appended rows gave a ValueError traceback, exit 1 (old: traceback / output written)."""
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": f"{i}.mp4", "n": i} for i in range(5)])

    def alter():
        if change == "append":
            with open(table, "a", encoding="utf-8") as f:
                f.write('{"src": "x.mp4", "n": 5}\n')
        else:
            table.write_text(table.read_text().split("\n", 1)[1])

    _change_during_compute(monkeypatch, alter)
    assert "changed while it was read" in refused(table, tmp_path)


def test_reader_notices_a_changed_file(tmp_path):
    table = write_jsonl(tmp_path / "t.jsonl", [{"a": 1}, {"a": 2}])
    reader = TableReader(table)
    reader.check_unchanged()  # nothing happened yet
    time.sleep(0.05)
    write_jsonl(table, [{"a": 2}, {"a": 1}])  # same size, same rows, other order
    with pytest.raises(SalmatError, match="changed while it was read"):
        reader.check_unchanged()
    write_jsonl(table, [{"a": 1}, {"a": 2}, {"a": 3}])
    with pytest.raises(SalmatError, match=r"changed while it was read \(more than the 2 rows"):
        list(reader.iter_batches())
    with pytest.raises(SalmatError, match="changed while it was read"):
        reader.read_columns(["a"])


def test_a_pass_refuses_a_line_nested_deeper_since_the_scan(tmp_path):
    """The scan checked the depth; a file rewritten afterwards must not reach pyarrow's parser."""
    table = write_jsonl(tmp_path / "t.jsonl", [{"a": 1, "b": "x" * 300}])
    reader = TableReader(table)
    table.write_text('{"a": 1, "b": ' + "[" * 150 + "]" * 150 + "}\n")
    with pytest.raises(SalmatError, match="changed while it was read.*levels deep"):
        list(reader.iter_batches())
    table.write_text('{"a": 1, "b": "x"}\nnull\n')  # pyarrow crashes on a line starting with null
    with pytest.raises(SalmatError, match=r"changed while it was read \(a line no longer starts with '\{'\)"):
        reader.read_columns(["a"])


# ============================================================ exit codes: deep nesting


def _deep(depth: int, kind: str = "list") -> str:
    """A JSON value nesting `depth` containers."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("depth", [100, 1000])
def test_deep_jsonl_nesting_is_refused_naming_the_line(tmp_path, depth, kind):
    """Reported: a RecursionError traceback (old: depth 1000 exit 1 traceback; depth 100 read)."""
    table = tmp_path / "t.jsonl"
    table.write_text('{"src": "a.mp4"}\n{"src": "b.mp4"}\n{"src": "c.mp4", "x": ' + _deep(depth, kind) + "}\n")
    line = refused(table, tmp_path)
    assert f"line 3 nests objects/arrays {depth + 1} levels deep (at most 64" in line


def test_nesting_at_the_limit_is_read(tmp_path):
    table = tmp_path / "t.jsonl"
    table.write_text('{"src": "a.mp4", "x": ' + _deep(63) + ', "y": "' + "[" * 500 + '"}\n')  # 64 with the row
    out = tmp_path / "o.jsonl"
    assert materialize(table, out).returncode == 1  # read; the row is missing-source
    assert read_jsonl(out)[0]["y"] == "[" * 500  # brackets inside a string are no nesting


def test_very_deep_jsonl_nesting_does_not_crash_the_process(tmp_path):
    """Reported: a segfault inside pyarrow (old: exit -11). Needs the process boundary."""
    table = tmp_path / "t.jsonl"
    table.write_text('{"src": "a.mp4", "x": ' + _deep(100_000) + "}\n")
    out = tmp_path / "o.jsonl"
    result = subprocess.run([sys.executable, "-m", "salmat", "materialize", "--input", str(table), "--output",
                             str(out), "--workers", "1", "--no-cache", "--quiet"],
                            capture_output=True, text=True, timeout=120)
    line = error_exit_line(result)
    assert "line 1 nests objects/arrays 100001 levels deep" in line
    assert not out.exists()


# ============================================================ exit codes: other failures


def test_duplicated_src_column_in_parquet_is_a_one_line_error(tmp_path):
    """Reported: a KeyError traceback, exit 1 (old: exit 1 traceback)."""
    table = write_parquet(tmp_path / "t.parquet", [("src", pa.array(["a.mp4"])), ("src", pa.array(["b.mp4"]))])
    assert "column 'src' appears twice" in refused(table, tmp_path)


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0", "1e400"])
def test_clip_timeout_that_is_not_a_finite_positive_number_is_a_usage_error(tmp_path, value):
    """Reported: `--clip-timeout inf` gave an OverflowError (old: exit 1, output written without clips)."""
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4"}])
    assert "--clip-timeout" in refused(table, tmp_path, "--clip-timeout", value)


def test_huge_finite_clip_timeout_never_tracebacks(tmp_path, disc_clip):
    """`--clip-timeout 1e10` overflowed the pool's wait (an OverflowError traceback). Whether it is
    refused up front or runs, the exit code must say what happened."""
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    out = tmp_path / "o.jsonl"
    result = materialize(table, out, "--clip-timeout", "1e10")
    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        error_exit_line(result)
        assert not out.exists()
    else:
        assert result.returncode == 0, result.stderr
        assert [r["saliency_status"] for r in read_jsonl(out)] == ["ok"]


def test_any_unexpected_exception_is_one_line_and_exit_3(tmp_path, monkeypatch):
    """The last fence in `cli.main` (old: the exception escaped main, a traceback and exit 1; then
    exit 2 like a usage error, saying "nothing was written" even after a batch published tables)."""
    import salmat.pipeline as pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(pipeline, "plan_rows", broken)
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "a.mp4"}])
    line = refused(table, tmp_path, code=3)
    assert line == ("salmat: error: internal error (RuntimeError: boom second line); the file being written when "
                    "it happened was not published (files finished before it, such as earlier tables of a batch, "
                    "are complete); please report this with the command line")


def test_column_names_with_line_breaks_stay_on_one_line(tmp_path):
    """Found by the CSV fuzz test: the missing-column message listed names holding a newline."""
    table = tmp_path / "t.csv"
    table.write_text('"a\nb",c\n1,2\n')
    assert "has no column 'src'" in refused(table, tmp_path)


# ============================================================ fuzzing the three readers

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])

edge_integers = st.sampled_from([
    0, -1, 2**53, 2**53 + 1, -(2**53) - 1, INT64_MAX, INT64_MIN, INT64_MAX + 1, INT64_MIN - 1, UINT64_MAX,
    UINT64_MAX + 1, 10**30, 12345678901234567,
])
numbers = st.one_of(edge_integers, st.integers(-(2**66), 2**66), st.floats(allow_nan=False, allow_infinity=False))


@FUZZ
@given(values=st.lists(st.one_of(numbers, st.none(), st.lists(numbers, max_size=2)), min_size=1, max_size=6))
def test_fuzz_jsonl_numbers_are_exact_or_refused(tmp_path, values):
    table = write_jsonl(tmp_path / "fuzz.jsonl", [{"v": v} for v in values])
    try:
        reader = TableReader(table)
        read = [r["v"] for b in reader.iter_batches(batch_rows=2) for r in b.to_pylist()]
    except SalmatError as error:
        assert "\n" not in str(error)
        return
    # Python compares int and float exactly: 9007199254740992.0 != 9007199254740993.
    assert read == values, reader.schema


number_literals = st.from_regex(r"\A-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?\Z")


@FUZZ
@given(literals=st.lists(number_literals, min_size=1, max_size=4))
def test_fuzz_jsonl_number_literals_are_read_as_written_or_refused(tmp_path, literals):
    """Whatever the digits and exponent: exactly Python's reading of the literal (an integer as
    that integer, a fraction as the nearest float64), or a one-line refusal."""
    table = tmp_path / "fuzz.jsonl"
    table.write_text("".join('{"v": ' + lit + "}\n" for lit in literals))
    written = [json.loads(lit) for lit in literals]
    ints = [v for v in written if isinstance(v, int)]
    has_float = len(ints) < len(written)
    no_exact_type = (
        any(not math.isfinite(v) for v in written)
        or any(not INT64_MIN <= v <= UINT64_MAX for v in ints)
        or (any(v > INT64_MAX for v in ints) and (has_float or any(v < 0 for v in ints)))
        or (has_float and any(float(v) != v for v in ints))
        # pyarrow's JSON parser refuses a zero with an exponent beyond 308 ("Number too big"):
        # an honest refusal, if a needless one.
        or any(float(lit) == 0 and "e" in lit.lower() and int(lit.lower().split("e")[1]) > 308 for lit in literals)
    )
    try:
        reader = TableReader(table)
        read = [r["v"] for b in reader.iter_batches() for r in b.to_pylist()]
    except SalmatError as error:
        assert no_exact_type, error
        assert "\n" not in str(error) and len(str(error)) < 600
        return
    assert not no_exact_type, read
    assert read == written, reader.schema


def _nest(depth: int, kinds: list[bool], leaf: str) -> str:
    text = leaf
    for i in range(depth):
        text = f'{{"k": {text}}}' if kinds[i % len(kinds)] else f"[{text}]"
    return text


string_noise = st.one_of(st.integers(0, 200).map(lambda n: "{" * n),
                         st.text(alphabet='[]{}"\\ab\n', max_size=120))  # brackets, quotes, backslashes


@FUZZ
@given(depth=st.integers(0, 140), kinds=st.lists(st.booleans(), min_size=1, max_size=4), row=st.integers(0, 3),
       leaf=st.sampled_from(["1", '"[[[{{{"', '"\\\\"', "null", "[]", "{}"]), noise=string_noise,
       before=st.booleans())
def test_fuzz_jsonl_nesting_is_read_or_refused_at_the_limit(tmp_path, depth, kinds, row, leaf, noise, before):
    """Refused exactly when the nesting (the row object counts) passes 64, whatever brackets,
    quotes and backslashes the strings on the line hold."""
    value = _nest(depth, kinds, leaf)
    total = 1 + depth + (leaf in ("[]", "{}"))  # the row object, the wrappers, an empty container leaf
    text = json.dumps(noise)
    lines = ['{"v": null, "s": ' + json.dumps("[" * 70 + noise) + "}"] * 4
    lines[row] = ("{" + f'"s": {text}, "v": {value}' + "}") if before else ("{" + f'"v": {value}, "s": {text}' + "}")
    table = tmp_path / "fuzz.jsonl"
    table.write_text("\n".join(lines) + "\n")
    try:
        reader = TableReader(table)
        rows = [r for b in reader.iter_batches() for r in b.to_pylist()]
    except SalmatError as error:
        assert total > 64, error
        assert f"line {row + 1} nests objects/arrays {total} levels deep" in str(error)
        return
    assert total <= 64
    assert len(rows) == 4 and rows[row]["s"] == noise
    assert rows[row]["v"] == json.loads(value)


json_keys = st.sampled_from(["a", "b", "\\u0061", "src"])  # "\u0061" is "a" spelt differently


@FUZZ
@given(keys=st.lists(json_keys, min_size=1, max_size=4), inner=st.lists(json_keys, max_size=3),
       where=st.integers(0, 2))
def test_fuzz_jsonl_duplicate_keys_are_always_refused(tmp_path, keys, inner, where):
    members = [f'"{k}": {i}' for i, k in enumerate(keys)]
    nested = "{" + ", ".join(f'"{k}": {i}' for i, k in enumerate(inner)) + "}"
    members.append(f'"nested": {nested}')
    lines = ['{"other": 1}'] * 3
    lines[where] = "{" + ", ".join(members) + "}"
    table = tmp_path / "fuzz.jsonl"
    table.write_text("\n".join(lines) + "\n")
    plain = [k.replace("\\u0061", "a") for k in keys]
    plain_inner = [k.replace("\\u0061", "a") for k in inner]
    duplicated = len(set(plain)) < len(plain) or len(set(plain_inner)) < len(plain_inner)
    try:
        reader = TableReader(table)
        rows = [r for b in reader.iter_batches() for r in b.to_pylist()]
    except SalmatError as error:
        assert duplicated, error
        assert "twice" in str(error) and f"line {where + 1}" in str(error)
        return
    assert not duplicated
    assert rows[where]["nested"] == {k: i for i, k in enumerate(plain_inner)} or not plain_inner


@FUZZ
@given(header=st.lists(st.sampled_from(["src", "a", "b", "A"]), min_size=1, max_size=4),
       cells=st.lists(st.one_of(numbers.map(str), st.sampled_from(["0.5", "1e400", "-1e400", "inf", "n/a", ""])),
                      min_size=1, max_size=5))
def test_fuzz_csv_duplicate_headers_and_wide_numbers(tmp_path, header, cells):
    table = tmp_path / "fuzz.csv"
    body = "".join(",".join([c] * len(header)) + "\n" for c in cells)
    table.write_text(",".join(header) + "\n" + body)
    try:
        reader = TableReader(table)
        column = [r[header[0]] for b in reader.iter_batches() for r in b.to_pylist()]
    except SalmatError as error:
        assert len(set(header)) < len(header), error
        assert "appears twice" in str(error)
        return
    assert len(set(header)) == len(header)
    for got, cell in zip(column, cells, strict=True):
        if cell == "":
            assert got is None
        elif isinstance(got, str):
            assert got == cell
        elif isinstance(got, float) and cell.lstrip("-").isdigit():
            assert got == int(cell)  # an integer read as float64 must be exact (exact comparison)
        elif isinstance(got, float):
            assert got == float(cell) and (math.isfinite(got) or cell.lower().lstrip("-") == "inf")
        else:
            assert got == int(cell)


parquet_ints = st.one_of(
    st.tuples(st.just(pa.int64()), st.lists(st.one_of(st.none(), st.integers(INT64_MIN, INT64_MAX)), max_size=4)),
    st.tuples(st.just(pa.uint64()), st.lists(st.one_of(st.none(), st.integers(0, UINT64_MAX)), max_size=4)),
)


@FUZZ
@given(names=st.lists(st.sampled_from(["src", "x", "y"]), min_size=1, max_size=3), ints=parquet_ints,
       field_names=st.lists(st.sampled_from(["p", "q"]), min_size=1, max_size=2),
       out_suffix=st.sampled_from([".jsonl", ".parquet", ".csv"]))
def test_fuzz_parquet_names_and_integer_edges(tmp_path, names, ints, field_names, out_suffix):
    int_type, values = ints
    n = len(values)
    struct = pa.StructArray.from_arrays([pa.array(values, int_type) for _ in field_names], names=field_names)
    columns = [(name, pa.array(values, int_type)) for name in names] + [("s", struct)]
    table = write_parquet(tmp_path / "fuzz.parquet", columns)
    duplicated = len(set(names)) < len(names) or len(set(field_names)) < len(field_names)
    try:
        reader = TableReader(table)
    except SalmatError as error:
        assert duplicated, error
        assert "twice" in str(error) or "two fields" in str(error)
        return
    assert not duplicated
    if out_suffix == ".csv":  # CSV can't hold the struct column
        reader_columns = reader.read_columns(names)
        copy = tmp_path / "copy.csv"
        with TableWriter(copy, reader_columns.schema) as writer:
            writer.write_batch(reader_columns)
        got = [None if v is None else int(v) for v in TableReader(copy).read_columns([names[0]]).column(0).to_pylist()]
        assert got == values or n == 0
        return
    copy = tmp_path / f"copy{out_suffix}"
    with TableWriter(copy, reader.schema) as writer:
        for batch in reader.iter_batches(batch_rows=2):
            writer.write_batch(batch)
    back = TableReader(copy)
    assert back.num_rows == n
    if n:
        assert back.read_columns([names[0]]).column(0).to_pylist() == values
        assert back.read_columns(["s"]).column(0).to_pylist() == [dict.fromkeys(field_names, v) for v in values]


@FUZZ
@given(cells=st.lists(st.one_of(st.none(), st.text(max_size=8), st.from_regex(r"\A[+-]?[0-9]{0,3}\.?[0-9]{0,3}"
                                                                                r"([eE][+-]?[0-9]{1,3})?\Z"),
                                st.sampled_from(["inf", "-Infinity", "NaN", "nan(1)", "n/a", "1e400"])),
                      max_size=8))
def test_fuzz_float_cells_reads_each_cell_as_arrow_would_alone(cells):
    """`float_cells` prefilters with a pattern that must accept all Arrow parses, and its answer for
    a cell can't depend on the other cells of its batch."""
    from salmat.rows import _NUMBER_TEXT, float_cells

    whole = float_cells(pa.array(cells, pa.string())).to_pylist()
    for cell, got in zip(cells, whole, strict=True):
        try:
            alone = pc.cast(pa.array([cell], pa.string()), pa.float64()).to_pylist()[0]
        except pa.ArrowInvalid:
            alone = None
        assert repr(got) == repr(alone), cell
        if alone is not None:
            assert pc.match_substring_regex(pa.array([cell]), _NUMBER_TEXT).to_pylist() == [True], cell
