"""Opening a source: confined to `--root`, and never blocking, through the real pipeline on each engine.

Confinement can't be escaped: a source is opened as one plain local file and checked
when it is opened, so no playlist, concat list, image sequence or URL-like path reaches a file
outside `--root`, a symlink re-pointed after planning is not followed, a NUL byte is a row
status, and `--confine-to-root` without `--root` is a usage error.

Nothing hangs by default: FIFOs, devices, sockets and folders get a status before they
are opened, and a live playlist is never read. The runs that hung the earlier code go through
`_materialize_in_subprocess`, which kills them (and their workers) after a timeout, so a
regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import pytest

import salmat
import salmat.pipeline
from conftest import ENGINE_SETTINGS, read_jsonl, write_jsonl
from salmat.errors import SalmatError
from synthetic_clips import disc_frame_rgb, write_raw_yuv

HANG_TIMEOUT_S = 60

# ---------------------------------------------------------------- engines

@pytest.fixture(params=["inline", "pool"])
def local_engine(request):
    """For runs with relative paths or a changed working folder, which Ray workers don't share."""
    return ENGINE_SETTINGS[request.param]


# ---------------------------------------------------------------- sources


def remux(src: Path, dst: Path) -> Path:
    """`src`'s video stream, unchanged, in the container `dst`'s suffix names (e.g. .ts)."""
    with av.open(str(src)) as source, av.open(str(dst), "w") as target:
        stream = source.streams.video[0]
        out = target.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = out
            target.mux(packet)
    return dst


def write_png(path: Path, index: int) -> Path:
    av.VideoFrame.from_ndarray(disc_frame_rgb(index, 3, 64, 48), format="rgb24").to_image().save(path)
    return path


@pytest.fixture()
def root_and_outside(tmp_path, clip_folder, disc_clip):
    """`root/` with one good clip; `outside/` beside it with other clips (the "secret")."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    shutil.copy(clip_folder / "carphone.mp4", root / "inside.mp4")
    shutil.copy(disc_clip, outside / "secret.mp4")
    remux(disc_clip, outside / "secret.ts")
    return root, outside


def hls(segments: list[str], live: bool = False) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    for segment in segments:
        lines += ["#EXTINF:1.0,", segment]
    if not live:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def statuses(rows: list[dict]) -> dict[str, str]:
    return {r["case"]: r["saliency_status"] for r in rows}


def run_table(tmp_path: Path, cases: list[tuple[str, str, str]], **settings) -> list[dict]:
    """One row per (case, src, expected status); the output rows in input order."""
    table = write_jsonl(tmp_path / "t.jsonl", [{"case": case, "src": src} for case, src, _ in cases])
    out = tmp_path / "out.jsonl"
    salmat.materialize(str(table), str(out), no_cache=True, quiet=True, frame_samples=2, **settings)
    rows = read_jsonl(out)
    assert [r["case"] for r in rows] == [case for case, _, _ in cases]
    for row in rows:
        if row["saliency_status"] != "ok":
            assert row["saliency_mean"] is None and row["saliency_error"]
    return rows


# ---------------------------------------------------------------- confinement


def test_playlists_concat_lists_and_image_sequences_cannot_reach_outside_the_root(root_and_outside, tmp_path, engine):
    """Each of these decoded the outside clip (`ok`, its value) before; now no demuxer may open a
    second file, so each is `decode-failed`."""
    root, outside = root_and_outside
    (root / "absolute.m3u8").write_text(hls([str(outside / "secret.ts")]))
    (root / "relative.m3u8").write_text(hls(["../outside/secret.ts"]))
    (root / "file_url.m3u8").write_text(hls([f"file:{outside / 'secret.ts'}"]))
    os.symlink(outside / "secret.mp4", root / "link.mp4")  # only ever named inside the lists
    (root / "list.ffconcat").write_text("ffconcat version 1.0\nfile link.mp4\n")
    (root / "list.txt").write_text("ffconcat version 1.0\nfile 'link.mp4'\n")
    for i in range(3):  # an image2 pattern whose frames are symlinks to outside images
        os.symlink(write_png(outside / f"img_{i:03d}.png", i), root / f"seq_{i:03d}.png")
    shutil.copy(root / "seq_000.png", root / "seq_%03d.png")
    cases = [
        ("hls playlist, absolute segment path", "absolute.m3u8", "decode-failed"),
        ("hls playlist, relative segment path", "relative.m3u8", "decode-failed"),
        ("hls playlist, file: segment URL", "file_url.m3u8", "decode-failed"),
        ("ffconcat list naming a symlink out", "list.ffconcat", "decode-failed"),
        ("concat list named .txt", "list.txt", "decode-failed"),
        ("image2 sequence pattern", "seq_%03d.png", "decode-failed"),
        ("good clip", "inside.mp4", "ok"),
    ]
    rows = run_table(tmp_path, cases, root=str(root), confine_to_root=True, **engine)
    assert statuses(rows) == {case: status for case, _, status in cases}
    for row in rows[:-1]:
        assert "single-file" in row["saliency_error"], row


def test_url_like_paths_are_plain_local_files(root_and_outside, tmp_path, monkeypatch, local_engine):
    """With `root="."` a relative path stays relative, and FFmpeg used to read a `file:`,
    `concat:` or `subfile,,…:` prefix as a protocol: past `--confine-to-root` to the outside
    clip, or to a different file than the one checked. Now the named local file is read."""
    root, _ = root_and_outside
    escapes = ["file:../outside/secret.mp4", "concat:../outside/secret.ts",
               "subfile,,start,0,end,0,,:../outside/secret.ts"]
    for name in escapes:  # what the path names as a local file, inside the root: not a video
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("a decoy inside the root, not a video\n")
    shutil.copy(root / "inside.mp4", root / "file:copy.mp4")  # and no `copy.mp4` anywhere
    monkeypatch.chdir(root)
    cases = [(f"path {name}", name, "decode-failed") for name in escapes]
    cases += [("file: named local copy", "file:copy.mp4", "ok"), ("good clip", "inside.mp4", "ok")]
    rows = run_table(tmp_path, cases, root=".", confine_to_root=True, **local_engine)
    assert statuses(rows) == {case: status for case, _, status in cases}
    assert rows[3]["saliency_mean"] == rows[4]["saliency_mean"]  # the same bytes, the same value


def test_symlinks_re_pointed_after_planning_are_not_followed(root_and_outside, tmp_path, monkeypatch, engine, request):
    """Planning saw every link inside the root; they are re-pointed outside before the clips are
    opened. The check made when the file is opened refuses what it really opened."""
    root, outside = root_and_outside
    shutil.copy(root / "inside.mp4", root / "inside2.mp4")
    os.symlink(root / "inside.mp4", root / "link.mp4")
    os.symlink(root / "inside2.mp4", root / "hop.mp4")
    os.symlink(root / "hop.mp4", root / "chain.mp4")  # chain.mp4 → hop.mp4 → inside2.mp4
    (root / "realsub").mkdir()
    shutil.copy(root / "inside.mp4", root / "realsub" / "clip.mp4")
    (outside / "sub").mkdir()
    shutil.copy(outside / "secret.mp4", outside / "sub" / "clip.mp4")
    os.symlink(root / "realsub", root / "sub")
    write_raw_yuv(root / "plain_64x48.yuv", 64, 48, frames=3)
    write_raw_yuv(outside / "secret_64x48.yuv", 64, 48, frames=3)
    os.symlink(root / "plain_64x48.yuv", root / "raw_64x48.yuv")
    swaps = {root / "link.mp4": outside / "secret.mp4", root / "hop.mp4": outside / "secret.mp4",
             root / "sub": outside / "sub", root / "raw_64x48.yuv": outside / "secret_64x48.yuv"}
    plan_rows = salmat.pipeline.plan_rows

    def plan_then_swap(*args, **kwargs):
        plan = plan_rows(*args, **kwargs)
        for link, target in swaps.items():
            link.unlink()
            os.symlink(target, link)
        return plan

    monkeypatch.setattr(salmat.pipeline, "plan_rows", plan_then_swap)
    cases = [
        ("symlink re-pointed", "link.mp4", "outside-root"),
        ("symlink chain, middle link re-pointed", "chain.mp4", "outside-root"),
        ("folder symlink re-pointed", "sub/clip.mp4", "outside-root"),
        ("raw .yuv symlink re-pointed", "raw_64x48.yuv", "outside-root"),
        ("good clip", "inside.mp4", "ok"),
    ]
    rows = run_table(tmp_path, cases, root=str(root), confine_to_root=True, **engine)
    assert statuses(rows) == {case: status for case, _, status in cases}
    for row in rows[:-1]:
        assert "outside root " in row["saliency_error"], row


@pytest.mark.parametrize("confine", [True, False], ids=["confined", "unconfined"])
def test_nul_byte_in_a_path_is_missing_source_not_a_traceback(root_and_outside, tmp_path, confine):
    root, _ = root_and_outside
    cases = [("NUL byte", "in\x00side.mp4", "missing-source"), ("NUL byte, absolute", f"{root}/x\x00.mp4",
                                                                 "missing-source"), ("good clip", "inside.mp4", "ok")]
    rows = run_table(tmp_path, cases, root=str(root), confine_to_root=confine, workers=1)
    assert statuses(rows) == {case: status for case, _, status in cases}
    assert "NUL byte" in rows[0]["saliency_error"] and "\\x00" in rows[0]["saliency_error"]
    assert "\x00" not in rows[0]["saliency_error"]


def test_confine_to_root_without_root_is_a_usage_error(tmp_path, disc_clip):
    """It confined nothing and said nothing: any absolute path was `ok`."""
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    out = tmp_path / "out.jsonl"
    with pytest.raises(SalmatError, match="confine_to_root needs root"):  # named as Python passes them
        salmat.materialize(str(table), str(out), confine_to_root=True, workers=1, no_cache=True, quiet=True)
    assert not out.exists()


def test_check_source_options():
    from salmat.sources import check_source_options

    with pytest.raises(SalmatError, match="confine_to_root needs root .*; pass root=FOLDER"):
        check_source_options(None, True)
    check_source_options("/data", True)
    check_source_options(None, False)


# ---------------------------------------------------------------- nothing hangs

_RUN = textwrap.dedent("""
    import json, os, sys
    import salmat, salmat.pipeline

    args = json.loads(sys.argv[1])
    to_fifo = args.pop("to_fifo_after_planning")
    if to_fifo:
        plan_rows = salmat.pipeline.plan_rows

        def plan_then_swap(*a, **k):
            plan = plan_rows(*a, **k)
            for path in to_fifo:
                os.unlink(path)
                os.mkfifo(path)
            return plan

        salmat.pipeline.plan_rows = plan_then_swap
    report = salmat.materialize(args.pop("table"), args.pop("out"), **args)
    print(json.dumps(report.counts))
""")


def _materialize_in_subprocess(tmp_path: Path, cases: list[tuple[str, str, str]], to_fifo_after_planning=(),
                               timeout: float = HANG_TIMEOUT_S, **settings) -> list[dict]:
    """`salmat.materialize` with its default settings (no `clip_timeout`) in a child process
    whose stdin is a pipe nobody writes to; the child and its workers are killed past `timeout`."""
    table = write_jsonl(tmp_path / "t.jsonl", [{"case": case, "src": src} for case, src, _ in cases])
    out = tmp_path / "out.jsonl"
    args = {"table": str(table), "out": str(out), "no_cache": True, "quiet": True, "frame_samples": 2,
            "to_fifo_after_planning": [str(p) for p in to_fifo_after_planning], **settings}
    with open(tmp_path / "stderr.txt", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", _RUN, json.dumps(args)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and any worker it started
            proc.wait()
            pytest.fail(f"the run still hung after {timeout} s")
        finally:
            proc.stdin.close()
        err.seek(0)
        stderr = err.read()
    assert proc.returncode in (0, 1), stderr[-3000:]
    assert "Traceback" not in stderr
    rows = read_jsonl(out)
    assert statuses(rows) == {case: status for case, _, status in cases}
    return rows


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "pool"])
def test_fifo_stdin_and_live_playlist_do_not_hang_a_default_run(root_and_outside, tmp_path, workers):
    root, _ = root_and_outside
    os.mkfifo(root / "stuck.mp4")  # never written
    os.symlink(root / "stuck.mp4", root / "to_fifo.mp4")
    remux(root / "inside.mp4", root / "seg0.ts")
    shutil.copy(root / "seg0.ts", root / "seg1.ts")
    (root / "live.m3u8").write_text(hls(["seg0.ts", "seg1.ts"], live=True))  # no ENDLIST: reloaded forever
    cases = [
        ("FIFO", "stuck.mp4", "missing-source"),
        ("symlink to a FIFO", "to_fifo.mp4", "missing-source"),
        ("stdin, a pipe nobody writes", "/dev/stdin", "missing-source"),
        ("live hls playlist, segments inside the root", "live.m3u8", "decode-failed"),
        ("good clip", "inside.mp4", "ok"),
    ]
    rows = _materialize_in_subprocess(tmp_path, cases, root=str(root), workers=workers)
    for row in rows[:3]:
        assert "not a regular file: FIFO" in row["saliency_error"], row


@pytest.mark.skipif(not (hasattr(os, "mkfifo") and hasattr(os, "O_PATH")), reason="needs named pipes and O_PATH")
@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "pool"])
def test_fifo_swapped_in_after_planning_is_refused_when_opened(root_and_outside, tmp_path, workers):
    """Regular files when planned, FIFOs when opened: checked on what is opened, without blocking."""
    root, _ = root_and_outside
    shutil.copy(root / "inside.mp4", root / "late.mp4")
    write_raw_yuv(root / "late_64x48.yuv", 64, 48, frames=3)
    cases = [
        ("container replaced by a FIFO", "late.mp4", "missing-source"),
        ("raw .yuv replaced by a FIFO", "late_64x48.yuv", "missing-source"),
        ("good clip", "inside.mp4", "ok"),
    ]
    rows = _materialize_in_subprocess(tmp_path, cases, [root / "late.mp4", root / "late_64x48.yuv"],
                                      root=str(root), confine_to_root=True, workers=workers)
    for row in rows[:2]:
        assert "not a regular file: FIFO" in row["saliency_error"], row


def test_non_regular_files_are_named_for_what_they_are(root_and_outside, tmp_path):
    """They were `missing-source` with "no such file", which sends a user looking for a file
    that is right there."""
    root, _ = root_and_outside
    (root / "folder.mp4").mkdir()
    os.symlink("/dev/zero", root / "zero.mp4")
    cases = [
        ("a folder", "folder.mp4", "missing-source", "directory"),
        ("/dev/zero", "/dev/zero", "missing-source", "character device"),
        ("symlink to /dev/zero", "zero.mp4", "missing-source", "character device"),
        ("/dev/null", "/dev/null", "missing-source", "character device"),
    ]
    sock = None
    if hasattr(socket, "AF_UNIX"):
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(root / "s.mp4"))
            cases.append(("a socket", "s.mp4", "missing-source", "socket"))
        except OSError:  # a folder path too long for a socket address
            pass
    try:
        rows = run_table(tmp_path, [c[:3] for c in cases], root=str(root), workers=1)
    finally:
        if sock is not None:
            sock.close()
    assert statuses(rows) == {case: status for case, _, status, _ in cases}
    for row, (_, _, _, kind) in zip(rows, cases, strict=True):
        assert f"not a regular file: {kind}" in row["saliency_error"], row


def test_reads_stop_at_the_size_the_file_had_when_opened(tmp_path, disc_clip):
    """A file still growing, or one whose stat size is 0 but that streams data anyway (/proc),
    can't be read forever."""
    from salmat.sources import ClipSpec, open_source

    growing = tmp_path / "growing.mp4"
    growing.write_bytes(b"x" * 100)
    with open_source(ClipSpec(str(growing))) as handle:
        with open(growing, "ab") as more:
            more.write(b"y" * 100)
        assert handle.read() == b"x" * 100
        assert handle.seek(0, os.SEEK_END) == 100 and handle.read(10) == b""
    if os.path.exists("/proc/self/status"):
        with open_source(ClipSpec("/proc/self/status")) as handle:
            assert handle.read() == b""


# ---- the same promises, kept by other modules: the clip timeout (engines) and the cache (cache)


def test_default_run_has_a_finite_clip_timeout(tmp_path, disc_clip):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}])
    report = salmat.materialize(str(table), str(tmp_path / "o.jsonl"), workers=1, no_cache=True, quiet=True,
                                frame_samples=2)
    timeout = report.audit["config"].get("clip_timeout")
    assert timeout is not None and 0 < timeout < math.inf


def test_a_result_cache_hit_does_not_skip_the_open_time_check(root_and_outside, tmp_path, monkeypatch):
    """The outside clip's result is in the cache from an earlier, unconfined run; a link planned
    inside the root and re-pointed at that clip must not be answered from the cache."""
    root, outside = root_and_outside
    cache = tmp_path / "results.sqlite"
    earlier = write_jsonl(tmp_path / "earlier.jsonl", [{"src": str(outside / "secret.mp4")}])
    salmat.materialize(str(earlier), str(tmp_path / "earlier-out.jsonl"), cache=str(cache), workers=1, quiet=True,
                       frame_samples=2)
    os.symlink(root / "inside.mp4", root / "link.mp4")
    plan_rows = salmat.pipeline.plan_rows

    def plan_then_swap(*args, **kwargs):
        plan = plan_rows(*args, **kwargs)
        (root / "link.mp4").unlink()
        os.symlink(outside / "secret.mp4", root / "link.mp4")
        return plan

    monkeypatch.setattr(salmat.pipeline, "plan_rows", plan_then_swap)
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "link.mp4"}])
    salmat.materialize(str(table), str(tmp_path / "out.jsonl"), cache=str(cache), root=str(root),
                       confine_to_root=True, workers=1, quiet=True, frame_samples=2)
    assert [r["saliency_status"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["outside-root"]


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="needs Linux /proc")
def test_hashing_for_the_cache_does_not_hang(tmp_path):
    """/proc/self/pagemap is a regular file of stat size 0 that reads on for ~256 GB: hashing it
    for the result cache, in the main process, hung the run."""
    _materialize_in_subprocess(tmp_path, [("pagemap", "/proc/self/pagemap", "decode-failed")], timeout=HANG_TIMEOUT_S,
                               workers=1, no_cache=False)
