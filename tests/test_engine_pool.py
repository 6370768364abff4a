"""The process-pool engine: same values as the in-process engine, timeouts, lost workers."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

import salmat
from conftest import clip_table, read_jsonl, run_cli, write_jsonl
from fault_jobs import environment_job, faulty, pinned_elsewhere, plain_job
from onnx_graphs import save, slow_graph
from salmat.engines import EngineSettings, worker_threads
from salmat.engines.inline import run_inline
from salmat.engines.pool import run_pool
from salmat.options import MaterializeOptions
from salmat.run_clips import RunSettings, engine_name
from salmat.sources import ClipSpec

NAMES = ["carphone.mp4", "disc.mp4", "carphone_d.mp4", "bikes.mp4", "odd.mp4", "missing.mp4", "carphone.mp4"]


def test_engine_choice():
    # the default clip timeout needs a process it can stop: the pool, even for one worker and one clip
    assert engine_name(RunSettings.of(MaterializeOptions("in", "out", workers=1)), 10) == "pool"
    assert engine_name(RunSettings.of(MaterializeOptions("in", "out", workers=1)), 1) == "pool"
    assert engine_name(RunSettings.of(MaterializeOptions("in", "out", workers=1, clip_timeout=None)), 10) == "inline"
    assert engine_name(RunSettings.of(MaterializeOptions("in", "out", workers=2, clip_timeout=None)), 2) == "pool"
    assert engine_name(RunSettings.of(MaterializeOptions("in", "out", workers=4, clip_timeout=None)), 1) == "inline"
    assert engine_name(RunSettings.of(MaterializeOptions("in", "out", workers=1)), 0) == "inline"
    assert engine_name(RunSettings.of(MaterializeOptions("in", "out", workers=4, engine="ray")), 1) == "ray"
    assert worker_threads(2, cores=16) == 8 and worker_threads(32, cores=16) == 1


def test_default_workers_is_all_cores():
    assert MaterializeOptions("in", "out").workers == (os.cpu_count() or 1)


@pytest.mark.parametrize("reducer", ["mean", "motion-weighted"])
def test_pool_equals_inline_value_for_value(tmp_path, clip_folder, reducer):
    table = clip_table(tmp_path, NAMES)
    inline = salmat.materialize(table, tmp_path / "inline.jsonl", root=str(clip_folder), workers=1,
                                no_cache=True, frame_samples=4, temporal_aggregator=reducer)
    pooled = salmat.materialize(table, tmp_path / "pool.jsonl", root=str(clip_folder), workers=3,
                                no_cache=True, frame_samples=4, temporal_aggregator=reducer)
    assert inline.counts == pooled.counts == {"ok": 6, "missing-source": 1}
    assert read_jsonl(tmp_path / "inline.jsonl") == read_jsonl(tmp_path / "pool.jsonl")
    assert (tmp_path / "inline.jsonl").read_bytes() == (tmp_path / "pool.jsonl").read_bytes()


def test_pool_with_onnx_model_equals_inline(tmp_path, clip_folder):
    from onnx_graphs import encoder_decoder, save

    model = save(encoder_decoder(), tmp_path / "student.onnx")
    table = clip_table(tmp_path, NAMES[:5])
    for workers in (1, 2):
        report = salmat.materialize(table, tmp_path / f"w{workers}.jsonl", root=str(clip_folder), workers=workers,
                                    no_cache=True, model_path=str(model), compat="historical")
        assert report.counts == {"ok": 5}
    assert (tmp_path / "w1.jsonl").read_bytes() == (tmp_path / "w2.jsonl").read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_hanging_clip_times_out_and_the_run_goes_on(clip_folder, workers):
    """A clip that never finishes decoding (a decoder that blocks) becomes `decode-timeout`; its
    worker is replaced and every other clip still gets its exact value, with one worker or two."""
    specs = _specs(clip_folder, ["carphone.mp4", "disc.mp4", "odd.mp4", "bikes.mp4"])
    inline = dict(run_inline(specs, plain_job(), EngineSettings()))
    got = dict(run_pool(specs, faulty("hang", name="disc.mp4"), EngineSettings(workers=workers, clip_timeout=3.0)))
    assert [got[s].status for s in specs] == ["ok", "decode-timeout", "ok", "ok"]
    assert "decoding took longer than clip_timeout=3 s" in got[specs[1]].error
    assert all(got[s].stats == inline[s].stats for s in specs if s != specs[1])


def _specs(clip_folder, names):
    return [ClipSpec(str(clip_folder / name)) for name in names]


def test_killed_worker_is_replaced_and_its_clip_retried(tmp_path, clip_folder):
    specs = _specs(clip_folder, NAMES[:5])
    marker = tmp_path / "killed-once"
    inline = dict(run_inline(specs, plain_job(), EngineSettings()))
    pooled = dict(run_pool(specs, faulty("kill", marker=str(marker)), EngineSettings(workers=2)))
    assert marker.exists()  # a worker really did die on the 320×180 disc clip
    assert int(marker.read_text()) != os.getpid()
    assert {s: r.status for s, r in pooled.items()} == {s: "ok" for s in specs}
    assert all(pooled[s].stats == inline[s].stats for s in specs)


def _script(tmp_path, clip_folder, body_template):
    table = clip_table(tmp_path, ["carphone.mp4", "disc.mp4"])
    call = (f"salmat.materialize({str(table)!r}, {str(tmp_path / 'out.jsonl')!r}, root={str(clip_folder)!r}, "
            "workers=2, no_cache=True, frame_samples=2)")
    script = tmp_path / "script.py"
    script.write_text(body_template.format(call=call))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)


UNGUARDED = "import os\nimport salmat\nr = {call}\nprint('COUNTS', r.counts)\n"
UNGUARDED_VIA_FUNCTION = "import salmat\ndef main():\n    r = {call}\n    print('COUNTS', r.counts)\nmain()\n"
GUARDED = ("import os\nimport salmat\ndef main():\n    r = {call}\n    print('COUNTS', r.counts)\n"
           "if '__main__' == __name__:\n    main()\n")


@pytest.mark.parametrize("template, line", [(UNGUARDED, 3), (UNGUARDED_VIA_FUNCTION, 5)])
def test_a_script_without_main_guard_is_found_before_any_worker_starts(tmp_path, clip_folder, template, line):
    """Spawned workers would run an unguarded script again (a page of tracebacks from each); the
    call is found first, its clips run in this process, and the user reads one line naming the fix."""
    result = _script(tmp_path, clip_folder, template)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "COUNTS {'ok': 2}" in result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"salmat: warning: script.py:{line} calls salmat outside")
    assert 'if __name__ == "__main__":' in result.stderr


def test_a_guarded_script_runs_its_clips_in_worker_processes_without_a_word(tmp_path, clip_folder):
    result = _script(tmp_path, clip_folder, GUARDED)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "COUNTS {'ok': 2}" in result.stdout
    assert result.stderr == ""


def test_the_guard_is_read_from_the_source(tmp_path):
    from salmat.engines.main_guard import _guarded

    script = tmp_path / "s.py"
    script.write_text("x = 1\nif __name__ == '__main__':\n    y = 2\n    z = 3\nw = 4\n"
                      "if __name__ != '__main__':\n    v = 5\n")
    assert [_guarded(str(script), n) for n in range(1, 8)] == [False, False, True, True, False, False, False]
    assert _guarded(str(tmp_path / "missing.py"), 1)  # unreadable: the benefit of the doubt


def test_uint8_luma_gives_the_same_motion_weights(tmp_path):
    import numpy as np

    from salmat.decode import SamplingOptions, decode_sampled
    from salmat.sources import ClipSpec
    from salmat.temporal import historical_motion_weights, motion_weights
    from synthetic_clips import write_raw_yuv

    raw = write_raw_yuv(tmp_path / "clip_64x48_10bit_420.yuv", 64, 48, frames=5, bit_depth=10)
    frames = decode_sampled(ClipSpec(str(raw), raw=True, width=64, height=48, bit_depth=10), SamplingOptions("clip", 5))
    as_float = [f.luma8().astype(np.float32) for f in frames]
    as_uint8 = [f.luma8() for f in frames]
    for weights in (motion_weights, historical_motion_weights):
        assert np.array_equal(weights(as_float), weights(as_uint8))


def test_slow_model_times_out_as_model_timeout(tmp_path, clip_folder):
    model = save(slow_graph(), tmp_path / "slow.onnx")
    table = clip_table(tmp_path, ["bikes.mp4"])
    report = salmat.materialize(table, tmp_path / "out.jsonl", root=str(clip_folder), workers=1, clip_timeout=2.0,
                                no_cache=True, frame_samples=8, model_path=str(model))
    assert report.counts == {"model-timeout": 1}
    row = read_jsonl(tmp_path / "out.jsonl")[0]
    assert "the model took longer than clip_timeout=2 s" in row["saliency_error"]


def test_a_clip_whose_worker_dies_twice_is_worker_lost(clip_folder):
    specs = _specs(clip_folder, ["carphone.mp4", "disc.mp4", "odd.mp4"])
    got = dict(run_pool(specs, faulty("kill", frame_samples=2), EngineSettings(workers=2)))  # kills every time
    assert [got[s].status for s in specs] == ["ok", "worker-lost", "ok"]
    assert "died while computing this clip, twice" in got[specs[1]].error


@pytest.mark.parametrize("engine", [run_inline, run_pool])
def test_a_model_that_cannot_start_makes_every_clip_worker_lost(clip_folder, engine):
    specs = _specs(clip_folder, ["carphone.mp4", "disc.mp4"])
    got = dict(engine(specs, faulty("no-start"), EngineSettings(workers=2)))
    assert [got[s].status for s in specs] == ["worker-lost", "worker-lost"]
    assert all("cannot load the model on this node" in got[s].error for s in specs)


@pytest.mark.parametrize("engine", [run_inline, run_pool], ids=["inline", "pool"])
def test_a_worker_whose_model_is_not_the_pinned_one_computes_nothing(clip_folder, engine):
    """The driver pins the model it loaded; a worker that loads another computes no clip
    (Ray: `test_ray.test_actors_whose_model_is_not_the_pinned_one_never_start`)."""
    specs = _specs(clip_folder, ["carphone.mp4", "disc.mp4", "bikes.mp4"])
    got = list(engine(specs, pinned_elsewhere(), EngineSettings(workers=2)))
    assert Counter(spec for spec, _ in got) == Counter(specs)  # each clip back exactly once
    for spec, result in got:
        assert result.status == "worker-lost" and not result.stats, (spec.path, result.status)
        assert "is not the one the run started with" in result.error, result.error
        assert "not-this-model" in result.error, result.error  # the fingerprint the driver pinned


class _BrokenModel:
    """A model that breaks its contract in one chosen way."""

    id = "broken"
    fingerprint = "broken:1"

    def __init__(self, result):
        self.result = result

    def predict(self, frames):
        return self.result

    def predict_working(self, frames):  # full-size maps, as the protocol allows
        return self.result

    def describe(self):
        return {"id": self.id}


class _BrokenWorkingModel(_BrokenModel):
    def predict_working(self, frames):
        return self.result


@pytest.mark.parametrize("case", ["wrong-count", "wrong-size", "nan", "working-wrong-size", "working-inf", "raises"])
def test_a_model_that_breaks_its_contract_is_model_failed(case):
    import numpy as np

    from salmat.compute import predict_maps
    from salmat.errors import ClipError
    from salmat.frames import YuvFrame
    from salmat.maps import WorkingMaps

    frames = [YuvFrame(np.zeros((48, 64), np.uint8), np.zeros((24, 32), np.uint8), np.zeros((24, 32), np.uint8))] * 3
    small = np.zeros((3, 6, 8), np.float32)
    model = {
        "wrong-count": _BrokenModel(np.zeros((2, 48, 64), np.float32)),
        "wrong-size": _BrokenModel(np.zeros((3, 48, 63), np.float32)),
        "nan": _BrokenModel(np.full((3, 48, 64), np.nan, np.float32)),
        "working-wrong-size": _BrokenWorkingModel(WorkingMaps(small, (47, 64))),
        "working-inf": _BrokenWorkingModel(WorkingMaps(np.full((3, 6, 8), np.inf, np.float32), (48, 64))),
        "raises": _BrokenWorkingModel(None),
    }[case]
    with pytest.raises(ClipError) as exc:
        predict_maps(model, frames)
    assert exc.value.status == "model-failed" and exc.value.message.startswith("broken ")
    good = _BrokenWorkingModel(WorkingMaps(small, (48, 64)))
    assert predict_maps(good, frames).maps.shape == (3, 6, 8)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            found |= {int(p) for p in open(path).read().split()}
        except OSError:
            pass
    return found


def _descendants(pid: int) -> set[int]:
    """Children, their children, …: a forked worker is the fork server's child, not the run's."""
    found, frontier = set(), {pid}
    while frontier:
        frontier = set().union(*(_children(p) for p in frontier)) - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as handle:
            return handle.read()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_workers_die_with_a_killed_run(tmp_path, clip_folder):
    """SIGKILL of the run (no cleanup code runs) still takes its workers down, even ones busy
    in a long inference, so nothing keeps running or holds the resource tracker."""
    model = save(slow_graph(), tmp_path / "slow.onnx")
    table = clip_table(tmp_path, ["bikes.mp4", "carphone.mp4"])
    proc = subprocess.Popen([sys.executable, "-m", "salmat", "materialize", "--input", str(table), "--output",
                             str(tmp_path / "out.jsonl"), "--root", str(clip_folder), "--workers", "2",
                             "--model-path", str(model), "--no-cache", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        processes: set[int] = set()  # the workers, and the fork server and resource tracker
        while time.monotonic() < deadline and len(processes) < 4:
            time.sleep(0.2)
            processes = {p for p in _descendants(proc.pid) if "multiprocessing" in _cmdline(p)}
        assert len(processes) >= 4, "the run started fewer than 2 worker processes"
        time.sleep(2.0)  # let the workers load the model and start on their clips
    finally:
        proc.kill()
        proc.wait(30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in processes):
        time.sleep(0.1)
    assert not [p for p in processes if _alive(p)]


def test_a_worker_sees_the_environment_as_it_is_when_the_worker_starts(monkeypatch, disc_clip):
    """Workers fork from a server started by this process's first pool; they must still see a
    variable set since (a notebook that sets SALMAT_CACHE_DIR between runs), as spawned ones did."""
    variable = "SALMAT_TEST_WORKER_VARIABLE"
    spec = ClipSpec(str(disc_clip))
    for value in ("first", "second", "third"):
        monkeypatch.setenv(variable, value)
        [(_, result)] = run_pool([spec], environment_job(variable), EngineSettings(workers=1, clip_timeout=60))
        assert result.error == f"{variable}={value}"


def test_workers_are_spawned_when_the_fork_server_cannot_start(tmp_path, disc_clip):
    """The fork server listens on a Unix socket in the temp folder; a TMPDIR too long for one
    (AF_UNIX paths end at 107 bytes) must not fail the run: its workers are spawned instead."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}, {"src": str(disc_clip)}])
    result = run_cli("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--workers", "2",
                     "--frame-samples", "2", "--no-cache", env={"TMPDIR": str(deep)})
    assert result.returncode == 0, result.stderr
    assert [r["saliency_status"] for r in read_jsonl(tmp_path / "o.jsonl")] == ["ok", "ok"]


def _handles_sigint(pid: int) -> bool:
    """Whether Python has installed its SIGINT handler there (before that, SIGINT ends it silently)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            caught = next(line for line in handle if line.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(caught, 16) & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.parametrize("moment", ["server-importing", "workers-started"])
def test_ctrl_c_while_workers_start_prints_no_traceback(tmp_path, disc_clip, moment):
    """A terminal's Ctrl-C reaches every process of the run: the fork server while it imports
    its preload list (Python's handler is in place, so SIGINT would raise there), or workers
    just forked, must not print a KeyboardInterrupt traceback; the run exits 130."""
    clips = [shutil.copy(disc_clip, tmp_path / f"disc{i}.mp4") for i in range(8)]
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(clip)} for clip in clips])
    proc = subprocess.Popen([sys.executable, "-m", "salmat", "materialize", "--input", str(table), "--output",
                             str(tmp_path / "o.jsonl"), "--workers", "2", "--no-cache", "--quiet"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            found = [p for p in _descendants(proc.pid) if "forkserver" in _cmdline(p)]
            if moment == "server-importing" and any(_handles_sigint(p) for p in found):
                break
            if moment == "workers-started" and len(found) >= 3:  # the server and two workers
                break
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, stderr


def test_a_consumer_slower_than_the_timeout_turns_no_finished_clip_into_a_timeout(small_clips):
    """The feeder holds each decoded clip while its model runs: a clip another worker finished
    meanwhile, its result still unread, is not timed out. The first worker's clip is the slower
    one, so the second reports first and the first finishes while the consumer holds that
    result (its unread result was timed out: the first worker is read before the second)."""
    specs = [ClipSpec(str(small_clips / f"c{i}.mp4")) for i in range(2)]
    job = faulty("pause", name="c0.mp4")
    statuses = []
    for spec, result in run_pool(specs, job, EngineSettings(workers=2, clip_timeout=1.0)):
        statuses.append((os.path.basename(spec.path), result.status))
        time.sleep(1.5)  # longer than the clip timeout
    assert statuses == [("c1.mp4", "ok"), ("c0.mp4", "ok")]


def test_a_worker_writes_to_the_stderr_of_its_run_not_of_the_fork_servers_start(capfd, disc_clip):
    """The fork server keeps the descriptors it started with (here: before this test captured
    them); a worker's own output must go where its run's stderr points now, as a spawned one's did."""
    variable = "SALMAT_TEST_WORKER_VARIABLE"
    job, settings = environment_job(variable), EngineSettings(workers=1, clip_timeout=60)
    with capfd.disabled():  # starts the server, unless an earlier test did, with other descriptors
        list(run_pool([ClipSpec(str(disc_clip))], plain_job(), settings))
    capfd.readouterr()
    [(_, result)] = run_pool([ClipSpec(str(disc_clip))], job, settings)
    assert f"worker stderr: {result.error}" in capfd.readouterr().err


def test_a_fork_server_that_cannot_be_reached_falls_back_to_spawned_workers(disc_clip):
    """A temp-folder cleaner may remove the server's socket in a long-lived process (a notebook,
    a Ray actor): the next workers are spawned instead of the pool failing with a traceback."""
    from multiprocessing import forkserver

    spec, job = ClipSpec(str(disc_clip)), plain_job()
    settings = EngineSettings(workers=1, clip_timeout=60)
    assert [r.status for _, r in run_pool([spec], job, settings)] == ["ok"]  # the server is up
    address = forkserver._forkserver._forkserver_address  # the stdlib keeps it private
    if address is None:
        pytest.skip("workers are not forked from a fork server here")
    os.unlink(address)
    try:
        assert [r.status for _, r in run_pool([spec], job, settings)] == ["ok"]
    finally:  # the unreachable server ends, so the next pool in this process starts a new one
        server = forkserver._forkserver._forkserver_pid
        os.kill(server, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(server):
            time.sleep(0.01)


def test_pools_started_from_many_threads_leave_pythonpath_as_it_was(monkeypatch):
    """Starting the fork server points PYTHONPATH at the run's `sys.path` for a moment; threads
    that start pools together must leave it as they found it (a leak reaches every subprocess)."""
    import threading

    from salmat.engines.pool import worker_context

    monkeypatch.setenv("PYTHONPATH", "/the/users/own")
    errors: list[BaseException] = []

    def start_many() -> None:
        try:
            for _ in range(100):
                worker_context()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start_many) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert os.environ["PYTHONPATH"] == "/the/users/own"
