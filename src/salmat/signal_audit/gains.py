"""What each family adds: the families' best columns, what ROI weighting adds over plain
PSNR/SSIM, and each saliency set's own gains, all cross-validated on the same folds.

- ROI gain: baseline + plain FR, then + the ROI-weighted columns (Engelke et al. 2010 and
  Ma, Zhang & Wang 2010 found saliency-weighted pooling helps some metrics, not all: the
  audit measures it on the user's own target).
- Per set: its ROI gain the same way, and its saliency gain: baseline + plain FR + the
  set's ROI columns, then + its saliency_mean/saliency_var.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..plots import clean
from .families import SaliencySet, counterpart
from .stats import FeatureStats, GainSettings, cv_gain, saliency_status

NO_ROI = "no ROI-weighted columns (sw_psnr_y, roi_psnr_y, …); `salmat materialize --reference-column COL` writes them"


def family_summary(fams: dict[str, list[str]], by_name: dict[str, FeatureStats]) -> dict[str, dict[str, Any]]:
    """Each family's columns and its column of largest |Spearman| with the target."""
    out: dict[str, dict[str, Any]] = {}
    for name, cols in fams.items():
        rhos = [(abs(rho), c) for c in cols if (rho := by_name[c]["spearman"]) is not None]
        best = max(rhos) if rhos else None
        out[name] = {"columns": list(cols), "best": best[1] if best else None,
                     "max_abs_spearman": clean(best[0]) if best else None}
    return out


def roi_findings(x: dict[str, np.ndarray], y: np.ndarray, fams: dict[str, list[str]],
                 by_name: dict[str, FeatureStats], settings: GainSettings) -> dict[str, Any]:
    """What the ROI-weighted columns (all sets') add over baseline + plain PSNR/SSIM, and each
    ROI column's |Spearman| beside its plain counterpart's."""
    roi, plain = fams["roi"], fams["plain_fr"]
    out: dict[str, Any] = {"columns": list(roi), "plain_columns": list(plain)}
    if not roi:
        return {**out, "status": "missing", "reason": NO_ROI}
    gain = cv_gain(x, y, fams["baseline"] + plain, roi, by_name, settings)
    return {**out, "status": gain["status"], "gain": gain, "versus_plain": _versus_plain(roi, plain, by_name),
            "verdict": roi_verdict(gain, bool(plain))}


def roi_verdict(gain: dict[str, Any], has_plain: bool) -> str:
    over = "plain PSNR/SSIM" if has_plain else "the baseline (the table has no plain psnr_y/ssim_y)"
    if gain["status"] != "done":
        return f"not computed: {gain['reason']}"
    if gain["adds"]:
        return f"ROI weighting adds predictive value over {over} (SROCC CI above 0)"
    return f"no clear gain over {over} (the SROCC CI includes 0 or lies below it)"


def _versus_plain(roi: list[str], plain: list[str], by_name: dict[str, FeatureStats]) -> list[dict[str, Any]]:
    rows = []
    for c in roi:
        p = counterpart(c, plain)
        if p is None:
            continue
        rho, rho_plain = by_name[c]["spearman"], by_name[p]["spearman"]
        diff = abs(rho) - abs(rho_plain) if rho is not None and rho_plain is not None else None
        rows.append({"column": c, "plain": p, "spearman": rho, "plain_spearman": rho_plain,
                     "abs_spearman_gain": clean(diff)})
    return rows


def set_findings(x: dict[str, np.ndarray], y: np.ndarray, fams: dict[str, list[str]], sets: list[SaliencySet],
                 by_name: dict[str, FeatureStats], settings: GainSettings, names: list[str]) -> list[dict[str, Any]]:
    """Each set (prefix, model) on its own: its saliency status, its ROI gain, its saliency gain."""
    base = fams["baseline"] + fams["plain_fr"]
    out = []
    for s in sets:
        roi = [c for c in s.roi if c in by_name]
        sal = [c for c in s.saliency if c in by_name]
        entry = s.describe(names)
        entry["saliency"] = saliency_status(sal, by_name)
        entry["roi_gain"] = cv_gain(x, y, base, roi, by_name, settings) if roi else None
        entry["saliency_gain"] = cv_gain(x, y, base + roi, sal, by_name, settings) if sal else None
        out.append(entry)
    return out
