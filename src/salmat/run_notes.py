"""What a run tells its user beyond the summary line.

- settings that had no effect in this run (`--ema-alpha` without `ema`, `--device` with a
  built-in model, …): a warning each, before any work, never silence;
- rows left alone because they already hold values from *another* configuration
  than the one asked for: how many, from what, and how to recompute them;
- a failed run: the row count of each failing status and the first error of each.

Settings that can't work together are usage errors; they live in the option classes
(`MaterializeOptions.cross_check`). What is here only informs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .command_options import CompareOptions
from .option_spec import named, passing, switched_on
from .options import MaterializeOptions
from .rows import Provenance, RowOutcomes, configuration_counts
from .sources import ClipSpec, SourceFailure
from .values import OK, SKIPPED


def unused_settings(opts: MaterializeOptions, onnx_model: bool) -> list[str]:
    """One warning per setting that can't change anything in this run (named as the caller
    passes it: `--ema-alpha 0.3` on the command line, `ema_alpha=0.3` from Python)."""
    given = opts.non_default()
    notes = []
    if "ema_alpha" in given and opts.temporal_aggregator != "ema" and not opts.historical:
        notes.append(f"{passing('ema_alpha', opts.ema_alpha)} has no effect: it sets the ema reducer, and this "
                     f"run's reducer is {passing('temporal_aggregator', opts.temporal_aggregator)}")
    notes += unused_run_settings(opts, onnx_model)
    if "precision" in given and not onnx_model:
        notes.append(f"{passing('precision', opts.precision)} has no effect: built-in models always run on the "
                     "CPU at their own precision; it applies to ONNX models")
    if opts.per_frame and "cache" in given and not opts.no_cache:
        notes.append(f"{named('cache')} has no effect with {switched_on('per_frame')} (per-frame results are "
                     "never cached)")
    elif opts.maps_out and "cache" in given and not opts.no_cache:
        notes.append(f"{named('cache')} has no effect with {named('maps_out')} (each clip is computed so that its "
                     "maps can be written)")
    return notes


def unused_run_settings(opts: MaterializeOptions | CompareOptions, onnx_model: bool) -> list[str]:
    """The warnings materialize and compare share: sampling, device, engine and cache settings
    this run can't use."""
    given = opts.non_default()
    notes = []
    if "max_frames" in given and opts.sampling == "clip":
        notes.append(f"{passing('max_frames', opts.max_frames)} has no effect with "
                     f"{passing('sampling', 'clip')} (it bounds {passing('sampling', 'head')})")
    if "device" in given and not onnx_model:
        notes.append(f"{passing('device', opts.device)} has no effect: built-in models always run on the CPU at "
                     "their own precision; it applies to ONNX models")
    if opts.engine != "ray":
        notes += [f"{named(name)} has no effect without {passing('engine', 'ray')}"
                  for name in ("ray_address", "num_gpus_per_worker") if name in given]
    if opts.no_cache and "cache" in given:
        notes.append(f"{named('cache')} has no effect with {switched_on('no_cache')} (the cache is neither read "
                     "nor written)")
    return notes


def compare_unused_settings(opts: CompareOptions, onnx_models: bool) -> list[str]:
    """One warning per compare setting that can't change anything in this run."""
    notes = unused_run_settings(opts, onnx_models)
    if "ema_alpha" in opts.non_default() and "ema" not in opts.reducers:
        notes.insert(0, f"{passing('ema_alpha', opts.ema_alpha)} has no effect: it sets the ema reducer, and "
                        f"{named('reducers')} has no ema")
    return notes


# ---- rows skipped because they hold another configuration's values --------------------


# The provenance columns (by role) that tell one configuration's values from another's.
CONFIGURATION_ROLES = ("model_id", "aggregator", "ema_alpha", "frames")


def skipped_other_configurations(keys: pa.Table, skipped: np.ndarray, opts: MaterializeOptions,
                                 provenance: Provenance) -> str | None:
    """A sentence when skipped rows hold values from another (model, reducer, alpha, sampling) than this run's,
    or when every row is skipped (nothing computed).

    `keys` holds the existing provenance columns (those present); rows with values but no
    recorded model are not counted."""
    if not skipped.any():
        return None
    columns = opts.metadata_columns()
    configs = configuration_counts(keys, skipped, [columns[role] for role in CONFIGURATION_ROLES])
    asked = (provenance.model_id, provenance.reducer, provenance.ema_alpha, provenance.frames)
    # Rows whose values carry no model id can't be said to come from another configuration.
    other = {c: n for c, n in configs.items() if c[0] is not None and not _same(c, asked)}
    if not other:
        return nothing_to_compute(len(skipped), opts) if skipped.all() else None
    total = sum(other.values())
    shown = ", ".join(f"{_describe(c)} ({n})" for c, n in sorted(other.items(), key=lambda kv: -kv[1])[:4])
    more = f" and {len(other) - 4} more" if len(other) > 4 else ""
    return (f"{total} row(s) were left as they were because they already hold values from another configuration: "
            f"{shown}{more}; this run asked for {_describe(asked)}. "
            f"Pass {switched_on('overwrite')} to recompute them")


def nothing_to_compute(rows: int, opts: MaterializeOptions) -> str:
    """Every row already holds values: say so, and the two ways on (a full-reference table's
    second clip needs its own columns, not the first clip's)."""
    names = opts.output_columns()
    return (f"all {rows} row(s) already hold {names['mean']}/{names['var']}, so nothing was computed; to add "
            f"columns for another clip of each row (e.g. {passing('path_column', opts.path_column)} as a reference) "
            f"pass {passing('column_prefix', 'P')}, to recompute pass {switched_on('overwrite')}")


def _same(found: tuple[Any, ...], asked: tuple[str, str, float | None, str | None]) -> bool:
    model, reducer, alpha, frames = found
    if model != asked[0] or reducer != asked[1]:
        return False
    if frames is not None and asked[3] is not None and frames != asked[3]:
        return False  # rows or a run that record no sampling don't tell configurations apart by it
    if asked[2] is None:
        return True  # a run that records no alpha doesn't tell configurations apart by it
    try:
        return alpha is not None and float(alpha) == asked[2]
    except (TypeError, ValueError):
        return False


def _describe(config: tuple[Any, ...]) -> str:
    model, reducer, alpha, frames = config
    text = f"{model}/{reducer or 'an unrecorded reducer'}"
    text = f"{text} alpha={alpha}" if alpha is not None and reducer == "ema" else text
    return f"{text} frames={frames}" if frames is not None else text


# ---- a failed run ------------------------------------------------------------------


def first_errors(outcomes: RowOutcomes, row_clip: np.ndarray,
                 sources: Sequence[ClipSpec | SourceFailure]) -> dict[str, str]:
    """Failing status → the first error of that status in row order, naming its clip
    (`row_clip[i]` indexes `sources`, −1 for a row without one)."""
    firsts: dict[str, str] = {}
    for status, (row, error) in outcomes.first_failures().items():
        clip = int(row_clip[row])
        text = error or "no message"
        firsts[status] = _with_clip(sources[clip], text) if clip >= 0 else text
    return firsts


def _with_clip(source: ClipSpec | SourceFailure, error: str) -> str:
    if isinstance(source, ClipSpec):
        name = os.path.basename(source.path)
        if name not in error:
            return f"{name}: {error}"
    return error


def failure_lines(counts: dict[str, int], errors: dict[str, str]) -> list[str]:
    """One line per failing status: its row count and its first error."""
    lines = []
    for status, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        if status in (OK, SKIPPED):
            continue
        first = " ".join(errors.get(status, "").split())[:300]
        lines.append(f"salmat: {status}: {count} row(s)" + (f"; first: {first}" if first else ""))
    return lines
