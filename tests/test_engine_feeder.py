"""The feeder engine: decode processes feed one model; the same values as the in-process engine."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

import salmat
from conftest import read_jsonl, write_jsonl
from fault_jobs import faulty, plain_job
from onnx_graphs import encoder_decoder, save, slow_graph
from salmat.compute import ClipJob
from salmat.engines import EngineSettings, get_engine
from salmat.engines.feeder import DecodedClip, DecodeJob, inference_threads, run_feeder
from salmat.engines.inline import run_inline
from salmat.models.spec import ModelSpec
from salmat.options import MaterializeOptions
from salmat.run_clips import RunSettings, engine_name
from salmat.sources import ClipSpec
from salmat.values import ReduceOptions, SamplingOptions
from synthetic_clips import write_disc_clip

NAMES = ["carphone.mp4", "disc.mp4", "carphone_d.mp4", "bikes.mp4", "odd.mp4", "missing.mp4", "broken.mp4"]


@pytest.fixture()
def specs(clip_folder):
    (clip_folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a movie" * 100)
    return [ClipSpec(str(clip_folder / name)) for name in NAMES]


def onnx_job(tmp_path, samples: int = 4) -> ClipJob:
    model = save(encoder_decoder(), tmp_path / "student.onnx")
    return ClipJob(ModelSpec(model_path=str(model)), SamplingOptions("clip", samples, 8, 8192 * 8192),
                   ReduceOptions(0.6))


def _same(a, b) -> None:
    assert (a.status, a.stats, a.frames, a.error, a.frame_stats, a.frame_total) == \
           (b.status, b.stats, b.frames, b.error, b.frame_stats, b.frame_total)


@pytest.mark.parametrize("workers", [1, 3])
def test_feeder_equals_inline_with_an_onnx_graph(tmp_path, specs, workers):
    """Every clip's statistics bit for bit, decode failures as the same statuses and messages."""
    job = onnx_job(tmp_path)
    inline = dict(run_inline(specs, job, EngineSettings()))
    fed = list(run_feeder(specs, job, EngineSettings(workers=workers)))
    assert sorted(s.path for s, _ in fed) == sorted(s.path for s in specs)  # each clip once
    fed_by_spec = dict(fed)
    for spec in specs:
        _same(fed_by_spec[spec], inline[spec])
        assert not isinstance(fed_by_spec[spec], DecodedClip)  # the frames stay in this process
    statuses = [fed_by_spec[s].status for s in specs]
    assert statuses == ["ok"] * 5 + ["missing-source", "decode-failed"]
    assert all(fed_by_spec[s].seconds > 0 for s in specs[:5])


def test_per_frame_clips_equal_inline(tmp_path, specs):
    job = onnx_job(tmp_path)
    wanted = [ClipSpec(specs[0].path, frames=(0, 3, 5)), ClipSpec(specs[1].path, frames=(1, 400)), specs[3]]
    inline = dict(run_inline(wanted, job, EngineSettings()))
    fed = dict(run_feeder(wanted, job, EngineSettings(workers=2)))
    for spec in wanted:
        _same(fed[spec], inline[spec])
    assert set(fed[wanted[0]].frame_stats) == {0, 3, 5}


def test_a_model_failure_is_that_clips_status(specs):
    """The model runs here; one clip's failure is its status, the others' values are exact."""
    job = faulty("raise", height=180)  # the disc clip is 320x180
    inline = dict(run_inline(specs, plain_job(), EngineSettings()))
    fed = dict(run_feeder(specs, job, EngineSettings(workers=2)))
    assert fed[specs[1]].status == "model-failed" and "synthetic model failure" in fed[specs[1]].error
    for spec in (specs[0], specs[2], specs[3], specs[4]):
        _same(fed[spec], inline[spec])


def test_a_clip_whose_model_hangs_times_out_and_the_run_goes_on(specs):
    """The model runs in this process, so a hung clip's thread is given up and replaced: the clip is
    `model-timeout` after --clip-timeout, and every other clip still gets its exact value."""
    # 6 s, not 3: on a loaded machine a good clip's decoding alone once took over 3 s.
    clips = specs[:5]
    inline = dict(run_inline(clips, plain_job(), EngineSettings()))
    started = time.monotonic()
    fed = dict(run_feeder(clips, faulty("sleep", height=180), EngineSettings(workers=2, clip_timeout=6.0)))
    assert time.monotonic() - started < 60
    assert fed[clips[1]].status == "model-timeout"
    assert "the model took longer than clip_timeout" in fed[clips[1]].error
    for spec in (clips[0], clips[2], clips[3], clips[4]):
        _same(fed[spec], inline[spec])


def test_a_model_that_cannot_load_makes_every_clip_worker_lost(specs):
    fed = dict(run_feeder(specs, faulty("no-start"), EngineSettings(workers=2)))
    assert {r.status for r in fed.values()} == {"worker-lost"}
    assert all("cannot load the model on this node" in r.error for r in fed.values())


def test_decode_workers_load_no_model_and_send_frames(specs):
    runner = DecodeJob(SamplingOptions("clip", 3, 8, None)).start()
    decoded = runner.compute(specs[1])
    assert isinstance(decoded, DecodedClip) and decoded.status == "ok"
    assert len(decoded.yuv) == decoded.frames == 3 and decoded.yuv[0].height == 180
    assert not hasattr(runner, "model")
    failed = runner.compute(specs[5])
    assert type(failed) is not DecodedClip and failed.status == "missing-source"


def test_several_inference_threads_only_for_an_onnxruntime_session(tmp_path):
    assert inference_threads(onnx_job(tmp_path).start().model) == 2
    assert inference_threads(plain_job().start().model) == 1


def test_engine_choice_and_a_whole_run(tmp_path, clip_folder):
    assert engine_name(RunSettings.of(MaterializeOptions("in", "out", engine="feeder")), 3) == "feeder"
    assert get_engine("feeder") is run_feeder
    model = save(encoder_decoder(), tmp_path / "student.onnx")
    rows = [{"id": i, "src": name} for i, name in enumerate(NAMES[:5])]
    table = write_jsonl(tmp_path / "table.jsonl", rows)
    outs = {}
    for engine in ("local", "feeder"):
        out = tmp_path / f"{engine}.jsonl"
        report = salmat.materialize(table, out, root=str(clip_folder), workers=2, engine=engine, no_cache=True,
                                    model_path=str(model), frame_samples=3)
        assert report.counts == {"ok": 5}
        outs[engine] = read_jsonl(out)
    assert outs["local"] == outs["feeder"]


def test_ctrl_c_while_the_model_runs_exits_130_without_an_abort(tmp_path):
    """Interrupted runs ended in SIGABRT ("terminate called without an active exception", 14 of 15
    runs of the real student) when the interpreter exited under a thread inside onnxruntime."""
    model = save(slow_graph(layers=12), tmp_path / "slow.onnx")
    clips = [write_disc_clip(tmp_path / f"disc{i}.mp4", 320, 180, frames=10 + i) for i in range(6)]
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(c)} for c in clips])
    proc = subprocess.Popen([sys.executable, "-m", "salmat", "materialize", "--input", str(table), "--output",
                             str(tmp_path / "o.jsonl"), "--engine", "feeder", "--workers", "2", "--no-cache",
                             "--quiet", "--model-path", str(model), "--frame-samples", "8"],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)  # the model loaded and busy (each clip takes seconds in it)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "o.jsonl").exists()
