"""Feature-table I/O: read JSONL, Parquet and CSV tables in a stream, write them back atomically.

Formats come from the file suffix (`detect_format`):

* ``.jsonl``, ``.ndjson``, ``.json`` -> JSONL: exactly one JSON object per line, UTF-8 (a
  pretty-printed JSON document, a top-level array, a bare ``null`` line or two values on one
  line are rejected). Blank lines are skipped.
* ``.parquet``, ``.pq`` -> Parquet.
* ``.csv`` -> comma-separated, ``.tsv`` -> tab-separated, both with a header row.

Reading (`TableReader`) decides one schema for the whole file before any row is handed out;
`read_columns` (pass 1) and `iter_batches` (pass 2) both conform to it, so both passes see
identical column types. Column types follow these rules:

* Parquet: types exactly as stored.
* JSONL: types are inferred over the *whole* file (not just its first block): JSON integers
  -> int64, or uint64 for a column whose integers are all >= 0 and some beyond int64 (up to
  2**64 - 1); any JSON fraction in a column -> float64 for the whole column, true/false -> bool,
  strings -> string (``"00123"`` stays the string ``"00123"``; date-like strings also stay
  strings), objects -> struct, arrays -> list. ``null`` is a missing value, so an int column
  with nulls stays int64. A column that is null on every row becomes string. A column that
  holds two JSON types (say numbers on one line, strings on another), an invalid JSON line, a
  line that is not an object, a repeated key or invalid UTF-8 is an error naming the line.
  No number is silently changed, so these are errors too: an integer no 64-bit type holds
  (below -2**63 or above 2**64 - 1), a number too large for float64 (``1e400``), and a column
  whose integers can't all be held exactly by one type (one beyond int64 beside a negative
  number or a fraction; one float64 can't hold exactly, such as 2**53 + 1, beside a fraction).
  Store such values as strings. A line that nests objects and arrays more than 64 levels deep
  (the row object counts as one) is refused before it is parsed.
* CSV/TSV: every cell is first read as text, then each column gets one type from all of its
  non-empty cells over the whole file, first rule that fits:
  int64 if every value round-trips exactly through int (``str(int(v)) == v``, so ``"00123"``,
  ``"+5"``, ``" 7"`` and ``"-0"`` do not) and fits in 64 bits; bool if every value is
  true/false (also True/False, TRUE/FALSE); float64 if every value is a plain decimal number
  (``-12``, ``0.5``, ``1e+20``; no leading zeros, no ``+``) or nan/inf/-inf; otherwise string.
  Integer-looking text too large for int64 keeps the whole column string, so long ids are not
  rounded; so does an integer float64 can't hold exactly (2**53 + 1) in a column that would
  otherwise be float64, and a number too large for float64 (``1e400``, not ``inf``). An
  unquoted empty cell is null; a quoted empty cell (``""``) is an empty string in a string
  column and null in any other. A column with no non-empty cell is string. Paths,
  codes with leading zeros and dates therefore stay strings. In a one-column file a blank
  line is a row with a null value; with more columns blank lines are skipped.

An empty file (JSONL with no objects, CSV without even a header) reads as a table with no
columns and no rows; a CSV with only a header has its columns (typed string) and no rows.

Column names must be unique in every format (Parquet too), and so must the field names of
each struct column: two columns called ``x`` are an error, not one column read twice.

The file may not change while it is read: each pass checks that it still holds `num_rows`
rows, and `TableReader.check_unchanged` compares its size, modification and change times,
inode and device with those it had when it was opened (call it before publishing anything
built from it). A JSONL line read in a pass is held to the scan's nesting and length limits.

Anything wrong with an input (missing, unreadable, malformed, inconsistent, changed) raises
`SalmatError` with a one-line message naming the file and the problem, never a traceback.

Writing (`TableWriter`) goes to a temporary file in the output's folder, which is fsynced and
renamed onto the output only when the ``with`` block ends without an exception; on an
exception the temporary file is deleted and any earlier file at the output is left untouched.
A new output gets the usual permissions (0o666 minus the umask); a replaced one keeps its mode.

* Parquet: written with the schema as given (types round-trip exactly).
* CSV/TSV: header row, strings quoted, nulls as empty cells, bools as true/false. Float
  columns always carry a decimal point or exponent (``1.0``, not ``1``) and so are quoted
  text in the file; that keeps them float64 when the file is read back. Binary columns are
  written as base64 text. Nested columns (lists, structs, maps) cannot be written to CSV.
  CSV stores no types: a string column whose every value looks like an int, bool or plain
  number (say "1", "2") reads back as that type; use Parquet when such columns must stay text.
* JSONL: one compact JSON object per line, UTF-8, keys in column order, built one batch at a
  time. NaN and +/-inf are written as null. Timestamps, dates and times are ISO-8601 text
  (timestamps with a ``T`` separator and, when zoned, an offset such as ``+0100`` or ``Z``),
  decimals are exact decimal text (``"1.10"``), durations are seconds as a number, binary is
  base64 text, dictionary columns are written as their values. JSON has no date or decimal
  type, so such columns read back as strings.

The package, one module per job (each imports shared helpers from `formats`, the leaf):
`formats` (suffixes, gzip, messages, shared checks), `stdio` (stdin's copy, input and output
labels), `parquet`, `jsonl` and `csv` (one reader each), `reader` (`TableReader`), `writer`
(`TableWriter` and its sinks), `memory` (pandas/pyarrow tables for the Python API).
"""

from __future__ import annotations

from salmat.outputs import STDIO

from .formats import detect_format, sha256_file
from .memory import memory_from_parquet, memory_kind, memory_to_parquet
from .reader import TableReader
from .stdio import _sniff_suffix as _sniff_suffix
from .stdio import describe_input, describe_output, input_label, labelled_path
from .writer import TableWriter, check_output_writable

__all__ = [
    "STDIO",
    "TableReader",
    "TableWriter",
    "check_output_writable",
    "describe_input",
    "describe_output",
    "detect_format",
    "input_label",
    "labelled_path",
    "memory_from_parquet",
    "memory_kind",
    "memory_to_parquet",
    "sha256_file",
]
