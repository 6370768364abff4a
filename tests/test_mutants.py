"""Tests that tell a wrong value from a right one (issue 11, class 8).

Each test here kills a mutant that survived the rest of the suite:

- the cache key without the sampling mode, or without any other field of any key component
  (every field of `SamplingOptions`/`ReduceOptions` is enumerated, so a new one can't be
  forgotten), and a `--sampling head` run after a `clip` run on one cache;
- the cache key without the historical motion flag, and a `--compat historical` run after a
  head run with the same sampling on one cache;
- the row join ignoring each batch's offset: a table past one output batch (65,536 rows),
  every row checked against its own clip, and the summary against the status column;
- clip (and head) sampling indices rounded the wrong way: expectations written out by hand,
  never computed with the function under test, and the frames actually decoded;
- issue 20's five surviving mutants (BT.709 → BT.601, raw U/V swapped, min-max over the whole
  batch, the preset fingerprint without the tensor names, maps resized back with nearest), each
  applied as a one-line change to a copy of its module and shown to fail a `check_*` of
  `test_value_paths.py`, which holds on the real code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import salmat
import test_value_paths as value_paths
from conftest import read_jsonl, write_jsonl
from salmat.cache import ResultCache
from salmat.decode import clip_indices, decode_sampled, head_indices
from salmat.sources import ClipSpec
from salmat.synthetic import write_disc_clip
from salmat.values import ReduceOptions, SamplingOptions

FAST = dict(workers=1, quiet=True)


# ---- the cache key: every field of every component ---------------------------------------


def _changed(value, name):
    """Another valid-looking value of the same kind as `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 + 0.05
    if isinstance(value, str):
        return {"clip": "head", "head": "clip"}.get(value, value + "-other")
    if value is None and name == "reference":  # a reference clip: any file with content will do
        return ClipSpec(__file__)
    if value is None:
        return (0, 3) if name == "frames" else 1 << 20
    raise AssertionError(f"no rule to change field {name!r} of type {type(value).__name__}; add one")


def _variants(base):
    """`base` with each of its dataclass fields changed in turn: [(field name, options)]."""
    names = [f.name for f in dataclasses.fields(base)]
    assert names, base
    return [(name, dataclasses.replace(base, **{name: _changed(getattr(base, name), name)})) for name in names]


SAMPLINGS = [SamplingOptions(), SamplingOptions("head", 3, 8, None), SamplingOptions("clip", 4, 8, 4096)]
REDUCES = [ReduceOptions(0.6), ReduceOptions(0.3, historical_motion=True)]


@pytest.fixture()
def keyed(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"some clip content")
    cache = ResultCache(str(tmp_path / "cache.sqlite"))
    yield cache, clip
    cache.close()


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=lambda s: f"{s.sampling}-{s.frame_samples}-{s.max_pixels}")
@pytest.mark.parametrize("reduce", REDUCES, ids=lambda r: f"alpha{r.ema_alpha}-hist{r.historical_motion}")
def test_every_field_of_every_key_component_changes_the_key(keyed, sampling, reduce):
    cache, clip = keyed
    spec = ClipSpec(str(clip))
    base = cache.key(spec, "model-a", sampling, reduce)
    assert base is not None
    assert cache.key(spec, "model-a", sampling, reduce) == base  # deterministic

    changed = {}
    for name, other in _variants(sampling):
        changed[f"sampling.{name}"] = cache.key(spec, "model-a", other, reduce)
    for name, other in _variants(reduce):
        changed[f"reduce.{name}"] = cache.key(spec, "model-a", sampling, other)
    changed["model"] = cache.key(spec, "model-b", sampling, reduce)
    for name, value in changed.items():
        assert value is not None and value != base, f"changing {name} leaves the cache key as it is"
    assert len(set(changed.values())) == len(changed), "two different settings share one key"


def test_the_sampling_mode_and_motion_flag_are_in_the_key(keyed):
    """The two fields the mutants dropped, named explicitly as well."""
    cache, clip = keyed
    spec = ClipSpec(str(clip))
    clip_key = cache.key(spec, "m", SamplingOptions("clip", 3, 8), ReduceOptions(0.6))
    head_key = cache.key(spec, "m", SamplingOptions("head", 3, 8), ReduceOptions(0.6))
    historical = cache.key(spec, "m", SamplingOptions("clip", 3, 8), ReduceOptions(0.6, historical_motion=True))
    assert len({clip_key, head_key, historical}) == 3


def test_clip_content_and_raw_geometry_are_the_clip_part_of_the_key(keyed, tmp_path):
    cache, clip = keyed
    s, r = SamplingOptions(), ReduceOptions(0.6)
    base = cache.key(ClipSpec(str(clip)), "m", s, r)
    # the same content under another name is the same clip ...
    twin = tmp_path / "twin.mp4"
    shutil.copy(clip, twin)
    assert cache.key(ClipSpec(str(twin)), "m", s, r) == base
    assert base.clip == hashlib.sha256(clip.read_bytes()).hexdigest()
    # ... other content is not
    other = tmp_path / "other.mp4"
    other.write_bytes(b"some clip contenT")
    assert cache.key(ClipSpec(str(other)), "m", s, r) != base
    # every ClipSpec field changes a raw clip's key, but those listed here: a new field that
    # changes what is decoded must be keyed, or listed with the reason it changes nothing
    not_keyed = {"path": "the content's sha256 stands for it",
                 "confine": "--confine-to-root decides whether the file may be opened, not what it decodes to"}
    raw = ClipSpec(str(clip), raw=True, width=64, height=48, bit_depth=8)
    raw_key = cache.key(raw, "m", s, r)
    assert raw_key != base
    keys = {raw_key}
    for name, other_spec in _variants(raw):
        if name == "path":
            continue  # another path is another file: the twin above is the same content elsewhere
        if name == "confine":  # a root the clip really is inside
            other_spec = dataclasses.replace(raw, confine=os.path.realpath(tmp_path))
        key = cache.key(other_spec, "m", s, r)
        if name == "frames":  # a per-frame unit of work is never cached: no key at all
            assert key is None
            continue
        if name in not_keyed:
            assert key == raw_key, name
            continue
        assert key is not None and key != raw_key, f"changing ClipSpec.{name} leaves the cache key as it is"
        keys.add(key)
    assert len(keys) == 1 + len([f for f in dataclasses.fields(ClipSpec) if f.name not in {*not_keyed, "frames"}])


# ---- the same cache, other settings: each run gets its own values ------------------------


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory):
    """Four small moving-disc clips whose values all differ (a few ms each to compute)."""
    folder = tmp_path_factory.mktemp("small")
    for i, (w, h, n) in enumerate([(64, 48, 12), (80, 48, 10), (64, 64, 14), (96, 48, 9)]):
        write_disc_clip(folder / f"c{i}.mp4", w, h, frames=n)
    return folder


def _values(path):
    return [(r["saliency_status"], r["saliency_mean"], r["saliency_var"]) for r in read_jsonl(path)]


def test_a_head_run_after_a_clip_run_on_one_cache_gives_the_head_values(tmp_path, small_clips):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": f"c{i}.mp4"} for i in range(4)])
    cache = str(tmp_path / "cache.sqlite")
    common = dict(root=str(small_clips), frame_samples=3, **FAST)
    clip_run = salmat.materialize(table, tmp_path / "clip.jsonl", cache=cache, sampling="clip", **common)
    assert clip_run.counts == {"ok": 4} and clip_run.audit["cache"]["stored"] == 4
    head_run = salmat.materialize(table, tmp_path / "head.jsonl", cache=cache, sampling="head", **common)
    fresh = salmat.materialize(table, tmp_path / "fresh.jsonl", no_cache=True, sampling="head", **common)
    assert fresh.counts == {"ok": 4}
    assert _values(tmp_path / "head.jsonl") == _values(tmp_path / "fresh.jsonl")
    assert head_run.audit["cache"]["hits"] == 0 and head_run.audit["cache"]["misses"] == 4
    # the test means something only if the two samplings give different values
    clip_means = [m for _, m, _ in _values(tmp_path / "clip.jsonl")]
    head_means = [m for _, m, _ in _values(tmp_path / "fresh.jsonl")]
    assert all(a != b for a, b in zip(clip_means, head_means, strict=True))
    # and the clip values are still there for a clip run
    again = salmat.materialize(table, tmp_path / "clip2.jsonl", cache=cache, sampling="clip", **common)
    assert again.audit["cache"]["hits"] == 4
    assert _values(tmp_path / "clip2.jsonl") == _values(tmp_path / "clip.jsonl")


def test_a_historical_run_after_a_head_run_on_one_cache_gives_the_historical_values(tmp_path, small_clips):
    """`--compat historical` is head sampling, 8 frames, 8 samples plus the old motion weights:
    a head run with those same sampling settings differs from it only in the motion flag."""
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": f"c{i}.mp4"} for i in range(4)])
    cache = str(tmp_path / "cache.sqlite")
    common = dict(root=str(small_clips), temporal_aggregator="motion-weighted", **FAST)
    salmat.materialize(table, tmp_path / "head.jsonl", cache=cache, sampling="head", max_frames=8,
                       frame_samples=8, **common)
    cached = salmat.materialize(table, tmp_path / "hist.jsonl", cache=cache, compat="historical", **common)
    fresh = salmat.materialize(table, tmp_path / "fresh.jsonl", no_cache=True, compat="historical", **common)
    assert fresh.counts == {"ok": 4} and cached.audit["cache"]["misses"] == 4
    assert _values(tmp_path / "hist.jsonl") == _values(tmp_path / "fresh.jsonl")
    head_means = [m for _, m, _ in _values(tmp_path / "head.jsonl")]
    hist_means = [m for _, m, _ in _values(tmp_path / "fresh.jsonl")]
    assert all(a != b for a, b in zip(head_means, hist_means, strict=True))


# ---- the row join past one output batch ------------------------------------------------------


ROWS = 70_000  # the writer's batches are 65,536 rows: the last 4,464 rows are a second batch


def test_every_row_past_the_first_batch_gets_its_own_clips_values(tmp_path, small_clips):
    folder = tmp_path / "clips"
    shutil.copytree(small_clips, folder)
    (folder / "broken.mp4").write_text("not a video\n" * 10)
    sources = ["c0.mp4", "c1.mp4", "c2.mp4", "c3.mp4", "missing.mp4", "broken.mp4"]
    names = ["c0.mp4", "c1.mp4", "c2.mp4", "c3.mp4"]

    # each clip's values from a run of one row per clip
    small = write_jsonl(tmp_path / "small.jsonl", [{"src": n} for n in names])
    per_clip = salmat.materialize(small, tmp_path / "small_out.jsonl", root=str(folder), no_cache=True,
                                  frame_samples=2, **FAST)
    assert per_clip.counts == {"ok": 4}
    expected = {r["src"]: (r["saliency_mean"], r["saliency_var"]) for r in read_jsonl(tmp_path / "small_out.jsonl")}
    assert len({v[0] for v in expected.values()}) == 4, "the clips must have distinct values"

    # 70,000 rows, each naming a random source; some rows already hold values (kept as they are)
    rng = np.random.default_rng(11)
    which = rng.integers(0, len(sources), ROWS)
    src = np.array(sources, dtype=object)[which]
    existing = rng.random(ROWS) < 0.02
    old_mean = np.where(existing, rng.uniform(2.0, 3.0, ROWS), np.nan)  # outside any real value's range
    old_var = np.where(existing, rng.uniform(2.0, 3.0, ROWS), np.nan)
    table = pa.table({"row": np.arange(ROWS), "src": pa.array(src, pa.string()),
                      "saliency_mean": pa.array(old_mean, mask=~existing),
                      "saliency_var": pa.array(old_var, mask=~existing)})
    pq.write_table(table, tmp_path / "big.parquet")
    report = salmat.materialize(str(tmp_path / "big.parquet"), str(tmp_path / "out.parquet"), root=str(folder),
                                no_cache=True, frame_samples=2, **FAST)

    out = pq.read_table(tmp_path / "out.parquet")
    assert out.num_rows == ROWS
    assert out.column("row").to_numpy().tolist() == list(range(ROWS))
    status = np.array(out.column("saliency_status").to_pylist(), dtype=object)
    mean = out.column("saliency_mean").to_numpy(zero_copy_only=False)
    var = out.column("saliency_var").to_numpy(zero_copy_only=False)

    want_status = np.where(existing, "skipped-existing",
                           np.select([np.isin(src, names), src == "missing.mp4"], ["ok", "missing-source"],
                                     "decode-failed")).astype(object)
    bad = np.flatnonzero(status != want_status)
    assert bad.size == 0, f"{bad.size} rows have the wrong status, first at row {bad[:5].tolist()}"
    want_mean = np.full(ROWS, np.nan)
    want_var = np.full(ROWS, np.nan)
    for name, (m, v) in expected.items():
        rows = (src == name) & ~existing
        want_mean[rows], want_var[rows] = m, v
    want_mean[existing], want_var[existing] = old_mean[existing], old_var[existing]
    for got, want, label in ((mean, want_mean, "saliency_mean"), (var, want_var, "saliency_var")):
        wrong = np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want))))
        assert wrong.size == 0, f"{wrong.size} rows have another row's {label}, first at rows {wrong[:5].tolist()}"
    assert np.flatnonzero(~existing[65_536:] & np.isin(src[65_536:], names)).size > 1000  # the 2nd batch has ok rows

    # the summary counts what the output says
    labels, counts = np.unique(status.astype(str), return_counts=True)
    assert report.counts == {str(k): int(c) for k, c in zip(labels, counts, strict=True)}
    assert report.total == ROWS


# ---- sampling indices, written out by hand ---------------------------------------------------

# round(linspace(0, total − 1, N)), duplicates dropped (docs/contract.md §4). `round` is Python's
# and NumPy's: halves go to the even neighbour (8, 3: 3.5 → 4; 6, 3: 2.5 → 2; 12, 3: 5.5 → 6).
CLIP_INDICES = [
    (10, 4, [0, 3, 6, 9]),
    (7, 3, [0, 3, 6]),
    (8, 3, [0, 4, 7]),            # 3.5 → 4 (floor: 3)
    (6, 4, [0, 2, 3, 5]),         # 1.67 → 2 (floor: 1)
    (24, 4, [0, 8, 15, 23]),      # 7.67 → 8 (floor: 7)
    (100, 8, [0, 14, 28, 42, 57, 71, 85, 99]),
    (12, 3, [0, 6, 11]),          # 5.5 → 6
    (6, 3, [0, 2, 5]),            # 2.5 → 2
    (9, 2, [0, 8]),
    (5, 1, [0]),
    (1, 3, [0]),
    (3, 8, [0, 1, 2]),            # fewer frames than samples: every frame
    (10, 10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (0, 4, []),
]

# the first min(total, max_frames) frames, then 0, s, 2s, … with s = max(1, total // N), first N
HEAD_INDICES = [
    (8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
    (8, 3, [0, 2, 4]),
    (8, 4, [0, 2, 4, 6]),
    (8, 5, [0, 1, 2, 3, 4]),
    (8, 2, [0, 4]),
    (8, 1, [0]),
    (7, 3, [0, 2, 4]),
    (3, 8, [0, 1, 2]),
    (0, 3, []),
]


@pytest.mark.parametrize("total, n, want", CLIP_INDICES)
def test_clip_indices_by_hand(total, n, want):
    assert clip_indices(total, n) == want


@pytest.mark.parametrize("total, n, want", HEAD_INDICES)
def test_head_indices_by_hand(total, n, want):
    assert head_indices(total, n) == want


def _numbered_raw_clip(path, frames, width=16, height=16):
    """A raw 8-bit 4:2:0 clip whose frame i has luma 10·i everywhere: a frame says its index."""
    with open(path, "wb") as handle:
        for i in range(frames):
            handle.write(np.full(width * height, 10 * i, np.uint8).tobytes())
            handle.write(np.full(2 * (width // 2) * (height // 2), 128, np.uint8).tobytes())
    return ClipSpec(str(path), raw=True, width=width, height=height, bit_depth=8)


@pytest.mark.parametrize("sampling, total, n, max_frames, want", [
    ("clip", 10, 4, 8, [0, 3, 6, 9]),
    ("clip", 8, 3, 8, [0, 4, 7]),
    ("clip", 24, 4, 8, [0, 8, 15, 23]),
    ("clip", 6, 4, 8, [0, 2, 3, 5]),
    ("head", 10, 3, 8, [0, 2, 4]),        # 8 head frames, s = 2
    ("head", 24, 8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
    ("head", 24, 2, 8, [0, 4]),
    ("head", 5, 3, 8, [0, 1, 2]),         # 5 head frames, s = 1
])
def test_the_decoded_frames_are_the_sampled_ones(tmp_path, sampling, total, n, max_frames, want):
    spec = _numbered_raw_clip(tmp_path / "numbered.yuv", total)
    frames = decode_sampled(spec, SamplingOptions(sampling, n, max_frames))
    assert [int(f.y[0, 0]) // 10 for f in frames] == want


# ---- one-line mutants applied to a copy of their module (issue 20, point 6) ---------------------


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
    name (`from .color import rgb_planes`), so every caller reaches the mutant."""
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
     lambda _: value_paths.check_rgb_planes_are_bt709()),
    ("bt601-builtin", "salmat.color", BT709, "BT709_TERMS = (1.402, 0.344136, 0.714136, 1.772)",
     lambda _: value_paths.check_builtin_models_convert_bt709()),
    ("raw-uv-swapped", "salmat.decode.raw", "return YuvFrame(y, u, v, spec.bit_depth)",
     "return YuvFrame(y, v, u, spec.bit_depth)", value_paths.check_raw_planes_are_y_u_v),
    ("raw-10-bit-unclamped", "salmat.decode.raw",
     "y, u, v = (np.minimum(p, (1 << spec.bit_depth) - 1) for p in (y, u, v))", "pass",
     value_paths.check_raw_planes_are_y_u_v),
    ("bgr-ignored", "salmat.models.presets", "planes = planes[::-1]", "planes = planes",
     lambda _: value_paths.check_preset_input_is_the_recipe()),
    ("imagenet-std-bgr", "salmat.models.presets", "std: tuple[float, float, float] | None = IMAGENET_STD",
     "std: tuple[float, float, float] | None = IMAGENET_STD[::-1]", lambda _: value_paths.check_preset_input_is_the_recipe()),
    ("minmax-over-batch", "salmat.models.presets", "lo = maps.min(axis=(1, 2), keepdims=True)",
     "lo = maps.min(keepdims=True)", value_paths.check_minmax_is_per_frame),
    ("minmax-span-over-batch", "salmat.models.presets", "span = maps.max(axis=(1, 2), keepdims=True) - lo",
     "span = maps.max(keepdims=True) - lo", value_paths.check_minmax_is_per_frame),
    ("fingerprint-without-names", "salmat.models.presets",
     'blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))',
     'blob = json.dumps({k: v for k, v in self.to_dict().items() if k not in ("input_name", "output_name")}, '
     'sort_keys=True, separators=(",", ":"))', value_paths.check_fingerprint_names_every_field),
    ("nearest-upsample", "salmat.maps", "dst=out,\n                            interpolation=cv2.INTER_LINEAR)",
     "dst=out,\n                            interpolation=cv2.INTER_NEAREST)",
     lambda _: value_paths.check_maps_are_resized_bilinear()),
    ("nearest-moments", "salmat.maps", "(n_in, n_out), interpolation=cv2.INTER_LINEAR)",
     "(n_in, n_out), interpolation=cv2.INTER_NEAREST)", lambda _: value_paths.check_maps_are_resized_bilinear()),
    ("nearest-preset-resize-back", "salmat.models.presets",
     "[cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps.astype(np.float32)]",
     "[cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in maps.astype(np.float32)]",
     lambda _: value_paths.check_maps_are_resized_bilinear()),
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
