"""`salmat audit`: the signal-mix audit of a feature table against its quality target.

One module per job: `run` (the orchestration: read, select, compute, write), `columns`
(target, ids, provenance: which column is a feature), `families` (plain FR, ROI, saliency,
baseline; the saliency sets), `stats` (correlations, pairs, cross-validated gains), `gains`
(what ROI weighting and each set add), `report` (the Markdown and the summary line) and
`plot` (the figure). (`salmat.audit` is the run-record module of `materialize`;
this package is the `salmat audit` command.)
"""

from .columns import name_role
from .report import markdown, summary_line
from .run import SCHEMA, AuditReport, audit_arrow, audit_table

__all__ = ["SCHEMA", "AuditReport", "audit_arrow", "audit_table", "markdown", "name_role", "summary_line"]
