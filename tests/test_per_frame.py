"""`--per-frame`: each row of a per-frame table gets its own frame's saliency.

Values are checked against the model run on each frame alone (decoded here with PyAV,
full-size maps, `map_stats`), so they equal the single-frame map statistics; statuses,
refusals and the one decode pass per clip are checked on real clips and real runs.
"""

from __future__ import annotations

import math
from dataclasses import replace

import av
import numpy as np
import pytest

import salmat.decode.frames_at as decode_mod  # FramesAt looks these up in its own module
from conftest import error_exit_line, read_jsonl, run_cli, run_cli_inprocess, write_jsonl
from salmat import materialize
from salmat.compute import compute_frames, predict_maps, single_frame_stats
from salmat.decode import FramesAt, to_yuv_frame
from salmat.errors import SalmatError
from salmat.maps import full_size
from salmat.models import load_model
from salmat.sources import ClipSpec
from salmat.temporal import map_stats, reduce_stats
from salmat.values import OK, ReduceOptions, SamplingOptions
from synthetic_clips import write_disc_clip, write_raw_yuv

FRAMES = [0, 5, 5, 23, 11]


def reference_stats(clip, model_id: str | None = None) -> list[tuple[float, float]]:
    """Every frame of `clip` through the model alone, as full-size maps: what a row must get."""
    model = load_model(model_id)
    with av.open(str(clip)) as container:
        frames = [to_yuv_frame(f) for f in container.decode(video=0)]
    return [map_stats(full_size(predict_maps(model, [frame]))[0]) for frame in frames]


def per_frame_table(tmp_path, clip, frames=FRAMES, extra=()):
    rows = [{"id": i, "src": str(clip), "frame_index": f} for i, f in enumerate(frames)]
    return write_jsonl(tmp_path / "table.jsonl", rows + list(extra))


def test_each_row_gets_its_own_frames_single_frame_statistics(tmp_path, disc_clip, engine):
    expected = reference_stats(disc_clip)
    out = tmp_path / "out.jsonl"
    report = materialize(per_frame_table(tmp_path, disc_clip), out, per_frame=True, frame_column="frame_index",
                         quiet=True, **engine)
    assert report.exit_code == 0 and report.clips == 1
    rows = read_jsonl(out)
    for row, index in zip(rows, FRAMES, strict=True):
        assert row["saliency_status"] == OK
        assert row["saliency_mean"] == pytest.approx(expected[index][0], abs=1e-6)
        assert row["saliency_var"] == pytest.approx(expected[index][1], abs=1e-6)
        assert row["saliency_aggregator"] == "frame" and row["saliency_ema_alpha"] is None
    # Frames differ (the disc moves), so a row can't pass by getting another frame's value.
    assert len({round(r["saliency_mean"], 9) for r in rows}) == len(set(FRAMES))


def test_frame_zero_equals_a_one_sample_clip_run(tmp_path, disc_clip):
    """A one-frame clip map is the frame's map: the clip path and the per-frame path agree exactly."""
    table = per_frame_table(tmp_path, disc_clip, frames=[0])
    materialize(table, tmp_path / "frame.jsonl", per_frame=True, frame_column="frame_index", workers=1,
                clip_timeout=None, quiet=True)
    materialize(table, tmp_path / "clip.jsonl", frame_samples=1, workers=1, clip_timeout=None, quiet=True,
                no_cache=True)
    (frame_row,), (clip_row,) = read_jsonl(tmp_path / "frame.jsonl"), read_jsonl(tmp_path / "clip.jsonl")
    assert (frame_row["saliency_mean"], frame_row["saliency_var"]) == (clip_row["saliency_mean"],
                                                                       clip_row["saliency_var"])


@pytest.mark.parametrize("model_id", ["image_signature_v1", "pqft_v1"])
def test_frame_stats_is_what_every_reducer_gives_one_frame(disc_clip, model_id):
    model = load_model(model_id)
    with av.open(str(disc_clip)) as container:
        frame = to_yuv_frame(next(container.decode(video=0)))
    maps = predict_maps(model, [frame])
    stats = reduce_stats(maps, [frame.luma8()], 0.6)
    assert single_frame_stats(maps) == stats["mean"]
    for reducer in ("ema", "motion-weighted", "max"):
        assert single_frame_stats(maps) == pytest.approx(stats[reducer], abs=1e-7)
    assert single_frame_stats(full_size(maps)) == pytest.approx(stats["mean"], abs=1e-7)


def test_bad_and_past_the_end_indices_are_row_statuses(tmp_path, disc_clip):
    frames = ["0", None, "-1", "2.5", "x", "24", "1e30", "7"]
    out = tmp_path / "out.jsonl"
    report = materialize(per_frame_table(tmp_path, disc_clip, frames), out, per_frame=True,
                         frame_column="frame_index", workers=1, clip_timeout=None, quiet=True)
    rows = read_jsonl(out)
    assert [r["saliency_status"] for r in rows] == ["ok"] + ["missing-frame"] * 6 + ["ok"]
    assert report.exit_code == 1 and report.counts == {"ok": 2, "missing-frame": 6}
    assert "empty" in rows[1]["saliency_error"]
    assert "no frame index" in rows[2]["saliency_error"]
    assert rows[5]["saliency_error"] == "frame 24 is past the end of the clip (it has 24 frames, 0–23)"
    assert all(r["saliency_mean"] is None and r["saliency_model_id"] is None for r in rows[1:7])
    assert [r["frame_index"] for r in rows] == frames  # the input column is untouched


def test_a_clip_failure_is_each_of_its_rows_status(tmp_path, disc_clip):
    (tmp_path / "text.mp4").write_text("no video here\n" * 40)
    rows = [{"src": str(tmp_path / "text.mp4"), "f": 0}, {"src": str(tmp_path / "gone.mp4"), "f": 1},
            {"src": str(disc_clip), "f": 3}]
    out = tmp_path / "out.jsonl"
    materialize(write_jsonl(tmp_path / "t.jsonl", rows), out, per_frame=True, frame_column="f", workers=1,
                clip_timeout=None, quiet=True)
    assert [r["saliency_status"] for r in read_jsonl(out)] == ["decode-failed", "missing-source", "ok"]


def test_raw_yuv_frames_and_the_end_of_a_raw_clip(tmp_path):
    clip = write_raw_yuv(tmp_path / "raw_64x48_.yuv", 64, 48, frames=5)
    spec = ClipSpec(str(clip), raw=True, width=64, height=48)
    reader = FramesAt(spec, [1, 4, 5, 9], SamplingOptions())
    got = list(reader)
    assert [i for i, _ in got] == [1, 4] and reader.total == 5
    plane = np.fromfile(clip, dtype=np.uint8).reshape(5, -1)[4, : 64 * 48].reshape(48, 64)
    assert np.array_equal(got[1][1].y, plane)
    result = compute_frames(replace(spec, frames=(1, 4, 9)), load_model(None), SamplingOptions())
    assert result.status == OK and sorted(result.frame_stats) == [1, 4] and result.frame_total == 5


def test_every_needed_frame_is_decoded_once_in_one_pass(tmp_path, disc_clip, monkeypatch):
    opened, converted = [], []
    real_open, real_convert = decode_mod._open_stream, decode_mod.to_yuv_frame

    def counting_open(*args, **kwargs):
        opened.append(args[0])
        return real_open(*args, **kwargs)

    def counting_convert(frame):
        converted.append(frame.pts)
        return real_convert(frame)

    monkeypatch.setattr(decode_mod, "_open_stream", counting_open)
    monkeypatch.setattr(decode_mod, "to_yuv_frame", counting_convert)
    frames = [3, 17, 3, 0, 17, 9, 3]
    materialize(per_frame_table(tmp_path, disc_clip, frames), tmp_path / "o.jsonl", per_frame=True,
                frame_column="frame_index", workers=1, clip_timeout=None, quiet=True)
    assert len(opened) == 1  # one container, opened once, for all seven rows
    assert len(converted) == len(set(frames))  # each distinct frame converted once


def test_frames_at_holds_one_frame_at_a_time_and_stops_after_the_last_wanted(disc_clip):
    reader = FramesAt(ClipSpec(str(disc_clip)), [2, 6], SamplingOptions())
    iterator = iter(reader)
    first = next(iterator)
    assert first[0] == 2 and isinstance(first[1].y, np.ndarray)  # yielded before frame 6 is decoded
    assert next(iterator)[0] == 6
    assert next(iterator, None) is None and reader.total is None  # stopped early: no count claimed


def test_the_model_sees_one_frame_per_call(tmp_path, disc_clip):
    calls = []
    model = load_model(None)

    class Recording:
        id, fingerprint = model.id, model.fingerprint

        def predict(self, frames):
            calls.append(len(frames))
            return model.predict(frames)

        def predict_working(self, frames):  # the protocol's; what compute runs
            return self.predict(frames)

        def describe(self):
            return model.describe()

    result = compute_frames(ClipSpec(str(disc_clip), frames=(1, 2, 3)), Recording(), SamplingOptions())
    assert result.status == OK and calls == [1, 1, 1]


@pytest.mark.parametrize("flag", [
    ["--temporal-aggregator", "ema"], ["--ema-alpha", "0.3"], ["--frame-samples", "4"], ["--sampling", "head"],
    ["--max-frames", "16"], ["--compat", "historical"],
])
def test_reducer_flags_are_refused_with_one_line(tmp_path, disc_clip, flag):
    out = tmp_path / "out.jsonl"
    result = run_cli_inprocess("materialize", "--input", per_frame_table(tmp_path, disc_clip), "--output", out,
                               "--per-frame", "--frame-column", "frame_index", *flag)
    assert f"{flag[0]} does not apply with --per-frame" in error_exit_line(result) and not out.exists()


@pytest.mark.parametrize("args, says", [
    (["--per-frame"], "--per-frame needs --frame-column"),
    (["--frame-column", "frame_index"], "--frame-column only applies with --per-frame"),
    (["--per-frame", "--frame-column", "frame_idx"], "no column 'frame_idx'"),
    (["--per-frame", "--frame-column", "saliency_status"], "--frame-column 'saliency_status' is also an output"),
])
def test_per_frame_usage_errors_exit_2(tmp_path, disc_clip, args, says):
    result = run_cli_inprocess("materialize", "--input", per_frame_table(tmp_path, disc_clip), "--output",
                               tmp_path / "o.jsonl", *args)
    assert says in error_exit_line(result)


def test_api_refuses_a_reducer_setting_other_than_its_default(tmp_path, disc_clip):
    table = per_frame_table(tmp_path, disc_clip)
    with pytest.raises(SalmatError, match="ema_alpha does not apply with per_frame"):  # API: keyword names
        materialize(table, tmp_path / "o.jsonl", per_frame=True, frame_column="frame_index", ema_alpha=0.3)
    # The default value itself is not "given": it changes nothing, so it is accepted.
    report = materialize(table, tmp_path / "o.jsonl", per_frame=True, frame_column="frame_index", ema_alpha=0.6,
                         workers=1, clip_timeout=None, quiet=True)
    assert report.exit_code == 0


def test_per_frame_runs_neither_read_nor_write_the_cache(tmp_path, disc_clip):
    cache = tmp_path / "cache.sqlite"
    table = per_frame_table(tmp_path, disc_clip)
    materialize(table, tmp_path / "clip.jsonl", cache=str(cache), workers=1, clip_timeout=None, quiet=True)
    report = materialize(table, tmp_path / "o.jsonl", per_frame=True, frame_column="frame_index",
                         cache=str(cache), workers=1, clip_timeout=None, quiet=True)
    assert report.audit["cache"] is None
    assert all(r["saliency_aggregator"] == "frame" for r in read_jsonl(tmp_path / "o.jsonl"))


def test_skipped_rows_keep_their_values_and_the_rest_are_computed(tmp_path, disc_clip):
    rows = [{"src": str(disc_clip), "frame_index": 2, "saliency_mean": 0.5, "saliency_var": 0.1},
            {"src": str(disc_clip), "frame_index": 3}]
    out = tmp_path / "o.jsonl"
    materialize(write_jsonl(tmp_path / "t.jsonl", rows), out, per_frame=True, frame_column="frame_index",
                workers=1, clip_timeout=None, quiet=True)
    first, second = read_jsonl(out)
    assert first["saliency_status"] == "skipped-existing" and first["saliency_mean"] == 0.5
    assert second["saliency_status"] == "ok"


def test_per_frame_through_the_command_line(tmp_path):
    """The real entry point on a per-frame CSV table: exit 0, each row its own frame's value."""
    clip = write_disc_clip(tmp_path / "c.mp4", 96, 64, frames=6)
    table = tmp_path / "t.csv"
    table.write_text("src,frame_index,vmaf\n" + "".join(f"{clip},{i},{90 + i}\n" for i in (5, 0, 2)))
    out = tmp_path / "o.csv"
    result = run_cli("materialize", "--input", table, "--output", out, "--per-frame", "--frame-column",
                     "frame_index", "--workers", "1")
    assert result.returncode == 0, result.stderr
    import pyarrow.csv as pacsv

    written = pacsv.read_csv(out).to_pylist()
    expected = reference_stats(clip)
    for row in written:
        assert math.isclose(row["saliency_mean"], expected[row["frame_index"]][0], abs_tol=1e-6)
        assert row["saliency_aggregator"] == "frame"


def test_the_cache_never_keys_a_per_frame_spec(tmp_path, disc_clip):
    from salmat.cache import ResultCache

    with ResultCache(str(tmp_path / "c.sqlite")) as cache:
        sampling, reduce = SamplingOptions(), ReduceOptions(0.6)
        assert cache.key(ClipSpec(str(disc_clip)), "fp", sampling, reduce) is not None
        assert cache.key(ClipSpec(str(disc_clip), frames=(0, 1)), "fp", sampling, reduce) is None


def test_a_boolean_frame_column_is_no_frame_index(tmp_path, disc_clip):
    """`true` used to read as frame 1 and `false` as frame 0 (JSON booleans cast to numbers)."""
    out = tmp_path / "out.jsonl"
    report = materialize(per_frame_table(tmp_path, disc_clip, [True, False, None]), out, per_frame=True,
                         frame_column="frame_index", workers=1, clip_timeout=None, quiet=True)
    assert report.counts == {"missing-frame": 3}
    assert [r["saliency_mean"] for r in read_jsonl(out)] == [None, None, None]
