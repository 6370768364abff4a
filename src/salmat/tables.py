"""Feature-table I/O: read JSONL, Parquet and CSV tables in a stream, write them back atomically.

Formats come from the file suffix (`detect_format`):

* ``.jsonl``, ``.ndjson``, ``.json`` -> JSONL: exactly one JSON object per line, UTF-8 (a
  pretty-printed JSON document, a top-level array, a bare ``null`` line or two values on one
  line are rejected). Blank lines are skipped.
* ``.parquet``, ``.pq`` -> Parquet.
* ``.csv`` -> comma-separated, ``.tsv`` -> tab-separated, both with a header row.

Reading (`TableReader`) decides one schema for the whole file before any row is handed out;
`read_columns` (pass 1) and `iter_batches` (pass 2) both conform to it, so both passes see
identical column types. Column types follow these rules:

* Parquet: types exactly as stored.
* JSONL: types are inferred over the *whole* file (not just its first block): JSON integers
  -> int64, or uint64 for a column whose integers are all >= 0 and some beyond int64 (up to
  2**64 - 1); any JSON fraction in a column -> float64 for the whole column, true/false -> bool,
  strings -> string (``"00123"`` stays the string ``"00123"``; date-like strings also stay
  strings), objects -> struct, arrays -> list. ``null`` is a missing value, so an int column
  with nulls stays int64. A column that is null on every row becomes string. A column that
  holds two JSON types (say numbers on one line, strings on another), an invalid JSON line, a
  line that is not an object, a repeated key or invalid UTF-8 is an error naming the line.
  No number is silently changed, so these are errors too: an integer no 64-bit type holds
  (below -2**63 or above 2**64 - 1), a number too large for float64 (``1e400``), and a column
  whose integers can't all be held exactly by one type (one beyond int64 beside a negative
  number or a fraction; one float64 can't hold exactly, such as 2**53 + 1, beside a fraction).
  Store such values as strings. A line that nests objects and arrays more than 64 levels deep
  (the row object counts as one) is refused before it is parsed.
* CSV/TSV: every cell is first read as text, then each column gets one type from all of its
  non-empty cells over the whole file, first rule that fits:
  int64 if every value round-trips exactly through int (``str(int(v)) == v``, so ``"00123"``,
  ``"+5"``, ``" 7"`` and ``"-0"`` do not) and fits in 64 bits; bool if every value is
  true/false (also True/False, TRUE/FALSE); float64 if every value is a plain decimal number
  (``-12``, ``0.5``, ``1e+20``; no leading zeros, no ``+``) or nan/inf/-inf; otherwise string.
  Integer-looking text too large for int64 keeps the whole column string, so long ids are not
  rounded; so does an integer float64 can't hold exactly (2**53 + 1) in a column that would
  otherwise be float64, and a number too large for float64 (``1e400``, not ``inf``). An
  unquoted empty cell is null; a quoted empty cell (``""``) is an empty string in a string
  column and null in any other. A column with no non-empty cell is string. Paths,
  codes with leading zeros and dates therefore stay strings. In a one-column file a blank
  line is a row with a null value; with more columns blank lines are skipped.

An empty file (JSONL with no objects, CSV without even a header) reads as a table with no
columns and no rows; a CSV with only a header has its columns (typed string) and no rows.

Column names must be unique in every format (Parquet too), and so must the field names of
each struct column: two columns called ``x`` are an error, not one column read twice.

The file may not change while it is read: each pass checks that it still holds `num_rows`
rows, and `TableReader.check_unchanged` compares its size, modification and change times,
inode and device with those it had when it was opened (call it before publishing anything
built from it). A JSONL line read in a pass is held to the scan's nesting and length limits.

Anything wrong with an input (missing, unreadable, malformed, inconsistent, changed) raises
`SalmatError` with a one-line message naming the file and the problem, never a traceback.

Writing (`TableWriter`) goes to a temporary file in the output's folder, which is fsynced and
renamed onto the output only when the ``with`` block ends without an exception; on an
exception the temporary file is deleted and any earlier file at the output is left untouched.
A new output gets the usual permissions (0o666 minus the umask); a replaced one keeps its mode.

* Parquet: written with the schema as given (types round-trip exactly).
* CSV/TSV: header row, strings quoted, nulls as empty cells, bools as true/false. Float
  columns always carry a decimal point or exponent (``1.0``, not ``1``) and so are quoted
  text in the file; that keeps them float64 when the file is read back. Binary columns are
  written as base64 text. Nested columns (lists, structs, maps) cannot be written to CSV.
  CSV stores no types: a string column whose every value looks like an int, bool or plain
  number (say "1", "2") reads back as that type; use Parquet when such columns must stay text.
* JSONL: one compact JSON object per line, UTF-8, keys in column order, built one batch at a
  time. NaN and +/-inf are written as null. Timestamps, dates and times are ISO-8601 text
  (timestamps with a ``T`` separator and, when zoned, an offset such as ``+0100`` or ``Z``),
  decimals are exact decimal text (``"1.10"``), durations are seconds as a number, binary is
  base64 text, dictionary columns are written as their values. JSON has no date or decimal
  type, so such columns read back as strings.

Column names must be unique for CSV and JSONL (both read and write).
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from salmat.errors import SalmatError
from salmat.outputs import AtomicFile, preflight
from salmat.values import file_stamp

__all__ = [
    "TableReader",
    "TableWriter",
    "check_output_writable",
    "detect_format",
    "sha256_file",
]

_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
}

# Errors pyarrow (and its message decoding) raises on bad input data.
_DATA_ERRORS = (pa.ArrowException, ValueError, OSError)

# JSONL screening. JSON whitespace is exactly these four bytes.
_JSON_SPACE = b" \t\r\n"

_MiB = 1 << 20
_JSONL_SCAN_CHUNK = 8 * _MiB  # bytes parsed at once while inferring the JSONL schema
_CSV_BLOCK = 8 * _MiB  # pyarrow CSV block; also the longest row a CSV may have
_MESSAGE_LIMIT = 300  # keep quoted pyarrow messages to one readable line

# JSONL: deeper nesting is refused before pyarrow (which crashes on it) or Python recursion sees it.
_MAX_NESTING = 64
# Only `{`, `[` (as `{`) and line ends kept: a run of more than _MAX_NESTING `{` is a line with
# that many opening brackets, the only kind that can nest too deep.
_OPENERS_SHAPE = bytes.maketrans(b"[", b"{")
_NOT_OPENERS = bytes(b for b in range(256) if b not in b"{[\n")
_TOO_MANY_OPENERS = b"{" * (_MAX_NESTING + 1)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"{}[]\n')  # dropped when measuring depth
# Integers of 16 digits or more are the only ones beyond int64 or that float64 may not hold
# exactly (2**53 has 16 digits), and a number too large for float64 has an integer part of 16
# digits or more or an exponent of 3 digits or more. In a chunk's "shape" digits read 0, e/E
# read e, + stays, and what may come before a JSON number (`:` `,` `[` `-` whitespace) reads as
# a space, so `_WIDE_NUMBER_TOKENS` find such numbers (a run after a decimal point or a letter
# is no integer part). Strings that look like one only cost a parse of their line.
_NUMBER_SHAPE = bytes(
    ord("0") if 48 <= b <= 57 else ord("e") if b in b"eE" else ord(" ") if b in b":,[-\x20\t\r" else
    b if b in b"\n+" else ord("x")
    for b in range(256)
)
_WIDE_NUMBER_TOKENS = (b" " + b"0" * 16, b"e000", b"e+000")
_FLOAT_EXACT = 2**53
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

# CSV typing rules, as RE2 patterns run by pyarrow over whole columns.
# `^(0|-?[1-9][0-9]*)$` is exactly the set of strings with str(int(v)) == v.
_INT_PATTERN = r"^(0|-?[1-9][0-9]*)$"
_BOOL_PATTERN = r"^(true|false|True|False|TRUE|FALSE)$"
_FLOAT_PATTERN = (
    r"^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
    r"|(?i:-?(nan|inf|infinity)))$"
)
_NON_FINITE_PATTERN = r"^(?i:-?(nan|inf|infinity))$"


# --------------------------------------------------------------------------- helpers


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return 'jsonl', 'parquet' or 'csv' from the suffix of `path` (case-insensitive)."""
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIX_FORMATS[suffix]
    except KeyError:
        raise SalmatError(
            f"cannot tell the table format of {path}: use .jsonl, .parquet or .csv"
        ) from None


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _one_line(text: str) -> str:
    """Squash a (pyarrow) message onto one short line so SalmatError stays one line."""
    text = " ".join(str(text).split())
    if len(text) > _MESSAGE_LIMIT:
        text = text[: _MESSAGE_LIMIT - 3] + "..."
    return text


def _os_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return _one_line(exc.strerror or str(exc))


def _unreadable(path: Path, exc: OSError) -> SalmatError:
    return SalmatError(f"cannot read {path}: {_os_problem(exc)}: check the path and its permissions")


def _malformed(path: Path, problem: str, fix: str) -> SalmatError:
    return SalmatError(f"{path} is not a valid table: {_one_line(problem)}: {fix}")


def _data_failure(path: Path, exc: Exception, fix: str) -> SalmatError:
    """An OS error with an errno means the file could not be read; anything else is bad content."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return _unreadable(path, exc)
    return _malformed(path, str(exc), fix)


def _require_file(path: Path) -> None:
    """Fail early with a clear message instead of a pyarrow OSError."""
    if not path.exists():
        raise SalmatError(f"cannot read {path}: no such file: check the path")
    if not path.is_file():
        raise SalmatError(f"cannot read {path}: it is not a regular file: name a table file")


def _unique_names(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _malformed(path, f"column {name!r} appears twice", "give every column its own name")
        seen.add(name)


def _check_names(path: Path, schema: pa.Schema) -> None:
    """Every column, and every field of a struct column, must have its own name: with two
    columns called `x`, one would silently take the other's values (or a lookup would fail)."""
    _unique_names(path, schema.names)

    def visit(data_type: pa.DataType, where: str) -> None:
        if pa.types.is_struct(data_type):
            names = [f.name for f in data_type]
            repeated = next((n for n in names if names.count(n) > 1), None)
            if repeated is not None:
                raise _malformed(path, f"column {where!r} has two fields named {repeated!r}",
                                 "give every field its own name")
            for child in data_type:
                visit(child.type, f"{where}.{child.name}")
        elif pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_fixed_size_list(data_type):
            visit(data_type.value_type, f"{where}[]")
        elif pa.types.is_map(data_type):
            visit(data_type.key_type, f"{where}{{key}}")
            visit(data_type.item_type, f"{where}{{value}}")

    for field in schema:
        visit(field.type, field.name)


def _file_stamp(path: Path) -> tuple[int, int, int, int, int]:
    return file_stamp(os.stat(path))


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Return `batch` with exactly `schema`'s columns and types (absent columns as nulls)."""
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            arrays.append(pa.nulls(batch.num_rows, field.type))
        else:
            arrays.append(batch.column(index).cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _rebatch(batches: Iterable[pa.RecordBatch], schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream into batches of exactly `batch_rows` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        if count >= batch_rows:
            pieces = pa.Table.from_batches(pending, schema=schema).combine_chunks().to_batches(max_chunksize=batch_rows)
            full = count // batch_rows
            yield from pieces[:full]
            pending = pieces[full:]
            count -= full * batch_rows
    if count:
        yield from pa.Table.from_batches(pending, schema=schema).combine_chunks().to_batches(max_chunksize=batch_rows)


# --------------------------------------------------------------------------- reading


class _Source(Protocol):
    """What `TableReader` needs of a format's reader (`_ParquetSource`, `_JsonlSource`, `_CsvSource`)."""

    schema: pa.Schema
    num_rows: int

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]: ...


class TableReader:
    """One input table, validated on open and read in two passes with identical types.

    Opening a JSONL or CSV file scans it once to fix the schema (see the module rules);
    a Parquet file only has its footer read. No file handle stays open between calls.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.format = detect_format(self.path)
        _require_file(self.path)
        sources: dict[str, Callable[[Path], _Source]] = {
            "parquet": _ParquetSource, "jsonl": _JsonlSource, "csv": _CsvSource,
        }
        source_class = sources[self.format]
        try:
            # Taken before the first byte is read: `check_unchanged` compares against it.
            self._stamp = _file_stamp(self.path)
            self._source = source_class(self.path)
        except OSError as exc:
            raise _unreadable(self.path, exc) from None
        _check_names(self.path, self._source.schema)

    @property
    def schema(self) -> pa.Schema:
        """The schema every batch from `iter_batches` has (and `read_columns` projects)."""
        return self._source.schema

    @property
    def num_rows(self) -> int:
        """Number of rows (known after opening for every format)."""
        return self._source.num_rows

    def read_columns(self, names: list[str]) -> pa.Table:
        """Read only the named columns, in the order given; names the table lacks are skipped.

        The result always has `num_rows` rows, even when none of the names exist.
        """
        present = list(dict.fromkeys(n for n in names if n in self.schema.names))
        if not present:
            # A column-less table that still knows its row count.
            return pa.table({"_": pa.nulls(self.num_rows)}).select([])
        schema = pa.schema([self.schema.field(n) for n in present])
        batches = [_conform(b, schema) for b in self._counted(self._guarded(self._source.batches(present)))]
        return pa.Table.from_batches(batches, schema=schema)

    def iter_batches(self, batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
        """Stream the whole table in file order, `batch_rows` rows per batch (last may be shorter).

        Raises SalmatError as soon as the file turns out to hold more rows than `num_rows`,
        and at the end if it held fewer (it changed since it was opened).
        """
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        schema = self.schema
        conformed = (_conform(b, schema) for b in self._counted(self._guarded(self._source.batches(None))))
        return _rebatch(conformed, schema, batch_rows)

    def check_unchanged(self) -> None:
        """Raise SalmatError if the file is not the one opened: its size, modification or change
        time, inode or device differ from when `TableReader` was created (rewritten, appended,
        replaced). Call it after the last read, before publishing anything made from it."""
        try:
            now = _file_stamp(self.path)
        except OSError as exc:
            raise self._changed(f"it can no longer be read: {_os_problem(exc)}") from None
        if now != self._stamp:
            raise self._changed("its size, time stamps or inode differ from when it was opened")

    def _changed(self, how: str) -> SalmatError:
        return SalmatError(f"{self.path} changed while it was read ({how}); rerun when it is stable")

    def _counted(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Pass batches on while checking that the file still holds exactly `num_rows` rows."""
        seen = 0
        for batch in batches:
            seen += batch.num_rows
            if seen > self.num_rows:
                raise self._changed(f"more than the {self.num_rows} rows it had when opened")
            yield batch
        if seen != self.num_rows:
            raise self._changed(f"{seen} rows now, {self.num_rows} when it was opened")

    def _guarded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Turn a failure mid-stream (file changed, corrupt page) into a SalmatError."""
        try:
            yield from batches
        except _FileChanged as exc:
            raise self._changed(str(exc)) from None
        except _DATA_ERRORS as exc:
            raise _data_failure(self.path, exc, "repair or regenerate the file") from None


class _ParquetSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with pq.ParquetFile(path) as parquet:
                self.schema = parquet.schema_arrow
                self.num_rows = parquet.metadata.num_rows
        except _DATA_ERRORS as exc:
            raise _data_failure(path, exc, "is it really a Parquet file?") from None

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        with pq.ParquetFile(self.path) as parquet:
            yield from parquet.iter_batches(batch_size=65536, columns=columns)


class _JsonlSource:
    """JSONL: one scan infers the schema chunk by chunk; reads then use it as explicit schema."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.num_rows = 0
        self._longest_line = 0
        # Integers beyond int64 or that float64 can't hold exactly, by place in the row:
        # (line, value) of the first one.
        self._wide: dict[_JsonPath, tuple[int, int]] = {}
        self._negative_wide: set[_JsonPath] = set()
        merged = pa.schema([])
        with open(path, "rb") as file:
            for first_line, chunk in _line_chunks(file, _JSONL_SCAN_CHUNK):
                lines = chunk.split(b"\n")
                self._longest_line = max(self._longest_line, max(map(len, lines)))
                if not chunk.strip(_JSON_SPACE):
                    continue
                chunk_schema, rows = self._infer_chunk(chunk, lines, first_line)
                self.num_rows += rows
                try:
                    merged = _merge_schemas(merged, chunk_schema)
                except _TypeConflict as conflict:
                    raise self._explain(str(conflict), None) from None
        self.schema = pa.schema([f.with_type(_settle(f.type, final=True)) for f in merged])
        if self._wide:
            self.schema = self._exact_integers(self.schema)

    def _note_wide_numbers(self, chunk: bytes, first_line: int) -> None:
        """Find the numbers pyarrow would change and refuse those no type holds exactly.

        An integer beyond int64 (pyarrow makes its column float64) or one float64 can't hold
        exactly is kept, the first of each column, for `_exact_integers`; an integer no 64-bit
        type holds, and a number too large for float64 (pyarrow makes some of them infinity),
        are refused at once. Only lines whose shape (`_NUMBER_SHAPE`) holds a 16-digit run or a
        3-digit exponent can hold such numbers; only those are parsed, in Python.
        """
        shape = chunk.translate(_NUMBER_SHAPE)
        starts: set[int] = set()
        for token in _WIDE_NUMBER_TOKENS:
            found = shape.find(token)
            while found >= 0:
                starts.add(chunk.rfind(b"\n", 0, found) + 1)
                line_end = chunk.find(b"\n", found)
                found = -1 if line_end < 0 else shape.find(token, line_end)
        line = first_line
        counted_to = 0  # the newlines before this offset are counted in `line`
        for start in sorted(starts):
            line += chunk.count(b"\n", counted_to, start)
            counted_to = start
            line_end = chunk.find(b"\n", start)
            try:
                record = json.loads(chunk[start: None if line_end < 0 else line_end],
                                    parse_int=_json_int, parse_float=_finite_float)
            except _TooLarge as exc:
                raise _malformed(self.path, f"line {line}: {exc}", "store such values as strings (in quotes)") from None
            except (ValueError, RecursionError):
                continue  # not valid JSON: pyarrow will refuse the line
            for place, value in _integers(record, ()):
                if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX and (
                        -_FLOAT_EXACT <= value <= _FLOAT_EXACT or float(value) == value):
                    continue  # int64 holds it, and so does float64 if the column has fractions
                if not isinstance(value, int) or not _INT64_MIN <= value <= _UINT64_MAX:
                    raise _malformed(self.path, f"line {line}: column {_place_name(place)!r} holds the integer "
                                     f"{_shown_number(str(value))}, which no 64-bit integer type holds",
                                     "store such values as strings (in quotes)")
                self._wide.setdefault(place, (line, value))
                if value < 0:
                    self._negative_wide.add(place)

    def _exact_integers(self, schema: pa.Schema) -> pa.Schema:
        """Keep the integers `_note_wide_numbers` found exact: a column pyarrow made float64
        because of them becomes uint64 when every value in it is a whole number >= 0, checked by
        reading those columns once more; otherwise no number type holds them all and the file
        is refused."""
        for place, (line, value) in self._wide.items():
            data_type = _type_at(schema, place)
            if data_type is None or pa.types.is_integer(data_type):
                continue  # int64 (every value fits) or not a number column at all (pyarrow will say)
            if place not in self._negative_wide:
                candidate = _with_type_at(schema, place, pa.uint64())
                if self._reads_as(candidate, str(place[0])):
                    schema = candidate
                    continue
            why = "is beyond int64" if value > _INT64_MAX else "float64 can't hold exactly"
            raise _malformed(
                self.path,
                f"column {_place_name(place)!r} holds the integer {value} (line {line}), which {why}, beside "
                "negative numbers or fractions, so no number type holds every value exactly",
                "store the column as strings (in quotes)",
            )
        return schema

    def _reads_as(self, schema: pa.Schema, column: str) -> bool:
        """Whether every row's `column` parses with the type `schema` gives it."""
        try:
            for _ in self._read(pa.schema([schema.field(column)])):
                pass
        except _FileChanged as exc:
            raise SalmatError(f"{self.path} changed while it was read ({exc}); rerun when it is stable") from None
        except pa.ArrowInvalid:
            return False
        return True

    def _infer_chunk(self, chunk: bytes, lines: list[bytes], first_line: int) -> tuple[pa.Schema, int]:
        span = (first_line, first_line + len(lines) - 1)
        # Screen before pyarrow sees the bytes: pyarrow 26 crashes (segfault) on a line that
        # starts with `null` (apache/arrow#47409) and does not check UTF-8 inside strings.
        objects = _count_object_lines(chunk, lines)
        if objects is None:
            raise self._explain("a line does not start with '{'", span)
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            raise self._explain("the text is not valid UTF-8", span) from None
        # pyarrow's parser recurses once per level and crashes (segfault) on very deep nesting;
        # Python's json module and the schema code here recurse too. Refuse it first.
        deep = _too_deep_line(chunk)
        if deep is not None:
            index, depth = deep
            raise _malformed(self.path, f"line {first_line + index} nests objects/arrays {depth} levels deep "
                             f"(at most {_MAX_NESTING} are read)", "flatten the data")
        self._note_wide_numbers(chunk, first_line)
        options = pjson.ReadOptions(block_size=len(chunk) + 1, use_threads=False)
        try:
            # Only the inferred schema is used: inferred data can be invalid (apache/arrow#51305);
            # the reads later use the schema explicitly, which parses correctly.
            table = pjson.read_json(pa.BufferReader(chunk), read_options=options)
        except _DATA_ERRORS as exc:
            raise self._explain(str(exc), span) from None
        # pyarrow takes `{..} {..}` or `{..} null` on one line as several rows; JSONL does not.
        if table.num_rows != objects:
            raise self._explain("a line holds more than one JSON value", span)
        schema = pa.schema([f.with_type(_settle(f.type, final=False)) for f in table.schema])
        return schema, table.num_rows

    def _explain(self, arrow_message: str, lines: tuple[int, int] | None) -> SalmatError:
        """Find the offending line with Python's json module; fall back to pyarrow's words."""
        fix = "write one JSON object per line, each column with one JSON type"
        try:
            found = _diagnose_jsonl(self.path)
        except OSError as exc:
            return _unreadable(self.path, exc)
        except RecursionError:
            found = None  # absurdly deep nesting; pyarrow's message will have to do
        if found:
            return _malformed(self.path, found, fix)
        where = f" (lines {lines[0]}-{lines[1]})" if lines else ""
        return _malformed(self.path, f"{arrow_message}{where}", fix)

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        if self.num_rows == 0:
            return  # pyarrow refuses an empty stream; there is nothing to read anyway
        yield from self._read(self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns]))

    def _read(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """The rows as `schema`, read chunk by chunk, each chunk screened again as the scan did.

        The scan checked every line, so a chunk failing a screen means the file changed since;
        without the screen pyarrow would crash on it (deep nesting, a line starting with null).
        Other changes are found by the row count and `TableReader.check_unchanged`. pyarrow gets
        each chunk as an in-memory buffer: no Python callback from its threads.
        """
        # A block must hold the longest line, or pyarrow reports a "straddling" object.
        read_options = pjson.ReadOptions(block_size=max(_MiB, 2 * self._longest_line + 1024))
        parse_options = pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        with open(self.path, "rb") as file:
            for _, chunk in _line_chunks(file, _JSONL_SCAN_CHUNK):
                if not chunk.strip(_JSON_SPACE):
                    continue
                if _too_deep_line(chunk) is not None:
                    raise _FileChanged(f"a line now nests objects/arrays more than {_MAX_NESTING} levels deep")
                lines = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
                if chunk.count(b"\n{") + chunk.startswith(b"{") != lines and (
                        _count_object_lines(chunk, chunk.split(b"\n")) is None):
                    raise _FileChanged("a line no longer starts with '{'")
                table = pjson.read_json(pa.BufferReader(chunk), read_options=read_options,
                                        parse_options=parse_options)
                yield from table.to_batches()


class _FileChanged(ValueError):
    """What a read found shows the file is not the one `TableReader` opened."""


def _too_deep_line(chunk: bytes) -> tuple[int, int] | None:
    """(0-based line index, depth) of the first line nesting more than `_MAX_NESTING` levels.

    Only a line with more opening brackets than that can be too deep; when one has, the whole
    chunk is measured at once with NumPy: escaped quotes and backslashes dropped, only quotes,
    brackets and line ends kept, brackets inside strings (odd quote count so far on their
    line) ignored, depth taken relative to each line's start.
    """
    if chunk.translate(_OPENERS_SHAPE, _NOT_OPENERS).find(_TOO_MANY_OPENERS) < 0:
        return None  # no line has that many opening brackets (a bytes.find at C speed)
    if b"\\" in chunk:
        chunk = chunk.replace(b"\\\\", b"").replace(b'\\"', b"")  # escaped backslashes, then quotes
    data = np.frombuffer(chunk.translate(None, _NOT_STRUCTURE), dtype=np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))
    line_of = np.cumsum(data == ord("\n"), dtype=np.int32)
    quotes = np.cumsum(data == ord('"'), dtype=np.int32)
    outside = ((quotes - np.concatenate(([0], quotes[newlines]))[line_of]) & 1) == 0
    steps = np.zeros(len(data), dtype=np.int32)
    steps[outside & ((data == ord("{")) | (data == ord("[")))] = 1
    steps[outside & ((data == ord("}")) | (data == ord("]")))] = -1
    level = np.cumsum(steps, dtype=np.int32)
    starts = np.concatenate(([0], newlines + 1))
    starts = starts[starts < len(data)]
    base = np.concatenate(([0], level[newlines]))[: len(starts)]  # the level each line starts at
    depth = np.maximum.reduceat(level, starts) - base if len(starts) else np.zeros(0, dtype=np.int32)
    deep = np.flatnonzero(depth > _MAX_NESTING)
    return (int(deep[0]), int(depth[deep[0]])) if len(deep) else None


_JsonPath = tuple[str | None, ...]  # column, then field names; None steps into a list's items


def _integers(value: Any, place: _JsonPath) -> Iterator[tuple[_JsonPath, int | _HugeInteger]]:
    """Every JSON integer in `value` with its place (depth is bounded by `_too_deep_line`)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, _HugeInteger)):
        yield place, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _integers(item, (*place, key))
    elif isinstance(value, list):
        for item in value:
            yield from _integers(item, (*place, None))


def _place_name(place: _JsonPath) -> str:
    name = str(place[0])
    for step in place[1:]:
        name += "[]" if step is None else f".{step}"
    return name


def _type_at(schema: pa.Schema, place: _JsonPath) -> pa.DataType | None:
    """The type at `place` in `schema`, or None if the schema has no such place."""
    index = schema.get_field_index(str(place[0]))
    if index < 0:
        return None
    data_type = schema.field(index).type
    for step in place[1:]:
        if step is None and pa.types.is_list(data_type):
            data_type = data_type.value_type
        elif step is not None and pa.types.is_struct(data_type) and data_type.get_field_index(step) >= 0:
            data_type = data_type.field(step).type
        else:
            return None
    return data_type


def _with_type_at(schema: pa.Schema, place: _JsonPath, new: pa.DataType) -> pa.Schema:
    """`schema` with the type at `place` (which `_type_at` found) replaced by `new`."""

    def replace(data_type: pa.DataType, steps: _JsonPath) -> pa.DataType:
        if not steps:
            return new
        if steps[0] is None:
            return pa.list_(data_type.value_field.with_type(replace(data_type.value_type, steps[1:])))
        fields = [f.with_type(replace(f.type, steps[1:])) if f.name == steps[0] else f for f in data_type]
        return pa.struct(fields)

    index = schema.get_field_index(str(place[0]))
    field = schema.field(index)
    return schema.set(index, field.with_type(replace(field.type, place[1:])))


def _count_object_lines(chunk: bytes, lines: list[bytes]) -> int | None:
    """Number of non-blank lines, or None if one of them does not start with '{'."""
    expected = len(lines) - (lines[-1] == b"")
    # Fast path for the usual file: every line starts with '{' right away, no blank lines.
    if chunk.count(b"\n{") + chunk.startswith(b"{") == expected:
        return expected
    count = 0
    for line in lines:
        text = line.lstrip(_JSON_SPACE)
        if not text:
            continue
        if not text.startswith(b"{"):
            return None
        count += 1
    return count


def _line_chunks(file: io.BufferedReader, size: int) -> Iterator[tuple[int, bytes]]:
    """Yield (number of first line, bytes) pieces of about `size` bytes cut at line ends."""
    line_number = 1
    rest = b""
    while block := file.read(size):
        data = rest + block
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        chunk, rest = data[:cut], data[cut:]
        yield line_number, chunk
        line_number += chunk.count(b"\n")
    if rest:
        yield line_number, rest


class _TypeConflict(Exception):
    """Two parts of a JSONL file gave one column different types."""


def _settle(data_type: pa.DataType, final: bool) -> pa.DataType:
    """Undo pyarrow's timestamp guessing (keeps strings as written); at the end, null -> string."""
    if pa.types.is_timestamp(data_type):
        return pa.string()
    if final and pa.types.is_null(data_type):
        return pa.string()
    if pa.types.is_list(data_type):
        return pa.list_(data_type.value_field.with_type(_settle(data_type.value_type, final)))
    if pa.types.is_struct(data_type):
        return pa.struct([f.with_type(_settle(f.type, final)) for f in data_type])
    return data_type


def _merge_types(left: pa.DataType, right: pa.DataType, name: str) -> pa.DataType:
    """The type that holds both, following JSON's rules (null fits all; int + float -> float)."""
    if left.equals(right):
        return left
    if pa.types.is_null(left):
        return right
    if pa.types.is_null(right):
        return left
    numeric = {pa.int64(), pa.float64()}
    if left in numeric and right in numeric:
        return pa.float64()
    if pa.types.is_list(left) and pa.types.is_list(right):
        return pa.list_(left.value_field.with_type(_merge_types(left.value_type, right.value_type, f"{name}[]")))
    if pa.types.is_struct(left) and pa.types.is_struct(right):
        return pa.struct(_merge_fields(list(left), list(right), name + "."))
    raise _TypeConflict(f"column {name!r} holds {left} values in one part of the file and {right} in another")


def _merge_fields(left: list[pa.Field], right: list[pa.Field], prefix: str) -> list[pa.Field]:
    """Union of fields in first-seen order, merging the types of shared names."""
    merged = {f.name: f for f in left}
    for field in right:
        if field.name in merged:
            old = merged[field.name]
            merged[field.name] = old.with_type(_merge_types(old.type, field.type, prefix + field.name))
        else:
            merged[field.name] = field
    return list(merged.values())


def _merge_schemas(left: pa.Schema, right: pa.Schema) -> pa.Schema:
    return pa.schema(_merge_fields(list(left), list(right), ""))


def _json_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array"


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"the key {repeated!r} appears twice in one object")
    return dict(pairs)


class _TooLarge(ValueError):
    """A JSON number float64 can't hold (it would become infinity)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _TooLarge(f"the number {_shown_number(text)} is too large for float64")
    return value


class _HugeInteger(str):
    """The text of a JSON integer too long for `int` to parse by default (and beyond 64 bits)."""


def _json_int(text: str) -> int | _HugeInteger:
    return int(text) if len(text) <= 40 else _HugeInteger(text)


def _shown_number(text: str) -> str:
    """A number's text, shortened when it is long enough to swamp a one-line message."""
    return text if len(text) <= 40 else f"{text[:20]}...{text[-4:]} ({len(text)} characters)"


def _diagnose_jsonl(path: Path) -> str | None:
    """Describe the first line that breaks the JSONL rules, or None when none is found."""
    first_kind: dict[str, tuple[str, int]] = {}

    def visit(value: Any, name: str, line: int) -> str | None:
        kind = _json_kind(value)
        if kind is None:
            return None
        seen = first_kind.setdefault(name, (kind, line))
        if seen[0] != kind:
            return f"line {line}: column {name!r} is a {kind} here but a {seen[0]} on line {seen[1]}"
        children: Iterable[tuple[str, Any]] = ()
        if isinstance(value, dict):
            children = ((f"{name}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            children = ((f"{name}[]", v) for v in value)
        for child_name, child in children:
            if problem := visit(child, child_name, line):
                return problem
        return None

    with open(path, "rb") as file:
        for line_number, raw in enumerate(file, start=1):
            if not raw.strip(_JSON_SPACE):
                continue
            try:
                record = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_repeats, parse_float=_finite_float)
            except UnicodeDecodeError:
                return f"line {line_number} is not valid UTF-8"
            except _TooLarge as exc:
                return f"line {line_number}: {exc}"
            except (ValueError, RecursionError) as exc:
                return f"line {line_number} is not valid JSON ({exc})"
            if not isinstance(record, dict):
                return f"line {line_number} holds a JSON {_json_kind(record) or 'null'}, not an object"
            for key, value in record.items():
                if problem := visit(value, key, line_number):
                    return problem
    return None


class _CsvSource:
    """CSV/TSV: cells are read as text and typed by the module's rules, the same in both passes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._parse = pcsv.ParseOptions(delimiter=_delimiter(path), newlines_in_values=True)
        try:
            read_options = pcsv.ReadOptions(block_size=_CSV_BLOCK)
            with pcsv.open_csv(path, read_options=read_options, parse_options=self._parse) as peek:
                names = peek.schema.names
        except _DATA_ERRORS as exc:
            # pyarrow has no error type for a file without a header; treat it as an empty table.
            if "Empty CSV file" not in str(exc):
                raise _data_failure(path, exc, "fix the CSV (one header row, same number of cells per row)") from None
            names = []
        _unique_names(path, names)
        self._names = names
        # One column: a blank line is a null cell. More columns: a blank line is no row.
        self._parse = pcsv.ParseOptions(
            delimiter=_delimiter(path), newlines_in_values=True, ignore_empty_lines=len(names) != 1
        )
        self.num_rows = 0
        self.schema = self._scan() if names else pa.schema([])

    def _text_reader(self, columns: list[str] | None) -> pcsv.CSVStreamingReader:
        convert = pcsv.ConvertOptions(
            column_types={n: pa.string() for n in self._names},
            include_columns=columns,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # keeps "" (quoted) apart from an empty cell
        )
        return pcsv.open_csv(
            self.path,
            read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK),
            parse_options=self._parse,
            convert_options=convert,
        )

    def _scan(self) -> pa.Schema:
        typers = {n: _CsvColumnTyper() for n in self._names}
        try:
            with self._text_reader(None) as reader:
                if reader.schema.names != self._names:
                    raise _malformed(self.path, "blank lines before the header", "start the file with the header row")
                for batch in reader:
                    self.num_rows += batch.num_rows
                    for name, column in zip(batch.schema.names, batch.columns, strict=True):
                        typers[name].update(column)
        except _DATA_ERRORS as exc:
            raise _data_failure(self.path, exc, "fix the CSV (UTF-8 text, same number of cells per row)") from None
        return pa.schema([(n, typers[n].result()) for n in self._names])

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        if not self._names:
            return
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        with self._text_reader(columns) as reader:
            for batch in reader:
                yield _type_csv_batch(batch, schema)


class _CsvColumnTyper:
    """Tracks which types still fit every non-empty cell of one CSV column seen so far."""

    def __init__(self) -> None:
        self.candidates = {"int", "bool", "float"}
        self.any_value = False

    def update(self, column: pa.Array) -> None:
        values = column.drop_null()
        values = values.filter(pc.not_equal(values, ""))
        if len(values) == 0 or not self.candidates:
            return
        self.any_value = True
        looks_int = pc.match_substring_regex(values, _INT_PATTERN)
        if "int" in self.candidates and not pc.all(looks_int).as_py():
            self.candidates.discard("int")
        if self.candidates & {"int", "float"}:
            ints = values.filter(looks_int)
            try:
                pc.cast(ints, pa.int64())
            except pa.ArrowInvalid:
                # An integer beyond int64: neither int64 nor float64 keeps it exactly.
                self.candidates -= {"int", "float"}
            else:
                # 16 digits or more: float64 may round it (2**53 + 1), so it can't be float64.
                long = ints.filter(pc.greater_equal(pc.utf8_length(ints), 16)).to_pylist()
                if any(float(int(v)) != int(v) for v in long):
                    self.candidates.discard("float")
        if "bool" in self.candidates and not pc.all(pc.match_substring_regex(values, _BOOL_PATTERN)).as_py():
            self.candidates.discard("bool")
        if "float" in self.candidates and not pc.all(pc.match_substring_regex(values, _FLOAT_PATTERN)).as_py():
            self.candidates.discard("float")
        if "float" in self.candidates:
            # A number too large for float64 ("1e400") would become inf: keep the column text.
            written_inf = pc.match_substring_regex(values, _NON_FINITE_PATTERN)
            finite = pc.is_finite(pc.cast(values, pa.float64()))
            if not pc.all(pc.or_(finite, written_inf)).as_py():
                self.candidates.discard("float")

    def result(self) -> pa.DataType:
        if not self.any_value:
            return pa.string()
        for name, data_type in (("int", pa.int64()), ("bool", pa.bool_()), ("float", pa.float64())):
            if name in self.candidates:
                return data_type
        return pa.string()


def _type_csv_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Convert a batch of CSV text columns to `schema`; the scan guaranteed every cast succeeds."""
    arrays = []
    for field in schema:
        column = batch.column(batch.schema.get_field_index(field.name))
        if not pa.types.is_string(field.type):
            # Quoted "" is text in string columns only; elsewhere it is a missing value.
            column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
            column = pc.cast(column, field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# --------------------------------------------------------------------------- writing


def check_output_writable(
    path: str | os.PathLike[str], input_path: str | os.PathLike[str] | None = None
) -> None:
    """Raise SalmatError now, before any work, if a table could not be written to `path`.

    Checks the suffix, then `salmat.outputs.preflight` without creating the folder: it must
    exist and accept new files, `path` must not be a folder nor the input (also through links).
    """
    detect_format(path)
    preflight({"--output": path}, [input_path], create_folders=False)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in a stream."""
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        raise _unreadable(Path(path), exc) from None


class TableWriter:
    """Write a table batch by batch; the output appears only when the `with` block succeeds.

    Use as a context manager, or call `close()` to publish and `abort()` to discard.
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema) -> None:
        self.path = Path(path)
        self.format = detect_format(self.path)
        self.schema = schema
        if self.format != "parquet":
            _unique_names(self.path, schema.names)
        if self.format == "csv":
            _check_csv_schema(self.path, schema)
        folder = self.path.absolute().parent
        try:
            self._out = AtomicFile(self.path)  # temp file, mode, commit and SIGTERM cleanup: outputs.py
        except FileNotFoundError:
            raise SalmatError(f"the output folder {folder} does not exist: "
                              "create it or choose another --output") from None
        except OSError as exc:
            raise SalmatError(f"cannot write {self.path}: {_os_problem(exc)}: choose another --output") from None
        self._file = self._out.file
        self._sink: Any = None
        self._done = False
        try:
            self._sink = _make_sink(self.format, self._file, schema, _delimiter(self.path))
        except BaseException:
            self._discard()
            raise

    def write_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append rows; columns must match the schema by name and order (types are cast)."""
        if self._done:
            raise ValueError(f"the writer for {self.path} is already closed")
        if isinstance(batch, pa.Table):
            for piece in batch.to_batches():
                self.write_batch(piece)
            return
        if batch.schema.names != self.schema.names:
            raise ValueError(f"batch columns {batch.schema.names} do not match the output columns {self.schema.names}")
        self._sink.write(_conform(batch, self.schema))

    def close(self) -> None:
        """Finish the file, flush it to disk and rename it onto the output."""
        if self._done:
            return
        try:
            self._sink.close()
        except BaseException:
            self._discard()
            raise
        self._done = True
        self._out.commit()  # on failure it removes the temp file itself

    def abort(self) -> None:
        """Drop everything written; the output path is left as it was."""
        if not self._done:
            self._discard()

    def _discard(self) -> None:
        self._done = True
        if self._sink is not None:
            try:
                self._sink.close()
            except Exception:  # noqa: BLE001 - a half-written file is about to be deleted anyway
                pass
        self._out.discard()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _check_csv_schema(path: Path, schema: pa.Schema) -> None:
    for field in schema:
        data_type = field.type
        if pa.types.is_dictionary(data_type):
            data_type = data_type.value_type
        if pa.types.is_nested(data_type):
            raise SalmatError(
                f"cannot write {path}: column {field.name!r} has type {data_type}, which CSV cannot hold: "
                "write .jsonl or .parquet instead"
            )


def _make_sink(fmt: str, file: Any, schema: pa.Schema, delimiter: str) -> Any:
    if fmt == "parquet":
        return pq.ParquetWriter(file, schema)
    if fmt == "csv":
        return _CsvSink(file, schema, delimiter)
    return _JsonlSink(file)


class _CsvSink:
    """pyarrow's CSVWriter, after making floats and binary read back with the same types."""

    def __init__(self, file: Any, schema: pa.Schema, delimiter: str) -> None:
        csv_schema = pa.schema([pa.field(f.name, _csv_type(f.type)) for f in schema])
        self._schema = csv_schema
        self._writer = pcsv.CSVWriter(file, csv_schema, write_options=pcsv.WriteOptions(delimiter=delimiter))

    def write(self, batch: pa.RecordBatch) -> None:
        arrays = [_csv_column(column) for column in batch.columns]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


def _csv_type(data_type: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    if pa.types.is_floating(data_type) or _is_binary(data_type):
        return pa.string()
    return data_type


def _is_binary(data_type: pa.DataType) -> bool:
    binary: bool = (
        pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type) or pa.types.is_fixed_size_binary(data_type)
    )
    return binary


def _csv_column(column: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_floating(column.type):
        text = pc.cast(column, pa.string())
        # pyarrow prints 1.0 as "1", which would read back as int64.
        whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
        return pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    if _is_binary(column.type):
        return pa.array([_base64(v) for v in column.to_pylist()], pa.string())
    return column


def _base64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


class _JsonlSink:
    """One JSON object per row, built column-wise from one batch at a time."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, batch: pa.RecordBatch) -> None:
        names = batch.schema.names
        columns = [_json_values(column) for column in batch.columns]
        encode = _JSON_ENCODER.encode
        lines = [encode(dict(zip(names, row, strict=True))) for row in zip(*columns, strict=True)]
        if lines:
            self._file.write(("\n".join(lines) + "\n").encode("utf-8"))

    def close(self) -> None:
        pass  # the TableWriter owns the file


# One encoder for all rows: json.dumps with options builds a new encoder per call.
# allow_nan=False is a safety net; _json_values has already turned NaN/inf into None.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

_DURATION_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _json_values(column: pa.Array) -> list[Any]:
    """Python values of one column, already JSON-safe (see the module rules)."""
    data_type = column.type
    if pa.types.is_dictionary(data_type):
        return _json_values(column.dictionary_decode())
    if pa.types.is_floating(data_type) and not pa.types.is_float16(data_type):
        finite = pc.if_else(pc.is_finite(column), column, pa.scalar(None, data_type))
        return cast("list[Any]", finite.to_pylist())
    if pa.types.is_timestamp(data_type):
        # pyarrow's text keeps nanoseconds and the zone offset; ISO-8601 wants a "T".
        text = pc.replace_substring(pc.cast(column, pa.string()), " ", "T", max_replacements=1)
        return cast("list[Any]", text.to_pylist())
    if pa.types.is_date(data_type) or pa.types.is_time(data_type) or pa.types.is_decimal(data_type):
        return cast("list[Any]", pc.cast(column, pa.string()).to_pylist())
    if pa.types.is_duration(data_type):
        seconds = pc.divide(pc.cast(pc.cast(column, pa.int64()), pa.float64()), _DURATION_PER_SECOND[data_type.unit])
        return cast("list[Any]", seconds.to_pylist())
    if pa.types.is_integer(data_type) or pa.types.is_boolean(data_type) or pa.types.is_null(data_type):
        return cast("list[Any]", column.to_pylist())
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return cast("list[Any]", column.to_pylist())
    return [_jsonable(v) for v in column.to_pylist()]


def _jsonable(value: Any) -> Any:
    """Same conversions as `_json_values`, for values nested in lists, structs and maps."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value
