"""Exit codes and messages at a run's edges (issue #20, points 5 and 8): a manifest of the wrong
types, `preview` of a broken file, an audit of numbers near float64's limit, a table id holding a
newline, a path with a trailing slash, errors naming the right kind of source, a BOM on stdin."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pyarrow as pa
import pytest

from conftest import error_exit_line, run_cli_inprocess, write_jsonl
from salmat.signal_audit import audit_arrow

# ---- point 5: manifest types are checked before any table runs ------------------------------


@pytest.mark.parametrize("root", ["5", "true", "1.5", "{ a = 1 }"])
@pytest.mark.parametrize("where", ["defaults", "table"])
def test_manifest_root_of_the_wrong_type_is_a_check_time_exit_2(tmp_path, root, where):
    write_jsonl(tmp_path / "in.jsonl", [{"src": "x.mp4"}])
    first = '[[tables]]\nid = "first"\ninput = "in.jsonl"\noutput = "first.jsonl"\n'
    second = '[[tables]]\nid = "second"\ninput = "in.jsonl"\noutput = "second.jsonl"\n'
    text = f"[defaults]\nroot = {root}\n" + first + second if where == "defaults" else first + second + f"root = {root}\n"
    (tmp_path / "m.toml").write_text(text, encoding="utf-8")
    line = error_exit_line(run_cli_inprocess("batch", "--manifest", tmp_path / "m.toml"))
    assert "tables[" in line and "--root must be" in line
    assert not (tmp_path / "first.jsonl").exists()  # refused before the first table ran


# ---- point 5: a table id holding a newline keeps its progress line one line -----------------


def test_table_id_with_a_newline_is_escaped_in_the_progress_line(tmp_path, disc_clip):
    shutil.copy(disc_clip, tmp_path / "disc.mp4")
    write_jsonl(tmp_path / "in.jsonl", [{"src": "disc.mp4"}])
    tables = [{"id": "two\nlines\tand\x1b[31mred", "input": "in.jsonl", "output": "o.jsonl"},
              {"id": "missing", "input": "nope\nnope.jsonl", "output": "o2.jsonl"}]
    (tmp_path / "m.json").write_text(json.dumps({"defaults": {"frame_samples": 1, "no_cache": True, "root": "."},
                                                 "tables": tables}), encoding="utf-8")
    proc = run_cli_inprocess("batch", "--manifest", tmp_path / "m.json", "--quiet")
    lines = proc.stderr.splitlines()
    assert any(line.startswith("salmat: batch two\\nlines\\tand\\x1b[31mred: ok total=1") for line in lines), lines
    missing = [line for line in lines if line.startswith("salmat: batch missing: error")]
    assert len(missing) == 1 and "nope\\nnope.jsonl" in missing[0], lines
    assert all(line.startswith("salmat: ") for line in lines), lines  # nothing split onto a line of its own


# ---- point 5: preview of an empty or cut-off file -------------------------------------------


@pytest.mark.parametrize("size", [0, 100, 1000])
def test_preview_of_a_broken_mp4_says_decode_failed(tmp_path, disc_clip, size):
    clip = tmp_path / "broken.mp4"
    clip.write_bytes(disc_clip.read_bytes()[:size])
    line = error_exit_line(run_cli_inprocess("preview", clip, "--out", tmp_path / "s.png"))
    assert line.startswith("salmat: error: ") and "(decode-failed)" in line and line.count(str(clip)) == 1, line
    assert not (tmp_path / "s.png").exists()


def test_preview_of_a_good_clip_still_labels_its_frames(tmp_path, disc_clip):
    proc = run_cli_inprocess("preview", disc_clip, "--out", tmp_path / "s.png", "--frame-samples", "3")
    assert proc.returncode == 0, proc.stderr
    assert "indices=" in proc.stderr and "indices=unknown" not in proc.stderr, proc.stderr


# ---- point 5: an audit of numbers near float64's limit --------------------------------------


def _audit_input(scale: float, feature_scale: float = 1.0) -> pa.Table:
    rng = np.random.default_rng(11)
    n = 120
    key = rng.normal(size=n)
    sal = rng.uniform(0.1, 0.6, size=n)
    target = 60 + 10 * key + 30 * (sal - sal.mean()) + 2 * rng.normal(size=n)
    return pa.table({"clip_id": [f"c{i}" for i in range(n)], "sharpness": key * feature_scale,
                     "saliency_mean": sal, "saliency_var": rng.uniform(0, 0.02, size=n),
                     "vmaf": target * scale})


def _numbers(report: dict) -> dict:
    feats = {f["column"]: (f["pearson"], f["spearman"]) for f in report["features"]}
    inc = report["incremental"]
    return {"features": feats, "delta": inc["delta"], "with": inc["with_saliency"], "ci": inc["ci95"]}


@pytest.mark.parametrize("scale", [1e306, 1e-300])
def test_audit_of_a_target_near_float64_limits_is_exact_and_silent(scale):
    plain = _numbers(audit_arrow(_audit_input(1.0), bootstrap=50).report)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        scaled = _numbers(audit_arrow(_audit_input(scale), bootstrap=50).report)
    assert _close(scaled, plain), (scaled, plain)


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == pytest.approx(b, abs=2e-6)


def test_audit_of_a_feature_near_float64_limit_reports_its_spread():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = audit_arrow(_audit_input(1.0, feature_scale=1e307), bootstrap=0).report
    plain = audit_arrow(_audit_input(1.0), bootstrap=0).report
    key = next(f for f in report["features"] if f["column"] == "sharpness")
    key_plain = next(f for f in plain["features"] if f["column"] == "sharpness")
    assert key["std"] == pytest.approx(key_plain["std"] * 1e307, rel=1e-5)
    assert key["spearman"] == key_plain["spearman"]


def test_audit_cli_prints_no_numpy_warning_for_a_1e308_target(tmp_path):
    import pyarrow.parquet as pq

    table = _audit_input(1.0)
    target = table.column("vmaf").to_numpy().copy()
    target[3] = 1e308
    pq.write_table(table.set_column(4, "vmaf", pa.array(target)), tmp_path / "t.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (pytest would swallow a printed warning; as an error it ends the run)
        proc = run_cli_inprocess("audit", "--input", tmp_path / "t.parquet", "--out", tmp_path / "a", "--no-plots",
                                 "--bootstrap", "20")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "overflow" not in proc.stderr, proc.stderr
    report = json.loads((tmp_path / "a" / "signal_audit.json").read_text())
    assert report["incremental"]["status"] == "done"


# ---- point 8: a trailing slash, what a non-video file is called, a BOM on stdin -------------


@pytest.mark.parametrize("written", ["disc.mp4/", "./disc.mp4/", "disc.mp4/.", "disc.mp4//"])
def test_a_path_ending_in_a_slash_names_a_folder_not_the_file(tmp_path, disc_clip, written):
    shutil.copy(disc_clip, tmp_path / "disc.mp4")
    write_jsonl(tmp_path / "in.jsonl", [{"src": written}, {"src": "disc.mp4"}])
    proc = run_cli_inprocess("materialize", "--input", tmp_path / "in.jsonl", "--output", tmp_path / "o.jsonl",
                             "--root", tmp_path, "--frame-samples", "1", "--no-cache")
    assert proc.returncode == 1, proc.stderr  # a row failed
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["saliency_status"] for r in rows] == ["missing-source", "ok"]
    assert "names a folder, not a clip file" in rows[0]["saliency_error"] and rows[0]["saliency_mean"] is None


def _wav(path):
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes((np.sin(np.arange(8000) / 5) * 8000).astype("<i2").tobytes())


def _mp3(path):
    av = pytest.importorskip("av")
    try:
        with av.open(str(path), "w", format="mp3") as out:
            stream = out.add_stream("mp3", rate=22050)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 22050), dtype=np.int16), format="s16", layout="mono")
            frame.rate = 22050
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
    except (av.error.FFmpegError, ValueError) as exc:
        pytest.skip(f"this FFmpeg has no MP3 encoder ({exc})")


def _picture(suffix):
    def write(path):
        import cv2

        picture = np.zeros((48, 64, 3), dtype=np.uint8)
        picture[:, :32] = (40, 200, 90)
        assert cv2.imwrite(str(path), picture)
    return write


@pytest.mark.parametrize(("name", "make", "kind"), [
    ("tone.wav", _wav, "an audio file (WAV)"), ("tone.mp3", _mp3, "an audio file"),
    ("still.png", _picture(".png"), "a still image (PNG)"), ("still.jpg", _picture(".jpg"), "a still image (JPEG)"),
    ("still.bmp", _picture(".bmp"), "a still image (BMP)"), ("still.tif", _picture(".tif"), "a still image (TIFF)"),
    ("still.webp", _picture(".webp"), "a still image (WebP)"),
])
def test_audio_and_image_sources_are_named_as_such_not_as_playlists(tmp_path, name, make, kind):
    make(tmp_path / name)
    write_jsonl(tmp_path / "in.jsonl", [{"src": name}])
    proc = run_cli_inprocess("materialize", "--input", tmp_path / "in.jsonl", "--output", tmp_path / "o.jsonl",
                             "--root", tmp_path, "--no-cache")
    assert proc.returncode == 1, proc.stderr  # the row failed
    row = json.loads((tmp_path / "o.jsonl").read_text())
    assert row["saliency_status"] == "decode-failed"
    assert kind in row["saliency_error"] and "playlist" not in row["saliency_error"], row["saliency_error"]
    assert "playlist" not in proc.stderr


@pytest.mark.parametrize("how", ["stdin", "file", "gzip"])
def test_a_jsonl_with_a_utf8_bom_is_read_like_a_csv_with_one(tmp_path, disc_clip, how):
    import gzip
    import os
    import subprocess
    import sys

    shutil.copy(disc_clip, tmp_path / "disc.mp4")
    text = b'{"src":"disc.mp4","mos":4.5}\n{"src":"disc.mp4","mos":3}\n'
    args = ["--root", str(tmp_path), "--frame-samples", "1", "--no-cache", "--quiet"]
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(text)
    assert run_cli_inprocess("materialize", "--input", plain, "--output", tmp_path / "want.jsonl", *args).returncode == 0
    bom = b"\xef\xbb\xbf" + text
    if how == "stdin":  # through a real pipe: stdin is a process boundary
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.run([sys.executable, "-m", "salmat", "materialize", "--input", "-", "--output",
                               str(tmp_path / "got.jsonl"), *args], input=bom, capture_output=True, timeout=300,
                              env=env)
        assert proc.returncode == 0, proc.stderr.decode()
    else:
        source = tmp_path / ("bom.jsonl.gz" if how == "gzip" else "bom.jsonl")
        source.write_bytes(gzip.compress(bom) if how == "gzip" else bom)
        proc = run_cli_inprocess("materialize", "--input", source, "--output", tmp_path / "got.jsonl", *args)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "got.jsonl").read_bytes() == (tmp_path / "want.jsonl").read_bytes()  # "src", not "\ufeffsrc"
