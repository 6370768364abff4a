"""Writing a table: `TableWriter` (atomic, optionally gzipped) and its Parquet, CSV and JSONL sinks."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import gzip
import json
import os
import re
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from salmat.errors import SalmatError
from salmat.option_spec import named
from salmat.outputs import STDIO, AtomicFile, preflight

from .formats import _conform, _layout, _os_problem, _unique_names


def check_output_writable(
    path: str | os.PathLike[str], input_path: str | os.PathLike[str] | None = None
) -> None:
    """Raise SalmatError now, before any work, if a table could not be written to `path`.

    Checks the suffix, then `salmat.outputs.preflight` without creating the folder: it must
    exist and accept new files, `path` must not be a folder nor the input (also through links).
    """
    _layout(path)
    preflight({"--output": path}, [input_path], create_folders=False)


class TableWriter:
    """Write a table batch by batch; the output appears only when the `with` block succeeds.

    Use as a context manager, or call `close()` to publish and `abort()` to discard.
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema, stream_format: str | None = None) -> None:
        """`path` `-` is stdout, written in `stream_format` (jsonl, the default, or csv) once whole."""
        self.path = Path(path)
        layout = _layout(path, stream_format)
        self.format = layout.format
        self.schema = schema
        if os.fspath(path) == STDIO and self.format == "parquet":
            raise SalmatError(f"Parquet is not streamed to stdout: pass {named('format')} jsonl or csv, or give "
                              f"{named('output')} a .parquet file")
        if self.format != "parquet":
            _unique_names(self.path, schema.names)
        if self.format == "csv":
            _check_csv_schema(self.path, schema)
        self._out = self._atomic_file()
        # mtime 0 and no name in the gzip header: the same table always compresses to the same bytes.
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._out.file, mtime=0) if layout.gzip else None
        self._file = self._gzip or self._out.file
        self._sink: Any = None
        self._done = False
        try:
            self._sink = _make_sink(self.format, self._file, schema, layout.delimiter)
        except BaseException:
            self._discard()
            raise

    def _atomic_file(self) -> AtomicFile:
        try:
            return AtomicFile(self.path)  # temp file, mode, commit and SIGTERM cleanup: outputs.py
        except FileNotFoundError:
            raise SalmatError(f"the output folder {self.path.absolute().parent} does not exist: "
                              f"create it or choose another {named('output')}") from None
        except OSError as exc:
            raise SalmatError(f"cannot write {self.path}: {_os_problem(exc)}: "
                              f"choose another {named('output')}") from None

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
            if self._gzip is not None:
                self._gzip.close()  # writes the gzip trailer; the temp file itself stays open
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
        for part in (self._sink, self._gzip):
            if part is not None:
                try:
                    part.close()
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
    """CSV text built column-wise with Arrow compute: numbers, booleans and dates bare (pyarrow's
    own writer quotes every text cell, and floats are text here so that 1.0 reads back as a float),
    strings quoted only where a reader needs it."""

    def __init__(self, file: Any, schema: pa.Schema, delimiter: str) -> None:
        self._file = file
        self._delimiter = delimiter
        header = [_quoted(pa.array([name], pa.large_string()), delimiter) for name in schema.names]
        self._file.write(_csv_lines(header, delimiter))

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._file.write(_csv_lines([_csv_cells(c, self._delimiter) for c in batch.columns], self._delimiter))

    def close(self) -> None:
        pass


def _csv_lines(cells: list[pa.Array], delimiter: str) -> memoryview:
    """The rows of `cells` (text columns without nulls) as CSV lines, straight from Arrow's buffer."""
    parts: list[Any] = []
    for cell in cells:  # cell, delimiter, cell, …, newline: joined in one pass
        parts += [cell, _text(delimiter)]
    parts[-1] = _text("\n")
    lines = pc.binary_join_element_wise(*parts, _text(""))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    data = memoryview(lines.buffers()[2])
    return data[offsets[lines.offset]:offsets[lines.offset + len(lines)]]


def _csv_cells(column: pa.Array, delimiter: str) -> pa.Array:
    """One column as CSV cells (large_string, a null as an empty cell)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_floating(column.type):
        text = pc.cast(column, pa.string())
        # pyarrow prints 1.0 as "1", which would read back as int64.
        whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)  # both `string`
    elif _is_binary(column.type):
        text = pa.array([_base64(v) for v in column.to_pylist()], pa.string())
    elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = _quoted(column.cast(pa.large_string()), delimiter)
    else:
        text = pc.cast(column, pa.string())  # what pyarrow's CSV writer prints for ints, bools, dates
    return pc.fill_null(text.cast(pa.large_string()), "")


def _quoted(text: pa.Array, delimiter: str) -> pa.Array:
    """Strings as CSV cells: quoted, quotes doubled, where they hold the delimiter, a quote or a line
    break, or are empty (a bare empty cell reads back as null)."""
    special = "\\t" if delimiter == "\t" else re.escape(delimiter)
    needs = pc.or_(pc.equal(pc.binary_length(text), 0), pc.match_substring_regex(text, f'[{special}"\\r\\n]'))
    if not pc.any(needs).as_py():
        return text  # the usual case: paths, ids, statuses
    quote = _text('"')
    quoted = pc.binary_join_element_wise(quote, pc.replace_substring(text, '"', '""'), quote, _text(""))
    return pc.if_else(needs, quoted, text)


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())  # the cells' type: Arrow joins text of one type only


def _is_binary(data_type: pa.DataType) -> bool:
    binary: bool = (
        pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type) or pa.types.is_fixed_size_binary(data_type)
    )
    return binary


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
