"""No file salmat writes may be a file it reads or keeps, across a run and a whole batch (issue #20, point 2).

Each case is a real run, through the CLI, against real files; each checks exit 2, a one-line message
naming both roles, and that the file that would have been replaced is byte for byte what it was.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import error_exit_line, run_cli_inprocess, sha256_of, write_jsonl, write_manifest
from salmat.batch import run_batch
from salmat.errors import SalmatError


@pytest.fixture()
def project(tmp_path, disc_clip):
    base = tmp_path / "proj"
    (base / "clips").mkdir(parents=True)
    shutil.copy(disc_clip, base / "clips" / "disc.mp4")
    write_jsonl(base / "a.jsonl", [{"clip_id": "a1", "src": "disc.mp4"}])
    write_jsonl(base / "b.jsonl", [{"clip_id": "b1", "src": "disc.mp4"}])
    return base


def refused(proc, *roles: str) -> str:
    """The run stopped at check time with one line naming every role."""
    line = error_exit_line(proc)
    for role in roles:
        assert role in line, line
    return line


# ---- a batch: one table's output is another table's input -------------------------------------


def _layout(base: Path, layout: str) -> tuple[str, str, Path]:
    """(table b's input, table a's output, the file both name) in one of the ways a path can repeat."""
    real = base / "b.jsonl"
    if layout == "same":
        return "b.jsonl", "b.jsonl", real
    if layout == "relative-vs-absolute":
        return "b.jsonl", str(base / "clips" / ".." / "b.jsonl"), real
    if layout == "symlink":
        os.symlink(real, base / "link.jsonl")
        return "link.jsonl", "b.jsonl", real
    os.link(real, base / "hard.jsonl")
    return "b.jsonl", "hard.jsonl", real


@pytest.mark.parametrize("layout", ["same", "relative-vs-absolute", "symlink", "hardlink"])
@pytest.mark.parametrize("key", ["output", "audit_json"])
def test_batch_output_naming_another_tables_input_is_refused(project, layout, key):
    b_input, a_written, victim = _layout(project, layout)
    a = {"id": "a", "input": "a.jsonl", "output": "out/a.jsonl"} | {key: a_written}
    m = write_manifest(project, [a, {"id": "b", "input": b_input, "output": "out/b.jsonl"}])
    before = sha256_of(victim)
    line = refused(run_cli_inprocess("batch", "--manifest", m), "table 'a'", "input table of table 'b'")
    assert "choose another" in line
    assert sha256_of(victim) == before and not (project / "out").exists()  # no table ran


@pytest.mark.parametrize("name", ["manifest.json", "manifest.toml"])
def test_batch_table_writing_over_its_manifest_is_refused(project, name):
    m = write_manifest(project, [{"id": "a", "input": "a.jsonl", "output": "out/a.jsonl", "audit_json": name}], name=name)
    before = sha256_of(m)
    refused(run_cli_inprocess("batch", "--manifest", m), "audit-json (table 'a')", "the manifest")
    assert sha256_of(m) == before and not (project / "out").exists()


def test_batch_output_naming_another_tables_cache_is_refused(project):
    tables = [{"id": "a", "input": "a.jsonl", "output": "out/a.jsonl", "audit_json": "keep.sqlite"},
              {"id": "b", "input": "b.jsonl", "output": "out/b.jsonl", "cache": "keep.sqlite"}]
    with pytest.raises(SalmatError, match=r"audit_json \(table 'a'\) .* is the result cache file of table 'b'"):
        run_batch(write_manifest(project, tables), log=None)


def test_batch_audit_naming_another_tables_output_is_refused(project):
    tables = [{"id": "a", "input": "a.jsonl", "output": "out/a.jsonl", "audit_json": "out/b.jsonl"},
              {"id": "b", "input": "b.jsonl", "output": "out/b.jsonl"}]
    with pytest.raises(SalmatError, match=r"output \(table 'b'\) .* is also audit_json \(table 'a'\)"):
        run_batch(write_manifest(project, tables), log=None)


# ---- one run: an output naming one of the table's clips, or the cache ---------------------------


@pytest.mark.parametrize("through", ["path", "symlink", "hardlink"])
def test_audit_json_naming_a_source_clip_is_refused_before_any_clip_is_decoded(project, through):
    clip = project / "clips" / "disc.mp4"
    named = {"path": clip, "symlink": project / "clip_link.mp4", "hardlink": project / "clip_hard.mp4"}[through]
    if through == "symlink":
        os.symlink(clip, named)
        write_jsonl(project / "a.jsonl", [{"clip_id": "a1", "src": str(named)}])  # the row reads the link
        named = clip                                                             # and the audit names the file
    elif through == "hardlink":
        os.link(clip, named)
    before = sha256_of(clip)
    proc = run_cli_inprocess("materialize", "--input", project / "a.jsonl", "--output", project / "o.jsonl",
                             "--root", project / "clips", "--audit-json", named, "--frame-samples", "1")
    refused(proc, "--audit-json", "the source clip")
    assert sha256_of(clip) == before and not (project / "o.jsonl").exists()
    cache = Path(os.environ["SALMAT_CACHE_DIR"]) / "results.sqlite"
    assert not cache.exists() or b"disc" not in cache.read_bytes()  # nothing was computed, so nothing cached


# (--output can't name a -wal/-shm sibling: that name has no table suffix, refused as such)
@pytest.mark.parametrize(("flag", "sibling"), [("--audit-json", ""), ("--audit-json", "-wal"),
                                               ("--audit-json", "-shm"), ("--output", "")])
def test_output_naming_the_cache_or_its_sqlite_siblings_is_refused(project, flag, sibling):
    cache = project / "keep.jsonl"  # a cache may be named anything, even like a table
    target = Path(str(cache) + sibling)
    other = "--output" if flag == "--audit-json" else "--audit-json"
    other_path = project / ("o.jsonl" if other == "--output" else "o.json")
    # a first run creates the cache (and, for a moment, its siblings)
    assert run_cli_inprocess("materialize", "--input", project / "a.jsonl", "--output", project / "first.jsonl",
                             "--root", project / "clips", "--cache", cache, "--frame-samples", "1").returncode == 0
    if not target.exists():
        target.write_bytes(b"")  # SQLite removes -wal/-shm on close; the run must refuse them all the same
    before = sha256_of(cache)
    proc = run_cli_inprocess("materialize", "--input", project / "a.jsonl", other, other_path, flag, target,
                             "--root", project / "clips", "--cache", cache, "--frame-samples", "1")
    refused(proc, flag, "the result cache file")
    assert sha256_of(cache) == before and not other_path.exists()


def test_model_path_is_never_an_output(tmp_path, project):
    from onnx_graphs import conv_sigmoid, save

    model = save(conv_sigmoid(), tmp_path / "m.onnx")
    before = sha256_of(model)
    proc = run_cli_inprocess("materialize", "--input", project / "a.jsonl", "--output", project / "o.jsonl",
                             "--root", project / "clips", "--model-path", model, "--audit-json", model)
    refused(proc, "--audit-json", "--model-path")
    assert sha256_of(model) == before


def test_audit_json_naming_the_clip_of_a_skipped_row_is_refused(project, disc_clip):
    """A row that already has values is skipped, so its clip is never read: still the user's file."""
    victim = project / "clips" / "victim.mp4"
    shutil.copy(disc_clip, victim)
    write_jsonl(project / "a.jsonl", [{"clip_id": "a1", "src": "victim.mp4", "saliency_mean": 0.5, "saliency_var": 0.1},
                                      {"clip_id": "a2", "src": "disc.mp4"}])
    before = sha256_of(victim)
    proc = run_cli_inprocess("materialize", "--input", project / "a.jsonl", "--output", project / "o.jsonl",
                             "--root", project / "clips", "--audit-json", victim, "--frame-samples", "1")
    refused(proc, "--audit-json", "the clip of a row left as it was")
    assert sha256_of(victim) == before and not (project / "o.jsonl").exists()


@pytest.mark.parametrize("writer", ["audit_json", "report"])
def test_batch_output_naming_another_tables_clip_is_refused_before_any_table_runs(project, writer):
    victim = project / "clips" / "victim.mp4"
    shutil.copy(project / "clips" / "disc.mp4", victim)
    write_jsonl(project / "b.jsonl", [{"clip_id": "b1", "src": "victim.mp4"}])
    a = {"id": "a", "input": "a.jsonl", "output": "out/a.jsonl"}
    if writer == "audit_json":
        a["audit_json"] = "clips/victim.mp4"
    m = write_manifest(project, [a, {"id": "b", "input": "b.jsonl", "output": "out/b.jsonl"}])  # a runs first
    before = sha256_of(victim)
    extra = ["--report-json", str(victim)] if writer == "report" else []
    refused(run_cli_inprocess("batch", "--manifest", m, *extra), "the source clip of table 'b'")
    assert sha256_of(victim) == before and not (project / "out").exists()
