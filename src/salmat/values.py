"""The value types every stage shares: statuses, reducer names, clip settings and results.

A leaf module (standard library only): the engines, the cache, the row builder
and the orchestrator all import from here, and it imports nothing of salmat's,
so no stage has to import another stage to name what passes between them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# ---- row statuses (docs/contract.md §3) ----------------------------------------

OK = "ok"
SKIPPED = "skipped-existing"
MISSING_SOURCE = "missing-source"
MISSING_GEOMETRY = "missing-geometry"
DECODE_FAILED = "decode-failed"
MODEL_FAILED = "model-failed"
DECODE_TIMEOUT = "decode-timeout"
MODEL_TIMEOUT = "model-timeout"
OUTSIDE_ROOT = "outside-root"
WORKER_LOST = "worker-lost"

STATUSES = (OK, SKIPPED, MISSING_SOURCE, MISSING_GEOMETRY, DECODE_FAILED, MODEL_FAILED,
            DECODE_TIMEOUT, MODEL_TIMEOUT, OUTSIDE_ROOT, WORKER_LOST)

# ---- temporal reducers (docs/contract.md §4) -----------------------------------

REDUCERS = ("mean", "ema", "max", "motion-weighted")


def file_stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What tells one version of a file from another without reading it: size, mtime, and
    ctime (which no one can set back, so an in-place rewrite with its mtime restored still
    shows), on the same inode and device."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


@dataclass(frozen=True)
class SamplingOptions:
    """Which frames of a clip are decoded (see `salmat.decode`)."""

    sampling: str = "clip"
    frame_samples: int = 8
    max_frames: int = 8
    max_pixels: int | None = None


@dataclass(frozen=True)
class ReduceOptions:
    """How per-frame maps are reduced over time; every reducer runs with these."""

    ema_alpha: float
    historical_motion: bool = False


@dataclass
class ClipResult:
    """One clip's outcome: `stats[reducer] = (mean, var)` when `status == "ok"`."""

    status: str
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0
