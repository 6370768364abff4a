"""The option spec: each setting declared once, and everything else derived from it.

A command's settings are the fields of a frozen dataclass (`salmat.options`);
each field carries a `Setting` in its metadata: default, help, check, choices,
argparse group, and whether the CLI wants it positional or required. From
that one declaration come

- the Python keywords: `Options.build(**settings)` refuses an unknown keyword
  (one line naming the known ones), so a typo never silently falls back;
- the CLI flags: `add_settings(parser, cls)` adds `--name-with-dashes` for
  each field, typed from its annotation (`typing.get_type_hints`); a bool
  defaulting to False is a `--flag`, one defaulting to True is `--x/--no-x`;
- the checks: `validate(opts)` runs every field's check and choices, and the
  message names the setting and a value that works, spelled for whoever called:
  `--frame-samples 4` on the command line, `frame_samples=4` from Python
  (`named`, `passing`; the CLI switches the spelling with `cli_spelling()`).

Standard library only, so building the parsers imports nothing heavy.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import difflib
import functools
import math
import os
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from .defaults import MAX_INFERENCE_SIZE, MIN_INFERENCE_SIZE
from .errors import SalmatError

# A check returns None when the value is fine, else what the value must be ("a whole number ≥ 1").
Check = Callable[[Any], "str | None"]

METADATA_KEY = "salmat.setting"
T = TypeVar("T", bound="Options")


class _Required:
    """The default of a setting that has none (dataclasses' own MISSING can't be a field's value)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Setting:
    """One setting's declaration; `field()` turns it into a dataclass field."""

    default: Any = REQUIRED
    help: str = ""
    check: Check | None = None
    choices: tuple[str, ...] | None = None   # for a list setting: what each item may be
    group: str | None = None                 # argparse argument group (help layout only)
    convert: Callable[[Any], Any] | None = None  # API value → stored value (Path → str, "a,b" → ("a", "b"))
    example: str | None = None               # shown in error messages when the default can't serve
    required: bool = False                   # the CLI flag must be given, even if the API has a default
    positional: bool = False                 # a positional CLI argument rather than a --flag
    metavar: str | None = None
    aliases: tuple[str, ...] = ()           # older CLI spellings still accepted (shown in --help)

    def field(self, **overrides: Any) -> Any:
        """A fresh dataclass field for this setting; `overrides` change it for one command only."""
        s = replace(self, **overrides)
        meta = {METADATA_KEY: s}
        if s.default is REQUIRED:
            return field(metadata=meta)
        return field(default=s.default, metadata=meta)


def setting(default: Any = REQUIRED, help: str = "", **kw: Any) -> Any:
    """A setting used by one command only: declare and turn into a field at once."""
    return Setting(default, help, **kw).field()


# ---- checks and conversions ------------------------------------------------------


def whole(low: int, high: int | None = None) -> Check:
    """A whole number in [low, high]."""
    want = f"a whole number ≥ {low}" if high is None else f"a whole number from {low} to {high}"

    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return None if ok and (high is None or value <= high) else want
    return check


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def unit_interval(value: Any) -> str | None:
    return None if _number(value) and 0 < value <= 1 else "in (0, 1]"


def seconds(value: Any) -> str | None:
    """A duration a process can wait for: > 0 and at most 10⁶ s (11.6 days)."""
    return None if _number(value) and 0 < value <= 1e6 else "a number of seconds in (0, 1000000]"


def non_negative(value: Any) -> str | None:
    return None if _number(value) and value >= 0 else "a finite number ≥ 0"


def non_empty(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty name"


def existing_folder(value: Any) -> str | None:
    return None if isinstance(value, str) and os.path.isdir(value) else "an existing folder"


def native_or_size(value: Any) -> str | None:
    """'native', or a short-side size in pixels (16 to 8192)."""
    if value == "native":
        return None
    ok = isinstance(value, str) and value.isdigit() and MIN_INFERENCE_SIZE <= int(value) <= MAX_INFERENCE_SIZE
    return None if ok else f"native or a whole number of pixels from {MIN_INFERENCE_SIZE} to {MAX_INFERENCE_SIZE}"


def text(value: Any) -> Any:
    """540 → '540': a setting the CLI reads as text may be given a number from Python."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def item_list(value: Any) -> str | None:
    """A list setting after `comma_list`: at least one item, none empty (`a,,b`, a trailing comma),
    none twice."""
    if not isinstance(value, tuple) or not any(value):
        return "a non-empty comma-separated list"
    if "" in value:
        return "a comma-separated list with no empty item"
    return None if len(set(value)) == len(value) else "a list that names nothing twice"


def path(value: Any) -> Any:
    """Accept `pathlib.Path` and friends where a path string is stored."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def comma_list(value: Any) -> Any:
    """'a, b' or ['a', 'b'] → ('a', 'b'); anything else is left for the check to refuse. An
    empty item ('a,,b', 'a,b,') is kept as '' for `item_list` to refuse, never dropped."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        return value
    return tuple(str(path(v)).strip() for v in items)


# ---- the options base class ----------------------------------------------------------


class Options:
    """Base of the option dataclasses: keywords in, conversion, validation."""

    command: ClassVar[str] = ""
    # Set by `@dataclass` on every subclass; declared so type checkers see an option class as a dataclass.
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def __post_init__(self) -> None:
        for f, s in settings(type(self)):
            value = getattr(self, f.name)
            if s.convert is not None and value is not None:
                object.__setattr__(self, f.name, s.convert(value))  # frozen: conversion happens once, here

    @classmethod
    def build(cls: type[T], **values: Any) -> T:
        """Options from keywords; an unknown or missing one is a one-line `SalmatError`."""
        values = _earlier_names_taken(cls, values)
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise SalmatError(_unknown_message(cls, unknown, names))
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in values]
        if missing:
            raise SalmatError(f"salmat {cls.command}: missing {', '.join(missing)}")
        return cls(**values)

    def validate(self) -> None:
        validate(self)

    def cross_check(self) -> None:
        """Checks that involve several fields; a subclass overrides it."""

    def non_default(self) -> set[str]:
        """The settings whose value differs from their default: what the caller asked for (a
        default passed explicitly can't be told apart, and changes nothing)."""
        return {f.name for f in fields(self) if f.default is not MISSING and getattr(self, f.name) != f.default}

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _earlier_names_taken(cls: type[Options], values: dict[str, Any]) -> dict[str, Any]:
    """A setting passed from Python under its earlier name (a `Setting.aliases` flag, e.g.
    `aggregators=` for `reducers=`) is taken as the setting, as the command line takes the flag."""
    taken = dict(values)
    for f, s in settings(cls):
        for alias in s.aliases:
            earlier = alias.removeprefix("--").replace("-", "_")
            if earlier in taken:
                if f.name in taken:
                    raise SalmatError(f"{earlier} is the earlier name of {f.name}: pass one of them")
                taken[f.name] = taken.pop(earlier)
    return taken


def did_you_mean(unknown: Iterable[str], names: Iterable[str]) -> str:
    """` (did you mean frame_samples?)` for the nearest known names, or ''."""
    known = list(names)
    hints = [m for u in unknown for m in difflib.get_close_matches(u, known, n=1)]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def _unknown_message(cls: type[Options], unknown: list[str], names: list[str]) -> str:
    guess = did_you_mean(unknown, names)
    required = {f.name for f in fields(cls) if f.default is MISSING}
    known = ", ".join(sorted(set(names) - required))
    return f"unknown option(s) {', '.join(unknown)}{guess}; salmat {cls.command} knows: {known}"


def settings(cls: type[Options]) -> list[tuple[Field[Any], Setting]]:
    """The fields of an option class that carry a `Setting`, in declaration order."""
    return [(f, f.metadata[METADATA_KEY]) for f in fields(cls) if METADATA_KEY in f.metadata]


def type_hints(cls: type) -> dict[str, Any]:
    # `cls: type` here (not `type[Options]`): mypy does not see a `type[Options]` argument as Hashable.
    return _type_hints(cls)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def flag(name: str, s: Setting) -> str:
    return name if s.positional else "--" + name.replace("_", "-")


# ---- how a setting is named to whoever called ----------------------------------------------
# One home for the spelling in messages: a CLI user reads `--path-column NAME`, a Python caller
# `path_column=NAME`. Python spelling is the default; `salmat.cli.main` switches to flags.

# A context variable, not a process-wide flag: a thread or task running another call (a Python
# caller beside a CLI run in the same process) keeps its own spelling.
_CLI_SPELLING: contextvars.ContextVar[bool] = contextvars.ContextVar("salmat_cli_spelling", default=False)


@contextlib.contextmanager
def cli_spelling(on: bool = True) -> Iterator[None]:
    """Within the block (this thread or task only), messages name settings as command-line flags
    (`on=False`: as Python keywords). A worker gets its caller's `spelling_in_use()` this way."""
    token = _CLI_SPELLING.set(on)
    try:
        yield
    finally:
        _CLI_SPELLING.reset(token)


def spelling_in_use() -> bool:
    """True where messages name settings as flags: what a job carries to its workers, whose
    processes and threads don't inherit this context."""
    return _CLI_SPELLING.get()



def named(name: str) -> str:
    """`path_column` as the caller knows it: `--path-column` on the command line, else `path_column`."""
    name = name.removeprefix("--").replace("-", "_")
    return "--" + name.replace("_", "-") if spelling_in_use() else name


def passing(name: str, value: object) -> str:
    """How the caller passes `value` for `name`: `--frame-samples 4`, or `frame_samples=4`."""
    return f"{named(name)} {value}" if spelling_in_use() else f"{named(name)}={value}"


def switched_off(name: str) -> str:
    """A flag pair's off side as the caller gives it: `--no-plots`, or `plots=False`."""
    return "--no-" + named(name).removeprefix("--") if spelling_in_use() else f"{named(name)}=False"


def switched_on(name: str) -> str:
    """A switch as the caller turns it on: `--overwrite`, or `overwrite=True`."""
    return named(name) if spelling_in_use() else f"{named(name)}=True"


# ---- validation ------------------------------------------------------------------------


def validate(opts: Options) -> None:
    """Every field's type, choices and check, then the class's cross-field checks."""
    hints = type_hints(type(opts))
    for f, s in settings(type(opts)):
        value = getattr(opts, f.name)
        problem, shown = _problem(s, value, hints[f.name])
        if problem:
            raise SalmatError(_message(f.name, problem, shown, s, scalar_type(hints[f.name])))
    opts.cross_check()


def _problem(s: Setting, value: Any, hint: Any) -> tuple[str | None, Any]:
    """(what the value must be, the part of it that is wrong), or (None, None)."""
    if value is None:
        return (None, None) if _allows_none(hint) else ("given", value)
    if scalar_type(hint) is bool and not isinstance(value, bool):
        return "true or false", value
    if scalar_type(hint) is str and isinstance(value, (int, float, bytes)):  # column_prefix=5, b"ref_"
        return "text", value
    if isinstance(value, str) and s.convert is not path and not _utf8(value):
        return "valid UTF-8 text (it names columns and ids written into tables)", value
    problem = s.check(value) if s.check else None
    if s.choices is not None:
        if isinstance(value, tuple) and problem:  # a list's shape (an empty item) before its items
            return problem, value
        items = value if isinstance(value, tuple) else (value,)
        bad = tuple(v for v in items if v not in s.choices)
        if bad:
            return f"one of {', '.join(s.choices)}", bad if isinstance(value, tuple) else value
    return problem, value


def _utf8(text: str) -> bool:
    """False for text holding undecodable bytes (surrogate escapes of a non-UTF-8 argument)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _allows_none(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _message(name: str, problem: str, shown: Any, s: Setting, kind: type) -> str:
    example = s.example or _show_default(s.default) or (s.choices[0] if s.choices else None)
    if example and kind is str and not spelling_in_use():
        example = repr(example)  # a Python caller passes text as a str literal
    tail = f"; e.g. {passing(name, example)}" if example and not s.positional else ""
    if isinstance(shown, tuple):
        shown = ",".join(map(str, shown))  # a list setting, shown as the comma text the flag takes
    shown_name = name if s.positional and spelling_in_use() else named(name)
    return f"{shown_name} must be {problem}, got {shown!r}{tail}"


def _show_default(default: Any) -> str | None:
    if default is REQUIRED or default is None or isinstance(default, bool):
        return None
    return ",".join(default) if isinstance(default, tuple) else str(default)


# ---- the command line ----------------------------------------------------------------


def scalar_type(hint: Any) -> type:
    """What argparse converts a flag's text to: bool, int or float when the annotation says so, else str."""
    members = typing.get_args(hint) or (hint,)
    return next((t for t in (bool, int, float) if t in members), str)


def add_settings(parser: argparse.ArgumentParser, cls: type[Options]) -> None:
    """One argparse argument per setting of `cls`, in its groups, in declaration order."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    hints = type_hints(cls)
    for f, s in settings(cls):
        target: argparse._ActionsContainer = parser
        if s.group is not None:
            group = groups.get(s.group)
            if group is None:
                group = groups[s.group] = parser.add_argument_group(s.group)
            target = group
        target.add_argument(flag(f.name, s), *s.aliases, **_argument(f.name, s, scalar_type(hints[f.name])))


def _argument(name: str, s: Setting, kind: type) -> dict[str, Any]:
    kw: dict[str, Any] = {"help": s.help}
    if not s.positional:
        kw["dest"] = name
    if kind is bool:
        # True by default: the flag pair (--plots/--no-plots); else a plain switch (False, or None = unset).
        action = argparse.BooleanOptionalAction if s.default is True else "store_true"
        return {**kw, "action": action, "default": s.default}
    kw["type"] = kind
    if s.metavar:
        kw["metavar"] = s.metavar
    if s.choices is not None and s.convert is not comma_list:
        kw["choices"] = s.choices
    if s.required or s.default is REQUIRED:
        if not s.positional:
            kw["required"] = True
        return kw
    # A list default is shown and parsed as the comma-separated text the flag takes.
    kw["default"] = ",".join(s.default) if isinstance(s.default, tuple) else s.default
    if s.positional:
        kw["nargs"] = "?"
    return kw


def from_namespace(args: argparse.Namespace, cls: type[T]) -> dict[str, Any]:
    """The parsed values of `cls`'s settings, as keywords for `cls.build` or the API function."""
    return {f.name: getattr(args, f.name) for f, _ in settings(cls)}
