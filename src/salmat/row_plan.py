"""Table rows → distinct clips: each row's path and geometry columns, grouped, resolved once.

Rows are grouped by (path, width, height, reference) with vectorised NumPy work, so a per-frame
table with a million rows costs one `np.unique`, and each distinct combination is resolved once
in Python (`sources.resolve_source`). Two combinations that name the same container file (its
geometry comes from the file, not the row) share one clip. A row's reference is resolved the
same way (`with_reference`); per-frame rows give each clip the frames they name
(`with_wanted_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SalmatError
from .option_spec import passing
from .sources import ClipSpec, SourceFailure, SourceOptions, resolve_source
from .values import MISSING_SOURCE


@dataclass
class RowPlan:
    """Per-row mapping to distinct sources: `row_source[i]` indexes `sources` (−1: no source)."""

    row_source: np.ndarray
    sources: list[ClipSpec | SourceFailure]


def _int_column(table: pa.Table, name: str, n: int) -> np.ndarray:
    """A geometry column as int64, −1 where it is absent, null, non-numeric or not positive."""
    if not name or name not in table.column_names:
        return np.full(n, -1, dtype=np.int64)
    try:
        values = pc.cast(table.column(name), pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.full(n, -1, dtype=np.int64)
    values = values.astype(np.float64)
    return np.where(np.isfinite(values) & (values > 0), values, -1).astype(np.int64)


def _path_codes(table: pa.Table, name: str) -> tuple[np.ndarray, list[str | None]]:
    """Dictionary-encode the path column: per-row codes (−1 for null) and the distinct strings.

    Binary paths that are not UTF-8 keep their bytes visible as `\\xNN` escapes (such a row
    then resolves to no file: `missing-source`); a column of lists or structs is a usage error.
    """
    col = table.column(name)
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type) or pa.types.is_fixed_size_binary(col.type):
        encoded = pc.dictionary_encode(col).combine_chunks()
        paths = [v.decode("utf-8", "backslashreplace") for v in encoded.dictionary.to_pylist()]
    else:
        try:
            col = pc.cast(col, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise SalmatError(f"column {name!r} holds {col.type} values, not clip paths; give each row its "
                              f"clip path as text, or pass {passing('path_column', 'NAME')}") from None
        encoded = pc.dictionary_encode(col).combine_chunks()
        paths = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    codes = np.where(encoded.is_null().to_numpy(zero_copy_only=False), -1, codes).astype(np.int64)
    return codes, paths


def plan_rows(table: pa.Table, options: SourceOptions, wanted: np.ndarray) -> RowPlan:
    """Group the `wanted` rows of `table` by distinct source and resolve each source once."""
    n = table.num_rows
    codes, paths = _path_codes(table, options.path_column)
    widths = _int_column(table, options.width_column, n)
    heights = _int_column(table, options.height_column, n)
    ref_codes, ref_paths = (_path_codes(table, options.reference_column) if options.reference_column
                            else (np.full(n, _NO_REFERENCE, dtype=np.int64), []))
    keys = np.stack([codes, widths, heights, ref_codes], axis=1)[wanted]
    row_source = np.full(n, -1, dtype=np.int64)
    if keys.shape[0] == 0:
        return RowPlan(row_source, [])
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    resolved = [
        with_reference(resolve_source(paths[c] if c >= 0 else None, w if w > 0 else None, h if h > 0 else None,
                                      options), ref_paths, r, w if w > 0 else None, h if h > 0 else None, options)
        for c, w, h, r in distinct.tolist()
    ]
    sources, remap = _merge_duplicates(resolved)
    row_source[wanted] = remap[inverse.reshape(-1)]
    return RowPlan(row_source, sources)


_NO_REFERENCE = -2  # the reference code of every row when there is no --reference-column


def with_reference(source: ClipSpec | SourceFailure, paths: list[str | None], code: int, width: int | None,
                   height: int | None, options: SourceOptions) -> ClipSpec | SourceFailure:
    """`source` with its row's reference resolved like a source (same root, confinement and raw
    geometry); a reference that can't be one is the row's failure, its message naming the side."""
    if code == _NO_REFERENCE or isinstance(source, SourceFailure):
        return source
    if code < 0:
        return SourceFailure(MISSING_SOURCE, f"reference: column {options.reference_column!r} is empty")
    reference = resolve_source(paths[code], width, height, options)
    if isinstance(reference, SourceFailure):
        return SourceFailure(reference.status, f"reference: {reference.message}")
    return replace(source, reference=reference)


def with_wanted_frames(plan: RowPlan, pairs: np.ndarray) -> RowPlan:
    """`plan` with each clip's `frames` set to the frame indices `pairs` name for it.

    `pairs`: distinct (source index, frame index) rows, sorted (`rows.FramePairs`). A clip no
    pair names gets `frames=()`, which decodes nothing."""
    starts = np.searchsorted(pairs[:, 0], np.arange(len(plan.sources) + 1))
    sources: list[ClipSpec | SourceFailure] = []
    for i, source in enumerate(plan.sources):
        if isinstance(source, ClipSpec):
            source = replace(source, frames=tuple(pairs[starts[i]:starts[i + 1], 1].tolist()))
        sources.append(source)
    return RowPlan(plan.row_source, sources)


def _merge_duplicates(
    resolved: list[ClipSpec | SourceFailure],
) -> tuple[list[ClipSpec | SourceFailure], np.ndarray]:
    """Collapse equal specs (e.g. one .mp4 named with different row geometries) into one."""
    index: dict[ClipSpec | SourceFailure, int] = {}
    remap = np.empty(len(resolved), dtype=np.int64)
    for i, item in enumerate(resolved):
        remap[i] = index.setdefault(item, len(index))
    return list(index), remap
