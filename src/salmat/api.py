"""`salmat.materialize`: the library entry point, for table files and in-memory tables alike.

A pandas DataFrame or a pyarrow Table runs the very file path (`pipeline.run`) on a
private Parquet copy, and the result is read back from a private Parquet output, so
types round-trip exactly as a Parquet file's do.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Any, Unpack, overload

import pyarrow as pa

from .errors import SalmatError
from .option_spec import named
from .options import build_options
from .pipeline import RunReport, run
from .settings_types import MaterializeSettings, PathName
from .tables import labelled_path, memory_from_parquet, memory_kind, memory_to_parquet

if TYPE_CHECKING:
    import pandas as pd



@overload  # the table comes back as the kind it came in
def materialize(input: pd.DataFrame | pa.Table, output: None = None,
                **settings: Unpack[MaterializeSettings]) -> tuple[Any, RunReport]: ...
@overload
def materialize(input: PathName | pa.Table | pd.DataFrame, output: PathName,
                **settings: Unpack[MaterializeSettings]) -> RunReport: ...


def materialize(input: Any, output: PathName | None = None, **settings: Unpack[MaterializeSettings]) -> Any:
    """Library entry point; keyword names mirror the CLI flags (`frame_samples=4` ⇔ `--frame-samples 4`).

    `input` is a table file, a folder of Parquet files, `-` (stdin), a pandas DataFrame or a
    pyarrow Table. With `output` (a file, or `-` for stdout) the table is written there and the
    `RunReport` returned; an in-memory table without `output` comes back as `(same kind of
    table with the saliency columns, RunReport)`.
    """
    kind = memory_kind(input)
    if kind is not None:
        return _materialize_in_memory(input, kind, output, settings)
    if not isinstance(input, (str, os.PathLike)):
        raise SalmatError(f"{named('input')} must be a table file, a folder of Parquet files, '-' (stdin), a pandas "
                          f"DataFrame or a pyarrow Table, not a {type(input).__name__}")
    if output is None:
        raise SalmatError(f"materialize needs {named('output')} for a table file: pass {named('output')}=PATH "
                          "(or '-' for stdout), or give a pandas DataFrame or pyarrow Table to get a table back")
    return run(build_options(os.fspath(input), os.fspath(output), **settings))


def _materialize_in_memory(table: Any, kind: str, output: PathName | None, settings: MaterializeSettings) -> Any:
    """Run the very file path on a private Parquet copy, so types round-trip exactly as a
    Parquet file's do; the result is read back from a private Parquet output."""
    with tempfile.TemporaryDirectory(prefix="salmat-") as folder:
        source = os.path.join(folder, "input.parquet")
        written = memory_to_parquet(table, source)
        if output is not None:
            with labelled_path(source, f"the {kind}"):
                return run(build_options(source, os.fspath(output), **settings))
        target = os.path.join(folder, "output.parquet")
        with labelled_path(source, f"the {kind}"), labelled_path(target, f"the returned {kind}"):
            report = run(build_options(source, target, **settings))
        report.output = f"the returned {kind}"
        return memory_from_parquet(target, kind, written), report
