"""Command line: argument parsing only; every command is one call into the library.

Exit codes: 0 all rows ok/skipped, 1 some row failed (output still complete),
2 usage or configuration error (one line on stderr, before any work).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import SalmatError
from .options import COMPAT_MODES, DEVICES, PRECISIONS, SAMPLING_MODES, MaterializeOptions
from .temporal import REDUCERS

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"salmat: error: {message} (see `{self.prog} --help`)\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=36, width=100)


def _materialize_parser(sub) -> None:
    p = sub.add_parser("materialize", help="add saliency columns to a feature table",
                       description="Add saliency_mean/saliency_var and provenance columns to a feature table.",
                       formatter_class=_formatter)
    p.add_argument("--input", required=True, help="feature table: .jsonl, .parquet or .csv (never modified)")
    p.add_argument("--output", required=True, help="output table; format from the suffix; written atomically")
    g = p.add_argument_group("sources")
    g.add_argument("--path-column", default="src", help="column holding each row's clip path")
    g.add_argument("--root", default=None, help="folder that relative paths are joined to")
    g.add_argument("--confine-to-root", action="store_true", help="refuse sources outside --root (status outside-root)")
    g.add_argument("--width-column", default="width", help="raw .yuv width column")
    g.add_argument("--height-column", default="height", help="raw .yuv height column")
    g.add_argument("--default-width", type=int, default=None, help="raw .yuv width when the row has none")
    g.add_argument("--default-height", type=int, default=None, help="raw .yuv height when the row has none")
    g.add_argument("--max-pixels", type=int, default=8192 * 8192, help="refuse frames larger than this before decoding")
    g = p.add_argument_group("frames and temporal reducer")
    g.add_argument("--frame-samples", type=int, default=8, help="frames sampled per clip")
    g.add_argument("--sampling", choices=SAMPLING_MODES, default="clip",
                   help="clip: evenly over the whole clip; head: among the first --max-frames (historical)")
    g.add_argument("--max-frames", type=int, default=8, help="frames decoded by --sampling head")
    g.add_argument("--temporal-aggregator", choices=REDUCERS, default="mean", help="temporal reducer")
    g.add_argument("--ema-alpha", type=float, default=0.6, help="EMA alpha in (0, 1]")
    g.add_argument("--compat", choices=COMPAT_MODES, default=None,
                   help="historical: reproduce the earlier tool (head sampling, its motion weights and preprocessing)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="built-in model id (default image_signature_v1; see `salmat models`)")
    g.add_argument("--model-path", default=None, help="an ONNX saliency model file")
    g.add_argument("--model-id", default=None, help="label for an ONNX model (default: the file's stem)")
    g.add_argument("--preprocess", default=None, help="ONNX preprocessing preset: vmaf-student, u2net, custom:FILE")
    g.add_argument("--device", choices=DEVICES, default="cpu", help="where ONNX models run")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32", help="GPU precision (torch path)")
    g = p.add_argument_group("columns")
    g.add_argument("--overwrite", action="store_true", help="recompute rows that already hold saliency values")
    g.add_argument("--status-column", default="saliency_status", help="status column ('' omits it)")
    g.add_argument("--model-id-column", default="saliency_model_id", help="model id column ('' omits it)")
    g.add_argument("--aggregator-column", default="saliency_aggregator", help="reducer column ('' omits it)")
    g.add_argument("--ema-alpha-column", default="saliency_ema_alpha", help="EMA alpha column ('' omits it)")
    g.add_argument("--error-column", default="saliency_error", help="error message column ('' omits it)")
    g = p.add_argument_group("run")
    g.add_argument("--workers", type=int, default=1, help="parallel clip workers")
    g.add_argument("--clip-timeout", type=float, default=None, help="seconds before a clip is abandoned")
    g.add_argument("--cache", default=None, help="SQLite result cache path")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    g.add_argument("--engine", choices=("local", "ray"), default="local", help="local process pool or Ray Data")
    g.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local cluster)")
    g.add_argument("--num-gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor")
    g.add_argument("--audit-json", default=None, help="write the run record here")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_materialize)


def _run_materialize(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .materialize import print_summary, run

    fields = set(MaterializeOptions.__dataclass_fields__)
    settings = {k: v for k, v in vars(args).items() if k in fields}
    report = run(MaterializeOptions(**settings), argv=list(argv))
    print_summary(report)
    return report.exit_code


def _models_parser(sub) -> None:
    p = sub.add_parser("models", help="list built-in models, or describe an ONNX file",
                       formatter_class=_formatter)
    p.add_argument("--model-path", default=None, help="an ONNX file to describe (id, sha256, inputs/outputs)")
    p.set_defaults(handler=_run_models)


def _run_models(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .models import BUILTIN_MODELS, DEFAULT_MODEL_ID

    if args.model_path:
        from .models.onnx import describe_model_file, format_model_description

        print(format_model_description(describe_model_file(args.model_path)))
        return 0
    for model_id, factory in BUILTIN_MODELS.items():
        info = factory().describe()
        default = " (default)" if model_id == DEFAULT_MODEL_ID else ""
        print(f"{model_id}{default}\t{info.get('algorithm', '')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="salmat", description="Saliency columns for video-quality feature tables.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _materialize_parser(sub)
    _models_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args, argv)
    except SalmatError as exc:
        print(f"salmat: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("salmat: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
