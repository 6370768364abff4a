"""A row's path and geometry → a clip: relative paths, raw `.yuv` geometry, confinement to
`--root`, and opening the file as planned (`open_source`).

No pyarrow here: pool workers import this module (`ClipSpec`, `open_source`; the fork
server's preload) and never read a table; `row_plan` turns a table's rows into clips.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ClipError, SalmatError
from .option_spec import named, passing
from .values import MISSING_GEOMETRY, MISSING_SOURCE, OUTSIDE_ROOT

RAW_SUFFIXES = {".yuv"}
_GEOMETRY_TOKEN = re.compile(r"(?:^|[_\-.])(\d{2,5})x(\d{2,5})(?=[_\-.]|$)")
_BITDEPTH_TOKEN = re.compile(r"(?:^|[_\-.])(8|10|12|16)bit(?=[_\-.]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to decode one clip; hashable, so it doubles as the clip key."""

    path: str
    raw: bool = False
    width: int | None = None
    height: int | None = None
    bit_depth: int = 8
    # With --confine-to-root: the real path of --root, checked again when the file is opened
    # (`open_source`), so a symlink re-pointed after planning can't lead outside it.
    confine: str | None = None
    # --per-frame: the frame indices its rows want (sorted, distinct, from 0 in presentation order); None
    # samples the clip (CONTRACT §4). Part of the key: a clip and its frame set are one unit of work.
    frames: tuple[int, ...] | None = None
    # --reference-column: the row's reference clip, decoded at the same frame indices (docs/quality.md).
    # Part of the key: one distorted clip against two references is two units of work.
    reference: ClipSpec | None = None

    def __post_init__(self) -> None:
        if self.frames is not None and not isinstance(self.frames, tuple):
            object.__setattr__(self, "frames", tuple(int(i) for i in self.frames))  # a list, back from JSON
        if isinstance(self.reference, dict):  # back from JSON (the Ray engine carries specs as text)
            object.__setattr__(self, "reference", ClipSpec(**self.reference))


@dataclass(frozen=True)
class SourceFailure:
    """A row that can't become a clip: a contract status and the reason in words."""

    status: str
    message: str


@dataclass(frozen=True)
class SourceOptions:
    path_column: str = "src"
    root: str | None = None
    width_column: str = "width"
    height_column: str = "height"
    default_width: int | None = None
    default_height: int | None = None
    confine_to_root: bool = False
    reference_column: str | None = None

    def __post_init__(self) -> None:
        check_source_options(self.root, self.confine_to_root)


def geometry_from_name(name: str) -> tuple[int | None, int | None, int | None]:
    """(width, height, bit depth) from tokens like `Name_1920x1080_25fps_10bit_420.yuv`."""
    stem = Path(name).name
    geo = _GEOMETRY_TOKEN.search(stem)
    depth = _BITDEPTH_TOKEN.search(stem)
    width, height = (int(geo.group(1)), int(geo.group(2))) if geo else (None, None)
    return width, height, int(depth.group(1)) if depth else None


def check_source_options(root: str | None, confine_to_root: bool) -> None:
    """Usage errors in the source settings (exit 2, before any work): `--confine-to-root`
    confines to `--root`, so without one it would confine nothing."""
    if confine_to_root and not root:
        raise SalmatError(f"{named('confine_to_root')} needs {named('root')} (the folder sources must stay inside); "
                          f"pass {passing('root', 'FOLDER')}, or drop {named('confine_to_root')}")


def resolve_source(
    raw_path: str | None, width: int | None, height: int | None, options: SourceOptions
) -> ClipSpec | SourceFailure:
    """One row's path and geometry → a decodable clip, or the reason it can't be one."""
    if raw_path is None or not raw_path.strip():
        return SourceFailure(MISSING_SOURCE, f"column {options.path_column!r} is empty")
    unusable = unrepresentable(raw_path)
    if unusable:
        return SourceFailure(MISSING_SOURCE, f"{_shown(raw_path)}: {unusable}")
    if raw_path.endswith(("/", "/.")):  # pathlib drops it, and would read `disc.mp4/` as disc.mp4
        return SourceFailure(MISSING_SOURCE, f"{_shown(raw_path)}: ends with '{raw_path[raw_path.rindex('/'):]}', "
                                               "so it names a folder, not a clip file: remove it")
    path = Path(raw_path)
    if not path.is_absolute() and options.root:
        path = Path(options.root) / path
    confine = None
    if options.confine_to_root and options.root:
        confine = os.path.realpath(options.root)
        if not _inside(path, confine):
            return SourceFailure(OUTSIDE_ROOT, f"{raw_path} resolves outside --root {options.root}")
    failure = _readable_file_failure(path, raw_path, options.root)
    if failure:
        return failure
    if path.suffix.lower() not in RAW_SUFFIXES:
        return ClipSpec(str(path), confine=confine)
    return _raw_spec(path, width, height, options, confine)


def unrepresentable(path: str) -> str | None:
    """Why `path` can't name a file at all (a NUL byte, text with no file-name encoding), or None."""
    if "\x00" in path:
        return "the path contains a NUL byte, which no file name can hold"
    try:
        os.fsencode(path)
    except UnicodeError:
        return "the path has characters that can't be encoded as a file name"
    return None


def _shown(path: str) -> str:
    """`path` on one line, with control characters and unencodable text escaped."""
    return repr(path)[1:-1]


def _inside(path: Path | str, real_root: str) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(real_root)
    except (OSError, RuntimeError, ValueError):
        return False


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words: the reason it is not read as a clip."""
    for test, kind in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return f"file of type {stat.S_IFMT(mode):#o}"


def _not_found(raw_path: str, path: Path, root: str | None) -> str:
    """A missing file, with the folder a relative path was looked for in and how to name another."""
    if Path(raw_path).is_absolute():
        return f"{path}: no such file"
    if root:
        return f"{raw_path}: no such file in {named('root')} {os.path.abspath(root)}"
    return (f"{raw_path}: no such file in the current folder {os.getcwd()}, where relative paths are read from "
            f"without {named('root')}; pass {passing('root', 'FOLDER')} to name the clips' folder")


def _readable_file_failure(path: Path, raw_path: str, root: str | None) -> SourceFailure | None:
    """Only regular files are sources: a FIFO, device, socket or folder is refused here, from
    its `stat`, without opening it (opening one can block forever or act on a device)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return SourceFailure(MISSING_SOURCE, _not_found(raw_path, path, root))
    except (OSError, ValueError) as exc:  # symlink loops, over-long names, a folder on the way that is a file
        return SourceFailure(MISSING_SOURCE, f"{path}: {getattr(exc, 'strerror', None) or exc}")
    if not stat.S_ISREG(mode):
        return SourceFailure(MISSING_SOURCE, f"{path}: not a regular file: {file_kind(mode)}")
    if not os.access(path, os.R_OK):
        return SourceFailure(MISSING_SOURCE, f"{path}: not readable (permission denied)")
    return None


def _raw_spec(path: Path, width: int | None, height: int | None, options: SourceOptions,
              confine: str | None = None) -> ClipSpec | SourceFailure:
    """Raw 4:2:0: geometry from the row, then the defaults, then the file name."""
    name_w, name_h, name_depth = geometry_from_name(path.name)
    w = width or options.default_width or name_w
    h = height or options.default_height or name_h
    if not w or not h:
        return SourceFailure(
            MISSING_GEOMETRY,
            f"{path.name}: raw .yuv needs its size: add {options.width_column}/{options.height_column} columns, "
            "pass --default-width/--default-height, or name the file like Name_1920x1080_8bit_420.yuv",
        )
    return ClipSpec(str(path), raw=True, width=int(w), height=int(h), bit_depth=name_depth or 8, confine=confine)


# ---- opening a source ---------------------------------------------------------------------------
#
# Every decoder reads a source through `open_source`, never by handing its path to a library: the
# path is opened here once, as a plain local file, and what was opened is checked (a regular file;
# with --confine-to-root, a real path inside the root) and then read through that descriptor. A
# symlink re-pointed after the check, a FIFO or device swapped in, or a path that reads like a URL
# (`file:`, `concat:`, `subfile:`) can't change what is read.

_PROC_FD = "/proc/self/fd"


class SourceFile(io.RawIOBase):
    """A checked source, open for reading. Reads stop at the size the file had when it was
    opened, so a file whose `stat` size is 0 but which streams data anyway (/proc, /sys) reads
    as empty, and a file still being appended to can't be read forever. `name` is the source's
    path (PyAV shows it in errors and uses its extension when probing the format); `stat` is the
    opened file's (`fstat`), `real_path` its real path."""

    def __init__(self, fd: int, name: str, st: os.stat_result, real_path: str | None) -> None:
        super().__init__()
        self._fd = fd
        self.name = name
        self.stat = st
        self.size = st.st_size
        self.real_path = real_path
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def read(self, size: int | None = -1) -> bytes:
        left = self.size - self._pos
        count = left if size is None or size < 0 else min(size, left)
        if count <= 0:
            return b""
        data = os.pread(self._fd, count, self._pos)
        self._pos += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}.get(whence)
        if base is None or base + offset < 0:
            raise OSError(22, f"invalid seek ({offset}, {whence})")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


def open_source(spec: ClipSpec) -> SourceFile:
    """Open `spec`'s file for reading, checked (raises `ClipError`).

    Not a regular file → `missing-source`, found before anything is read (on Linux the file
    is first opened with O_PATH, which opens no device and never blocks on a FIFO); with
    `spec.confine`, a real path outside it → `outside-root`, checked on the opened descriptor
    itself. The caller closes the returned file.
    """
    name = os.path.basename(spec.path)
    unusable = unrepresentable(spec.path)
    if unusable:
        raise ClipError(MISSING_SOURCE, f"{_shown(spec.path)}: {unusable}")
    cloexec = getattr(os, "O_CLOEXEC", 0)
    o_path = getattr(os, "O_PATH", 0) if os.path.isdir(_PROC_FD) else 0
    try:
        if o_path:
            anchor = os.open(spec.path, o_path | cloexec)
            try:
                _check_opened(anchor, spec, name)
                fd = os.open(f"{_PROC_FD}/{anchor}", os.O_RDONLY | cloexec | getattr(os, "O_NOCTTY", 0))
            finally:
                os.close(anchor)
        else:
            fd = os.open(spec.path, os.O_RDONLY | cloexec | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:  # gone since planning, permission denied, a symlink loop
        raise ClipError(MISSING_SOURCE, f"{name}: {exc.strerror or exc}") from None
    try:
        st, real = _check_opened(fd, spec, name)
        return SourceFile(fd, spec.path, st, real)
    except BaseException:
        os.close(fd)
        raise


def _check_opened(fd: int, spec: ClipSpec, name: str) -> tuple[os.stat_result, str | None]:
    """`fstat` and real path of the file open as `fd`, after checking it may be read as `spec`."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ClipError(MISSING_SOURCE, f"{name}: not a regular file: {file_kind(st.st_mode)}")
    real = _real_path_of(fd, spec.path, st)
    if spec.confine is not None and (real is None or not Path(real).is_relative_to(spec.confine)):
        raise ClipError(OUTSIDE_ROOT, f"{spec.path} resolves outside {named('root')} {spec.confine} "
                                      f"(to {real or 'a file that changed while it was opened'})")
    return st, real


def _real_path_of(fd: int, path: str, st: os.stat_result) -> str | None:
    """The real path of the file open as `fd`: from /proc where there is one, else the path's
    realpath if that names the very same file (None when it doesn't: it changed meanwhile)."""
    try:
        link = os.readlink(f"{_PROC_FD}/{fd}")
        if link.startswith("/"):
            return link.removesuffix(" (deleted)")
    except OSError:
        pass
    real = os.path.realpath(path)
    try:
        return real if os.path.samestat(os.stat(real), st) else None
    except OSError:
        return None


def source_size(spec: ClipSpec) -> int:
    """The size of `spec`'s file, found by opening it as `open_source` does (same checks)."""
    with open_source(spec) as handle:
        return handle.size
