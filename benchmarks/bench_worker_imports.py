"""What a worker process imports before its first clip: the fork server's preload, with and without pyarrow.

Every fork server (one per run's process) and spawned worker imports
`engines.pool.WORKER_PRELOAD` (a Ray actor only for its fork server, with a clip timeout). Workers decode and compute and never read a table, so that
list pulls in no pyarrow since `row_plan` took the table side of `sources`; the baseline adds
`pyarrow.compute` back, which is what the same list imported before. Each side runs `--repeat`
times, interleaved, in a fresh interpreter; CPU seconds (user + system) of the whole interpreter,
start included; medians and their ratio.

    .venv/bin/python benchmarks/bench_worker_imports.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from salmat.engines.pool import WORKER_PRELOAD

_CHILD = """
import importlib, json, os, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
t = os.times()
print(json.dumps(t.user + t.system))
"""


def cpu_seconds(modules: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, *modules], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    sides = {"with pyarrow (before)": [*WORKER_PRELOAD, "pyarrow.compute"], "preload now": list(WORKER_PRELOAD)}
    cpu_seconds(sides["with pyarrow (before)"])  # warm the file cache and the bytecode
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeat):
        for name, modules in sides.items():
            runs[name].append(cpu_seconds(modules))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    for name, value in medians.items():
        print(f"{name:>22}: {value:.3f} CPU-s (median of {args.repeat})")
    before, now = medians["with pyarrow (before)"], medians["preload now"]
    print(f"{'ratio':>22}: {before / now:.2f}x, {before - now:.3f} CPU-s less per worker start")


if __name__ == "__main__":
    main()
