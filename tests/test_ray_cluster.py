"""Ray on more than one node, in an interpreter of its own.

The case is in `ray_cluster_cases.py`: a 3-node `ray.cluster_utils.Cluster`, a node removed
mid-run, every clip back exactly once and exact. It runs under a fresh
`python -m pytest`, not in this session: a Ray driver whose connection breaks ends its own
process, and this session already holds another Ray cluster (`ray_helpers.start_ray`), so in
the same process one could take the other down, and the whole suite with it, with no report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test,ray]')")
pytestmark = pytest.mark.ray

CASES = Path(__file__).with_name("ray_cluster_cases.py")


def test_ray_on_three_nodes_in_a_fresh_interpreter():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--numprocesses=0",
                           str(CASES)],
                          capture_output=True, text=True, timeout=900, cwd=CASES.parent.parent)
    summary = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
    assert proc.returncode == 0, "\n".join(proc.stdout.splitlines()[-40:] + proc.stderr.splitlines()[-20:])
    assert " passed" in summary[0] and "failed" not in summary[0], summary
