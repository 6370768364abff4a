"""`-` as an output: stdout, reached only by a whole, committed output while `stdout_reserved`
points file descriptor 1 at stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Union

from ..errors import SalmatError
from ..option_spec import named

STDIO = "-"  # as an input: stdin; as an output: stdout

PathLike = Union[str, "os.PathLike[str]"]


_STDOUT_FD: list[int] = []  # the real stdout while `stdout_reserved` points fd 1 at stderr
_COPY_CHUNK = 1 << 20


@contextmanager
def stdout_reserved(active: bool = True) -> Iterator[None]:
    """While the block runs, fd 1 is stderr and only an output named `-` reaches the real stdout.

    Worker processes started inside the block inherit that, so nothing printed anywhere (a
    library's notice, a forwarded Ray log line) can land in the middle of a table.
    """
    if not active or _STDOUT_FD or not _stdout_is_fd1():
        yield  # (a notebook's stdout is no file descriptor: there the table is simply printed)
        return
    _flush(sys.stdout)
    try:
        saved = os.dup(1)
    except OSError:
        raise SalmatError(f"stdout is closed, so {named('output')} - has nowhere to go: "
                          f"give {named('output')} a file") from None
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr either: silence fd 1 rather than let it carry anything
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    _STDOUT_FD.append(saved)
    try:
        yield
    finally:
        _flush(sys.stdout)
        _STDOUT_FD.remove(saved)
        os.dup2(saved, 1)
        os.close(saved)


def _stdout_is_fd1() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.fileno() == 1
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return False


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stream has nothing to keep


def _copy_to_stdout(temp: str) -> None:
    """The finished output, whole, to the real stdout."""
    try:
        with open(temp, "rb") as source:
            if _STDOUT_FD:
                while chunk := source.read(_COPY_CHUNK):
                    _write_all(_STDOUT_FD[-1], chunk)
            else:
                _write_stream(source, sys.stdout)
    except BrokenPipeError:
        raise SalmatError("stdout was closed before the whole table was written (broken pipe): read the whole "
                          f"stream, or give {named('output')} a file") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_stream(source: IO[bytes], stream: Any) -> None:
    """To a Python stream that may be text-only (a notebook's, a StringIO)."""
    stream.flush()
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        while chunk := source.read(_COPY_CHUNK):
            binary.write(chunk)
        binary.flush()
        return
    stream.write(source.read().decode("utf-8", "replace"))
    stream.flush()
