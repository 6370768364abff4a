"""The in-process engine: one clip after another in this process."""

from __future__ import annotations

from collections.abc import Sequence

from ..compute import ClipJob
from ..sources import ClipSpec
from ..values import WORKER_LOST, ClipResult
from .base import EngineSettings, Results


def run_inline(specs: Sequence[ClipSpec], job: ClipJob, settings: EngineSettings) -> Results:
    """Yield results as clips finish; the model is loaded here once."""
    if not specs:
        return
    try:
        runner = job.start()
    except Exception as exc:  # noqa: BLE001 - like a pool or Ray worker that can't start
        for spec in specs:
            yield spec, ClipResult(WORKER_LOST, error=f"the model could not be loaded: {type(exc).__name__}: {exc}")
        return
    for spec in specs:
        yield spec, runner.compute(spec)
