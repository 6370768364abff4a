"""`salmat audit`: the signal-mix audit of a feature table against its quality target.

For each numeric feature column: finite ratio, spread (std, IQR), Pearson and
Spearman with the target; redundant pairs (|r| ≥ 0.95), complementary pairs
(|r| ≤ 0.70 with both |r_target| ≥ 0.20), the feature families (`families`), the
saliency family's status, and the incremental value of the saliency columns: K-fold
cross-validated SROCC and PLCC of a ridge regression on the other features, with and
without the saliency columns, and a paired bootstrap interval of the difference; the
same, on the same folds, for the ROI-weighted columns over baseline + plain PSNR/SSIM,
and for each saliency set (prefix, model) on its own.

The features are the audited sets' saliency and ROI columns plus every numeric column whose name is
not another quality target's (`dmos`, `mos_std`, `vmaf_neg`: they would leak the
target), an id's (`clip_id`, `frame_index`, a saved pandas index) or provenance's
(`name_role`); `features` names the others instead, `exclude` removes columns,
and the report says why each column was left out. `target="auto"` with two
candidate targets in the table is an error: which one to predict is the user's call.

Per-frame tables (a `frame_index`/`frame` column beside a clip key such as
`dis_basename`, `src` or `clip_id`, or any table given `group_by`) are first
reduced to one row per clip by the mean, so frames don't inflate n.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..command_options import AuditOptions
from ..errors import SalmatError
from ..option_spec import named, passing
from ..outputs import preflight, write_json, write_text
from ..tables import TableReader
from .columns import CLIP_KEYS, FRAME_COLUMNS, floats, group_mean, is_numeric, pick_target, select_features
from .families import SaliencySet, families, saliency_sets
from .gains import family_summary, roi_findings, set_findings
from .plot import plot
from .report import markdown
from .stats import (
    COMPLEMENT_R,
    COMPLEMENT_TARGET_R,
    MIN_FINITE,
    REDUNDANT_R,
    WEAK_RHO,
    GainSettings,
    feature_stats,
    incremental,
    pairs,
    saliency_status,
)

SCHEMA = "salmat.signal-audit/v1"

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
        preflight([(f"{named('out')} ({w})", os.path.join(opts.out, w)) for w in _written(opts.plots)],
                  [name] if os.path.exists(name) else [])
    report = _report(inputs, name, opts)
    return AuditReport(report, _write_files(report, opts.out, opts.plots) if opts.out is not None else {})


@dataclass
class _Inputs:
    """What the audit reads off the table: the target, the features, their values per row (or group)."""

    target: str
    features: list[str]
    left_out: list[dict[str, str]]
    sets: list[SaliencySet]
    x: dict[str, np.ndarray]
    y: np.ndarray
    rows_in: int
    grouping: dict[str, Any] | None
    names: list[str]

    @property
    def sal_cols(self) -> list[str]:
        return [c for s in self.sets for c in s.saliency]

    @property
    def configurations(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for s in self.sets:
            for label, n in s.configurations.items():
                merged[label] = merged.get(label, 0) + n
        return dict(sorted(merged.items()))


def _inputs(table: pa.Table, name: str, opts: AuditOptions) -> _Inputs:
    names = table.column_names
    target = pick_target(names, opts.target, name)
    if not is_numeric(table.schema.field(target).type):
        raise SalmatError(f"target column {target!r} is not numeric; pass {named('target')} COLUMN")
    frame_col = next((c for c in FRAME_COLUMNS if c in names), None)
    if opts.group_by is not None and opts.group_by not in names:
        raise SalmatError(f"{name} has no column {opts.group_by!r}; pass {named('group_by')} COLUMN")
    if opts.group_by == target:  # each group would be one target value: nothing left to audit
        raise SalmatError(f"{target!r} is the target; it can't also be {named('group_by')}: group rows by a clip key "
                          f"instead, e.g. {passing('group_by', 'clip_id')}")
    key = opts.group_by or (next((c for c in CLIP_KEYS if c in names), None) if frame_col else None)
    sets, others = saliency_sets(table, name, target, opts.saliency_columns, opts.saliency_prefixes, opts.exclude)
    set_cols = [c for s in sets for c in s.columns]
    features, left_out = select_features(table, name, target, key, set_cols, others, opts.features, opts.exclude)
    data = {c: floats(table, c) for c in features + [target]}
    grouping = None
    if key is not None:
        data = group_mean(data, table.column(key), key)
        grouping = {"key": key, "frame_column": frame_col, "rows_in": table.num_rows, "groups": len(data[target])}
    has_target = np.isfinite(data[target])
    y = data[target][has_target]
    if y.size < 3:
        raise SalmatError(f"{name}: only {y.size} row(s) with a finite {target!r}; the audit needs at least 3")
    x = {c: data[c][has_target] for c in features}
    return _Inputs(target, features, left_out, sets, x, y, table.num_rows, grouping, names)


def _report(inputs: _Inputs, name: str, opts: AuditOptions) -> dict[str, Any]:
    i = inputs
    fams = families(i.features, i.sets)
    feats = feature_stats(i.features, i.x, i.y, {c: fam for fam, cols in fams.items() for c in cols})
    by_name = {f["column"]: f for f in feats}
    redundant, complementary = pairs(i.features, i.x, by_name)
    gains = GainSettings(opts.folds, opts.bootstrap, opts.ridge_alpha, opts.seed)
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
        "families": family_summary(fams, by_name),
        "redundant_pairs": redundant,
        "complementary_pairs": complementary,
        "saliency": {**saliency_status(fams["saliency"], by_name), "configurations": i.configurations},
        "incremental": incremental(i.x, i.y, i.features, fams["saliency"], by_name, gains),
        "roi": roi_findings(i.x, i.y, fams, by_name, gains),
        "sets": set_findings(i.x, i.y, fams, i.sets, by_name, gains, i.names),
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
            plot(report, png)
            files["png"] = png
            report["plot"] = os.path.basename(png)
        except SalmatError as exc:
            report["plot"] = None
            report["plot_skipped"] = str(exc)
    write_json(files["json"], report)
    write_text(files["md"], markdown(report))
    return files

