"""Every file salmat writes goes through here: one pre-flight check, one atomic write.

* `preflight` runs before any work: it refuses an output that is a folder, an input, or
  another output of the same run, creates missing folders, probes that each folder takes
  new files, and removes temp files that killed runs left there.
* `atomic_output` writes a temp file in the destination's folder, fsyncs it and renames
  it over the destination; on any exception the temp file goes and the destination is
  untouched. `write_bytes`/`write_text`/`write_json` are one-call forms of it.
* Temp files are named `.salmat-tmp-<pid>-<host>-<random>-<name>` (`<host>`: 6 hex of the
  host name's hash) so a later run can tell a dead run's leftover from a live run's file,
  also in a folder shared between machines (only this host's pids are checked).
* `install_sigterm_cleanup` (called once by the CLI) removes live temp files on SIGTERM
  and exits 143, as a kill would, instead of leaving `.salmat-tmp-*` files behind.
* `-` (`STDIO`) as an output is stdout: the temp file lives in the system's temp folder and
  is copied to stdout only on commit, so a failed run writes nothing there; while a run
  writes its table to stdout, `stdout_reserved` points file descriptor 1 at stderr, so
  progress, warnings and any library's prints can't mix into the table.

Each job has its own module: `path_checks` (pre-flight), `atomic` (atomic files, JSON and text writing), `stdio`
(`-` as stdout), `temps` (temp-file names, leftovers, private temp files) and `lifecycle`
(signals, what a run published). This face keeps every name importable from `salmat.outputs`.
"""

from __future__ import annotations

from .atomic import AtomicFile, atomic_output, new_file_mode, write_bytes, write_json, write_text
from .lifecycle import begin_run, end_run, install_sigterm_cleanup, stop_requested, stopped_message
from .path_checks import preflight, same_file
from .stdio import STDIO, PathLike, stdout_reserved
from .temps import TEMP_PREFIX, clean_leftovers, private_temp_file, remove_private_temp, temp_prefix

__all__ = [
    "STDIO", "TEMP_PREFIX", "AtomicFile", "PathLike", "atomic_output", "begin_run", "clean_leftovers", "end_run",
    "install_sigterm_cleanup", "new_file_mode", "preflight", "private_temp_file", "remove_private_temp",
    "same_file", "stdout_reserved", "stop_requested", "stopped_message", "temp_prefix", "write_bytes",
    "write_json", "write_text",
]
