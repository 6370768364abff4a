"""Compute clips: decode → model → every temporal reducer → stats.

`compute_clip` never raises: any failure becomes a `ClipResult` with a contract
status and a message, so one bad clip can't take down a run (or a Ray block).
`run_clips` schedules many clips; `--workers 1` runs them in this process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from .decode import SamplingOptions, decode_sampled
from .errors import ClipError
from .frames import YuvFrame
from .models.base import SaliencyModel
from .sources import ClipSpec
from .temporal import map_stats, reduce_all


@dataclass(frozen=True)
class ReduceOptions:
    ema_alpha: float = 0.6
    historical_motion: bool = False


@dataclass
class ClipResult:
    """One clip's outcome: `stats[reducer] = (mean, var)` when `status == "ok"`."""

    status: str
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0


def predict_maps(model: SaliencyModel, frames: list[YuvFrame]) -> np.ndarray:
    """Run the model and check its contract: (n, H, W), finite."""
    try:
        maps = np.asarray(model.predict(frames), dtype=np.float32)
    except ClipError:
        raise
    except Exception as exc:  # noqa: BLE001 - any model failure is this clip's status
        raise ClipError("model-failed", f"{model.id} raised {type(exc).__name__}: {exc}") from exc
    expected = (len(frames), frames[0].height, frames[0].width)
    if maps.shape != expected:
        raise ClipError("model-failed", f"{model.id} returned maps of shape {maps.shape}, expected {expected}")
    if not np.all(np.isfinite(maps)):
        raise ClipError("model-failed", f"{model.id} returned non-finite values")
    return maps


def reduced_maps(
    spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions, reduce: ReduceOptions
) -> tuple[list[YuvFrame], np.ndarray, dict[str, np.ndarray]]:
    """Sampled frames, their maps and every reducer's clip map (raises `ClipError`)."""
    frames = decode_sampled(spec, sampling)
    _check_uniform_size(frames)
    maps = predict_maps(model, frames)
    lumas = [frame.luma8() for frame in frames]
    return frames, maps, reduce_all(maps, lumas, reduce.ema_alpha, reduce.historical_motion)


def _check_uniform_size(frames: list[YuvFrame]) -> None:
    sizes = {(f.height, f.width) for f in frames}
    if len(sizes) > 1:
        raise ClipError("decode-failed", f"frame size changes within the clip: {sorted(sizes)}")


def compute_clip(
    spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions, reduce: ReduceOptions
) -> ClipResult:
    """One clip, start to finish; every failure is returned as a status, never raised."""
    start = time.perf_counter()
    try:
        frames, _, clip_maps = reduced_maps(spec, model, sampling, reduce)
    except ClipError as exc:
        return ClipResult(exc.status, error=exc.message, seconds=time.perf_counter() - start)
    except MemoryError:
        return ClipResult("decode-failed", error=f"{os.path.basename(spec.path)}: out of memory",
                          seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - the engine must never raise for a bad clip
        return ClipResult("decode-failed", error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
    stats = {name: map_stats(clip_map) for name, clip_map in clip_maps.items()}
    return ClipResult("ok", stats=stats, frames=len(frames), seconds=time.perf_counter() - start)


ProgressFn = Callable[[ClipSpec, ClipResult], None]


def run_clips_inline(
    specs: Iterable[ClipSpec], model: SaliencyModel, sampling: SamplingOptions, reduce: ReduceOptions
) -> Iterator[tuple[ClipSpec, ClipResult]]:
    """The in-process engine: one clip after another, results as they finish."""
    for spec in specs:
        yield spec, compute_clip(spec, model, sampling, reduce)


def run_clips(
    specs: list[ClipSpec], model: SaliencyModel, opts, sampling: SamplingOptions, reduce: ReduceOptions
) -> Iterator[tuple[ClipSpec, ClipResult]]:
    """Pick the engine for `opts` and yield (spec, result) as clips finish, in any order."""
    return run_clips_inline(specs, model, sampling, reduce)
