"""Every file salmat writes goes through here: one pre-flight check, one atomic write.

* `preflight` runs before any work: it refuses an output that is a folder, an input, or
  another output of the same run, creates missing folders, probes that each folder takes
  new files, and removes temp files that killed runs left there.
* `atomic_output` writes a temp file in the destination's folder, fsyncs it and renames
  it over the destination; on any exception the temp file goes and the destination is
  untouched. `write_bytes`/`write_text`/`write_json` are one-call forms of it.
* Temp files are named `.salmat-tmp-<pid>-<host>-<random>-<name>` (`<host>`: 6 hex of the
  host name's hash) so a later run can tell a dead run's leftover from a live run's file,
  also in a folder shared between machines (only this host's pids are checked).
* `install_sigterm_cleanup` (called once by the CLI) removes live temp files on SIGTERM
  and exits 143, as a kill would, instead of leaving `.salmat-tmp-*` files behind.
* `-` (`STDIO`) as an output is stdout: the temp file lives in the system's temp folder and
  is copied to stdout only on commit, so a failed run writes nothing there; while a run
  writes its table to stdout, `stdout_reserved` points file descriptor 1 at stderr, so
  progress, warnings and any library's prints can't mix into the table.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import multiprocessing
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Union

from .errors import SalmatError
from .option_spec import named

__all__ = [
    "STDIO", "TEMP_PREFIX", "AtomicFile", "atomic_output", "clean_leftovers", "install_sigterm_cleanup",
    "new_file_mode", "preflight", "private_temp_file", "remove_private_temp", "same_file", "stdout_reserved",
    "temp_prefix", "write_bytes", "write_json", "write_text",
]

STDIO = "-"  # as an input: stdin; as an output: stdout

PathLike = Union[str, "os.PathLike[str]"]

TEMP_PREFIX = ".salmat-tmp-"
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_NAME = re.compile(r"^\.salmat-tmp-(\d+)-([0-9a-f]{6})-")
_NAME_KEEP = 80  # the destination's name in the temp name is for humans; keep it under NAME_MAX

# Temp files of this process not yet renamed or removed; the SIGTERM handler removes them.
_LIVE: set[str] = set()
_HANDLER_PID: int | None = None


def temp_prefix(pid: int | None = None) -> str:
    """The temp-file prefix of process `pid` (default: this one) on this host."""
    return f"{TEMP_PREFIX}{os.getpid() if pid is None else pid}-{_HOST}-"


# --------------------------------------------------------------------------- pre-flight


def preflight(
    outputs: Mapping[str, PathLike | None] | Iterable[tuple[str, PathLike | None]],
    inputs: Mapping[str, PathLike | None] | Iterable[PathLike | None | tuple[str, PathLike | None]] = (),
    *,
    create_folders: bool = True,
    check_only: bool = False,
) -> None:
    """Raise `SalmatError` (one line naming the fix) unless every output can be written.

    `outputs` maps a flag (used in messages, may repeat as pairs) to a path; `inputs` are
    the files the run reads or keeps (a mapping, or `(label, path)` pairs, gives each a label,
    default "the input"). `None` paths are skipped. A folder, an input or a repeated output
    is refused before any folder is created; then each output folder is created, probed and
    cleaned of dead runs' temp files (not with `check_only`: the paths are compared, nothing
    is touched). Inputs are compared by file identity, so thousands of clips cost a stat each.
    """
    given = [(_spelled(flag), str(p)) for flag, p in (outputs.items() if isinstance(outputs, Mapping) else outputs)
             if p is not None and str(p) != ""]
    _one_stdout(given)
    pairs = [(flag, Path(p)) for flag, p in given if p != STDIO]
    known = _Known(_labelled(inputs))
    for i, (flag, path) in enumerate(pairs):
        folder = known.folder_holding(path)
        if folder is not None:
            raise SalmatError(f"{flag} {path} is inside {folder[0]} {folder[1]}, a folder read as one table: "
                              f"choose another {flag} outside it")
        if path.is_dir():
            raise SalmatError(f"{flag} {path} is a folder, not a file: name a file inside it or choose another {flag}")
        hit = known.file(path)
        if hit is not None:
            raise SalmatError(f"{flag} {path} is {hit[0]} {hit[1]}: an input is never modified; "
                              f"choose another {flag}")
        for other_flag, other in pairs[:i]:
            if same_file(path, other):
                raise SalmatError(f"{flag} {path} is also {other_flag}: give each output its own path")
        _refuse_special(flag, path)
    if not check_only:
        _prepare_folders(pairs, create_folders)


def _labelled(inputs: Mapping[str, PathLike | None] | Iterable[PathLike | None | tuple[str, PathLike | None]],
              ) -> list[tuple[str, str]]:
    items: Iterable[Any] = inputs.items() if isinstance(inputs, Mapping) else inputs
    pairs = (item if isinstance(item, tuple) else ("the input", item) for item in items)
    return [(label, os.fspath(p)) for label, p in pairs if p is not None and os.fspath(p) not in ("", STDIO)]


class _Known:
    """The files a run reads or keeps, indexed by identity: (st_dev, st_ino) for those that exist
    (so a symlink, a hard link or another spelling of the path is the same file), the resolved
    path for those that don't (yet), as `same_file` compares them."""

    def __init__(self, sources: list[tuple[str, str]]) -> None:
        self.inodes: dict[tuple[int, int], tuple[str, str]] = {}
        self.folders: dict[tuple[int, int], tuple[str, str]] = {}
        self.missing: dict[str, tuple[str, str]] = {}
        for label, source in sources:
            try:
                st = os.stat(source)
            except (OSError, ValueError):
                self.missing.setdefault(os.path.realpath(source), (label, source))
                continue
            index = self.folders if stat.S_ISDIR(st.st_mode) else self.inodes
            index.setdefault((st.st_dev, st.st_ino), (label, source))

    def file(self, path: Path) -> tuple[str, str] | None:
        """The input `path` is, if any."""
        real = os.path.realpath(path)  # also a path through a folder that doesn't exist: `new/../in.jsonl`
        key = _inode(path) or _inode(real)
        found = self.inodes.get(key) if key is not None else None
        return found or self.missing.get(real)

    def folder_holding(self, path: Path) -> tuple[str, str] | None:
        """The folder input `path` would be written into: a folder is read as every table file
        in it, so an output there would join the input of the next run."""
        key = _inode(path.absolute().parent) if self.folders else None
        return self.folders.get(key) if key is not None else None


def _inode(path: PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _prepare_folders(pairs: list[tuple[str, Path]], create_folders: bool) -> None:
    """Create each output folder, probe that it takes new files, remove dead runs' temp files."""
    seen: set[Path] = set()
    for flag, path in pairs:
        folder = path.absolute().parent
        if folder in seen:
            continue
        seen.add(folder)
        if create_folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SalmatError(f"cannot create the output folder {folder} for {flag} {path}: {_problem(exc)}; "
                                  f"choose another {flag}") from None
        elif not folder.is_dir():
            raise SalmatError(f"the output folder {folder} does not exist: create it or choose another {flag}")
        _probe(folder, flag)
        clean_leftovers(folder, [p.name for f, p in pairs if p.absolute().parent == folder])


def _spelled(label: str) -> str:
    """'--out (long.parquet)' as the caller names the setting: 'out (long.parquet)' from Python."""
    if not label.startswith("--"):
        return label
    head, space, rest = label.partition(" ")
    return named(head) + space + rest


def _one_stdout(given: list[tuple[str, str]]) -> None:
    to_stdout = [flag for flag, p in given if p == STDIO]
    if len(to_stdout) > 1:
        raise SalmatError(f"{to_stdout[1]} and {to_stdout[0]} both name - (stdout): only one output can go there; "
                          f"give {to_stdout[1]} a file")


def _refuse_special(flag: str, path: Path) -> None:
    """An output is replaced by a rename, which replaces whatever the name points at now: a
    device (`/dev/full`), a FIFO or a symlink would be swapped for a regular file. Only a
    regular file (or nothing) may be there."""
    try:
        st = path.lstat()
    except OSError:
        return  # nothing there yet (or nothing we can see; the probe below decides)
    if stat.S_ISLNK(st.st_mode):
        raise SalmatError(f"{flag} {path} is a symbolic link; writing would replace the link, not its target: "
                          f"name the real file ({os.path.realpath(path)}) or choose another {flag}")
    if not stat.S_ISREG(st.st_mode):
        raise SalmatError(f"{flag} {path} is not a regular file (a device, FIFO or socket) and would be replaced: "
                          f"choose another {flag}")


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when `a` and `b` are one file: through symlinks and hard links when both exist,
    by resolved path otherwise (an output that doesn't exist yet)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _probe(folder: Path, flag: str) -> None:
    """Create and remove a temp file, so a read-only folder fails now, not after the work."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=temp_prefix(), suffix="-probe")
    except OSError as exc:
        raise SalmatError(f"cannot write to the output folder {folder}: {_problem(exc)}: "
                          f"choose another {flag}") from None
    os.close(fd)
    os.unlink(probe)


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


def _problem(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return " ".join(str(exc.strerror or exc).split())


# --------------------------------------------------------------------------- atomic write


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
    """

    def __init__(self, path: PathLike, mode: str = "wb") -> None:
        if mode not in ("wb", "w"):
            raise ValueError(f"mode must be 'wb' or 'w', not {mode!r}")
        self.path = Path(path)
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
                os.replace(self.temp, self.path)
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


# --------------------------------------------------------------------------- stdout and private files

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


# --------------------------------------------------------------------------- SIGTERM


# Signals, fd 1 and the temp files a SIGTERM removes belong to the process (`_STOPPED_BY`,
# `_STDOUT_FD`, `_LIVE`, `_HANDLER_PID`); what a run published is the run's own: a context
# variable, so a run in another thread or task never reports this one's files.
_STOPPED_BY: list[int] = []  # the signal that asked this process to stop, once one has
_PUBLISHED: contextvars.ContextVar[list[str]] = contextvars.ContextVar("salmat_published")


def _published() -> list[str]:
    """The outputs this run (this thread or task's current run) has renamed into place."""
    found = _PUBLISHED.get(None)
    if found is None:
        found = []
        _PUBLISHED.set(found)
    return found


def begin_run() -> None:
    """Start a run's record afresh, and forget a stop an earlier run in this process was asked
    for (the CLI can be called more than once in one process: tests, notebooks)."""
    _PUBLISHED.set([])
    _STOPPED_BY.clear()


def stopped_message(how: str) -> str:
    """The line said when a signal stops the run: what, if anything, was already written."""
    published = _published()
    if not published:
        return f"salmat: {how}; no output was written"
    return f"salmat: {how}; already written before that: {', '.join(published)}"


def _raise_if_stopped() -> None:
    """A stop asked for is final: no output is published after Ctrl-C or SIGTERM, even when a
    library swallowed the exception the signal raised (seen during pyarrow's lazy imports)."""
    if _STOPPED_BY:
        raise KeyboardInterrupt if _STOPPED_BY[0] == signal.SIGINT else SystemExit(128 + _STOPPED_BY[0])


def stop_requested() -> int | None:
    """The exit status a signal asked for (130, 143), or None."""
    return 128 + _STOPPED_BY[0] if _STOPPED_BY else None


def _on_sigint(signum: int, frame: Any) -> None:
    _STOPPED_BY.append(signum)
    raise KeyboardInterrupt


def install_sigterm_cleanup() -> None:
    """On SIGTERM, remove this process's live temp files, say so, and exit 143 (128 + 15).

    Installed once, only by the main thread of a main process (a signal handler can only be
    set there, and a worker must keep its default), and only over the default disposition so
    an embedding application's own handler wins.
    """
    global _HANDLER_PID
    if _HANDLER_PID is not None or threading.current_thread() is not threading.main_thread():
        return
    if multiprocessing.parent_process() is not None or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    _HANDLER_PID = os.getpid()


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM kills at once
    _STOPPED_BY.append(signum)
    if os.getpid() != _HANDLER_PID:  # a forked child inherited the handler: die as by default
        os.kill(os.getpid(), signum)
        return
    for temp in list(_LIVE):
        try:
            os.unlink(temp)
        except OSError:
            pass
        _LIVE.discard(temp)
    print(stopped_message("terminated"), file=sys.stderr, flush=True)
    # SystemExit, not os._exit: `finally` blocks still run, so pool workers are stopped and the
    # cache is closed; the temp files are already gone should that unwinding be cut short.
    raise SystemExit(128 + signum)
