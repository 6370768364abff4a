"""salmat — saliency columns, with row-level provenance, for video-quality feature tables."""

from .errors import ClipError, SalmatError
from .materialize import RunReport, materialize
# The research loop (issue 5). Named so they never shadow their modules (salmat.batch, salmat.compare, …).
from .batch import run_batch
from .compare import compare as compare_models
from .preview import preview as contact_sheet
from .signal_audit import audit_table

__version__ = "0.1.0"
__all__ = ["materialize", "RunReport", "SalmatError", "ClipError", "__version__",
           "run_batch", "compare_models", "audit_table", "contact_sheet"]
