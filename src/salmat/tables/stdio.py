"""Inputs that are no file of the user's: stdin read once into a private copy (its layout
sniffed), and the labels messages and the audit give private files, inputs and outputs."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

from salmat.errors import SalmatError
from salmat.option_spec import named
from salmat.outputs import STDIO, private_temp_file, remove_private_temp

from .formats import _JSON_SPACE, _MiB, _os_problem, sha256_file
from .parquet import _folder_files

_LABELS: dict[str, str] = {}  # private file's path -> what messages and the audit call it
_STDIN_COPY: list[tuple[object, str]] = []  # (the stdin object read, its private copy): stdin is read once


@contextlib.contextmanager
def labelled_path(path: str, label: str) -> Iterator[None]:
    """Within the block, `path` (a private copy of a caller's in-memory table, or the private
    file a table is returned through) is called `label` in messages and in the audit."""
    _LABELS[path] = label
    try:
        yield
    finally:
        _LABELS.pop(path, None)


def input_label(path: str | os.PathLike[str]) -> str:
    """What messages call the input `path`: 'stdin' for `-`, a registered label, else the path."""
    text = os.fspath(path)
    return "stdin" if text == STDIO else _LABELS.get(text, text)


def describe_input(path: str | os.PathLike[str]) -> dict[str, str]:
    """The audit's `input` and `input_sha256`: an absolute path (or stdin's `-`, or a label) and
    the sha256 of the bytes read (for a folder: of each table file's name and sha256, in order)."""
    text = os.fspath(path)
    real = _stdin_copy() if text == STDIO else Path(text)
    name = STDIO if text == STDIO else _LABELS.get(text, os.path.abspath(text))
    if real.is_dir():
        listing = "".join(f"{f.name}\0{sha256_file(f)}\n" for f in _folder_files(real))
        return {"input": name, "input_sha256": hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()}
    return {"input": name, "input_sha256": sha256_file(real)}


def describe_output(path: str | os.PathLike[str]) -> str:
    """The audit's `output`: an absolute path, `-` for stdout, or a label."""
    text = os.fspath(path)
    return text if text == STDIO else _LABELS.get(text, os.path.abspath(text))


def _stdin_copy() -> Path:
    """Stdin, read whole into a private file named for its sniffed layout (read once per stdin:
    the two passes and the audit's hash all read the copy)."""
    stream = sys.stdin
    for seen, copy in _STDIN_COPY:
        if seen is stream and os.path.exists(copy):
            return Path(copy)
        remove_private_temp(copy)  # another stdin now (a test, an embedding app): the old copy is done
    if stream is None or stream.closed:
        raise SalmatError(f"{named('input')} - reads the table from stdin, but there is no stdin: give a file")
    if stream.isatty():
        raise SalmatError(f"{named('input')} - reads the table from stdin, but stdin is a terminal: pipe a table "
                          f"in (cat table.jsonl | salmat materialize {named('input')} - ...), or give a file")
    source = getattr(stream, "buffer", None)
    head = source.read(_SNIFF_BYTES) if source is not None else stream.read().encode("utf-8")
    if not head:
        raise SalmatError(f"{named('input')} - reads the table from stdin, but stdin is empty: pipe a table in, "
                          "or give a file")
    copy = private_temp_file("-stdin" + _sniff_suffix(head))
    atexit.register(remove_private_temp, copy)
    try:
        with open(copy, "wb") as file:
            file.write(head)
            while source is not None and (block := source.read(_MiB)):
                file.write(block)
    except OSError as exc:
        remove_private_temp(copy)
        raise SalmatError(f"cannot keep a copy of stdin in {os.path.dirname(copy)}: {_os_problem(exc)}; free some "
                          "space or set TMPDIR to a roomier folder") from None
    _STDIN_COPY[:] = [(stream, copy)]
    return Path(copy)


_SNIFF_BYTES = 1 << 16


def _sniff_suffix(head: bytes) -> str:
    """The suffix stdin's first bytes call for: Parquet by its magic, gzip looked into, JSONL
    when the first non-blank byte is `{`, else CSV, or TSV when the header has tabs and no commas."""
    if head.startswith(b"PAR1"):
        return ".parquet"
    if head.startswith(b"\x1f\x8b"):
        inner = zlib.decompressobj(wbits=31).decompress(head, _SNIFF_BYTES)
        return _sniff_suffix(inner) + ".gz"
    text = head.lstrip(_JSON_SPACE).removeprefix(b"\xef\xbb\xbf")
    if not text or text.startswith(b"{"):
        return ".jsonl"
    header = text.split(b"\n", 1)[0]
    return ".tsv" if b"\t" in header and b"," not in header else ".csv"
