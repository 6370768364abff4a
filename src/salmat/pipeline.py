"""`materialize`: one feature table in, the same table plus saliency columns out.

Two passes over the input: the first reads only the path, geometry and
existing-value columns to find the distinct clips; the clips are computed; the
second pass streams the whole table batch by batch, attaches the columns and
writes the output atomically.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from . import audit as audit_mod
from .decode import SamplingOptions
from .engine import ClipResult, ReduceOptions, run_clips
from .cache import ResultCache, open_cache
from .errors import SalmatError
from .models import SaliencyModel, load_model
from .options import MaterializeOptions, build_options
from .progress import ClipProgress
from .rows import OK, SKIPPED, ColumnBuilder, Provenance, RowOutcomes, existing_values_mask
from .sources import ClipSpec, SourceFailure, SourceOptions, plan_rows
from .tables import TableReader, TableWriter, check_output_writable


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


def load_model_for(opts: MaterializeOptions, threads: int | None = None) -> SaliencyModel:
    """The model `opts` names; `threads` caps an ONNX model's inference threads (pool workers).

    An ONNX model with `--device cuda|auto` runs through torch (`models/torch_backend.py`)
    when onnxruntime has no CUDA provider but torch sees a GPU."""
    if opts.model_path and opts.model is None and opts.device != "cpu":
        from .models.torch_backend import load_torch_model, wants_torch

        if wants_torch(opts.device):
            return load_torch_model(opts.model_path, _preset(opts), opts.model_id, opts.device, opts.precision)
    return load_model(opts.model, opts.model_path, _preset(opts), opts.model_id, opts.device, threads=threads)


def _preset(opts: MaterializeOptions) -> str | None:
    if opts.historical and opts.model_path and opts.preprocess is None:
        return "vmaf-student"
    return opts.preprocess


def sampling_options(opts: MaterializeOptions) -> SamplingOptions:
    return SamplingOptions(opts.sampling, opts.frame_samples, opts.max_frames, opts.max_pixels)


def reduce_options(opts: MaterializeOptions) -> ReduceOptions:
    return ReduceOptions(opts.ema_alpha, historical_motion=opts.historical)


def run(opts: MaterializeOptions, argv: list[str] | None = None) -> RunReport:
    """Validate everything, then compute and write; configuration errors raise before any work."""
    started = time.perf_counter()
    opts = opts.effective()
    reader = TableReader(opts.input)
    _check_columns(reader.schema, opts)
    ensure_output_folder(opts.output)
    check_output_writable(opts.output, opts.input)
    model = load_model_for(opts)
    cache = open_cache(opts)

    timings: dict[str, float] = {}
    t = time.perf_counter()
    keys = reader.read_columns(_key_columns(opts))
    skipped = existing_values_mask(keys) & (not opts.overwrite)
    plan = plan_rows(keys, _source_options(opts), ~skipped)
    del keys
    timings["plan"] = time.perf_counter() - t

    t = time.perf_counter()
    try:
        results = _compute_sources(plan.sources, model, opts, rows=len(skipped), cache=cache)
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


def ensure_output_folder(output: str) -> None:
    """Create a missing output folder (as `mkdir -p` would); failing that is a usage error."""
    folder = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise SalmatError(f"cannot create the output folder {folder}: {exc.strerror or exc}; "
                          "choose another --output") from None


def _key_columns(opts: MaterializeOptions) -> list[str]:
    return [c for c in (opts.path_column, opts.width_column, opts.height_column, "saliency_mean", "saliency_var") if c]


def _source_options(opts: MaterializeOptions) -> SourceOptions:
    return SourceOptions(opts.path_column, opts.root, opts.width_column, opts.height_column,
                         opts.default_width, opts.default_height, opts.confine_to_root)


def _check_columns(schema: pa.Schema, opts: MaterializeOptions) -> None:
    if opts.path_column not in schema.names:
        shown = ", ".join(schema.names[:12]) + (", …" if len(schema.names) > 12 else "")
        raise SalmatError(f"{opts.input} has no column {opts.path_column!r} (columns: {shown}); "
                          "pass --path-column NAME")


def _compute_sources(sources: list, model: SaliencyModel, opts: MaterializeOptions, rows: int,
                     cache: ResultCache | None = None) -> list[ClipResult]:
    """A result per distinct source: resolution failures as they are, cached clips from the
    cache, the rest computed (each `ok` result committed to the cache as it finishes)."""
    results: list[ClipResult | None] = [
        ClipResult(s.status, error=s.message) if isinstance(s, SourceFailure) else None for s in sources
    ]
    todo = [i for i, s in enumerate(sources) if isinstance(s, ClipSpec)]
    sampling, reduce = sampling_options(opts), reduce_options(opts)
    keys = {}
    with ClipProgress(len(todo), rows, quiet=opts.quiet) as progress:
        if cache is not None:
            missing = []
            for i in todo:
                keys[i] = cache.key(sources[i], model.fingerprint, sampling, reduce)
                hit = cache.get(keys[i])
                if hit is None:
                    missing.append(i)
                else:
                    results[i] = hit
                    progress.update(hit)
            todo = missing
        position = {sources[i]: i for i in todo}
        for spec, result in run_clips([sources[i] for i in todo], model, opts, sampling, reduce):
            results[position[spec]] = result
            if cache is not None:
                cache.put(keys[position[spec]], result)
            progress.update(result)
    return _fill(results)


def _fill(results: list[ClipResult | None]) -> list[ClipResult]:
    return [r or ClipResult("worker-lost", error="the engine returned no result for this clip") for r in results]


def _write_output(reader: TableReader, outcomes: RowOutcomes, provenance: Provenance,
                  opts: MaterializeOptions) -> None:
    builder = ColumnBuilder(outcomes, provenance, opts.metadata_columns())
    schema = builder.output_schema(reader.schema)
    start = 0
    try:
        with TableWriter(opts.output, schema) as writer:
            for batch in reader.iter_batches():
                writer.write_batch(builder.attach(batch, start, schema))
                start += batch.num_rows
    except OSError as exc:  # disk full, file size limit, I/O error: the writer has already removed its temp file
        raise SalmatError(f"cannot write {opts.output}: {exc.strerror or exc}; nothing was written and any earlier "
                          "file there is untouched; free some space or choose another --output") from None
    if start != len(outcomes.skipped):
        raise SalmatError(f"{opts.input} changed while it was read ({start} rows now, "
                          f"{len(outcomes.skipped)} before); rerun when it is stable")


def print_summary(report: RunReport, stream=sys.stderr) -> None:
    print(report.summary_line(), file=stream)
