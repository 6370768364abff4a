"""Faulty `ClipJob`s: the one seam through which tests break a worker, on every engine.

A job is what every engine sends to its workers, so a subclass that misbehaves
on one clip exercises the real inline, pool and Ray code paths alike. The pool
unpickles these in spawned processes (which inherit `sys.path`, so `tests/` is
importable); Ray workers get this module pickled by value (`ray_helpers`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from salmat.compute import ClipJob, ClipRunner
from salmat.models.spec import ModelSpec
from salmat.values import MODEL_FAILED, ClipResult, ReduceOptions, SamplingOptions


def plain_job(frame_samples: int = 3) -> ClipJob:
    return ClipJob(ModelSpec(), SamplingOptions("clip", frame_samples, 8, 8192 * 8192), ReduceOptions(0.6))


def pinned_elsewhere() -> ClipJob:
    """The plain job, pinned to a fingerprint no model has: no worker may compute with it."""
    base = plain_job()
    return ClipJob(ModelSpec().pinned("not-this-model"), base.sampling, base.reduce)


class _FaultyModel:
    """Wraps the real model and misbehaves for frames `height` pixels tall."""

    def __init__(self, inner: Any, job: FaultyJob) -> None:
        self.inner, self.job = inner, job
        self.id, self.fingerprint = inner.id, inner.fingerprint

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def _fault(self, frames: list) -> None:
        if frames[0].height != self.job.height:
            return
        if self.job.fault == "raise":
            raise RuntimeError("synthetic model failure")
        if self.job.fault == "sleep":  # a model that never returns
            time.sleep(3600)
        if self.job.fault == "kill":  # like a segfault or the OOM killer
            marker = self.job.marker
            if marker is None or not os.path.exists(marker):
                if marker is not None:
                    with open(marker, "w", encoding="utf-8") as handle:
                        handle.write(str(os.getpid()))
                os._exit(1)

    def predict(self, frames: list) -> Any:
        self._fault(frames)
        return self.inner.predict(frames)

    def predict_working(self, frames: list) -> Any:
        self._fault(frames)
        return self.inner.predict_working(frames)


class _HangingRunner(ClipRunner):
    """Blocks before decoding a clip named `job.name`: forever ("hang", like a decoder that never
    returns) or for half a second ("pause", a clip that is merely slower than the others)."""

    def compute(self, spec: Any, on_phase: Any = None) -> Any:
        if os.path.basename(spec.path) == self.job.name:  # type: ignore[attr-defined]
            time.sleep(3600 if self.job.fault == "hang" else 0.5)  # type: ignore[attr-defined]
        return super().compute(spec, on_phase)


@dataclass(frozen=True)
class FaultyJob(ClipJob):
    """`fault`: "raise" (the model raises), "sleep" (the model never returns), "kill" (the worker process dies; only once when
    `marker` names a file that can be created), "no-start" (the model can't load), or
    "hang" (the clip named `name` never finishes decoding), or "pause" (it takes half a second more)."""

    fault: str = "raise"
    height: int = 180
    marker: str | None = None
    name: str = ""

    def start(self, threads: int | None = None) -> ClipRunner:
        if self.fault == "no-start":
            raise RuntimeError("cannot load the model on this node")
        runner = super().start(threads)
        if self.fault in ("hang", "pause"):
            return _HangingRunner(self, runner.model)
        runner.model = _FaultyModel(runner.model, self)  # type: ignore[assignment]
        return runner


def faulty(fault: str, frame_samples: int = 3, height: int = 180, marker: str | None = None,
           name: str = "") -> FaultyJob:
    base = plain_job(frame_samples)
    return FaultyJob(base.model, base.sampling, base.reduce, fault=fault, height=height, marker=marker, name=name)


class _EnvironmentRunner(ClipRunner):
    """Computes nothing: each clip's error says what the worker sees in `job.variable`, and the
    worker writes the same to its file descriptor 2."""

    def compute(self, spec: Any, on_phase: Any = None) -> Any:
        variable = self.job.variable  # type: ignore[attr-defined]
        seen = f"{variable}={os.environ.get(variable)}"
        os.write(2, f"worker stderr: {seen}\n".encode())  # where a worker's own output goes
        return ClipResult(MODEL_FAILED, error=seen)


@dataclass(frozen=True)
class EnvironmentJob(ClipJob):
    """Reports, as each clip's error, the worker's value of the environment variable `variable`."""

    variable: str = "SALMAT_TEST_VARIABLE"

    def start(self, threads: int | None = None) -> ClipRunner:
        return _EnvironmentRunner(self, super().start(threads).model)


def environment_job(variable: str) -> EnvironmentJob:
    base = plain_job()
    return EnvironmentJob(base.model, base.sampling, base.reduce, variable=variable)
