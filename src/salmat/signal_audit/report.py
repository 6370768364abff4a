"""The audit's Markdown report (`signal_audit.md`) and its console summary line."""

from __future__ import annotations

import os
from typing import Any

from ..plots import fmt
from .columns import LEFT_OUT
from .families import NO_PREFIX
from .stats import COMPLEMENT_R, COMPLEMENT_TARGET_R, REDUNDANT_R

FAMILY_NAMES = {"baseline": "baseline", "plain_fr": "plain full-reference", "roi": "ROI-weighted",
                "saliency": "saliency"}


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
    lines += ["", *_families_markdown(rep["families"])]
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
    lines += ["", *_roi_markdown(rep["roi"]), "", *_sets_markdown(rep["sets"])]
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


def _families_markdown(fams: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Feature families", "", "| family | columns | best column | max abs Spearman |",
             "| --- | --- | --- | ---: |"]
    for name, f in fams.items():
        cols = ", ".join(f"`{_cell(c)}`" for c in f["columns"]) or "none"
        best = f"`{_cell(f['best'])}`" if f["best"] else "—"
        lines.append(f"| {FAMILY_NAMES[name]} | {cols} | {best} | {fmt(f['max_abs_spearman'])} |")
    return lines


def _roi_markdown(roi: dict[str, Any]) -> list[str]:
    lines = ["## What ROI weighting adds over plain PSNR/SSIM", ""]
    if roi["status"] == "missing":
        return lines + [f"Not computed: {roi['reason']}."]
    gain = roi["gain"]
    if gain["status"] == "done":
        lines += [f"Same folds and ridge as above: baseline + plain full-reference ({len(gain['base_columns'])} "
                  f"column(s)), without and with the ROI-weighted columns ({len(gain['added_columns'])}).", "",
                  *_gain_rows(gain, "without ROI", "with ROI")]
    if roi["versus_plain"]:
        lines += ["", "| ROI column | Spearman | plain column | Spearman | abs Spearman gain |",
                  "| --- | ---: | --- | ---: | ---: |"]
        lines += [f"| `{_cell(v['column'])}` | {fmt(v['spearman'])} | `{_cell(v['plain'])}` | "
                  f"{fmt(v['plain_spearman'])} | {fmt(v['abs_spearman_gain'])} |" for v in roi["versus_plain"]]
    return lines + ["", f"Verdict: {roi['verdict']}."]


def _gain_rows(gain: dict[str, Any], without: str, with_: str) -> list[str]:
    lo, hi = gain["ci95"]["srocc"]
    plo, phi = gain["ci95"]["plcc"]
    return ["| | SROCC | PLCC |", "| --- | ---: | ---: |",
            f"| {without} | {fmt(gain['without']['srocc'])} | {fmt(gain['without']['plcc'])} |",
            f"| {with_} | {fmt(gain['with']['srocc'])} | {fmt(gain['with']['plcc'])} |",
            f"| difference | {fmt(gain['delta']['srocc'])} [{fmt(lo)}, {fmt(hi)}] | "
            f"{fmt(gain['delta']['plcc'])} [{fmt(plo)}, {fmt(phi)}] |"]


def _sets_markdown(sets: list[dict[str, Any]]) -> list[str]:
    lines = ["## Saliency sets, one per model", ""]
    if not sets:
        return lines + ["None: no saliency or ROI columns."]
    lines += ["Each set on its own: ROI gain over baseline + plain full-reference, and saliency gain over "
              "those plus the set's ROI columns (ΔSROCC, 95% interval).", "",
              "| set | model | saliency | ROI gain | saliency gain |", "| --- | --- | --- | --- | --- |"]
    for s in sets:
        model = f"`{_cell(s['model_id'])}`" if s["model_id"] else "unrecorded"
        label = f"`{_cell(s['prefix'])}`" if s["prefix"] else f"`{NO_PREFIX}` (no prefix)"
        lines.append(f"| {label} | {model} | {s['saliency']['status']} | "
                     f"{_delta(s['roi_gain'])} | {_delta(s['saliency_gain'])} |")
    return lines


def _delta(gain: dict[str, Any] | None) -> str:
    if gain is None:
        return "no columns"
    if gain["status"] != "done":
        return "not computed"
    lo, hi = gain["ci95"]["srocc"]
    return f"{fmt(gain['delta']['srocc'])} [{fmt(lo)}, {fmt(hi)}]"


def summary_line(rep: dict[str, Any], out: str | None) -> str:
    """The one line `salmat audit` prints: sizes, family counts, and the two gains' ΔSROCC."""
    inc, roi, cols = rep["incremental"], rep["roi"], rep["columns"]
    delta = inc.get("delta", {}).get("srocc") if inc["status"] == "done" else None
    roi_gain = roi.get("gain") or {}
    roi_delta = roi_gain.get("delta", {}).get("srocc") if roi_gain.get("status") == "done" else None
    fams = ",".join(f"{name}:{len(f['columns'])}" for name, f in rep["families"].items())
    sets = ",".join(f"{s['prefix'] or NO_PREFIX}={s['model_id'] or 'unrecorded'}" for s in rep["sets"]) or "none"
    line = (f"salmat: audit target={rep['target']} n={rep['rows']} features={len(cols['features'])} "
            f"left_out={len(cols['left_out'])} saliency={rep['saliency']['status']} delta_srocc={delta} "
            f"families={fams} roi_delta_srocc={roi_delta} sets={sets} out={out}")
    return line.replace("\r", "\\r").replace("\n", "\\n")  # column names and model ids are the table's: one line
