"""The audit's figure (`signal_audit.png`): signed Spearman per feature, coloured by family,
and the cross-validated SROCC without and with the saliency columns."""

from __future__ import annotations

from typing import Any

from ..plots import fmt

FAMILY_COLORS = {"baseline": "#1b9e77", "plain_fr": "#7570b3", "roi": "#e7298a", "saliency": "#d95f02"}
FAMILY_COLOR_NAMES = {"baseline": "green", "plain_fr": "purple", "roi": "pink", "saliency": "orange"}


def plot(rep: dict[str, Any], path: str) -> None:
    """Signed Spearman per feature (coloured by family) and, when computed, the cross-validated SROCC
    without and with the saliency columns and without and with the ROI-weighted columns."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    feats = rep["features"][:30]
    gains = _gain_bars(rep)
    height = max(2.4, 0.24 * len(feats) + 1.0)
    fig, axes = plt.subplots(1, 2 if gains else 1, figsize=(8.5 if gains else 5.5, height), dpi=80, squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]} if gains else None, constrained_layout=True)
    ax = axes[0, 0]
    names = [f["column"] for f in feats][::-1]
    rho = [f["spearman"] if f["spearman"] is not None else 0.0 for f in feats][::-1]
    colors = [FAMILY_COLORS.get(f.get("family", ""), FAMILY_COLORS["baseline"]) for f in feats][::-1]
    ax.barh(range(len(feats)), rho, color=colors)
    ax.set_yticks(range(len(feats)), names, fontsize=7)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"Spearman with {rep['target']}", fontsize=8)
    ax.set_title(f"features (n = {rep['rows']}); " + ", ".join(f"{name} {FAMILY_COLOR_NAMES[name]}" for name in
                 dict.fromkeys(f.get("family", "baseline") for f in feats)), fontsize=7)
    ax.tick_params(labelsize=7)
    if gains:
        ax = axes[0, 1]
        labels, vals, bar_colors, titles = zip(*gains, strict=True)
        ax.bar(labels, vals, color=bar_colors)
        ax.set_ylim(min(0.0, min(vals) - 0.05), 1.0)
        ax.set_title("\n".join(["CV SROCC", *(t for t in titles if t)]), fontsize=7)
        ax.tick_params(labelsize=7)
    save_figure(fig, path)
    plt.close(fig)


def _gain_bars(rep: dict[str, Any]) -> list[tuple[str, float, str, str]]:
    """(label, SROCC, colour, title part) of each bar: the saliency gain's two fits, the ROI gain's two."""
    bars = []
    for gain, without, with_, color, name in (
            (_incremental(rep), "no sal.", "+ sal.", FAMILY_COLORS["saliency"], "sal."),
            ((rep.get("roi") or {}).get("gain"), "plain FR", "+ ROI", FAMILY_COLORS["roi"], "ROI")):
        if gain is None or gain["status"] != "done":
            continue
        lo, hi = gain["ci95"]["srocc"]
        title = f"{name} Δ = {fmt(gain['delta']['srocc'])} [{fmt(lo)}, {fmt(hi)}]"
        bars += [(without, gain["without"]["srocc"], FAMILY_COLORS["baseline"], title),
                 (with_, gain["with"]["srocc"], color, "")]
    return bars


def _incremental(rep: dict[str, Any]) -> dict[str, Any] | None:
    """The incremental entry under the gain's keys (`without`, `with`)."""
    inc = rep["incremental"]
    if inc["status"] != "done":
        return None
    return {**inc, "without": inc["without_saliency"], "with": inc["with_saliency"]}
