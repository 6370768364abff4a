"""Atomic writes: a temp file in the destination's folder, fsynced and renamed over it on commit,
removed on any exception; `write_bytes`/`write_text`/`write_json` are one-call forms."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .lifecycle import _published, _raise_if_stopped
from .stdio import STDIO, PathLike, _copy_to_stdout
from .temps import _LIVE, _NAME_KEEP, temp_prefix


def new_file_mode(path: PathLike) -> int:
    """Mode for a written file: the replaced file's, else 0o666 minus the umask (mkstemp gives 0o600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = os.umask(0)  # the only portable way to read the umask; restored at once
        os.umask(mask)
        return 0o666 & ~mask


class AtomicFile:
    """A temp file next to `path` that becomes `path` on `commit()` or disappears on `discard()`.

    As a context manager it yields the open file and commits when the block ends without an
    exception (any BaseException discards). `file` is binary for mode "wb", UTF-8 text for "w".
    With `overwrite=False` the commit never replaces a file: one that appeared at `path` meanwhile
    (another process's) stays, the temp file is dropped and `FileExistsError` is raised.
    """

    def __init__(self, path: PathLike, mode: str = "wb", *, overwrite: bool = True) -> None:
        if mode not in ("wb", "w"):
            raise ValueError(f"mode must be 'wb' or 'w', not {mode!r}")
        self.path = Path(path)
        self.overwrite = overwrite
        self.to_stdout = os.fspath(path) == STDIO
        # Same folder as the destination, so os.replace is an atomic rename on one filesystem;
        # stdout's temp file is private, in the system's temp folder.
        self._folder = Path(tempfile.gettempdir()) if self.to_stdout else self.path.absolute().parent
        fd, self.temp = tempfile.mkstemp(dir=self._folder, prefix=temp_prefix(),
                                         suffix="-" + ("stdout" if self.to_stdout else self.path.name[-_NAME_KEEP:]))
        _LIVE.add(self.temp)
        self._done = False
        try:
            if not self.to_stdout:
                os.fchmod(fd, new_file_mode(self.path))
            self.file: IO[Any] = os.fdopen(fd, mode) if mode == "wb" else os.fdopen(fd, mode, encoding="utf-8")
        except BaseException:
            os.close(fd)
            self._remove()
            raise

    def commit(self) -> None:
        """Flush to disk and rename onto the destination (durably: the folder is fsynced too)."""
        if self._done:
            return
        try:
            _raise_if_stopped()
            self.file.flush()
            if self.to_stdout:
                self.file.close()
                _copy_to_stdout(self.temp)
                self._remove()
            else:
                os.fsync(self.file.fileno())
                self.file.close()
                if self.overwrite:
                    os.replace(self.temp, self.path)
                else:
                    _link_new(self.temp, self.path)
        except BaseException:
            self.discard()
            raise
        self._done = True
        _LIVE.discard(self.temp)
        _published().append("stdout" if self.to_stdout else str(self.path))
        if not self.to_stdout:
            _fsync_folder(self._folder)

    def discard(self) -> None:
        """Drop the temp file; the destination is left as it was."""
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        except OSError:
            pass  # e.g. disk full on the final flush: the file is about to be deleted anyway
        self._remove()

    def _remove(self) -> None:
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass
        _LIVE.discard(self.temp)

    def __enter__(self) -> IO[Any]:
        return self.file

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_output(path: PathLike, mode: str = "wb") -> AtomicFile:
    """`with atomic_output(path) as f: f.write(...)`: `path` appears whole when the block succeeds."""
    return AtomicFile(path, mode)


def write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_output(path) as file:
        file.write(data)


def write_text(path: PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: Any, *, default: Any = None) -> None:
    """Indented JSON plus a final newline (`default` as for `json.dumps`)."""
    write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


def _link_new(temp: str, path: Path) -> None:
    """`temp` becomes `path` only if no file is there: a hard link fails on an existing name (the
    check and the rename in one step, so nothing appearing meanwhile is replaced); then the temp
    name goes. A filesystem without hard links falls back to a look, then the rename."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(temp, path)
        return
    try:
        os.unlink(temp)
    except FileNotFoundError:
        pass


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; some filesystems cannot fsync folders, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
