"""Engines: where clips run. Each is a function of the same signature (`base.Engine`).

- `inline`: in this process, one clip after another.
- `pool`: worker processes (forked from a fork server), with clip timeouts and retries of lost workers.
- `ray`: a Ray Data actor pool, on a local or remote cluster.
- `feeder`: decode worker processes feed one model in this process (one GPU, one model copy).

The orchestrator (`salmat.pipeline`) picks one by name; modules load on first use,
so a run that never touches Ray never imports it.
"""

from __future__ import annotations

import importlib

from .base import Engine, EngineSettings, available_cores, worker_threads

# name → (module, function)
ENGINES = {
    "inline": ("inline", "run_inline"),
    "pool": ("pool", "run_pool"),
    "ray": ("ray_data", "run_ray"),
    "feeder": ("feeder", "run_feeder"),
}

__all__ = ["ENGINES", "Engine", "EngineSettings", "available_cores", "get_engine", "worker_threads"]


def get_engine(name: str) -> Engine:
    module, function = ENGINES[name]
    engine: Engine = getattr(importlib.import_module(f".{module}", __name__), function)
    return engine
