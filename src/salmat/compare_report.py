"""`salmat compare`'s report: figures per combination and per pair, Markdown, and pictures.

Pure presentation of what `salmat.compare` computed: the distributions and
agreement figures of `report.json`, `report.md`, and the PNG plots.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import pyarrow as pa

from .models import SaliencyModel
from .plots import clean, fmt, pearson, pyplot, save_figure, spearman
from .values import OK

SCHEMA = "salmat.compare/v1"


@dataclass
class ClipOutcome:
    """One distinct source: per-(model, reducer) stats, per-model status, per-pair map correlations."""

    status: dict[str, str]                         # model id → status
    error: dict[str, str | None]
    stats: dict[tuple[str, str], tuple[float, float]]
    map_corr: np.ndarray | None = None             # (k, k) over combos, NaN where undefined


def source_arrays(clips: Sequence[ClipOutcome], combo: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per distinct source: mean and var (NaN unless ok) and the status, for one (model, reducer)."""
    model_id, reducer = combo
    nan = (math.nan, math.nan)
    mean = np.array([c.stats.get(combo, nan)[0] for c in clips], dtype=np.float64)
    var = np.array([c.stats.get(combo, nan)[1] for c in clips], dtype=np.float64)
    return mean, var, [c.status[model_id] for c in clips]


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


def build_report(input: str, clips: Sequence[ClipOutcome], combos: Sequence[tuple[str, str]], row_source: np.ndarray,
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
            row_vals = source_arrays(clips, (m, r))[0][np.asarray(row_source, dtype=np.int64)]
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
        "clips_ok": {mid: statuses[mid].get(OK, 0) for mid in model_ids},
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


def markdown(rep: dict[str, Any]) -> str:
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
    lines += _pair_rows(rep["model_pairs"], "reducer")
    lines += ["", "## Reducer agreement within a model", "",
              "| model | reducer A | reducer B | Pearson | Spearman | map r |",
              "| --- | --- | --- | ---: | ---: | ---: |"]
    lines += _pair_rows(rep["reducer_pairs"], "model_id")
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


def plot_agreement(rep: dict[str, Any], combos: Sequence[tuple[str, str]], path: str) -> None:
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


def plot_target(long: pa.Table, target_values: np.ndarray, models: Sequence[SaliencyModel], reducers: Sequence[str],
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


def _pair_rows(pairs: list[dict[str, Any]], held: str) -> list[str]:
    """One Markdown row per agreement pair: what the pair shares (`held`), then A, B and the figures."""
    return [f"| {p[held]} | {p['a']} | {p['b']} | {fmt(p['pearson'])} | {fmt(p['spearman'])} | "
            f"{fmt(p['map_pearson'])} |" for p in pairs]
