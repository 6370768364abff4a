"""The result cache's key: every field of every setting that changes a value is in it, and runs
with other settings on one cache each get their own values.

Each key component (`SamplingOptions`, `ReduceOptions`, the clip's `ClipSpec`) is enumerated
field by field, so a field added later is either keyed or named here with the reason it is not.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

import salmat
from conftest import saliency_values, sha256_of, write_jsonl
from salmat.cache import ResultCache
from salmat.sources import ClipSpec
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
    """The two fields a key once went without, named explicitly as well."""
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
    assert base.clip == sha256_of(clip)
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


def test_a_head_run_after_a_clip_run_on_one_cache_gives_the_head_values(tmp_path, small_clips):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": f"c{i}.mp4"} for i in range(4)])
    cache = str(tmp_path / "cache.sqlite")
    common = dict(root=str(small_clips), frame_samples=3, **FAST)
    clip_run = salmat.materialize(table, tmp_path / "clip.jsonl", cache=cache, sampling="clip", **common)
    assert clip_run.counts == {"ok": 4} and clip_run.audit["cache"]["stored"] == 4
    head_run = salmat.materialize(table, tmp_path / "head.jsonl", cache=cache, sampling="head", **common)
    fresh = salmat.materialize(table, tmp_path / "fresh.jsonl", no_cache=True, sampling="head", **common)
    assert fresh.counts == {"ok": 4}
    assert saliency_values(tmp_path / "head.jsonl") == saliency_values(tmp_path / "fresh.jsonl")
    assert head_run.audit["cache"]["hits"] == 0 and head_run.audit["cache"]["misses"] == 4
    # the test means something only if the two samplings give different values
    clip_means = [m for _, m, _ in saliency_values(tmp_path / "clip.jsonl")]
    head_means = [m for _, m, _ in saliency_values(tmp_path / "fresh.jsonl")]
    assert all(a != b for a, b in zip(clip_means, head_means, strict=True))
    # and the clip values are still there for a clip run
    again = salmat.materialize(table, tmp_path / "clip2.jsonl", cache=cache, sampling="clip", **common)
    assert again.audit["cache"]["hits"] == 4
    assert saliency_values(tmp_path / "clip2.jsonl") == saliency_values(tmp_path / "clip.jsonl")


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
    assert saliency_values(tmp_path / "hist.jsonl") == saliency_values(tmp_path / "fresh.jsonl")
    head_means = [m for _, m, _ in saliency_values(tmp_path / "head.jsonl")]
    hist_means = [m for _, m, _ in saliency_values(tmp_path / "fresh.jsonl")]
    assert all(a != b for a, b in zip(head_means, hist_means, strict=True))

