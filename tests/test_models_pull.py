"""`salmat models pull NAME`: download with pooch from a local HTTP server on 127.0.0.1 (never the
internet), check the sha256, install atomically; and `salmat models` saying where each model comes from.

Small graphs from `onnx_graphs` stand in for the students: the test registers their sha256 as the
published one (`KNOWN_MODELS` is read each time), so a right file, a wrong file, a server error and
a download cut short are all real HTTP transfers of real ONNX files.
"""

from __future__ import annotations

import argparse
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pytest

import onnx_graphs as graphs
from conftest import error_exit_line, run_cli_inprocess, sha256_of
from salmat import model_files, pull_model
from salmat.cli import build_parser
from salmat.command_options import ModelsPullOptions
from salmat.errors import SalmatError
from salmat.models import load_model
from salmat.models.registry import KNOWN_MODELS, SOURCES_HEADER

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models"
NAME = "saliency_student_v1"


@dataclass
class Server:
    """A local HTTP server: files from `folder`, `/error/*` answers 500, `/cut/*` sends half a file."""

    folder: Path
    port: int = 0
    requests: list[str] = field(default_factory=list)
    sent: int = 0  # bytes /endless sent

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


@pytest.fixture()
def server(tmp_path) -> Iterator[Server]:
    state = Server(tmp_path / "served")
    state.folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(state.folder), **kwargs)

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path.startswith("/error/"):
                self.send_error(500, "broken on purpose")
                return
            if self.path == "/endless":  # no Content-Length, zeros until the client hangs up (64 MiB at most)
                self.send_response(200)
                self.end_headers()
                try:
                    while state.sent < 64 << 20:
                        self.wfile.write(bytes(1 << 16))
                        state.sent += 1 << 16
                except OSError:
                    return
            if self.path.startswith("/cut/"):
                body = (state.folder / self.path.removeprefix("/cut/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])  # then the connection closes
                return
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture()
def published(server, monkeypatch) -> Path:
    """A served graph whose sha256 is registered as the student v1's published one."""
    path = graphs.save(graphs.conv_sigmoid(), server.folder / "student.onnx")
    graphs.save(graphs.conv_sigmoid(weights=graphs.CONV_WEIGHTS * 0.5), server.folder / "other.onnx")
    monkeypatch.setitem(KNOWN_MODELS, NAME, replace(KNOWN_MODELS[NAME], sha256=sha256_of(path)))
    monkeypatch.delenv("SALMAT_MODEL_DIR", raising=False)
    return path


def test_pull_downloads_checks_and_installs_the_file(tmp_path, server, published):
    models = tmp_path / "models" / "new"  # created if missing
    proc = run_cli_inprocess("models", "pull", NAME, "--model-dir", models, "--url", server.url("student.onnx"))
    assert proc.returncode == 0, proc.stderr
    installed = models / f"{NAME}.onnx"
    assert f"installed={installed}" in proc.stderr
    assert installed.read_bytes() == published.read_bytes()
    assert sorted(p.name for p in models.iterdir()) == [installed.name]  # no temp file left
    assert load_model(NAME, model_dir=str(models)).id == NAME  # runs under its own id
    again = run_cli_inprocess("models", "pull", NAME, "--model-dir", models, "--url", server.url("student.onnx"))
    assert again.returncode == 0 and server.requests == ["/student.onnx"]  # already there: no second download


def test_the_environment_folder_is_the_default_destination(tmp_path, server, published, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("SALMAT_MODEL_DIR", f"{first}:{second}")
    assert pull_model(NAME, url=server.url("student.onnx")) == first / f"{NAME}.onnx"
    monkeypatch.delenv("SALMAT_MODEL_DIR")
    with pytest.raises(SalmatError, match="no folder to install the model in: pass model_dir=DIR"):
        pull_model(NAME, url=server.url("student.onnx"))


@pytest.mark.parametrize("path, says", [
    ("other.onnx", "refused: the file from"),             # another model's bytes: the sha256 differs
    ("error/student.onnx", "the server answered HTTP 500"),
    ("missing.onnx", "the server answered HTTP 404"),
    ("cut/student.onnx", "failed (ChunkedEncodingError"),  # half the bytes, then the connection closed
])
def test_a_bad_download_is_refused_and_leaves_nothing(tmp_path, server, published, path, says):
    models = tmp_path / "models"
    models.mkdir()
    proc = run_cli_inprocess("models", "pull", NAME, "--model-dir", models, "--url", server.url(path))
    message = error_exit_line(proc)
    assert says in message and "nothing was installed" in message, message
    assert list(models.iterdir()) == []  # no partial file, no temp file


def test_an_existing_other_file_is_never_overwritten(tmp_path, server, published):
    models = tmp_path / "models"
    models.mkdir()
    mine = graphs.save(graphs.conv_sigmoid(weights=graphs.CONV_WEIGHTS * 3.0), models / f"{NAME}.onnx")
    before = mine.read_bytes()
    proc = run_cli_inprocess("models", "pull", NAME, "--model-dir", models, "--url", server.url("student.onnx"))
    assert "already exists and is not saliency_student_v1" in error_exit_line(proc)
    assert mine.read_bytes() == before and server.requests == []


@pytest.mark.parametrize("args, says", [
    (["u2netp_mirror_v1"], "has no published source or checksum"),
    (["saliency_student_v3"], "unknown model 'saliency_student_v3'"),
    ([NAME, "--url", "ftp://127.0.0.1/x.onnx"], "--url must be an http:// or https:// address"),
    ([NAME], "no folder to install the model in: pass --model-dir DIR or set SALMAT_MODEL_DIR=DIR"),
    (["image_signature_v1", "--model-dir", "x"], "image_signature_v1 is built in: it has no file to download"),
])
def test_what_cannot_be_pulled_is_one_line_before_any_download(tmp_path, server, published, args, says):
    proc = run_cli_inprocess("models", "pull", *args)
    assert says in error_exit_line(proc)
    assert server.requests == []


def test_an_unknown_name_suggests_only_what_pull_can_do(tmp_path, server, published):
    message = error_exit_line(run_cli_inprocess("models", "pull", "saliency_student_v3", "--model-dir", tmp_path))
    assert "did you mean saliency_student_v" in message and "--model-path" not in message
    assert "in a folder of --model-dir" in message


def test_an_endless_download_is_stopped_at_the_cap_and_leaves_nothing(tmp_path, server, published, monkeypatch):
    monkeypatch.setattr(model_files, "MAX_MODEL_BYTES", 1 << 20)  # the real cap (2 GiB) would take minutes
    models = tmp_path / "models"
    proc = run_cli_inprocess("models", "pull", NAME, "--model-dir", models, "--url", server.url("endless"))
    message = error_exit_line(proc)
    assert "is over 1 MiB, more than any single-file ONNX model" in message and "nothing was installed" in message
    assert list(models.iterdir()) == []
    assert server.sent < 16 << 20  # the client hung up near the cap instead of reading on


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_a_folder_that_cannot_be_written_is_one_line_exit_2(tmp_path, server, published, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    models = blocker / "models" if where == "under_a_file" else tmp_path / "ro"
    if where == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        models.mkdir(mode=0o500)
    proc = run_cli_inprocess("models", "pull", NAME, "--model-dir", models, "--url", server.url("student.onnx"))
    message = error_exit_line(proc)  # was exit 3, "internal error (NotADirectoryError …)"
    assert f"cannot install {NAME} in {models}" in message and "folder you can write to" in message


def test_a_server_that_is_not_there_is_one_line(tmp_path, published):
    models = tmp_path / "models"
    proc = run_cli_inprocess("models", "pull", NAME, "--model-dir", models, "--url", "http://127.0.0.1:9/x.onnx")
    assert "failed (ConnectionError" in error_exit_line(proc)
    assert list(models.iterdir()) == []


# ---- where the models come from ------------------------------------------------------------


def test_salmat_models_says_where_each_learned_model_comes_from(monkeypatch):
    monkeypatch.delenv("SALMAT_MODEL_DIR", raising=False)
    proc = run_cli_inprocess("models")
    assert proc.returncode == 0, proc.stderr
    sources = proc.stdout.split(SOURCES_HEADER + "\n", 1)[1].splitlines()
    by_id = {line.split()[0]: line for line in sources}
    assert set(by_id) == set(KNOWN_MODELS)
    for name in ("saliency_student_v1", "saliency_student_v2"):
        known = KNOWN_MODELS[name]
        assert f"github.com/VMAFx/vmafx  model/tiny/{name}.onnx  sha256 {known.sha256}" in by_id[name]
        assert known.url == f"https://raw.githubusercontent.com/VMAFx/vmafx/master/model/tiny/{name}.onnx"
    assert "no published source or checksum" in by_id["u2netp_mirror_v1"]


@pytest.mark.skipif(not (SHARED / "README.md").is_file(), reason="../shared/models (the real students) is absent")
def test_the_sources_are_the_model_cards_and_the_files_checksums():
    card = (SHARED / "README.md").read_text(encoding="utf-8")
    for name in ("saliency_student_v1", "saliency_student_v2"):
        known = KNOWN_MODELS[name]
        folder = str(known.repo_path).rsplit("/", 1)[0]
        assert f"`{known.repository}`" in card and f"folder `{folder}/`" in card and known.filename in card
        assert known.sha256 in card and sha256_of(SHARED / known.filename) == known.sha256


def test_pull_flags_are_its_declared_settings_and_documented():
    """`models pull` is built from `ModelsPullOptions` like every command: keywords = flags = docs."""
    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return dict(action.choices)

    pull = subcommands(subcommands(build_parser())["models"])["pull"]
    flags = {a.dest: a.option_strings for a in pull._actions if not isinstance(a, argparse._HelpAction)}
    assert set(flags) == {f.name for f in fields(ModelsPullOptions)}
    usage = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    assert "salmat models pull" in usage
    assert all(flag in usage for option_strings in flags.values() for flag in option_strings)


# ---- concurrent pulls ----------------------------------------------------------------------------


def test_two_concurrent_pulls_of_one_model_both_install_it_whole(tmp_path, server, published, monkeypatch):
    """Both pulls download before either installs (a barrier holds them): each finds the other's
    file or installs its own, and the folder ends with the one right file and no temp file."""
    models = tmp_path / "models"
    both_downloaded = threading.Barrier(2, timeout=30)
    download = model_files._download

    def download_then_wait(*args, **kwargs):
        download(*args, **kwargs)
        both_downloaded.wait()

    monkeypatch.setattr(model_files, "_download", download_then_wait)
    results: dict[int, object] = {}

    def pull(i: int) -> None:
        try:
            results[i] = pull_model(NAME, model_dir=str(models), url=server.url("student.onnx"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=pull, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    installed = models / f"{NAME}.onnx"
    assert results == {0: installed, 1: installed}
    assert installed.read_bytes() == published.read_bytes()
    assert sorted(p.name for p in models.iterdir()) == [installed.name]
    assert len(server.requests) == 2


def test_a_file_that_appears_during_the_download_is_never_overwritten(tmp_path, server, published, monkeypatch):
    """Another file put at the destination while the pull downloads (after its first look) stays as
    it is: the install never renames over a file, and the pull says what is there instead."""
    models = tmp_path / "models"
    models.mkdir()
    theirs = graphs.conv_sigmoid(weights=graphs.CONV_WEIGHTS * 3.0)
    download = model_files._download

    def download_while_another_file_lands(*args, **kwargs):
        download(*args, **kwargs)
        graphs.save(theirs, models / f"{NAME}.onnx")

    monkeypatch.setattr(model_files, "_download", download_while_another_file_lands)
    proc = run_cli_inprocess("models", "pull", NAME, "--model-dir", models, "--url", server.url("student.onnx"))
    message = error_exit_line(proc)
    assert "already exists and is not saliency_student_v1" in message and "nothing was installed" in message
    assert sha256_of(models / f"{NAME}.onnx") != sha256_of(published)
    assert sorted(p.name for p in models.iterdir()) == [f"{NAME}.onnx"]
