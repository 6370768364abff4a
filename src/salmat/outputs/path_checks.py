"""The one check before any work: every output can be written, none is a folder, an input or
another output, each folder exists and takes new files, dead runs' temp files are gone."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import SalmatError
from ..option_spec import named
from .stdio import STDIO, PathLike
from .temps import clean_leftovers, temp_prefix


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


def _problem(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return " ".join(str(exc.strerror or exc).split())
