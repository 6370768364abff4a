"""`salmat batch`: many feature tables, one manifest, one report.

A manifest (JSON, or TOML when its name ends in `.toml`) holds `defaults` and
`tables`:

```toml
[defaults]
model = "image_signature_v1"
frame_samples = 4

[[tables]]
id = "konvid"
input = "konvid.jsonl"
output = "out/konvid_sal.parquet"
audit_json = "out/konvid_audit.json"
root = "/data/konvid"
```

Every table key is a `materialize` option (see `salmat materialize --help`,
dashes as underscores) plus `id`; a table's keys override `defaults`. Relative
paths (`input`, `output`, `audit_json`, `root`, `model_path`, `cache`, a
`custom:FILE` preprocess, each folder of `model_dir`) are resolved against the
manifest's folder. The whole
manifest is checked — unknown keys, a missing `id`/`input`/`output`, duplicate
ids or outputs, bad option values — before any table runs (`SalmatError`,
exit 2). Each table then runs `salmat.pipeline.run`; a table whose run
raises `SalmatError` (say its input is missing) gets status `error` and the
rest still run. Clips shared between tables are shared through the result
cache (the `cache`/`no_cache` options), exactly as separate runs would be.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from .command_options import BatchOptions
from .errors import SalmatError
from .option_spec import did_you_mean, named, passing
from .options import MaterializeOptions, option_names
from .outputs import preflight, write_text

SCHEMA = "salmat.batch/v1"
PATH_KEYS = ("input", "output", "audit_json", "root", "model_path", "cache")
TABLE_ONLY_KEYS = ("id", "input", "output", "audit_json")
REQUIRED_KEYS = ("id", "input", "output")

STDERR: Any = object()  # `run_batch(log=...)` default: whatever `sys.stderr` is when it runs

# Per-table statuses; `not-run` marks tables after a `--fail-fast` stop.
TABLE_OK, TABLE_ROW_FAILURES, TABLE_ERROR, TABLE_NOT_RUN = "ok", "row-failures", "error", "not-run"
# Batch statuses.
BATCH_OK, BATCH_ROW_FAILURES, BATCH_FAILED = "ok", "row-failures", "failed"


@dataclass
class TableJob:
    id: str
    options: MaterializeOptions


@dataclass
class Manifest:
    path: str
    jobs: list[TableJob]


@dataclass
class TableResult:
    id: str
    status: str
    input: str
    output: str
    audit_json: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    clips: int = 0
    seconds: float = 0.0
    error: str | None = None
    cache: dict[str, Any] | None = None   # the run's cache use: hits are clips not computed again

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BatchReport:
    manifest: str
    tables: list[TableResult]
    seconds: float
    allow_row_failures: bool = False
    fail_fast: bool = False

    @property
    def status(self) -> str:
        statuses = {t.status for t in self.tables}
        if TABLE_ERROR in statuses:
            return BATCH_FAILED
        if TABLE_ROW_FAILURES in statuses:
            return BATCH_ROW_FAILURES
        return BATCH_OK

    @property
    def exit_code(self) -> int:
        """0 all ok; 1 a table errored, or rows failed without `allow_row_failures`."""
        if self.status == BATCH_FAILED:
            return 1
        if self.status == BATCH_ROW_FAILURES and not self.allow_row_failures:
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        totals = {k: sum(getattr(t, k) for t in self.tables) for k in ("total", "ok", "skipped", "failed", "clips")}
        by_status: dict[str, int] = {}
        for t in self.tables:
            by_status[t.status] = by_status.get(t.status, 0) + 1
        return {
            "schema": SCHEMA,
            "manifest": self.manifest,
            "status": self.status,
            "exit_code": self.exit_code,
            "fail_fast": self.fail_fast,
            "allow_row_failures": self.allow_row_failures,
            "seconds": round(self.seconds, 3),
            "summary": {"tables": len(self.tables), "tables_by_status": by_status, "rows": totals},
            "tables": [t.as_dict() for t in self.tables],
        }

    def markdown(self) -> str:
        lines = [f"# salmat batch: {os.path.basename(self.manifest)}", "",
                 f"Status: **{self.status}** (exit {self.exit_code}), {len(self.tables)} table(s), "
                 f"{self.seconds:.1f} s.", "",
                 "| id | status | total | ok | skipped | failed | output |",
                 "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for t in self.tables:
            lines.append(f"| {_md(t.id)} | {t.status} | {t.total} | {t.ok} | {t.skipped} | {t.failed} | "
                         f"{_md(t.output)} |")
        errors = [t for t in self.tables if t.error]
        if errors:
            lines += ["", "## Errors", ""]
            lines += [f"- `{_md(t.id)}`: {_md(t.error or '')}" for t in errors]
        return "\n".join(lines) + "\n"


def _escaped(text: str) -> str:
    """`text` on one line: a newline, tab or other control character in a table id (or a path in
    an error) is shown escaped (`\\n`), so one table's progress line stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ---- manifest ---------------------------------------------------------------


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and check a manifest; every problem is a one-line `SalmatError`, before any work."""
    path = Path(path)
    data = _read_manifest(path)
    if not isinstance(data, dict):
        raise SalmatError(f"manifest {path} must be an object with 'defaults' and 'tables'")
    unknown = sorted(set(data) - {"defaults", "tables"})
    if unknown:
        raise SalmatError(f"manifest {path}: unknown top-level key(s) {', '.join(unknown)}; "
                          "only 'defaults' and 'tables' are allowed")
    defaults = data.get("defaults") or {}
    tables = data.get("tables")
    if tables is None:
        raise SalmatError(f"manifest {path} has no 'tables' list; add tables: [{{id, input, output}}, …]")
    if not isinstance(defaults, dict):
        raise SalmatError(f"manifest {path}: 'defaults' must be an object of materialize options")
    if not isinstance(tables, list):
        raise SalmatError(f"manifest {path}: 'tables' must be a list of objects")
    known = set(option_names()) | {"id"}
    bad = sorted(set(defaults) - known)
    if bad:
        raise SalmatError(f"manifest {path}: unknown key(s) in defaults: {', '.join(bad)}{did_you_mean(bad, known)}; "
                          "keys are materialize's options spelt with underscores, e.g. frame_samples")
    table_only = sorted(set(defaults) & set(TABLE_ONLY_KEYS))
    if table_only:
        raise SalmatError(f"manifest {path}: {', '.join(table_only)} belong(s) in each table, not in defaults")
    base = path.resolve().parent
    jobs: list[TableJob] = []
    seen_ids: set[str] = set()
    seen_outputs: dict[str, str] = {}
    for i, entry in enumerate(tables):
        where = f"manifest {path}: tables[{i}]"
        if not isinstance(entry, dict):
            raise SalmatError(f"{where} must be an object with id, input and output")
        bad = sorted(set(entry) - known)
        if bad:
            raise SalmatError(f"{where} ({entry.get('id', '?')}): unknown key(s) {', '.join(bad)}"
                              f"{did_you_mean(bad, known)}; "
                              "keys are id, input, output, audit_json and materialize options with underscores")
        missing = [k for k in REQUIRED_KEYS if entry.get(k) in (None, "")]
        if missing:
            raise SalmatError(f"{where}: missing {', '.join(missing)}; every table needs id, input and output")
        table_id = str(entry["id"])
        if table_id in seen_ids:
            raise SalmatError(f"{where}: duplicate id {table_id!r}; give every table its own id")
        seen_ids.add(table_id)
        settings = {**defaults, **entry}
        settings.pop("id")
        settings = _resolve_paths(settings, base)
        opts = _options(where, table_id, settings)
        out_key = os.path.realpath(opts.output)
        if out_key in seen_outputs:
            raise SalmatError(f"{where}: output {opts.output} is also table {seen_outputs[out_key]!r}'s output; "
                              "give every table its own output")
        seen_outputs[out_key] = table_id
        jobs.append(TableJob(table_id, opts))
    return Manifest(str(path), jobs)


def _read_manifest(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SalmatError(f"cannot read manifest {path}: {exc.strerror or exc}; "
                          f"pass {passing('manifest', 'FILE')}") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SalmatError(f"manifest {path} is not valid TOML: {_one_line(exc)}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SalmatError(f"manifest {path} is not valid JSON: {_one_line(exc)} "
                          "(name it .toml for a TOML manifest)") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _resolve_paths(settings: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(settings)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value:
            out[key] = _join(base, value)
    pre = out.get("preprocess")
    if isinstance(pre, str) and pre.startswith("custom:"):
        out["preprocess"] = "custom:" + _join(base, pre[len("custom:"):])
    folders = out.get("model_dir")
    if isinstance(folders, str):
        out["model_dir"] = os.pathsep.join(_join(base, f) for f in folders.split(os.pathsep) if f.strip())
    return out


def _join(base: Path, value: str) -> str:
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else base / p)


def _options(where: str, table_id: str, settings: dict[str, Any]) -> MaterializeOptions:
    try:
        opts = MaterializeOptions(**settings)
    except TypeError as exc:
        raise SalmatError(f"{where} ({table_id}): {_one_line(exc)}") from None
    try:
        # Values and types are checked now; the root folder's existence when the table runs
        # (a root that is no text, `root = 5`, is refused here with the rest).
        replace(opts, root=None if isinstance(opts.root, str) else opts.root).effective()
    except SalmatError as exc:
        raise SalmatError(f"{where} ({table_id}): {exc}") from None
    except TypeError as exc:
        raise SalmatError(f"{where} ({table_id}): a value has the wrong type ({_one_line(exc)})") from None
    return opts


# ---- running ------------------------------------------------------------------


def run_batch(manifest: str | os.PathLike[str] | Manifest, *, log: TextIO | None = STDERR,
              **settings: Any) -> BatchReport:
    """Run every table of a manifest; reports are written when paths are given.

    `settings` are `salmat.options.BatchOptions` (the `salmat batch` flags with underscores);
    progress lines go to `log` (default: `sys.stderr` at call time; None: none)."""
    started = time.perf_counter()
    opts = BatchOptions.build(manifest=manifest, **settings)
    opts.validate()
    manifest, report_json, report_md, quiet = opts.manifest, opts.report_json, opts.report_md, opts.quiet
    fail_fast, allow_row_failures = opts.fail_fast, opts.allow_row_failures
    log = sys.stderr if log is STDERR else log  # looked up now, so a redirected stderr is honoured
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    _check_paths(manifest, report_json, report_md)
    if not manifest.jobs and log is not None:
        print(f"salmat: warning: manifest {manifest.path} lists no tables; nothing to do", file=log)
    results: list[TableResult] = []
    stopped = False
    for job in manifest.jobs:
        table_opts = job.options if quiet is None else replace(job.options, quiet=quiet)
        if stopped:
            results.append(TableResult(job.id, TABLE_NOT_RUN, table_opts.input, table_opts.output,
                                       table_opts.audit_json,
                                       error=f"not run: an earlier table was not ok and {named('fail_fast')} is on"))
            continue
        result = run_table(job.id, table_opts)
        results.append(result)
        if log is not None:
            print(f"salmat: batch {_escaped(job.id)}: {result.status} total={result.total} ok={result.ok} "
                  f"skipped={result.skipped} failed={result.failed}"
                  + (f" error={_escaped(result.error)}" if result.error else ""), file=log)
        if fail_fast and result.status != TABLE_OK:
            stopped = True
    report = BatchReport(manifest.path, results, time.perf_counter() - started,
                         allow_row_failures=allow_row_failures, fail_fast=fail_fast)
    if report_json:
        write_text(report_json, json.dumps(report.as_dict(), indent=2) + "\n")
    if report_md:
        write_text(report_md, report.markdown())
    return report


def run_table(table_id: str, opts: MaterializeOptions) -> TableResult:
    """One table through `materialize.run`; a `SalmatError` becomes status `error`."""
    from .pipeline import run

    result = TableResult(table_id, TABLE_OK, opts.input, opts.output, opts.audit_json)
    t = time.perf_counter()
    try:
        report = run(opts, argv=["batch", table_id])
    except SalmatError as exc:
        result.status = TABLE_ERROR
        result.error = str(exc)
        result.seconds = round(time.perf_counter() - t, 3)
        return result
    result.counts = dict(report.counts)
    result.total, result.ok, result.skipped, result.failed = report.total, report.ok, report.skipped, report.failed
    result.clips = report.clips
    cache = report.audit.get("cache") if isinstance(report.audit, dict) else None
    if isinstance(cache, dict):
        result.cache = {k: cache[k] for k in ("hits", "misses") if k in cache}
    result.seconds = round(report.seconds, 3)
    result.status = TABLE_ROW_FAILURES if report.failed else TABLE_OK
    return result


def _check_paths(manifest: Manifest, report_json: str | None, report_md: str | None) -> None:
    """No file the batch writes (reports, every table's output and audit) may be a file it reads
    or keeps (the manifest, every table's input, model and cache), nor another it writes: checked
    across all tables before any runs, as a table that ran first would already have replaced it.

    Every clip a table names is resolved here too (its path column read once more), so no table's
    output or audit, nor a report, replaces another table's clip."""
    from .pipeline import kept_paths, named_clips, written_paths

    reports = {named("report_json"): report_json, named("report_md"): report_md}
    written: list[tuple[str, str | None]] = list(reports.items())
    kept: list[tuple[str, str | None]] = [("the manifest", manifest.path)]
    for job in manifest.jobs:
        written += [(f"{flag} (table {job.id!r})", path) for flag, path in written_paths(job.options).items()]
        kept += [(f"{label} of table {job.id!r}", path) for label, path in kept_paths(job.options)]
        kept += [(f"{label} of table {job.id!r}", path) for label, path in named_clips(job.options)]
    preflight(written, kept, check_only=True)
    preflight(reports, {"the manifest": manifest.path})
