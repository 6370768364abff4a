"""Command line: argument parsing only; every command is one call into the library.

Exit codes: 0 all rows ok/skipped, 1 some row failed (output still complete),
2 usage or configuration error (one line on stderr, before any work).
"""

from __future__ import annotations

import argparse
import os
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
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="clip worker processes (default: all cores); 1 runs clips in this process")
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
    from .pipeline import print_summary, run

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


def _batch_parser(sub) -> None:
    p = sub.add_parser("batch", help="run materialize over the tables of a manifest",
                       description="Materialize many tables from one JSON/TOML manifest (defaults + tables).",
                       formatter_class=_formatter)
    p.add_argument("--manifest", required=True, help="manifest .json or .toml; relative paths are its folder's")
    p.add_argument("--report-json", default=None, help="write the batch report (salmat.batch/v1) here")
    p.add_argument("--report-md", default=None, help="write a Markdown table of the tables here")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first table that is not ok")
    p.add_argument("--allow-row-failures", action="store_true",
                   help="exit 0 when rows failed (a table that errored still exits 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run_batch)


def _run_batch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .batch import run_batch

    report = run_batch(args.manifest, report_json=args.report_json, report_md=args.report_md,
                       fail_fast=args.fail_fast, allow_row_failures=args.allow_row_failures,
                       quiet=True if args.quiet else None)
    t = report.as_dict()["summary"]
    print(f"salmat: batch status={report.status} tables={t['tables']} "
          + " ".join(f"{k}={v}" for k, v in t["rows"].items()), file=sys.stderr)
    return report.exit_code


def _compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare saliency models and temporal reducers on a table's clips",
                       description="Run several models × reducers on the same decoded frames; write a long "
                                   "table, a JSON/Markdown report and PNG plots into --out.",
                       formatter_class=_formatter)
    p.add_argument("--input", required=True, help="feature table naming the clips")
    p.add_argument("--models", default="image_signature_v1",
                   help="comma-separated built-in ids or .onnx paths")
    p.add_argument("--aggregators", default=",".join(REDUCERS), help="comma-separated temporal reducers")
    p.add_argument("--target", default=None, help="quality column to correlate with (e.g. mos, vmaf)")
    p.add_argument("--ema-alpha", type=float, default=0.6, help="EMA alpha in (0, 1]")
    p.add_argument("--frame-samples", type=int, default=8, help="frames sampled per clip")
    p.add_argument("--sampling", choices=SAMPLING_MODES, default="clip", help="frame sampling rule")
    p.add_argument("--max-frames", type=int, default=8, help="frames decoded by --sampling head")
    p.add_argument("--root", default=None, help="folder that relative paths are joined to")
    p.add_argument("--path-column", default="src", help="column holding each row's clip path")
    p.add_argument("--key-column", default=None, help="row key column for the long table; unset: clip_id, id, … if present")
    p.add_argument("--preprocess", default=None, help="preprocessing preset for .onnx models")
    p.add_argument("--long-format", choices=("parquet", "csv"), default="parquet", help="long table format")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--out", required=True, help="folder for long.*, report.json, report.md and PNGs")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .compare import compare

    result = compare(args.input, args.out, models=args.models, aggregators=args.aggregators, target=args.target,
                     ema_alpha=args.ema_alpha, frame_samples=args.frame_samples, sampling=args.sampling,
                     max_frames=args.max_frames, root=args.root, path_column=args.path_column,
                     key_column=args.key_column, preprocess=args.preprocess, long_format=args.long_format,
                     plots=not args.no_plots, quiet=args.quiet)
    rep = result.report
    print(f"salmat: compare rows={rep['rows']} clips={rep['clips']} combinations={len(rep['combinations'])} "
          f"out={args.out}", file=sys.stderr)
    return 0 if all(v == rep["clips"] for v in rep["clips_ok"].values()) else 1


def _audit_parser(sub) -> None:
    p = sub.add_parser("audit", help="signal audit: do the saliency columns help predict quality?",
                       description="Per-feature spread and correlation with the target, redundant and "
                                   "complementary pairs, and the cross-validated incremental value of the "
                                   "saliency columns.",
                       formatter_class=_formatter)
    p.add_argument("--input", required=True, help="feature table (per clip or per frame)")
    p.add_argument("--target", default="auto",
                   help="target column, or auto (vmaf, vmaf_score, mos_raw_0_100, mos, dmos, score)")
    p.add_argument("--group-by", default=None, help="average rows per value of this column first")
    p.add_argument("--saliency-columns", default=None, help="comma-separated (default saliency_mean,saliency_var)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval")
    p.add_argument("--seed", type=int, default=0, help="random seed (folds, bootstrap)")
    p.add_argument("--no-plots", action="store_true", help="skip signal_audit.png")
    p.add_argument("--out", required=True, help="folder for signal_audit.json, signal_audit.md and signal_audit.png")
    p.set_defaults(handler=_run_audit)


def _run_audit(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .signal_audit import audit_table

    cols = [c.strip() for c in args.saliency_columns.split(",") if c.strip()] if args.saliency_columns else None
    result = audit_table(args.input, args.out, target=args.target, group_by=args.group_by, saliency_columns=cols,
                         folds=args.folds, bootstrap=args.bootstrap, seed=args.seed, plots=not args.no_plots)
    rep = result.report
    inc = rep["incremental"]
    delta = inc.get("delta", {}).get("srocc") if inc["status"] == "done" else None
    print(f"salmat: audit target={rep['target']} n={rep['rows']} saliency={rep['saliency']['status']} "
          f"delta_srocc={delta} out={args.out}", file=sys.stderr)
    return 0


def _preview_parser(sub) -> None:
    p = sub.add_parser("preview", help="contact sheet of one clip: frames, maps, reduced maps",
                       formatter_class=_formatter)
    p.add_argument("clip", help="a video file (or raw .yuv named with its size)")
    p.add_argument("--model", default=None, help="built-in id or .onnx path; unset: image_signature_v1")
    p.add_argument("--preprocess", default=None, help="preprocessing preset for an .onnx model")
    p.add_argument("--frame-samples", type=int, default=6, help="frames sampled")
    p.add_argument("--sampling", choices=SAMPLING_MODES, default="clip", help="frame sampling rule")
    p.add_argument("--ema-alpha", type=float, default=0.6, help="EMA alpha in (0, 1]")
    p.add_argument("--panel-width", type=int, default=200, help="pixel width of each panel")
    p.add_argument("--colors", type=int, default=256, help="palette size of the PNG (0: full colour)")
    p.add_argument("--default-width", type=int, default=None, help="raw .yuv width (else from a _WxH_ name token)")
    p.add_argument("--default-height", type=int, default=None, help="raw .yuv height")
    p.add_argument("--out", default="sheet.png", help="PNG to write")
    p.set_defaults(handler=_run_preview)


def _run_preview(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .preview import preview

    result = preview(args.clip, args.out, model=args.model, preprocess=args.preprocess,
                     frame_samples=args.frame_samples, sampling=args.sampling, ema_alpha=args.ema_alpha,
                     panel_width=args.panel_width, colors=args.colors, default_width=args.default_width,
                     default_height=args.default_height)
    w, h = result.layout.size
    print(f"salmat: preview frames={result.layout.frames} size={w}x{h} out={result.path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="salmat", description="Saliency columns for video-quality feature tables.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _materialize_parser(sub)
    _models_parser(sub)
    _batch_parser(sub)
    _compare_parser(sub)
    _audit_parser(sub)
    _preview_parser(sub)
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
