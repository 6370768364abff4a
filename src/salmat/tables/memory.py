"""In-memory tables for the Python API: pandas DataFrames and pyarrow Tables to and from
private Parquet files, with their own column types given back."""

from __future__ import annotations

import json
import sys
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from salmat.errors import SalmatError

from .formats import _DATA_ERRORS, _one_line

PYARROW_TABLE, PANDAS_DATAFRAME = "pyarrow.Table", "pandas.DataFrame"


def memory_kind(obj: object) -> str | None:
    """`PYARROW_TABLE` or `PANDAS_DATAFRAME` for an in-memory table, None for anything else."""
    if isinstance(obj, pa.Table):
        return PYARROW_TABLE
    pandas = sys.modules.get("pandas")  # never imported here: a DataFrame exists only once pandas is loaded
    if pandas is not None and isinstance(obj, pandas.DataFrame):
        return PANDAS_DATAFRAME
    return None


def memory_to_parquet(obj: Any, path: str) -> pa.Schema:
    """Write an in-memory table to a Parquet file (pandas: with its index and dtypes in the
    pandas metadata, as `DataFrame.to_parquet` keeps them); returns the schema written."""
    table = obj if isinstance(obj, pa.Table) else _from_pandas(obj)
    try:
        pq.write_table(table, path)
    except _DATA_ERRORS as exc:
        raise SalmatError(f"the {memory_kind(obj)} cannot be stored as Parquet: {_one_line(str(exc))}: "
                          "give its columns types Parquet holds") from None
    return table.schema


def _from_pandas(frame: Any) -> pa.Table:
    odd = next((c for c in frame.columns if not isinstance(c, str)), None)
    if odd is not None:
        raise SalmatError(f"the DataFrame's column names must be text, and {odd!r} is a {type(odd).__name__}: "
                          "rename it (frame.columns = frame.columns.map(str))")
    if frame.columns.has_duplicates:
        repeated = frame.columns[frame.columns.duplicated()][0]
        raise SalmatError(f"the DataFrame has two columns named {repeated!r}: give every column its own name")
    try:
        return pa.Table.from_pandas(frame)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise SalmatError(f"the DataFrame cannot become an Arrow table: {_one_line(str(exc))}: "
                          "give each column values of one type") from None


def memory_from_parquet(path: str, kind: str, written: pa.Schema) -> Any:
    """The table at `path` as `kind`; `written` is the schema `memory_to_parquet` gave the input."""
    table = _input_types_back(pq.read_table(path), written)
    if kind == PYARROW_TABLE:
        return table
    return _forget_retyped(table, written).to_pandas()


def _input_types_back(table: pa.Table, written: pa.Schema) -> pa.Table:
    """Give the input's own columns their exact Arrow types again: Parquet stores a few types
    in another form (a dictionary of large_string comes back a dictionary of string, seconds as
    milliseconds, list and map children under Parquet's names). Each is cast back only when the
    cast is exact; a column that can't be is left in Parquet's form."""
    for i, f in enumerate(table.schema):
        before = written.field(f.name).type if f.name in written.names else f.type
        if f.type == before or not _same_values(f.type, before):
            continue
        try:
            column = table.column(i).cast(before, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        table = table.set_column(i, pa.field(f.name, before, f.nullable, f.metadata), column)
    return table


def _same_values(now: pa.DataType, before: pa.DataType) -> bool:
    """Whether `now` is only Parquet's form of `before` (not a column the run retyped)."""
    if pa.types.is_dictionary(now) and pa.types.is_dictionary(before):
        return _same_values(now.value_type, before.value_type)
    if pa.types.is_timestamp(now) and pa.types.is_timestamp(before):
        return bool(now.tz == before.tz)
    for is_list in (pa.types.is_list, pa.types.is_large_list):
        if is_list(now) and is_list(before):
            return _same_values(now.value_type, before.value_type)
    if pa.types.is_map(now) and pa.types.is_map(before):
        return _same_values(now.key_type, before.key_type) and _same_values(now.item_type, before.item_type)
    text = (pa.string(), pa.large_string(), pa.string_view())
    return now == before or (now in text and before in text)


def _forget_retyped(table: pa.Table, written: pa.Schema) -> pa.Table:
    """Drop the pandas metadata of columns whose type the run changed (an input `saliency_mean`
    of dtype Int64 is float64 now): pandas would force the old dtype onto the new values."""
    raw = (table.schema.metadata or {}).get(b"pandas")
    if raw is None:
        return table
    meta = json.loads(raw)
    kept = [c for c in meta.get("columns", [])
            if (name := c.get("field_name")) not in written.names or name not in table.schema.names
            or written.field(name).type.equals(table.schema.field(name).type)]
    meta["columns"] = kept
    return table.replace_schema_metadata({**table.schema.metadata, b"pandas": json.dumps(meta).encode()})
