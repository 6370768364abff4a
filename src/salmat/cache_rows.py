"""The result cache's keys and rows: what a key holds, how a row is written, and why a row read
back can't be trusted (`salmat.cache` is the SQLite store around them).

A key is the clip's content, the model's fingerprint, and every field of the
sampling and reduce settings (enumerated from the dataclasses, so a new setting
is part of the key without anyone remembering to add it). A row carries a
sha256 over its key and content; a row that fails any check is a miss.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any, cast

from .values import OK, QUALITY_COLUMNS, REDUCERS, ClipResult, ReduceOptions, SamplingOptions

# Bump when decoding, sampling or the reducers change in a way that changes results, or
# when rows stored earlier can't be trusted (3: rows hashed through the mtime-only check;
# 4: frames counted as presented, not by the header; compat planes made as FFmpeg's CLI does).
RESULTS_VERSION = "salmat-results/4"
# A stored (mean, var) must be a possible statistic of a map clipped to [0, 1]; the slack
# covers round-off only.
_SLACK = 1e-6


@dataclass(frozen=True)
class CacheKey:
    clip: str
    model: str
    sampling: str
    reduce: str
    # Not part of the key: the hashed file and its signature, so `put` can refuse a result
    # computed from a file that changed after it was hashed.
    path: str = field(default="", compare=False, repr=False)
    signature: tuple[int, ...] = field(default=(), compare=False, repr=False)


def settings_json(options: Any) -> dict[str, Any]:
    """Every field of a settings dataclass, as JSON values (NumPy scalars included)."""
    values: dict[str, Any] = {}
    for f in fields(options):
        value = getattr(options, f.name)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
        values[f.name] = value
    return values


def sampling_key(sampling: SamplingOptions) -> str:
    return json.dumps({"sampling": settings_json(sampling), "results": RESULTS_VERSION}, sort_keys=True, default=repr)


def reduce_key(reduce: ReduceOptions) -> str:
    return json.dumps(settings_json(reduce), sort_keys=True, default=repr)


def row_digest(key: CacheKey, stats: object, frames: object) -> str:
    """The checksum a result row carries: over its key, its stats text and its frame count."""
    text = json.dumps([key.clip, key.model, key.sampling, key.reduce, stats, frames], default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def maps_digest(key: CacheKey, record: bytes) -> str:
    """The checksum a map row carries: over its key (reduce settings aside) and its bytes."""
    head = json.dumps([key.clip, key.model, key.sampling]).encode("utf-8", "surrogatepass")
    return hashlib.sha256(head + b"\0" + record).hexdigest()


def reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def encode_stats(result: ClipResult) -> str | None:
    """The stats text to store, or None when `result` is not a complete, possible result."""
    try:
        stats = {name: [float(result.stats[name][0]), float(result.stats[name][1])] for name in REDUCERS}
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if set(result.stats) != set(REDUCERS) or _stats_problem(stats) or _frames_problem(result.frames):
        return None
    return json.dumps(stats, sort_keys=True, allow_nan=False)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _stats_problem(stats: object) -> str | None:
    """Why `stats` (decoded JSON) is not `{reducer: [mean, var]}` for exactly the four reducers."""
    if not isinstance(stats, dict):
        return f"stats is a JSON {type(stats).__name__}, not an object"
    if set(stats) != set(REDUCERS):
        return f"stats holds reducers {sorted(map(str, stats))}, not {sorted(REDUCERS)}"
    for name, pair in stats.items():
        if not isinstance(pair, list) or len(pair) != 2 or not all(_number(v) for v in pair):
            return f"stats[{name!r}] is {pair!r}, not [mean, var] as two finite numbers"
        mean, var = pair
        if not (-_SLACK <= mean <= 1 + _SLACK and -_SLACK <= var <= 0.25 + _SLACK):
            return f"stats[{name!r}] = {pair!r} is outside mean ∈ [0, 1], var ∈ [0, 1/4]"
    return None


def _frames_problem(frames: object) -> str | None:
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        return f"frames is {frames!r}, not a positive integer"
    return None


def decode_row(key: CacheKey, stats_text: object, frames: object, check: object) -> ClipResult | str:
    """The stored result, or why the row can't be trusted."""
    if not isinstance(stats_text, str):
        return f"stats is {type(stats_text).__name__}, not text"
    if check != row_digest(key, stats_text, frames):
        return "its checksum does not match its content"
    try:
        stats = json.loads(stats_text, parse_constant=reject_constant)
    except (ValueError, RecursionError) as exc:
        return f"stats is not JSON ({exc})"
    problem = _stats_problem(stats) or _frames_problem(frames)
    if problem:
        return problem
    return ClipResult(OK, stats={name: (float(stats[name][0]), float(stats[name][1])) for name in REDUCERS},
                      frames=cast(int, frames), seconds=0.0)


# ---- the full-reference (ROI family) values ---------------------------------------------------
#
# A clip with a reference is keyed by its own content *and* the reference's, and by the ROI
# settings: `ResultCache.key` extends the `reduce` part of its key with both, so such a result
# never shares a row with the clip's plain result or with another fraction's, weighting's or
# pooling's. Its values live in the `quality` table under that key, checksummed like a result.


def quality_problem(values: object) -> str | None:
    """Why `values` (decoded JSON) is not one finite-or-null number per ROI-family column."""
    if not isinstance(values, dict) or set(values) != set(QUALITY_COLUMNS):
        return f"quality holds {sorted(map(str, values)) if isinstance(values, dict) else values!r}"
    for name, value in values.items():
        if value is not None and not _number(value):
            return f"quality[{name!r}] is {value!r}, not a finite number or null"
        if value is not None and not (-1 - _SLACK <= value <= 72 + _SLACK):
            return f"quality[{name!r}] = {value!r} is outside [-1, 72]"
    return None


def quality_digest(key: CacheKey, text: str) -> str:
    payload = json.dumps([key.clip, key.model, key.sampling, key.reduce, "quality", text])
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()
