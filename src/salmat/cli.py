"""Command line: argument parsing only; every command is one call into the library.

Exit codes: 0 all rows ok/skipped, 1 some row failed (output still complete),
2 usage or configuration error (one line on stderr, before any work), 3 an internal
error (a bug in salmat: one line; outputs already published, e.g. by `batch`, stay).
"""

from __future__ import annotations

import argparse
import difflib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, cast

from .command_options import (
    AuditOptions,
    BatchOptions,
    CompareOptions,
    FramesOptions,
    ModelsOptions,
    ModelsPullOptions,
    PreviewOptions,
)
from .errors import SalmatError
from .option_spec import Options, add_settings, cli_spelling, from_namespace
from .options import MaterializeOptions
from .outputs import begin_run, end_run, install_sigterm_cleanup, stop_requested, stopped_message

EXIT_USAGE = 2
EXIT_INTERNAL = 3

# What each subcommand stores as `handler`: parsed arguments and argv in, exit code out.
Handler = Callable[[argparse.Namespace, Sequence[str]], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, not a usage dump, and a flag is
    never guessed from a prefix (`--frame-sample` is a typo, not `--frame-samples`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"salmat: error: {message} (see `{self.prog} --help`)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: a help text that already says its default keeps its own words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        return text if "default" in text else super()._get_help_string(action)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return _Formatter(prog, max_help_position=36, width=100)


def _command(sub: argparse._SubParsersAction[_Parser], name: str, options: type[Options], handler: Handler,
             **kw: Any) -> argparse.ArgumentParser:
    """A subcommand whose arguments are `options`' settings (declared once in `salmat.options`)."""
    p = sub.add_parser(name, formatter_class=_formatter, **kw)
    add_settings(p, options)
    p.set_defaults(handler=handler)
    return p


def _materialize_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    _command(sub, "materialize", MaterializeOptions, _run_materialize, help="add saliency columns to a feature table",
             description="Add saliency_mean/saliency_var and provenance columns to a feature table.")


def _run_materialize(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .pipeline import print_summary, run

    report = run(MaterializeOptions.build(**from_namespace(args, MaterializeOptions)), argv=list(argv))
    print_summary(report)
    return report.exit_code


def _frames_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    _command(sub, "frames", FramesOptions, _run_frames, help="one row per frame of a clip (with a reference: "
             "every full-reference column)",
             description="Clip in, frames out: one row per frame of DIS (index, pts time, saliency statistics; with "
                         "REF, psnr_y, ssim_y and the saliency-weighted columns), through materialize --per-frame.")


def _run_frames(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .frames_command import frame_table
    from .pipeline import print_summary

    report = frame_table(**from_namespace(args, FramesOptions))
    print_summary(report)
    return cast(int, report.exit_code)


def _models_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(sub, "models", ModelsOptions, _run_models,
                 help="list the known models and where their files are, or describe an ONNX file")
    actions = p.add_subparsers(dest="models_action", parser_class=_Parser, metavar="{pull}",
                               help="pull NAME: download a known model's file and check its sha256")
    _command(actions, "pull", ModelsPullOptions, _run_models_pull,
             help="download a known model's file, check its sha256 and install it",
             description="Download a known learned model (see `salmat models`), check its published sha256, and "
                         "install it atomically in --model-dir (a mismatch is refused and nothing is left behind).")


def _run_models(args: argparse.Namespace, argv: Sequence[str]) -> int:
    opts = ModelsOptions.build(**from_namespace(args, ModelsOptions))
    opts.validate()
    if opts.model_path:
        from .models.onnx import describe_model_file, format_model_description

        print(format_model_description(describe_model_file(opts.model_path)))
        return 0
    from .models.registry import format_known_models

    print(format_known_models(opts.model_dir))
    return 0


def _run_models_pull(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .model_files import pull_model

    installed = pull_model(**from_namespace(args, ModelsPullOptions))
    print(f"salmat: models pull {args.name} installed={installed}", file=sys.stderr)
    return 0


def _batch_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    _command(sub, "batch", BatchOptions, _run_batch, help="run materialize over the tables of a manifest",
             description="Materialize many tables from one JSON/TOML manifest (defaults + tables).")


def _run_batch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .batch import run_batch

    report = run_batch(**from_namespace(args, BatchOptions))
    t = report.as_dict()["summary"]
    print(f"salmat: batch status={report.status} tables={t['tables']} "
          + " ".join(f"{k}={v}" for k, v in t["rows"].items()), file=sys.stderr)
    return report.exit_code


def _compare_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    _command(sub, "compare", CompareOptions, _run_compare,
             help="compare saliency models and temporal reducers on a table's clips",
             description="Run several models × reducers on the same decoded frames; write a long "
                         "table, a JSON/Markdown report and PNG plots into --out.")


def _run_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .compare import compare

    result = compare(**from_namespace(args, CompareOptions))
    rep = result.report
    runs = rep["cache"].values()  # per model; summed so a quiet rerun still says it computed nothing
    print(f"salmat: compare rows={rep['rows']} clips={rep['clips']} combinations={len(rep['combinations'])} "
          f"computed={sum(r['computed'] for r in runs)} cached={sum(r['from_cache'] for r in runs)} "
          f"out={args.out}", file=sys.stderr)
    return 0 if all(v == rep["clips"] for v in rep["clips_ok"].values()) else 1


def _audit_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    _command(sub, "audit", AuditOptions, _run_audit,
             help="signal audit: do the saliency and ROI columns help predict quality?",
             description="Per-feature spread and correlation with the target, the feature families "
                         "(baseline, plain full-reference, ROI-weighted, saliency), redundant and "
                         "complementary pairs, and the cross-validated value of the saliency columns and "
                         "of ROI weighting over plain PSNR/SSIM, per saliency set (model).")


def _run_audit(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .signal_audit import audit_table, summary_line

    result = audit_table(**from_namespace(args, AuditOptions))
    print(summary_line(result.report, args.out), file=sys.stderr)
    return 0


def _preview_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    _command(sub, "preview", PreviewOptions, _run_preview,
             help="contact sheet of one clip: frames, maps, reduced maps")


def _run_preview(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .preview import preview

    result = preview(**from_namespace(args, PreviewOptions))
    for reducer, (mean, var) in result.stats.items():  # full precision: the very values materialize writes
        print(f"{reducer} saliency_mean={mean!r} saliency_var={var!r}")
    w, h = result.layout.size
    indices = ",".join(map(str, result.indices)) if result.indices is not None else "unknown"
    print(f"salmat: preview model={result.model_id} frames={result.layout.frames} indices={indices} size={w}x{h} "
          f"out={result.path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="salmat", description="Saliency columns for video-quality feature tables.")
    parser.add_argument("--version", action="version", version=f"salmat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _materialize_parser(sub)
    _frames_parser(sub)
    _models_parser(sub)
    _batch_parser(sub)
    _compare_parser(sub)
    _audit_parser(sub)
    _preview_parser(sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argparse, plus: an unknown flag is refused by its own subcommand (whose --help lists the
    flags) with the closest known flag (`--colum-prefix` → did you mean --column-prefix?)."""
    chain = _command_chain(parser, argv)
    known = {s for command in chain for action in command._actions for s in action.option_strings}
    typos = [a for a in argv if a.startswith("--") and a != "--" and a.split("=", 1)[0] not in known]
    if typos:  # before argparse, which may take the typo's value for a sub-subcommand (`models --x d`)
        _refuse_unknown(chain[-1], known, typos)
    args, extras = parser.parse_known_args(argv)
    if extras:
        command = _subcommands(parser).get(getattr(args, "command", None) or "", parser)
        _refuse_unknown(command, {s for action in command._actions for s in action.option_strings}, extras)
    return args


def _command_chain(parser: argparse.ArgumentParser, argv: list[str]) -> list[argparse.ArgumentParser]:
    """The parser and the (sub)commands argv names, outermost first (`models pull`: salmat, models, pull)."""
    chain = [parser]
    for word in argv:
        if word == "--":
            break
        found = _subcommands(chain[-1]).get(word)
        if found is not None:
            chain.append(found)
    return chain


def _refuse_unknown(command: argparse.ArgumentParser, known: set[str], extras: list[str]) -> NoReturn:
    hints = [m for e in extras if e.startswith("-")
             for m in difflib.get_close_matches(e.split("=", 1)[0].replace("_", "-"), sorted(known), n=1,
                                                cutoff=0.7)]
    guess = f" (did you mean {', '.join(dict.fromkeys(hints))}?)" if hints else ""
    command.error(f"unrecognized arguments: {' '.join(extras)}{guess}")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        end_run()  # the exit status is decided: a later call in this process starts unstopped


def _main(argv: list[str]) -> int:
    args = _parse(build_parser(), argv)
    install_sigterm_cleanup()  # SIGTERM removes salmat's temp files, then exits 143
    begin_run()
    try:
        handler = cast(Handler, args.handler)
        with cli_spelling():  # messages name --flags, not Python keywords
            code = handler(args, argv)
    except SalmatError as exc:
        # One line even when a file or column name holds a line break: shown escaped.
        print("salmat: error: " + str(exc).replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(stopped_message("interrupted"), file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last fence: a bug must not reach the user as a traceback
        code = EXIT_INTERNAL
        if stop_requested() is None:  # else a signal broke a library midway: said below
            detail = " ".join(str(exc).split())[:300]
            print(f"salmat: error: internal error ({type(exc).__name__}: {detail}); the file being written when "
                  "it happened was not published (files finished before it, such as earlier tables of a batch, "
                  "are complete); please report this with the command line", file=sys.stderr)
            return code
    stopped = stop_requested()  # a signal some library swallowed: its output was not published
    if stopped is not None:
        if stopped != 128 + signal.SIGTERM:  # SIGTERM's handler has said "terminated" already
            print(stopped_message("interrupted"), file=sys.stderr)
        return stopped
    return code


if __name__ == "__main__":
    sys.exit(main())
