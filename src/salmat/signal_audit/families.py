"""The feature families and the saliency sets the audit reports.

Families, by column name with any prefix (`--column-prefix v1_` → `v1_sw_psnr_y`; `columns.family_of`):
- plain full-reference: `psnr_y`, `ssim_y`;
- ROI-weighted: `sw_*`, `roi_*` and `bg_*` PSNR/SSIM and `saliency_shift_cc` (issue #19);
- saliency: `saliency_mean`, `saliency_var`;
- baseline: every other feature of the table.

A *set* is one prefix's saliency and ROI columns: the values of one model, recorded in the
set's own `<prefix>saliency_model_id`. Sets are audited one by one; a saliency or ROI column
is never a baseline feature (a second model's map statistics would otherwise be counted as
the "other features" the first model is measured against).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import SalmatError
from ..option_spec import named
from ..rows import configuration_counts
from ..values import OUTPUT_COLUMNS
from .columns import ROI, family_of, floats, is_numeric

FAMILIES = ("baseline", "plain_fr", "roi", "saliency")
# How --saliency-prefixes names the set of unprefixed columns (an empty item is dropped by the list).
NO_PREFIX = "none"


def counterpart(column: str, plain: list[str]) -> str | None:
    """The plain column a ROI column weights (`v1_sw_ssim_y` → `v1_ssim_y`, else `ssim_y`), if present."""
    found = family_of(column)
    if found is None or found[0] != "roi" or column.endswith(ROI[-1]):
        return None
    metric = column.removesuffix("_y").rsplit("_", 1)[-1] + "_y"
    same_prefix = f"{found[1]}{metric}"
    return same_prefix if same_prefix in plain else next((c for c in plain if c.endswith(metric)), None)


@dataclass
class SaliencySet:
    """One prefix's saliency and ROI columns, and the configurations (model/reducer) that made them."""

    prefix: str
    saliency: list[str]
    roi: list[str]
    configurations: dict[str, int] = field(default_factory=dict)
    model_id: str | None = None

    @property
    def columns(self) -> list[str]:
        return self.saliency + self.roi

    @property
    def model_column(self) -> str:
        return f"{self.prefix}{OUTPUT_COLUMNS['model_id']}"

    def describe(self, names: list[str]) -> dict[str, Any]:
        return {"prefix": self.prefix, "model_column": self.model_column if self.model_column in names else None,
                "model_id": self.model_id, "saliency_columns": list(self.saliency), "roi_columns": list(self.roi),
                "configurations": dict(self.configurations)}


def saliency_sets(table: pa.Table, where: str, target: str, given: tuple[str, ...] | None,
                  prefixes: tuple[str, ...] | None,
                  exclude: tuple[str, ...] | None) -> tuple[list[SaliencySet], list[str]]:
    """(the sets audited, the saliency and ROI columns of the sets not audited).

    --saliency-columns names the saliency columns (their prefixes' ROI columns join them),
    --saliency-prefixes names the sets, else every prefix found is a set."""
    found = {c: fam for c in table.column_names if c != target and c not in (exclude or ())
             and (fam := family_of(c)) is not None and fam[0] != "plain_fr"
             and is_numeric(table.schema.field(c).type)}
    if given:
        sets = _named_columns(table, where, target, given, found)
    else:
        wanted = [p if p != NO_PREFIX else "" for p in prefixes] if prefixes else \
            list(dict.fromkeys(prefix for _, prefix in found.values()))
        sets = [_prefix_set(p, found, where) for p in wanted]
    chosen = {c for s in sets for c in s.columns}
    for s in sets:
        _configure(table, where, s)
    return sets, [c for c in found if c not in chosen]


def _named_columns(table: pa.Table, where: str, target: str, given: tuple[str, ...],
                   found: dict[str, tuple[str, str]]) -> list[SaliencySet]:
    if target in given:
        raise SalmatError(f"{target!r} is the target; leave it out of {named('saliency_columns')}")
    bad = [c for c in given if c not in table.column_names or not is_numeric(table.schema.field(c).type)]
    if bad:
        raise SalmatError(f"saliency column(s) {', '.join(bad)} are not numeric columns of {where}; "
                          f"pass {named('saliency_columns')} C,C")
    by_prefix: dict[str, list[str]] = {}
    for c in given:   # a column without a salmat name is a set of its own kind: the unprefixed one
        fam = family_of(c)
        by_prefix.setdefault(fam[1] if fam is not None else "", []).append(c)
    return [SaliencySet(p, cols, [c for c, (fam, q) in found.items() if fam == "roi" and q == p])
            for p, cols in by_prefix.items()]


def _prefix_set(prefix: str, found: dict[str, tuple[str, str]], where: str) -> SaliencySet:
    sal = [c for c, (fam, p) in found.items() if fam == "saliency" and p == prefix]
    roi = [c for c, (fam, p) in found.items() if fam == "roi" and p == prefix]
    if not sal and not roi:
        have = ", ".join(dict.fromkeys(p or NO_PREFIX for _, p in found.values())) or "none"
        raise SalmatError(f"{where} has no numeric {prefix}saliency_mean, {prefix}saliency_var or {prefix}sw_psnr_y "
                          f"(…) column; its saliency prefixes: {have}; pass {named('saliency_prefixes')} P,P "
                          f"({NO_PREFIX}: no prefix)")
    return SaliencySet(prefix, sal, roi)


def _configure(table: pa.Table, where: str, s: SaliencySet) -> None:
    """Rows with a finite value per (model, reducer) that made the set's columns, read from the
    provenance columns of its prefix. Values of two configurations can't be one feature: refused.
    Rows without a recorded model count as 'unrecorded' (a table's own values)."""
    if s.model_column not in table.column_names or not s.columns:
        return
    finite = np.logical_or.reduce([np.isfinite(floats(table, c)) for c in s.columns])
    counts = configuration_counts(table, finite, [s.model_column, f"{s.prefix}{OUTPUT_COLUMNS['aggregator']}"])
    for (model, reducer), n in counts.items():
        label = "unrecorded" if model is None else f"{model}/{reducer}"
        s.configurations[label] = s.configurations.get(label, 0) + n
    known = [label for label in s.configurations if label != "unrecorded"]
    if len(known) > 1:
        shown = ", ".join(f"{label} ({n} rows)" for label, n in sorted(s.configurations.items(), key=lambda kv: -kv[1]))
        raise SalmatError(f"{where}'s {s.prefix}saliency values come from {len(known)} configurations: "
                          f"{shown}; audit one at a time (filter the table on {s.model_column} and "
                          f"{s.prefix}{OUTPUT_COLUMNS['aggregator']} first)")
    s.configurations = dict(sorted(s.configurations.items()))
    s.model_id = known[0].rsplit("/", 1)[0] if known else None


def families(features: list[str], sets: list[SaliencySet]) -> dict[str, list[str]]:
    """Each family's feature columns, in table order."""
    in_sets = {c: "saliency" for s in sets for c in s.saliency} | {c: "roi" for s in sets for c in s.roi}
    out: dict[str, list[str]] = {name: [] for name in FAMILIES}
    for c in features:
        plain = (family_of(c) or ("", ""))[0] == "plain_fr"
        out[in_sets.get(c) or ("plain_fr" if plain else "baseline")].append(c)
    return out
