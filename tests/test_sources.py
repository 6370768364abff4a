"""Row → clip resolution: relative paths, raw .yuv geometry, deduplication."""

import numpy as np
import pyarrow as pa

from conftest import run_cli_inprocess, write_jsonl
from salmat.row_plan import plan_rows
from salmat.sources import ClipSpec, SourceFailure, SourceOptions, geometry_from_name


def test_geometry_from_file_name():
    assert geometry_from_name("Name_1920x1080_25fps_10bit_420.yuv") == (1920, 1080, 10)
    assert geometry_from_name("BVI_960x544_8bit.yuv") == (960, 544, 8)
    assert geometry_from_name("plain.yuv") == (None, None, None)


def test_rows_sharing_a_clip_resolve_once_and_relative_paths_join_root(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b_176x144_8bit_420.yuv").write_bytes(b"x")
    table = pa.table({
        "src": ["a.mp4", "a.mp4", "b_176x144_8bit_420.yuv", None, "gone.mp4", "a.mp4"],
        "width": [1, 2, None, None, None, None],
    })
    plan = plan_rows(table, SourceOptions(root=str(tmp_path)), np.ones(6, dtype=bool))
    specs = [s for s in plan.sources if isinstance(s, ClipSpec)]
    assert len(specs) == 2  # a.mp4 once, whatever its rows say about width
    a = plan.sources[plan.row_source[0]]
    assert a == ClipSpec(str(tmp_path / "a.mp4"))
    assert plan.row_source[0] == plan.row_source[1] == plan.row_source[5]
    yuv = plan.sources[plan.row_source[2]]
    assert (yuv.raw, yuv.width, yuv.height, yuv.bit_depth) == (True, 176, 144, 8)
    assert plan.sources[plan.row_source[3]] == SourceFailure("missing-source", "column 'src' is empty")
    assert plan.sources[plan.row_source[4]].status == "missing-source"


def test_raw_yuv_geometry_order_row_then_default_then_name(tmp_path):
    (tmp_path / "c_64x32_10bit.yuv").write_bytes(b"x")
    (tmp_path / "plain.yuv").write_bytes(b"x")
    table = pa.table({"src": ["c_64x32_10bit.yuv", "c_64x32_10bit.yuv", "plain.yuv"], "w": [16, None, None],
                      "h": [8, None, None]})
    opts = SourceOptions(root=str(tmp_path), width_column="w", height_column="h")
    plan = plan_rows(table, opts, np.ones(3, dtype=bool))
    row0, row1, row2 = (plan.sources[i] for i in plan.row_source)
    assert (row0.width, row0.height, row0.bit_depth) == (16, 8, 10)
    assert (row1.width, row1.height) == (64, 32)
    assert row2.status == "missing-geometry"
    with_default = plan_rows(table, SourceOptions(root=str(tmp_path), width_column="w", height_column="h",
                                                  default_width=20, default_height=10), np.ones(3, dtype=bool))
    assert with_default.sources[with_default.row_source[2]].width == 20


def test_confine_to_root_and_unwanted_rows(tmp_path):
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    table = pa.table({"src": ["../outside.mp4", "../outside.mp4"]})
    plan = plan_rows(table, SourceOptions(root=str(root), confine_to_root=True), np.array([True, False]))
    assert plan.sources[plan.row_source[0]].status == "outside-root"
    assert plan.row_source[1] == -1


def test_a_missing_file_names_the_folder_it_was_looked_for_in_and_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clips = tmp_path / "clips"
    clips.mkdir()
    table = pa.table({"src": ["bikes.mp4", str(tmp_path / "abs.mp4")]})
    bare = plan_rows(table, SourceOptions(), np.ones(2, dtype=bool)).sources
    assert bare[0] == SourceFailure("missing-source", f"bikes.mp4: no such file in the current folder {tmp_path}, "
                                                      "where relative paths are read from without root; pass "
                                                      "root=FOLDER to name the clips' folder")  # Python's spelling
    assert bare[1] == SourceFailure("missing-source", f"{tmp_path / 'abs.mp4'}: no such file")
    rooted = plan_rows(table, SourceOptions(root="clips"), np.ones(2, dtype=bool)).sources
    assert rooted[0] == SourceFailure("missing-source", f"bikes.mp4: no such file in root {clips}")


def test_the_missing_file_message_reaches_the_cli_user(tmp_path):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "bikes.mp4"}])
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--workers", "1",
                             cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("salmat: missing-source:")]
    assert f"no such file in the current folder {tmp_path}" in line and "--root FOLDER" in line
