"""The tutorial's full-reference picture: one distorted frame, its saliency map, its error map, the weighted error.

Reads what `salmat materialize --reference-column ref --maps-out DIR` wrote (the index and the
clip's `.npz`: the distorted clip's `maps` and the reference's `ref_maps`), decodes the frame
pair with salmat's decoder, and computes every value with `salmat.quality` and `salmat.roi`
(the functions `materialize` uses), so the titles' PSNRs are the frame's own `psnr_y` and
`sw_psnr_y` (from the float16 maps on disk: within 0.02 dB of the table's).

    python docs/make_fr_figure.py fr/maps --clip bigbuckbunny_120_crf44 --out docs/img/tutorial_fr_weighted_error.png

Run it from the folder `materialize` ran in: the index holds the clips' paths as given.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize, PowerNorm  # noqa: E402
from PIL import Image  # noqa: E402

from salmat.decode import FramesAt  # noqa: E402
from salmat.frames import YuvFrame  # noqa: E402
from salmat.quality import frame_quality, normalised_weights, squared_error_map  # noqa: E402
from salmat.roi import scaled_luma  # noqa: E402
from salmat.sources import ClipSpec  # noqa: E402
from salmat.values import SamplingOptions  # noqa: E402


def find_entry(maps_dir: Path, clip: str) -> dict[str, object]:
    """The index line whose source path contains `clip`."""
    for line in (maps_dir / "index.jsonl").read_text(encoding="utf-8").splitlines():
        entry: dict[str, object] = json.loads(line)
        if clip in str(entry["source"]):
            return entry
    raise SystemExit(f"no clip matching {clip!r} in {maps_dir / 'index.jsonl'}: pass --clip with part of its name")


def decode_one(path: str, index: int) -> YuvFrame:
    """Frame `index` of `path`, decoded as `materialize` decodes it."""
    for _, frame in FramesAt(ClipSpec(path), [index], SamplingOptions()):
        return frame
    raise SystemExit(f"{path} has no frame {index}")


def panels(entry: dict[str, object], maps_dir: Path, position: int) -> dict[str, object]:
    """Everything the figure shows for the `position`-th sampled frame of the clip."""
    stored = np.load(maps_dir / str(entry["file"]))
    index = int(stored["frames"][position])
    dis = decode_one(str(entry["source"]), index)
    ref = decode_one(str(entry["reference"]), index)
    dis_y = scaled_luma(dis, ref.height, ref.width)
    ref_map = stored["ref_maps"][position].astype(np.float32)  # the default weights: the reference's map
    error = squared_error_map(dis_y, ref.y)
    # Weights scaled by N: mean-preserving, so the weighted map reads in the same units as the error map.
    weighted = normalised_weights(ref_map) * error * error.size
    dis_map = stored["maps"][position].astype(np.float32)
    values = frame_quality(dis_y, ref.y, ref.bit_depth, ref_map, dis_map, ref_map, 0.2)
    return {"index": index, "frame": dis_y, "map": ref_map, "error": error, "weighted": weighted, "values": values}


def draw(data: dict[str, object], name: str, out: Path) -> None:
    """A 2×2 figure with a colour bar per panel; the error maps share one scale."""
    values = data["values"]
    assert isinstance(values, dict)
    error, weighted = np.asarray(data["error"]), np.asarray(data["weighted"])
    top = float(np.percentile(np.concatenate([error.ravel(), weighted.ravel()]), 99.5)) or 1.0
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.4), constrained_layout=True)
    specs = [
        (data["frame"], "gray", (0, 255), "distorted frame (luma)", "luma"),
        (data["map"], "inferno", (0, 1), "reference's saliency map (the weights)", "saliency"),
        (error, "magma", (0, top), f"squared error (dis − ref)²: psnr_y = {values['psnr_y']:.2f} dB",
         "squared error"),
        (weighted, "magma", (0, top), f"saliency-weighted error (w·N·err): sw_psnr_y = {values['sw_psnr_y']:.2f} dB",
         "weighted squared error"),
    ]
    for k, (ax, (image, cmap, (low, high), title, label)) in enumerate(zip(axes.ravel(), specs, strict=True)):
        # Square-root scale on the error maps: x264's errors are sparse, a linear scale hides most of them.
        norm = PowerNorm(0.5, vmin=low, vmax=high) if k >= 2 else Normalize(vmin=low, vmax=high)
        shown = ax.imshow(image, cmap=cmap, norm=norm)
        ax.set_title(title, fontsize=11)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, shrink=0.85, label=label)
    fig.suptitle(f"{name}, frame {data['index']}  (error maps: one square-root scale, "
                 f"clipped at their 99.5th percentile, {top:.0f})", fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    # 256 colours, dithered (as `salmat preview` writes its sheets): a third of the bytes, no banding.
    image = Image.open(buffer).convert("RGB")
    palette = image.quantize(256)  # dithering needs a fixed palette: the image's own 256 colours
    image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("maps", type=Path, help="the --maps-out folder of a materialize run with --reference-column")
    parser.add_argument("--clip", required=True, help="part of the distorted clip's path, as in the index")
    parser.add_argument("--position", type=int, default=0, help="which of the clip's sampled frames (0 = first)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    entry = find_entry(args.maps, args.clip)
    data = panels(entry, args.maps, args.position)
    draw(data, Path(str(entry["source"])).name, args.out)
    values = data["values"]
    assert isinstance(values, dict)
    print(f"make_fr_figure: frame={data['index']} psnr_y={values['psnr_y']:.3f} sw_psnr_y={values['sw_psnr_y']:.3f} "
          f"roi_psnr_y={values['roi_psnr_y']:.3f} bg_psnr_y={values['bg_psnr_y']:.3f} out={args.out}")


if __name__ == "__main__":
    main()
