"""Temporal reducers: per-frame maps (n, H, W) in time order → one clip map.

Pure NumPy, no I/O. The formulas are CONTRACT §4:
- `mean`: arithmetic mean.
- `ema`: m_0 = s_0, m_t = α·s_t + (1 − α)·m_{t−1}.
- `max`: per-pixel maximum.
- `motion-weighted`: weighted mean, w_t = mean(|Y_t − Y_{t−1}|) / 255 for t ≥ 1 on
  8-bit luma of consecutive sampled frames, w_0 = w_1; all-zero weights → plain mean.
  `historical_motion_weights` keeps the earlier tool's formula (w_0 = 1,
  w_t = max(mean|ΔY| / 255, 1e−6)) for `--compat historical` only.
The reduced map is clipped to [0, 1] before `map_stats`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

REDUCERS = ("mean", "ema", "max", "motion-weighted")
DEFAULT_EMA_ALPHA = 0.6


def motion_weights(lumas: Sequence[np.ndarray]) -> np.ndarray:
    """Per-frame weights from mean absolute luma differences (8-bit scale)."""
    diffs = _luma_diffs(lumas)
    if diffs.size == 0:
        return np.ones(len(lumas), dtype=np.float64)
    return np.concatenate([diffs[:1], diffs])


def historical_motion_weights(lumas: Sequence[np.ndarray]) -> np.ndarray:
    """The earlier tool's weights: the first frame 1.0, later frames ≈ 0.01 — first-frame dominated."""
    diffs = np.maximum(_luma_diffs(lumas), 1e-6)
    return np.concatenate([[1.0], diffs])


def _luma_diffs(lumas: Sequence[np.ndarray]) -> np.ndarray:
    return np.array(
        [float(np.mean(np.abs(lumas[t].astype(np.float64) - lumas[t - 1]))) / 255.0 for t in range(1, len(lumas))],
        dtype=np.float64,
    )


def reduce_mean(maps: np.ndarray) -> np.ndarray:
    return maps.mean(axis=0, dtype=np.float64)


def reduce_ema(maps: np.ndarray, alpha: float) -> np.ndarray:
    acc = maps[0].astype(np.float64)
    for frame_map in maps[1:]:
        acc = alpha * frame_map + (1.0 - alpha) * acc
    return acc


def reduce_max(maps: np.ndarray) -> np.ndarray:
    return maps.max(axis=0).astype(np.float64)


def reduce_weighted(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean; zero total weight (a static clip) falls back to the plain mean."""
    total = float(np.sum(weights))
    if total <= 0.0:
        return reduce_mean(maps)
    return np.tensordot(weights / total, maps.astype(np.float64), axes=1)


def reduce_all(
    maps: np.ndarray, lumas: Sequence[np.ndarray], ema_alpha: float, historical: bool = False
) -> dict[str, np.ndarray]:
    """Every reducer from one set of maps, so switching reducer never reruns the model."""
    weights = historical_motion_weights(lumas) if historical else motion_weights(lumas)
    return {
        "mean": reduce_mean(maps),
        "ema": reduce_ema(maps, ema_alpha),
        "max": reduce_max(maps),
        "motion-weighted": reduce_weighted(maps, weights),
    }


def map_stats(clip_map: np.ndarray) -> tuple[float, float]:
    """(spatial mean, population variance) of the clip map after clipping to [0, 1]."""
    clipped = np.clip(clip_map, 0.0, 1.0)
    return float(clipped.mean()), float(clipped.var(ddof=0))
