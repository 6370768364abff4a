"""The learned models salmat knows by name, where their files are, and which id an ONNX file gets.

`--model saliency_student_v1` names a known learned model: its file
(`saliency_student_v1.onnx`) is looked up in `--model-dir DIR` (API `model_dir`),
else in `$SALMAT_MODEL_DIR`, each a `:`-separated list of folders searched in
order; the first folder holding the file wins. The model runs with its own
preprocessing preset unless `--preprocess` names another.

Which id an ONNX file gets has one home, `model_id`, for `--model NAME` and
`--model-path FILE` alike, so a merged table never holds two models under one id:

- a file whose sha256 is a known model's gets that model's id, whatever its name;
- a file named like a known model (or a built-in) whose sha256 is not that
  model's gets `stem@sha8` (its stem, `@`, the first 8 hex digits of its sha256);
  a known model without a published checksum (`u2netp_mirror_v1`) can't be
  checked, so its file keeps the plain id;
- a stem holding `@` gets `@sha8` too: `@` marks salmat's own suffixes;
- any other file gets its stem;
- an explicit label (`--model-id`) is kept as given, except that it may not
  claim a built-in's id or a known model whose checksum the file doesn't have.

Several files in one run (`salmat compare --models a/model.onnx,b/model.onnx`)
whose ids would collide all get the `@sha8` form (`distinct_ids`).
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SalmatError
from ..option_spec import named, passing
from .classical import BUILTIN_MODELS, DEFAULT_MODEL_ID

ENV_VAR = "SALMAT_MODEL_DIR"
SHA_DIGITS = 8  # hex digits of the sha256 in a `stem@sha8` id


@dataclass(frozen=True)
class KnownModel:
    id: str
    filename: str
    preset: str             # the preprocessing preset it was trained with
    sha256: str | None      # None: no published checksum, so its file can't be checked
    repository: str | None = None  # the GitHub repository that publishes the file ("owner/name")
    repo_path: str | None = None   # the file's path in that repository

    @property
    def url(self) -> str | None:
        """Where `salmat models pull` downloads the file by default (its sha256 is checked either way)."""
        if self.repository is None or self.repo_path is None:
            return None
        return f"https://raw.githubusercontent.com/{self.repository}/{PUBLISHED_BRANCH}/{self.repo_path}"


# The students are published by VMAFx/vmafx in model/tiny/ (their model cards, and that folder's
# registry.json, give these same sha256s), under the BSD-2-Clause-Patent licence.
PUBLISHED_BRANCH = "master"
KNOWN_MODELS: dict[str, KnownModel] = {m.id: m for m in (
    KnownModel("saliency_student_v1", "saliency_student_v1.onnx", "vmaf-student",
               "1edc64772498ab73ebdb17e21f49679ce5ded82534d47f557cd15fd36e1b46e7",
               "VMAFx/vmafx", "model/tiny/saliency_student_v1.onnx"),
    KnownModel("saliency_student_v2", "saliency_student_v2.onnx", "vmaf-student",
               "8cdaa6c10ab44d9b03a6a207603bd0b61f5c75a6beafdc82da57215f0a2ab2ed",
               "VMAFx/vmafx", "model/tiny/saliency_student_v2.onnx"),
    KnownModel("u2netp_mirror_v1", "u2netp_mirror_v1.onnx", "u2net", None),
)}


def known_by_sha256(sha256: str) -> KnownModel | None:
    """The known model whose published checksum is `sha256` (read from `KNOWN_MODELS` each time)."""
    return next((m for m in KNOWN_MODELS.values() if m.sha256 == sha256), None)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a model file; an unreadable file is a one-line error."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise SalmatError(f"cannot read the model file {path}: {exc.strerror or exc}; check it and its "
                          "permissions") from None


# ---- finding a known model's file ------------------------------------------------


def search_dirs(model_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched, in order: `model_dir`, else `$SALMAT_MODEL_DIR` (both `:`-separated)."""
    raw = os.fspath(model_dir) if model_dir is not None else os.environ.get(ENV_VAR, "")
    return [Path(part).expanduser() for part in raw.split(os.pathsep) if part.strip()]


def known_model(name: str) -> KnownModel:
    """The known learned model `name`; anything else is a one-line error listing the known ids."""
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    raise SalmatError(unknown_model_message(name))


def unknown_model_message(name: str, or_else: str = "or pass --model-path FILE.onnx") -> str:
    known = [*BUILTIN_MODELS, *KNOWN_MODELS]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown model {name!r}{hint}; choose one of {', '.join(known)} (see `salmat models`), {or_else}"


def find_all(known: KnownModel, dirs: Sequence[Path]) -> list[Path]:
    """Every copy of `known`'s file in `dirs`, in search order (the first is the one used)."""
    return [Path(os.path.abspath(d / known.filename)) for d in dirs if (d / known.filename).is_file()]


def check_is_named_model(known: KnownModel, path: Path) -> None:
    """A file found under `known`'s name must not be, by checksum, another known model: the model
    asked for is the model that runs (a file matching no known checksum runs as `stem@sha8`)."""
    other = known_by_sha256(file_sha256(path))
    if other is not None and other.id != known.id:
        raise SalmatError(f"{path} is not {known.id}: its sha256 is {other.id}'s; put {known.id}'s own file "
                          f"there, or ask for {named('model')} {other.id}")


def _folder_state(folder: Path) -> str:
    """A searched folder, with what is wrong with it (a typo in --model-dir shows here)."""
    if folder.is_dir():
        return str(folder)
    return f"{folder} ({'not a folder' if folder.exists() else 'no such folder'})"


def locate(name: str, model_dir: str | os.PathLike[str] | None = None) -> Path:
    """The file of the known model `name`: the first copy in the folders searched (absolute, so
    every worker opens this very file instead of searching its own environment)."""
    known = known_model(name)
    dirs = search_dirs(model_dir)
    found = find_all(known, dirs)
    if found:
        check_is_named_model(known, found[0])
        return found[0]
    fix = f"name its folder with {passing('model_dir', 'DIR')} or {ENV_VAR}=DIR"
    if not dirs:
        raise SalmatError(f"model {name!r} needs its file {known.filename}, and no folder is set to search; {fix}")
    listed = ", ".join(map(_folder_state, dirs))
    raise SalmatError(f"model {name!r} not found: no {known.filename} in {listed}; put the file there, or {fix}")


def resolve_named(model: str | None, model_path: str | None, preprocess: str | None,
                  model_dir: str | os.PathLike[str] | None = None) -> tuple[str | None, str | None, str | None]:
    """`(model, model_path, preprocess)` with a known learned model's name replaced by its file and
    preset (an explicit `preprocess` wins); built-in names and `model_path` pass through."""
    if model is not None and model_path is not None:
        raise SalmatError(f"pass either {named('model')} NAME or {named('model_path')} FILE.onnx, not both")
    if model is None or model not in KNOWN_MODELS:
        return model, model_path, preprocess
    return None, str(locate(model, model_dir)), preprocess or KNOWN_MODELS[model].preset


# ---- which id a file gets -----------------------------------------------------------


def with_sha8(stem: str, sha256: str) -> str:
    return f"{stem}@{sha256[:SHA_DIGITS]}"


def file_id(path: str | Path, sha256: str) -> str:
    """The id an ONNX file gets on its own (see the module docstring for the rules)."""
    by_checksum = known_by_sha256(sha256)
    if by_checksum is not None:
        return by_checksum.id
    stem = Path(path).stem
    known = KNOWN_MODELS.get(stem)
    if known is not None and known.sha256 is None:
        return stem  # nothing published to check it against
    if known is not None or stem in BUILTIN_MODELS or "@" in stem:
        return with_sha8(stem, sha256)
    return stem


def check_label(label: str, sha256: str) -> None:
    """An explicit label is kept as given, unless it claims a model this file is not."""
    if not label.strip():
        raise SalmatError(f"{named('model_id')} is empty; give a label, or drop {named('model_id')} to use the "
                          "file's id")
    base = label.split("@", 1)[0]
    if base in BUILTIN_MODELS:
        raise SalmatError(f"{named('model_id')} {label!r} is a built-in model's id; give the ONNX model another label")
    known = KNOWN_MODELS.get(base)
    if known is not None and known.sha256 is not None and known.sha256 != sha256:
        raise SalmatError(f"{named('model_id')} {label!r} claims the known model {base}, but this file's sha256 "
                          f"({sha256[:SHA_DIGITS]}…) is not {base}'s ({known.sha256[:SHA_DIGITS]}…); "
                          "give it another label")


def model_id(path: str | Path, sha256: str, label: str | None = None) -> str:
    """The base id of the ONNX file at `path` (before any inference suffix): `label` when given."""
    if label is None:
        return file_id(path, sha256)
    check_label(label, sha256)
    return label


def distinct_ids(models: Sequence[tuple[str, str | None]]) -> list[str]:
    """Ids for several models of one run, given as `(id, sha256)` (sha256 None: a built-in): ids that
    would collide get `@sha8`; the same model listed twice is an error."""
    ids = [i for i, _ in models]
    for n, (this_id, sha) in enumerate(models):
        for other_id, other_sha in models[:n]:
            if this_id == other_id and (sha is None or sha == other_sha):
                raise SalmatError(f"model {this_id} is listed twice (same model); list it once")
    return [with_sha8(i, sha) if sha is not None and ids.count(i) > 1 else i for i, sha in models]


# ---- `salmat models` ------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """Where a known model's file is (None: not found), and whether its checksum is the published one."""

    known: KnownModel
    path: Path | None
    sha256: str | None
    shadowed: tuple[Path, ...] = ()  # other copies further down the search path

    @property
    def checksum(self) -> str:
        if self.path is None or self.sha256 is None:
            return "-"
        if self.known.sha256 is None:
            return "no published checksum"
        return "sha256 ok" if self.sha256 == self.known.sha256 else "sha256 MISMATCH"

    @property
    def runs_as(self) -> str | None:
        return None if self.path is None or self.sha256 is None else file_id(self.path, self.sha256)


def lookup_all(model_dir: str | os.PathLike[str] | None = None) -> list[Lookup]:
    """Every known learned model, found or not, with its checksum checked."""
    dirs = search_dirs(model_dir)
    found = []
    for known in KNOWN_MODELS.values():
        paths = find_all(known, dirs)
        if not paths:
            found.append(Lookup(known, None, None))
            continue
        found.append(Lookup(known, paths[0], file_sha256(paths[0]), tuple(paths[1:])))
    return found


def _where(lookup: Lookup) -> str:
    if lookup.path is None:
        return "not found"
    text = f"found  {lookup.path}  {lookup.checksum}"
    if lookup.runs_as in KNOWN_MODELS and lookup.runs_as != lookup.known.id:
        text += f" (this is {lookup.runs_as}'s file: refused under this name)"
    elif lookup.runs_as != lookup.known.id:
        text += f" (runs as {lookup.runs_as})"
    if lookup.shadowed:
        text += f"; also in {', '.join(str(p.parent) for p in lookup.shadowed)} (not used)"
    return text


def format_known_models(model_dir: str | os.PathLike[str] | None = None) -> str:
    """`salmat models`: the built-in ids, then each learned id, whether its file was found, where,
    and whether its checksum is the published one."""
    lines = ["built-in (no file needed):"]
    width = max(map(len, [*BUILTIN_MODELS, *KNOWN_MODELS])) + len(" (default)")
    for name, factory in BUILTIN_MODELS.items():
        label = name + (" (default)" if name == DEFAULT_MODEL_ID else "")
        lines.append(f"  {label:<{width}}  {factory().describe().get('algorithm', '')}")
    dirs = search_dirs(model_dir)
    source = "--model-dir" if model_dir is not None else f"${ENV_VAR}"
    if dirs:
        listed = ", ".join(map(_folder_state, dirs))
        lines.append(f"learned (ONNX files, searched in {listed} from {source}):")
    else:
        lines.append(f"learned (ONNX files; no folder to search: pass --model-dir DIR or set {ENV_VAR}=DIR):")
    for lookup in lookup_all(model_dir):
        lines.append(f"  {lookup.known.id:<{width}}  preset {lookup.known.preset:<12}  {_where(lookup)}")
    lines.append(SOURCES_HEADER)
    lines += [f"  {known.id:<{width}}  {_source(known)}" for known in KNOWN_MODELS.values()]
    return "\n".join(lines)


SOURCES_HEADER = "where the learned models come from (`salmat models pull NAME` downloads one and checks its sha256):"


def _source(known: KnownModel) -> str:
    if known.repository is None or known.sha256 is None:
        return "no published source or checksum: bring its file yourself"
    return f"github.com/{known.repository}  {known.repo_path}  sha256 {known.sha256}"
