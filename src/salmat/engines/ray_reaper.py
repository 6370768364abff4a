"""A local Ray cluster's processes end with the run that started it, even when it is killed.

Ray ties its head processes (GCS, raylet) to the driver, but the raylet's agents (dashboard
and runtime-env agent) only notice their raylet is gone after several checks and a report to
the (dead) GCS: after a SIGKILL of the driver they lived 60-150 s (issue #20). So the driver
starts this small reaper first, holding its stdin's write end; every process of the new
cluster inherits an environment variable naming it. When the driver ends in any way, the
kernel closes that pipe, and the reaper kills every process still carrying the name.

This file imports only the standard library: it runs as a script (`python -I thisfile NAME`),
so it needs neither salmat nor the driver's `sys.path`. Linux only (it reads `/proc`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

MARK = "SALMAT_RAY_CLUSTER"  # the variable every process of the cluster inherits
_SETTLE_S = 3.0  # keep looking this long: the raylet may be starting a worker as it dies
_POLL_S = 0.1

_KEEP: list[subprocess.Popen[bytes]] = []  # the reaper's handle holds the pipe open while the driver lives


def supported() -> bool:
    return sys.platform.startswith("linux") and os.path.isdir("/proc")


def start() -> str | None:
    """Start the reaper; returns the name to put in `MARK` while the cluster starts (None: unsupported)."""
    if not supported():
        return None
    name = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != MARK}
    reaper = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), name], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              start_new_session=True)  # a Ctrl-C to the terminal's group leaves it to clean up
    _KEEP.append(reaper)
    return name


def stop() -> None:
    """The cluster this process started is shut down: let its reapers end what is left, then go
    (a long session starting many runs keeps no reaper per run)."""
    while _KEEP:
        reaper = _KEEP.pop()
        if reaper.stdin is not None:
            reaper.stdin.close()  # it reaps in the background; subprocess collects it once it exits


def marked(name: str) -> list[int]:
    """Processes (of this user: others' environments can't be read) whose environment has MARK=name."""
    needle = f"{MARK}={name}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue  # gone, or not ours
    return found


def reap(name: str) -> None:
    """Kill the cluster's processes until none is left for a short while."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < _SETTLE_S:
        pids = marked(name)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if pids:
            quiet_since = time.monotonic()
        time.sleep(_POLL_S)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver's Ctrl-C is the driver's
    while sys.stdin.buffer.read(1 << 16):
        pass  # nothing is ever written: EOF means the driver is gone
    reap(argv[0])


if __name__ == "__main__":
    main(sys.argv[1:])
