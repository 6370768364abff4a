"""Built-in classical saliency models: shape/range contract and that they find the obvious target."""

from __future__ import annotations

import numpy as np
import pytest

from salmat.errors import ClipError
from salmat.frames import YuvFrame
from salmat.models.base import SaliencyModel
from salmat.models.classical import (
    BUILTIN_MODELS,
    DEFAULT_MODEL_ID,
    ImageSignatureModel,
    PqftModel,
    SpectralResidualModel,
    image_signature_map,
    working_size,
)

MODEL_IDS = sorted(BUILTIN_MODELS)


def _texture(height: int, width: int, seed: int = 0, block: int = 8) -> np.ndarray:
    """Luma noise texture: coarse blocks (visible at working size) plus fine grain, 8-bit scale."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(100.0, 20.0, (-(-height // block), -(-width // block)))
    luma = np.kron(coarse, np.ones((block, block)))[:height, :width]
    return luma + rng.normal(0.0, 8.0, (height, width))


def _disc_mask(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    cy, cx, r = 0.4 * height, 0.6 * width, 0.1 * min(height, width)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _frame(luma: np.ndarray, u: int | np.ndarray = 128, v: int | np.ndarray = 128) -> YuvFrame:
    """8-bit 4:2:0 frame; chroma planes are ceil(H/2) x ceil(W/2)."""
    height, width = luma.shape
    chroma = (-(-height // 2), -(-width // 2))
    y = np.clip(np.round(luma), 16, 235).astype(np.uint8)
    u_plane = np.broadcast_to(np.asarray(u, dtype=np.uint8), chroma).copy()
    v_plane = np.broadcast_to(np.asarray(v, dtype=np.uint8), chroma).copy()
    return YuvFrame(y, u_plane, v_plane, 8)


def _disc_frame(height: int, width: int, seed: int = 0) -> tuple[YuvFrame, np.ndarray]:
    luma = _texture(height, width, seed, block=max(2, width // 60))
    mask = _disc_mask(height, width)
    luma[mask] = 225.0
    return _frame(luma), mask


def _check_contract(maps: np.ndarray, n: int, height: int, width: int) -> None:
    assert maps.dtype == np.float32
    assert maps.shape == (n, height, width)
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0


@pytest.mark.parametrize("model_id", MODEL_IDS)
@pytest.mark.parametrize("size", [(270, 480), (143, 177), (177, 143)])
def test_disc_is_salient(model_id: str, size: tuple[int, int]) -> None:
    height, width = size
    frame, mask = _disc_frame(height, width)
    maps = BUILTIN_MODELS[model_id]().predict([frame])
    _check_contract(maps, 1, height, width)
    inside, outside = maps[0][mask].mean(), maps[0][~mask].mean()
    assert inside > outside + 0.25, (inside, outside)
    # The peak lies on the disc or its rim (the signature favours the rim), not in the texture.
    peak_y, peak_x = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
    radius = 0.1 * min(height, width)
    assert np.hypot(peak_y - 0.4 * height, peak_x - 0.6 * width) <= 1.5 * radius


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_several_frames_stack_in_order(model_id: str) -> None:
    a, _ = _disc_frame(90, 160, seed=1)
    b, _ = _disc_frame(90, 160, seed=2)
    model = BUILTIN_MODELS[model_id]()
    maps = model.predict([a, b, a])
    _check_contract(maps, 3, 90, 160)
    assert not np.allclose(maps[0], maps[1])
    if model_id != "pqft_v1":  # PQFT's third map also sees motion from b
        np.testing.assert_array_equal(maps[0], maps[2])
    np.testing.assert_array_equal(model.predict([a, b, a]), maps)  # deterministic


@pytest.mark.parametrize("model_id", MODEL_IDS)
@pytest.mark.parametrize("size", [(120, 200), (143, 177)])
def test_flat_frame_gives_zero_map(model_id: str, size: tuple[int, int]) -> None:
    frame = _frame(np.full(size, 90.0), u=100, v=150)
    maps = BUILTIN_MODELS[model_id]().predict([frame, frame])
    _check_contract(maps, 2, *size)
    assert np.all(maps == 0.0)


@pytest.mark.parametrize("model_id", MODEL_IDS)
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (1, 301), (301, 1), (3, 5)])
def test_tiny_frames(model_id: str, size: tuple[int, int]) -> None:
    luma = _texture(*size, seed=3, block=1)
    maps = BUILTIN_MODELS[model_id]().predict([_frame(luma)])
    _check_contract(maps, 1, *size)


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_ten_bit_matches_eight_bit(model_id: str) -> None:
    frame8, mask = _disc_frame(180, 320, seed=4)
    rng = np.random.default_rng(5)
    # A 10-bit rendition: same picture plus sub-8-bit detail that rounds away.
    y10 = frame8.y.astype(np.uint16) * 4 + rng.integers(-1, 2, frame8.y.shape).astype(np.uint16)
    frame10 = YuvFrame(y10, frame8.u.astype(np.uint16) * 4, frame8.v.astype(np.uint16) * 4, 10)
    model = BUILTIN_MODELS[model_id]()
    m8, m10 = model.predict([frame8])[0], model.predict([frame10])[0]
    _check_contract(model.predict([frame10]), 1, 180, 320)
    assert np.abs(m8 - m10).mean() < 0.01
    assert np.abs(m8 - m10).max() < 0.05
    assert m10[mask].mean() > m10[~mask].mean() + 0.25


def test_signature_ignores_round_off_in_flat_channels() -> None:
    """sign() would blow 1e-9 noise in an achromatic a/b channel up to full strength; the floor stops it."""
    rng = np.random.default_rng(9)
    lab = np.zeros((36, 64, 3))
    lab[..., 0] = rng.uniform(20.0, 80.0, (36, 64))
    noisy = lab.copy()
    noisy[..., 1:] = rng.normal(0.0, 1e-9, (36, 64, 2))
    clean_map = image_signature_map(lab, sigma=3.2, coef_floor=1e-3)
    np.testing.assert_allclose(image_signature_map(noisy, sigma=3.2, coef_floor=1e-3), clean_map)
    assert not np.allclose(image_signature_map(noisy, sigma=3.2, coef_floor=0.0), clean_map)


def test_chroma_only_disc_found_by_colour_models() -> None:
    """A red disc with the same luma texture as its surround: only colour reveals it."""
    height, width = 180, 320
    luma = _texture(height, width, seed=6, block=5)
    mask = _disc_mask(height, width)
    v = np.full((90, 160), 128, dtype=np.uint8)
    v[_disc_mask(90, 160)] = 200
    frame = _frame(luma, v=v)
    for model in (ImageSignatureModel(), PqftModel()):
        sal = model.predict([frame])[0]
        assert sal[mask].mean() > sal[~mask].mean() + 0.25, model.id
    # Spectral residual sees luma only: the disc is invisible to it.
    gray_only = SpectralResidualModel().predict([frame])[0]
    np.testing.assert_array_equal(gray_only, SpectralResidualModel().predict([_frame(luma)])[0])


def test_pqft_motion_makes_a_moving_patch_salient() -> None:
    height, width = 180, 320
    background = _texture(height, width, seed=7, block=5)
    patch = (slice(60, 110), slice(200, 260))
    moved = background.copy()
    # Same texture statistics, different content: salient only through motion.
    moved[patch] = _texture(height, width, seed=8, block=5)[patch]
    mask = np.zeros((height, width), dtype=bool)
    mask[patch] = True
    model = PqftModel()
    with_motion = model.predict([_frame(background), _frame(moved)])[1]
    alone = model.predict([_frame(moved)])[0]  # first frame: no motion channel
    assert with_motion[mask].mean() > with_motion[~mask].mean() + 0.3
    assert with_motion[mask].mean() > alone[mask].mean() + 0.2


def test_mixed_sizes_rejected_and_empty_input() -> None:
    a, _ = _disc_frame(90, 160)
    b, _ = _disc_frame(92, 160)
    model = BUILTIN_MODELS[DEFAULT_MODEL_ID]()
    with pytest.raises(ClipError, match="one map size per clip") as exc:
        model.predict([a, b])
    assert exc.value.status == "decode-failed"
    empty = model.predict([])
    assert empty.dtype == np.float32 and empty.shape == (0, 0, 0)


def test_registry_protocol_and_describe() -> None:
    assert DEFAULT_MODEL_ID == "image_signature_v1"
    assert set(BUILTIN_MODELS) == {"image_signature_v1", "spectral_residual_v1", "pqft_v1"}
    models = [factory() for factory in BUILTIN_MODELS.values()]
    for model_id, model in zip(BUILTIN_MODELS, models):
        assert isinstance(model, SaliencyModel)
        assert model.id == model_id
        assert model.fingerprint.startswith(f"{model_id}:algo=")
        info = model.describe()
        assert set(info) == {"id", "kind", "algorithm", "reference", "parameters", "sha256"}
        assert info["id"] == model_id and info["kind"] == "builtin" and info["sha256"] is None
        assert info["parameters"]["working_width"] == 64
    assert len({m.fingerprint for m in models}) == len(models)
    # Same parameters -> same fingerprint; any parameter change -> a new one.
    assert ImageSignatureModel().fingerprint == ImageSignatureModel().fingerprint
    assert ImageSignatureModel(sigma_frac=0.04).fingerprint != ImageSignatureModel().fingerprint
    assert SpectralResidualModel(working_width=128).fingerprint != SpectralResidualModel().fingerprint


def test_working_size_keeps_aspect() -> None:
    assert working_size(1080, 1920) == (36, 64)
    assert working_size(1920, 1080) == (114, 64)
    assert working_size(1, 1000) == (1, 64)
    assert working_size(143, 177) == (52, 64)
