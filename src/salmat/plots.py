"""Shared bits for the picture-making commands: a headless pyplot and small statistics.

matplotlib is optional (the `plots` and `test` extras); it is imported lazily
with the Agg backend, and a missing install is a one-line `SalmatError`.
"""

from __future__ import annotations

import math
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .defaults import IMAGE_FORMATS
from .errors import SalmatError
from .option_spec import switched_off

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import ColorType


def pyplot() -> ModuleType:
    """`matplotlib.pyplot` on the Agg backend, or a one-line error naming the fix."""
    try:
        import matplotlib
    except ImportError:
        raise SalmatError("this command draws pictures and needs matplotlib; pip install 'salmat[plots]' (or pip "
                          f"install matplotlib), or pass {switched_off('plots')} "
                          "where the command has it (compare, audit)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), 1-based, like scipy's default."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    # Boundaries of runs of equal values.
    starts = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.append(first, len(x)))
    avg = first + (counts + 1) / 2.0
    ranks[order] = avg[run_id]
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r over the pairs where both are finite; NaN if fewer than 3 or a constant side."""
    x, y = _finite_pairs(x, y)
    if len(x) < 3:
        return math.nan
    return _pearson(x, y)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    x, y = _finite_pairs(x, y)
    if len(x) < 3:
        return math.nan
    return _pearson(rankdata(x), rankdata(y))


def unit_scale(values: np.ndarray) -> tuple[np.ndarray, float]:
    """`values` divided by their largest finite magnitude, and that magnitude (1.0 when there is
    none): sums and squares of numbers near float64's limit (a target of 1e308) then stay finite,
    and every statistic here is unchanged by the scale (or is multiplied back by it)."""
    finite = np.abs(values[np.isfinite(values)])
    scale = float(finite.max()) if finite.size else 0.0
    return (values / scale, scale) if scale > 0 else (values, 1.0)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = unit_scale(x)[0], unit_scale(y)[0]  # r doesn't change with scale; the sums of squares stay finite
    dx = x - x.mean()
    dy = y - y.mean()
    den = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if den <= 0 or not math.isfinite(den):
        return math.nan
    return float(np.clip((dx @ dy) / den, -1.0, 1.0))


def _finite_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def clean(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe float: NaN/inf → None, rounded."""
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


# What `save_figure` writes, by the path's suffix (`salmat preview --out` accepts these).
JPEG_QUALITY = 90   # maps are smooth gradients: 90 keeps them free of visible blocking


def image_format(path: str | os.PathLike[str]) -> str:
    """PNG or JPEG from the suffix of `path`; any other suffix is a one-line error."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in IMAGE_FORMATS:
        raise SalmatError(f"{os.fspath(path)}: a picture's name must end in {', '.join(IMAGE_FORMATS)}")
    return IMAGE_FORMATS[suffix]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int | None = None, colors: int = 256,
                facecolor: ColorType | None = None) -> None:
    """Write `fig` as a PNG or a JPEG, chosen by the suffix of `path`; written atomically.

    The figure is rendered by Agg at `dpi`. A PNG is quantised with Pillow (a matplotlib
    dependency) to a palette of ≤ `colors` colours: the same pixels size, a fraction of the
    bytes; `colors=0` keeps it full colour. A JPEG is always full colour.
    """
    import io

    from .outputs import atomic_output

    kind = image_format(path)
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"format": "png"}
    if dpi is not None:
        kwargs["dpi"] = dpi
    if facecolor is not None:
        kwargs["facecolor"] = facecolor
    fig.savefig(buf, **kwargs)
    with atomic_output(path) as f:
        if kind == "PNG" and not colors:
            f.write(buf.getvalue())
            return
        from PIL import Image

        buf.seek(0)
        image = Image.open(buf).convert("RGB")
        if kind == "JPEG":
            image.save(f, format="JPEG", quality=JPEG_QUALITY)
        else:
            image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                f, format="PNG", optimize=True)
