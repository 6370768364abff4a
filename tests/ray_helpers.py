"""Shared by the Ray tests: one local Ray cluster per test session.

The faulty jobs (`fault_jobs`) run inside Ray actors (other processes), so that
module is pickled *by value* (`cloudpickle.register_pickle_by_value`): the
workers need not import anything from `tests/`.
"""

from __future__ import annotations

import sys

import fault_jobs

RAY_CPUS = 2


def pickle_test_jobs_by_value() -> None:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[fault_jobs.__name__])


def start_ray() -> bool:
    """Start the session's local Ray cluster (or reuse a running one); True if this call started it."""
    import logging

    import ray

    pickle_test_jobs_by_value()
    if ray.is_initialized():
        return False
    # "local": a new cluster, never one this machine already runs (another test's multi-node cluster)
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    return True
