"""`--column-prefix`: a full-reference table gets both clips' columns in two runs; and the
`--compat historical` alpha rule (every `ok` row records the alpha, as the earlier tool did)."""

from __future__ import annotations

import pytest

from conftest import read_jsonl, run_cli, run_cli_inprocess, write_jsonl
from salmat import materialize
from salmat.errors import SalmatError
from salmat.rows import Provenance
from salmat.values import SamplingOptions

NAMES = ["saliency_mean", "saliency_var", "saliency_status", "saliency_model_id", "saliency_aggregator",
         "saliency_ema_alpha", "saliency_error", "saliency_frames"]
FAST = {"workers": 1, "clip_timeout": None, "quiet": True}


@pytest.fixture()
def fr_table(tmp_path, disc_clip, odd_clip):
    """A full-reference table: each row a distorted clip and its reference (two distinct clips)."""
    rows = [{"id": 1, "dis": str(odd_clip), "ref": str(disc_clip), "vmaf": 80.5},
            {"id": 2, "dis": str(tmp_path / "gone.mp4"), "ref": str(disc_clip), "vmaf": 70.0}]
    return write_jsonl(tmp_path / "fr.jsonl", rows)


def test_full_reference_table_gets_both_sets_in_two_runs(tmp_path, fr_table):
    first, second = tmp_path / "dis.jsonl", tmp_path / "both.jsonl"
    one = run_cli("materialize", "--input", fr_table, "--output", first, "--path-column", "dis", "--workers", "1")
    assert one.returncode == 1  # row 2's distorted clip is missing
    two = run_cli("materialize", "--input", first, "--output", second, "--path-column", "ref",
                  "--column-prefix", "ref_", "--workers", "1")
    assert two.returncode == 0, two.stderr
    assert "ok=2 skipped=0" in two.stderr  # before the prefix, every row was skipped-existing
    rows, dis_rows = read_jsonl(second), read_jsonl(first)
    assert list(rows[0]) == ["id", "dis", "ref", "vmaf", *NAMES, *("ref_" + n for n in NAMES)]
    for row, before in zip(rows, dis_rows, strict=True):
        assert {n: row[n] for n in NAMES} == {n: before[n] for n in NAMES}  # the first run's columns untouched
        assert row["ref_saliency_status"] == "ok" and row["ref_saliency_aggregator"] == "mean"
    # The reference values are the reference clip's, exactly as an unprefixed run writes them.
    materialize(fr_table, tmp_path / "ref.jsonl", path_column="ref", **FAST)
    plain = read_jsonl(tmp_path / "ref.jsonl")
    assert [r["ref_saliency_mean"] for r in rows] == [r["saliency_mean"] for r in plain]
    assert rows[0]["ref_saliency_mean"] != rows[0]["saliency_mean"]


def test_the_skip_rule_reads_the_prefixed_columns(tmp_path, fr_table):
    out, again = tmp_path / "o.jsonl", tmp_path / "again.jsonl"
    materialize(fr_table, out, path_column="ref", column_prefix="ref_", **FAST)
    report = materialize(out, again, path_column="ref", column_prefix="ref_", **FAST)
    assert report.counts == {"skipped-existing": 2}
    rows = read_jsonl(again)
    assert [r["ref_saliency_status"] for r in rows] == ["skipped-existing"] * 2
    assert [r["ref_saliency_mean"] for r in rows] == [r["ref_saliency_mean"] for r in read_jsonl(out)]
    assert "saliency_status" not in rows[0]  # no unprefixed column appears
    # Without the prefix the same table has no values yet: every row is computed.
    assert materialize(out, tmp_path / "plain.jsonl", path_column="ref", **FAST).counts == {"ok": 2}


def test_a_user_column_with_a_prefixed_name_is_read_by_the_skip_rule(tmp_path, disc_clip):
    rows = [{"src": str(disc_clip), "ref_saliency_mean": 0.25, "ref_saliency_var": 0.01},
            {"src": str(disc_clip), "ref_saliency_mean": 0.25}]
    out = tmp_path / "o.jsonl"
    materialize(write_jsonl(tmp_path / "t.jsonl", rows), out, column_prefix="ref_", **FAST)
    kept, computed = read_jsonl(out)
    assert kept["ref_saliency_status"] == "skipped-existing" and kept["ref_saliency_mean"] == 0.25
    assert kept["ref_saliency_model_id"] is None  # no provenance invented for a user's value
    assert computed["ref_saliency_status"] == "ok" and computed["ref_saliency_mean"] != 0.25


def test_the_prefix_applies_to_explicit_names_and_empty_still_omits(tmp_path, disc_clip):
    out = tmp_path / "o.jsonl"
    result = run_cli_inprocess("materialize", "--input", write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}]),
                               "--output", out, "--column-prefix", "ref_", "--status-column", "state",
                               "--model-id-column", "", "--workers", "1")
    assert result.returncode == 0, result.stderr
    (row,) = read_jsonl(out)
    assert list(row) == ["src", "ref_saliency_mean", "ref_saliency_var", "ref_state", "ref_saliency_aggregator",
                         "ref_saliency_ema_alpha", "ref_saliency_error", "ref_saliency_frames"]


@pytest.mark.parametrize("args, says", [
    (["--column-prefix", "ref\n"], "control character"),
    (["--column-prefix", "a\tb_"], "control character"),
    (["--column-prefix", "x_", "--path-column", "x_saliency_status"], "--path-column 'x_saliency_status' is also"),
    (["--column-prefix", "x_", "--status-column", "saliency_mean"], "collide"),
])
def test_bad_prefixes_are_usage_errors(tmp_path, disc_clip, args, says):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip), "x_saliency_status": str(disc_clip)}])
    result = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", *args)
    assert result.returncode == 2 and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.jsonl").exists()


def test_prefix_with_per_frame(tmp_path, disc_clip):
    rows = [{"ref": str(disc_clip), "frame": f} for f in (0, 30)]
    out = tmp_path / "o.jsonl"
    materialize(write_jsonl(tmp_path / "t.jsonl", rows), out, path_column="ref", column_prefix="ref_",
                per_frame=True, frame_column="frame", **FAST)
    ok, past = read_jsonl(out)
    assert ok["ref_saliency_aggregator"] == "frame" and ok["ref_saliency_status"] == "ok"
    assert past["ref_saliency_status"] == "missing-frame" and "past the end" in past["ref_saliency_error"]


# ---- the alpha under --compat historical (issue point 9) --------------------------------------


@pytest.mark.parametrize("compat, aggregator, alpha, written", [
    (None, "mean", 0.6, None),
    (None, "ema", 0.3, 0.3),
    ("historical", "mean", 0.6, 0.6),
    ("historical", "max", 0.4, 0.4),
    ("historical", "motion-weighted", 0.6, 0.6),
    ("historical", "ema", 0.5, 0.5),
])
def test_compat_rows_record_the_alpha_whatever_the_reducer(tmp_path, disc_clip, compat, aggregator, alpha, written):
    rows = [{"src": str(disc_clip)}, {"src": str(tmp_path / "gone.mp4")}]
    out = tmp_path / "o.jsonl"
    materialize(write_jsonl(tmp_path / "t.jsonl", rows), out, compat=compat, temporal_aggregator=aggregator,
                ema_alpha=alpha, **FAST)
    ok, failed = read_jsonl(out)
    assert ok["saliency_status"] == "ok" and ok["saliency_ema_alpha"] == written
    assert failed["saliency_ema_alpha"] is None  # only ok rows carry provenance


def test_provenance_is_the_one_home_of_the_alpha_rule():
    assert Provenance.for_run("m", "mean", 0.6).ema_alpha is None
    assert Provenance.for_run("m", "ema", 0.6).ema_alpha == 0.6
    assert Provenance.for_run("m", "max", 0.7, historical=True).ema_alpha == 0.7
    assert Provenance.for_run("m", "frame", 0.6, historical=True).ema_alpha is None


def test_api_prefix_is_checked_like_the_flag(tmp_path, disc_clip):
    with pytest.raises(SalmatError, match="control character"):
        materialize(write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}]), tmp_path / "o.jsonl",
                    column_prefix="a\r")


# ---- saliency_frames: how the values were sampled -------------------------------------------------


def test_rows_record_their_sampling(tmp_path, disc_clip):
    rows = [{"src": str(disc_clip)}, {"src": str(tmp_path / "gone.mp4")}]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    for settings, label in [({"frame_samples": 4}, "clip:4"), ({"frame_samples": 8}, "clip:8"),
                            ({"sampling": "head", "frame_samples": 4, "max_frames": 6}, "head:4/6")]:
        out = tmp_path / f"{label.replace(':', '_').replace('/', '_')}.jsonl"
        materialize(table, out, **settings, **FAST)
        ok, failed = read_jsonl(out)
        assert (ok["saliency_status"], ok["saliency_frames"]) == ("ok", label)
        assert failed["saliency_frames"] is None  # only ok rows carry provenance
    per_frame = write_jsonl(tmp_path / "pf.jsonl", [{"src": str(disc_clip), "f": 1}])
    materialize(per_frame, tmp_path / "pf_out.jsonl", per_frame=True, frame_column="f", **FAST)
    assert read_jsonl(tmp_path / "pf_out.jsonl")[0]["saliency_frames"] == "frame"


def test_the_sampling_column_is_absent_under_historical_and_can_be_omitted(tmp_path, disc_clip):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    materialize(table, tmp_path / "h.jsonl", compat="historical", **FAST)
    assert "saliency_frames" not in read_jsonl(tmp_path / "h.jsonl")[0]
    materialize(table, tmp_path / "o.jsonl", frames_column="", frame_samples=2, **FAST)
    assert "saliency_frames" not in read_jsonl(tmp_path / "o.jsonl")[0]
    materialize(table, tmp_path / "r.jsonl", frames_column="sampled", column_prefix="ref_", frame_samples=2, **FAST)
    assert read_jsonl(tmp_path / "r.jsonl")[0]["ref_sampled"] == "clip:2"
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "x.jsonl", "--compat",
                             "historical", "--frames-column", "sampled")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--frames-column" in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_provenance_is_the_one_home_of_the_sampling_label():
    assert Provenance.for_run("m", "mean", 0.6, sampling=SamplingOptions("clip", 8)).frames == "clip:8"
    assert Provenance.for_run("m", "ema", 0.6, sampling=SamplingOptions("head", 8, 8)).frames == "head:8/8"
    assert Provenance.for_run("m", "frame", 0.6, sampling=SamplingOptions("clip", 8)).frames == "frame"
    assert Provenance.for_run("m", "mean", 0.6, historical=True, sampling=SamplingOptions("head", 8, 8)).frames is None
