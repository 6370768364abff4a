"""Shared by the Ray tests: one local Ray cluster per test session, and faulty models.

The faulty models run inside Ray actors (other processes), so this module is
pickled *by value* (`cloudpickle.register_pickle_by_value`): the workers need
not import anything from `tests/`.
"""

from __future__ import annotations

import os
import sys

from salmat.pipeline import load_model_for

RAY_CPUS = 2


def start_ray():
    """Start the session's local Ray cluster (or reuse a running one); True if this call started it."""
    import logging

    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if ray.is_initialized():
        return False
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    return True


class _Wrapped:
    def __init__(self, inner):
        self.inner = inner
        self.id = inner.id
        self.fingerprint = inner.fingerprint

    def describe(self):
        return self.inner.describe()

    def fault(self, frames):
        """Misbehave here, before the inner (built-in) model runs."""

    def predict(self, frames):
        self.fault(frames)
        return self.inner.predict(frames)

    def predict_working(self, frames):
        self.fault(frames)
        return self.inner.predict_working(frames)


class RaisingModel(_Wrapped):
    """Raises for frames `height` pixels tall; the default model otherwise."""

    def __init__(self, inner, height):
        super().__init__(inner)
        self.height = height

    def fault(self, frames):
        if frames[0].height == self.height:
            raise RuntimeError("synthetic model failure")


class KillingModel(_Wrapped):
    """Kills its own process (like a segfault or the OOM killer) on frames `height` tall.

    With `marker`, only the first time (the marker file records that it happened).
    """

    def __init__(self, inner, height, marker=None):
        super().__init__(inner)
        self.height = height
        self.marker = marker

    def fault(self, frames):
        if frames[0].height == self.height:
            if self.marker is None or not os.path.exists(self.marker):
                if self.marker is not None:
                    open(self.marker, "w").close()
                os._exit(1)


class RaisingFactory:
    def __init__(self, height):
        self.height = height

    def __call__(self, opts):
        return RaisingModel(load_model_for(opts), self.height)


class KillingFactory:
    def __init__(self, height, marker=None):
        self.height = height
        self.marker = marker

    def __call__(self, opts):
        return KillingModel(load_model_for(opts), self.height, self.marker)


def broken_factory(opts):
    raise RuntimeError("cannot load the model on this node")
