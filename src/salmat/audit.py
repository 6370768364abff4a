"""The run record (`--audit-json`): what ran, on what, with which settings, and how it went."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from .outputs import write_json
from .tables import describe_input, describe_output, input_label

if TYPE_CHECKING:
    from .models import SaliencyModel
    from .options import MaterializeOptions
    from .values import ClipResult

AUDIT_SCHEMA = "salmat.audit/v1"


class RunCounts(Protocol):
    """What the record reads from a run's report (`salmat.pipeline.RunReport`, which imports this module)."""

    @property
    def counts(self) -> dict[str, int]: ...
    @property
    def clips(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def ok(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def cached(self) -> int: ...


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("salmat", "av", "numpy", "pyarrow", "onnxruntime", "opencv-python-headless", "scipy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        import av

        versions["ffmpeg"] = ".".join(map(str, av.library_versions.get("libavcodec", ())))
        versions["ffmpeg"] = f"libavcodec {versions['ffmpeg']}"
    except Exception:  # noqa: BLE001 - versions are informative only
        versions["ffmpeg"] = None
    return versions


def build_audit(opts: MaterializeOptions, model: SaliencyModel, report: RunCounts, timings: dict[str, float],
                results: list[ClipResult], argv: list[str] | None) -> dict[str, Any]:
    clips_ok = sum(1 for r in results if r.status == "ok")
    return {
        "schema": AUDIT_SCHEMA,
        **describe_input(opts.input),  # input, input_sha256: stdin and folders too
        "output": describe_output(opts.output),
        "config": {**opts.as_dict(), "input": input_label(opts.input), "output": describe_output(opts.output)},
        "model": model.describe(),
        "summary": {
            "rows": report.total,
            "ok": report.ok,
            "skipped": report.skipped,
            "failed": report.failed,
            "by_status": report.counts,
            "clips": report.clips,
            "clips_ok": clips_ok,
            "clips_cached": report.cached,
        },
        "timings_s": {k: round(v, 6) for k, v in timings.items()},
        "throughput": throughput(report, timings),
        "versions": library_versions(),
        "argv": list(argv) if argv is not None else None,
        "platform": platform.platform(),
    }


def throughput(report: RunCounts, timings: dict[str, float]) -> dict[str, Any]:
    """Clips and rows per second of the whole run (one time base, named in the record), and the
    clips that ran the model per second of the compute step (cache hits excluded)."""
    total = max(timings.get("total", 0.0), 1e-9)
    computed = report.clips - report.cached
    return {
        "time_base": "timings_s.total",
        "clips_per_s": round(report.clips / total, 3),
        "rows_per_s": round(report.total / total, 1),
        "computed_clips_per_compute_s": (round(computed / max(timings.get("compute", 0.0), 1e-9), 3)
                                         if computed else None),
    }


def write_audit(path: str, record: dict[str, Any]) -> None:
    """Atomic like the table (`salmat.outputs`): whole or not at all."""
    write_json(path, record, default=str)
