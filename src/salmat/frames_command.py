"""`salmat frames DIS [REF]`: clip in, one row per frame out, as a thin layer over `materialize`.

The frames of DIS are listed from its packets (no decoding): their indices and pts times
become an in-memory table with one row per frame, which runs through the very path every
table takes (`api.materialize` with `--per-frame`, and `--reference-column` when REF is
given), so the engine, the statuses, the columns and their provenance are materialize's.
A clip that can't be listed still gets a row (frame 0), whose status then says why.
"""

from __future__ import annotations

from typing import Any, Unpack

import pyarrow as pa

from .api import materialize
from .command_options import FramesOptions
from .decode import presentation_times
from .errors import ClipError
from .pipeline import RunReport
from .settings_types import FramesSettings
from .sources import RAW_SUFFIXES, ClipSpec

FRAME_COLUMN, PTS_COLUMN, SOURCE_COLUMN, REFERENCE_COLUMN = "frame_index", "pts_time", "src", "ref"


def frame_times(path: str) -> list[float | None]:
    """Each frame's presentation time in seconds, in the decode order `--per-frame` numbers frames
    (a raw `.yuv` has no times: None each); [None] when the clip can't be listed."""
    if path.lower().endswith(tuple(RAW_SUFFIXES)):
        return [None]  # no container to list; one row, and materialize reads the raw clip
    try:
        times = presentation_times(ClipSpec(path))
    except ClipError:
        return [None]  # materialize decodes it again and says why, as the row's status
    return times or [None]


def frame_rows(dis: str, ref: str | None) -> pa.Table:
    """The in-memory table `frames` runs: a row per frame of `dis`, naming `ref` on each."""
    times = frame_times(dis)
    columns: dict[str, Any] = {SOURCE_COLUMN: [dis] * len(times)}
    if ref is not None:
        columns[REFERENCE_COLUMN] = [ref] * len(times)
    columns[FRAME_COLUMN] = pa.array(range(len(times)), type=pa.int64())
    columns[PTS_COLUMN] = pa.array(times, type=pa.float64())
    return pa.table(columns)


def frame_table(dis: str, ref: str | None = None, out: str | None = None,
                **settings: Unpack[FramesSettings]) -> Any:
    """One row per frame of `dis` (index, pts time, saliency statistics; with `ref`, every
    full-reference column) to `out` (a file or `-`) → `RunReport`; without `out`, (a pandas
    DataFrame, RunReport). Keywords are `salmat frames`' flags with underscores."""
    opts = FramesOptions.build(dis=dis, ref=ref, out=out, **settings)
    opts.validate()
    given = opts.non_default() - {"dis", "ref", "out"}
    passed = {name: getattr(opts, name) for name in given}
    table = frame_rows(opts.dis, opts.ref).to_pandas()
    run_settings: dict[str, Any] = {"path_column": SOURCE_COLUMN, "per_frame": True, "frame_column": FRAME_COLUMN,
                                    "workers": 1, **passed}
    if opts.ref is not None:
        run_settings["reference_column"] = REFERENCE_COLUMN
    if opts.out is None:
        return materialize(table, **run_settings)
    report: RunReport = materialize(table, opts.out, **run_settings)
    return report
