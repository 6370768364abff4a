"""The one way salmat hashes a file's content (sha256): clips for the result cache, model files,
tables for the run record.

Bounded: only regular files are hashed (a FIFO or device is refused without
blocking), the file must read back exactly its stat size (a `/proc` file says 0
and reads on for gigabytes), and an optional deadline stops a slow read. Callers
turn `OSError`/`NotHashable` into their own one-line message.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time

from .values import file_stamp

HASH_CHUNK = 1 << 20


class HashTimeout(Exception):
    """Hashing a file did not finish before its deadline."""


class NotHashable(Exception):
    """The path is not a regular file, or its content is not what its stat says (`/proc` files)."""


def file_sha256(path: str, deadline: float | None = None, expect: tuple[int, ...] | None = None) -> str:
    """sha256 of a regular file's content, read in 1 MiB chunks.

    `deadline` is a `time.monotonic()` value, checked between chunks: past it,
    `HashTimeout`. A FIFO, device or other non-regular file is refused without
    being opened; the file is opened non-blocking and checked again after opening
    (a FIFO swapped in between can't block), and it must read back exactly its
    stat size (`NotHashable` otherwise): a `/proc` file reports size 0 and reads
    on for gigabytes. With `expect`, the opened file must have that `signature` (it is the
    very file the caller looked at, unchanged).
    """
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotHashable(f"{path} is not a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb", buffering=0) as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_ino, st.st_dev) != (before.st_ino, before.st_dev):
            raise NotHashable(f"{path} was replaced while it was opened")
        if expect is not None and signature(st) != expect:
            raise NotHashable(f"{path} changed since it was looked at")
        h = hashlib.sha256()
        left = st.st_size
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise HashTimeout(path)
            chunk = handle.read(min(HASH_CHUNK, left + 4096))  # past the size: EOF, or too much
            if not chunk:
                break
            left -= len(chunk)
            if left < 0:
                raise NotHashable(f"{path} holds more than its size of {st.st_size} bytes")
            h.update(chunk)
        if left:
            raise NotHashable(f"{path} holds less than its size of {st.st_size} bytes")
    return h.hexdigest()


def signature(st: os.stat_result) -> tuple[int, ...]:
    """The file's `file_stamp`, with unsigned 64-bit inode and device numbers folded into
    SQLite's signed INTEGER."""
    return tuple(v - (1 << 64) if v >= (1 << 63) else v for v in file_stamp(st))
