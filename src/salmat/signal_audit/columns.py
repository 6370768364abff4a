"""Which columns of a feature table the audit reads, and as what: the target, the features,
the columns left out and why, the saliency columns and the provenance beside them; the
per-frame reduction to one row per clip."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SalmatError
from ..option_spec import named
from ..values import OUTPUT_COLUMNS, VALUE_COLUMNS

TARGET_CANDIDATES = ("vmaf", "vmaf_score", "mos_raw_0_100", "mos", "dmos", "score")
FRAME_COLUMNS = ("frame_index", "frame", "frame_idx", "frame_num", "frame_number")
CLIP_KEYS = ("dis_basename", "src", "clip_id", "clip", "video", "dis", "ref_basename")
# Name tokens (lower case, split at `_`, `-`, spaces, camelCase) that make a column another
# quality target, never a feature: a MOS and what derives from it (dmos, mos_std, predicted_mos),
# a VMAF score (vmaf, vmaf_neg, vmaf_4k), but not VMAF's elementary features (vmaf_feature_adm2_score).
TARGET_TOKENS = ("mos", "dmos", "zmos")
VMAF_TOKEN, VMAF_FEATURE_TOKEN = "vmaf", "feature"
# Names and last tokens of row and clip identifiers: counters and keys carry no signal.
ID_NAMES = frozenset({"id", "uid", "uuid", "idx", "index", "key", "row", "rowid", "row_index", "row_number",
                      *FRAME_COLUMNS, *CLIP_KEYS})
ID_LAST_TOKENS = ("id", "uid", "uuid", "idx")
ID_PREFIXES = ("__index_level_", "unnamed:")   # a DataFrame index saved by pandas (Parquet, CSV)
# The value columns of the audit's families (any --column-prefix): plain full-reference, ROI-weighted
# (issue #19) and saliency. Matched by name ending; ROI names first (`sw_psnr_y` also ends in `psnr_y`).
PLAIN_FR = ("psnr_y", "ssim_y")
ROI = ("sw_psnr_y", "sw_ssim_y", "roi_psnr_y", "roi_ssim_y", "bg_psnr_y", "bg_ssim_y", "saliency_shift_cc")
SALIENCY = (OUTPUT_COLUMNS["mean"], OUTPUT_COLUMNS["var"])
# The provenance columns `materialize` writes (any --column-prefix): a record of the run, not signal.
# `roi_config` and `saliency_frames` record the ROI settings and the sampling (issues #19, #21). A
# family's value column is never provenance, whatever other roles `OUTPUT_COLUMNS` comes to hold.
PROVENANCE_COLUMNS = tuple(dict.fromkeys([*(name for name in OUTPUT_COLUMNS.values() if name not in VALUE_COLUMNS
                                            and not name.endswith(PLAIN_FR + ROI + SALIENCY)),
                                          "roi_config", "saliency_frames"]))
# Why a column is not a feature, as the report says it.
LEFT_OUT = {
    "target": "the target",
    "target-like": "another quality target (a MOS or VMAF score)",
    "id": "an id, key or row/frame counter",
    "provenance": "saliency provenance, not signal",
    "group key": "the clip key rows are averaged by",
    "not numeric": "not numeric",
    "excluded": "named by --exclude",
    "not selected": "not named by --features",
    "other set": "a saliency or ROI column of a set not audited (--saliency-prefixes, --saliency-columns)",
}

def pick_target(names: list[str], target: str | None, where: str) -> str:
    if target and target != "auto":
        if target not in names:
            raise SalmatError(f"{where} has no target column {target!r}; pass {named('target')} COLUMN")
        return target
    found = [c for c in names if c.lower() in TARGET_CANDIDATES]
    if len(found) > 1:   # which one is the quality to predict is the user's call, not the column order's
        raise SalmatError(f"{where} has {len(found)} candidate targets ({', '.join(found)}); "
                          f"pass {named('target')} with the one to predict")
    if not found:
        raise SalmatError(f"{where}: no target column found (looked for {', '.join(TARGET_CANDIDATES)}); "
                          f"pass {named('target')} COLUMN")
    return found[0]


def family_of(column: str) -> tuple[str, str] | None:
    """(family, prefix) of a plain-FR, ROI or saliency column; None for any other column."""
    for family, names in (("roi", ROI), ("saliency", SALIENCY), ("plain_fr", PLAIN_FR)):
        for name in names:
            if column.endswith(name):
                return family, column.removesuffix(name)
    return None


def name_role(column: str) -> str | None:
    """'target-like', 'id' or 'provenance' when a column's name says it is no feature, else None."""
    lower = column.lower()
    if lower.endswith(PROVENANCE_COLUMNS):
        return "provenance"
    tokens = _tokens(column)
    if (lower in TARGET_CANDIDATES or any(t in TARGET_TOKENS for t in tokens)
            or (any(t.startswith(VMAF_TOKEN) for t in tokens) and VMAF_FEATURE_TOKEN not in tokens)):
        return "target-like"
    if lower in ID_NAMES or lower.startswith(ID_PREFIXES) or (tokens and tokens[-1] in ID_LAST_TOKENS):
        return "id"
    return None


def _tokens(column: str) -> list[str]:
    """'predictedMOS_v2' → ['predicted', 'mos', 'v2']."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", column)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def select_features(table: pa.Table, where: str, target: str, key: str | None, set_cols: list[str],
                    other_cols: list[str], features: tuple[str, ...] | None,
                    exclude: tuple[str, ...] | None) -> tuple[list[str], list[dict[str, str]]]:
    """(the feature columns in table order, the other columns with why each was left out).

    The audited sets' saliency and ROI columns (`set_cols`) are always features and the other
    sets' (`other_cols`) never are; --features names the others, else every numeric column whose
    name is no target, id or provenance's. --exclude removes columns either way."""
    names = table.column_names
    for setting, given in (("features", features), ("exclude", exclude)):
        unknown = [c for c in given or () if c not in names]
        if unknown:
            raise SalmatError(f"{named(setting)} names {', '.join(map(repr, unknown))}, not column(s) of {where}; "
                              f"its columns: {_some(names)}")
    chosen = set(features or ())
    if target in chosen or target in (exclude or ()):
        raise SalmatError(f"{target!r} is the target; leave it out of {named('features')} and {named('exclude')}")
    if key is not None and key in chosen:
        raise SalmatError(f"{key!r} is the key rows are averaged by; leave it out of {named('features')}")
    wrong = [c for c in features or () if not is_numeric(table.schema.field(c).type)]
    if wrong:
        raise SalmatError(f"{named('features')} names non-numeric column(s) {', '.join(map(repr, wrong))}; "
                          "an audit feature must hold numbers")
    saliency = [c for c in features or () if c in other_cols]
    if saliency:   # a saliency column is never a baseline feature: it is audited as a set or not at all
        raise SalmatError(f"{named('features')} names saliency or ROI column(s) {', '.join(map(repr, saliency))} "
                          f"of a set not audited; name their prefix in {named('saliency_prefixes')} instead")
    used, left_out = [], []
    for c in names:
        why = _why_left_out(c, table, target, key, set_cols, other_cols, features, exclude)
        if why is None:
            used.append(c)
        else:
            left_out.append({"column": c, "reason": why})
    return used, left_out


def _why_left_out(column: str, table: pa.Table, target: str, key: str | None, set_cols: list[str],
                  other_cols: list[str], features: tuple[str, ...] | None,
                  exclude: tuple[str, ...] | None) -> str | None:
    """The `LEFT_OUT` reason a column is no feature, or None for a feature. Order matters: what the
    user named wins over what a name suggests."""
    if column == target:
        return "target"
    if column in (exclude or ()):
        return "excluded"
    if column in set_cols:
        return None
    if column in other_cols:
        return "other set"
    if column == key:
        return "group key"
    if features:
        return None if column in features else "not selected"
    role = name_role(column)
    if role is None and not is_numeric(table.schema.field(column).type):
        return "not numeric"
    return role


def _some(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f", … ({len(names)} in all)" if len(names) > limit else "")


def is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def floats(table: pa.Table, name: str) -> np.ndarray:
    col = pc.cast(table.column(name), pa.float64(), safe=False)
    values: np.ndarray = col.to_numpy(zero_copy_only=False).astype(np.float64)
    return values


def group_mean(data: dict[str, np.ndarray], key_col: pa.ChunkedArray, key: str) -> dict[str, np.ndarray]:
    """Per-group mean of each column over its finite values (NaN where a group has none)."""
    codes_arr = pc.dictionary_encode(pc.cast(key_col, pa.string())).combine_chunks()
    codes = codes_arr.indices.to_numpy(zero_copy_only=False)
    null = codes_arr.is_null().to_numpy(zero_copy_only=False)
    if null.all():
        raise SalmatError(f"group column {key!r} is empty in every row; pass --group-by COLUMN")
    codes = np.where(null, -1, codes).astype(np.int64)
    groups = len(codes_arr.dictionary)
    keep = codes >= 0
    out: dict[str, np.ndarray] = {}
    for c, v in data.items():
        fin = keep & np.isfinite(v)
        sums = np.bincount(codes[fin], weights=v[fin], minlength=groups)
        counts = np.bincount(codes[fin], minlength=groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out

