"""What every engine shares: its settings and its signature.

An engine is a function `engine(specs, job, settings)` that yields one
`(spec, ClipResult)` per spec, in any order, and never raises for a clip or a
lost worker (those become statuses). Engines differ only in where the clips run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..compute import ClipJob, ClipRunner
from ..sources import ClipSpec
from ..values import ClipResult

Results = Iterator[tuple[ClipSpec, ClipResult]]


class StartableJob(Protocol):
    """What a worker is sent: a `ClipJob`, or a wrapper that carries one (see `ray_data`)."""

    @property
    def cli_spelling(self) -> bool:
        """How the caller names settings: for the messages the engine writes itself."""

    def start(self, threads: int | None = None) -> ClipRunner: ...

Engine = Callable[[Sequence[ClipSpec], ClipJob, "EngineSettings"], Results]


@dataclass(frozen=True)
class EngineSettings:
    """How clips are scheduled; nothing here changes a value."""

    workers: int = 1
    clip_timeout: float | None = None     # seconds before a clip's worker is stopped
    ray_address: str | None = None        # a Ray cluster to join (None: a local one)
    num_gpus_per_worker: float = 0.0      # GPUs each Ray actor asks for
    stall_seconds: float | None = None    # Ray: a silent execution counts as lost after this (None: derived)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_threads(workers: int, cores: int | None = None) -> int:
    """Inference threads per worker, so that threads × workers = cores."""
    return max(1, (cores or available_cores()) // max(1, workers))
