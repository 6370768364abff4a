"""Shared by every module of the package: format detection from the suffix, gzip reading, the
one-line error messages, column-name checks, conforming a batch to a schema, file hashes."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from salmat.errors import SalmatError
from salmat.file_hash import NotHashable, file_sha256
from salmat.outputs import STDIO

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
_MESSAGE_LIMIT = 300  # keep quoted pyarrow messages to one readable line


@dataclass(frozen=True)
class _Layout:
    """How a table's bytes are laid out: its format, CSV delimiter and gzip compression."""

    format: str  # jsonl | parquet | csv
    delimiter: str = ","
    gzip: bool = False


def _layout(path: str | os.PathLike[str], stream_format: str | None = None) -> _Layout:
    """The layout `path`'s suffix names (case-insensitive; `-` is stdin/stdout in `stream_format`)."""
    text = os.fspath(path)
    if text == STDIO:
        return _Layout(stream_format or "jsonl")
    name = Path(text).name.lower()
    compressed = name.endswith(".gz")
    suffix = Path(name.removesuffix(".gz")).suffix
    table_format = _SUFFIX_FORMATS.get(suffix)
    if table_format is None:
        raise SalmatError(f"cannot tell the table format of {path}: use .jsonl, .csv or .tsv (each may end .gz), "
                          ".parquet, a folder of .parquet files, or - (stdin/stdout)")
    if compressed and table_format == "parquet":
        raise SalmatError(f"{path}: Parquet compresses its own data, so .parquet.gz is not read or written: "
                          "gunzip it, or use .parquet")
    return _Layout(table_format, "\t" if suffix == ".tsv" else ",", compressed)


def detect_format(path: str | os.PathLike[str], stream_format: str | None = None) -> str:
    """Return 'jsonl', 'parquet' or 'csv' from the suffix of `path` (case-insensitive; `.gz` is
    looked through); a folder is Parquet; `-` (stdin/stdout) is `stream_format`, default jsonl."""
    if os.fspath(path) != STDIO and os.path.isdir(path):
        return "parquet"
    return _layout(path, stream_format).format


def _open_bytes(path: Path) -> io.BufferedIOBase:
    """The table's bytes, decompressed when its name ends .gz."""
    if not path.name.lower().endswith(".gz"):
        return open(path, "rb")
    return _Gunzip(path)


class _Gunzip(gzip.GzipFile):
    """A gzip file whose damage (bad header, cut short, bad data) reads as a one-line SalmatError."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self._path = path

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(size)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise self._damaged(exc) from None

    def readline(self, size: int | None = -1) -> bytes:
        try:
            return super().readline(size)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: Exception) -> SalmatError:
        return _malformed(self._path, f"its gzip data is damaged or cut short ({exc})",
                          "recompress the table, or give the uncompressed file")


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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (`salmat.file_hash`); an unreadable file is a one-line error."""
    try:
        return file_sha256(os.fspath(path))
    except OSError as exc:
        raise _unreadable(Path(path), exc) from None
    except NotHashable as exc:
        raise SalmatError(f"cannot hash {path}: {exc}; give a regular file") from None
