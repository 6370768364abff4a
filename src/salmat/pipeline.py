"""`materialize`: one feature table in, the same table plus saliency columns out.

Two passes over the input: the first reads only the path, geometry and
existing-value columns to find the distinct clips; the clips are computed; the
second pass streams the whole table batch by batch, attaches the columns and
writes the output atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

from . import run_record
from .cache import cache_files, open_cache
from .compute import ClipJob
from .errors import SalmatError, warn
from .model_choice import model_spec as choose_model
from .models.knobs import Knobs, parse_inference_size
from .models.spec import ModelSpec
from .option_spec import named, passing
from .options import MaterializeOptions
from .outputs import STDIO, preflight, stdout_reserved, write_text
from .row_plan import RowPlan, plan_rows, with_wanted_frames
from .rows import (
    OUTPUT_TYPES,
    ColumnBuilder,
    FramePairs,
    Provenance,
    RowOutcomes,
    existing_values_mask,
    frame_index_cells,
    with_float_cells,
)
from .run_clips import RunSettings, run_clips
from .run_notes import CONFIGURATION_ROLES, failure_lines, first_errors, skipped_other_configurations, unused_settings
from .sources import ClipSpec, SourceFailure, SourceOptions
from .tables import (
    TableReader,
    TableWriter,
    describe_output,
    detect_format,
    input_label,
)
from .values import FRAME_REDUCER, OK, SKIPPED, ClipResult, ReduceOptions, RoiOptions, SamplingOptions


@dataclass
class RunReport:
    """What a run did: per-status row counts, the exit code, and the audit record."""

    output: str
    counts: dict[str, int]
    clips: int
    seconds: float
    audit: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # the warnings the run printed (`salmat.run_notes`)
    first_errors: dict[str, str] = field(default_factory=dict)  # failing status → its first error
    cached: int = 0  # clips whose values came from the result cache (no decode, no model)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> int:
        return self.counts.get(OK, 0)

    @property
    def skipped(self) -> int:
        return self.counts.get(SKIPPED, 0)

    @property
    def failed(self) -> int:
        return self.total - self.ok - self.skipped

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary_line(self) -> str:
        return (f"salmat: total={self.total} ok={self.ok} skipped={self.skipped} failed={self.failed} "
                f"clips={self.clips} cached={self.cached} seconds={self.seconds:.2f} output={self.output}")


# ---- settings → the values each stage takes ----------------------------------


def model_spec(opts: MaterializeOptions) -> ModelSpec:
    """The model `opts` names (`--compat historical` gives an ONNX model the student's preset)."""
    preset = opts.preprocess
    if opts.historical and opts.model_path and preset is None:
        preset = "vmaf-student"
    knobs = Knobs(opts.device, opts.precision, parse_inference_size(opts.inference_size), opts.runtime)
    return choose_model(opts.model, ModelSpec(None, opts.model_path, opts.model_id, preset, knobs),
                        model_dir=opts.model_dir)


def sampling_options(opts: MaterializeOptions) -> SamplingOptions:
    return SamplingOptions(opts.sampling, opts.frame_samples, opts.max_frames, opts.max_pixels,
                           historical_planes=opts.historical)


def reduce_options(opts: MaterializeOptions) -> ReduceOptions:
    return ReduceOptions(opts.ema_alpha, historical_motion=opts.historical)


def roi_options(opts: MaterializeOptions) -> RoiOptions | None:
    """The ROI family's settings, or None without --reference-column."""
    if not opts.reference_column:
        return None
    return RoiOptions(opts.weights_from, opts.roi_fraction, opts.quality_pooling)


def run(opts: MaterializeOptions, argv: list[str] | None = None) -> RunReport:
    """Validate everything, then compute and write; configuration errors raise before any work.

    While the table goes to stdout (`-`), nothing else may: the run's fd 1 is stderr."""
    with stdout_reserved(STDIO in (opts.output, opts.audit_json)):
        return _run(opts, argv)


def _run(opts: MaterializeOptions, argv: list[str] | None) -> RunReport:
    started = time.perf_counter()
    opts = opts.effective()
    reader = TableReader(opts.input)
    _check_columns(reader.schema, opts)
    detect_format(opts.output)  # a table suffix, checked before anything is created
    preflight(written_paths(opts), kept_paths(opts))
    sources = _source_options(opts)  # its own checks (--confine-to-root needs --root) run here
    spec = model_spec(opts)
    model = spec.load()
    notes = _say(unused_settings(opts, onnx_model=spec.model_path is not None))
    roi = roi_options(opts)
    _make_maps_folder(opts.maps_out)
    job = ClipJob(spec.pinned(model.fingerprint), sampling_options(opts), reduce_options(opts), roi=roi,
                  maps_out=opts.maps_out)
    reducer = FRAME_REDUCER if opts.per_frame else opts.temporal_aggregator
    provenance = Provenance.for_run(model.id, reducer, opts.ema_alpha, historical=opts.historical,
                                    sampling=sampling_options(opts))
    provenance.roi_config = roi.config() if roi is not None else None
    # Per-frame results are not cached: their key would be the clip's frame set, rarely asked twice.
    # With --maps-out every clip is computed, so that each has its maps written.
    cache = open_cache(opts.cache, enabled=not (opts.no_cache or opts.per_frame or opts.maps_out),
                       hash_timeout=opts.clip_timeout)

    timings: dict[str, float] = {}
    t = time.perf_counter()
    planned = _plan(reader, sources, opts, provenance)
    notes += planned.notes
    # The clips are known now: an output naming one would replace it; refused before any is decoded.
    preflight(written_paths(opts), _clip_paths(planned.plan.sources) + planned.untouched, check_only=True)
    timings["plan"] = time.perf_counter() - t

    t = time.perf_counter()
    try:
        run_ = run_clips(planned.plan.sources, job, RunSettings.of(opts), cache, rows=int((~planned.skipped).sum()),
                         source_rows=planned.source_rows())
        results = run_.results
    finally:
        if cache is not None:
            cache.close()
    timings["compute"] = time.perf_counter() - t
    if opts.maps_out:
        write_maps_index(opts.maps_out, planned.plan.sources, results)

    outcomes = planned.outcomes(results, opts)
    t = time.perf_counter()
    _write_output(reader, outcomes, provenance, opts)
    timings["write"] = time.perf_counter() - t

    clips = sum(isinstance(s, ClipSpec) for s in planned.plan.sources)
    report = RunReport(opts.output, outcomes.counts(), clips, time.perf_counter() - started, notes=notes,
                       first_errors=first_errors(outcomes, planned.plan.row_source, planned.plan.sources),
                       cached=run_.from_cache)
    timings["total"] = report.seconds
    report.audit = run_record.build_audit(opts, model, report, timings, results, argv)
    report.audit["cache"] = cache.describe() | {"clips_from_cache": run_.from_cache} if cache is not None else None
    report.audit["notes"] = notes
    if opts.audit_json:
        try:
            run_record.write_audit(opts.audit_json, report.audit)
        except OSError as exc:  # the table is out already: say so, don't claim nothing was written
            raise SalmatError(f"cannot write {named('audit_json')} {opts.audit_json}: {exc.strerror or exc}; the "
                              f"output table {describe_output(opts.output)} was written") from None
    return report


def written_paths(opts: MaterializeOptions) -> dict[str, str | None]:
    """The files a run writes, by the setting that names them."""
    return {named("output"): opts.output, named("audit_json"): opts.audit_json}


def kept_paths(opts: MaterializeOptions) -> list[tuple[str, str | None]]:
    """The files a run reads or keeps before planning (the clips come after): no output may be one."""
    kept: list[tuple[str, str | None]] = [("the input table", opts.input), (named("model_path"), opts.model_path)]
    kept += [("the result cache file", f) for f in cache_files(opts.cache, not (opts.no_cache or opts.per_frame))]
    return kept


def named_clips(opts: MaterializeOptions) -> list[tuple[str, str]]:
    """Every clip file the table of `opts` names, resolved as its run would (nothing decoded): what
    `salmat batch` keeps safe from every other table's outputs before any table runs. A table that
    can't be read names none here; its run says why."""
    try:
        opts = opts.effective()
        reader = TableReader(opts.input)
        if opts.path_column not in reader.schema.names:
            return []
        columns = [c for c in (opts.path_column, opts.width_column, opts.height_column) if c in reader.schema.names]
        keys = reader.read_columns(list(dict.fromkeys(columns)))
        plan = plan_rows(keys, _source_options(opts), np.ones(keys.num_rows, dtype=bool))
    except SalmatError:
        return []
    return _clip_paths(plan.sources)


def _clip_paths(sources: Sequence[ClipSpec | SourceFailure], label: str = "the source clip") -> list[tuple[str, str]]:
    return [(label, s.path) for s in sources if isinstance(s, ClipSpec)]


@dataclass
class _Planned:
    """The planning pass's result: which rows are skipped, each row's source, and per-frame indices."""

    skipped: np.ndarray
    plan: RowPlan
    row_frame: np.ndarray | None = None
    frames: FramePairs | None = None
    notes: list[str] = field(default_factory=list)
    untouched: list[tuple[str, str]] = field(default_factory=list)  # skipped rows' clips: never outputs either

    def source_rows(self) -> np.ndarray:
        """How many rows take each source's values."""
        used = self.plan.row_source[self.plan.row_source >= 0]
        return np.bincount(used, minlength=len(self.plan.sources))

    def outcomes(self, results: list[ClipResult], opts: MaterializeOptions) -> RowOutcomes:
        if self.row_frame is None or self.frames is None:
            return RowOutcomes.build(self.skipped, self.plan.row_source, results, opts.temporal_aggregator)
        return RowOutcomes.per_frame(self.skipped, self.row_frame, self.frames, results, opts.frame_column or "")


def _plan(reader: TableReader, sources: SourceOptions, opts: MaterializeOptions, provenance: Provenance) -> _Planned:
    """Read only the columns planning needs; decide skipped rows and each row's source."""
    keys = reader.read_columns(_key_columns(opts, reader.schema))
    reader.check_unchanged()  # a table rewritten since it was opened is refused before any work
    # Geometry cells are read one by one: a text cell ("n/a") leaves its own row without geometry.
    keys = with_float_cells(keys, [c for c in (opts.width_column, opts.height_column) if c != opts.path_column])
    columns = opts.output_columns()
    skipped = existing_values_mask(keys, (columns["mean"], columns["var"])) & (not opts.overwrite)
    if columns.get("psnr_y"):  # a full-reference run also recomputes rows that lack its values
        skipped &= existing_values_mask(keys, (columns["psnr_y"], columns["psnr_y"]))
    notes = _say([skipped_other_configurations(keys, skipped, opts, provenance)])
    if not (opts.per_frame and opts.frame_column):
        return _Planned(skipped, plan_rows(keys, sources, ~skipped), notes=notes,
                        untouched=_untouched(keys, sources, skipped))
    row_frame = frame_index_cells(keys.column(opts.frame_column))
    wanted = ~skipped & (row_frame >= 0)
    plan = plan_rows(keys, sources, wanted)
    frames = FramePairs.build(plan.row_source, row_frame, wanted)
    return _Planned(skipped, with_wanted_frames(plan, frames.pairs), row_frame, frames, notes,
                    _untouched(keys, sources, ~wanted))


def _untouched(keys: pa.Table, sources: SourceOptions, rows: np.ndarray) -> list[tuple[str, str]]:
    """The clips of rows the run leaves alone (skipped): not read, but the user's files all the
    same, so no output may replace one either."""
    if not rows.any():
        return []
    return _clip_paths(plan_rows(keys, sources, rows).sources, "the clip of a row left as it was")


def _key_columns(opts: MaterializeOptions, schema: pa.Schema) -> list[str]:
    """What the planning pass reads: paths, geometry, frame indices, existing values, and the
    provenance of existing values (to say what skipped rows hold)."""
    columns = opts.output_columns()
    frame = opts.frame_column if opts.per_frame else None
    provenance = [columns[role] for role in CONFIGURATION_ROLES if columns[role] in schema.names]
    wanted = [opts.path_column, opts.width_column, opts.height_column, columns["mean"], columns["var"], frame,
              *provenance, opts.reference_column, columns.get("psnr_y")]
    return list(dict.fromkeys(c for c in wanted if c))


def _say(notes: Sequence[str | None]) -> list[str]:
    """Print each note as a warning now (before the long part of a run), and keep them for the report."""
    kept = [n for n in notes if n]
    for note in kept:
        warn(note)
    return kept


def _source_options(opts: MaterializeOptions) -> SourceOptions:
    return SourceOptions(opts.path_column, opts.root, opts.width_column, opts.height_column,
                         opts.default_width, opts.default_height, opts.confine_to_root, opts.reference_column)


def _check_columns(schema: pa.Schema, opts: MaterializeOptions) -> None:
    if opts.path_column not in schema.names:
        shown = ", ".join(repr(n) for n in schema.names[:12]) + (", …" if len(schema.names) > 12 else "") or "none"
        raise SalmatError(f"{input_label(opts.input)} has no column {opts.path_column!r} (columns: {shown}); "
                          f"pass {passing('path_column', 'NAME')}")
    if opts.reference_column and opts.reference_column not in schema.names:
        raise SalmatError(f"{input_label(opts.input)} has no column {opts.reference_column!r} for "
                          f"{named('reference_column')}; name the column holding each row's reference clip")
    if opts.per_frame and opts.frame_column not in schema.names:
        raise SalmatError(f"{input_label(opts.input)} has no column {opts.frame_column!r} for "
                          f"{named('frame_column')}; name the column holding each row's frame index")
    _check_landing(schema, opts)


def _check_landing(schema: pa.Schema, opts: MaterializeOptions) -> None:
    """An output column may replace an input column of its own kind (an earlier run's, rewritten),
    never another kind (a status column named `mos` would turn the MOS target into "ok"), and
    never a saved pandas index (it would come back holding salmat's values)."""
    index = _pandas_index_columns(schema)
    for role, name in opts.output_columns().items():
        if not name or (name not in schema.names and name not in index):
            continue
        kind = schema.field(name).type if name in schema.names else pa.null()
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)
        number = pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind)
        writes_numbers = pa.types.is_floating(OUTPUT_TYPES[role])
        # A value column read as text ("n/a" cells) is still a value column: each cell is parsed alone.
        fits = (pa.types.is_null(kind) or text or (number and writes_numbers)) and name not in index
        if not fits:
            flag = "the value column" if role in ("mean", "var") else named(f"{role}_column")
            what = "the table's saved pandas index" if name in index else f"a column {name!r} ({kind})"
            raise SalmatError(f"{input_label(opts.input)} already has {what}, which salmat would overwrite "
                              f"with {'numbers' if writes_numbers else 'text'} ({flag} {name!r}); choose another "
                              f"name ({named('column_prefix')} or the --*-column settings), or rename the index")


def _pandas_index_columns(schema: pa.Schema) -> set[str]:
    """The names of a saved pandas index's levels (`DataFrame.to_parquet` records them: a column's
    name, or a range's own name): a level named like an output column would read back ambiguous."""
    try:
        meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
        levels = meta.get("index_columns", []) if isinstance(meta, dict) else []
    except ValueError:
        return set()
    names = [level.get("name") if isinstance(level, dict) else level for level in levels]
    return {name for name in names if isinstance(name, str)}


def _make_maps_folder(folder: str | None) -> None:
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise SalmatError(f"cannot create {named('maps_out')} {folder}: {exc.strerror or exc}; choose a folder "
                          "that exists or can be created") from None


def write_maps_index(folder: str, sources: Sequence[ClipSpec | SourceFailure], results: list[ClipResult]) -> None:
    """`folder/index.jsonl`: one line per clip whose maps were written (source, reference, frames, file),
    written atomically; the frames are read back from each file."""
    lines = []
    for source, result in zip(sources, results, strict=True):
        if not isinstance(source, ClipSpec) or not result.maps_file:
            continue
        with np.load(os.path.join(folder, result.maps_file)) as data:
            frames = data["frames"].tolist()
        reference = source.reference.path if source.reference is not None else None
        lines.append(json.dumps({"source": source.path, "reference": reference, "frames": frames,
                                 "file": result.maps_file}))
    write_text(os.path.join(folder, "index.jsonl"), "".join(line + "\n" for line in lines))


def _write_output(reader: TableReader, outcomes: RowOutcomes, provenance: Provenance,
                  opts: MaterializeOptions) -> None:
    builder = ColumnBuilder(outcomes, provenance, opts.output_columns())
    schema = builder.output_schema(reader.schema)
    rows = len(outcomes.skipped)

    def changed(how: str) -> SalmatError:
        return SalmatError(f"{opts.input} changed while it was read ({how}); nothing was written; "
                           "rerun when it is stable")

    start = 0
    try:
        with TableWriter(opts.output, schema, opts.format) as writer:
            # Every check that the input is still the table that was planned happens inside this
            # block: a failure discards the temporary file, so nothing is published.
            for batch in reader.iter_batches():
                if start + batch.num_rows > rows:
                    raise changed(f"more than the {rows} rows it had")
                writer.write_batch(builder.attach(batch, start, schema))
                start += batch.num_rows
            if start != rows:
                raise changed(f"{start} rows now, {rows} before")
            reader.check_unchanged()
    except OSError as exc:  # disk full, file size limit, I/O error: the writer has already removed its temp file
        raise SalmatError(f"cannot write {opts.output}: {exc.strerror or exc}; nothing was written and any earlier "
                          f"file there is untouched; free some space or choose another {named('output')}") from None


def print_summary(report: RunReport, stream: TextIO | None = None) -> None:
    """A line per failing status with its first error, then the summary line (always the last)."""
    for line in [*failure_lines(report.counts, report.first_errors), report.summary_line()]:
        print(line, file=stream or sys.stderr)
