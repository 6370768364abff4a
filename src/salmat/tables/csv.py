"""Reading CSV/TSV: every cell read as text, each column typed once from the whole file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from .formats import _DATA_ERRORS, _data_failure, _Layout, _malformed, _MiB, _unique_names

_CSV_BLOCK = 8 * _MiB  # pyarrow CSV block; also the longest row a CSV may have

# CSV typing rules, as RE2 patterns run by pyarrow over whole columns.
# `^(0|-?[1-9][0-9]*)$` is exactly the set of strings with str(int(v)) == v.
_INT_PATTERN = r"^(0|-?[1-9][0-9]*)$"
_BOOL_PATTERN = r"^(true|false|True|False|TRUE|FALSE)$"
_FLOAT_PATTERN = (
    r"^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
    r"|(?i:-?(nan|inf|infinity)))$"
)
_NON_FINITE_PATTERN = r"^(?i:-?(nan|inf|infinity))$"


class _CsvSource:
    """CSV/TSV: cells are read as text and typed by the module's rules, the same in both passes."""

    def __init__(self, path: Path, layout: _Layout) -> None:
        self.path = path
        self._parse = pcsv.ParseOptions(delimiter=layout.delimiter, newlines_in_values=True)
        try:
            read_options = pcsv.ReadOptions(block_size=_CSV_BLOCK)
            with pcsv.open_csv(_csv_bytes(path), read_options=read_options, parse_options=self._parse) as peek:
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
            delimiter=layout.delimiter, newlines_in_values=True, ignore_empty_lines=len(names) != 1
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
            _csv_bytes(self.path),
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


def _csv_bytes(path: Path) -> pa.NativeFile:
    """The CSV's bytes for pyarrow, gunzipped when the name ends .gz in any case (pyarrow's own
    guess from the suffix knows only lower-case `.gz`)."""
    compressed = path.name.lower().endswith(".gz")
    return pa.input_stream(str(path), compression="gzip" if compressed else None)


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
