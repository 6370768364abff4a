"""The ONNX adapter and its preprocessing presets, on small graphs with known weights."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

import onnx_graphs as graphs
from conftest import one_line_message, sha256_of
from salmat.errors import ClipError, SalmatError
from salmat.frames import YuvFrame
from salmat.models import load_model
from salmat.models.onnx import describe_model_file, format_model_description, load_onnx_model

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


# ---- helpers (plain NumPy; nothing here calls salmat) ------------------------


def random_frame(rng: np.random.Generator, height: int, width: int, bit_depth: int = 8) -> YuvFrame:
    ch, cw = (height + 1) // 2, (width + 1) // 2
    if bit_depth == 8:
        lo_y, hi_y, lo_c, hi_c, dtype = 16, 236, 16, 241, np.uint8
    else:
        s = 1 << (bit_depth - 8)
        lo_y, hi_y, lo_c, hi_c, dtype = 16 * s, 236 * s, 16 * s, 241 * s, np.uint16
    return YuvFrame(
        rng.integers(lo_y, hi_y, (height, width)).astype(dtype),
        rng.integers(lo_c, hi_c, (ch, cw)).astype(dtype),
        rng.integers(lo_c, hi_c, (ch, cw)).astype(dtype),
        bit_depth,
    )


def flat_frame(height: int, width: int, y: int = 126) -> YuvFrame:
    ch, cw = (height + 1) // 2, (width + 1) // 2
    return YuvFrame(
        np.full((height, width), y, np.uint8), np.full((ch, cw), 128, np.uint8), np.full((ch, cw), 128, np.uint8)
    )


def expected_conv_sigmoid(y: np.ndarray, u: np.ndarray, v: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """The historical preprocessing + conv 3→1 (3×3, zero pad 1) + sigmoid, in float64 NumPy."""
    if bit_depth > 8:
        shift = bit_depth - 8
        y, u, v = ((p.astype(np.int64) + (1 << (shift - 1))) >> shift for p in (y, u, v))
    h, w = y.shape
    yy = (y.astype(np.float64) - 16) / 219
    cb = (np.repeat(np.repeat(u, 2, 0), 2, 1)[:h, :w].astype(np.float64) - 128) / 224
    cr = (np.repeat(np.repeat(v, 2, 0), 2, 1)[:h, :w].astype(np.float64) - 128) / 224
    rgb = np.stack([yy + 1.5748 * cr, yy - 0.1873 * cb - 0.4681 * cr, yy + 1.8556 * cb])
    rgb = np.clip(rgb, 0, 1)
    norm = (rgb - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
    padded = np.zeros((3, hp + 2, wp + 2))  # the pad to 32, plus the conv's own 1-pixel zero border
    padded[:, 1 : h + 1, 1 : w + 1] = norm
    weights = graphs.CONV_WEIGHTS[0].astype(np.float64)
    acc = np.full((hp, wp), float(graphs.CONV_BIAS[0]))
    for c in range(3):
        for i in range(3):
            for j in range(3):
                acc += weights[c, i, j] * padded[c, i : i + hp, j : j + wp]
    return (1.0 / (1.0 + np.exp(-acc)))[:h, :w]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx_models")
    graphs.save(graphs.conv_sigmoid(), d / "conv.onnx")
    graphs.save(graphs.conv_sigmoid(batch="N"), d / "conv_batch.onnx")
    graphs.save(graphs.conv_sigmoid(activation="Identity"), d / "conv_linear.onnx")
    graphs.save(graphs.conv_sigmoid(height=320, width=320), d / "conv_320.onnx")
    graphs.save(graphs.conv_sigmoid(weights=graphs.CONV_WEIGHTS * 0.5), d / "conv_half.onnx")
    graphs.save(graphs.encoder_decoder(), d / "enc_dec.onnx")
    graphs.save(graphs.wrong_rank(), d / "wrong_rank.onnx")
    graphs.save(graphs.four_channel_input(), d / "four_channels.onnx")
    graphs.save(graphs.two_channel_output(), d / "two_channel_output.onnx")
    graphs.save(graphs.nan_output(), d / "nan.onnx")
    graphs.save(graphs.shrinking_output(), d / "shrinking.onnx")
    (d / "garbage.onnx").write_bytes(b"this is not a protobuf \x00\x01\x02")
    return d


# ---- vmaf-student: the historical preprocessing ---------------------------


@pytest.mark.parametrize("height,width", [(37, 45), (99, 177)])
def test_vmaf_student_matches_independent_numpy(model_dir, height, width):
    rng = np.random.default_rng(height)
    frames = [random_frame(rng, height, width) for _ in range(2)]
    model = load_onnx_model(model_dir / "conv.onnx")
    maps = model.predict(frames)
    assert maps.shape == (2, height, width) and maps.dtype == np.float32
    for got, f in zip(maps, frames):
        np.testing.assert_allclose(got, expected_conv_sigmoid(f.y, f.u, f.v), atol=1e-5, rtol=0)


def test_vmaf_student_is_the_default_preset(model_dir):
    assert load_onnx_model(model_dir / "conv.onnx").describe()["preset"] == "vmaf-student"
    assert load_model(model_path=model_dir / "conv.onnx").describe()["preset"] == "vmaf-student"


def test_ten_bit_frames_are_rounded_to_eight_bits_first(model_dir):
    rng = np.random.default_rng(10)
    f = random_frame(rng, 33, 50, bit_depth=10)
    got = load_onnx_model(model_dir / "conv.onnx").predict([f])[0]
    np.testing.assert_allclose(got, expected_conv_sigmoid(f.y, f.u, f.v, bit_depth=10), atol=1e-5, rtol=0)


def test_vmaf_student_takes_the_output_as_is(model_dir):
    # A linear head returns values far outside [0, 1]; the historical preset does not clip them
    # (the temporal stage clips the reduced map).
    rng = np.random.default_rng(3)
    maps = load_onnx_model(model_dir / "conv_linear.onnx").predict([random_frame(rng, 40, 40)])
    assert maps.min() < 0.0 or maps.max() > 1.0


@pytest.mark.parametrize("height,width", [(99, 177), (540, 960), (241, 321)])
def test_encoder_decoder_needs_and_gets_padding(model_dir, height, width):
    rng = np.random.default_rng(width)
    model = load_onnx_model(model_dir / "enc_dec.onnx")
    frames = [random_frame(rng, height, width) for _ in range(2)]
    maps = model.predict(frames)
    assert maps.shape == (2, height, width)
    assert np.isfinite(maps).all() and 0.0 <= maps.min() and maps.max() <= 1.0
    # The same frame alone gives the same map: one frame per call for a batch-1 model.
    np.testing.assert_array_equal(model.predict(frames[1:])[0], maps[1])


def test_batch_dynamic_model_gives_the_same_maps(model_dir):
    rng = np.random.default_rng(5)
    frames = [random_frame(rng, 64, 80) for _ in range(11)]  # more than one batch of MAX_BATCH
    fixed = load_onnx_model(model_dir / "conv.onnx")
    dynamic = load_onnx_model(model_dir / "conv_batch.onnx")
    assert fixed.batch_fixed and not dynamic.batch_fixed
    np.testing.assert_allclose(dynamic.predict(frames), fixed.predict(frames), atol=1e-6, rtol=0)


def test_frames_of_different_sizes_in_one_call_fail_the_clip(model_dir):
    rng = np.random.default_rng(6)
    model = load_onnx_model(model_dir / "conv.onnx")
    with pytest.raises(ClipError) as exc:
        model.predict([random_frame(rng, 32, 32), random_frame(rng, 40, 32)])
    # The one frame-size check (`frames.common_size`): a clip whose frames change size is a decode fault.
    assert exc.value.status == "decode-failed" and "32x40" in exc.value.message


# ---- run-time failures → model-failed ---------------------------------------


def test_nan_output_is_model_failed(model_dir):
    model = load_onnx_model(model_dir / "nan.onnx")
    with pytest.raises(ClipError) as exc:
        model.predict([flat_frame(20, 30)])
    assert exc.value.status == "model-failed"
    assert "non-finite" in exc.value.message


def test_wrong_output_shape_is_model_failed(model_dir):
    model = load_onnx_model(model_dir / "shrinking.onnx")
    with pytest.raises(ClipError) as exc:
        model.predict([flat_frame(64, 64)])
    assert exc.value.status == "model-failed"
    assert "shape" in exc.value.message


# ---- load-time validation → SalmatError -------------------------------------


@pytest.mark.parametrize(
    "name,needle",
    [
        ("wrong_rank.onnx", "rank 3"),
        ("four_channels.onnx", "4 channels"),
        ("two_channel_output.onnx", "2 channels"),
        ("garbage.onnx", "cannot load"),
        ("missing.onnx", "not found"),
    ],
)
def test_unusable_models_are_refused_at_load(model_dir, name, needle):
    with pytest.raises(SalmatError) as exc:
        load_onnx_model(model_dir / name)
    assert needle in one_line_message(exc)


def test_fixed_size_model_needs_a_resizing_preset(model_dir):
    with pytest.raises(SalmatError) as exc:
        load_onnx_model(model_dir / "conv_320.onnx")
    assert "u2net" in one_line_message(exc)


def test_unknown_preset_and_device_are_refused(model_dir):
    with pytest.raises(SalmatError) as exc:
        load_onnx_model(model_dir / "conv.onnx", preprocess="imagenet-ish")
    assert "vmaf-student" in one_line_message(exc)
    with pytest.raises(SalmatError):
        load_onnx_model(model_dir / "conv.onnx", device="tpu")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA provider present")
def test_cuda_without_provider_is_refused_and_auto_falls_back(model_dir):
    with pytest.raises(SalmatError) as exc:
        load_onnx_model(model_dir / "conv.onnx", device="cuda")
    assert "onnxruntime-gpu" in one_line_message(exc)
    assert load_onnx_model(model_dir / "conv.onnx", device="auto").providers == ["CPUExecutionProvider"]


# ---- u2net and custom presets ---------------------------------------------


def test_u2net_preset_resizes_and_minmax_normalises(model_dir):
    rng = np.random.default_rng(7)
    model = load_onnx_model(model_dir / "conv_320.onnx", preprocess="u2net")
    maps = model.predict([random_frame(rng, 99, 177) for _ in range(2)])
    assert maps.shape == (2, 99, 177)
    np.testing.assert_allclose(maps.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-6)
    # A flat frame gives a flat map: zeros, not 0/0.
    assert np.isfinite(model.predict([flat_frame(50, 60)])).all()


def test_custom_preset_from_toml(model_dir, tmp_path):
    cfg = tmp_path / "linear.toml"
    cfg.write_text('size = "native"\nnormalize = "none"\noutput = "sigmoid"\ninput_name = "input"\n')
    model = load_onnx_model(model_dir / "conv_linear.onnx", preprocess=f"custom:{cfg}")
    got = model.predict([flat_frame(9, 11, y=126)])[0]
    gray = (126 - 16) / 219  # U = V = 128: R = G = B = Y'
    interior = 1 / (1 + np.exp(-(graphs.CONV_WEIGHTS.sum() * gray + graphs.CONV_BIAS[0])))
    np.testing.assert_allclose(got[1:-1, 1:-1], interior, atol=1e-6)
    assert model.describe()["preset"] == "custom:linear.toml"


def test_custom_preset_from_json_with_resize_and_mean_std(model_dir, tmp_path):
    cfg = tmp_path / "p.json"
    cfg.write_text(
        json.dumps({"size": "resize:64x48", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channels": "bgr"})
    )
    maps = load_onnx_model(model_dir / "conv.onnx", preprocess=f"custom:{cfg}").predict([flat_frame(30, 31)])
    assert maps.shape == (1, 30, 31)


@pytest.mark.parametrize(
    "text,needle",
    [
        ('sise = "native"\n', "unknown key 'sise'"),
        ('size = "pad:0"\n', "size"),
        ('size = "resize:320"\n', "size"),
        ('output = "softmax"\n', "output"),
        ('normalize = "imagenet"\nmean = [0, 0, 0]\nstd = [1, 1, 1]\n', "not both"),
        ("mean = [0, 0]\nstd = [1, 1, 1]\n", "mean"),
        ("size = \n", "cannot parse"),
    ],
)
def test_custom_preset_errors_are_one_line(model_dir, tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(SalmatError) as exc:
        load_onnx_model(model_dir / "conv.onnx", preprocess=f"custom:{cfg}")
    assert needle in one_line_message(exc)


def test_custom_preset_file_must_exist(model_dir, tmp_path):
    with pytest.raises(SalmatError) as exc:
        load_onnx_model(model_dir / "conv.onnx", preprocess=f"custom:{tmp_path / 'nope.toml'}")
    assert "not found" in one_line_message(exc)


# ---- identity: id, fingerprint, describe -----------------------------------


def test_id_is_the_stem_or_model_id(model_dir):
    assert load_onnx_model(model_dir / "enc_dec.onnx").id == "enc_dec"
    assert load_onnx_model(model_dir / "enc_dec.onnx", model_id="my_student").id == "my_student"
    # A label that claims a known model the file is not is refused (tests/test_model_names.py).


def test_fingerprint_tracks_weights_and_preset_not_the_path(model_dir, tmp_path):
    base = load_onnx_model(model_dir / "conv.onnx").fingerprint
    assert load_onnx_model(model_dir / "conv_half.onnx").fingerprint != base
    assert load_onnx_model(model_dir / "conv.onnx", preprocess="u2net").fingerprint != base
    cfg = tmp_path / "c.toml"
    cfg.write_text('output = "sigmoid"\n')
    assert load_onnx_model(model_dir / "conv.onnx", preprocess=f"custom:{cfg}").fingerprint != base
    copy = shutil.copy(model_dir / "conv.onnx", tmp_path / "renamed.onnx")
    assert load_onnx_model(copy, model_id="other").fingerprint == base


def test_describe_and_describe_model_file(model_dir):
    path = model_dir / "enc_dec.onnx"
    sha = sha256_of(path)
    facts = describe_model_file(path)
    assert facts["id"] == "enc_dec" and facts["sha256"] == sha
    assert facts["inputs"] == [{"name": "input", "shape": [1, 3, "H", "W"], "type": "tensor(float)"}]
    assert facts["outputs"] == [{"name": "saliency_map", "shape": [1, 1, "H", "W"], "type": "tensor(float)"}]
    text = format_model_description(facts)
    assert sha in text and "saliency_map" in text

    d = load_onnx_model(path, threads=1).describe()
    json.dumps(d)  # JSON-able for the audit
    assert d["sha256"] == sha and d["preset"] == "vmaf-student" and d["threads"] == 1
    assert d["input"]["name"] == "input" and d["output"]["name"] == "saliency_map"
    assert d["providers"] == (["CPUExecutionProvider"] if d["runtime"] == "onnxruntime" else ["OpenVINO CPU"])
