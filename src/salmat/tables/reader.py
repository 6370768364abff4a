"""Reading a table: `TableReader`, one schema for both passes over a file, a folder or stdin,
whatever the format, and the checks that the input did not change while it was read."""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from salmat.errors import SalmatError
from salmat.outputs import STDIO
from salmat.values import file_stamp

from .csv import _CsvSource
from .formats import (
    _DATA_ERRORS,
    _check_names,
    _conform,
    _data_failure,
    _Layout,
    _layout,
    _os_problem,
    _require_file,
    _unreadable,
)
from .jsonl import _FileChanged, _JsonlSource
from .parquet import _folder_files, _ParquetFolderSource, _ParquetSource
from .stdio import _SNIFF_BYTES, _sniff_suffix, _stdin_copy, input_label


def _file_stamp(path: Path) -> tuple[tuple[int, int, int, int, int], ...]:
    """A file's stamp; a folder's is its own plus each table file's in it (any file changed,
    added, removed or renamed shows)."""
    if not path.is_dir():
        return (file_stamp(os.stat(path)),)
    return (file_stamp(os.stat(path)), *(file_stamp(os.stat(f)) for f in _folder_files(path)))


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


class _Source(Protocol):
    """What `TableReader` needs of a format's reader (`_ParquetSource`, `_JsonlSource`, `_CsvSource`)."""

    schema: pa.Schema
    num_rows: int

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]: ...


def _check_content(path: Path, layout: _Layout) -> None:
    """A file whose bytes are plainly another format than its name says (gzip named .csv, JSON
    lines named .csv, Parquet named .jsonl) is refused with the name it needs, instead of a
    misleading 'no column' error from the reader its name picked."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
        sniffed = _sniff_suffix(head)
    except (OSError, zlib.error, EOFError):
        return  # the reader reports what is wrong with it
    if layout.gzip and not sniffed.endswith(".gz"):
        return  # named .gz but not gzip: the reader says it is no valid gzip
    kind = {".parquet": "a Parquet file", ".jsonl": "JSON lines"}.get(sniffed.removesuffix(".gz"))
    if sniffed.endswith(".gz") and not layout.gzip:
        raise SalmatError(f"{path} is gzip-compressed but its name doesn't end in .gz; rename it "
                          f"(e.g. {path.name}.gz)")
    if sniffed == ".parquet" and layout.format != "parquet":
        raise SalmatError(f"{path} is a Parquet file; name it .parquet")
    if kind == "JSON lines" and layout.format == "csv" and head.strip():
        raise SalmatError(f"{path} holds JSON lines, not {'TSV' if layout.delimiter == chr(9) else 'CSV'}; "
                          "name it .jsonl")


class TableReader:
    """One input table, validated on open and read in two passes with identical types.

    Opening a JSONL or CSV file scans it once to fix the schema (see the module rules);
    a Parquet file only has its footer read. No file handle stays open between calls.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        #: what messages call the input: the path as given, "stdin", or a caller's label
        self.label = input_label(path)
        self.path = _stdin_copy() if os.fspath(path) == STDIO else Path(path)
        with self._labelled():
            self._open()

    def _open(self) -> None:
        sources: dict[str, Callable[[Path, _Layout], _Source]] = {
            "parquet": _ParquetSource, "jsonl": _JsonlSource, "csv": _CsvSource,
        }
        source_class: Callable[[Path, _Layout], _Source]
        if self.path.is_dir():
            layout, source_class = _Layout("parquet"), _ParquetFolderSource
        else:
            layout = _layout(self.path)
            _require_file(self.path)
            _check_content(self.path, layout)
            source_class = sources[layout.format]
        self.format = layout.format
        try:
            # Taken before the first byte is read: `check_unchanged` compares against it.
            self._stamp = _file_stamp(self.path)
            self._source: _Source = source_class(self.path, layout)
        except OSError as exc:
            raise _unreadable(self.path, exc) from None
        _check_names(self.path, self._source.schema)

    @contextlib.contextmanager
    def _labelled(self) -> Iterator[None]:
        """Messages name the input as the caller knows it (stdin, not its private copy)."""
        try:
            yield
        except SalmatError as exc:
            if self.label == str(self.path):
                raise
            raise SalmatError(str(exc).replace(str(self.path), self.label)) from None

    def _labelled_batches(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        with self._labelled():
            yield from batches

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
        with self._labelled():
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
        return self._labelled_batches(_rebatch(conformed, schema, batch_rows))

    def check_unchanged(self) -> None:
        """Raise SalmatError if the file is not the one opened: its size, modification or change
        time, inode or device differ from when `TableReader` was created (rewritten, appended,
        replaced; for a folder, any of its table files, or one added or removed). Call it after the
        last read, before publishing anything made from it."""
        try:
            now = _file_stamp(self.path)
        except (OSError, SalmatError) as exc:
            problem = _os_problem(exc) if isinstance(exc, OSError) else str(exc)
            raise self._changed(f"it can no longer be read: {problem}") from None
        if now != self._stamp:
            raise self._changed("its size, time stamps or inode differ from when it was opened")

    def _changed(self, how: str) -> SalmatError:
        return SalmatError(f"{self.label} changed while it was read ({how}); rerun when it is stable")

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
