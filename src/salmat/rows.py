"""Per-row outcomes and the output columns built from them, one batch at a time.

Outcomes live in NumPy arrays indexed by row (a million rows is a few MB), and
per-source arrays indexed by `row_source`; the output columns for rows
[start, stop) are built by fancy indexing, never by Python loops over rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .values import (
    FRAME_REDUCER,
    MISSING_FRAME,
    OK,
    QUALITY_COLUMNS,
    SKIPPED,
    STATUSES,
    VALUE_COLUMNS,
    ClipResult,
    SamplingOptions,
)

_CODE = {status: code for code, status in enumerate(STATUSES)}
# The type of each column salmat writes, by role (docs/contract.md §2).
OUTPUT_TYPES = {"mean": pa.float64(), "var": pa.float64(), "status": pa.string(), "model_id": pa.string(),
                "aggregator": pa.string(), "ema_alpha": pa.float64(), "error": pa.string(), "frames": pa.string(),
                **{role: pa.float64() for role in QUALITY_COLUMNS}, "roi_config": pa.string()}


@dataclass
class Provenance:
    """What `ok` rows say about how their values were made."""

    model_id: str
    reducer: str
    ema_alpha: float | None
    frames: str | None = None  # the sampling (`clip:8`, `head:8/8`, `frame`); None: not recorded
    roi_config: str | None = None  # `RoiOptions.config()` with --reference-column

    @classmethod
    def for_run(cls, model_id: str, reducer: str, ema_alpha: float, *, historical: bool = False,
                sampling: SamplingOptions | None = None) -> Provenance:
        """The alpha rule (CONTRACT §2): recorded where it played a part, i.e. under the `ema`
        reducer; under `--compat historical` on every `ok` row, as the earlier tool wrote it, so
        merged tables group one configuration as one. A per-frame row reduces nothing: no alpha.
        The sampling: `frame` on per-frame rows, else `sampling.label`; never under historical
        (the earlier tool's columns stay exact)."""
        recorded = reducer != FRAME_REDUCER and (reducer == "ema" or historical)
        frames = FRAME_REDUCER if reducer == FRAME_REDUCER else sampling.label if sampling else None
        return cls(model_id, reducer, ema_alpha if recorded else None, None if historical else frames)


@dataclass
class RowOutcomes:
    skipped: np.ndarray        # bool per row
    row_source: np.ndarray     # int64 per row, −1 for skipped rows
    source_status: np.ndarray  # int8 code per source
    source_mean: np.ndarray    # float64 per source (NaN unless ok)
    source_var: np.ndarray
    source_error: pa.Array     # string per source (null unless failed)
    # (sources, len(QUALITY_COLUMNS)) float64, NaN where a source has no such value
    source_quality: np.ndarray | None = None

    @classmethod
    def build(
        cls, skipped: np.ndarray, row_source: np.ndarray, results: list[ClipResult], reducer: str
    ) -> RowOutcomes:
        status = np.array([_CODE[r.status] for r in results], dtype=np.int8)
        mean = np.array([r.stats[reducer][0] if r.status == OK else np.nan for r in results], dtype=np.float64)
        var = np.array([r.stats[reducer][1] if r.status == OK else np.nan for r in results], dtype=np.float64)
        errors = pa.array([r.error if r.status != OK else None for r in results], type=pa.string())
        quality = np.array([_quality_row(r.quality if r.status == OK else {}) for r in results],
                           dtype=np.float64).reshape(len(results), len(QUALITY_COLUMNS))
        return cls(skipped, row_source, status, mean, var, errors, quality)

    def status_codes(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        skipped = self.skipped[start:stop]
        src = self.row_source[start:stop]
        codes = np.full(len(skipped), _CODE[SKIPPED], dtype=np.int8)
        if len(self.source_status):
            codes[~skipped] = self.source_status[src[~skipped]]
        return codes

    def first_failures(self) -> dict[str, tuple[int, str | None]]:
        """Failing status → (its first row, that row's error), per-frame rows included."""
        codes = self.status_codes()
        firsts: dict[str, tuple[int, str | None]] = {}
        for code in np.unique(codes).tolist():
            status = STATUSES[code]
            if status in (OK, SKIPPED):
                continue
            row = int(np.argmax(codes == code))
            slot = int(self.row_source[row])
            firsts[status] = (row, self.source_error[slot].as_py() if slot >= 0 else None)
        return firsts

    def counts(self) -> dict[str, int]:
        codes = np.bincount(self.status_codes(), minlength=len(STATUSES))
        return {STATUSES[i]: int(c) for i, c in enumerate(codes) if c}

    @classmethod
    def per_frame(
        cls, skipped: np.ndarray, row_frame: np.ndarray, frames: FramePairs, results: list[ClipResult],
        frame_column: str,
    ) -> RowOutcomes:
        """--per-frame outcomes: one slot per distinct (clip, frame) pair instead of per clip.

        `row_frame` comes from `frame_index_cells`: rows with an empty (−1) or invalid (−2) index
        take one of two leading `missing-frame` slots; a row whose clip failed takes its clip's
        status; an index past the clip's end is `missing-frame`. NumPy throughout: one Python
        step per clip, none per row."""
        pairs = frames.pairs
        n = 2 + len(pairs)
        status = np.full(n, _CODE[MISSING_FRAME], dtype=np.int8)
        mean, var = np.full(n, np.nan), np.full(n, np.nan)
        quality = np.full((n, len(QUALITY_COLUMNS)), np.nan)
        errors: list[str | None] = [f"column {frame_column!r} is empty in this row; give each row its frame index "
                                    "(0 = first frame)",
                                    f"column {frame_column!r} holds no frame index here (a whole number "
                                    "from 0, below 2**53, is needed)"] + [None] * len(pairs)
        starts = np.searchsorted(pairs[:, 0], np.arange(len(results) + 1))
        for source, result in enumerate(results):
            lo, hi = starts[source], starts[source + 1]
            if lo == hi:
                continue
            slots = np.arange(lo, hi) + 2
            if result.status != OK:
                status[slots] = _CODE[result.status]
                errors[lo + 2:hi + 2] = [result.error] * (hi - lo)
                continue
            _fill_frames(result, pairs[lo:hi, 1], slots, (status, mean, var, errors))
            for frame, slot in zip(pairs[lo:hi, 1].tolist(), slots.tolist(), strict=True):
                if frame in result.frame_quality:
                    quality[slot] = _quality_row(result.frame_quality[frame])
        row_slot = np.full(len(skipped), -1, dtype=np.int64)
        row_slot[~skipped & (row_frame == -1)] = 0
        row_slot[~skipped & (row_frame < -1)] = 1
        row_slot[frames.rows] = frames.inverse + 2
        return cls(skipped, row_slot, status, mean, var, pa.array(errors, type=pa.string()), quality)


def _quality_row(values: dict[str, float]) -> list[float]:
    """One result's ROI-family values in `QUALITY_COLUMNS` order (NaN where absent)."""
    return [float(values.get(role, np.nan)) for role in QUALITY_COLUMNS]


@dataclass
class FramePairs:
    """The distinct (source, frame) pairs of the planned rows of a per-frame table."""

    pairs: np.ndarray    # (k, 2) int64, sorted by source then frame
    rows: np.ndarray     # bool per row: the rows planned (not skipped, a valid index, a source)
    inverse: np.ndarray  # int64 per planned row: its pair

    @classmethod
    def build(cls, row_source: np.ndarray, row_frame: np.ndarray, rows: np.ndarray) -> FramePairs:
        """Like `np.unique(axis=0, return_inverse=True)` on the pairs, ~10x faster (one lexsort)."""
        source, frame = row_source[rows], row_frame[rows]
        order = np.lexsort((frame, source))
        source, frame = source[order], frame[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (source[1:] != source[:-1]) | (frame[1:] != frame[:-1])
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[order] = np.cumsum(first) - 1
        return cls(np.stack([source[first], frame[first]], axis=1), rows, inverse)


def _fill_frames(result: ClipResult, frames: np.ndarray, slots: np.ndarray,
                 out: tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]) -> None:
    """Slots of one `ok` clip: its frames' values (looked up with NumPy), or `missing-frame`
    past its end (the only slots visited one by one)."""
    status, mean, var, errors = out
    known = np.fromiter(result.frame_stats, dtype=np.int64, count=len(result.frame_stats))
    values = np.array(list(result.frame_stats.values()), dtype=np.float64).reshape(-1, 2)
    order = np.argsort(known)
    known, values = known[order], values[order]
    at = np.minimum(np.searchsorted(known, frames), max(len(known) - 1, 0))
    found = known[at] == frames if len(known) else np.zeros(len(frames), dtype=bool)
    status[slots[found]] = _CODE[OK]
    mean[slots[found]], var[slots[found]] = values[at[found], 0], values[at[found], 1]
    total = result.frame_total
    count = f"it has {total} frames, 0–{total - 1}" if total else "its frame count is unknown"
    for frame, slot in zip(frames[~found].tolist(), slots[~found].tolist(), strict=True):
        errors[slot] = f"frame {frame} is past the end of the clip ({count})"


# Frame indices above this can't be held exactly as float64 (text and JSON numbers are read as one).
_MAX_FRAME_INDEX = 2**53


def frame_index_cells(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each cell of a frame-index column as int64: the index (≥ 0), −1 if empty, −2 if it is no
    whole number from 0 (text, a fraction, a negative or non-finite number, a list…). Read cell
    by cell (`float_cells`), so `"12"` and `12.0` are frame 12 and one bad cell spoils no other."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    empty = pc.is_null(col).to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(col.type):  # true is no frame 1: a yes/no column named by mistake
        return np.where(empty, -1, -2).astype(np.int64)
    values = float_cells(col)
    number = values.to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(number) & (number >= 0) & (number < _MAX_FRAME_INDEX) & (np.floor(number) == number)
    out = np.where(empty, -1, -2).astype(np.int64)
    out[whole] = number[whole].astype(np.int64)
    return out


def existing_values_mask(table: pa.Table, names: tuple[str, str] = VALUE_COLUMNS) -> np.ndarray:
    """Rows holding finite values in both value columns `names` (`saliency_mean` AND
    `saliency_var`, prefixed as the run writes them; a lone mean is not existing).

    Each cell is read on its own (`float_cells`): text that is no number makes its own row
    not existing, and no other."""
    mask = np.ones(table.num_rows, dtype=bool)
    for name in names:
        if name not in table.column_names:
            return np.zeros(table.num_rows, dtype=bool)
        values = float_cells(table.column(name)).to_numpy(zero_copy_only=False)
        mask &= np.isfinite(values.astype(np.float64))
    return mask


# A superset of the text Arrow's string → float64 cast accepts (checked by a test): a cell that
# doesn't match can't parse, so only matching cells are cast.
_NUMBER_TEXT = r"(?is)^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf(?:inity)?|nan.*)$"


def float_cells(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """`col` as float64, cell by cell: a cell that can't be read as a number is null, and only
    that cell (`"n/a"` in a column of numbers written as text leaves the others as they are).

    Numbers and numeric text become their value; a column of a type with no numeric reading
    (lists, structs, timestamps) is all null. Each cell gets the value Arrow's cast gives it
    alone, however the column is cut into batches.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_string_view(col.type):
        col = col.cast(pa.string())
    try:
        return pc.cast(col, pa.float64(), safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return pa.nulls(len(col), pa.float64())
    numeric = pc.fill_null(pc.match_substring_regex(col, _NUMBER_TEXT), False)
    text = pc.if_else(numeric, col, pa.scalar(None, col.type))
    try:
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        pass
    # Text the pattern lets through but Arrow refuses (rare): cast each distinct value alone.
    encoded = pc.dictionary_encode(text)
    values = []
    for value in encoded.dictionary.to_pylist():
        try:
            values.append(pc.cast(pa.array([value], col.type), pa.float64())[0].as_py())
        except pa.ArrowInvalid:
            values.append(None)
    return pa.array(values, pa.float64()).take(encoded.indices)


def _cast_or_null(col: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """`col` as `typ`; a float64 column cell by cell (`float_cells`), any other column that
    can't be cast becomes null.

    Only skipped rows use the old values, and they are exactly the rows whose value cells
    read as finite numbers (`existing_values_mask`, same `float_cells`), so no value is lost;
    an old metadata column of the wrong kind comes out null rather than crashing the run.
    """
    if pa.types.is_floating(typ):
        return pc.cast(float_cells(col), typ)
    try:
        return pc.cast(col, typ, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(col), typ)


def with_float_cells(table: pa.Table, names: list[str]) -> pa.Table:
    """`table` with each named column (those it has) read as numbers cell by cell (`float_cells`)."""
    for name in names:
        index = table.schema.get_field_index(name)
        if name and index >= 0:
            table = table.set_column(index, name, float_cells(table.column(index)))
    return table


def _constant_where(mask: np.ndarray, value: object, typ: pa.DataType) -> pa.Array:
    """`value` where `mask`, null elsewhere, without a Python object per row."""
    return pc.if_else(pa.array(mask), pa.scalar(value, typ), pa.scalar(None, typ))


class ColumnBuilder:
    """Builds the saliency columns for a batch and splices them into it."""

    def __init__(self, outcomes: RowOutcomes, provenance: Provenance, columns: dict[str, str]) -> None:
        """`columns`: role → output name (`MaterializeOptions.output_columns`; '' = omitted)."""
        self.outcomes = outcomes
        self.provenance = provenance
        self.columns = columns

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """Input columns in place (saliency columns retyped), new ones appended."""
        schema = input_schema
        for name, typ in self._columns_and_types():
            field = pa.field(name, typ)
            idx = schema.get_field_index(name)
            schema = schema.set(idx, field) if idx >= 0 else schema.append(field)
        return schema

    def _columns_and_types(self) -> list[tuple[str, pa.DataType]]:
        return [(name, OUTPUT_TYPES[role]) for role, name in self.columns.items() if name]

    def attach(self, batch: pa.RecordBatch, start: int, schema: pa.Schema) -> pa.RecordBatch:
        stop = start + batch.num_rows
        new = self._new_values(start, stop)
        skipped = pa.array(self.outcomes.skipped[start:stop])
        arrays = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        for name, typ in self._columns_and_types():
            fresh = new[name]
            if name in arrays and name != self.columns["status"]:
                # Skipped rows keep exactly what they had: no provenance is invented.
                fresh = pc.if_else(skipped, _cast_or_null(arrays[name], typ), fresh)
            arrays[name] = fresh
        return pa.RecordBatch.from_arrays([arrays[f.name] for f in schema], schema=schema)

    def _new_values(self, start: int, stop: int) -> dict[str, pa.Array]:
        """Values the run writes for rows [start, stop): ok rows get values and provenance, others null."""
        o = self.outcomes
        codes = o.status_codes(start, stop)
        ok = codes == _CODE[OK]
        src = np.where(o.skipped[start:stop], 0, o.row_source[start:stop])
        have_src = len(o.source_status) > 0
        mean = o.source_mean[src] if have_src else np.full(len(codes), np.nan)
        var = o.source_var[src] if have_src else np.full(len(codes), np.nan)
        failed = ~ok & (codes != _CODE[SKIPPED])
        n = len(codes)
        p = self.provenance
        names = self.columns
        values = {
            names["mean"]: pa.array(mean, mask=~ok),
            names["var"]: pa.array(var, mask=~ok),
        }
        if names["status"]:
            values[names["status"]] = pa.array(STATUSES, type=pa.string()).take(pa.array(codes.astype(np.int32)))
        if names["model_id"]:
            values[names["model_id"]] = _constant_where(ok, p.model_id, pa.string())
        if names["aggregator"]:
            values[names["aggregator"]] = _constant_where(ok, p.reducer, pa.string())
        if names["ema_alpha"]:
            alpha_mask = ~ok if p.ema_alpha is not None else np.ones(n, dtype=bool)
            values[names["ema_alpha"]] = pa.array(np.full(n, p.ema_alpha or 0.0), mask=alpha_mask)
        if names.get("frames"):
            values[names["frames"]] = _constant_where(ok, p.frames, pa.string())
        if names["error"]:
            errors = o.source_error.take(pa.array(src.astype(np.int64))) if have_src else pa.nulls(n, pa.string())
            values[names["error"]] = pc.if_else(pa.array(failed), errors, pa.nulls(n, pa.string()))
        values.update(self._quality_values(src, ok, have_src))
        return values

    def _quality_values(self, src: np.ndarray, ok: np.ndarray, have_src: bool) -> dict[str, pa.Array]:
        """The ROI family's columns (those named): a value on ok rows where it is defined (a constant
        map's CC is not: null), `roi_config` on every ok row."""
        names, n = self.columns, len(ok)
        values: dict[str, pa.Array] = {}
        quality = self.outcomes.source_quality
        for k, role in enumerate(QUALITY_COLUMNS):
            if not names.get(role):
                continue
            column = quality[src, k] if have_src and quality is not None else np.full(n, np.nan)
            values[names[role]] = pa.array(column, mask=~(ok & np.isfinite(column)))
        if names.get("roi_config"):
            values[names["roi_config"]] = _constant_where(ok, self.provenance.roi_config, pa.string())
        return values


def configuration_counts(table: pa.Table, rows: np.ndarray, names: Sequence[str]) -> dict[tuple[Any, ...], int]:
    """How many of `rows` (a mask) hold each distinct combination of the named provenance columns'
    values; a name that is empty or not in `table` reads as None. Grouped by Arrow, not row by row
    (a rerun of a million-row table asks this of every row)."""
    present = [name for name in dict.fromkeys(names) if name and name in table.column_names]
    picked = table.filter(pa.array(rows, type=pa.bool_())).select(present)
    if not present:
        return {(None,) * len(names): picked.num_rows} if picked.num_rows else {}
    # Arrow doesn't group a column of nulls only (its type is `null`): such a column is text here.
    picked = picked.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type)
                                    for f in picked.schema]))
    grouped = picked.group_by(present).aggregate([([], "count_all")])
    counts = grouped.column("count_all").to_pylist()
    values = {name: grouped.column(name).to_pylist() for name in present}
    return {tuple(values[name][i] if name in values else None for name in names): n for i, n in enumerate(counts)}

