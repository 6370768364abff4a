"""Rows → clips: resolve each row's source path and raw-video geometry.

Rows are grouped by (path, width, height, bit depth) with vectorised NumPy work,
so a per-frame table with a million rows costs one `np.unique`, and each distinct
combination is resolved once in Python. Two combinations that name the same
container file (its geometry comes from the file, not the row) share one clip.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SalmatError

RAW_SUFFIXES = {".yuv"}
_GEOMETRY_TOKEN = re.compile(r"(?:^|[_\-.])(\d{2,5})x(\d{2,5})(?=[_\-.]|$)")
_BITDEPTH_TOKEN = re.compile(r"(?:^|[_\-.])(8|10|12|16)bit(?=[_\-.]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to decode one clip; hashable, so it doubles as the clip key."""

    path: str
    raw: bool = False
    width: int | None = None
    height: int | None = None
    bit_depth: int = 8


@dataclass(frozen=True)
class SourceFailure:
    """A row that can't become a clip: a contract status and the reason in words."""

    status: str
    message: str


@dataclass(frozen=True)
class SourceOptions:
    path_column: str = "src"
    root: str | None = None
    width_column: str = "width"
    height_column: str = "height"
    default_width: int | None = None
    default_height: int | None = None
    confine_to_root: bool = False


@dataclass
class RowPlan:
    """Per-row mapping to distinct sources: `row_source[i]` indexes `sources` (−1: no source)."""

    row_source: np.ndarray
    sources: list[ClipSpec | SourceFailure]


def geometry_from_name(name: str) -> tuple[int | None, int | None, int | None]:
    """(width, height, bit depth) from tokens like `Name_1920x1080_25fps_10bit_420.yuv`."""
    stem = Path(name).name
    geo = _GEOMETRY_TOKEN.search(stem)
    depth = _BITDEPTH_TOKEN.search(stem)
    width, height = (int(geo.group(1)), int(geo.group(2))) if geo else (None, None)
    return width, height, int(depth.group(1)) if depth else None


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
            raise SalmatError(f"column {name!r} holds {col.type} values, not clip paths; "
                              "give each row its clip path as text, or pass --path-column NAME") from None
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
    keys = np.stack([codes, widths, heights], axis=1)[wanted]
    row_source = np.full(n, -1, dtype=np.int64)
    if keys.shape[0] == 0:
        return RowPlan(row_source, [])
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    resolved = [
        resolve_source(paths[c] if c >= 0 else None, w if w > 0 else None, h if h > 0 else None, options)
        for c, w, h in distinct.tolist()
    ]
    sources, remap = _merge_duplicates(resolved)
    row_source[wanted] = remap[inverse.reshape(-1)]
    return RowPlan(row_source, sources)


def _merge_duplicates(resolved: list[ClipSpec | SourceFailure]) -> tuple[list, np.ndarray]:
    """Collapse equal specs (e.g. one .mp4 named with different row geometries) into one."""
    index: dict[ClipSpec | SourceFailure, int] = {}
    remap = np.empty(len(resolved), dtype=np.int64)
    for i, item in enumerate(resolved):
        remap[i] = index.setdefault(item, len(index))
    return list(index), remap


def resolve_source(
    raw_path: str | None, width: int | None, height: int | None, options: SourceOptions
) -> ClipSpec | SourceFailure:
    """One row's path and geometry → a decodable clip, or the reason it can't be one."""
    if raw_path is None or not raw_path.strip():
        return SourceFailure("missing-source", f"column {options.path_column!r} is empty")
    path = Path(raw_path)
    if not path.is_absolute() and options.root:
        path = Path(options.root) / path
    if options.confine_to_root and options.root and not _inside(path, Path(options.root)):
        return SourceFailure("outside-root", f"{raw_path} resolves outside --root {options.root}")
    failure = _readable_file_failure(path)
    if failure:
        return failure
    if path.suffix.lower() not in RAW_SUFFIXES:
        return ClipSpec(str(path))
    return _raw_spec(path, width, height, options)


def _inside(path: Path, root: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
    except (OSError, RuntimeError):
        return False


def _readable_file_failure(path: Path) -> SourceFailure | None:
    try:
        if not (path.is_file() or path.is_fifo()):  # a named pipe is a stream source (--clip-timeout guards it)
            return SourceFailure("missing-source", f"{path}: no such file")
    except OSError as exc:  # symlink loops, over-long names
        return SourceFailure("missing-source", f"{path}: {exc.strerror or exc}")
    if not os.access(path, os.R_OK):
        return SourceFailure("missing-source", f"{path}: not readable (permission denied)")
    return None


def _raw_spec(path: Path, width: int | None, height: int | None, options: SourceOptions) -> ClipSpec | SourceFailure:
    """Raw 4:2:0: geometry from the row, then the defaults, then the file name."""
    name_w, name_h, name_depth = geometry_from_name(path.name)
    w = width or options.default_width or name_w
    h = height or options.default_height or name_h
    if not w or not h:
        return SourceFailure(
            "missing-geometry",
            f"{path.name}: raw .yuv needs its size: add {options.width_column}/{options.height_column} columns, "
            "pass --default-width/--default-height, or name the file like Name_1920x1080_8bit_420.yuv",
        )
    return ClipSpec(str(path), raw=True, width=int(w), height=int(h), bit_depth=name_depth or 8)
