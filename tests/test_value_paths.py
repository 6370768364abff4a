"""Each value path against an independent computation written here.

Every expected value is computed in this file with NumPy (and onnx/onnxruntime only to build and
run a graph): the BT.709 conversion, the raw `.yuv` layout, per-frame min-max normalisation, the
preset fingerprint and OpenCV's bilinear resize (half-pixel centres, edge samples repeated). The
content is coloured, non-square and odd-sized, and the tolerances sit far below what a plausible
one-line slip changes: `test_each_value_mutant_is_killed` applies twelve such slips (BT.601 for
BT.709, raw U/V swapped, min-max over the whole batch, the preset fingerprint without the tensor
names, maps resized back with nearest, ...) to a copy of their module and shows that the
`check_*` written for it fails on the changed code and holds on the real one.

Each `check_*` reaches salmat through module attributes (`color.rgb_planes`, not an imported
name), so the changed copy swapped in by `mutant` is what it runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import onnx_graphs as graphs
from salmat import color, decode, maps
from salmat.frames import YuvFrame
from salmat.models import classical, presets
from salmat.models import onnx as onnx_models
from salmat.sources import ClipSpec
from salmat.values import SamplingOptions

HEIGHT, WIDTH = 23, 37  # odd, non-square: chroma 12x19


def coloured_frame(seed: int, height: int = HEIGHT, width: int = WIDTH, bit_depth: int = 8) -> YuvFrame:
    """Random limited-range planes, strongly coloured (chroma far from 128)."""
    rng = np.random.default_rng(seed)
    ch, cw = (height + 1) // 2, (width + 1) // 2
    scale = 1 << (bit_depth - 8)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    y = rng.integers(16, 236, (height, width)) * scale + rng.integers(0, scale, (height, width))
    u = rng.choice([30, 60, 200, 230], (ch, cw)) * scale
    v = rng.choice([25, 70, 190, 235], (ch, cw)) * scale
    return YuvFrame(y.astype(dtype), u.astype(dtype), v.astype(dtype), bit_depth)


# ---- BT.709 limited range, written out ----------------------------------------------------


def bt709_rgb(y8: np.ndarray, u8: np.ndarray, v8: np.ndarray) -> np.ndarray:
    """(3, H, W) float64: each chroma sample covers 2x2 luma samples (cropped), BT.709 limited range."""
    h, w = y8.shape
    u = np.repeat(np.repeat(u8.astype(np.float64), 2, 0), 2, 1)[:h, :w]
    v = np.repeat(np.repeat(v8.astype(np.float64), 2, 0), 2, 1)[:h, :w]
    luma, cb, cr = (y8 - 16.0) / 219.0, (u - 128.0) / 224.0, (v - 128.0) / 224.0
    kr = 0.2126
    kb = 0.0722
    kg = 1.0 - kr - kb
    r = luma + 2 * (1 - kr) * cr
    b = luma + 2 * (1 - kb) * cb
    g = luma - (2 * kb * (1 - kb) / kg) * cb - (2 * kr * (1 - kr) / kg) * cr
    return np.clip(np.stack([r, g, b]), 0.0, 1.0)


def _rounded_to_8bit(plane: np.ndarray, depth: int) -> np.ndarray:
    """Nearest 8-bit code, halves up: 10-bit v → (v + 2) // 4."""
    step = 1 << (depth - 8)
    return np.minimum((plane.astype(np.int64) + step // 2) // step, 255)


def check_rgb_planes_are_bt709() -> None:
    for seed, depth in ((1, 8), (2, 10)):
        frame = coloured_frame(seed, bit_depth=depth)
        want = bt709_rgb(*(_rounded_to_8bit(p, depth) for p in (frame.y, frame.u, frame.v)))
        # float32 arithmetic against float64, and the rounded-off matrix terms (4 digits): < 1e-4
        np.testing.assert_allclose(color.rgb_planes(frame), want, atol=1e-4, rtol=0)


def check_builtin_models_convert_bt709() -> None:
    """The built-in models' own conversion, at a frame already of working size (64 wide) with flat
    chroma, so the box averaging changes nothing and only the matrix decides."""
    rng = np.random.default_rng(3)
    height, width = classical.working_size(37, 64)[0], 64
    y = rng.integers(16, 236, (height, width)).astype(np.uint8)
    for cb, cr in ((40, 220), (210, 60), (128, 230)):
        u = np.full(((height + 1) // 2, width // 2), cb, np.uint8)
        v = np.full(((height + 1) // 2, width // 2), cr, np.uint8)
        got = classical._small_rgb(YuvFrame(y, u, v), (height, width))
        np.testing.assert_allclose(np.moveaxis(got, -1, 0), bt709_rgb(y, u, v), atol=1e-4, rtol=0)


def test_rgb_planes_are_bt709():
    check_rgb_planes_are_bt709()


def test_builtin_models_convert_bt709():
    check_builtin_models_convert_bt709()


# ---- raw .yuv: Y, then U (Cb), then V (Cr) ---------------------------------------------------


def check_raw_planes_are_y_u_v(folder: Path) -> None:
    for depth in (8, 10):
        frames = [coloured_frame(10 + i, bit_depth=depth) for i in range(5)]
        written = [[p.copy() for p in (f.y, f.u, f.v)] for f in frames]
        if depth == 10:  # out-of-range words in 16-bit storage read as the largest 10-bit code
            for planes in written:
                for plane, value in zip(planes, (0xFFFF, 1500, 1024), strict=True):
                    plane[1, 2] = value
        path = folder / f"planes{depth}.yuv"
        dtype = np.dtype(np.uint8) if depth == 8 else np.dtype("<u2")
        path.write_bytes(b"".join(p.astype(dtype).tobytes() for planes in written for p in planes))
        spec = ClipSpec(str(path), raw=True, width=WIDTH, height=HEIGHT, bit_depth=depth)
        got = decode.decode_sampled(spec, SamplingOptions("clip", 3))
        for frame, planes in zip(got, [written[0], written[2], written[4]], strict=True):
            for name, plane in zip(("y", "u", "v"), planes, strict=True):
                np.testing.assert_array_equal(getattr(frame, name), np.minimum(plane, (1 << depth) - 1), err_msg=name)


def test_raw_planes_are_y_u_v(tmp_path):
    check_raw_planes_are_y_u_v(tmp_path)


# ---- what a preset feeds the model: channel order, normalisation, padding ------------------


def check_preset_input_is_the_recipe() -> None:
    frame = coloured_frame(7)
    rgb = bt709_rgb(frame.y, frame.u, frame.v)
    plain = dict(size="native", mean=None, std=None)
    for channels, want in (("rgb", rgb), ("bgr", rgb[::-1])):
        got = presets.Preprocess(name="t", channels=channels, **plain).encode([frame])[0]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=channels)
    # vmaf-student: ImageNet mean/std per R, G, B, then zeros (the normalised 0) up to a multiple of 32
    got = presets.PRESETS["vmaf-student"].encode([frame])[0]
    assert got.shape == (3, 32, 64)
    mean, std = np.array(presets.IMAGENET_MEAN)[:, None, None], np.array(presets.IMAGENET_STD)[:, None, None]
    assert (tuple(mean[:, 0, 0]), tuple(std[:, 0, 0])) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # R, G, B
    np.testing.assert_allclose(got[:, :HEIGHT, :WIDTH], (rgb - mean) / std, atol=5e-4, rtol=0)
    assert not got[:, HEIGHT:].any() and not got[:, :, WIDTH:].any()


def test_preset_input_is_the_recipe():
    check_preset_input_is_the_recipe()


# ---- min-max normalisation: per frame ------------------------------------------------------


def check_minmax_is_per_frame(folder: Path) -> None:
    rng = np.random.default_rng(4)
    # three maps with very different ranges: a batch-wide min/max would squash two of them
    raw = np.stack([rng.normal(0, 1, (HEIGHT, WIDTH)), 5 + 3 * rng.random((HEIGHT, WIDTH)),
                    -40 + 0.01 * rng.random((HEIGHT, WIDTH))]).astype(np.float32)
    lo, hi = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    want = (raw.astype(np.float64) - lo) / (hi - lo)
    preset = presets.Preprocess(name="t", size="native", mean=None, std=None, output="minmax")
    np.testing.assert_allclose(preset.decode(raw[:, None], HEIGHT, WIDTH), want, atol=1e-5, rtol=0)
    # through a real graph, batched: a frame's map does not depend on the frames beside it
    path = graphs.save(graphs.conv_sigmoid(batch="N", activation="Identity"), folder / "linear.onnx")
    cfg = folder / "minmax.toml"
    cfg.write_text('size = "native"\nnormalize = "none"\noutput = "minmax"\n')
    model = onnx_models.load_onnx_model(path, preprocess=f"custom:{cfg}")
    frames = [coloured_frame(20 + i) for i in range(3)]
    together = model.predict(frames)
    for i, frame in enumerate(frames):
        alone = model.predict([frame])[0]
        np.testing.assert_allclose(together[i], alone, atol=1e-5, rtol=0)
        assert together[i].min() == 0.0 and abs(float(together[i].max()) - 1.0) < 1e-6


def test_minmax_is_per_frame(tmp_path):
    check_minmax_is_per_frame(tmp_path)


# ---- the preset fingerprint: every field, tensor names included ---------------------------


def _other(value, name):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if isinstance(value, str):
        return {"pad": "native", "as-is": "minmax", "rgb": "bgr"}.get(value, value + "-other")
    if isinstance(value, tuple):
        return tuple(v * 2 + 1 for v in value)
    if value is None:
        return (64, 48) if name == "resize_to" else "a_tensor"
    raise AssertionError(f"no rule to change Preprocess.{name}; add one")


def check_fingerprint_names_every_field(folder: Path) -> None:
    base = presets.Preprocess(name="p")
    prints = {"base": base.fingerprint()}
    for field in dataclasses.fields(base):
        if field.name == "name":
            continue  # the model id carries the preset name itself
        other = dataclasses.replace(base, **{field.name: _other(getattr(base, field.name), field.name)})
        prints[field.name] = other.fingerprint()
    assert len(set(prints.values())) == len(prints), "two presets that differ share a fingerprint"
    # two outputs of one ONNX file are two models
    path = graphs.save(graphs.two_outputs(), folder / "two.onnx")
    loaded = []
    for output in ("first", "second"):
        cfg = folder / output / "p.toml"
        cfg.parent.mkdir(exist_ok=True)
        cfg.write_text(f'output_name = "{output}"\n')
        loaded.append(onnx_models.load_onnx_model(path, preprocess=f"custom:{cfg}"))
    first, second = loaded
    assert first.fingerprint != second.fingerprint
    frame = coloured_frame(5)
    np.testing.assert_allclose(first.predict([frame]) + second.predict([frame]), 1.0, atol=1e-5)


def test_fingerprint_names_every_field(tmp_path):
    check_fingerprint_names_every_field(tmp_path)


# ---- maps resized back: bilinear, half-pixel centres ---------------------------------------


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of OpenCV's INTER_LINEAR along one axis, written out."""
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
        left = int(np.floor(x))
        right = min(left + 1, n_in - 1)
        matrix[i, left] += 1 - (x - left)
        matrix[i, right] += x - left
    return matrix


def bilinear(small: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = small.shape
    return bilinear_matrix(h, height) @ small.astype(np.float64) @ bilinear_matrix(w, width).T


def check_maps_are_resized_bilinear() -> None:
    rng = np.random.default_rng(6)
    small = rng.random((7, 11)).astype(np.float32)
    for height, width in ((HEIGHT, WIDTH), (41, 29)):
        want = bilinear(small, height, width)
        working = maps.WorkingMaps(small[None], (height, width))
        np.testing.assert_allclose(working.upsample(small), want, atol=1e-5, rtol=0)
        mean, var = working.stats(small)
        assert abs(mean - want.mean()) < 1e-6 and abs(var - want.var()) < 1e-6, (mean, var, want.mean(), want.var())
    # a resizing preset's model output back to the frame (shrinking and growing)
    preset = presets.Preprocess(name="t", size="resize", resize_to=(16, 12), mean=None, std=None)
    for height, width in ((HEIGHT, WIDTH), (9, 7)):
        out = rng.random((2, 1, 12, 16)).astype(np.float32)
        want = np.stack([bilinear(m[0], height, width) for m in out])
        np.testing.assert_allclose(preset.decode(out, height, width), want, atol=1e-5, rtol=0)


def test_maps_are_resized_bilinear():
    check_maps_are_resized_bilinear()


@pytest.mark.parametrize("n_in, n_out", [(3, 8), (7, 23), (12, 9), (64, 37)])
def test_the_written_out_bilinear_is_opencvs(n_in, n_out):
    """The test's own bilinear weights are OpenCV's: the reference itself can't be wrong unseen."""
    import cv2

    eye = cv2.resize(np.eye(n_in, dtype=np.float32), (n_in, n_out), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(eye, bilinear_matrix(n_in, n_out), atol=1e-6)


# ---- each check fails on a one-line change to a copy of its module ------------------------------


def _holders() -> list[object]:
    """The modules that may hold a salmat object by name: salmat's own and this suite's."""
    tests = str(Path(__file__).parent)
    return [m for name, m in list(sys.modules.items()) if m is not None and (
        name == "salmat" or name.startswith("salmat.") or str(getattr(m, "__file__", "") or "").startswith(tests))]


@contextmanager
def mutant(module_name: str, old: str, new: str) -> Iterator[None]:
    """`module_name` with the one occurrence of `old` replaced by `new`, for the duration.

    The mutated source runs in a fresh namespace; every top-level object it defines anew replaces
    the real one in the module and wherever another salmat or test module holds the real one by
    name (`from .color import rgb_planes`), so every caller reaches the changed copy."""
    module = importlib.import_module(module_name)
    source = Path(module.__file__).read_text(encoding="utf-8")
    assert source.count(old) == 1, f"the mutant's line is not (once) in {module_name}: {old!r}"
    namespace: dict[str, object] = {"__name__": module_name, "__package__": module.__package__,
                                    "__file__": module.__file__}
    exec(compile(source.replace(old, new), module.__file__, "exec"), namespace)  # noqa: S102
    undo: list[tuple[object, str, object]] = []
    holders = _holders()
    try:
        for name, value in namespace.items():
            original = module.__dict__.get(name)
            if name.startswith("__") or original is value or original is None:
                continue
            for holder in holders:
                for attr, held in list(vars(holder).items()):
                    if held is original:
                        undo.append((holder, attr, held))
                        setattr(holder, attr, value)
        yield
    finally:
        for holder, attr, held in reversed(undo):
            setattr(holder, attr, held)


BT709 = "BT709_TERMS = (1.5748, 0.1873, 0.4681, 1.8556)"
MUTANTS: list[tuple[str, str, str, str, Callable[[Path], None]]] = [
    ("bt601-rgb", "salmat.color", BT709, "BT709_TERMS = (1.402, 0.344136, 0.714136, 1.772)",
     lambda _: check_rgb_planes_are_bt709()),
    ("bt601-builtin", "salmat.color", BT709, "BT709_TERMS = (1.402, 0.344136, 0.714136, 1.772)",
     lambda _: check_builtin_models_convert_bt709()),
    ("raw-uv-swapped", "salmat.decode.raw", "return YuvFrame(y, u, v, spec.bit_depth)",
     "return YuvFrame(y, v, u, spec.bit_depth)", check_raw_planes_are_y_u_v),
    ("raw-10-bit-unclamped", "salmat.decode.raw",
     "y, u, v = (np.minimum(p, (1 << spec.bit_depth) - 1) for p in (y, u, v))", "pass",
     check_raw_planes_are_y_u_v),
    ("bgr-ignored", "salmat.models.presets", "planes = planes[::-1]", "planes = planes",
     lambda _: check_preset_input_is_the_recipe()),
    ("imagenet-std-bgr", "salmat.models.presets", "std: tuple[float, float, float] | None = IMAGENET_STD",
     "std: tuple[float, float, float] | None = IMAGENET_STD[::-1]", lambda _: check_preset_input_is_the_recipe()),
    ("minmax-over-batch", "salmat.models.presets", "lo = maps.min(axis=(1, 2), keepdims=True)",
     "lo = maps.min(keepdims=True)", check_minmax_is_per_frame),
    ("minmax-span-over-batch", "salmat.models.presets", "span = maps.max(axis=(1, 2), keepdims=True) - lo",
     "span = maps.max(keepdims=True) - lo", check_minmax_is_per_frame),
    ("fingerprint-without-names", "salmat.models.presets",
     'blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))',
     'blob = json.dumps({k: v for k, v in self.to_dict().items() if k not in ("input_name", "output_name")}, '
     'sort_keys=True, separators=(",", ":"))', check_fingerprint_names_every_field),
    ("nearest-upsample", "salmat.maps", "dst=out,\n                            interpolation=cv2.INTER_LINEAR)",
     "dst=out,\n                            interpolation=cv2.INTER_NEAREST)",
     lambda _: check_maps_are_resized_bilinear()),
    ("nearest-moments", "salmat.maps", "(n_in, n_out), interpolation=cv2.INTER_LINEAR)",
     "(n_in, n_out), interpolation=cv2.INTER_NEAREST)", lambda _: check_maps_are_resized_bilinear()),
    ("nearest-preset-resize-back", "salmat.models.presets",
     "[cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps.astype(np.float32)]",
     "[cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in maps.astype(np.float32)]",
     lambda _: check_maps_are_resized_bilinear()),
]


@pytest.mark.parametrize("module_name, old, new, check", [m[1:] for m in MUTANTS], ids=[m[0] for m in MUTANTS])
def test_each_value_mutant_is_killed(tmp_path, module_name, old, new, check):
    real, mutated, restored = (tmp_path / name for name in ("real", "mutant", "restored"))
    for folder in (real, mutated, restored):
        folder.mkdir()
    check(real)  # holds on the real code ...
    with mutant(module_name, old, new), pytest.raises(AssertionError):
        check(mutated)  # ... and fails on the mutant
    check(restored)  # the real code is back
