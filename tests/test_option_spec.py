"""The option spec: each command's CLI flags, Python keywords, defaults, docs and checks agree."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

import salmat
from conftest import run_cli_inprocess, write_jsonl
from salmat.batch import run_batch
from salmat.cli import build_parser
from salmat.command_options import AuditOptions, BatchOptions, CompareOptions, FramesOptions, PreviewOptions
from salmat.compare import compare
from salmat.errors import SalmatError
from salmat.frames_command import frame_table
from salmat.option_spec import cli_spelling, from_namespace, settings
from salmat.options import MaterializeOptions
from salmat.preview import preview
from salmat.signal_audit import audit_arrow, audit_table

ROOT = Path(__file__).resolve().parents[1]

# command → (options class, API function, CLI arguments that are required, the same as API keywords)
COMMANDS = {
    "materialize": (MaterializeOptions, salmat.materialize, ["--input", "t.jsonl", "--output", "o.jsonl"],
                    {"input": "t.jsonl", "output": "o.jsonl"}),
    "compare": (CompareOptions, compare, ["--input", "t.jsonl", "--out", "o"], {"input": "t.jsonl", "out": "o"}),
    "preview": (PreviewOptions, preview, ["clip.mp4"], {"clip": "clip.mp4"}),
    "batch": (BatchOptions, run_batch, ["--manifest", "m.json"], {"manifest": "m.json"}),
    "audit": (AuditOptions, audit_table, ["--input", "t.jsonl", "--out", "o"], {"input": "t.jsonl", "out": "o"}),
    "frames": (FramesOptions, frame_table, ["clip.mp4", "--out", "o.jsonl"], {"dis": "clip.mp4", "out": "o.jsonl"}),
}
API_ONLY = {"log"}   # run_batch's progress stream: a Python object, not a setting


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_defaults_are_the_api_defaults(command):
    cls, _, argv, required = COMMANDS[command]
    args = build_parser().parse_args([command, *argv])
    assert cls.build(**from_namespace(args, cls)) == cls.build(**required)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_keyword_is_a_flag_and_every_flag_a_keyword(command):
    cls, _, _, _ = COMMANDS[command]
    dests = {a.dest for a in arguments(subparsers()[command])}
    assert dests == {f.name for f in fields(cls)}


@pytest.mark.parametrize("command", COMMANDS)
def test_api_signature_agrees_with_the_options(command):
    cls, function, _, _ = COMMANDS[command]
    defaults = {f.name: f.default for f in fields(cls)}
    params = inspect.signature(function).parameters.values()
    assert any(p.kind is p.VAR_KEYWORD for p in params), "settings must be taken as **keywords"
    for p in params:
        if p.kind is p.VAR_KEYWORD or p.name in API_ONLY:
            continue
        assert p.name in defaults, f"{function.__name__}({p.name}) is not a {cls.__name__} field"
        if p.default is not p.empty and p.default is not None:   # None: "the options' default"
            assert p.default == defaults[p.name]


def test_every_flag_is_in_the_usage_docs():
    docs = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    missing = [f"salmat {name} {flag}" for name, parser in subparsers().items()
               for action in arguments(parser) for flag in action.option_strings
               if not re.search(re.escape(flag) + r"(?![\w-])", docs)]
    assert not missing, f"not in docs/usage.md: {missing}"


def test_every_setting_and_flag_has_help():
    for cls, *_ in COMMANDS.values():
        assert all(s.help.strip() for _, s in settings(cls)), cls.__name__
    for name, parser in subparsers().items():
        assert all(a.help and a.help.strip() for a in arguments(parser)), name


@pytest.mark.parametrize("call", [
    lambda: salmat.materialize("t.jsonl", "o.jsonl", frame_sample=2),
    lambda: compare("t.jsonl", "o", modles="image_signature_v1"),
    lambda: preview("clip.mp4", "o.png", frame_sampels=2),
    lambda: run_batch("m.json", fail_fst=True),
    lambda: audit_table("t.jsonl", "o", fold=3),
    lambda: audit_arrow(None, "t", bootstraps=3),
], ids=["materialize", "compare", "preview", "batch", "audit_table", "audit_arrow"])
def test_a_misspelt_keyword_is_an_error_not_a_default(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SalmatError, match="unknown option") as err:
        call()
    message = str(err.value)
    assert "\n" not in message and "did you mean" in message and "knows:" in message
    assert not list(tmp_path.iterdir())     # refused before anything was read or written


@pytest.mark.parametrize("cls, required, values, needle", [
    (MaterializeOptions, {"input": "t", "output": "o"}, {"ema_alpha": 1.5},
     "--ema-alpha must be in (0, 1], got 1.5; e.g. --ema-alpha 0.6"),
    (CompareOptions, {"input": "t", "out": "o"}, {"ema_alpha": math.nan}, "--ema-alpha must be in (0, 1]"),
    (PreviewOptions, {"clip": "c"}, {"ema_alpha": 0}, "--ema-alpha must be in (0, 1]"),
    (MaterializeOptions, {"input": "t", "output": "o"}, {"clip_timeout": math.inf}, "--clip-timeout"),
    (MaterializeOptions, {"input": "t", "output": "o"}, {"clip_timeout": math.nan}, "--clip-timeout"),
    (MaterializeOptions, {"input": "t", "output": "o"}, {"clip_timeout": 0}, "--clip-timeout"),
    (MaterializeOptions, {"input": "t", "output": "o"}, {"workers": 0}, "--workers must be a whole number ≥ 1"),
    (CompareOptions, {"input": "t", "out": "o"}, {"frame_samples": 2.5}, "--frame-samples must be a whole number"),
    (PreviewOptions, {"clip": "c"}, {"frame_samples": True}, "--frame-samples must be a whole number"),
    (PreviewOptions, {"clip": "c"}, {"colors": 300}, "--colors must be a whole number from 0 to 256"),
    (PreviewOptions, {"clip": "c"}, {"panel_width": 8}, "--panel-width must be a whole number ≥ 16"),
    (PreviewOptions, {"clip": "c"}, {"reducers": "mean,median"}, "--reducers must be one of"),
    (CompareOptions, {"input": "t", "out": "o"}, {"reducers": ["mean", "median"]}, "got 'median'"),
    (CompareOptions, {"input": "t", "out": "o"}, {"models": " , "}, "--models must be a non-empty"),
    (CompareOptions, {"input": "t", "out": "o"}, {"sampling": "tail"}, "--sampling must be one of clip, head"),
    (CompareOptions, {"input": "t", "out": "o"}, {"long_format": "xlsx"}, "--long-format"),
    (CompareOptions, {"input": "t", "out": "o"}, {"plots": "no"}, "--plots must be true or false"),
    (BatchOptions, {"manifest": "m"}, {"quiet": "yes"}, "--quiet must be true or false"),
    (AuditOptions, {"input": "t"}, {"folds": 1}, "--folds must be a whole number ≥ 2"),
    (AuditOptions, {"input": "t"}, {"bootstrap": -1}, "--bootstrap must be a whole number ≥ 0"),
    (AuditOptions, {"input": "t"}, {"ridge_alpha": math.inf}, "--ridge-alpha"),
])
def test_validation_comes_from_the_spec(cls, required, values, needle):
    with pytest.raises(SalmatError) as err, cli_spelling():  # as the command line says it
        cls.build(**required, **values).validate()
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("flag, value", [("--clip-timeout", "inf"), ("--clip-timeout", "nan"),
                                         ("--ema-alpha", "1.5"), ("--max-pixels", "0")])
def test_bad_values_on_the_command_line_exit_2_before_any_work(tmp_path, flag, value):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "missing.mp4"}])
    result = run_cli_inprocess("materialize", "--input", table, "--output", tmp_path / "o.jsonl", flag, value)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "e.g." in lines[0], result.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_flag_shapes_follow_the_defaults():
    parse = build_parser().parse_args
    # A True default is a flag pair; the API keeps plots=True, the CLI has --no-plots.
    assert parse(["compare", "--input", "t", "--out", "o", "--no-plots"]).plots is False
    assert parse(["audit", "--input", "t", "--out", "o"]).plots is True
    # batch's quiet is three-valued: unset leaves each table's own setting.
    assert parse(["batch", "--manifest", "m"]).quiet is None
    assert parse(["batch", "--manifest", "m", "--quiet"]).quiet is True
    # A shared setting keeps its one default (preview samples what materialize samples), and list
    # settings are parsed from comma text.
    assert PreviewOptions.build(clip="c").frame_samples == 8
    assert CompareOptions.build(input="t", out="o").frame_samples == 8
    args = parse(["compare", "--input", "t", "--out", "o", "--models", "a, b"])
    assert CompareOptions.build(**from_namespace(args, CompareOptions)).models == ("a", "b")
    assert CompareOptions.build(input="t", out="o", models=["a", "b"]).models == ("a", "b")


def test_each_default_is_written_once_in_src():
    text = {p: p.read_text(encoding="utf-8") for p in (ROOT / "src" / "salmat").rglob("*.py")}
    pixels = [p.name for p, t in text.items() if re.search(r"8192\s*\*\s*8192", t)]
    assert pixels == ["defaults.py"]
    alphas = [p.name for p, t in text.items() if re.search(r"(?i)ema_alpha[^=\n]*=\s*0\.6\b", t)]
    assert alphas == ["defaults.py"]


def test_building_the_parser_imports_nothing_heavy():
    heavy = ["numpy", "pyarrow", "av", "cv2", "onnxruntime", "matplotlib", "scipy", "torch"]
    code = ("import json, sys, salmat.cli; salmat.cli.build_parser(); "
            f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout) == []


@pytest.mark.parametrize("argv", [
    ["materialize", "--input", "t.jsonl", "--output", "o.jsonl", "--frame-sample", "3"],
    ["materialize", "--input", "t.jsonl", "--output", "o.jsonl", "--overwrit"],
    ["compare", "--input", "t.jsonl", "--out", "d", "--model", "image_signature_v1"],
])
def test_a_flag_prefix_is_a_typo_not_a_guess(argv, capsys):
    """argparse would take `--frame-sample` for `--frame-samples`: a typo must be an error."""
    from salmat.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


# ---- the typed API: each TypedDict agrees with its options class ----------------------------------


def _members(hint) -> set:
    import types
    import typing

    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return set(typing.get_args(hint))
    return {hint}


@pytest.mark.parametrize("cls, typed, positional", [
    (MaterializeOptions, salmat.MaterializeSettings, {"input", "output"}),
    (CompareOptions, salmat.CompareSettings, {"input", "out"}),
    (PreviewOptions, salmat.PreviewSettings, {"clip", "out"}),
    (FramesOptions, salmat.FramesSettings, {"dis", "ref", "out"}),
])
def test_each_typed_dict_names_every_setting_and_accepts_its_type(cls, typed, positional):
    import typing

    declared = {f.name for f, _ in settings(cls)}
    hints = typing.get_type_hints(typed)
    assert set(hints) == declared - positional, "the TypedDict and the options class name different settings"
    options = typing.get_type_hints(cls)
    for name, hint in hints.items():
        accepted = _members(hint)
        # what the options class stores, the API accepts (paths also as PathLike, lists also as text)
        stored = _members(options[name])
        assert all(t in accepted or typing.get_origin(t) is tuple for t in stored), (name, hint, options[name])


def test_the_typed_api_is_what_the_functions_take():
    import typing

    for function, typed in ((salmat.compare_models, salmat.CompareSettings),
                            (salmat.contact_sheet, salmat.PreviewSettings)):
        kwargs = inspect.signature(function).parameters["settings"]
        assert typing.get_args(kwargs.annotation if not isinstance(kwargs.annotation, str) else
                               typing.get_type_hints(function)["settings"]) == (typed,)
    assert salmat.MaterializeOptions is MaterializeOptions


def _comma_lists() -> list[tuple[type, str, tuple[str, ...] | None]]:
    """Every comma-list setting of every command: (options class, name, its choices)."""
    from salmat.command_options import ModelsOptions, ModelsPullOptions
    from salmat.option_spec import comma_list

    found = [(cls, f.name, s.choices) for cls in [c[0] for c in COMMANDS.values()] for f, s in settings(cls)
             if s.convert is comma_list]
    assert not [f for cls in (ModelsOptions, ModelsPullOptions) for f, s in settings(cls) if s.convert is comma_list]
    return found


@pytest.mark.parametrize("cls, name, choices", _comma_lists(), ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("pattern", ["{a},,{b}", "{a},{b},", ",{a}", "{a}, ,{b}"])
def test_an_empty_item_in_a_comma_list_is_a_usage_error(cls, name, choices, pattern):
    """`--models a,,b` and a trailing comma were read as `a,b`: the empty item is refused, named."""
    a, b = choices[:2] if choices else ("x_1", "x_2")
    required = next(c[3] for c in COMMANDS.values() if c[0] is cls)
    value = pattern.format(a=a, b=b)
    with pytest.raises(SalmatError) as err, cli_spelling():
        cls.build(**{**required, name: value}).validate()
    message = str(err.value)
    assert message.startswith(f"--{name.replace('_', '-')} must be a comma-separated list with no empty item")
    assert f"got {value.replace(' ', '')!r}" in message and "\n" not in message
    with pytest.raises(SalmatError, match=f"^{name} must be"):
        cls.build(**{**required, name: [a, "", b]}).validate()  # a Python list alike


def test_an_empty_item_on_the_command_line_exits_2_naming_the_setting(tmp_path):
    table = write_jsonl(tmp_path / "t.jsonl", [{"src": "missing.mp4", "mos": 1.0}])
    proc = run_cli_inprocess("compare", "--input", table, "--out", tmp_path / "o", "--models",
                             "image_signature_v1,,spectral_residual_v1", "--no-plots")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("salmat: error: --models must be a comma-separated list with no empty item"), proc.stderr
    assert not (tmp_path / "o").exists()


def test_an_earlier_name_is_taken_from_python_as_on_the_command_line():
    assert CompareOptions.build(input="t", out="o", aggregators="mean,max").reducers == ("mean", "max")
    with pytest.raises(SalmatError, match="aggregators is the earlier name of reducers: pass one of them"):
        CompareOptions.build(input="t", out="o", aggregators="mean", reducers="max")
