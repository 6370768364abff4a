"""A killed `--engine ray` run leaves no Ray process behind (issue #20, point 5).

Real processes: each test starts a driver in a subprocess with a variable of its own in the
environment (inherited by everything it starts), kills the driver (a real SIGKILL) or lets it
finish, and waits a bounded time for every process carrying that variable to be gone. The
finished run is also the suite's one real `--engine ray` command line: its output and words.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from conftest import read_jsonl, run_cli, write_jsonl
from salmat.engines import ray_reaper

pytestmark = pytest.mark.skipif(not ray_reaper.supported(), reason="the reaper reads /proc (Linux)")

SRC = str(Path(__file__).resolve().parents[1] / "src")


def carrying(variable: str, value: str) -> dict[int, str]:
    """pid → command of every process whose environment has variable=value."""
    needle = f"{variable}={value}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                found[int(entry)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace")[:300]
        except OSError:
            continue
    return found


def wait_gone(variable: str, value: str, seconds: float, *, marked: tuple[str, ...] = ()) -> dict[int, str]:
    """What still carries the variable once it is all gone or `seconds` have passed; with `marked`,
    once no process whose command holds one of those texts is left."""
    deadline = time.monotonic() + seconds

    def waiting(left: dict[int, str]) -> bool:
        return any(not marked or any(text in c for text in marked) for c in left.values())

    while waiting(left := carrying(variable, value)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_all(found: dict[int, str]) -> None:
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture()
def tag():
    value = uuid.uuid4().hex
    yield value
    kill_all(carrying("SALMAT_TEST_TAG", value))  # whatever a failing test left


def start(code_or_args: list[str], tag: str, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python <code_or_args>` carrying the tag; `env` adds variables."""
    env = {**os.environ, **(env or {}), "SALMAT_TEST_TAG": tag,
           "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, *code_or_args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_reaper_kills_the_marked_processes_of_a_killed_driver_and_nothing_else(tag):
    driver = start(["-c", textwrap.dedent("""
        import os, subprocess, sys, time
        from salmat.engines import ray_reaper
        os.environ[ray_reaper.MARK] = ray_reaper.start()
        subprocess.Popen(["sleep", "600"])                                  # a child
        subprocess.Popen(["sh", "-c", "sleep 600 & wait"])                  # a grandchild
        del os.environ[ray_reaper.MARK]
        subprocess.Popen(["sleep", "601"])                                  # started after: not marked
        print("READY", flush=True)
        time.sleep(600)
    """)], tag)
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "READY", driver.stderr
        before = carrying("SALMAT_TEST_TAG", tag)
        assert sum("sleep 600" in c for c in before.values()) >= 2 and any("sleep 601" in c for c in before.values())
        driver.kill()
        assert driver.wait(30) == -signal.SIGKILL
        left = wait_gone("SALMAT_TEST_TAG", tag, 15, marked=("sleep 600", "ray_reaper"))
        assert [c for c in left.values() if "sleep 600" in c or "ray_reaper" in c] == [], left
        assert any("sleep 601" in c for c in left.values())  # not the cluster's: left alone
    finally:
        kill_all(carrying("SALMAT_TEST_TAG", tag))


@pytest.mark.ray
@pytest.mark.slow
def test_sigkill_of_a_ray_run_leaves_no_ray_process(tmp_path, disc_clip, tag):
    pytest.importorskip("ray")
    rows = []
    for i in range(6):
        (tmp_path / f"c{i}.mp4").write_bytes(disc_clip.read_bytes())
        rows.append({"src": f"c{i}.mp4"})
    write_jsonl(tmp_path / "in.jsonl", rows)
    run = start(["-m", "salmat", "materialize", "--input", "in.jsonl", "--output", "out.jsonl", "--root", ".",
                 "--engine", "ray", "--workers", "2", "--no-cache", "--quiet"], tag, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and run.poll() is None:
            running = " ".join(carrying("SALMAT_TEST_TAG", tag).values())
            if "raylet" in running and ("RuntimeEnvAgent" in running or "runtime_env/agent" in running):
                break  # the cluster is up, agents included (named so once they set their title): under way
            time.sleep(0.2)
        assert run.poll() is None, f"the run ended before it could be killed: {run.communicate()}"
        run.kill()
        assert run.wait(30) == -signal.SIGKILL
        killed = time.monotonic()
        left = wait_gone("SALMAT_TEST_TAG", tag, 20)
        assert left == {}, f"still alive {time.monotonic() - killed:.0f} s after the SIGKILL: {left}"
    finally:
        kill_all(carrying("SALMAT_TEST_TAG", tag))
        run.kill()
        run.communicate()


@pytest.mark.ray
@pytest.mark.slow
def test_a_finished_ray_run_leaves_no_ray_process(tmp_path, disc_clip, tag):
    """A real `--engine ray` run (no cache, so Ray computes); once it has ended, every process it
    started is gone. The same run shows what a user sees of it: the local engine's bytes, nothing
    on stdout (Ray's driver prints its error messages there), the local run's words on stderr, and a
    cluster of its own even where `ray start` left an address for `ray.init()` to join (that
    cluster is gone, so joining it would fail the run)."""
    pytest.importorskip("ray")
    (tmp_path / "c.mp4").write_bytes(disc_clip.read_bytes())
    write_jsonl(tmp_path / "in.jsonl", [{"src": "c.mp4"}, {"src": "gone.mp4"}, {"src": "c.mp4"}])
    args = ["materialize", "--input", "in.jsonl", "--root", ".", "--workers", "1", "--frame-samples", "1",
            "--no-cache"]
    local = run_cli(*args, "--output", "local.jsonl", cwd=tmp_path)
    assert local.returncode == 1, local.stderr
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp" if os.path.isdir("/tmp") else None))  # short: sockets
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{_a_closed_port()}")
    run = start(["-m", "salmat", *args, "--output", "out.jsonl", "--engine", "ray"], tag, cwd=tmp_path,
                env={"RAY_TMPDIR": str(ray_tmp)})
    try:
        out, err = run.communicate(timeout=300)
        left = wait_gone("SALMAT_TEST_TAG", tag, 20)
        assert left == {}, f"still alive 20 s after the run ended: {left}"
    finally:
        kill_all(carrying("SALMAT_TEST_TAG", tag))
        run.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 1 and out == "", (run.returncode, out, err)
    assert _untimed(err) == _untimed(local.stderr), (err, local.stderr)  # the same words as a local run's
    assert _untimed(err)[-1] == "salmat: total=3 ok=2 skipped=0 failed=1 clips=1 cached=0", err
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert [r["saliency_status"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["ok", "missing-source", "ok"]


def _untimed(stderr: str) -> list[str]:
    """The lines of a run's stderr, its summary without the seconds and the output's name."""
    return [re.sub(r" seconds=.*", "", line) for line in stderr.splitlines()]


def _a_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
