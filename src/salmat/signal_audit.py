"""`salmat audit`: the signal-mix audit of a feature table against its quality target.

For each numeric feature column: finite ratio, spread (std, IQR), Pearson and
Spearman with the target; redundant pairs (|r| ≥ 0.95), complementary pairs
(|r| ≤ 0.70 with both |r_target| ≥ 0.20), the saliency family's status, and the
incremental value of the saliency columns: K-fold cross-validated SROCC and
PLCC of a ridge regression on the other features, with and without the
saliency columns, and a paired bootstrap interval of the difference.

The features are the saliency columns plus every numeric column whose name is
not another quality target's (`dmos`, `mos_std`, `vmaf_neg`: they would leak the
target), an id's (`clip_id`, `frame_index`, a saved pandas index) or provenance's
(`name_role`); `features` names the others instead, `exclude` removes columns,
and the report says why each column was left out. `target="auto"` with two
candidate targets in the table is an error: which one to predict is the user's call.

Per-frame tables (a `frame_index`/`frame` column beside a clip key such as
`dis_basename`, `src` or `clip_id`, or any table given `group_by`) are first
reduced to one row per clip by the mean, so frames don't inflate n.

(`salmat.audit` is the run-record module of `materialize`; this one is the
`salmat audit` command.)
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SalmatError
from .option_spec import named
from .options import AuditOptions
from .outputs import preflight, write_json, write_text
from .plots import clean, fmt, pearson, spearman
from .rows import configuration_counts
from .tables import TableReader
from .values import OUTPUT_COLUMNS, QUALITY_COLUMNS, VALUE_COLUMNS

SCHEMA = "salmat.signal-audit/v1"
TARGET_CANDIDATES = ("vmaf", "vmaf_score", "mos_raw_0_100", "mos", "dmos", "score")
FRAME_COLUMNS = ("frame_index", "frame", "frame_idx", "frame_num", "frame_number")
CLIP_KEYS = ("dis_basename", "src", "clip_id", "clip", "video", "dis", "ref_basename")
SALIENCY_COLUMNS = VALUE_COLUMNS
# Name tokens (lower case, split at `_`, `-`, spaces, camelCase) that make a column another
# quality target, never a feature: a MOS and what derives from it (dmos, mos_std, predicted_mos),
# a VMAF score (vmaf, vmaf_neg, vmaf_4k), but not VMAF's elementary features (vmaf_feature_adm2_score).
TARGET_TOKENS = ("mos", "dmos", "zmos")
VMAF_TOKEN, VMAF_FEATURE_TOKEN = "vmaf", "feature"
# Names and last tokens of row and clip identifiers: counters and keys carry no signal.
ID_NAMES = frozenset({"id", "uid", "uuid", "idx", "index", "key", "row", "rowid", "row_index", "row_number",
                      *FRAME_COLUMNS, *CLIP_KEYS})
ID_LAST_TOKENS = ("id", "uid", "uuid", "idx")
ID_PREFIXES = ("__index_level_", "unnamed:")   # a DataFrame index saved by pandas (Parquet, CSV)
# The provenance columns `materialize` writes (any --column-prefix): a record of the run, not signal.
PROVENANCE_COLUMNS = tuple(name for name in OUTPUT_COLUMNS.values() if name not in VALUE_COLUMNS + QUALITY_COLUMNS)
# Why a column is not a feature, as the report says it.
LEFT_OUT = {
    "target": "the target",
    "target-like": "another quality target (a MOS or VMAF score)",
    "id": "an id, key or row/frame counter",
    "provenance": "saliency provenance, not signal",
    "group key": "the clip key rows are averaged by",
    "not numeric": "not numeric",
    "excluded": "named by --exclude",
    "not selected": "not named by --features",
}
REDUNDANT_R = 0.95
COMPLEMENT_R = 0.70
COMPLEMENT_TARGET_R = 0.20
WEAK_RHO = 0.20
MIN_FINITE = 0.5
MIN_ROWS_FOR_CV = 10


class FeatureStats(TypedDict):
    """One feature's entry in the report's `features` list."""

    column: str
    saliency: bool
    finite_ratio: float | None
    std: float | None
    iqr: float | None
    pearson: float | None
    spearman: float | None
    n: int
    rank: NotRequired[int]   # set once the features are sorted


class RedundantPair(TypedDict):
    a: str
    b: str
    pearson: float | None


class ComplementaryPair(TypedDict):
    a: str
    b: str
    pearson: float | None
    a_target_r: float
    b_target_r: float


@dataclass
class AuditReport:
    report: dict[str, Any]
    files: dict[str, str]

    @property
    def ranking(self) -> list[str]:
        return [f["column"] for f in self.report["features"]]

    @property
    def incremental(self) -> dict[str, Any] | None:
        return self.report.get("incremental")


def audit_table(input: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                **settings: Any) -> AuditReport:
    """Audit a feature table; writes `signal_audit.json` and `signal_audit.md` into `out` when given.

    `settings` are `salmat.options.AuditOptions`: the `salmat audit` flags with underscores."""
    AuditOptions.build(input=input, out=out, **settings).validate()  # before the table is read
    reader = TableReader(os.fspath(input))
    table = reader.read_columns(reader.schema.names)
    return audit_arrow(table, os.fspath(input), out=out, **settings)


def audit_arrow(table: pa.Table, name: str = "<table>", out: str | os.PathLike[str] | None = None,
                **settings: Any) -> AuditReport:
    """Audit an Arrow table (`name` labels it in messages); `settings` as for `audit_table`."""
    opts = AuditOptions.build(input=name, out=out, **settings)
    opts.validate()
    inputs = _inputs(table, name, opts)
    if opts.out is not None:
        preflight([(f"--out ({w})", os.path.join(opts.out, w)) for w in _written(opts.plots)],
                  [name] if os.path.exists(name) else [])
    report = _report(inputs, name, opts)
    return AuditReport(report, _write_files(report, opts.out, opts.plots) if opts.out is not None else {})


@dataclass
class _Inputs:
    """What the audit reads off the table: the target, the features, their values per row (or group)."""

    target: str
    features: list[str]
    left_out: list[dict[str, str]]
    sal_cols: list[str]
    configurations: dict[str, int]
    x: dict[str, np.ndarray]
    y: np.ndarray
    rows_in: int
    grouping: dict[str, Any] | None


def _inputs(table: pa.Table, name: str, opts: AuditOptions) -> _Inputs:
    names = table.column_names
    target = _pick_target(names, opts.target, name)
    if not _is_numeric(table.schema.field(target).type):
        raise SalmatError(f"target column {target!r} is not numeric; pass {named('target')} COLUMN")
    frame_col = next((c for c in FRAME_COLUMNS if c in names), None)
    if opts.group_by is not None and opts.group_by not in names:
        raise SalmatError(f"{name} has no column {opts.group_by!r}; pass {named('group_by')} COLUMN")
    key = opts.group_by or (next((c for c in CLIP_KEYS if c in names), None) if frame_col else None)
    sal_cols = _saliency_columns(table, name, target, opts.saliency_columns, opts.exclude)
    configurations = _configurations(table, name, sal_cols)
    features, left_out = _select_features(table, name, target, key, sal_cols, opts.features, opts.exclude)
    data = {c: _floats(table, c) for c in features + [target]}
    grouping = None
    if key is not None:
        data = _group_mean(data, table.column(key), key)
        grouping = {"key": key, "frame_column": frame_col, "rows_in": table.num_rows, "groups": len(data[target])}
    has_target = np.isfinite(data[target])
    y = data[target][has_target]
    if y.size < 3:
        raise SalmatError(f"{name}: only {y.size} row(s) with a finite {target!r}; the audit needs at least 3")
    x = {c: data[c][has_target] for c in features}
    return _Inputs(target, features, left_out, sal_cols, configurations, x, y, table.num_rows, grouping)


def _report(inputs: _Inputs, name: str, opts: AuditOptions) -> dict[str, Any]:
    i = inputs
    feats = _feature_stats(i.features, i.x, i.y, i.sal_cols)
    by_name = {f["column"]: f for f in feats}
    redundant, complementary = _pairs(i.features, i.x, by_name)
    return {
        "schema": SCHEMA,
        "input": os.path.abspath(name) if os.path.exists(name) else name,
        "target": i.target,
        "rows": int(i.y.size),
        "rows_in_table": i.rows_in,
        "grouping": i.grouping,
        "columns": {"selected_by": "features" if opts.features else "auto", "features": i.features,
                    "left_out": i.left_out},
        "features": feats,
        "redundant_pairs": redundant,
        "complementary_pairs": complementary,
        "saliency": {**_family(i.sal_cols, by_name), "configurations": i.configurations},
        "incremental": _incremental(i.x, i.y, i.features, i.sal_cols, by_name, opts.folds, opts.bootstrap,
                                    opts.ridge_alpha, opts.seed),
        "thresholds": {"redundant_abs_r": REDUNDANT_R, "complementary_abs_r": COMPLEMENT_R,
                       "complementary_target_abs_r": COMPLEMENT_TARGET_R, "weak_abs_rho": WEAK_RHO,
                       "min_finite_ratio": MIN_FINITE},
    }


def _written(plots: bool) -> list[str]:
    return ["signal_audit.json", "signal_audit.md"] + (["signal_audit.png"] if plots else [])


def _write_files(report: dict[str, Any], out: str, plots: bool) -> dict[str, str]:
    """The JSON, the Markdown and (when matplotlib is there) the PNG; a missing matplotlib is
    recorded in the report, the numbers still stand."""
    files = {"json": os.path.join(out, "signal_audit.json"), "md": os.path.join(out, "signal_audit.md")}
    if plots:
        png = os.path.join(out, "signal_audit.png")
        try:
            _plot(report, png)
            files["png"] = png
            report["plot"] = os.path.basename(png)
        except SalmatError as exc:
            report["plot"] = None
            report["plot_skipped"] = str(exc)
    write_json(files["json"], report)
    write_text(files["md"], markdown(report))
    return files


# ---- inputs ------------------------------------------------------------------------


def _pick_target(names: list[str], target: str | None, where: str) -> str:
    if target and target != "auto":
        if target not in names:
            raise SalmatError(f"{where} has no target column {target!r}; pass {named('target')} COLUMN")
        return target
    found = [c for c in names if c.lower() in TARGET_CANDIDATES]
    if len(found) > 1:   # which one is the quality to predict is the user's call, not the column order's
        raise SalmatError(f"{where} has {len(found)} candidate targets ({', '.join(found)}); "
                          f"pass {named('target')} with the one to predict")
    if not found:
        raise SalmatError(f"{where}: no target column found (looked for {', '.join(TARGET_CANDIDATES)}); "
                          f"pass {named('target')} COLUMN")
    return found[0]


def name_role(column: str) -> str | None:
    """'target-like', 'id' or 'provenance' when a column's name says it is no feature, else None."""
    lower = column.lower()
    if lower.endswith(PROVENANCE_COLUMNS):
        return "provenance"
    tokens = _tokens(column)
    if (lower in TARGET_CANDIDATES or any(t in TARGET_TOKENS for t in tokens)
            or (any(t.startswith(VMAF_TOKEN) for t in tokens) and VMAF_FEATURE_TOKEN not in tokens)):
        return "target-like"
    if lower in ID_NAMES or lower.startswith(ID_PREFIXES) or (tokens and tokens[-1] in ID_LAST_TOKENS):
        return "id"
    return None


def _tokens(column: str) -> list[str]:
    """'predictedMOS_v2' → ['predicted', 'mos', 'v2']."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", column)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _saliency_columns(table: pa.Table, where: str, target: str, given: tuple[str, ...] | None,
                      exclude: tuple[str, ...] | None) -> list[str]:
    """--saliency-columns, else those of saliency_mean/saliency_var that are numeric, not excluded
    and not the target."""
    if not given:
        return [c for c in SALIENCY_COLUMNS if c in table.column_names and c not in (exclude or ())
                and c != target and _is_numeric(table.schema.field(c).type)]
    if target in given:
        raise SalmatError(f"{target!r} is the target; leave it out of {named('saliency_columns')}")
    bad = [c for c in given if c not in table.column_names or not _is_numeric(table.schema.field(c).type)]
    if bad:
        raise SalmatError(f"saliency column(s) {', '.join(bad)} are not numeric columns of {where}; "
                          f"pass {named('saliency_columns')} C,C")
    return list(given)


def _prefix(column: str) -> str | None:
    """`ref_` for `ref_saliency_mean`; None for a column that is no salmat value column."""
    return next((column.removesuffix(v) for v in VALUE_COLUMNS if column.endswith(v)), None)


def _configurations(table: pa.Table, where: str, sal_cols: list[str]) -> dict[str, int]:
    """Rows with a finite value per (model, reducer) that made a saliency column, read from the
    provenance columns beside it (same prefix). Values of two configurations can't be one feature:
    refused. Rows without a recorded model count as 'unrecorded' (a table's own values)."""
    found: dict[str, int] = {}
    for prefix in dict.fromkeys(_prefix(column) for column in sal_cols):
        model_col = f"{prefix}{OUTPUT_COLUMNS['model_id']}" if prefix is not None else ""
        if model_col not in table.column_names:
            continue
        made = [c for c in sal_cols if _prefix(c) == prefix]
        finite = np.logical_or.reduce([np.isfinite(_floats(table, c)) for c in made])
        counts = configuration_counts(table, finite, [model_col, f"{prefix}{OUTPUT_COLUMNS['aggregator']}"])
        for (model, reducer), n in counts.items():
            label = "unrecorded" if model is None else f"{model}/{reducer}"
            found[label] = found.get(label, 0) + n
    known = [label for label in found if label != "unrecorded"]
    if len(known) > 1:
        shown = ", ".join(f"{label} ({n} rows)" for label, n in sorted(found.items(), key=lambda kv: -kv[1]))
        raise SalmatError(f"{where}'s saliency values come from {len(known)} configurations: {shown}; audit one at a "
                          "time (filter the table on saliency_model_id and saliency_aggregator first)")
    return dict(sorted(found.items()))


def _select_features(table: pa.Table, where: str, target: str, key: str | None, sal_cols: list[str],
                     features: tuple[str, ...] | None,
                     exclude: tuple[str, ...] | None) -> tuple[list[str], list[dict[str, str]]]:
    """(the feature columns in table order, the other columns with why each was left out).

    The saliency columns are always features; --features names the others, else every numeric
    column whose name is no target, id or provenance's. --exclude removes columns either way."""
    names = table.column_names
    for setting, given in (("features", features), ("exclude", exclude)):
        unknown = [c for c in given or () if c not in names]
        if unknown:
            raise SalmatError(f"{named(setting)} names {', '.join(map(repr, unknown))}, not column(s) of {where}; "
                              f"its columns: {_some(names)}")
    chosen = set(features or ())
    if target in chosen or target in (exclude or ()):
        raise SalmatError(f"{target!r} is the target; leave it out of {named('features')} and {named('exclude')}")
    if key is not None and key in chosen:
        raise SalmatError(f"{key!r} is the key rows are averaged by; leave it out of {named('features')}")
    wrong = [c for c in features or () if not _is_numeric(table.schema.field(c).type)]
    if wrong:
        raise SalmatError(f"{named('features')} names non-numeric column(s) {', '.join(map(repr, wrong))}; "
                          "an audit feature must hold numbers")
    used, left_out = [], []
    for c in names:
        why = _why_left_out(c, table, target, key, sal_cols, features, exclude)
        if why is None:
            used.append(c)
        else:
            left_out.append({"column": c, "reason": why})
    return used, left_out


def _why_left_out(column: str, table: pa.Table, target: str, key: str | None, sal_cols: list[str],
                  features: tuple[str, ...] | None, exclude: tuple[str, ...] | None) -> str | None:
    """The `LEFT_OUT` reason a column is no feature, or None for a feature. Order matters: what the
    user named wins over what a name suggests."""
    if column == target:
        return "target"
    if column in (exclude or ()):
        return "excluded"
    if column in sal_cols:
        return None
    if column == key:
        return "group key"
    if features:
        return None if column in features else "not selected"
    role = name_role(column)
    if role is None and not _is_numeric(table.schema.field(column).type):
        return "not numeric"
    return role


def _some(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _floats(table: pa.Table, name: str) -> np.ndarray:
    col = pc.cast(table.column(name), pa.float64(), safe=False)
    values: np.ndarray = col.to_numpy(zero_copy_only=False).astype(np.float64)
    return values


def _group_mean(data: dict[str, np.ndarray], key_col: pa.ChunkedArray, key: str) -> dict[str, np.ndarray]:
    """Per-group mean of each column over its finite values (NaN where a group has none)."""
    codes_arr = pc.dictionary_encode(pc.cast(key_col, pa.string())).combine_chunks()
    codes = codes_arr.indices.to_numpy(zero_copy_only=False)
    null = codes_arr.is_null().to_numpy(zero_copy_only=False)
    if null.all():
        raise SalmatError(f"group column {key!r} is empty in every row; pass --group-by COLUMN")
    codes = np.where(null, -1, codes).astype(np.int64)
    groups = len(codes_arr.dictionary)
    keep = codes >= 0
    out: dict[str, np.ndarray] = {}
    for c, v in data.items():
        fin = keep & np.isfinite(v)
        sums = np.bincount(codes[fin], weights=v[fin], minlength=groups)
        counts = np.bincount(codes[fin], minlength=groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def _feature_stats(features: list[str], x: dict[str, np.ndarray], y: np.ndarray,
                   sal_cols: list[str]) -> list[FeatureStats]:
    """Each feature's spread and correlations with the target, ranked by |Spearman|, then |Pearson|."""
    feats: list[FeatureStats] = []
    for c in features:
        v = x[c]
        fin = np.isfinite(v)
        vf = v[fin]
        q75, q25 = (np.percentile(vf, [75, 25]) if vf.size else (math.nan, math.nan))
        feats.append({
            "column": c,
            "saliency": c in sal_cols,
            "finite_ratio": clean(fin.mean() if y.size else 0.0),
            "std": clean(vf.std(ddof=1) if vf.size > 1 else math.nan),
            "iqr": clean(q75 - q25),
            "pearson": clean(pearson(v, y)),
            "spearman": clean(spearman(v, y)),
            "n": int(fin.sum()),
        })
    feats.sort(key=lambda f: (-(abs(f["spearman"]) if f["spearman"] is not None else -1.0),
                              -(abs(f["pearson"]) if f["pearson"] is not None else -1.0), f["column"]))
    for rank, f in enumerate(feats, 1):
        f["rank"] = rank
    return feats


# ---- pairs and family --------------------------------------------------------------


def _pairs(features: list[str], x: dict[str, np.ndarray],
           by_name: dict[str, FeatureStats]) -> tuple[list[RedundantPair], list[ComplementaryPair]]:
    redundant: list[RedundantPair] = []
    complementary: list[ComplementaryPair] = []
    for i, a in enumerate(features):
        for b in features[i + 1:]:
            r = pearson(x[a], x[b])
            if not math.isfinite(r):
                continue
            if abs(r) >= REDUNDANT_R:
                redundant.append({"a": a, "b": b, "pearson": clean(r)})
            ra, rb = by_name[a]["pearson"], by_name[b]["pearson"]
            if (abs(r) <= COMPLEMENT_R and ra is not None and rb is not None
                    and abs(ra) >= COMPLEMENT_TARGET_R and abs(rb) >= COMPLEMENT_TARGET_R):
                complementary.append({"a": a, "b": b, "pearson": clean(r), "a_target_r": ra, "b_target_r": rb})
    redundant.sort(key=lambda p: -abs(p["pearson"] or 0.0))  # never None: only a finite r makes a pair
    complementary.sort(key=lambda p: -(abs(p["a_target_r"]) + abs(p["b_target_r"])))
    return redundant, complementary


def _family(sal_cols: list[str], by_name: dict[str, FeatureStats]) -> dict[str, Any]:
    if not sal_cols:
        return {"status": "missing", "columns": [],
                "reason": "no saliency_mean/saliency_var columns; run `salmat materialize` first"}
    rhos = [abs(rho) for rho in (by_name[c]["spearman"] for c in sal_cols) if rho is not None]
    finite = [by_name[c]["finite_ratio"] or 0.0 for c in sal_cols]
    max_rho = max(rhos) if rhos else None
    if max(finite) < MIN_FINITE:
        status, reason = "weak", f"mostly non-finite (best finite ratio {max(finite):.2f} < {MIN_FINITE})"
    elif max_rho is None or max_rho < WEAK_RHO:
        status, reason = "weak", f"max |Spearman| with the target {fmt(max_rho)} < {WEAK_RHO}"
    else:
        status, reason = "covered", f"max |Spearman| with the target {max_rho:.3f} ≥ {WEAK_RHO}"
    return {"status": status, "columns": list(sal_cols), "max_abs_spearman": clean(max_rho),
            "finite_ratio": {c: by_name[c]["finite_ratio"] for c in sal_cols}, "reason": reason}


# ---- incremental value ------------------------------------------------------------------


def _usable(c: str, by_name: dict[str, FeatureStats]) -> bool:
    f = by_name[c]
    return (f["finite_ratio"] or 0.0) >= MIN_FINITE and (f["std"] or 0.0) > 0


def _incremental(x: dict[str, np.ndarray], y: np.ndarray, features: list[str], sal_cols: list[str],
                 by_name: dict[str, FeatureStats], folds: int, bootstrap: int, alpha: float,
                 seed: int) -> dict[str, Any]:
    base_cols = [c for c in features if c not in sal_cols and _usable(c, by_name)]
    sal_used = [c for c in sal_cols if _usable(c, by_name)]
    n = y.size
    info: dict[str, Any] = {"base_columns": base_cols, "saliency_columns": sal_used, "folds": folds,
                            "ridge_alpha": alpha, "bootstrap": bootstrap, "seed": seed, "n": int(n)}
    if not sal_used:
        return {**info, "status": "skipped", "reason": "no usable saliency columns (missing, constant or non-finite)"}
    if n < max(MIN_ROWS_FOR_CV, folds * 2):
        return {**info, "status": "skipped", "reason": f"only {n} rows; cross-validation needs ≥ "
                                                         f"{max(MIN_ROWS_FOR_CV, folds * 2)}"}
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[rng.permutation(n)] = np.arange(n) % folds
    pred_base = _cv_predict(x, y, base_cols, fold_of, folds, alpha)
    pred_full = _cv_predict(x, y, base_cols + sal_used, fold_of, folds, alpha)
    base = {"srocc": _srocc(pred_base, y), "plcc": _plcc(pred_base, y)}
    full = {"srocc": _srocc(pred_full, y), "plcc": _plcc(pred_full, y)}
    delta = {k: full[k] - base[k] for k in base}
    ci: dict[str, list[float | None]] = {k: [None, None] for k in base}
    if bootstrap > 0:
        boots = {"srocc": np.empty(bootstrap), "plcc": np.empty(bootstrap)}
        for b in range(bootstrap):
            idx = rng.integers(0, n, n)
            yb = y[idx]
            boots["srocc"][b] = _srocc(pred_full[idx], yb) - _srocc(pred_base[idx], yb)
            boots["plcc"][b] = _plcc(pred_full[idx], yb) - _plcc(pred_base[idx], yb)
        for k, v in boots.items():
            v = v[np.isfinite(v)]
            if v.size:
                ci[k] = [clean(np.percentile(v, 2.5)), clean(np.percentile(v, 97.5))]
    helps = ci["srocc"][0] is not None and ci["srocc"][0] > 0
    return {**info, "status": "done",
            "without_saliency": {k: clean(v) for k, v in base.items()},
            "with_saliency": {k: clean(v) for k, v in full.items()},
            "delta": {k: clean(v) for k, v in delta.items()},
            "ci95": ci,
            "verdict": ("the saliency columns add predictive value (SROCC CI above 0)" if helps else
                        "no clear added value (the SROCC CI includes 0 or lies below it)")}


def _cv_predict(x: dict[str, np.ndarray], y: np.ndarray, cols: list[str], fold_of: np.ndarray, folds: int,
                alpha: float) -> np.ndarray:
    pred = np.empty(y.size)
    mat = np.column_stack([x[c] for c in cols]) if cols else np.zeros((y.size, 0))
    for k in range(folds):
        test = fold_of == k
        pred[test] = _ridge_fit_predict(mat[~test], y[~test], mat[test], alpha)
    return pred


def _ridge_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge on standardised features (train statistics; NaN imputed by the train mean), closed form."""
    y_mean = float(y_train.mean())
    if x_train.shape[1] == 0:
        return np.full(x_test.shape[0], y_mean)
    mu = np.nanmean(x_train, axis=0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    xt = np.where(np.isfinite(x_train), x_train, mu)
    xs = np.where(np.isfinite(x_test), x_test, mu)
    sd = xt.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    zt = (xt - mu) / sd
    zs = (xs - mu) / sd
    p = zt.shape[1]
    w = np.linalg.solve(zt.T @ zt + alpha * np.eye(p), zt.T @ (y_train - y_mean))
    return zs @ w + y_mean


def _srocc(pred: np.ndarray, y: np.ndarray) -> float:
    r = spearman(pred, y)
    return 0.0 if not math.isfinite(r) else r


def _plcc(pred: np.ndarray, y: np.ndarray) -> float:
    r = pearson(pred, y)
    return 0.0 if not math.isfinite(r) else r


# ---- markdown ----------------------------------------------------------------------------


def markdown(rep: dict[str, Any]) -> str:
    g = rep["grouping"]
    lines = [f"# salmat audit: {os.path.basename(str(rep['input']))}", "",
             f"Target `{rep['target']}`, n = {rep['rows']}"
             + (f" clips (per-frame table: {g['rows_in']} rows averaged per `{g['key']}`)" if g else " rows")
             + ".", "", *_columns_markdown(rep["columns"]), "", "## Features, ranked by |Spearman| with the target", "",
             "| rank | column | finite | std | IQR | Pearson | Spearman |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for f in rep["features"]:
        name = f"**{_cell(f['column'])}**" if f["saliency"] else _cell(f["column"])
        lines.append(f"| {f['rank']} | {name} | {fmt(f['finite_ratio'], 2)} | {fmt(f['std'], 4)} | "
                     f"{fmt(f['iqr'], 4)} | {fmt(f['pearson'])} | {fmt(f['spearman'])} |")
    s = rep["saliency"]
    lines += ["", f"## Saliency family: **{s['status']}**", "", s["reason"] + "."]
    if s.get("configurations"):
        made = ", ".join(f"{_cell(label)}: {n} rows" for label, n in s["configurations"].items())
        lines += ["", f"Values from (model/reducer): {made}."]
    inc = rep["incremental"]
    lines += ["", "## Incremental value of the saliency columns", ""]
    if inc["status"] != "done":
        lines.append(f"Not computed: {inc['reason']}.")
    else:
        lines += [f"{inc['folds']}-fold cross-validated ridge (α = {inc['ridge_alpha']}, standardised features) on "
                  f"{len(inc['base_columns'])} other feature(s), without and with "
                  + ", ".join(f"`{c}`" for c in inc["saliency_columns"])
                  + f"; 95% paired bootstrap interval over {inc['bootstrap']} resamples.", "",
                  "| | SROCC | PLCC |", "| --- | ---: | ---: |",
                  f"| without saliency | {fmt(inc['without_saliency']['srocc'])} | "
                  f"{fmt(inc['without_saliency']['plcc'])} |",
                  f"| with saliency | {fmt(inc['with_saliency']['srocc'])} | {fmt(inc['with_saliency']['plcc'])} |",
                  f"| difference | {fmt(inc['delta']['srocc'])} [{fmt(inc['ci95']['srocc'][0])}, "
                  f"{fmt(inc['ci95']['srocc'][1])}] | {fmt(inc['delta']['plcc'])} [{fmt(inc['ci95']['plcc'][0])}, "
                  f"{fmt(inc['ci95']['plcc'][1])}] |", "", f"Verdict: {inc['verdict']}."]
    lines += ["", f"## Redundant pairs (|r| ≥ {REDUNDANT_R})", ""]
    lines += [f"- `{p['a']}` ~ `{p['b']}`: r = {fmt(p['pearson'])}" for p in rep["redundant_pairs"]] or ["None."]
    lines += ["", f"## Complementary pairs (|r| ≤ {COMPLEMENT_R}, each |r_target| ≥ {COMPLEMENT_TARGET_R})", ""]
    lines += [f"- `{p['a']}` + `{p['b']}`: r = {fmt(p['pearson'])} (target r {fmt(p['a_target_r'])}, "
              f"{fmt(p['b_target_r'])})" for p in rep["complementary_pairs"]] or ["None."]
    if rep.get("plot"):
        lines += ["", f"![features against the target]({rep['plot']})"]
    return "\n".join(lines) + "\n"


def _columns_markdown(cols: dict[str, Any]) -> list[str]:
    how = "named by `--features`, plus the saliency columns" if cols["selected_by"] == "features" else \
        "every numeric column not named like a target, an id or provenance"
    used = ", ".join(f"`{_cell(c)}`" for c in cols["features"]) or "none"
    lines = ["## Columns", "", f"Features ({how}): {used}."]
    if cols["left_out"]:
        lines += ["", "| left out | why |", "| --- | --- |"]
        lines += [f"| `{_cell(c['column'])}` | {LEFT_OUT[c['reason']]} |" for c in cols["left_out"]]
    return lines


def _cell(name: str) -> str:
    """A column name inside a Markdown table row: a `|` or a line break would split the row."""
    return " ".join(name.split()).replace("|", "\\|")


def _plot(rep: dict[str, Any], path: str) -> None:
    """Signed Spearman per feature (saliency columns highlighted) and, when computed, the incremental SROCC."""
    from .plots import pyplot, save_figure

    plt = pyplot()
    feats = rep["features"][:30]
    inc = rep["incremental"]
    done = inc["status"] == "done"
    height = max(2.4, 0.24 * len(feats) + 1.0)
    fig, axes = plt.subplots(1, 2 if done else 1, figsize=(8.5 if done else 5.5, height), dpi=80, squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]} if done else None, constrained_layout=True)
    ax = axes[0, 0]
    names = [f["column"] for f in feats][::-1]
    rho = [f["spearman"] if f["spearman"] is not None else 0.0 for f in feats][::-1]
    colors = ["#d95f02" if f["saliency"] else "#1b9e77" for f in feats][::-1]
    ax.barh(range(len(feats)), rho, color=colors)
    ax.set_yticks(range(len(feats)), names, fontsize=7)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"Spearman with {rep['target']}", fontsize=8)
    ax.set_title(f"features (n = {rep['rows']}); saliency in orange", fontsize=8)
    ax.tick_params(labelsize=7)
    if done:
        ax = axes[0, 1]
        labels = ["without", "with"]
        vals = [inc["without_saliency"]["srocc"], inc["with_saliency"]["srocc"]]
        ax.bar(labels, vals, color=["#1b9e77", "#d95f02"])
        ax.set_ylim(min(0.0, min(vals) - 0.05), 1.0)
        lo, hi = inc["ci95"]["srocc"]
        ax.set_title(f"CV SROCC; Δ = {fmt(inc['delta']['srocc'])} [{fmt(lo)}, {fmt(hi)}]", fontsize=8)
        ax.tick_params(labelsize=7)
    save_figure(fig, path)
    plt.close(fig)
