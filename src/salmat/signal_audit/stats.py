"""The audit's statistics: each feature's spread and correlation with the target, redundant
and complementary pairs, the saliency family's status, and cross-validated ridge fits with and
without a set of columns (the incremental value), with a paired bootstrap interval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import numpy as np

from ..plots import clean, fmt, pearson, spearman

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
    family: str
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


def feature_stats(features: list[str], x: dict[str, np.ndarray], y: np.ndarray,
                  family: dict[str, str]) -> list[FeatureStats]:
    """Each feature's spread and correlations with the target, ranked by |Spearman|, then |Pearson|."""
    feats: list[FeatureStats] = []
    for c in features:
        v = x[c]
        fin = np.isfinite(v)
        vf = v[fin]
        q75, q25 = (np.percentile(vf, [75, 25]) if vf.size else (math.nan, math.nan))
        feats.append({
            "column": c,
            "saliency": family[c] == "saliency",
            "family": family[c],
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


def pairs(features: list[str], x: dict[str, np.ndarray],
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


def saliency_status(sal_cols: list[str], by_name: dict[str, FeatureStats]) -> dict[str, Any]:
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


def incremental(x: dict[str, np.ndarray], y: np.ndarray, features: list[str], sal_cols: list[str],
                by_name: dict[str, FeatureStats], settings: GainSettings) -> dict[str, Any]:
    """The saliency columns' value over every other feature, under the report's historical keys."""
    gain = cv_gain(x, y, [c for c in features if c not in sal_cols], sal_cols, by_name, settings)
    info = {"base_columns": gain.pop("base_columns"), "saliency_columns": gain.pop("added_columns"),
            **{k: gain.pop(k) for k in ("folds", "ridge_alpha", "bootstrap", "seed", "n")}}
    if gain["status"] != "done":
        reason = "no usable saliency columns (missing, constant or non-finite)" if not info["saliency_columns"] \
            else gain["reason"]
        return {**info, "status": "skipped", "reason": reason}
    return {**info, "status": "done", "without_saliency": gain["without"], "with_saliency": gain["with"],
            "delta": gain["delta"], "ci95": gain["ci95"],
            "verdict": ("the saliency columns add predictive value (SROCC CI above 0)" if gain["adds"] else
                        "no clear added value (the SROCC CI includes 0 or lies below it)")}


@dataclass(frozen=True)
class GainSettings:
    """The cross-validation every gain of one report shares: the same folds (from `seed`) for all."""

    folds: int
    bootstrap: int
    alpha: float
    seed: int


def cv_gain(x: dict[str, np.ndarray], y: np.ndarray, base: list[str], added: list[str],
            by_name: dict[str, FeatureStats], settings: GainSettings) -> dict[str, Any]:
    """K-fold cross-validated SROCC and PLCC of a ridge fit on `base`, then on `base + added`, with
    a paired bootstrap 95% interval of the difference. Columns that are mostly non-finite or
    constant are dropped first. Every call with the same seed uses the same folds."""
    base_cols = [c for c in base if _usable(c, by_name)]
    added_cols = [c for c in added if _usable(c, by_name)]
    n = y.size
    info: dict[str, Any] = {"base_columns": base_cols, "added_columns": added_cols, "folds": settings.folds,
                            "ridge_alpha": settings.alpha, "bootstrap": settings.bootstrap, "seed": settings.seed,
                            "n": int(n)}
    if not added_cols:
        return {**info, "status": "skipped", "reason": "no usable columns to add (missing, constant or non-finite)"}
    if n < max(MIN_ROWS_FOR_CV, settings.folds * 2):
        return {**info, "status": "skipped", "reason": f"only {n} rows; cross-validation needs ≥ "
                                                         f"{max(MIN_ROWS_FOR_CV, settings.folds * 2)}"}
    rng = np.random.default_rng(settings.seed)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[rng.permutation(n)] = np.arange(n) % settings.folds
    pred_base = _cv_predict(x, y, base_cols, fold_of, settings.folds, settings.alpha)
    pred_full = _cv_predict(x, y, base_cols + added_cols, fold_of, settings.folds, settings.alpha)
    without = {"srocc": _srocc(pred_base, y), "plcc": _plcc(pred_base, y)}
    with_ = {"srocc": _srocc(pred_full, y), "plcc": _plcc(pred_full, y)}
    ci = _bootstrap_ci(rng, pred_base, pred_full, y, settings.bootstrap)
    return {**info, "status": "done", "without": {k: clean(v) for k, v in without.items()},
            "with": {k: clean(v) for k, v in with_.items()},
            "delta": {k: clean(with_[k] - without[k]) for k in without}, "ci95": ci,
            "adds": ci["srocc"][0] is not None and ci["srocc"][0] > 0}


def _bootstrap_ci(rng: np.random.Generator, pred_base: np.ndarray, pred_full: np.ndarray, y: np.ndarray,
                  bootstrap: int) -> dict[str, list[float | None]]:
    """Percentile interval of the paired difference (full − base) over resampled rows."""
    ci: dict[str, list[float | None]] = {"srocc": [None, None], "plcc": [None, None]}
    if bootstrap <= 0:
        return ci
    n = y.size
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
    return ci


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

