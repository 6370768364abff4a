"""Table I/O beyond plain files: gzip, TSV, a folder of Parquet files, stdin and stdout."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import one_line_message, run_cli_inprocess
from salmat import outputs
from salmat.errors import SalmatError
from salmat.outputs import preflight
from salmat.tables import TableReader, TableWriter, _sniff_suffix, describe_input, detect_format

TABLE = pa.table({"src": ["a.mp4", "b, c.mp4", None], "n": [1, -2, 3], "x": [0.5, 1.0, None],
                  "ok": [True, False, None]})


def _written(path: Path, table: pa.Table = TABLE, stream_format: str | None = None) -> Path:
    with TableWriter(path, table.schema, stream_format) as writer:
        writer.write_batch(table)
    return path


def _read(path: str | Path) -> pa.Table:
    reader = TableReader(path)
    return pa.Table.from_batches(list(reader.iter_batches()), schema=reader.schema)


# ---- gzip and TSV ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fmt", [("t.jsonl.gz", "jsonl"), ("t.CSV.GZ", "csv"), ("t.tsv.gz", "csv"),
                                       ("t.ndjson.gz", "jsonl"), ("t.tsv", "csv")])
def test_compressed_and_tab_separated_tables_round_trip(tmp_path, name, fmt):
    path = _written(tmp_path / name)
    assert detect_format(path) == fmt
    assert _read(path).equals(TABLE)
    raw = gzip.decompress(path.read_bytes()) if name.lower().endswith(".gz") else path.read_bytes()
    lines = raw.split(b"\n")
    if ".tsv" in name:  # tabs, and the comma inside a path is a plain value
        assert lines[:3] == [b"src\tn\tx\tok", b"a.mp4\t1\t0.5\ttrue", b"b, c.mp4\t-2\t1.0\tfalse"]
    elif fmt == "csv":
        assert lines[:3] == [b"src,n,x,ok", b"a.mp4,1,0.5,true", b'"b, c.mp4",-2,1.0,false']


def test_csv_numbers_are_bare_and_strings_quoted_only_where_needed(tmp_path):
    table = pa.table({"s": ["plain", "", None, 'say "hi"', "two\nlines", "0.25", "a\tb"],
                      "x": [0.2704, 1.0, None, float("nan"), -3e-9, 1e300, 2.5],
                      "n": pa.array([1, None, 3, 4, 5, 6, 7], pa.int64())})
    csv, tsv = _written(tmp_path / "t.csv", table), _written(tmp_path / "t.tsv", table)
    assert csv.read_bytes().split(b"\n")[:4] == [b"s,x,n", b"plain,0.2704,1", b'"",1.0,', b",,3"]
    assert b'"say ""hi""",nan,4\n"two\nlines",-3e-9,5\n0.25,1e+300,6\na\tb,2.5,7\n' in csv.read_bytes()
    assert tsv.read_bytes().endswith(b'\n"a\tb"\t2.5\t7\n')  # the delimiter is what needs quotes
    for path in (csv, tsv):  # "" and null stay apart; 1.0 stays a float; "0.25" comes back as the text it was
        back = _read(path)
        assert back.column("s").to_pylist()[:5] == ["plain", "", None, 'say "hi"', "two\nlines"]
        assert back.schema.field("x").type == pa.float64() and back.column("x").to_pylist()[:2] == [0.2704, 1.0]
        assert back.column("n").to_pylist() == [1, None, 3, 4, 5, 6, 7]


def test_gzip_output_is_the_same_bytes_every_time(tmp_path):
    """No time stamp or temp-file name in the gzip header: reruns compare equal byte for byte."""
    first = _written(tmp_path / "a.jsonl.gz").read_bytes()
    second = _written(tmp_path / "b.jsonl.gz").read_bytes()
    assert first == second
    assert b".salmat-tmp" not in first


@pytest.mark.parametrize("name", ["t.jsonl.gz", "t.csv.gz"])
def test_damaged_gzip_is_a_one_line_error(tmp_path, name):
    good = _written(tmp_path / name, pa.table({"src": [f"clip{i}.mp4" for i in range(5000)]})).read_bytes()
    cut = tmp_path / ("cut-" + name)
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(SalmatError) as err:
        _read(cut)
    assert one_line_message(err.value).startswith(f"{cut} is not a valid table")
    fake = tmp_path / ("fake-" + name)
    fake.write_bytes(b'{"src": "plain text, not gzip"}\n')
    with pytest.raises(SalmatError, match="is not a valid table"):
        _read(fake)


def test_parquet_is_not_gzipped(tmp_path):
    with pytest.raises(SalmatError, match="Parquet compresses its own data"):
        detect_format(tmp_path / "t.parquet.gz")
    with pytest.raises(SalmatError, match="Parquet compresses its own data"):
        TableWriter(tmp_path / "t.parquet.gz", TABLE.schema)


# ---- a folder of Parquet files --------------------------------------------------------------------


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "parts"
    folder.mkdir()
    # Written out of order: the table is read in name order, not creation order.
    pq.write_table(pa.table({"src": ["c"], "n": [3]}), folder / "part-2.parquet")
    pq.write_table(pa.table({"src": ["a", "b"], "n": [1, 2]}), folder / "part-0.parquet")
    pq.write_table(pa.table({"src": pa.array([], pa.string()), "n": pa.array([], pa.int64())}), folder / "part-1.pq")
    (folder / "_SUCCESS").write_text("")  # what Spark leaves; skipped like hidden files
    (folder / ".part-0.parquet.crc").write_text("x")
    return folder


def test_a_folder_of_parquet_files_is_one_table_in_name_order(tmp_path):
    folder = _folder(tmp_path)
    reader = TableReader(folder)
    assert reader.format == "parquet" and reader.num_rows == 3
    assert reader.read_columns(["src"]).column("src").to_pylist() == ["a", "b", "c"]
    assert [b.num_rows for b in reader.iter_batches(batch_rows=2)] == [2, 1]
    reader.check_unchanged()


@pytest.mark.parametrize("change", ["add", "rewrite", "remove"])
def test_a_changed_folder_is_noticed(tmp_path, change):
    folder = _folder(tmp_path)
    reader = TableReader(folder)
    before = describe_input(folder)["input_sha256"]
    if change == "add":
        pq.write_table(pa.table({"src": ["d"], "n": [4]}), folder / "part-3.parquet")
    elif change == "rewrite":
        pq.write_table(pa.table({"src": ["z"], "n": [9]}), folder / "part-2.parquet")
        os.utime(folder / "part-2.parquet", ns=(1, 1))  # even with an old time stamp: size/ctime/inode show it
    else:
        (folder / "part-2.parquet").unlink()
    with pytest.raises(SalmatError, match="changed while it was read"):
        reader.check_unchanged()
    assert describe_input(folder)["input_sha256"] != before


@pytest.mark.parametrize("extra, needle", [
    ("notes.txt", "holds 'notes.txt', which is no .parquet file"),
    ("sub/", "which is no regular file"),
    ("other.parquet", "has the columns"),
])
def test_a_folder_with_anything_else_is_refused(tmp_path, extra, needle):
    folder = _folder(tmp_path)
    if extra.endswith("/"):
        (folder / extra).mkdir()
    elif extra.endswith(".parquet"):
        pq.write_table(pa.table({"src": ["x"], "n": [1.5]}), folder / extra)  # n is float64 here
    else:
        (folder / extra).write_text("not a table")
    with pytest.raises(SalmatError) as err:
        TableReader(folder)
    assert needle in one_line_message(err.value)


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(SalmatError, match="holds no .parquet file"):
        TableReader(tmp_path)


def test_no_output_inside_an_input_folder(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(SalmatError, match=r"output .*/parts/o.parquet is inside the input .*parts, a folder"):
        preflight({"--output": folder / "o.parquet"}, {"the input": folder})
    preflight({"--output": tmp_path / "o.parquet"}, {"the input": folder})


# ---- stdin ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head, suffix", [
    (b"PAR1\x15\x04", ".parquet"),
    (b'\n  {"src": "a"}\n', ".jsonl"),
    (b"", ".jsonl"),
    (b"src,n\na,1\n", ".csv"),
    (b"src\tn\na,b\t1\n", ".tsv"),
    (b"src\tn,m\n", ".csv"),  # a comma in the header: CSV, whose cell holds a tab
    (gzip.compress(b'{"src": "a"}\n', mtime=0), ".jsonl.gz"),
    (gzip.compress(b"src,n\n", mtime=0), ".csv.gz"),
])
def test_stdin_is_sniffed(head, suffix):
    assert _sniff_suffix(head) == suffix


class _Stdin(io.TextIOWrapper):
    def __init__(self, data: bytes, tty: bool = False) -> None:
        super().__init__(io.BytesIO(data))
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("name", ["t.jsonl", "t.csv", "t.tsv", "t.parquet", "t.jsonl.gz"])
def test_stdin_is_read_whole_once_in_each_format(tmp_path, monkeypatch, name):
    data = (_written(tmp_path / name) if name != "t.parquet" else _parquet(tmp_path / name)).read_bytes()
    monkeypatch.setattr(sys, "stdin", _Stdin(data))
    reader = TableReader("-")
    assert reader.label == "stdin" and _read("-").equals(TABLE)  # a second reader reads the same copy
    assert describe_input("-")["input"] == "-"
    copy = reader.path
    assert copy.read_bytes() == data and copy != Path("-")
    reader.check_unchanged()


def _parquet(path: Path) -> Path:
    pq.write_table(TABLE, path)
    return path


def test_stdin_errors_name_stdin_not_the_private_copy(monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Stdin(b'{"src": "a"}\n{"src": 1}\n'))
    with pytest.raises(SalmatError) as err:
        TableReader("-")
    message = one_line_message(err.value)
    assert message.startswith("stdin is not a valid table: line 2: column 'src'") and "salmat-tmp" not in message


def test_an_empty_stdin_says_so(monkeypatch):
    """It used to say "stdin has no column 'src' (columns: none); pass --path-column NAME"."""
    monkeypatch.setattr(sys, "stdin", _Stdin(b""))
    with pytest.raises(SalmatError, match="stdin is empty: pipe a table in"):
        TableReader("-")


def test_a_terminal_is_no_table(monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Stdin(b"", tty=True))
    with pytest.raises(SalmatError, match="stdin is a terminal: pipe a table in"):
        TableReader("-")


# ---- stdout -----------------------------------------------------------------------------------------


def test_stdout_gets_the_table_only_when_it_is_whole(capfdbinary):
    with TableWriter("-", TABLE.schema, "csv") as writer:
        writer.write_batch(TABLE)
        assert capfdbinary.readouterr().out == b""  # nothing before the writer closes
    assert capfdbinary.readouterr().out.startswith(b'src,n,x,ok\na.mp4,1,0.5,true\n')  # numbers bare
    with pytest.raises(RuntimeError), TableWriter("-", TABLE.schema) as writer:
        writer.write_batch(TABLE)
        raise RuntimeError("the run failed midway")
    assert capfdbinary.readouterr().out == b""
    leftovers = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(outputs.temp_prefix())]
    assert not [n for n in leftovers if n.endswith("-stdout")]


def test_parquet_is_not_streamed_to_stdout():
    with pytest.raises(SalmatError, match="Parquet is not streamed to stdout"):
        TableWriter("-", TABLE.schema, "parquet")


def test_only_one_output_may_be_stdout(tmp_path):
    with pytest.raises(SalmatError, match="audit_json and output both name - "):
        preflight({"--output": "-", "--audit-json": "-"})
    preflight({"--output": "-", "--audit-json": tmp_path / "a.json"}, {"the input": "-"})


RESERVED = """
import os, subprocess, sys
from salmat.outputs import AtomicFile, stdout_reserved
with stdout_reserved():
    print("a library's notice", flush=True)
    os.write(1, b"a C library's notice\\n")
    subprocess.run([sys.executable, "-c", "print('a worker process')"], check=True)
    with AtomicFile("-") as file:
        file.write(b"the table\\n")
print("after", flush=True)
"""


def test_while_reserved_only_the_output_reaches_stdout():
    """In a process of its own: the reservation moves the process's file descriptor 1."""
    done = subprocess.run([sys.executable, "-c", RESERVED], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"the table\nafter\n"
    assert done.stderr == b"a library's notice\na C library's notice\na worker process\n"


# ---- a file whose bytes are another format than its name says ---------------------------------


@pytest.mark.parametrize("name, content, message", [
    ("g.csv", gzip.compress(b"src,mos\na.mp4,3\n", mtime=0), "is gzip-compressed but its name doesn't end in .gz"),
    ("j.csv", b'{"src": "a.mp4"}\n', "holds JSON lines, not CSV; name it .jsonl"),
    ("j.tsv", b'{"src": "a.mp4"}\n', "holds JSON lines, not TSV; name it .jsonl"),
    ("p.jsonl", None, "is a Parquet file; name it .parquet"),
])
def test_a_misnamed_table_is_refused_with_the_name_it_needs(tmp_path, name, content, message):
    """It used to read as CSV and say "has no column 'src' (columns: none); pass --path-column"."""
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"src": ["a.mp4"]}), path)
    else:
        path.write_bytes(content)
    proc = run_cli_inprocess("materialize", "--input", path, "--output", tmp_path / "o.jsonl")
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "o.jsonl").exists()
