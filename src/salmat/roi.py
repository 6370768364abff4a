"""Full-reference rows: a clip's reference decoded at the same frames, compared where people look.

`compute` calls these when a clip has a reference (`ClipSpec.reference`, from
`--reference-column`): the reference is decoded at the distorted clip's frame indices, a
distorted frame of another size is scaled to the reference's with FFmpeg's bicubic scaler
(swscale through PyAV, what `ffmpeg -vf scale=W:H:flags=bicubic` does before libvmaf), and
`quality.frame_quality` compares the luma planes, weighted by the reference's (or the
distorted clip's) saliency map. Any problem with the reference is raised as a `ClipError`
whose message starts with `reference:`, so the row's status names the side.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Sequence

import av
import cv2
import numpy as np

from .decode import FramesAt
from .errors import ClipError
from .frames import YuvFrame
from .outputs import write_bytes
from .quality import frame_quality
from .sources import ClipSpec
from .values import DECODE_FAILED, RoiOptions, SamplingOptions


def as_reference_error(exc: ClipError) -> ClipError:
    """`exc` with its message naming the reference side."""
    return ClipError(exc.status, exc.message if exc.message.startswith("reference:") else f"reference: {exc.message}")


def reference_frames(reference: ClipSpec, indices: Sequence[int], sampling: SamplingOptions) -> list[YuvFrame]:
    """The reference's frames at `indices` (raises a `reference:` `ClipError`, also when it is too short)."""
    return [frame for _, frame in reference_iter(reference, indices, sampling, len(indices))]


def reference_iter(reference: ClipSpec, indices: Sequence[int], sampling: SamplingOptions,
                   expected: int) -> Iterator[tuple[int, YuvFrame]]:
    """(index, frame) of the reference at `indices`, in order, one decoded frame at a time; the
    first `expected` indices must all be there (a shorter reference is the clip's failure)."""
    reader = FramesAt(reference, indices, sampling)
    count = 0
    try:
        for item in reader:
            count += 1
            yield item
    except ClipError as exc:
        raise as_reference_error(exc) from None
    if count < expected:
        raise ClipError(DECODE_FAILED, f"reference: {os.path.basename(reference.path)} is too short: it has "
                                       f"{reader.total} frames, and frame {indices[count]} of the distorted clip "
                                       "has no counterpart")


def scaled_luma(frame: YuvFrame, height: int, width: int) -> np.ndarray:
    """`frame`'s luma at (height, width): itself when it has that size, else scaled by swscale's bicubic."""
    if (frame.height, frame.width) == (height, width):
        return frame.y
    source = av.VideoFrame.from_ndarray(frame.y, format="gray" if frame.y.dtype == np.uint8 else "gray10le")
    scaled: np.ndarray = source.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray()
    return scaled


def _at_size(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """A saliency map at (height, width) (bilinear, as the built-in models upsample)."""
    if saliency.shape == (height, width):
        return saliency
    return cv2.resize(np.asarray(saliency, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def pair_quality(dis: YuvFrame, ref: YuvFrame, dis_map: np.ndarray, ref_map: np.ndarray,
                 roi: RoiOptions) -> dict[str, float]:
    """Every ROI-family value of one distorted/reference frame pair, at the reference's size.

    Frames of different bit depths are compared at 8 bits; maps of the distorted clip's size
    are scaled to the reference's."""
    if dis.bit_depth != ref.bit_depth:
        dis, ref = dis.to_8bit(), ref.to_8bit()
    height, width = ref.height, ref.width
    dis_y = scaled_luma(dis, height, width)
    dis_map = _at_size(dis_map, height, width)
    weights = ref_map if roi.weights_from == "ref" else dis_map
    return frame_quality(dis_y, ref.y, ref.bit_depth, weights, dis_map, ref_map, roi.fraction)


def write_maps(folder: str, spec: ClipSpec, indices: Sequence[int], maps: np.ndarray,
               ref_maps: np.ndarray | None) -> str:
    """One clip's maps as `.npz` in `folder` (`maps`, and with a reference `ref_maps`: float16
    [n, H, W] at each clip's luma size; `frames`: their indices), written atomically. Returns
    the file's name, unique to the clip, its reference and its frames."""
    identity = repr((spec.path, spec.reference.path if spec.reference else None, tuple(indices)))
    stem = os.path.splitext(os.path.basename(spec.path))[0]
    name = f"{stem}-{hashlib.sha1(identity.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}.npz"
    arrays = {"maps": np.asarray(maps, dtype=np.float16), "frames": np.asarray(indices, dtype=np.int64)}
    if ref_maps is not None:
        arrays["ref_maps"] = np.asarray(ref_maps, dtype=np.float16)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    write_bytes(os.path.join(folder, name), buffer.getvalue())
    return name
