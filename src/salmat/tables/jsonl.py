"""Reading JSONL: the whole-file type inference, the screens for hostile lines (nesting, numbers
no type holds, lines that are no object), and the line-naming diagnosis of a bad file."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pjson

from salmat.errors import SalmatError

from .formats import _DATA_ERRORS, _JSON_SPACE, _Layout, _malformed, _MiB, _open_bytes, _unreadable

_JSONL_SCAN_CHUNK = 8 * _MiB  # bytes parsed at once while inferring the JSONL schema
# A UTF-8 byte order mark at the very start (Windows editors write one) is no part of the first
# line, as CSV's reader already takes it; every pass over the file drops it (`_line_chunks`).
_BOM = b"\xef\xbb\xbf"

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


class _JsonlSource:
    """JSONL: one scan infers the schema chunk by chunk; reads then use it as explicit schema."""

    def __init__(self, path: Path, layout: _Layout) -> None:
        self.path = path
        self.num_rows = 0
        self._longest_line = 0
        # Integers beyond int64 or that float64 can't hold exactly, by place in the row:
        # (line, value) of the first one.
        self._wide: dict[_JsonPath, tuple[int, int]] = {}
        self._negative_wide: set[_JsonPath] = set()
        merged = pa.schema([])
        with _open_bytes(path) as file:
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
        with _open_bytes(self.path) as file:
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


def _line_chunks(file: io.BufferedIOBase, size: int) -> Iterator[tuple[int, bytes]]:
    """Yield (number of first line, bytes) pieces of about `size` bytes cut at line ends."""
    line_number = 1
    rest = b""
    first = True
    while block := file.read(size):
        data = rest + block
        if first:
            data, first = data.removeprefix(_BOM), False
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

    with _open_bytes(path) as file:
        for line_number, raw in enumerate(file, start=1):
            if line_number == 1:
                raw = raw.removeprefix(_BOM)
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
