"""A killed `--engine ray` run leaves no Ray process behind (issue #20, point 5).

Real processes, a real SIGKILL: each test starts a driver in a subprocess with a variable of its
own in the environment (inherited by everything it starts), kills the driver, and waits a bounded
time for every process carrying that variable to be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from conftest import write_jsonl
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


def start(code_or_args: list[str], tag: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "SALMAT_TEST_TAG": tag, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
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
    pytest.importorskip("ray")
    (tmp_path / "c.mp4").write_bytes(disc_clip.read_bytes())
    write_jsonl(tmp_path / "in.jsonl", [{"src": "c.mp4"}])
    run = start(["-m", "salmat", "materialize", "--input", "in.jsonl", "--output", "out.jsonl", "--root", ".",
                 "--engine", "ray", "--workers", "1", "--frame-samples", "1", "--no-cache", "--quiet"], tag, cwd=tmp_path)
    try:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        left = wait_gone("SALMAT_TEST_TAG", tag, 20)
        assert left == {}, f"still alive 20 s after the run ended: {left}"
    finally:
        kill_all(carrying("SALMAT_TEST_TAG", tag))
        run.kill()
