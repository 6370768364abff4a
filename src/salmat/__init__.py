"""salmat — saliency columns, with row-level provenance, for video-quality feature tables.

The Python API (docs/usage.md, "Python API"):

- `materialize(input, output=None, **settings)`: a table file, a Parquet folder or `-`
  (stdin) to `output` (a file or `-`, stdout) → `RunReport`; a pandas DataFrame or pyarrow
  Table without `output` → `(the same kind of table with the saliency columns, RunReport)`.
- `frame_table(dis, ref=None, out=None, **settings)`: the `frames` command (one row per frame;
  `salmat.frames` is the frame type's module, so the function has its own name).
- `compare_models`, `audit_table`, `contact_sheet`, `run_batch`: the `compare`, `audit`,
  `preview` and `batch` commands.
- `MaterializeOptions`, `CompareOptions`, `PreviewOptions`, `AuditOptions`, `BatchOptions`:
  each command's settings; `MaterializeSettings`, `CompareSettings`, `PreviewSettings`: the
  typed keywords of `materialize`, `compare_models` and `contact_sheet` (`Unpack[...]`).

Keywords are the CLI flags with underscores (`frame_samples=4` is `--frame-samples 4`), and
errors name them that way. The public functions are imported on first use, so a process
that needs only part of salmat (a pool worker computing clips, `salmat --help`) doesn't pay
for pyarrow, matplotlib and the research-loop modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ClipError, SalmatError

if TYPE_CHECKING:
    from .api import materialize
    from .batch import run_batch
    from .command_options import AuditOptions, BatchOptions, CompareOptions, PreviewOptions
    from .compare import compare as compare_models
    from .frames_command import frame_table
    from .model_files import pull_model
    from .options import MaterializeOptions
    from .pipeline import RunReport
    from .preview import preview as contact_sheet
    from .settings_types import CompareSettings, FramesSettings, MaterializeSettings, PreviewSettings
    from .signal_audit import audit_table

__version__ = "0.1.0"

# Public name → (module, attribute). Named so they never shadow their modules.
_LAZY = {
    "materialize": ("api", "materialize"),
    "frame_table": ("frames_command", "frame_table"),
    "RunReport": ("pipeline", "RunReport"),
    "run_batch": ("batch", "run_batch"),
    "compare_models": ("compare", "compare"),
    "contact_sheet": ("preview", "preview"),
    "audit_table": ("signal_audit", "audit_table"),
    "pull_model": ("model_files", "pull_model"),
    # The settings' types: each command's options dataclass, and the API's keyword TypedDicts.
    "MaterializeOptions": ("options", "MaterializeOptions"),
    **{name: ("command_options", name) for name in ("CompareOptions", "PreviewOptions", "AuditOptions",
                                                     "BatchOptions")},
    **{name: ("settings_types", name) for name in ("MaterializeSettings", "CompareSettings", "PreviewSettings",
                                                    "FramesSettings")},
}

__all__ = ["materialize", "frame_table", "RunReport", "SalmatError", "ClipError", "__version__",
           "run_batch", "compare_models", "audit_table", "contact_sheet", "MaterializeOptions", "CompareOptions",
           "PreviewOptions", "AuditOptions", "BatchOptions", "MaterializeSettings", "CompareSettings",
           "PreviewSettings", "FramesSettings", "pull_model"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'salmat' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
