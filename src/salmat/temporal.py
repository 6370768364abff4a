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

`reduce_all` also takes a model's `WorkingMaps` (small maps plus the frame size):
mean, EMA and motion-weighted are linear, so they run on the small maps and only
their result is upsampled; `max` is not, so it upsamples each frame's map. Both
routes give the same clip maps up to float32 round-off (~1e-7). `reduce_stats`
goes one step further and takes the linear maps' statistics at working size
(`WorkingMaps.stats`; for extreme shapes, where that would need large matrices,
from one upsampled map instead). Memory stays linear in the frame's pixels:
`max` holds two frame-sized float32 buffers, each linear reducer at most one.

Maps are float32 and the reducers work in float32 (a 1080p clip's maps are
66 MB; float64 copies of them cost more than the model). Accumulating eight
float32 terms moves a value by at most a few ulps (~1e-7), far below any
figure anyone reads; `map_stats` accumulates in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import cv2
import numpy as np

from .defaults import DEFAULT_EMA_ALPHA  # noqa: F401 - re-exported: the one default, kept in salmat.defaults
from .maps import WorkingMaps
from .values import REDUCERS as REDUCERS  # re-exported: preview and the tests read it here


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
    """mean|Y_t − Y_{t−1}| / 255; exact for 8-bit planes (an integer sum divided once)."""
    return np.array([_mean_abs_diff(lumas[t], lumas[t - 1]) / 255.0 for t in range(1, len(lumas))],
                    dtype=np.float64)


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        # OpenCV's L1 norm of uint8 sums exactly (block-wise integers into a double), ~10x
        # faster than absdiff + sum.
        return cv2.norm(a, b, cv2.NORM_L1) / a.size
    return float(np.mean(np.abs(a.astype(np.float64) - b)))


def reduce_mean(maps: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, np.add.reduce(maps, axis=0, dtype=np.float32) / np.float32(len(maps)))


def reduce_ema(maps: np.ndarray, alpha: float) -> np.ndarray:
    acc: np.ndarray = maps[0].astype(np.float32, copy=True)
    keep = np.float32(1.0 - alpha)
    for frame_map in maps[1:]:
        acc *= keep
        acc += np.float32(alpha) * frame_map
    return acc


def reduce_max(maps: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, np.maximum.reduce(maps, axis=0))


def reduce_weighted(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean; zero total weight (a static clip) falls back to the plain mean."""
    total = float(np.sum(weights))
    if total <= 0.0:
        return reduce_mean(maps)
    acc = np.zeros(maps.shape[1:], dtype=np.float32)
    for weight, frame_map in zip(weights / total, maps, strict=False):
        if weight:
            acc += np.float32(weight) * frame_map
    return acc


def reduce_all(
    maps: np.ndarray | WorkingMaps, lumas: Sequence[np.ndarray], ema_alpha: float, *, historical: bool = False,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every reducer from one set of maps, so switching reducer never reruns the model.

    `weights`: the motion weights already read off the lumas (a cached `ClipMaps`); `lumas` is then unused."""
    if weights is None:
        weights = _weights(lumas, historical)
    if isinstance(maps, WorkingMaps):
        return _reduce_working(maps, weights, ema_alpha)
    maps = np.asarray(maps, dtype=np.float32)
    return {
        "mean": reduce_mean(maps),
        "ema": reduce_ema(maps, ema_alpha),
        "max": reduce_max(maps),
        "motion-weighted": reduce_weighted(maps, weights),
    }


def _weights(lumas: Sequence[np.ndarray], historical: bool) -> np.ndarray:
    return historical_motion_weights(lumas) if historical else motion_weights(lumas)


def _reduce_working(maps: WorkingMaps, weights: np.ndarray, ema_alpha: float) -> dict[str, np.ndarray]:
    """Linear reducers on the small maps, upsampled once; the maximum over full-size maps."""
    reduced = {name: maps.upsample(small) for name, small in _linear_small(maps, weights, ema_alpha).items()}
    reduced["max"] = _max_at_frame_size(maps)
    return {name: reduced[name] for name in REDUCERS}


def _linear_small(maps: WorkingMaps, weights: np.ndarray, ema_alpha: float) -> dict[str, np.ndarray]:
    small = np.asarray(maps.maps, dtype=np.float32)
    return {
        "mean": reduce_mean(small),
        "ema": reduce_ema(small, ema_alpha),
        "motion-weighted": reduce_weighted(small, weights),
    }


def reduce_stats(
    maps: np.ndarray | WorkingMaps, lumas: Sequence[np.ndarray], ema_alpha: float, *, historical: bool = False,
    reduced: dict[str, np.ndarray] | None = None, weights: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """`map_stats` of every reducer's clip map (what the engine stores and writes).

    Working-size maps never build a full-size linear clip map: `WorkingMaps.stats`
    gives its statistics from the small one. Only `max` needs full-size maps. A caller
    that also needs the clip maps passes `reduced` (from `reduce_all`), so no full-size
    map is built twice.
    """
    if not isinstance(maps, WorkingMaps):
        reduced = reduced or reduce_all(maps, lumas, ema_alpha, historical=historical, weights=weights)
        return {name: map_stats(reduced[name]) for name in REDUCERS}
    if weights is None:
        weights = _weights(lumas, historical)
    stats = {name: maps.stats(small) for name, small in _linear_small(maps, weights, ema_alpha).items()}
    stats["max"] = map_stats(reduced["max"] if reduced else _max_at_frame_size(maps))
    return {name: stats[name] for name in REDUCERS}


def _max_at_frame_size(maps: WorkingMaps) -> np.ndarray:
    """Per-pixel maximum of the upsampled maps, one frame-sized buffer at a time, clipped once."""
    best = maps.upsample(maps.maps[0], clip=False)
    frame = np.empty_like(best)
    for small in maps.maps[1:]:
        np.maximum(best, maps.upsample(small, frame, clip=False), out=best)
    return np.clip(best, 0.0, 1.0, out=best)


def map_stats(clip_map: np.ndarray) -> tuple[float, float]:
    """(spatial mean, population variance) of the clip map after clipping to [0, 1].

    OpenCV accumulates sums in float64 in one pass; for values in [0, 1] the
    variance it derives agrees with NumPy's two-pass formula to ~1e-12.
    """
    clipped = np.clip(np.asarray(clip_map, dtype=np.float32), 0.0, 1.0)
    mean, std = cv2.meanStdDev(clipped)
    return float(mean[0, 0]), float(std[0, 0]) ** 2
