"""salmat — saliency columns, with row-level provenance, for video-quality feature tables."""

from .errors import ClipError, SalmatError
from .materialize import RunReport, materialize

__version__ = "0.1.0"
__all__ = ["materialize", "RunReport", "SalmatError", "ClipError", "__version__"]
