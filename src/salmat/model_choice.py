"""From what a user names to a `ModelSpec`: the one place every command resolves model names.

`materialize --model`, `compare --models` and `preview --model` take the same
names: a built-in id, a known learned model's id (found in `--model-dir`), or a
path to an `.onnx` file, each optionally followed by the speed knobs' suffixes
that a row's `saliency_model_id` records (`saliency_student_v1@540`,
`saliency_student_v1@int8`, `saliency_student_v1@540@bf16`): a suffix is the
same as `--inference-size 540` / `--precision int8|bf16`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace

from .errors import SalmatError
from .models import BUILTIN_MODELS
from .models.knobs import Knobs, parse_inference_size
from .models.registry import KNOWN_MODELS, distinct_ids, file_id, file_sha256, unknown_model_message, with_sha8
from .models.spec import ModelSpec
from .option_spec import named

_SUFFIX = re.compile(r"^(?P<base>.+?)(?:@(?P<size>\d{1,4}))?(?:@(?P<precision>int8|bf16))?$")


def split_knobs(name: str) -> tuple[str, int | None, str | None]:
    """`name` without its `@S`/`@int8`/`@bf16` suffixes, and the inference size and precision they
    name (None, None: no suffix)."""
    match = _SUFFIX.match(name)
    if match is None or not (match["size"] or match["precision"]):
        return name, None, None
    size = parse_inference_size(match["size"]) if match["size"] else None
    return match["base"], size, match["precision"] or "fp32"


def merged_knobs(name: str | None, given: Knobs) -> tuple[str | None, Knobs]:
    """The base name and the knobs from its suffix and the settings; a suffix and a setting that
    disagree are refused (`--model x@540 --inference-size 720`)."""
    if name is None:
        return None, given
    base, size, precision = split_knobs(name)
    if precision is None:
        return name, given
    if base in BUILTIN_MODELS:  # said here, in the user's own spelling: compare and preview have no knob flags
        raise SalmatError(f"model {name!r}: the @S, @int8 and @bf16 suffixes apply to ONNX models only (the "
                          f"built-in models already work at 64 px, in float); name it {base}, or an ONNX model")
    if given.inference_size not in (None, size) or given.precision not in ("fp32", precision):
        raise SalmatError(f"model {name!r} names its own knobs, which disagree with {named('inference_size')} "
                          f"{given.inference_size or 'native'} / {named('precision')} {given.precision}; "
                          "give them once")
    return base, replace(given, inference_size=size, precision=precision)


_NO_SETTINGS = ModelSpec()


def model_spec(name: str | None, settings: ModelSpec = _NO_SETTINGS, *,
               model_dir: str | os.PathLike[str] | None = None, paths: bool = False) -> ModelSpec:
    """The model `name` (with its knob suffixes) names, on top of `settings` (the file, label,
    preset and knobs the command's options give), with a known learned model resolved to its
    file. With `paths`, `name` may also be an ONNX file's path (compare and preview take one
    name for both)."""
    base, knobs = merged_knobs(name, settings.knobs)
    model_path = settings.model_path
    if paths and base is not None and model_path is None and _is_path(base):
        base, model_path = None, base
    return replace(settings, model=base, model_path=model_path, knobs=knobs).resolved(model_dir)


def _is_path(name: str) -> bool:
    if name in BUILTIN_MODELS or name in KNOWN_MODELS:
        return False
    if name.lower().endswith(".onnx") or os.path.sep in name or os.path.exists(name):
        return True
    raise SalmatError(unknown_model_message(name, "or a path to a .onnx file"))


def named_specs(names: Sequence[str], *, preprocess: str | None = None, knobs: Knobs | None = None,
                model_dir: str | os.PathLike[str] | None = None) -> list[ModelSpec]:
    """One spec per name (compare's `--models`); ONNX files whose ids would collide (two
    `model.onnx`) are labelled `id@sha8`; the same model listed twice is refused."""
    _no_comma_paths(names)
    settings = ModelSpec(preprocess=preprocess, knobs=knobs or Knobs())
    specs = [model_spec(name, settings, model_dir=model_dir, paths=True) for name in names]
    identities = [_identity(spec) for spec in specs]
    ids = distinct_ids([(ident, sha) for ident, sha, _ in identities])
    return [spec if new == ident else replace(spec, model_id=with_sha8(base, sha or ""))
            for spec, (ident, sha, base), new in zip(specs, identities, ids, strict=True)]


def _no_comma_paths(names: Sequence[str]) -> None:
    """A file whose path holds a comma was cut in two by the list: say so, not "not found"."""
    for start in range(len(names)):
        for end in range(start + 2, len(names) + 1):
            joined = ",".join(names[start:end])
            if os.path.isfile(joined):
                raise SalmatError(f"{joined!r} holds a comma, which separates the models of {named('models')}; "
                                  "rename the file or link it under a name without one")


def _identity(spec: ModelSpec) -> tuple[str, str | None, str]:
    """(the id it would run as, what tells two models of that id apart, its base id)."""
    if spec.model_path is None:
        return spec.knobs.model_id(spec.model or ""), None, spec.model or ""
    if not os.path.isfile(spec.model_path):
        what = "is not a file" if os.path.exists(spec.model_path) else "not found"  # a folder, a FIFO
        raise SalmatError(f"ONNX model file {what}: {spec.model_path}; check {named('models')}")
    sha = file_sha256(spec.model_path)
    base = spec.model_id or file_id(spec.model_path, sha)
    return spec.knobs.model_id(base), sha + spec.knobs.fingerprint(), base
