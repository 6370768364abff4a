"""Tests for salmat.tables: type-preserving, streaming, atomic table I/O."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import one_line_message, write_jsonl
from salmat import tables
from salmat.errors import SalmatError
from salmat.tables import TableReader, TableWriter, check_output_writable, detect_format, sha256_file

ROWS = [
    {
        "id": "00123", "count": 1, "score": 0.5, "ok": True,
        "text": 'a,b "quoted" ünïcødé ✓', "path": "/v/clip 1.mp4", "fps": 25.0,
    },
    {
        "id": "00042", "count": None, "score": 2.0, "ok": False,
        "text": "line\nbreak, and\ttab", "path": "C:\\v\\x.mp4", "fps": 30.0,
    },
    {"id": "7", "count": -3, "score": -1e-7, "ok": None, "text": "", "path": "rel/0001.y4m", "fps": None},
    {"id": "0", "count": 9007199254740993, "score": None, "ok": True, "text": None, "path": "a;b", "fps": 24.0},
]
TYPES = {
    "id": pa.string(),
    "count": pa.int64(),
    "score": pa.float64(),
    "ok": pa.bool_(),
    "text": pa.string(),
    "path": pa.string(),
    "fps": pa.float64(),  # whole-valued floats must stay float through CSV
}


def read_all(path: Path, batch_rows: int = 65536) -> tuple[pa.Schema, list[dict]]:
    reader = TableReader(path)
    rows: list[dict] = []
    for batch in reader.iter_batches(batch_rows):
        assert batch.schema.equals(reader.schema)
        rows.extend(batch.to_pylist())
    assert len(rows) == reader.num_rows
    return reader.schema, rows


def copy_table(src: Path, dst: Path) -> None:
    reader = TableReader(src)
    with TableWriter(dst, reader.schema) as writer:
        for batch in reader.iter_batches(batch_rows=3):
            writer.write_batch(batch)


def type_map(schema: pa.Schema) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in schema}


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.NDJSON", "jsonl"),
        ("a.json", "jsonl"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.csv", "csv"),
        ("a.tsv", "csv"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["a.txt", "a", "a.xlsx", "a.gz", "a.txt.gz"])
def test_detect_format_rejects_unknown_suffix(name: str) -> None:
    with pytest.raises(SalmatError, match="cannot tell the table format"):
        detect_format(name)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("csv_name", ["mid.csv", "mid.tsv"])
def test_round_trip_jsonl_parquet_csv_jsonl_keeps_values_and_types(tmp_path: Path, csv_name: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ROWS, ensure_ascii=False)
    schema, rows = read_all(source)
    assert type_map(schema) == TYPES
    assert rows == ROWS

    chain = [tmp_path / "mid.parquet", tmp_path / csv_name, tmp_path / "out.jsonl"]
    previous = source
    for target in chain:
        copy_table(previous, target)
        schema, rows = read_all(target)
        assert type_map(schema) == TYPES, target.name
        assert rows == ROWS, target.name
        previous = target

    # The final JSONL holds the same objects, keys in column order.
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == ROWS
    assert list(json.loads(lines[0])) == list(TYPES)


def test_parquet_types_are_kept_as_stored(tmp_path: Path) -> None:
    table = pa.table(
        {
            "small": pa.array([1, None], pa.int16()),
            "f32": pa.array([1.5, None], pa.float32()),
            "when": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("us")),
            "tags": pa.array([["a"], []], pa.list_(pa.string())),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    copy_table(tmp_path / "in.parquet", tmp_path / "out.parquet")
    reader = TableReader(tmp_path / "out.parquet")
    assert reader.schema.equals(table.schema)
    assert reader.read_columns(reader.schema.names).equals(table)


def test_csv_typing_rules(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "id,n,x,flag,big,empty,mixed,quoted_empty,neg_zero\n"
        '00123,1,1.0,true,12345678901234567890,,1,"",-0\n'
        "00124,,2,False,1,,a,2,1\n"
        '"9",3,nan,TRUE,2,"",2,,2\n',
        encoding="utf-8",
    )
    schema, rows = read_all(path)
    assert type_map(schema) == {
        "id": pa.string(),  # leading zeros: never an int
        "n": pa.int64(),  # empty cell -> null, column stays int64
        "x": pa.float64(),
        "flag": pa.bool_(),
        "big": pa.string(),  # beyond int64: kept as exact text
        "empty": pa.string(),
        "mixed": pa.string(),
        "quoted_empty": pa.int64(),  # "" in a non-string column is a missing value
        "neg_zero": pa.float64(),  # "-0" does not round-trip through int
    }
    assert [r["id"] for r in rows] == ["00123", "00124", "9"]
    assert [r["n"] for r in rows] == [1, None, 3]
    assert [r["flag"] for r in rows] == [True, False, True]
    assert rows[0]["big"] == "12345678901234567890"
    assert [r["empty"] for r in rows] == [None, None, ""]
    assert [r["quoted_empty"] for r in rows] == [None, 2, None]


def test_csv_single_column_blank_line_is_a_null_row(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    with TableWriter(path, pa.schema([("n", pa.int64())])) as writer:
        writer.write_batch(pa.record_batch({"n": [1, None, 3]}))
    schema, rows = read_all(path)
    assert type_map(schema) == {"n": pa.int64()}
    assert rows == [{"n": 1}, {"n": None}, {"n": 3}]


def test_jsonl_schema_is_inferred_over_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Scan in tiny chunks so the file spans many inference chunks.
    monkeypatch.setattr(tables.jsonl, "_JSONL_SCAN_CHUNK", 64)
    rows = [{"i": n, "v": n, "late": None, "when": "2024-01-01"} for n in range(200)]
    rows[-1].update(v=0.5, late="00123", when="not a date")
    path = write_jsonl(tmp_path / "in.jsonl", rows, ensure_ascii=False)
    reader = TableReader(path)
    assert type_map(reader.schema) == {"i": pa.int64(), "v": pa.float64(), "late": pa.string(), "when": pa.string()}
    pass1 = reader.read_columns(["late", "v"])
    assert pass1.column("late").to_pylist()[-1] == "00123"
    assert pass1.column("v").to_pylist()[:2] == [0.0, 1.0]
    _, got = read_all(path, batch_rows=7)
    assert [r["i"] for r in got] == list(range(200))
    assert got[0]["when"] == "2024-01-01"  # date-like strings stay strings


def test_jsonl_line_longer_than_default_block(tmp_path: Path) -> None:
    long_text = "x" * (3 << 20)
    path = write_jsonl(tmp_path / "long.jsonl", [{"s": "a"}, {"s": long_text}, {"s": "b"}], ensure_ascii=False)
    _, rows = read_all(path)
    assert [len(r["s"]) for r in rows] == [1, len(long_text), 1]


# --------------------------------------------------------------------------- two passes


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_iter_batches_streams_in_order_with_the_read_columns_types(tmp_path: Path, suffix: str) -> None:
    n = 1000
    rows = [{"k": i, "id": f"{i:05d}", "x": i / 4, "maybe": None if i % 3 else i} for i in range(n)]
    source = write_jsonl(tmp_path / "src.jsonl", rows, ensure_ascii=False)
    path = tmp_path / f"table{suffix}"
    if suffix == ".jsonl":
        path = source
    else:
        copy_table(source, path)
    reader = TableReader(path)
    assert reader.num_rows == n

    pass1 = reader.read_columns(["id", "x", "maybe"])
    batches = list(reader.iter_batches(batch_rows=64))
    assert [b.num_rows for b in batches] == [64] * (n // 64) + [n % 64]
    for batch in batches:
        assert batch.schema.equals(reader.schema)
    whole = pa.Table.from_batches(batches)
    assert whole.column("k").to_pylist() == list(range(n))
    for name in pass1.column_names:
        assert pass1.schema.field(name).type == whole.schema.field(name).type
        assert pass1.column(name).to_pylist() == whole.column(name).to_pylist()
    assert whole.column("id").to_pylist()[:2] == ["00000", "00001"]
    assert whole.schema.field("maybe").type == pa.int64()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_read_columns_skips_absent_names(tmp_path: Path, suffix: str) -> None:
    source = write_jsonl(tmp_path / "src.jsonl", ROWS, ensure_ascii=False)
    path = source if suffix == ".jsonl" else tmp_path / f"t{suffix}"
    if path != source:
        copy_table(source, path)
    reader = TableReader(path)
    table = reader.read_columns(["nope", "path", "id", "also_missing", "id"])
    assert table.column_names == ["path", "id"]
    assert table.column("id").to_pylist() == [r["id"] for r in ROWS]
    none = reader.read_columns(["nope"])
    assert none.num_columns == 0 and none.num_rows == len(ROWS)


def test_empty_jsonl_and_header_only_csv(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n\n")
    reader = TableReader(tmp_path / "e.jsonl")
    assert reader.num_rows == 0 and list(reader.iter_batches()) == []
    (tmp_path / "h.csv").write_text("a,b\n")
    reader = TableReader(tmp_path / "h.csv")
    assert reader.schema.names == ["a", "b"] and list(reader.iter_batches()) == []


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_exception_inside_with_leaves_previous_output_untouched(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    schema = pa.schema([("a", pa.int64())])
    with TableWriter(out, schema) as writer:
        writer.write_batch(pa.record_batch({"a": [1, 2]}))
    before = out.read_bytes()
    listing = sorted(os.listdir(tmp_path))

    with pytest.raises(RuntimeError, match="boom"):
        with TableWriter(out, schema) as writer:
            writer.write_batch(pa.record_batch({"a": [3, 4, 5]}))
            raise RuntimeError("boom")

    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == listing  # no temp file left behind


def test_exception_with_no_previous_output_creates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new.parquet"
    with pytest.raises(KeyError):
        with TableWriter(out, pa.schema([("a", pa.int64())])):
            raise KeyError("x")
    assert os.listdir(tmp_path) == []


def test_successful_write_replaces_output_with_normal_permissions(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    out.chmod(0o640)
    with TableWriter(out, pa.schema([("a", pa.int64())])) as writer:
        writer.write_batch(pa.record_batch({"a": [1]}))
    assert out.read_text() == '{"a":1}\n'
    assert out.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["out.jsonl"]
    fresh = tmp_path / "fresh.csv"
    with TableWriter(fresh, pa.schema([("a", pa.int64())])):
        pass
    mask = os.umask(0)
    os.umask(mask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~mask


def test_jsonl_writer_makes_non_json_values_portable(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    batch = pa.record_batch(
        {
            "f": pa.array([float("nan"), float("inf"), 1.25]),
            "day": pa.array([dt.date(2024, 2, 29), None, None]),
            "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None, None], pa.timestamp("us")),
            "utc": pa.array([0, None, None], pa.timestamp("s", tz="UTC")),
            "money": pa.array([decimal.Decimal("1.10"), None, None], pa.decimal128(5, 2)),
            "raw": pa.array([b"\x00\xff", None, None]),
            "wait": pa.array([1500, None, None], pa.duration("ms")),
            "nested": pa.array([[1.0, float("nan")], None, []]),
            "cat": pa.array(["x", "y", "x"]).dictionary_encode(),
        }
    )
    with TableWriter(out, batch.schema) as writer:
        writer.write_batch(batch)
    first, second, third = [json.loads(line) for line in out.read_text().splitlines()]
    assert first == {
        "f": None,
        "day": "2024-02-29",
        "ts": "2024-01-02T03:04:05.000006",
        "utc": "1970-01-01T00:00:00Z",
        "money": "1.10",
        "raw": base64.b64encode(b"\x00\xff").decode(),
        "wait": 1.5,
        "nested": [1.0, None],
        "cat": "x",
    }
    assert second["f"] is None and third["f"] == 1.25 and third["cat"] == "x"


def test_csv_writer_refuses_nested_columns(tmp_path: Path) -> None:
    schema = pa.schema([("tags", pa.list_(pa.string()))])
    with pytest.raises(SalmatError, match="CSV cannot hold"):
        TableWriter(tmp_path / "out.csv", schema)
    assert os.listdir(tmp_path) == []


def test_write_batch_rejects_other_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not match"):
        with TableWriter(tmp_path / "o.parquet", pa.schema([("a", pa.int64())])) as writer:
            writer.write_batch(pa.record_batch({"b": [1]}))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
        ('{"a": 1}\n\n{"a": "x"}\n', "line 3: column 'a' is a string here but a number on line 1"),
        ('{"a": 1}\n[1, 2]\n', "line 2 holds a JSON array, not an object"),
        ('{"a": 1, "a": 2}\n', "appears twice"),
        (b'{"a": "\xff"}\n', "line 1 is not valid UTF-8"),
        ('{"a": {"b": 1}}\n{"a": {"b": true}}\n', "column 'a.b'"),
    ],
)
def test_malformed_jsonl_raises_salmat_error_with_line(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(SalmatError, match=expected) as caught:
        TableReader(path)
    assert str(path) in str(caught.value)
    one_line_message(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("null\n", "line 1 holds a JSON null"),  # crashes pyarrow 26 if it reaches it
        ('{"a": 1}\n  null x\n', "line 2 is not valid JSON"),
        ('{"a": 1}\n{"a": 2} null\n', "line 2 is not valid JSON"),
        ('{"a": 1}{"a": 2}\n', "line 1 is not valid JSON"),
    ],
)
def test_jsonl_lines_pyarrow_would_mishandle_are_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(SalmatError, match=expected):
        TableReader(path)


def test_jsonl_lists_with_leading_nulls_read_correctly(tmp_path: Path) -> None:
    # pyarrow's inferring reader builds invalid lists here (apache/arrow#51305).
    rows = [{"a": [None, 1], "s": {"b": [None, "x"]}}, {"a": [2], "s": None}]
    path = write_jsonl(tmp_path / "lists.jsonl", rows, ensure_ascii=False)
    reader = TableReader(path)
    assert reader.schema.field("a").type == pa.list_(pa.int64())
    table = pa.Table.from_batches(list(reader.iter_batches()))
    table.validate(full=True)
    assert table.to_pylist() == rows
    assert reader.read_columns(["a"]).column("a").to_pylist() == [[None, 1], [2]]


def test_type_conflict_across_scan_chunks_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables.jsonl, "_JSONL_SCAN_CHUNK", 32)
    rows = [{"a": i} for i in range(50)] + [{"a": "x"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows, ensure_ascii=False)
    with pytest.raises(SalmatError, match="line 51: column 'a' is a string"):
        TableReader(path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.jsonl", None, "no such file"),
        ("missing.csv", None, "no such file"),
        ("missing.parquet", None, "no such file"),
        ("table.txt", "a,b\n", "cannot tell the table format"),
        ("ragged.csv", "a,b\n1,2\n3\n", "Expected 2 columns"),
        ("dup.csv", "a,a\n1,2\n", "appears twice"),
        ("bad.csv", b"a\n\xff\n", "not a valid table"),
        ("fake.parquet", "not parquet at all", "not a valid table"),
    ],
)
def test_bad_inputs_raise_salmat_error(tmp_path: Path, name: str, content: str | bytes | None, expected: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(SalmatError, match=expected) as caught:
        TableReader(path)
    one_line_message(caught.value)


def test_folder_named_like_a_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()  # a folder input is a Parquet dataset, and this one has none
    with pytest.raises(SalmatError, match="holds no .parquet file"):
        TableReader(tmp_path / "dir.jsonl")


def test_check_output_writable(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ROWS, ensure_ascii=False)
    check_output_writable(tmp_path / "out.parquet", source)
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]  # the probe leaves nothing behind
    with pytest.raises(SalmatError, match="input is never modified"):
        check_output_writable(tmp_path / "." / "in.jsonl", source)
    (tmp_path / "link.jsonl").symlink_to(source)
    with pytest.raises(SalmatError, match="input is never modified"):
        check_output_writable(tmp_path / "link.jsonl", source)
    with pytest.raises(SalmatError, match="does not exist"):
        check_output_writable(tmp_path / "no" / "out.csv")
    with pytest.raises(SalmatError, match="cannot tell the table format"):
        check_output_writable(tmp_path / "out.xls")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(SalmatError, match="is a folder"):
        check_output_writable(tmp_path / "d.csv")


def test_unwritable_output_folder_is_reported_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # Simulated, because root (as in CI containers) ignores folder permissions.
    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # salmat makes every temp file with it
    with pytest.raises(SalmatError, match="cannot write to the output folder .*permission denied"):
        check_output_writable(tmp_path / "out.csv")
    with pytest.raises(SalmatError, match="permission denied"):
        TableWriter(tmp_path / "out.csv", pa.schema([("a", pa.int64())]))


def test_writer_into_missing_folder_raises_salmat_error(tmp_path: Path) -> None:
    with pytest.raises(SalmatError, match="does not exist"):
        TableWriter(tmp_path / "no" / "out.parquet", pa.schema([("a", pa.int64())]))


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(SalmatError, match="no such file"):
        sha256_file(tmp_path / "missing.bin")


# --------------------------------------------------------------------------- fuzz


def exercise(path: Path) -> None:
    """Open, run both passes; only SalmatError may escape."""
    try:
        reader = TableReader(path)
        reader.read_columns(reader.schema.names[:2] + ["absent"])
        total = sum(b.num_rows for b in reader.iter_batches(batch_rows=3))
        assert total == reader.num_rows
    except SalmatError as error:
        one_line_message(error)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
    max_leaves=6,
)
jsonl_lines = st.one_of(
    st.dictionaries(st.sampled_from(["a", "b", "c", ""]), json_values, max_size=4).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=12),
)
csv_cells = st.one_of(
    st.sampled_from(["", '""', "0", "00123", "-0", "1.5", "nan", "true", "x", '"a,b"', "1e400", "99999999999999999999"]),
    st.text(alphabet=st.sampled_from('ab01,."\n\t-'), max_size=6),
)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=80), suffix=st.sampled_from([".jsonl", ".csv", ".tsv"]))
def test_fuzz_random_bytes_read_or_raise_salmat_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    exercise(path)


@FUZZ
@given(lines=st.lists(jsonl_lines, max_size=6))
def test_fuzz_jsonl_lines_read_or_raise_salmat_error(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    exercise(path)


@FUZZ
@given(rows=st.lists(st.lists(csv_cells, min_size=1, max_size=3), min_size=1, max_size=6))
def test_fuzz_csv_rows_read_or_raise_salmat_error(tmp_path: Path, rows: list[list[str]]) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_text("\n".join(",".join(row) for row in rows) + "\n", encoding="utf-8")
    exercise(path)
