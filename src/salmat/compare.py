"""`salmat compare`: several models × several temporal reducers on the same clips.

Each distinct clip's sampled frames are decoded once; each model runs once per
clip on those frames; every requested reducer is applied to the model's maps.
The decode, model call, reducers and statistics are the engine's own
(`decode_sampled`, `predict_maps`, `reduce_stats`), so every value
equals what `salmat materialize` writes for the same model, reducer and
sampling settings. (The result cache is not used: map agreement needs the maps
themselves, which the cache doesn't keep.)

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
from typing import Any, TypedDict, cast

import numpy as np
import pyarrow as pa

from .compute import check_uniform_size, predict_maps
from .decode import SamplingOptions, decode_sampled
from .errors import ClipError, SalmatError
from .models import BUILTIN_MODELS, SaliencyModel, load_model
from .models.registry import KNOWN_MODELS, distinct_ids, file_id, file_sha256, resolve_named, unknown_model_message
from .option_spec import named
from .options import CompareOptions
from .outputs import atomic_output, preflight, write_json, write_text
from .plots import clean, fmt, pearson, pyplot, save_figure, spearman
from .sources import ClipSpec, SourceFailure, SourceOptions, plan_rows
from .tables import TableReader
from .temporal import reduce_all, reduce_stats

SCHEMA = "salmat.compare/v1"
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


@dataclass(frozen=True)
class _ModelSource:
    name: str                       # as the user gave it
    path: str | None = None         # None: a built-in
    preprocess: str | None = None
    id: str = ""                    # the id it gets on its own
    sha256: str | None = None


def _model_source(name: str, preprocess: str | None, model_dir: str | os.PathLike[str] | None) -> _ModelSource:
    """What `name` is: a built-in id, a known learned id (its file found), or a path to an ONNX file."""
    if name in BUILTIN_MODELS:
        return _ModelSource(name, id=name)
    path: str | None = name
    if name in KNOWN_MODELS:
        _, path, preprocess = resolve_named(name, None, preprocess, model_dir)
    elif not (name.lower().endswith(".onnx") or os.path.sep in name or os.path.exists(name)):
        raise SalmatError(unknown_model_message(name, "or a path to a .onnx file"))
    if path is None or not os.path.isfile(path):
        raise SalmatError(f"ONNX model file not found: {path}; check {named('models')}")
    sha256 = file_sha256(path)
    return _ModelSource(name, path, preprocess, file_id(path, sha256), sha256)


def load_models(names: Sequence[str], preprocess: str | None = None, device: str = "cpu",
                model_dir: str | os.PathLike[str] | None = None) -> list[SaliencyModel]:
    """Built-in ids, known learned ids (found in `model_dir`, else `$SALMAT_MODEL_DIR`) or paths to
    `.onnx` files; ONNX files whose ids would collide (two `model.onnx`) get `id@sha8`."""
    sources = [_model_source(name, preprocess, model_dir) for name in names]
    ids = distinct_ids([(s.id, s.sha256) for s in sources])
    models = []
    for source, model_id in zip(sources, ids, strict=True):
        if source.path is None:
            models.append(load_model(source.name))
            continue
        label = None if model_id == source.id else model_id
        models.append(load_model(model_path=source.path, preprocess=source.preprocess, model_id=label,
                                 device=device))
    return models


def compare(input: str | os.PathLike[str], out: str | os.PathLike[str], **settings: Any) -> CompareReport:
    """Run the comparison and write its files into `out`; configuration errors raise `SalmatError` first.

    `settings` are `salmat.options.CompareOptions`: the `salmat compare` flags with underscores
    (`models` and `aggregators` take a comma-separated string or a list)."""
    started = time.perf_counter()
    opts = CompareOptions.build(input=input, out=out, **settings)
    opts.validate()
    # The steps below read plain names; these are the validated settings.
    input, out, target, root, key_column = opts.input, opts.out, opts.target, opts.root, opts.key_column
    model_names, reducers, ema_alpha = list(opts.models), list(opts.aggregators), opts.ema_alpha
    frame_samples, sampling, max_frames = opts.frame_samples, opts.sampling, opts.max_frames
    path_column, width_column, height_column = opts.path_column, opts.width_column, opts.height_column
    default_width, default_height, max_pixels = opts.default_width, opts.default_height, opts.max_pixels
    preprocess, device, long_format = opts.preprocess, opts.device, opts.long_format
    plots, quiet = opts.plots, opts.quiet
    reader = TableReader(input)
    names = reader.schema.names
    if path_column not in names:
        raise SalmatError(f"{input} has no column {path_column!r}; pass --path-column NAME")
    if target is not None and target not in names:
        raise SalmatError(f"{input} has no target column {target!r}; pass --target COLUMN")
    if key_column is not None and key_column not in names:
        raise SalmatError(f"{input} has no key column {key_column!r}; pass --key-column COLUMN")
    if key_column is None:
        key_column = next((c for c in KEY_CANDIDATES if c in names and c != path_column), None)
    if plots:
        pyplot()
    loaded = load_models(model_names, preprocess=preprocess, device=device, model_dir=opts.model_dir)
    written = [f"long.{long_format}", "report.json", "report.md"]
    written += (["agreement.png"] + (["target_scatter.png"] if target else [])) if plots else []
    preflight([(f"--out ({name})", os.path.join(out, name)) for name in written],
              {"the input table": input} | {f"model {m.id}": getattr(m, "path", None) for m in loaded})

    wanted = [c for c in (path_column, width_column, height_column, target, key_column) if c and c in names]
    table = reader.read_columns(list(dict.fromkeys(wanted)))
    n_rows = table.num_rows
    plan = plan_rows(table, SourceOptions(path_column, root, width_column, height_column, default_width,
                                          default_height), np.ones(n_rows, dtype=bool))
    sampling_opts = SamplingOptions(sampling, frame_samples, max_frames, max_pixels)
    combos = [(m.id, r) for m in loaded for r in reducers]
    clips = _compute(plan.sources, loaded, reducers, sampling_opts, float(ema_alpha), quiet)

    long = _long_table(table, plan.row_source, clips, combos, path_column, key_column, float(ema_alpha))
    files = {}
    long_path = os.path.join(out, f"long.{long_format}")
    _write_long(long, long_path, long_format)
    files["long"] = long_path

    target_values = _floats(table, target) if target else None
    report = _report(input, clips, combos, plan.row_source, target, target_values, model_names, loaded,
                     dict(ema_alpha=float(ema_alpha), frame_samples=frame_samples, sampling=sampling,
                          max_frames=max_frames, root=root, path_column=path_column, key_column=key_column),
                     n_rows)
    if plots:
        files["agreement_png"] = os.path.join(out, "agreement.png")
        _plot_agreement(report, combos, files["agreement_png"])
        if target_values is not None:
            files["target_png"] = os.path.join(out, "target_scatter.png")
            _plot_target(long, target_values, loaded, reducers, target, files["target_png"])
    files["report_json"] = os.path.join(out, "report.json")
    files["report_md"] = os.path.join(out, "report.md")
    report["files"] = {k: os.path.basename(v) for k, v in files.items()}
    report["seconds"] = round(time.perf_counter() - started, 3)
    write_json(files["report_json"], report)
    write_text(files["report_md"], _markdown(report))
    return CompareReport(out, files, report, long)


# ---- computation ----------------------------------------------------------------


@dataclass
class _Clip:
    """One distinct source: per-(model, reducer) stats, per-model status, per-pair map correlations."""

    status: dict[str, str]                         # model id → status
    error: dict[str, str | None]
    stats: dict[tuple[str, str], tuple[float, float]]
    map_corr: np.ndarray | None = None             # (k, k) over combos, NaN where undefined
    frames: int = 0


def _compute(sources: Sequence[ClipSpec | SourceFailure], models: Sequence[SaliencyModel], reducers: Sequence[str],
             sampling: SamplingOptions, ema_alpha: float, quiet: bool) -> list[_Clip]:
    from types import SimpleNamespace

    from .progress import ClipProgress

    out = []
    with ClipProgress(len(sources), len(sources), quiet=quiet) as progress:
        for source in sources:
            clip = _compute_one(source, models, reducers, sampling, ema_alpha)
            out.append(clip)
            ok = all(status == "ok" for status in clip.status.values())
            progress.update(SimpleNamespace(status="ok" if ok else "failed"))
    return out


def _compute_one(source: ClipSpec | SourceFailure, models: Sequence[SaliencyModel], reducers: Sequence[str],
                 sampling: SamplingOptions, ema_alpha: float) -> _Clip:
    ids = [m.id for m in models]
    if isinstance(source, SourceFailure):
        return _Clip({i: source.status for i in ids}, {i: source.message for i in ids}, {})
    assert isinstance(source, ClipSpec)
    try:
        frames = decode_sampled(source, sampling)
        check_uniform_size(frames)
        lumas = [f.luma8() for f in frames]
    except ClipError as exc:
        return _Clip({i: exc.status for i in ids}, {i: exc.message for i in ids}, {})
    except Exception as exc:  # noqa: BLE001 - like the engine, a bad clip is a status
        return _Clip({i: "decode-failed" for i in ids}, {i: f"{type(exc).__name__}: {exc}" for i in ids}, {})
    clip = _Clip({}, {}, {}, frames=len(frames))
    flat: list[np.ndarray | None] = []
    for model in models:
        try:
            maps = predict_maps(model, frames)
            reduced = reduce_all(maps, lumas, ema_alpha, False)
            stats = reduce_stats(maps, lumas, ema_alpha, False, reduced)  # the engine's own figures
        except ClipError as exc:
            clip.status[model.id], clip.error[model.id] = exc.status, exc.message
            flat += [None] * len(reducers)
            continue
        except Exception as exc:  # noqa: BLE001
            clip.status[model.id], clip.error[model.id] = "model-failed", f"{type(exc).__name__}: {exc}"
            flat += [None] * len(reducers)
            continue
        clip.status[model.id], clip.error[model.id] = "ok", None
        for r in reducers:
            clip.stats[(model.id, r)] = stats[r]
            flat.append(np.clip(reduced[r], 0.0, 1.0).astype(np.float32).ravel())
        del maps, reduced
    clip.map_corr = _map_correlations(flat)
    return clip


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


# ---- long table --------------------------------------------------------------------


def _floats(table: pa.Table, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    col = table.column(name)
    try:
        col = pc.cast(col, pa.float64(), safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SalmatError(f"target column {name!r} is not numeric; pass a numeric --target") from None
    values: np.ndarray = col.to_numpy(zero_copy_only=False).astype(np.float64)
    return values


def _source_arrays(clips: Sequence[_Clip], combo: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per distinct source: mean and var (NaN unless ok) and the status, for one (model, reducer)."""
    model_id, reducer = combo
    nan = (math.nan, math.nan)
    mean = np.array([c.stats.get(combo, nan)[0] for c in clips], dtype=np.float64)
    var = np.array([c.stats.get(combo, nan)[1] for c in clips], dtype=np.float64)
    return mean, var, [c.status[model_id] for c in clips]


def _long_table(table: pa.Table, row_source: np.ndarray, clips: Sequence[_Clip], combos: Sequence[tuple[str, str]],
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
        mean, var, status = _source_arrays(clips, combo)
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


# ---- report --------------------------------------------------------------------------


def _label(combo: tuple[str, str]) -> str:
    return f"{combo[0]} / {combo[1]}"


def _distribution(values: np.ndarray) -> dict[str, Any]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "median": None, "max": None}
    return {"n": int(v.size), "mean": clean(v.mean()), "std": clean(v.std(ddof=1) if v.size > 1 else 0.0),
            "min": clean(v.min()), "median": clean(np.median(v)), "max": clean(v.max())}


class _PairAgreement(TypedDict):
    """Agreement of two combinations: over clips (Pearson, Spearman) and over their maps."""

    pearson: float | None
    spearman: float | None
    map_pearson: float | None
    map_clips: int


def _report(input: str, clips: Sequence[_Clip], combos: Sequence[tuple[str, str]], row_source: np.ndarray,
            target: str | None, target_values: np.ndarray | None, model_names: Sequence[str],
            models: Sequence[SaliencyModel], settings: dict[str, Any], n_rows: int) -> dict[str, Any]:
    k = len(combos)
    clip_mean = np.array([[c.stats.get(combo, (math.nan, math.nan))[0] for c in clips] for combo in combos]
                         ).reshape(k, len(clips))
    clip_var = np.array([[c.stats.get(combo, (math.nan, math.nan))[1] for c in clips] for combo in combos]
                        ).reshape(k, len(clips))
    pear = np.full((k, k), np.nan)
    spear = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(k):
            pear[i, j] = pearson(clip_mean[i], clip_mean[j])
            spear[i, j] = spearman(clip_mean[i], clip_mean[j])
    stacked = np.stack([c.map_corr for c in clips if c.map_corr is not None]) if any(
        c.map_corr is not None for c in clips) else np.full((1, k, k), np.nan)
    counts = np.sum(np.isfinite(stacked), axis=0)
    with np.errstate(invalid="ignore"):
        map_mean = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)

    combo_rows = []
    for i, (m, r) in enumerate(combos):
        entry = {"model_id": m, "reducer": r, "label": _label((m, r)),
                 "mean": _distribution(clip_mean[i]), "var": _distribution(clip_var[i])}
        if target_values is not None:
            row_vals = _source_arrays(clips, (m, r))[0][np.asarray(row_source, dtype=np.int64)]
            ok = np.isfinite(row_vals) & np.isfinite(target_values)
            entry["target"] = {"n": int(ok.sum()), "pearson": clean(pearson(row_vals, target_values)),
                               "spearman": clean(spearman(row_vals, target_values))}
        combo_rows.append(entry)

    def pair_entry(i: int, j: int) -> _PairAgreement:
        return {"pearson": clean(pear[i, j]), "spearman": clean(spear[i, j]), "map_pearson": clean(map_mean[i, j]),
                "map_clips": int(counts[i, j])}

    model_ids = [m.id for m in models]
    reducers = list(dict.fromkeys(r for _, r in combos))
    index = {c: i for i, c in enumerate(combos)}
    model_pairs = []
    for r in reducers:
        for a in range(len(model_ids)):
            for b in range(a + 1, len(model_ids)):
                i, j = index[(model_ids[a], r)], index[(model_ids[b], r)]
                model_pairs.append({"reducer": r, "a": model_ids[a], "b": model_ids[b], **pair_entry(i, j)})
    reducer_pairs = []
    for m in model_ids:
        for a in range(len(reducers)):
            for b in range(a + 1, len(reducers)):
                i, j = index[(m, reducers[a])], index[(m, reducers[b])]
                reducer_pairs.append({"model_id": m, "a": reducers[a], "b": reducers[b], **pair_entry(i, j)})

    statuses: dict[str, dict[str, int]] = {}
    for mid in model_ids:
        counter: dict[str, int] = {}
        for c in clips:
            counter[c.status[mid]] = counter.get(c.status[mid], 0) + 1
        statuses[mid] = counter
    return {
        "schema": SCHEMA,
        "input": os.path.abspath(input),
        "rows": n_rows,
        "clips": len(clips),
        "clips_ok": {mid: statuses[mid].get("ok", 0) for mid in model_ids},
        "clip_statuses": statuses,
        "models": [{"name": name, **_describe(m)} for name, m in zip(model_names, models, strict=True)],
        "reducers": reducers,
        "target": target,
        "settings": settings,
        "combinations": combo_rows,
        "labels": [_label(c) for c in combos],
        "agreement": {
            "pearson": _matrix(pear), "spearman": _matrix(spear), "map_pearson": _matrix(map_mean),
        },
        "model_pairs": model_pairs,
        "reducer_pairs": reducer_pairs,
        "notes": [
            "distributions and clip agreement are over distinct clips (rows sharing a clip count once)",
            "map_pearson: Pearson correlation of the two reduced maps (clipped to [0, 1]) within a clip, "
            "averaged over the clips where both exist and neither is constant",
            "target correlations are over table rows with a finite target and an ok value",
        ],
    }


def _describe(model: SaliencyModel) -> dict[str, Any]:
    try:
        info = model.describe()
    except Exception:  # noqa: BLE001
        info = {}
    keep = ("id", "kind", "algorithm", "sha256", "preset", "fingerprint")
    return {k: info.get(k) for k in keep if k in info} | {"id": model.id}


def _matrix(m: np.ndarray) -> list[list[float | None]]:
    return [[clean(v) for v in row] for row in m]


def _markdown(rep: dict[str, Any]) -> str:
    lines = [f"# salmat compare: {os.path.basename(rep['input'])}", "",
             f"{rep['rows']} rows, {rep['clips']} distinct clips; models: "
             + ", ".join(f"`{m['id']}`" for m in rep["models"])
             + "; reducers: " + ", ".join(f"`{r}`" for r in rep["reducers"])
             + f"; {rep['settings']['frame_samples']} frames per clip ({rep['settings']['sampling']} sampling), "
             f"EMA α = {rep['settings']['ema_alpha']}.", "",
             "Clips computed per model: " + ", ".join(f"`{k}` {v}/{rep['clips']}" for k, v in rep["clips_ok"].items())
             + ".", "", "## Model agreement at the same reducer", "",
             "Pearson / Spearman of the clips' `saliency_mean`; map r: mean per-clip Pearson correlation "
             "of the reduced maps.", "",
             "| reducer | model A | model B | Pearson | Spearman | map r |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for p in rep["model_pairs"]:
        lines.append(f"| {p['reducer']} | {p['a']} | {p['b']} | {fmt(p['pearson'])} | {fmt(p['spearman'])} | "
                     f"{fmt(p['map_pearson'])} |")
    lines += ["", "## Reducer agreement within a model", "",
              "| model | reducer A | reducer B | Pearson | Spearman | map r |",
              "| --- | --- | --- | ---: | ---: | ---: |"]
    for p in rep["reducer_pairs"]:
        lines.append(f"| {p['model_id']} | {p['a']} | {p['b']} | {fmt(p['pearson'])} | {fmt(p['spearman'])} | "
                     f"{fmt(p['map_pearson'])} |")
    lines += ["", "## Distribution of clip values", "",
              "| model / reducer | n | mean | std | min | median | max | mean var |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in rep["combinations"]:
        d = c["mean"]
        lines.append(f"| {c['label']} | {d['n']} | {fmt(d['mean'], 4)} | {fmt(d['std'], 4)} | {fmt(d['min'], 4)} | "
                     f"{fmt(d['median'], 4)} | {fmt(d['max'], 4)} | {fmt(c['var']['mean'], 5)} |")
    if rep["target"]:
        lines += ["", f"## Correlation with `{rep['target']}`", "",
                  "| model / reducer | n | Pearson | Spearman |", "| --- | ---: | ---: | ---: |"]
        for c in rep["combinations"]:
            t = c["target"]
            lines.append(f"| {c['label']} | {t['n']} | {fmt(t['pearson'])} | {fmt(t['spearman'])} |")
    files = rep.get("files", {})
    if "agreement_png" in files:
        lines += ["", "## Pictures", "", f"![agreement matrices]({files['agreement_png']})"]
    if "target_png" in files:
        lines += ["", f"![clip values against {rep['target']}]({files['target_png']})"]
    lines += ["", "Notes: " + "; ".join(rep["notes"]) + "."]
    return "\n".join(lines) + "\n"


# ---- pictures -----------------------------------------------------------------------


def _plot_agreement(rep: dict[str, Any], combos: Sequence[tuple[str, str]], path: str) -> None:
    plt = pyplot()
    labels = [f"{m}\n{r}" if len(combos) <= 8 else f"{m} / {r}" for m, r in combos]
    k = len(combos)
    side = max(3.2, 0.45 * k + 1.6)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 0.8, side), dpi=80, constrained_layout=True)
    for ax, key, title in ((axes[0], "pearson", "clip saliency_mean: Pearson"),
                           (axes[1], "map_pearson", "reduced maps: mean per-clip r")):
        m = np.array([[np.nan if v is None else v for v in row] for row in rep["agreement"][key]], dtype=float)
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(k), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(k), labels, fontsize=7)
        ax.set_title(title, fontsize=9)
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if np.isfinite(m[i, j]):
                        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if abs(m[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=axes, shrink=0.7)
    save_figure(fig, path)
    plt.close(fig)


def _plot_target(long: pa.Table, target_values: np.ndarray, models: Sequence[SaliencyModel], reducers: Sequence[str],
                 target: str | None, path: str) -> None:
    plt = pyplot()
    nm, nr = len(models), len(reducers)
    fig, axes = plt.subplots(nm, nr, figsize=(2.4 * nr + 0.4, 2.2 * nm + 0.4), dpi=80, squeeze=False,
                             constrained_layout=True)
    data = long.to_pydict()
    rows = np.array(data["row"])
    means = np.array([np.nan if v is None else v for v in data["mean"]], dtype=float)
    mids = np.array(data["model_id"], dtype=object)
    reds = np.array(data["reducer"], dtype=object)
    for a, model in enumerate(models):
        for b, r in enumerate(reducers):
            sel = (mids == model.id) & (reds == r)
            ax = axes[a, b]
            ax.scatter(means[sel], target_values[rows[sel]], s=10, alpha=0.7)
            ax.set_title(f"{model.id}\n{r}", fontsize=7)
            ax.tick_params(labelsize=6)
            if b == 0:
                ax.set_ylabel(target, fontsize=7)
            if a == nm - 1:
                ax.set_xlabel("saliency_mean", fontsize=7)
    save_figure(fig, path)
    plt.close(fig)
