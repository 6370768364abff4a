"""`materialize`: one feature table in, the same table plus saliency columns out.

Two passes over the input: the first reads only the path, geometry and
existing-value columns to find the distinct clips; the clips are computed; the
second pass streams the whole table batch by batch, attaches the columns and
writes the output atomically.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import pyarrow as pa

from . import audit as audit_mod
from .cache import CacheKey, ResultCache, open_cache
from .compute import ClipJob
from .engines import EngineSettings, get_engine
from .errors import SalmatError
from .models.spec import ModelSpec
from .options import MaterializeOptions, build_options
from .outputs import preflight
from .progress import ClipProgress
from .rows import ColumnBuilder, Provenance, RowOutcomes, existing_values_mask, with_float_cells
from .sources import ClipSpec, SourceFailure, SourceOptions, plan_rows
from .tables import TableReader, TableWriter, detect_format
from .values import OK, SKIPPED, WORKER_LOST, ClipResult, ReduceOptions, SamplingOptions


@dataclass
class RunReport:
    """What a run did: per-status row counts, the exit code, and the audit record."""

    output: str
    counts: dict[str, int]
    clips: int
    seconds: float
    audit: dict[str, Any] = field(default_factory=dict)

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
                f"clips={self.clips} seconds={self.seconds:.2f} output={self.output}")


def materialize(input: str, output: str, **settings: Any) -> RunReport:
    """Library entry point; keyword names mirror the CLI flags (`frame_samples=4` ⇔ `--frame-samples 4`)."""
    return run(build_options(input, output, **settings))


# ---- settings → the values each stage takes ----------------------------------


def model_spec(opts: MaterializeOptions) -> ModelSpec:
    """The model `opts` names (`--compat historical` gives an ONNX model the student's preset)."""
    preset = opts.preprocess
    if opts.historical and opts.model_path and preset is None:
        preset = "vmaf-student"
    return ModelSpec(opts.model, opts.model_path, opts.model_id, preset, opts.device, opts.precision)


def sampling_options(opts: MaterializeOptions) -> SamplingOptions:
    return SamplingOptions(opts.sampling, opts.frame_samples, opts.max_frames, opts.max_pixels)


def reduce_options(opts: MaterializeOptions) -> ReduceOptions:
    return ReduceOptions(opts.ema_alpha, historical_motion=opts.historical)


def engine_settings(opts: MaterializeOptions) -> EngineSettings:
    return EngineSettings(opts.workers, opts.clip_timeout, opts.ray_address, opts.num_gpus_per_worker)


def engine_name(opts: MaterializeOptions, clips: int) -> str:
    """Ray when asked; the pool for several workers and clips, or whenever a clip timeout is
    set (it needs a process it can stop); otherwise this process."""
    if opts.engine == "ray":
        return "ray"
    if clips > 0 and (opts.clip_timeout or (opts.workers > 1 and clips > 1)):
        return "pool"
    return "inline"


def run(opts: MaterializeOptions, argv: list[str] | None = None) -> RunReport:
    """Validate everything, then compute and write; configuration errors raise before any work."""
    started = time.perf_counter()
    opts = opts.effective()
    reader = TableReader(opts.input)
    _check_columns(reader.schema, opts)
    detect_format(opts.output)  # a table suffix, checked before anything is created
    preflight({"--output": opts.output, "--audit-json": opts.audit_json}, {"the input table": opts.input})
    sources = _source_options(opts)  # its own checks (--confine-to-root needs --root) run here
    spec = model_spec(opts)
    model = spec.load()
    job = ClipJob(spec.pinned(model.fingerprint), sampling_options(opts), reduce_options(opts))
    cache = open_cache(opts.cache, enabled=not opts.no_cache, hash_timeout=opts.clip_timeout)

    timings: dict[str, float] = {}
    t = time.perf_counter()
    keys = reader.read_columns(_key_columns(opts))
    reader.check_unchanged()  # a table rewritten since it was opened is refused before any work
    # Geometry cells are read one by one: a text cell ("n/a") leaves its own row without geometry.
    keys = with_float_cells(keys, [c for c in (opts.width_column, opts.height_column) if c != opts.path_column])
    skipped = existing_values_mask(keys) & (not opts.overwrite)
    plan = plan_rows(keys, sources, ~skipped)
    del keys
    timings["plan"] = time.perf_counter() - t

    t = time.perf_counter()
    try:
        results = _compute_sources(plan.sources, job, opts, rows=len(skipped), cache=cache)
    finally:
        if cache is not None:
            cache.close()
    timings["compute"] = time.perf_counter() - t

    outcomes = RowOutcomes.build(skipped, plan.row_source, results, opts.temporal_aggregator)
    provenance = Provenance(model.id, opts.temporal_aggregator,
                            opts.ema_alpha if opts.temporal_aggregator == "ema" else None)
    t = time.perf_counter()
    _write_output(reader, outcomes, provenance, opts)
    timings["write"] = time.perf_counter() - t

    clips = sum(isinstance(s, ClipSpec) for s in plan.sources)
    report = RunReport(opts.output, outcomes.counts(), clips, time.perf_counter() - started)
    timings["total"] = report.seconds
    report.audit = audit_mod.build_audit(opts, model, report, timings, results, argv)
    report.audit["cache"] = cache.describe() if cache is not None else None
    if opts.audit_json:
        audit_mod.write_audit(opts.audit_json, report.audit)
    return report


def _key_columns(opts: MaterializeOptions) -> list[str]:
    return [c for c in (opts.path_column, opts.width_column, opts.height_column, "saliency_mean", "saliency_var") if c]


def _source_options(opts: MaterializeOptions) -> SourceOptions:
    return SourceOptions(opts.path_column, opts.root, opts.width_column, opts.height_column,
                         opts.default_width, opts.default_height, opts.confine_to_root)


def _check_columns(schema: pa.Schema, opts: MaterializeOptions) -> None:
    if opts.path_column not in schema.names:
        shown = ", ".join(repr(n) for n in schema.names[:12]) + (", …" if len(schema.names) > 12 else "")
        raise SalmatError(f"{opts.input} has no column {opts.path_column!r} (columns: {shown}); "
                          "pass --path-column NAME")


def _compute_sources(sources: list[ClipSpec | SourceFailure], job: ClipJob, opts: MaterializeOptions, rows: int,
                     cache: ResultCache | None = None) -> list[ClipResult]:
    """A result per distinct source: resolution failures as they are, cached clips from the
    cache, the rest computed (each `ok` result committed to the cache as it finishes)."""
    results: list[ClipResult | None] = [
        ClipResult(s.status, error=s.message) if isinstance(s, SourceFailure) else None for s in sources
    ]
    todo = {i: s for i, s in enumerate(sources) if isinstance(s, ClipSpec)}
    keys: dict[int, CacheKey | None] = {}
    with ClipProgress(len(todo), rows, quiet=opts.quiet) as progress:
        if cache is not None:
            for i, spec in list(todo.items()):
                keys[i] = cache.key(spec, job.model.fingerprint or "", job.sampling, job.reduce)
                hit = cache.get(keys[i])
                if hit is not None:
                    results[i] = hit
                    progress.update(hit)
                    del todo[i]
        position = {spec: i for i, spec in todo.items()}
        engine = get_engine(engine_name(opts, len(todo)))
        for spec, result in engine(list(todo.values()), job, engine_settings(opts)):
            results[position[spec]] = result
            if cache is not None:
                cache.put(keys[position[spec]], result)
            progress.update(result)
    return _fill(results)


def _fill(results: list[ClipResult | None]) -> list[ClipResult]:
    return [r or ClipResult(WORKER_LOST, error="the engine returned no result for this clip") for r in results]


def _write_output(reader: TableReader, outcomes: RowOutcomes, provenance: Provenance,
                  opts: MaterializeOptions) -> None:
    builder = ColumnBuilder(outcomes, provenance, opts.metadata_columns())
    schema = builder.output_schema(reader.schema)
    rows = len(outcomes.skipped)

    def changed(how: str) -> SalmatError:
        return SalmatError(f"{opts.input} changed while it was read ({how}); nothing was written; "
                           "rerun when it is stable")

    start = 0
    try:
        with TableWriter(opts.output, schema) as writer:
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
                          "file there is untouched; free some space or choose another --output") from None


def print_summary(report: RunReport, stream: TextIO | None = None) -> None:
    print(report.summary_line(), file=stream or sys.stderr)
