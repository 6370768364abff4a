"""`salmat.outputs`: the one pre-flight check and the one atomic write behind every file salmat writes.

Real files and real processes throughout: the CLI in-process where only the exit code and the
files matter, `python -m salmat` (or a small script around `salmat.cli.main`) where a signal
or a second process is part of the story.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli, sha256_of, write_jsonl
from salmat.batch import run_batch
from salmat.cli import main
from salmat.compare import compare
from salmat.errors import SalmatError
from salmat.outputs import TEMP_PREFIX, atomic_output, preflight, temp_prefix, write_json, write_text
from salmat.preview import preview
from salmat.signal_audit import audit_table


@pytest.fixture(autouse=True)
def _no_handler_in_pytest(monkeypatch):
    """In-process CLI runs must not leave salmat's SIGTERM handler on the pytest process."""
    monkeypatch.setattr("salmat.cli.install_sigterm_cleanup", lambda: None, raising=False)


def leftovers(folder: Path) -> list[str]:
    """Temp files of any salmat version: ours, the old mkstemp `.NAME.xxxx.tmp`, `NAME.tmp-PID`."""
    return sorted(n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX) or ".tmp" in n)


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    pid = int(proc.stdout)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture()
def table(tmp_path, disc_clip):
    return write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "src": str(disc_clip), "mos": 3.0},
                                               {"id": "b", "src": str(tmp_path / "missing.mp4"), "mos": 2.0}])


def materialize(*args) -> list[str]:
    return ["materialize", "--workers", "1", "--frame-samples", "2", "--quiet", "--no-cache", *map(str, args)]


# --------------------------------------------------------------------------- pre-flight, through the CLI


def test_audit_json_at_the_input_is_refused_before_any_work(table, tmp_path, capsys):
    before = sha256_of(table)
    out = tmp_path / "out" / "t.parquet"
    assert main(materialize("--input", table, "--output", out, "--audit-json", table)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--audit-json" in err and "input is never modified" in err, err
    assert sha256_of(table) == before
    assert not out.parent.exists()                      # refused before anything was created


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_audit_json_linked_to_the_input_is_refused(table, tmp_path, capsys, link):
    before = sha256_of(table)
    alias = tmp_path / "alias.json"
    (alias.symlink_to if link == "symlink" else alias.hardlink_to)(table)
    assert main(materialize("--input", table, "--output", tmp_path / "o.jsonl", "--audit-json", alias)) == 2
    assert "--audit-json" in capsys.readouterr().err
    assert sha256_of(table) == before and not (tmp_path / "o.jsonl").exists()


def test_audit_json_into_a_missing_folder_is_created(table, tmp_path):
    audit = tmp_path / "runs" / "today" / "audit.json"
    proc = run_cli(*materialize("--input", table, "--output", tmp_path / "o.jsonl", "--audit-json", audit))
    assert proc.returncode == 1, proc.stderr
    record = json.loads(audit.read_text())
    assert record["summary"]["ok"] == 1 and record["summary"]["failed"] == 1
    assert audit.stat().st_mode & 0o777 == 0o666 & ~umask()   # a new file's usual mode, not mkstemp's 0o600
    assert os.listdir(audit.parent) == ["audit.json"]


def test_output_equal_to_audit_json_is_refused(table, tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert main(materialize("--input", table, "--output", out, "--audit-json", tmp_path / "." / "o.jsonl")) == 2
    err = capsys.readouterr().err
    assert "--audit-json" in err and "also --output" in err
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--output", "--audit-json"])
def test_a_folder_as_an_output_is_refused(table, tmp_path, capsys, flag):
    folder = tmp_path / "d.jsonl"
    folder.mkdir()
    paths = {"--output": tmp_path / "o.jsonl", "--audit-json": tmp_path / "a.json", flag: folder}
    args = materialize("--input", table, "--output", paths["--output"], "--audit-json", paths["--audit-json"])
    assert main(args) == 2
    assert f"{flag} {folder} is a folder" in capsys.readouterr().err
    assert os.listdir(folder) == []


def _special(kind, path, target):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        os.symlink(target, path)
    else:  # a character device like /dev/null, made here so a regression can't replace a real one
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
@pytest.mark.parametrize("flag", ["--output", "--audit-json"])
def test_an_output_that_is_a_device_fifo_or_link_is_refused_and_left_alone(table, tmp_path, capsys, flag, kind):
    """A rename replaces whatever the name points at: `--audit-json /dev/full` turned the device
    into a regular file. Only a regular file (or nothing) may be at an output path."""
    target = tmp_path / "target.jsonl"
    target.write_text("keep me\n")
    special = tmp_path / f"special{'.jsonl' if flag == '--output' else '.json'}"
    _special(kind, special, target)
    paths = {"--output": tmp_path / "o.jsonl", "--audit-json": tmp_path / "a.json", flag: special}
    args = materialize("--input", table, "--output", paths["--output"], "--audit-json", paths["--audit-json"])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{flag} {special} is" in err and err.count("\n") == 1
    mode = os.lstat(special).st_mode
    assert {"fifo": stat.S_ISFIFO, "symlink": stat.S_ISLNK, "device": stat.S_ISCHR}[kind](mode)
    assert target.read_text() == "keep me\n"


def test_output_folder_under_a_file_is_a_usage_error(table, tmp_path):
    (tmp_path / "blocker").write_text("a file")
    proc = run_cli(*materialize("--input", table, "--output", tmp_path / "o.jsonl",
                                "--audit-json", tmp_path / "blocker" / "audit.json"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "--audit-json" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_preflight_unit(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"a": 1}])
    preflight({"--output": tmp_path / "new" / "o.parquet", "--audit-json": None}, [source])
    assert (tmp_path / "new").is_dir() and os.listdir(tmp_path / "new") == []     # the probe left nothing
    refused = r"^x .* is the input .*: an input is never modified; choose another x$"  # Python spelling
    with pytest.raises(SalmatError, match=refused):
        preflight({"--x": tmp_path / "sub" / ".." / "in.jsonl"}, [source])
    with pytest.raises(SalmatError, match="b .* is also a"):
        preflight([("--a", tmp_path / "p.json"), ("--b", tmp_path / "p.json")])
    with pytest.raises(SalmatError, match="does not exist"):
        preflight({"--x": tmp_path / "nope" / "o.json"}, create_folders=False)
    assert not (tmp_path / "nope").exists()
    with pytest.raises(SalmatError, match="is the manifest"):
        preflight({"--r": source}, {"the manifest": source})


# --------------------------------------------------------------------------- the atomic write


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_write_leaves_no_temp_file_and_the_old_destination(tmp_path, error):
    dest = tmp_path / "report.json"
    dest.write_text("old")
    dest.chmod(0o640)
    with pytest.raises(error):
        with atomic_output(dest) as file:
            file.write(b"half of the new")
            assert len(os.listdir(tmp_path)) == 2          # the temp file sits beside the destination
            raise error()
    assert dest.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]
    write_json(dest, {"new": True})
    assert json.loads(dest.read_text()) == {"new": True}
    assert dest.stat().st_mode & 0o777 == 0o640                       # a replaced file keeps its mode
    assert os.listdir(tmp_path) == ["report.json"]


def test_failing_rename_or_fsync_removes_the_temp_file(tmp_path, monkeypatch):
    dest = tmp_path / "r.md"
    dest.write_text("old")
    for name in ("replace", "fsync"):
        with monkeypatch.context() as m:
            m.setattr(os, name, _refuse)
            with pytest.raises(OSError, match="No space"):
                write_text(dest, "new")
        assert dest.read_text() == "old" and os.listdir(tmp_path) == ["r.md"], name


def _refuse(*args, **kwargs):
    raise OSError(28, "No space left on device")


# --------------------------------------------------------------------------- SIGTERM

ATOMIC_THEN_WAIT = r"""
import sys, time
from salmat import outputs
outputs.install_sigterm_cleanup()
with outputs.atomic_output(sys.argv[1]) as f:
    f.write(b"partial")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""

# A real `salmat materialize` whose table write stalls after the first batch.
SLOW_MATERIALIZE = r"""
import sys, time
import salmat.tables as tables
write = tables.TableWriter.write_batch
def slow(self, batch):
    write(self, batch)
    print("writing", flush=True)
    time.sleep(60)
tables.TableWriter.write_batch = slow
from salmat.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _terminate_when_writing(args: list[str], folder: Path) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line == "writing\n", proc.communicate(timeout=60)
        assert leftovers(folder), "the write should be in progress, its temp file present"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigterm_inside_atomic_output_removes_the_temp_file(tmp_path):
    dest = tmp_path / "x.bin"
    done = _terminate_when_writing([ATOMIC_THEN_WAIT, str(dest)], tmp_path)
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip() == "salmat: terminated; no output was written"
    assert os.listdir(tmp_path) == []


def test_sigterm_during_materialize_write_leaves_no_temp_files(table, tmp_path):
    out_dir = tmp_path / "out"
    args = materialize("--input", table, "--output", out_dir / "t.parquet", "--audit-json", out_dir / "a.json")
    done = _terminate_when_writing([SLOW_MATERIALIZE, *args], out_dir)
    assert done.returncode == 143, done.stderr
    assert "terminated" in done.stderr and "Traceback" not in done.stderr
    assert os.listdir(out_dir) == []                   # no table, no audit, no temp file


def test_sigterm_handler_only_from_the_main_thread():
    script = r"""
import signal, threading
from salmat import outputs
t = threading.Thread(target=outputs.install_sigterm_cleanup); t.start(); t.join()
assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
outputs.install_sigterm_cleanup()
from salmat.outputs import lifecycle
assert signal.getsignal(signal.SIGTERM) is lifecycle._on_sigterm
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


# --------------------------------------------------------------------------- leftovers of killed runs


def test_next_run_removes_a_dead_runs_temp_files_only(table, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead, live = dead_pid(), os.getpid()
    names = {
        "dead": f"{temp_prefix(dead)}k3j2h1g0-t.jsonl",
        "live": f"{temp_prefix(live)}a8b7c6d5-t.jsonl",
        "other_host": f"{TEMP_PREFIX}{dead}-zzzzzz-a8b7c6d5-t.jsonl",
        "old_style": f"t.jsonl.tmp-{dead}",
        "unrelated": "notes.txt",
    }
    for name in names.values():
        (out / name).write_text("x")
    proc = run_cli(*materialize("--input", table, "--output", out / "t.jsonl"))
    assert proc.returncode == 1, proc.stderr
    assert sorted(os.listdir(out)) == sorted(["t.jsonl", names["live"], names["other_host"], names["unrelated"]])


# --------------------------------------------------------------------------- every command writes through it


@pytest.fixture()
def failing_replace(monkeypatch):
    """`os.replace` fails for destinations in one folder, as a full or broken disk would."""
    def arm(folder: Path):
        real = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).absolute().parent == folder.absolute():
                raise OSError(28, "No space left on device")
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
    return arm


def sentinels(folder: Path, *names: str) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f"old {name}")
    return {name: f"old {name}" for name in names}


def assert_untouched(folder: Path, old: dict[str, str]) -> None:
    assert sorted(os.listdir(folder)) == sorted(old)                  # nothing new, no temp file
    assert {name: (folder / name).read_text() for name in old} == old


def test_compare_writes_atomically(table, tmp_path, failing_replace):
    out = tmp_path / "cmp"
    old = sentinels(out, "report.json", "report.md")
    failing_replace(out)
    with pytest.raises(OSError):
        compare(str(table), str(out), reducers="mean", frame_samples=2)
    assert_untouched(out, old)


def test_compare_refuses_an_out_folder_holding_its_input(table, tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    inside = out / "long.csv"
    inside.write_text("clip_id,src\nr0," + json.loads(table.read_text().splitlines()[0])["src"] + "\n")
    before = sha256_of(inside)
    assert main(["compare", "--input", str(inside), "--out", str(out), "--long-format", "csv", "--no-plots",
                 "--frame-samples", "2", "--quiet"]) == 2
    assert "--out (long.csv)" in capsys.readouterr().err
    assert sha256_of(inside) == before and os.listdir(out) == ["long.csv"]


def _audit_table(path: Path) -> Path:
    rng = np.random.default_rng(3)
    n = 40
    x = rng.normal(size=n)
    pq.write_table(pa.table({"clip_id": [f"c{i}" for i in range(n)], "feat": x, "saliency_mean": rng.uniform(size=n),
                             "saliency_var": rng.uniform(size=n) * 0.01, "vmaf": 50 + 10 * x}), path)
    return path


def test_signal_audit_writes_atomically(tmp_path, failing_replace):
    source = _audit_table(tmp_path / "t.parquet")
    out = tmp_path / "audit"
    old = sentinels(out, "signal_audit.json")
    failing_replace(out)
    with pytest.raises(OSError):
        audit_table(str(source), str(out), bootstrap=10)
    assert_untouched(out, old)


def test_signal_audit_refuses_to_write_over_its_input(tmp_path, capsys):
    out = tmp_path / "audit"
    out.mkdir()
    source = out / "signal_audit.json"     # a JSONL table that happens to carry the report's name
    rows = pq.read_table(_audit_table(tmp_path / "t.parquet")).to_pylist()
    write_jsonl(source, rows)
    before = sha256_of(source)
    assert main(["audit", "--input", str(source), "--out", str(out), "--bootstrap", "0"]) == 2
    assert "input is never modified" in capsys.readouterr().err
    assert sha256_of(source) == before and os.listdir(out) == ["signal_audit.json"]


def test_batch_reports_write_atomically_and_never_over_an_input(tmp_path, failing_replace):
    write_jsonl(tmp_path / "a.jsonl", [{"src": "missing.mp4"}])
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"defaults": {"workers": 1, "quiet": True, "no_cache": True},
                                    "tables": [{"id": "a", "input": "a.jsonl", "output": "tables/a.jsonl"}]}))
    before = sha256_of(manifest)
    with pytest.raises(SalmatError, match="report_json .* is the manifest"):
        run_batch(manifest, report_json=str(manifest), log=None)
    with pytest.raises(SalmatError, match=r"output \(table 'a'\) .* is also report_md"):
        run_batch(manifest, report_md=str(tmp_path / "tables" / "a.jsonl"), log=None)
    assert sha256_of(manifest) == before and not (tmp_path / "tables").exists()
    reports = tmp_path / "reports"
    old = sentinels(reports, "r.json", "r.md")
    failing_replace(reports)
    with pytest.raises(OSError):
        run_batch(manifest, report_json=str(reports / "r.json"), report_md=str(reports / "r.md"), log=None)
    assert_untouched(reports, old)
    assert (tmp_path / "tables" / "a.jsonl").exists()                 # the table itself was written


def test_preview_writes_atomically_and_never_over_the_clip(disc_clip, tmp_path, failing_replace):
    clip = tmp_path / "clip.jpg"   # an MP4 under a name --out accepts, so only the is-the-clip check stops it
    clip.write_bytes(disc_clip.read_bytes())
    before = sha256_of(clip)
    with pytest.raises(SalmatError, match="out .* is the clip"):
        preview(str(clip), str(clip), frame_samples=2, panel_width=32)
    assert sha256_of(clip) == before
    out = tmp_path / "sheets"
    old = sentinels(out, "sheet.png")
    failing_replace(out)
    with pytest.raises(OSError):
        preview(str(clip), str(out / "sheet.png"), frame_samples=2, panel_width=32)
    assert_untouched(out, old)


def test_sigterm_cleanup_is_quick(tmp_path):
    """A SIGTERM between writes needs no temp-file bookkeeping: exit 143 promptly."""
    script = "import time, sys\nfrom salmat import outputs\noutputs.install_sigterm_cleanup()\n" \
             "print('ready', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert time.monotonic() - started < 10
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)])
def test_no_output_is_published_after_a_stop_a_library_swallowed(tmp_path, monkeypatch, signum, raised):
    """A Ctrl-C or SIGTERM whose exception some library swallowed (seen during pyarrow's lazy
    imports: the run went on and exited 0 with a full output) still stops every publication."""
    from salmat import outputs
    from salmat.outputs import lifecycle  # the signal state lives there

    monkeypatch.setattr(lifecycle, "_STOPPED_BY", [signum])
    lifecycle._PUBLISHED.set([])  # what earlier tests in this thread wrote
    target = tmp_path / "t.json"
    with pytest.raises(raised):
        write_text(target, "{}\n")
    assert not target.exists() and leftovers(tmp_path) == []
    assert outputs.stop_requested() == 128 + signum
    assert outputs.stopped_message("interrupted") == "salmat: interrupted; no output was written"
