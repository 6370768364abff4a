"""What a run says: progress lines in logs, the version, settings that had no effect, rows
left alone from another configuration, and the first error of each failing status."""

from __future__ import annotations

import io
import re
import signal
import time

import pytest

import salmat
from conftest import read_jsonl, run_cli, run_cli_inprocess, write_jsonl
from salmat.progress import ClipProgress
from salmat.values import ClipResult

# ---- progress -----------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_progress_line_per_interval_with_rows_rate_and_eta():
    stream = io.StringIO()
    with ClipProgress(4, 10, stream=stream, interval=0.0) as progress:
        for status in ("ok", "decode-failed", "ok", "ok"):
            time.sleep(0.01)
            progress.update(ClipResult(status), rows=2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # the last clip is the summary line's to report
    assert re.fullmatch(r"salmat: 2/4 clips \(50%\), 4/10 rows, 1 failed, [0-9.]+ clips/s, ETA 0m0[0-9]s", lines[1])
    assert "\r" not in stream.getvalue()


def test_progress_lines_wait_for_their_interval():
    stream = io.StringIO()
    with ClipProgress(50, 50, stream=stream, interval=3600) as progress:
        for _ in range(49):
            progress.update(ClipResult("ok"), rows=1)
    assert stream.getvalue() == ""


def test_quiet_and_a_terminal_print_no_log_lines():
    quiet = io.StringIO()
    with ClipProgress(3, 3, quiet=True, stream=quiet, interval=0.0) as progress:
        for _ in range(3):
            progress.update(ClipResult("ok"))
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    with ClipProgress(3, 3, stream=terminal, interval=0.0) as progress:
        for _ in range(3):
            progress.update(ClipResult("ok"))
    assert "salmat: 1/3 clips" not in terminal.getvalue()
    assert "3/3" in terminal.getvalue()  # tqdm's bar


def test_a_cli_run_logged_to_a_file_prints_progress_lines(tmp_path, clip_folder):
    rows = [{"src": str(clip_folder / name)} for name in ("disc.mp4", "carphone.mp4", "odd.mp4")]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    proc = run_cli("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--workers", "1",
                   "--frame-samples", "2", "--no-cache", env={"SALMAT_PROGRESS_INTERVAL": "0"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert [line.split(" clips")[0] for line in lines[:-1]] == ["salmat: 1/3", "salmat: 2/3"], proc.stderr
    assert lines[-1].startswith("salmat: total=3 ok=3")
    quiet = run_cli("materialize", "--input", table, "--output", tmp_path / "q.jsonl", "--workers", "1",
                    "--frame-samples", "2", "--no-cache", "--quiet", env={"SALMAT_PROGRESS_INTERVAL": "0"})
    assert quiet.stderr.count("\n") == 1


def test_a_bad_progress_interval_is_a_warning_and_the_default(monkeypatch):
    from salmat.progress import log_interval

    monkeypatch.setenv("SALMAT_PROGRESS_INTERVAL", "soon")
    assert log_interval() == 10.0
    monkeypatch.setenv("SALMAT_PROGRESS_INTERVAL", "2.5")
    assert log_interval() == 2.5


# ---- --version ----------------------------------------------------------------------------


def test_version_flag_prints_the_package_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"salmat {salmat.__version__}"


# ---- settings that have no effect ---------------------------------------------------------


def _one_clip_table(tmp_path, clip_folder, **extra):
    return write_jsonl(tmp_path / "t.jsonl", [{"src": str(clip_folder / "disc.mp4"), **extra}])


@pytest.mark.parametrize("flags, warning", [
    (["--ema-alpha", "0.3"], "--ema-alpha 0.3 has no effect"),
    (["--max-frames", "4"], "--max-frames 4 has no effect with --sampling clip"),
    (["--device", "cuda"], "--device cuda has no effect"),
    (["--ray-address", "auto"], "--ray-address has no effect without --engine ray"),
    (["--no-cache", "--cache", "x.sqlite"], "--cache has no effect with --no-cache"),
])
def test_a_setting_without_effect_is_one_warning_line(tmp_path, clip_folder, flags, warning):
    table = _one_clip_table(tmp_path, clip_folder)
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--workers", "1",
                             "--frame-samples", "2", "--quiet", *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("salmat: warning:")]
    assert len(lines) == 1 and warning in lines[0], proc.stderr


def test_no_warning_when_every_setting_applies(tmp_path, clip_folder):
    table = _one_clip_table(tmp_path, clip_folder)
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--workers", "1",
                             "--frame-samples", "2", "--temporal-aggregator", "ema", "--ema-alpha", "0.3",
                             "--sampling", "head", "--max-frames", "4", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "salmat: warning" not in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["--default-width", "64"], "--default-width needs --default-height"),
    (["--default-height", "48"], "--default-height needs --default-width"),
    (["--compat", "historical", "--frame-samples", "4"], "--frame-samples"),
    (["--compat", "historical", "--max-frames", "16"], "--max-frames"),
])
def test_settings_that_cannot_work_together_are_a_usage_error(tmp_path, clip_folder, flags, message):
    table = _one_clip_table(tmp_path, clip_folder)
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", *flags, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o.jsonl").exists()


# ---- rows skipped from another configuration ----------------------------------------------


def test_rows_holding_another_models_values_are_counted_with_the_fix(tmp_path, clip_folder):
    src = str(clip_folder / "disc.mp4")
    rows = [{"src": src, "saliency_mean": 0.5, "saliency_var": 0.1, "saliency_model_id": "saliency_student_v1",
             "saliency_aggregator": "max"}] * 3
    rows += [{"src": src, "saliency_mean": 0.5, "saliency_var": 0.1, "saliency_model_id": "image_signature_v1",
              "saliency_aggregator": "mean"}]
    rows += [{"src": src}]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    report = salmat.materialize(table, tmp_path / "o.jsonl", workers=1, frame_samples=2, quiet=True)
    assert report.counts == {"ok": 1, "skipped-existing": 4}
    assert len(report.notes) == 1
    note = report.notes[0]
    assert note.startswith("3 row(s) were left as they were") and "saliency_student_v1/max (3)" in note
    assert "image_signature_v1/mean" in note and "Pass overwrite=True to" in note  # the fix, as Python spells it
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o2.jsonl", "--workers", "1",
                             "--frame-samples", "2", "--quiet", cwd=tmp_path)
    assert "3 row(s) were left as they were" in proc.stderr


def test_a_rerun_of_the_same_configuration_says_nothing_about_its_skipped_rows(tmp_path, clip_folder):
    rows = [{"src": str(clip_folder / "disc.mp4")}, {"src": str(clip_folder / "odd.mp4")}]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    salmat.materialize(table, tmp_path / "o.jsonl", workers=1, frame_samples=2, quiet=True)
    grown = write_jsonl(tmp_path / "grown.jsonl", [*read_jsonl(tmp_path / "o.jsonl"), {"src": rows[0]["src"]}])
    again = salmat.materialize(grown, tmp_path / "o2.jsonl", workers=1, frame_samples=2, quiet=True)
    assert again.counts == {"skipped-existing": 2, "ok": 1}
    assert again.notes == []


def test_a_run_with_every_row_skipped_says_nothing_was_computed_and_how_to_add_columns(tmp_path, clip_folder):
    """A full-reference table's second run without --column-prefix used to skip every row silently."""
    rows = [{"dis": str(clip_folder / "disc.mp4"), "ref": str(clip_folder / "odd.mp4")}]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    salmat.materialize(table, tmp_path / "o.jsonl", workers=1, frame_samples=2, quiet=True, path_column="dis")
    proc = run_cli_inprocess("materialize", "--input", tmp_path / "o.jsonl", "--output", tmp_path / "o2.jsonl",
                             "--path-column", "ref", "--workers", "1", "--frame-samples", "2", cwd=tmp_path)
    assert proc.returncode == 0
    warning = [line for line in proc.stderr.splitlines() if line.startswith("salmat: warning:")]
    assert len(warning) == 1 and "all 1 row(s) already hold saliency_mean/saliency_var" in warning[0]
    assert "--column-prefix" in warning[0] and "--overwrite" in warning[0]
    other = salmat.materialize(tmp_path / "o.jsonl", tmp_path / "o3.jsonl", workers=1, frame_samples=2, quiet=True,
                               path_column="dis", temporal_aggregator="ema")
    assert len(other.notes) == 1 and "ema alpha=0.6" in other.notes[0]


# ---- a failed run ---------------------------------------------------------------------------


def test_a_failed_run_prints_counts_and_the_first_error_of_each_status(tmp_path, clip_folder):
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 100)
    rows = [{"src": "missing1.mp4"}, {"src": "junk.mp4"}, {"src": "missing2.mp4"}, {"src": "junk.mp4"},
            {"src": str(clip_folder / "disc.mp4")}]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--root", tmp_path,
                             "--workers", "1", "--frame-samples", "2", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    missing = [line for line in lines if line.startswith("salmat: missing-source:")]
    failed = [line for line in lines if line.startswith("salmat: decode-failed:")]
    assert len(missing) == 1 and "2 row(s)" in missing[0] and "missing1.mp4" in missing[0], proc.stderr
    assert len(failed) == 1 and "2 row(s)" in failed[0] and "junk.mp4" in failed[0], proc.stderr
    assert lines[-1].startswith("salmat: total=5 ok=1 skipped=0 failed=4")  # the summary stays last
    assert [r["saliency_status"] for r in read_jsonl(tmp_path / "o.jsonl")] == [
        "missing-source", "decode-failed", "missing-source", "decode-failed", "ok"]


# ---- a typo in a flag -----------------------------------------------------------------------


@pytest.mark.parametrize("args, hint, command", [
    (["materialize", "--input", "a", "--output", "b", "--colum-prefix", "x"], "--column-prefix", "materialize"),
    (["materialize", "--input", "a", "--output", "b", "--ema_alpha", "0.3"], "--ema-alpha", "materialize"),
    (["compare", "--input", "a", "--out", "b", "--model", "m"], "--models", "compare"),
    (["preview", "clip.mp4", "--output", "s.png"], "--out", "preview"),
    (["models", "--model-dirs", "d"], "--model-dir", "models"),
    (["models", "pull", "saliency_student_v1", "--urls", "http://x/m.onnx"], "--url", "models pull"),
    (["models", "pull", "--model-dirr", "d", "saliency_student_v1"], "--model-dir", "models pull"),
    (["compare", "--inputt", "a", "--out", "b"], "--input", "compare"),  # not "required: --input"
    (["materialize", "--outptu", "b", "--input", "a"], "--output", "materialize"),
])
def test_a_mistyped_flag_names_the_closest_one_and_its_commands_help(args, hint, command):
    """Before any other complaint (a missing required flag, a value taken for a subcommand)."""
    proc = run_cli_inprocess(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"(did you mean {hint}?)" in proc.stderr and f"see `salmat {command} --help`" in proc.stderr


def test_an_unknown_flag_with_no_close_one_still_names_the_commands_help():
    proc = run_cli_inprocess("materialize", "--input", "a", "--output", "b", "--zzz")
    assert proc.returncode == 2
    assert "did you mean" not in proc.stderr and "unrecognized arguments: --zzz" in proc.stderr
    assert "see `salmat materialize --help`" in proc.stderr


def test_a_cache_path_with_per_frame_is_a_warning(tmp_path, clip_folder):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(clip_folder / "disc.mp4"), "f": 0}])
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--per-frame",
                             "--frame-column", "f", "--cache", tmp_path / "c.sqlite", "--workers", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "salmat: warning: --cache has no effect with --per-frame" in proc.stderr
    assert not (tmp_path / "c.sqlite").exists()


def test_a_per_frame_run_names_the_first_missing_frame(tmp_path, clip_folder):
    rows = [{"src": str(clip_folder / "disc.mp4"), "f": f} for f in (0, 10_000, None)]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--per-frame",
                             "--frame-column", "f", "--workers", "1", "--quiet")
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("salmat: missing-frame:")]
    assert line.startswith("salmat: missing-frame: 2 row(s); first: disc.mp4: frame 10000 is past the end"), line


def test_rows_sampled_otherwise_are_another_configuration(tmp_path, clip_folder):
    """`--frame-samples 4` and `8` give other values: the skip note tells them apart by saliency_frames."""
    rows = [{"src": str(clip_folder / "disc.mp4")}, {"src": str(clip_folder / "odd.mp4")}]
    salmat.materialize(write_jsonl(tmp_path / "t.jsonl", rows), tmp_path / "o.jsonl", workers=1, frame_samples=2,
                       quiet=True)
    grown = write_jsonl(tmp_path / "grown.jsonl", [*read_jsonl(tmp_path / "o.jsonl"), rows[0]])
    same = salmat.materialize(grown, tmp_path / "same.jsonl", workers=1, frame_samples=2, quiet=True)
    assert same.notes == []
    other = salmat.materialize(grown, tmp_path / "other.jsonl", workers=1, frame_samples=3, quiet=True)
    assert len(other.notes) == 1
    assert "image_signature_v1/mean frames=clip:2 (2)" in other.notes[0]
    assert "this run asked for image_signature_v1/mean frames=clip:3" in other.notes[0]


@pytest.mark.parametrize("signum, said", [(signal.SIGTERM, 0), (signal.SIGINT, 1)])
def test_a_stop_a_library_swallowed_is_said_once(monkeypatch, signum, said):
    """SIGTERM's handler says "terminated" itself: the CLI added "interrupted" after it when some
    library swallowed the SystemExit (seen in a feeder run stopped while loading)."""
    from salmat import cli
    from salmat.outputs import lifecycle

    def swallowed(args, argv):
        lifecycle._STOPPED_BY.append(signum)  # what the handler records before raising
        return 0

    monkeypatch.setattr(cli, "_run_models", swallowed)
    proc = run_cli_inprocess("models")
    assert proc.returncode == 128 + signum
    assert proc.stderr.count("salmat: interrupted; no output was written") == said, proc.stderr
    assert lifecycle.stop_requested() is None  # a later call in this process is not stopped by it


# ---- row errors name settings as the caller passes them, whichever process wrote them ----


@pytest.mark.parametrize("engine", [["--engine", "local", "--workers", "2"], ["--engine", "feeder", "--workers", "2"],
                                    ["--workers", "1"]])
def test_a_row_error_from_a_worker_names_the_flag_on_the_command_line(tmp_path, disc_clip, odd_clip, engine):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}, {"src": str(odd_clip)}])
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--max-pixels",
                             "10000", "--no-cache", "--quiet", "--frame-samples", "1", *engine)
    assert proc.returncode == 1, proc.stderr  # every row failed
    errors = [row["saliency_error"] for row in read_jsonl(tmp_path / "o.jsonl")]
    assert all("exceeds --max-pixels 10000" in e for e in errors), errors


@pytest.mark.parametrize("engine", [{"workers": 2}, {"workers": 1}])
def test_a_row_error_names_the_keyword_from_python(tmp_path, disc_clip, engine):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    salmat.materialize(str(table), str(tmp_path / "o.jsonl"), max_pixels=10_000, no_cache=True, quiet=True,
                       frame_samples=1, **engine)
    [row] = read_jsonl(tmp_path / "o.jsonl")
    assert "exceeds max_pixels=10000" in row["saliency_error"], row


def test_a_ctrl_c_after_a_cli_call_does_not_stop_later_python_calls(tmp_path, disc_clip):
    """`cli.main` leaves its SIGINT handler installed (a notebook, a test session): a Ctrl-C of
    other code afterwards is a plain KeyboardInterrupt, not a stop of every later API run."""
    import os

    from salmat.outputs import lifecycle

    run_cli_inprocess("models")
    assert signal.getsignal(signal.SIGINT) is lifecycle._on_sigint
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs at the next bytecode boundary
    assert lifecycle.stop_requested() is None
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    report = salmat.materialize(str(table), str(tmp_path / "o.jsonl"), frame_samples=1, workers=1, quiet=True)
    assert report.counts == {"ok": 1} and (tmp_path / "o.jsonl").exists()
