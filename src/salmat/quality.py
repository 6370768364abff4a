"""Full-reference luma quality, plain and weighted by a saliency map (NumPy and OpenCV only).

One frame pair (distorted luma, reference luma, same size and bit depth) and a saliency
map give every value of the ROI family (`frame_quality`); `pool` turns per-frame values
into a clip's. The formulas and their sources are in docs/quality.md:

- PSNR: 10·log10(peak² / MSE) with peak = 2**bits − 1, capped as libvmaf's `psnr` feature
  caps it: at 6·bits + 12 dB (60 dB at 8 bits, 72 dB at 10), so identical frames give the
  cap, never inf.
- SSIM: Wang et al. 2004 with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03,
  population (co)variances, over the valid area (the 5-pixel border the window doesn't
  fit in is left out): what scikit-image's `structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=peak)` averages. Written here with
  OpenCV's separable Gaussian filter (same kernel as SciPy's at truncate 3.5) rather than
  calling scikit-image, because the weighted and ROI poolings need the SSIM *map*, and
  OpenCV's filter is several times faster on 1080p frames (float32 on samples centred at
  P/2, within 1e-6 of float64 in a frame's mean; see `ssim_map`).
- Saliency-weighted pooling: the map normalised to sum 1 over the pixels pooled (an
  all-zero map, or one with no finite positive mass, falls back to uniform weights);
  weighted PSNR is the PSNR of the weighted MSE, weighted SSIM the weighted mean of the
  SSIM map.
- ROI and background: the round(F·N) most salient pixels (at least 1, at most N − 1, so
  both sides are non-empty), ties broken by a stable sort on pixel order (row-major);
  they partition the frame, so F_roi·MSE_roi + (1 − F_roi)·MSE_bg is the frame's MSE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from .values import QUALITY_COLUMNS as QUALITY_KEYS
from .values import QUALITY_POOLINGS as POOLINGS

_K1, _K2, _SIGMA, _WINDOW = 0.01, 0.03, 1.5, 11
_BORDER = _WINDOW // 2
# Valid rows per SSIM strip: a strip's five float32 planes (~1 MB each at 1920 wide) stay in
# cache between the blurs and the formula. (Strips on two threads measured 0.91x on the shared
# 2-core machine, against one thread: the worker's cores are already busy; see docs/performance.md.)
_STRIP_ROWS = 128


def peak(bit_depth: int) -> int:
    """The largest sample value at `bit_depth` bits (255, 1023)."""
    return (1 << bit_depth) - 1


def psnr_cap(bit_depth: int) -> float:
    """libvmaf's PSNR ceiling (its `psnr` feature without `min_sse`): 6·bits + 12 dB."""
    return float(6 * bit_depth + 12)


def psnr_from_mse(mse: float, bit_depth: int) -> float:
    """PSNR in dB of a mean squared error, capped at `psnr_cap` (so MSE 0 is the cap, not inf)."""
    cap = psnr_cap(bit_depth)
    if not mse > 0.0:
        return cap
    return min(10.0 * math.log10(peak(bit_depth) ** 2 / mse), cap)


def squared_error_map(dis: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(dis − ref)² per pixel, float64."""
    diff = dis.astype(np.float64) - ref.astype(np.float64)
    return np.square(diff, out=diff)


def _blur(plane: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(plane, (_WINDOW, _WINDOW), _SIGMA, sigmaY=_SIGMA, borderType=cv2.BORDER_REFLECT)


def ssim_map(dis: np.ndarray, ref: np.ndarray, bit_depth: int) -> np.ndarray:
    """The SSIM map over the valid area, (H − 10, W − 10) float32 (see the module note).

    float32 (OpenCV's filter is ~3x faster on it than on float64) on samples centred at P/2:
    the variance E[x²] − E[x]² then cancels from at most (P/2)², and a frame's mean SSIM stays
    within 1e-6 of the float64 computation (1080p frames, 8 and 10 bits)."""
    if min(dis.shape) < _WINDOW:
        raise ValueError(f"SSIM needs frames of at least {_WINDOW}x{_WINDOW} pixels, not {dis.shape[1]}x{dis.shape[0]}")
    rows = dis.shape[0] - 2 * _BORDER
    result = np.empty((rows, dis.shape[1] - 2 * _BORDER), dtype=np.float32)
    for start in range(0, rows, _STRIP_ROWS):
        # Valid rows [start, stop) need the input rows [start, stop + 2·border): the blur's
        # window at each of them is whole, so the strip's values are the whole frame's, bit for bit.
        stop = min(start + _STRIP_ROWS, rows)
        window = slice(start, stop + 2 * _BORDER)
        result[start:stop] = _ssim_valid(dis[window], ref[window], bit_depth)
    return result


def _ssim_valid(dis: np.ndarray, ref: np.ndarray, bit_depth: int) -> np.ndarray:
    """The SSIM map over the valid area of `dis` and `ref` (rows and columns the window fits in)."""
    centre = np.float32(peak(bit_depth) / 2)
    x, y = dis.astype(np.float32), ref.astype(np.float32)
    x -= centre
    y -= centre
    c1, c2 = np.float32((_K1 * peak(bit_depth)) ** 2), np.float32((_K2 * peak(bit_depth)) ** 2)
    # Only σx² + σy² enters the formula: one blur of x² + y² instead of two.
    squares = x * x
    squares += y * y
    blurred = [_blur(plane) for plane in (x, y, squares, x * y)]
    # The arithmetic after the blurs runs in place on the valid area only: the same float32
    # operations in the same order as the formula written out, so the same values, in ~half the time.
    mx, my, variances, cxy = (plane[_BORDER:-_BORDER, _BORDER:-_BORDER] for plane in blurred)
    variances -= mx * mx
    variances -= my * my
    cxy -= mx * my
    mx += centre
    my += centre
    num = mx * my
    num *= 2.0
    num += c1
    cxy *= 2.0
    cxy += c2
    num *= cxy
    den = mx * mx
    den += my * my
    den += c1
    variances += c2
    den *= variances
    num /= den
    result: np.ndarray = num
    return result


def valid_area(plane: np.ndarray) -> np.ndarray:
    """The part of a frame-sized array the SSIM map covers."""
    return plane[_BORDER:-_BORDER, _BORDER:-_BORDER]


def normalised_weights(saliency: np.ndarray) -> np.ndarray:
    """`saliency` as float64 weights summing to 1; an all-zero (or unusable) map gives uniform weights."""
    weights = np.array(saliency, dtype=np.float64)
    if not np.isfinite(weights.sum()):  # models' maps are checked finite; this is for direct callers
        weights = np.nan_to_num(weights, nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(weights, 0.0, out=weights)
    total = weights.sum()
    if not total > 0.0 or not math.isfinite(total):
        return np.full(weights.shape, 1.0 / weights.size)
    result: np.ndarray = weights / total
    return result


def roi_size(pixels: int, fraction: float) -> int:
    """round(F·N) pixels (halves up), kept within [1, N − 1] so ROI and background are both non-empty."""
    return min(max(int(math.floor(fraction * pixels + 0.5)), 1), max(pixels - 1, 1))


def roi_mask(saliency: np.ndarray, fraction: float) -> np.ndarray:
    """True on the `roi_size` most salient pixels; equal values go to the earlier pixel (row-major).

    The same set as the first k of a stable argsort by decreasing value, found in linear time:
    the k-th largest value by partition, every pixel above it, then the earliest pixels equal to it."""
    flat = np.asarray(saliency).ravel()
    if not np.isfinite(flat.sum(dtype=np.float64)):  # models' maps are checked finite; this is for direct callers
        flat = np.nan_to_num(flat.astype(np.float64), nan=-np.inf)
    k = roi_size(flat.size, fraction)
    threshold = np.partition(flat, flat.size - k)[flat.size - k]
    mask = flat > threshold
    ties = np.flatnonzero(flat == threshold)[: k - int(mask.sum())]
    mask[ties] = True
    result: np.ndarray = mask.reshape(np.shape(saliency))
    return result


def pearson_cc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (the saliency-benchmark CC); NaN when either is constant."""
    x = np.ascontiguousarray(a, dtype=np.float32)
    y = np.ascontiguousarray(b, dtype=np.float32)
    # OpenCV accumulates in float64; maps live in [0, 1], so the moments don't cancel badly.
    (mx,), (sx,) = (v[:1, 0] for v in cv2.meanStdDev(x))
    (my,), (sy,) = (v[:1, 0] for v in cv2.meanStdDev(y))
    if not (sx > 0.0 and sy > 0.0):
        return math.nan
    cov = float(cv2.mean(cv2.multiply(x, y))[0]) - float(mx) * float(my)
    return max(-1.0, min(1.0, cov / (float(sx) * float(sy))))


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of `values` (float32/64, rows contiguous) where `mask` (bool) is set; NaN over no pixel.
    OpenCV's masked mean accumulates in float64, ~10x faster than NumPy's `sum(where=)`."""
    selected = mask.view(np.uint8)
    count = cv2.countNonZero(selected)
    return float(cv2.mean(values, mask=selected)[0]) if count else math.nan


def frame_quality(dis: np.ndarray, ref: np.ndarray, bit_depth: int, weights_map: np.ndarray,
                  dis_map: np.ndarray, ref_map: np.ndarray, fraction: float) -> dict[str, float]:
    """Every ROI-family value of one frame pair (keys: `QUALITY_KEYS`).

    `dis`, `ref`: luma planes of one size at `bit_depth`; `weights_map`: the saliency map
    that weights them (the reference's or the distorted frame's, at that size); `dis_map`,
    `ref_map`: both maps, for `saliency_shift_cc` (any one size). One squared-error map, one
    SSIM map and one ROI selection serve every value."""
    err = squared_error_map(dis, ref)
    ssim = ssim_map(dis, ref, bit_depth)
    mse, mean_ssim = float(err.mean()), float(ssim.mean())
    roi = roi_mask(weights_map, fraction)
    background = ~roi
    weights = _weights(weights_map)
    if weights is None:  # uniform weights: the plain values, exactly (no round-off of the weighted sums)
        weighted_mse, weighted_ssim = mse, mean_ssim
    else:
        weighted_mse = _weighted_mean(err, weights, mse)
        weighted_ssim = _weighted_mean(ssim, valid_area(weights), mean_ssim)
    return {
        "psnr_y": psnr_from_mse(mse, bit_depth),
        "ssim_y": mean_ssim,
        "sw_psnr_y": psnr_from_mse(weighted_mse, bit_depth),
        "sw_ssim_y": weighted_ssim,
        "roi_psnr_y": psnr_from_mse(_masked_mean(err, roi), bit_depth),
        "roi_ssim_y": _masked_mean(ssim, valid_area(roi)),
        "bg_psnr_y": psnr_from_mse(_masked_mean(err, background), bit_depth),
        "bg_ssim_y": _masked_mean(ssim, valid_area(background)),
        "saliency_shift_cc": pearson_cc(dis_map, ref_map),
    }


def _weights(saliency: np.ndarray) -> np.ndarray | None:
    """`saliency` as non-negative finite float64 weights (unnormalised; `normalised_weights`' rules
    for anything else), or None when they weight every pixel alike (constant, or no usable mass)."""
    weights = np.asarray(saliency, dtype=np.float64)
    low, high = float(weights.min()), float(weights.max())  # NaN propagates to both
    if not (low >= 0.0 and math.isfinite(high)):
        weights = normalised_weights(weights)
        low, high = float(weights.min()), float(weights.max())
    return None if not high > 0.0 or low == high else weights


def _weighted_mean(values: np.ndarray, weights: np.ndarray, uniform: float) -> float:
    """Σ w·v / Σ w over `values`' pixels (`weights` the same shape); `uniform` when the weights there
    have no mass (`normalised_weights`' fallback)."""
    total = float(weights.sum())
    if not total > 0.0:
        return uniform
    # float64 products, summed in float64 by OpenCV, which takes the valid area's strided rows as they are.
    return float(cv2.sumElems(cv2.multiply(weights, values.astype(np.float64, copy=False)))[0]) / total


def pool(values: Sequence[float], method: str) -> float:
    """Per-frame values → one clip value, as libvmaf pools: `mean`, `harmonic` (1 / mean(1 / (x + 1)) − 1,
    defined for the negative SSIM values too as long as x > −1) or `min`. NaN frames are left out; none left: NaN."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if not len(x):
        return math.nan
    if method == "mean":
        return float(x.mean())
    if method == "min":
        return float(x.min())
    if method == "harmonic":
        return float(1.0 / np.mean(1.0 / (x + 1.0)) - 1.0)
    raise ValueError(f"unknown pooling {method!r}; choose one of {', '.join(POOLINGS)}")


def pool_frames(frames: Sequence[dict[str, float]], method: str) -> dict[str, float]:
    """Each ROI-family value pooled over `frames` (`frame_quality` dicts)."""
    return {key: pool([f[key] for f in frames], method) for key in QUALITY_KEYS}
