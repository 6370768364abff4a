"""`salmat compare`: several models × several temporal reducers on the same clips.

Each model runs once per distinct clip; every requested reducer is applied to
the model's maps.
The decode, model call, reducers and statistics are the engine's own
(`decode_sampled`, `predict_maps`, `reduce_stats`), so every value
equals what `salmat materialize` writes for the same model, reducer and
sampling settings. Each model runs as its own `ClipJob` through the one run path
(`salmat.run_clips`: the engines, `--workers`, `--clip-timeout`, Ray, and the
result cache), so a second compare with other reducers, another EMA alpha or
another target reads every clip's maps from the cache and computes nothing
(for models whose maps fit the cache's cap: `clip_maps.MAPS_CAP_BYTES`).

Files written in the output folder:

- `long.parquet` (or `long.csv`): one row per (table row, model, reducer):
  `row`, `key` (when a key column exists), `clip`, `model_id`, `reducer`,
  `ema_alpha` (for `ema`, else null), `status`, `mean`, `var`.
- `report.json` (schema `salmat.compare/v1`) and `report.md`: per-combination
  distribution of clip values; pairwise agreement across distinct clips
  (Pearson and Spearman of `saliency_mean`); map agreement (per-clip Pearson
  correlation between the two reduced maps, averaged over clips); correlation
  with the target column when one is given.
- `agreement.png` (heat-maps of the agreement matrices) and, with a target,
  `target_scatter.png`.

The command exits 0 when every clip was computed by every model, 1 when some
clip failed (its long-table rows carry the status and no values), 2 on a
configuration error (before any work).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack, cast

import numpy as np
import pyarrow as pa

from .cache import open_cache
from .command_options import CompareOptions
from .compare_report import SCHEMA as SCHEMA
from .compare_report import ClipOutcome, build_report, markdown, plot_agreement, plot_target, source_arrays
from .compute import ClipJob
from .errors import SalmatError, warn
from .model_choice import named_specs
from .models import SaliencyModel
from .models.knobs import Knobs
from .option_spec import named, passing
from .outputs import atomic_output, preflight, write_json, write_text
from .plots import pyplot
from .row_plan import plan_rows
from .run_clips import ClipRun, RunSettings, run_clips
from .run_notes import compare_unused_settings
from .settings_types import CompareSettings
from .sources import SourceOptions
from .tables import TableReader
from .values import OK, ReduceOptions, SamplingOptions

KEY_CANDIDATES = ("clip_id", "id", "key", "dis_basename", "video", "name")


@dataclass
class CompareReport:
    out: str
    files: dict[str, str]
    report: dict[str, Any]
    long: pa.Table = field(repr=False, default=None)

    def pair(self, model_a: str, model_b: str, reducer: str) -> dict[str, Any]:
        """Agreement figures between two models at one reducer."""
        pairs: list[dict[str, Any]] = self.report["model_pairs"]
        for p in pairs:
            if p["reducer"] == reducer and {p["a"], p["b"]} == {model_a, model_b}:
                return p
        raise KeyError((model_a, model_b, reducer))


def load_models(names: Sequence[str], preprocess: str | None = None, device: str = "cpu",
                model_dir: str | os.PathLike[str] | None = None) -> list[SaliencyModel]:
    """The models `names` give (`model_choice.named_specs`: ids with knob suffixes, or `.onnx` paths)."""
    return [spec.load() for spec in named_specs(names, preprocess=preprocess, knobs=Knobs(device=device),
                                                model_dir=model_dir)]


def compare(input: str | os.PathLike[str], out: str | os.PathLike[str],
            **settings: Unpack[CompareSettings]) -> CompareReport:
    """Run the comparison and write its files into `out`; configuration errors raise `SalmatError` first.

    `settings` are `salmat.options.CompareOptions`: the `salmat compare` flags with underscores
    (`models` and `reducers` take a comma-separated string or a list)."""
    started = time.perf_counter()
    opts = CompareOptions.build(input=input, out=out, **settings)
    opts.validate()
    reader = TableReader(opts.input)
    key_column = _check_columns(reader.schema.names, opts)
    if opts.plots:
        pyplot()
    specs = named_specs(opts.models, preprocess=opts.preprocess, knobs=Knobs(device=opts.device),
                        model_dir=opts.model_dir)
    loaded = [spec.load() for spec in specs]
    for note in compare_unused_settings(opts, onnx_models=any(spec.model_path is not None for spec in specs)):
        warn(note)  # before any work, as materialize does
    written = [f"long.{opts.long_format}", "report.json", "report.md"]
    written += (["agreement.png"] + (["target_scatter.png"] if opts.target else [])) if opts.plots else []
    outputs = [(f"{named('out')} ({name})", os.path.join(opts.out, name)) for name in written]
    inputs = {"the input table": opts.input} | {f"model {m.id}": getattr(m, "path", None) for m in loaded}
    preflight(outputs, inputs, check_only=True)  # the paths now; the folder is made once every check passed

    names = reader.schema.names
    wanted = [c for c in (opts.path_column, opts.width_column, opts.height_column, opts.target, key_column)
              if c and c in names]
    table = reader.read_columns(list(dict.fromkeys(wanted)))
    plan = plan_rows(table, SourceOptions(opts.path_column, opts.root, opts.width_column, opts.height_column,
                                          opts.default_width, opts.default_height), np.ones(table.num_rows, bool))
    reduce = ReduceOptions(float(opts.ema_alpha))
    jobs = [ClipJob(spec.pinned(model.fingerprint),
                    SamplingOptions(opts.sampling, opts.frame_samples, opts.max_frames, opts.max_pixels), reduce)
            for spec, model in zip(specs, loaded, strict=True)]
    cache = open_cache(opts.cache, enabled=not opts.no_cache, hash_timeout=opts.clip_timeout)
    try:
        preflight(outputs, inputs)  # the last check: makes --out, then the work starts
        runs = [run_clips(plan.sources, job, RunSettings.of(opts), cache, need_maps=True) for job in jobs]
    finally:
        if cache is not None:
            cache.close()
    reducers = list(opts.reducers)
    clips = _outcomes(len(plan.sources), [m.id for m in loaded], runs, reducers, reduce)
    combos = [(m.id, r) for m in loaded for r in reducers]

    long = _long_table(table, plan.row_source, clips, combos, opts.path_column, key_column, reduce.ema_alpha)
    files = {"long": os.path.join(opts.out, f"long.{opts.long_format}")}
    _write_long(long, files["long"], opts.long_format)

    target_values = _floats(table, opts.target) if opts.target else None
    report = build_report(opts.input, clips, combos, plan.row_source, opts.target, target_values, list(opts.models),
                          loaded, dict(ema_alpha=reduce.ema_alpha, frame_samples=opts.frame_samples,
                                       sampling=opts.sampling, max_frames=opts.max_frames, root=opts.root,
                                       path_column=opts.path_column, key_column=key_column), table.num_rows)
    report["cache"] = {m.id: {"from_cache": run.from_cache, "reduced_from_maps": run.reduced,
                              "computed": run.computed} for m, run in zip(loaded, runs, strict=True)}
    if opts.plots:
        files["agreement_png"] = os.path.join(opts.out, "agreement.png")
        plot_agreement(report, combos, files["agreement_png"])
        if target_values is not None:
            files["target_png"] = os.path.join(opts.out, "target_scatter.png")
            plot_target(long, target_values, loaded, reducers, opts.target, files["target_png"])
    files["report_json"] = os.path.join(opts.out, "report.json")
    files["report_md"] = os.path.join(opts.out, "report.md")
    report["files"] = {k: os.path.basename(v) for k, v in files.items()}
    report["seconds"] = round(time.perf_counter() - started, 3)
    write_json(files["report_json"], report)
    write_text(files["report_md"], markdown(report))
    return CompareReport(opts.out, files, report, long)


def _check_columns(names: Sequence[str], opts: CompareOptions) -> str | None:
    """Refuse missing columns before any work; the key column (named, or the first usual one present)."""
    if opts.path_column not in names:
        raise SalmatError(f"{opts.input} has no column {opts.path_column!r}; pass {passing('path_column', 'NAME')}")
    for setting, column in (("target", opts.target), ("key_column", opts.key_column)):
        if column is not None and column not in names:
            raise SalmatError(f"{opts.input} has no column {column!r} for {named(setting)}; "
                              f"pass {passing(setting, 'COLUMN')}")
    if opts.key_column is not None:
        return opts.key_column
    return next((c for c in KEY_CANDIDATES if c in names and c != opts.path_column), None)


# ---- outcomes per clip ------------------------------------------------------------


def _outcomes(sources: int, model_ids: Sequence[str], runs: Sequence[ClipRun], reducers: Sequence[str],
              reduce: ReduceOptions) -> list[ClipOutcome]:
    """Each source's statuses and stats per model, and the agreement of its reduced maps; each
    clip's maps are released once its correlations are taken."""
    out = []
    for i in range(sources):
        clip = ClipOutcome({}, {}, {})
        flat: list[np.ndarray | None] = []
        for model_id, run in zip(model_ids, runs, strict=True):
            result, record = run.results[i], run.maps[i]
            clip.status[model_id], clip.error[model_id] = result.status, result.error
            reduced = record.reduced(reduce) if result.status == OK and record is not None else None
            for r in reducers:
                if result.status == OK:
                    clip.stats[(model_id, r)] = result.stats[r]
                flat.append(None if reduced is None else np.clip(reduced[r], 0.0, 1.0).astype(np.float32).ravel())
            run.maps[i] = None
            del reduced
        clip.map_corr = _map_correlations(flat) if any(f is not None for f in flat) else None
        out.append(clip)
    return out


def _map_correlations(flat: list[np.ndarray | None]) -> np.ndarray:
    """Pearson correlation between every pair of reduced maps of one clip (NaN: missing or constant)."""
    k = len(flat)
    corr = np.full((k, k), np.nan)
    present = [i for i, f in enumerate(flat) if f is not None]
    if not present:
        return corr
    # Unit-norm centred maps, kept as float32 (k × pixels) so a 4K clip with 12 combinations stays ~400 MB.
    # `present` indexes the maps that are not None (each is released below once used).
    z = np.zeros((len(present), cast(np.ndarray, flat[present[0]]).size), dtype=np.float32)
    valid = np.zeros(len(present), dtype=bool)
    for j, i in enumerate(present):
        d = cast(np.ndarray, flat[i]).astype(np.float64)
        d -= d.mean()
        norm = math.sqrt(float(d @ d))
        if norm > 0:
            z[j] = d / norm
            valid[j] = True
        flat[i] = None
    c = np.clip((z @ z.T).astype(np.float64), -1.0, 1.0)
    c[np.diag_indices_from(c)] = np.where(valid, 1.0, np.nan)
    c[~valid, :] = np.nan
    c[:, ~valid] = np.nan
    idx = np.array(present)
    corr[np.ix_(idx, idx)] = c
    return corr


# ---- long table ----------------------------------------------------------------


def _floats(table: pa.Table, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    col = table.column(name)
    try:
        col = pc.cast(col, pa.float64(), safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SalmatError(f"target column {name!r} is not numeric; pass a numeric {named('target')}") from None
    values: np.ndarray = col.to_numpy(zero_copy_only=False).astype(np.float64)
    return values


def _long_table(table: pa.Table, row_source: np.ndarray, clips: Sequence[ClipOutcome],
                combos: Sequence[tuple[str, str]],
                path_column: str, key_column: str | None, ema_alpha: float) -> pa.Table:
    """models × reducers × rows entries, built by indexing per-source arrays (no Python loop over rows)."""
    n = table.num_rows
    src = np.asarray(row_source, dtype=np.int64)
    paths = pa.concat_arrays([c.cast(pa.string()) for c in table.column(path_column).chunks]) if n else \
        pa.array([], pa.string())
    keys = (pa.concat_arrays([c.cast(pa.string()) for c in table.column(key_column).chunks]) if n else
            pa.array([], pa.string())) if key_column else None
    parts = []
    for combo in combos:
        mean, var, status = source_arrays(clips, combo)
        m, v = mean[src], var[src]
        cols = {"row": pa.array(np.arange(n, dtype=np.int64))}
        if keys is not None:
            cols["key"] = keys
        cols |= {
            "clip": paths,
            "model_id": pa.array(np.full(n, combo[0], dtype=object), type=pa.string()),
            "reducer": pa.array(np.full(n, combo[1], dtype=object), type=pa.string()),
            "ema_alpha": pa.array(np.full(n, ema_alpha), mask=np.full(n, combo[1] != "ema")),
            "status": pa.array(status, type=pa.string()).take(pa.array(src)),
            "mean": pa.array(m, mask=~np.isfinite(m)),
            "var": pa.array(v, mask=~np.isfinite(v)),
        }
        parts.append(pa.table(cols))
    return pa.concat_tables(parts) if parts else pa.table({})


def _write_long(long: pa.Table, path: str, fmt_name: str) -> None:
    with atomic_output(path) as file:
        if fmt_name == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(long, file)
        else:
            import pyarrow.csv as pcsv

            pcsv.write_csv(long, file)
