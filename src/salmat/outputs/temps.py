"""Temp files: named so a later run can tell a dead run's leftover from a live one's, tracked
while live (SIGTERM removes them), and the leftovers of killed runs removed."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Iterable

from .stdio import PathLike

TEMP_PREFIX = ".salmat-tmp-"
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_NAME = re.compile(r"^\.salmat-tmp-(\d+)-([0-9a-f]{6})-")
_NAME_KEEP = 80  # the destination's name in the temp name is for humans; keep it under NAME_MAX

# Temp files of this process not yet renamed or removed; the SIGTERM handler removes them.
_LIVE: set[str] = set()


def temp_prefix(pid: int | None = None) -> str:
    """The temp-file prefix of process `pid` (default: this one) on this host."""
    return f"{TEMP_PREFIX}{os.getpid() if pid is None else pid}-{_HOST}-"


def clean_leftovers(folder: PathLike, names: Iterable[str] = ()) -> list[str]:
    """Remove temp files in `folder` whose writer (a pid on this host) is gone; returns them.

    Also removes the old `NAME.tmp-<pid>` form for each of `names` when that pid is gone.
    A live pid, another host's file or anything unparsable is kept: removing a live run's
    temp file would break its rename.
    """
    old = [re.compile(re.escape(n) + r"\.tmp-(\d+)$") for n in names]
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        pid: int | None
        if match and match.group(2) == _HOST:
            pid = int(match.group(1))
        else:
            pid = next((int(m.group(1)) for m in (o.match(entry.name) for o in old) if m), None)
        if pid is None or _alive(pid) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            pass  # another run got there first, or no permission: not ours to fuss about
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # someone else's process (EPERM), or a pid we can't ask about: assume alive
    return True


def private_temp_file(suffix: str) -> str:
    """A new empty file of this process in the system's temp folder (a spooled stdin, an
    in-memory table on disk). SIGTERM removes it; `remove_private_temp` does otherwise."""
    fd, name = tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix)
    os.close(fd)
    _LIVE.add(name)
    return name


def remove_private_temp(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
    _LIVE.discard(name)
