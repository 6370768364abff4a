"""Reading Parquet: one Parquet file, or a folder of Parquet files read as one table."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .formats import _DATA_ERRORS, _data_failure, _Layout, _malformed


class _ParquetSource:
    def __init__(self, path: Path, layout: _Layout) -> None:
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


_PARQUET_SUFFIXES = (".parquet", ".pq")


def _folder_files(folder: Path) -> list[Path]:
    """A folder input's table files: its .parquet/.pq files, in name order. Hidden and `_` files
    (`_SUCCESS`, `.crc`, `_metadata`) are skipped; any other file or a subfolder is refused, so
    nothing in the folder is silently left out of the table."""
    files: list[Path] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith((".", "_")):
            continue
        if not entry.is_file():
            raise _malformed(folder, f"it holds {entry.name!r}, which is no regular file (a subfolder?)",
                             "a folder input is read as its own .parquet files only; move the rest out")
        if not entry.name.lower().endswith(_PARQUET_SUFFIXES):
            raise _malformed(folder, f"it holds {entry.name!r}, which is no .parquet file",
                             "a folder input is read as its .parquet files; move the rest out")
        files.append(Path(entry.path))
    if not files:
        raise _malformed(folder, "it holds no .parquet file", "name a folder of Parquet files, or a table file")
    return files


class _ParquetFolderSource:
    """A folder of Parquet files read as one table: the files in name order, one schema for all."""

    def __init__(self, path: Path, layout: _Layout) -> None:
        self.files = _folder_files(path)
        first = _ParquetSource(self.files[0], layout)
        self.num_rows = first.num_rows
        for file in self.files[1:]:
            other = _ParquetSource(file, layout)
            if _plain_fields(other.schema) != _plain_fields(first.schema):
                raise _malformed(path, f"{file.name} has the columns {_plain_fields(other.schema)} but "
                                 f"{self.files[0].name} has {_plain_fields(first.schema)}",
                                 "give every file of the folder the same columns and types")
            self.num_rows += other.num_rows
        # One file may declare a column required and the next hold nulls in it: all nullable.
        self.schema = pa.schema([f.with_nullable(True) for f in first.schema], metadata=first.schema.metadata)

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        for file in self.files:
            with pq.ParquetFile(file) as parquet:
                yield from parquet.iter_batches(batch_size=65536, columns=columns)


def _plain_fields(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in schema]
