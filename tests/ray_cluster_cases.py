"""Ray on more than one node (issue 10, point 7); run by test_ray_cluster.py in a fresh interpreter.

A real multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head without
CPUs and two worker nodes of one CPU each) runs `run_ray`; the worker node computing the first
clip is removed mid-clip, and every clip must still come back exactly once, computed exactly
as in-process.

The cluster lives for this module only. The rest of the session shares one local cluster
(`ray_helpers.start_ray`, from the session-scoped fixtures `ray_session` in conftest.py and
`ray_cluster` in test_ray.py): if one is up when this module starts, it is shut down first (a
process holds one Ray connection) and started again when this module is done, so their later
tests find it. Ray's other promises need no second node: a model that can't load and values
equal to the local engine's are tested on that one local cluster (test_ray.py), a quiet
`--engine ray` command line on the CLI's own cluster (test_ray_reaper.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from fault_jobs import plain_job
from salmat.compute import ClipJob, ClipRunner
from salmat.engines import EngineSettings
from salmat.engines.inline import run_inline
from salmat.sources import ClipSpec
from salmat.values import OK, REDUCERS, STATUSES

HEAD_CPUS = 0       # the head takes no clips, so every actor runs on a worker node, which can be lost
NODE_CPUS = 1       # each worker node: 2 CPUs in all, as many as this 2-core machine has
NODE_OBJECT_STORE = 128 * 1024**2   # bytes per node
PAUSE = 1.0                         # seconds each clip of `SlowJob` waits before it is computed
CLIP_COPIES = 6                     # clips in the node-loss run


# ---------------------------------------------------------------- a job that shows where it runs


class _SlowRunner:
    """Writes `<node id>.<pid>.<n>` into the job's folder when a clip starts, waits, then computes."""

    def __init__(self, inner: ClipRunner, job: SlowJob) -> None:
        self.inner, self.job = inner, job

    def compute(self, spec: ClipSpec, on_phase=None):
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "driver"
        marker = Path(self.job.log_dir) / f"{node}.{os.getpid()}.{time.monotonic_ns()}"
        marker.write_text(spec.path, encoding="utf-8")
        time.sleep(self.job.pause)
        return self.inner.compute(spec, on_phase)


@dataclass(frozen=True)
class SlowJob(ClipJob):
    """The plain job, slowed down so a run lasts long enough to lose a node in the middle."""

    pause: float = PAUSE
    log_dir: str = "."

    def start(self, threads: int | None = None) -> ClipRunner:
        return _SlowRunner(super().start(threads), self)  # type: ignore[return-value]


def slow_job(log_dir: Path, pause: float = PAUSE) -> SlowJob:
    """Pinned, as the orchestrator pins it, to the fingerprint of the model loaded here."""
    base = plain_job()
    model = base.model.pinned(base.model.load().fingerprint)
    return SlowJob(model, base.sampling, base.reduce, pause=pause, log_dir=str(log_dir))


def started_clips(log_dir: Path) -> list[tuple[str, str]]:
    """(node id, clip path) for every clip start logged by `SlowJob`, oldest first."""
    entries = sorted(log_dir.iterdir(), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    return [(p.name.split(".", 1)[0], p.read_text(encoding="utf-8")) for p in entries]


# ---------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def cluster():
    """A head (no CPUs: it runs no actor) and two worker nodes, the driver connected to the head."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test,ray]')")
    import logging

    from ray import cloudpickle
    from ray.cluster_utils import Cluster

    import ray_helpers

    session_ray_was_up = ray.is_initialized()
    if session_ray_was_up:
        ray.shutdown()
    ray_helpers.pickle_test_jobs_by_value()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # SlowJob, for the workers
    # `Cluster` writes its address where every `ray.init()` on this machine looks for a cluster to
    # join (<temp>/ray/ray_current_cluster), and deletes that file when it stops, whoever wrote it:
    # a private (short: Unix socket paths are capped) temp folder keeps both to this cluster.
    private_tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp" if os.path.isdir("/tmp") else None)
    saved_tmp = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = private_tmp
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": HEAD_CPUS, "object_store_memory": NODE_OBJECT_STORE, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=NODE_CPUS, object_store_memory=NODE_OBJECT_STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        assert ray.cluster_resources().get("CPU") == HEAD_CPUS + 2 * NODE_CPUS
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved_tmp is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved_tmp
        shutil.rmtree(private_tmp, ignore_errors=True)
        if session_ray_was_up:
            ray_helpers.start_ray()  # the session's local cluster, for the tests still to come


@pytest.fixture()
def many_clips(clip_folder) -> list[ClipSpec]:
    """`CLIP_COPIES` real clips: the five of `clip_folder`, then copies under other names."""
    originals = sorted(clip_folder.iterdir())
    for i in range(CLIP_COPIES - len(originals)):
        source = originals[i % len(originals)]
        shutil.copy(source, clip_folder / f"copy{i}_{source.name}")
    specs = [ClipSpec(str(p)) for p in sorted(clip_folder.iterdir())]
    assert len(specs) == CLIP_COPIES
    return specs


def check_results(got: list, specs: list[ClipSpec], local: dict) -> None:
    """One result per spec, each with a contract status; every `ok` one equal to in-process."""
    assert Counter(spec for spec, _ in got) == Counter(specs)
    for spec, result in got:
        assert result.status in STATUSES, (spec.path, result.status)
        if result.status == OK:
            assert set(result.stats) == set(REDUCERS)
            assert result.stats == local[spec].stats, spec.path  # exactly, all four reducers


# ---------------------------------------------------------------- a node lost mid-run


@pytest.mark.ray
@pytest.mark.parametrize("workers", [3])  # more actors than worker nodes: each node runs one or two
def test_a_worker_node_lost_mid_run_costs_no_clip(cluster, many_clips, tmp_path, workers):
    from salmat.engines.ray_data import run_ray

    specs = many_clips
    local = dict(run_inline(specs, plain_job(), EngineSettings()))
    assert all(result.status == OK for result in local.values())
    log_dir = tmp_path / "started"
    log_dir.mkdir()
    by_id = {node.node_id: node for node in cluster.worker_nodes}
    removed: list[str] = []
    finished = threading.Event()

    def remove_a_busy_worker_node() -> None:
        """As soon as a clip starts, take its worker node away (while it waits in `_SlowRunner`)."""
        while not finished.is_set():
            busy = [node for node, _ in started_clips(log_dir) if node in by_id]
            if busy:
                cluster.remove_node(by_id[busy[0]], allow_graceful=False)
                removed.append(busy[0])
                return
            time.sleep(0.02)

    remover = threading.Thread(target=remove_a_busy_worker_node, daemon=True)
    remover.start()
    t = time.perf_counter()
    try:
        got = list(run_ray(specs, slow_job(log_dir), EngineSettings(workers=workers, stall_seconds=60)))
        seconds = time.perf_counter() - t
    finally:
        finished.set()
        remover.join(60)

    assert removed, "no clip ever started on a worker node"
    starts = started_clips(log_dir)
    on_removed_node = {path for node, path in starts if node == removed[0]}
    rerun = [path for path in on_removed_node if [p for _, p in starts].count(path) >= 2]
    assert rerun, f"no clip of the removed node was started again: {starts}"
    check_results(got, specs, local)
    statuses = Counter(result.status for _, result in got)
    assert statuses == {OK: len(specs)}, [(s.path, r.status, r.error) for s, r in got if r.status != OK]
    print(f"\n{len(specs)} clips, {workers} actors, one of 2 worker nodes removed mid-run: {seconds:.1f} s, "
          f"{len(starts)} clip starts")
