"""Models by name: `--model saliency_student_v1` found in `--model-dir`/`$SALMAT_MODEL_DIR`, its preset,
its checksum, the id each ONNX file gets, model cards, and `salmat models`.

Small graphs from `onnx_graphs` saved under the known names stand in for the real students (their
sha256 can't match, so they run as `name@sha8`); the real students in `../shared/models` are used
where present and the tests that need them skip cleanly otherwise.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import onnx_graphs as graphs
from conftest import error_exit_line, one_line_message, read_jsonl, run_cli, run_cli_inprocess, sha256_of, write_jsonl
from salmat.compare import compare, load_models
from salmat.errors import SalmatError
from salmat.frames import YuvFrame
from salmat.models import load_model
from salmat.models.registry import KNOWN_MODELS, SOURCES_HEADER, distinct_ids
from salmat.models.spec import ModelSpec
from synthetic_clips import write_disc_clip

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models"
needs_shared = pytest.mark.skipif(not (SHARED / "saliency_student_v1.onnx").is_file(),
                                  reason="../shared/models (the real students) is absent")


def sha8(path: Path) -> str:
    return sha256_of(path)[:8]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_disc_clip(tmp_path_factory.mktemp("names_clip") / "disc.mp4", 96, 64, frames=4)


@pytest.fixture()
def stand_ins(tmp_path) -> Path:
    """A model folder holding small graphs under the known names (and one other)."""
    d = tmp_path / "models"
    d.mkdir()
    graphs.save(graphs.conv_sigmoid(), d / "saliency_student_v1.onnx")
    graphs.save(graphs.conv_sigmoid(weights=graphs.CONV_WEIGHTS * 0.5), d / "u2netp_mirror_v1.onnx")
    return d


@pytest.fixture()
def no_env(monkeypatch):
    monkeypatch.delenv("SALMAT_MODEL_DIR", raising=False)


def one_row_table(tmp_path: Path, clip: Path, rows: int = 1) -> Path:
    return write_jsonl(tmp_path / "t.jsonl", [{"src": str(clip)}] * rows)


# ---- finding the file ------------------------------------------------------------------


def test_model_dir_finds_the_file_and_picks_the_preset(stand_ins, no_env):
    student = load_model("saliency_student_v1", model_dir=str(stand_ins))
    assert student.describe()["path"] == str(stand_ins / "saliency_student_v1.onnx")
    assert student.describe()["preset"] == "vmaf-student"
    u2 = load_model("u2netp_mirror_v1", model_dir=str(stand_ins))
    assert u2.describe()["preset"] == "u2net"
    assert load_model("u2netp_mirror_v1", model_dir=str(stand_ins), preprocess="vmaf-student").describe()[
        "preset"] == "vmaf-student"  # an explicit --preprocess wins over the model's own preset


def test_env_folders_are_searched_in_order_and_the_flag_beats_the_env(tmp_path, stand_ins, monkeypatch):
    second = tmp_path / "second"
    second.mkdir()
    graphs.save(graphs.conv_sigmoid(batch="N"), second / "saliency_student_v1.onnx")
    monkeypatch.setenv("SALMAT_MODEL_DIR", f"{tmp_path / 'empty'}::{stand_ins}:{second}")
    assert load_model("saliency_student_v1").describe()["path"] == str(stand_ins / "saliency_student_v1.onnx")
    picked = load_model("saliency_student_v1", model_dir=f"{second}:{stand_ins}")
    assert picked.describe()["path"] == str(second / "saliency_student_v1.onnx")


def test_a_relative_folder_resolves_to_an_absolute_path(stand_ins, monkeypatch, no_env):
    monkeypatch.chdir(stand_ins.parent)
    spec = ModelSpec("saliency_student_v1").resolved("models/../models")
    assert spec.model is None and spec.preprocess == "vmaf-student"
    assert spec.model_path == str(stand_ins / "saliency_student_v1.onnx")


def test_not_found_names_the_folders_and_the_fix(tmp_path, stand_ins, no_env):
    with pytest.raises(SalmatError) as exc:
        load_model("saliency_student_v2", model_dir=f"{stand_ins}:{tmp_path / 'gone'}")
    msg = one_line_message(exc)
    assert str(stand_ins) in msg and f"{tmp_path / 'gone'} (no such folder)" in msg
    assert "saliency_student_v2.onnx" in msg and "model_dir=DIR" in msg and "SALMAT_MODEL_DIR" in msg
    with pytest.raises(SalmatError) as exc:
        load_model("saliency_student_v1")
    assert "no folder is set to search" in one_line_message(exc) and "model_dir=DIR" in one_line_message(exc)  # Python spelling


def test_unknown_name_lists_the_known_ids_and_guesses(stand_ins):
    with pytest.raises(SalmatError) as exc:
        load_model("saliency_studnt_v1", model_dir=str(stand_ins))
    msg = one_line_message(exc)
    assert "did you mean saliency_student_v1?" in msg
    assert all(name in msg for name in [*KNOWN_MODELS, "image_signature_v1", "pqft_v1"])


def test_name_and_path_together_is_refused(stand_ins):
    with pytest.raises(SalmatError, match="not both"):
        load_model("saliency_student_v1", model_path=stand_ins / "u2netp_mirror_v1.onnx", model_dir=str(stand_ins))
    with pytest.raises(SalmatError, match="not both"):
        ModelSpec("saliency_student_v1", str(stand_ins / "u2netp_mirror_v1.onnx")).resolved(str(stand_ins))


def test_builtins_still_work_and_ignore_the_folders(stand_ins):
    assert load_model("pqft_v1", model_dir=str(stand_ins)).id == "pqft_v1"
    assert ModelSpec("pqft_v1").resolved(str(stand_ins)) == ModelSpec("pqft_v1")


# ---- which id a file gets ----------------------------------------------------------------


def test_a_file_named_like_a_student_with_another_checksum_gets_sha8(stand_ins):
    model = load_model("saliency_student_v1", model_dir=str(stand_ins))
    assert model.id == f"saliency_student_v1@{sha8(stand_ins / 'saliency_student_v1.onnx')}"
    same = load_model(model_path=stand_ins / "saliency_student_v1.onnx")  # the path gives the same id
    assert same.id == model.id


def test_u2netp_has_no_checksum_so_its_file_keeps_the_plain_id(stand_ins):
    assert load_model("u2netp_mirror_v1", model_dir=str(stand_ins)).id == "u2netp_mirror_v1"


@pytest.mark.parametrize("stem", ["image_signature_v1", "conv@540", "saliency_student_v2"])
def test_stems_that_would_pose_as_another_model_get_sha8(tmp_path, stem):
    path = graphs.save(graphs.conv_sigmoid(), tmp_path / f"{stem}.onnx")
    assert load_model(model_path=path).id == f"{stem}@{sha8(path)}"


def test_any_other_file_keeps_its_stem(tmp_path):
    assert load_model(model_path=graphs.save(graphs.conv_sigmoid(), tmp_path / "my_model.onnx")).id == "my_model"


def test_explicit_label_is_kept_unless_it_claims_another_model(stand_ins):
    path = stand_ins / "saliency_student_v1.onnx"
    assert load_model(model_path=path, model_id="my label").id == "my label"
    assert load_model("saliency_student_v1", model_dir=str(stand_ins), model_id="student-ft").id == "student-ft"
    assert load_model(model_path=path, model_id="u2netp_mirror_v1").id == "u2netp_mirror_v1"  # nothing to check
    for label, needle in [("saliency_student_v2", "is not saliency_student_v2's"),
                          ("saliency_student_v1@540", "claims the known model"),
                          ("image_signature_v1", "built-in"), ("  ", "empty")]:
        with pytest.raises(SalmatError) as exc:
            load_model(model_path=path, model_id=label)
        assert needle in one_line_message(exc), label


@needs_shared
def test_the_real_students_get_their_ids_whatever_the_file_is_called(tmp_path, no_env):
    assert load_model("saliency_student_v1", model_dir=str(SHARED)).id == "saliency_student_v1"
    assert load_model("saliency_student_v2", model_dir=str(SHARED)).id == "saliency_student_v2"
    renamed = tmp_path / "downloaded.onnx"
    renamed.symlink_to(SHARED / "saliency_student_v2.onnx")
    assert load_model(model_path=renamed).id == "saliency_student_v2"
    assert load_model(model_path=renamed, model_id="saliency_student_v2").id == "saliency_student_v2"
    with pytest.raises(SalmatError, match="is not saliency_student_v1's"):
        load_model(model_path=renamed, model_id="saliency_student_v1")


def test_distinct_ids_in_one_run():
    assert distinct_ids([("model", "a" * 64), ("model", "b" * 64), ("pqft_v1", None)]) == [
        "model@aaaaaaaa", "model@bbbbbbbb", "pqft_v1"]
    with pytest.raises(SalmatError, match="listed twice"):
        distinct_ids([("model", "a" * 64), ("model", "a" * 64)])


def test_compare_gives_two_model_onnx_files_sha8_ids(tmp_path, clip, stand_ins, no_env):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    graphs.save(graphs.conv_sigmoid(), a / "model.onnx")
    graphs.save(graphs.conv_sigmoid(weights=graphs.CONV_WEIGHTS * 0.5), b / "model.onnx")
    ids = [m.id for m in load_models([str(a / "model.onnx"), str(b / "model.onnx"), "u2netp_mirror_v1"],
                                     model_dir=str(stand_ins))]
    assert ids == [f"model@{sha8(a / 'model.onnx')}", f"model@{sha8(b / 'model.onnx')}", "u2netp_mirror_v1"]
    result = compare(str(one_row_table(tmp_path, clip)), str(tmp_path / "out"), frame_samples=2, plots=False,
                     models=[str(a / "model.onnx"), str(b / "model.onnx"), "saliency_student_v1"],
                     reducers="mean", model_dir=str(stand_ins), quiet=True)
    assert set(result.long.column("model_id").to_pylist()) == {*ids[:2], f"saliency_student_v1@{sha8(stand_ins / 'saliency_student_v1.onnx')}"}
    twin = tmp_path / "c" / "model.onnx"
    twin.parent.mkdir()
    shutil.copy(a / "model.onnx", twin)  # the same model in another folder: nothing to compare
    with pytest.raises(SalmatError, match="listed twice"):
        load_models([str(a / "model.onnx"), str(twin)])


# ---- the resolved path travels ------------------------------------------------------------


def test_a_resolved_spec_loads_in_another_environment(stand_ins, tmp_path, monkeypatch):
    spec = ModelSpec("saliency_student_v1").resolved(str(stand_ins))
    monkeypatch.setenv("SALMAT_MODEL_DIR", str(tmp_path))  # a worker that would find nothing (or another file)
    monkeypatch.chdir(tmp_path)
    model = pickle.loads(pickle.dumps(spec)).load()
    assert model.describe()["path"] == str(stand_ins / "saliency_student_v1.onnx")


def test_pool_workers_run_the_file_the_driver_found(tmp_path, stand_ins, no_env):
    clips = [write_disc_clip(tmp_path / f"c{i}.mp4", 96, 64, frames=3 + i) for i in range(2)]
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": str(c)} for c in clips])
    out = tmp_path / "o.jsonl"
    # Only the driver is told where the model is: a worker that searched again would find nothing.
    proc = run_cli_inprocess("materialize", "--input", table, "--output", out, "--model", "saliency_student_v1",
                             "--model-dir", stand_ins, "--workers", "2", "--frame-samples", "2", "--quiet",
                             "--audit-json", tmp_path / "a.json")
    assert proc.returncode == 0, proc.stderr
    want = f"saliency_student_v1@{sha8(stand_ins / 'saliency_student_v1.onnx')}"
    assert [r["saliency_model_id"] for r in read_jsonl(out)] == [want, want]
    assert all(r["saliency_status"] == "ok" for r in read_jsonl(out))
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["model"]["path"] == str(stand_ins / "saliency_student_v1.onnx")


def test_values_by_name_equal_values_by_path(tmp_path, clip, stand_ins, no_env):
    table = one_row_table(tmp_path, clip)
    by_name = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "n.jsonl", "--model",
                                "u2netp_mirror_v1", "--model-dir", stand_ins, "--frame-samples", "2", "--quiet")
    by_path = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "p.jsonl", "--model-path",
                                stand_ins / "u2netp_mirror_v1.onnx", "--preprocess", "u2net", "--frame-samples", "2",
                                "--quiet")
    assert by_name.returncode == by_path.returncode == 0, by_name.stderr + by_path.stderr
    assert read_jsonl(tmp_path / "n.jsonl") == read_jsonl(tmp_path / "p.jsonl")


# ---- the CLI, as a user runs it ------------------------------------------------------------


def test_cli_env_var_and_errors_exit_2_in_one_line(tmp_path, clip, stand_ins, monkeypatch):
    table = one_row_table(tmp_path, clip)
    monkeypatch.setenv("SALMAT_MODEL_DIR", f"/nonexistent:{stand_ins}")  # read by the real entry point
    env_run = run_cli("materialize", "--input", table, "--output", tmp_path / "o.jsonl", "--frame-samples", "1",
                      "--model", "u2netp_mirror_v1", "--quiet")
    assert env_run.returncode == 0, env_run.stderr
    assert read_jsonl(tmp_path / "o.jsonl")[0]["saliency_model_id"] == "u2netp_mirror_v1"
    for args, needle in [(["--model", "saliency_student_v2", "--model-dir", stand_ins], "not found"),
                         (["--model", "saliency_student_v3"], "did you mean"),
                         (["--model", "saliency_student_v1", "--model-path", stand_ins / "u2netp_mirror_v1.onnx"],
                          "not both"),
                         (["--model", "pqft_v1", "--model-id", "x"], "renames an ONNX model only")]:
        proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "x.jsonl", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in error_exit_line(proc), args
        assert not (tmp_path / "x.jsonl").exists()


@needs_shared
def test_acceptance_real_student_by_name(tmp_path, clip):
    table = one_row_table(tmp_path, clip)
    out = tmp_path / "o.jsonl"
    proc = run_cli_inprocess("materialize", "--input", table, "--output", out, "--model", "saliency_student_v1",
                             "--model-dir", "../shared/models", "--frame-samples", "2", "--quiet", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (row,) = read_jsonl(out)
    assert row["saliency_model_id"] == "saliency_student_v1" and row["saliency_status"] == "ok"


# ---- model cards ------------------------------------------------------------------------------


def test_the_model_card_picks_the_output(tmp_path):
    rng = np.random.default_rng(3)
    frames = [YuvFrame(rng.integers(16, 236, (24, 40), dtype=np.uint8), rng.integers(16, 241, (12, 20), dtype=np.uint8),
                       rng.integers(16, 241, (12, 20), dtype=np.uint8))]
    path = graphs.save(graphs.two_outputs("image", ("a", "b")), tmp_path / "two.onnx")
    first = load_model(model_path=path).predict(frames)
    (tmp_path / "two.json").write_text(json.dumps({"input_name": "image", "output_name": "b", "notes": "x"}))
    carded = load_model(model_path=path)
    assert carded.describe()["output"]["name"] == "b" and carded.describe()["model_card"] == str(tmp_path / "two.json")
    np.testing.assert_allclose(carded.predict(frames), 1.0 - first, atol=1e-6)
    custom = tmp_path / "pre.toml"
    custom.write_text('output_name = "a"\n')  # an explicit custom preset's names win over the card
    assert load_model(model_path=path, preprocess=f"custom:{custom}").describe()["output"]["name"] == "a"


@pytest.mark.parametrize("card, needle", [
    ("{not json", "cannot read the model card"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"output_name": 5}', "output_name = 5 is not a tensor name"),
    ('{"input_name": ""}', "input_name = '' is not a tensor name"),
    ('{"output_name": "nope"}', "no output named 'nope'"),
])
def test_a_bad_model_card_is_one_line_naming_the_file(tmp_path, card, needle):
    path = graphs.save(graphs.two_outputs("image", ("a", "b")), tmp_path / "two.onnx")
    (tmp_path / "two.json").write_text(card)
    with pytest.raises(SalmatError) as exc:
        load_model(model_path=path)
    msg = one_line_message(exc)
    assert needle in msg and ("two.json" in msg or "model card" in msg)


# ---- salmat models -----------------------------------------------------------------------------


def test_salmat_models_lists_every_id_and_where_it_was_found(stand_ins, tmp_path, no_env):
    proc = run_cli_inprocess("models", "--model-dir", f"{stand_ins}:{tmp_path / 'gone'}")
    assert proc.returncode == 0, proc.stderr
    listing = proc.stdout.split(SOURCES_HEADER, 1)[0]  # where the files were found, before where they come from
    lines = {line.split()[0]: line for line in listing.splitlines() if line.startswith("  ")}
    assert set(lines) == {"image_signature_v1", "spectral_residual_v1", "pqft_v1", *KNOWN_MODELS}
    v1 = lines["saliency_student_v1"]
    assert str(stand_ins / "saliency_student_v1.onnx") in v1 and "MISMATCH" in v1
    assert f"runs as saliency_student_v1@{sha8(stand_ins / 'saliency_student_v1.onnx')}" in v1
    assert "not found" in lines["saliency_student_v2"]
    assert "no published checksum" in lines["u2netp_mirror_v1"] and "preset u2net" in lines["u2netp_mirror_v1"]
    assert f"{tmp_path / 'gone'} (no such folder)" in proc.stdout
    bare = run_cli_inprocess("models")
    assert "no folder to search" in bare.stdout and "SALMAT_MODEL_DIR" in bare.stdout


@pytest.mark.parametrize("given, says", [
    ("{file}", "--model-dir {file} is a file, not a folder"),
    ("{models}:{file}", "--model-dir {file} is a file, not a folder"),
    ("{gone}", "--model-dir {gone}: no such folder"),
    ("{gone}:{gone}2", "--model-dir {gone}:{gone}2: no such folder"),
])
def test_salmat_models_with_no_usable_model_dir_is_one_line_exit_2(stand_ins, tmp_path, no_env, given, says):
    """Was exit 0 and every learned model "not found": a typo looked like missing files."""
    names = {"file": stand_ins / "saliency_student_v1.onnx", "gone": tmp_path / "gone", "models": stand_ins}
    proc = run_cli_inprocess("models", "--model-dir", given.format(**names))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"salmat: error: {says.format(**names)}"), proc.stderr


def test_salmat_models_describes_a_file_with_the_id_it_runs_as(stand_ins):
    proc = run_cli_inprocess("models", "--model-path", stand_ins / "saliency_student_v1.onnx")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"saliency_student_v1@{sha8(stand_ins / 'saliency_student_v1.onnx')}  (onnx)")


@needs_shared
def test_salmat_models_with_the_real_students(monkeypatch):
    monkeypatch.setenv("SALMAT_MODEL_DIR", str(SHARED))
    proc = run_cli("models")
    assert proc.returncode == 0, proc.stderr
    for name in ("saliency_student_v1", "saliency_student_v2"):
        (line,) = [x for x in proc.stdout.split(SOURCES_HEADER, 1)[0].splitlines() if x.startswith(f"  {name} ")]
        assert str(SHARED / f"{name}.onnx") in line and "sha256 ok" in line and "runs as" not in line
        assert sha256_of(SHARED / f"{name}.onnx") == KNOWN_MODELS[name].sha256


def test_a_manifest_model_dir_is_relative_to_the_manifest(tmp_path, clip, stand_ins, monkeypatch, no_env):
    from salmat.batch import run_batch

    one_row_table(stand_ins.parent, clip)
    manifest = stand_ins.parent / "m.json"
    manifest.write_text(json.dumps({"defaults": {"model": "u2netp_mirror_v1", "model_dir": "gone:models",
                                                 "frame_samples": 1, "quiet": True},
                                    "tables": [{"id": "a", "input": "t.jsonl", "output": "o.jsonl"}]}))
    monkeypatch.chdir(clip.parent)  # not the manifest's folder
    report = run_batch(str(manifest), log=None)
    assert report.status == "ok", report.as_dict()
    assert read_jsonl(stand_ins.parent / "o.jsonl")[0]["saliency_model_id"] == "u2netp_mirror_v1"


def test_a_file_given_as_a_folder_is_named_as_such(stand_ins):
    with pytest.raises(SalmatError, match=r"saliency_student_v1\.onnx \(not a folder\)"):
        load_model("saliency_student_v1", model_dir=str(stand_ins / "saliency_student_v1.onnx"))


# ---- a named model is the model that runs -------------------------------------------------------


@pytest.fixture()
def registered(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Two small graphs registered as the students' published checksums (v1, v2), in their own folder."""
    d = tmp_path / "published"
    d.mkdir()
    v1 = graphs.save(graphs.conv_sigmoid(), d / "saliency_student_v1.onnx")
    v2 = graphs.save(graphs.conv_sigmoid(weights=graphs.CONV_WEIGHTS * 0.25), d / "saliency_student_v2.onnx")
    for name, path in (("saliency_student_v1", v1), ("saliency_student_v2", v2)):
        monkeypatch.setitem(KNOWN_MODELS, name, replace(KNOWN_MODELS[name], sha256=sha256_of(path)))
    return v1, v2


def test_a_file_under_a_known_name_that_is_another_known_model_is_refused(tmp_path, clip, registered, no_env):
    v1, v2 = registered
    assert load_model("saliency_student_v1", model_dir=str(v1.parent)).id == "saliency_student_v1"
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(v2, swapped / "saliency_student_v1.onnx")
    with pytest.raises(SalmatError) as exc:
        load_model("saliency_student_v1", model_dir=str(swapped))
    assert "its sha256 is saliency_student_v2's" in one_line_message(exc)
    table = one_row_table(tmp_path, clip)
    proc = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl",
                             "--model", "saliency_student_v1", "--model-dir", swapped, "--frame-samples", "1")
    assert "saliency_student_v2's" in error_exit_line(proc) and not (tmp_path / "o.jsonl").exists()
    listed = run_cli_inprocess("models", "--model-dir", swapped)
    assert "this is saliency_student_v2's file: refused under this name" in listed.stdout
    # by path, the file is what its checksum says (no name was asked for)
    assert load_model(model_path=swapped / "saliency_student_v1.onnx").id == "saliency_student_v2"


def test_a_file_matching_no_known_checksum_still_runs_as_sha8(tmp_path, registered, no_env):
    other = tmp_path / "other"
    other.mkdir()
    path = graphs.save(graphs.conv_sigmoid(weights=graphs.CONV_WEIGHTS * 2.0), other / "saliency_student_v1.onnx")
    assert load_model("saliency_student_v1", model_dir=str(other)).id == f"saliency_student_v1@{sha8(path)}"


@needs_shared
def test_the_real_v2_under_v1s_name_is_refused(tmp_path, no_env):
    (tmp_path / "saliency_student_v1.onnx").symlink_to(SHARED / "saliency_student_v2.onnx")
    with pytest.raises(SalmatError, match="its sha256 is saliency_student_v2's"):
        load_model("saliency_student_v1", model_dir=str(tmp_path))
