"""One clip, start to finish: decode → model → every temporal reducer → statistics.

`ClipJob` is the picklable work unit every engine runs: what model to load (a
`ModelSpec`), which frames to take and how to reduce them. An engine sends the
job to its workers once; each worker calls `job.start()` to load the model, then
`runner.compute(spec)` per clip. `compute` never raises: any failure becomes a
`ClipResult` with a contract status and a message, so one bad clip can't take
down a worker, a pool or a Ray block.

Tests inject faults by subclassing `ClipJob` (its `start` can return a runner
that crashes on one clip): that is the one seam, the same for every engine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .clip_maps import ClipMaps, encode
from .decode import FramesAt, decode_sampled, sampled_indices
from .errors import ClipError
from .frames import YuvFrame, common_size
from .maps import WorkingMaps, full_size
from .models.base import SaliencyModel
from .models.spec import ModelSpec
from .option_spec import cli_spelling, spelling_in_use
from .quality import pool_frames
from .roi import as_reference_error, pair_quality, reference_frames, reference_iter, write_maps
from .sources import ClipSpec
from .temporal import map_stats
from .values import DECODE_FAILED, MODEL_FAILED, OK, ClipResult, ReduceOptions, RoiOptions, SamplingOptions

PhaseFn = Callable[[str], None]


def predict_maps(model: SaliencyModel, frames: list[YuvFrame]) -> np.ndarray | WorkingMaps:
    """Run the model and check its contract: one finite map per frame at the frame's size.

    `predict_working` may return the maps before upsampling (`WorkingMaps`: the built-ins,
    `--inference-size`), which the reducers use at working size; `salmat.maps.full_size`
    gives full-size maps.
    """
    try:
        predicted = model.predict_working(frames)
        if isinstance(predicted, WorkingMaps):
            _check_maps(model, np.asarray(predicted.maps), tuple(predicted.frame_size), frames)
            return predicted
        maps = np.asarray(predicted, dtype=np.float32)
    except ClipError:
        raise
    except Exception as exc:  # noqa: BLE001 - any model failure is this clip's status
        raise ClipError(MODEL_FAILED, f"{model.id} raised {type(exc).__name__}: {exc}") from exc
    _check_maps(model, maps, maps.shape[1:], frames)
    return maps


def _check_maps(model: SaliencyModel, maps: np.ndarray, frame_size: tuple[int, ...], frames: list[YuvFrame]) -> None:
    """`maps`: the model's (n, h, w) array; `frame_size`: the (H, W) it stands for."""
    expected = (len(frames), frames[0].height, frames[0].width)
    shape = (*maps.shape[:1], *frame_size) if maps.ndim == 3 else maps.shape
    if shape != expected:
        raise ClipError(MODEL_FAILED, f"{model.id} returned maps of shape {shape}, expected {expected}")
    # One float64 sum is finite exactly when every value is (NaN and inf propagate), unless
    # huge finite values overflow it — then the full check decides.
    if not np.isfinite(maps.sum(dtype=np.float64)) and not np.all(np.isfinite(maps)):
        raise ClipError(MODEL_FAILED, f"{model.id} returned non-finite values")


def sampled_maps(
    spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions, on_phase: PhaseFn | None = None,
) -> tuple[list[YuvFrame], np.ndarray | WorkingMaps]:
    """Sampled frames and their maps (raises `ClipError`).

    `on_phase("model")` is called once decoding is done and inference starts (the
    pool uses it to tell a decode timeout from a model timeout).
    """
    frames = decode_clip(spec, sampling)
    if on_phase is not None:
        on_phase("model")
    return frames, predict_maps(model, frames)


def decode_clip(spec: ClipSpec, sampling: SamplingOptions) -> list[YuvFrame]:
    """A clip's sampled frames, all of one size (raises `ClipError`)."""
    frames = decode_sampled(spec, sampling)
    common_size(frames)
    return frames


def reduced_result(frames: list[YuvFrame], maps: np.ndarray | WorkingMaps, reduce: ReduceOptions,
                   keep_maps: int = 0) -> ClipResult:
    """A clip's `ok` result: its maps reduced with every reducer; it carries the encoded
    `ClipMaps` when they are at most `keep_maps` bytes (0: never)."""
    record = ClipMaps.build(maps, [frame.luma8() for frame in frames])
    kept = encode(record) if 0 < record.raw_bytes <= keep_maps else None
    return ClipResult(OK, stats=record.stats(reduce), frames=len(frames), maps=kept)


def compute_clip(
    spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions, reduce: ReduceOptions,
    on_phase: PhaseFn | None = None, keep_maps: int = 0, roi: RoiOptions | None = None,
    maps_out: str | None = None,
) -> ClipResult:
    """One clip, start to finish; every failure is returned as a status, never raised.

    A spec with `frames` (--per-frame) gets those frames' own statistics (`compute_frames`).
    `keep_maps`: the result carries the clip's encoded `ClipMaps` when they are at most this
    many bytes (0: never), for the cache and compare's map agreement.
    With `spec.reference` and `roi`, the result also carries the full-reference values
    (`add_reference_quality`); with `maps_out`, the sampled maps are written there."""
    if spec.frames is not None:
        return compute_frames(spec, model, sampling, on_phase, roi, maps_out)
    start = time.perf_counter()

    def body() -> ClipResult:
        frames, maps = sampled_maps(spec, model, sampling, on_phase)
        result = reduced_result(frames, maps, reduce, keep_maps)
        add_reference_quality(result, spec, model, sampling, frames, maps, roi, maps_out)
        return result

    return _as_result(spec, start, body)


def decoded_frames(spec: ClipSpec, sampling: SamplingOptions) -> tuple[list[YuvFrame], ClipResult]:
    """`compute_clip`'s decoding alone, for an engine that decodes and infers in different processes:
    the frames (none on failure) and the result that stands for them, `ok` or the decode failure as
    the clip's status; never raises."""
    frames: list[YuvFrame] = []

    def body() -> ClipResult:
        frames.extend(decode_clip(spec, sampling))
        return ClipResult(OK, frames=len(frames))

    result = _as_result(spec, time.perf_counter(), body)
    return (frames if result.status == OK else []), result


def compute_decoded(spec: ClipSpec, frames: list[YuvFrame], model: SaliencyModel, job: ClipJob,
                    decode_seconds: float = 0.0) -> ClipResult:
    """The rest of `compute_clip` for frames `decoded_frames` gave: the model, the reducers and
    the reference; the result's time includes `decode_seconds`. Never raises."""
    start = time.perf_counter() - decode_seconds

    def body() -> ClipResult:
        maps = predict_maps(model, frames)
        result = reduced_result(frames, maps, job.reduce, job.keep_maps)
        add_reference_quality(result, spec, model, job.sampling, frames, maps, job.roi, job.maps_out)
        return result

    return _as_result(spec, start, body)


def add_reference_quality(result: ClipResult, spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions,
                          frames: list[YuvFrame], working: np.ndarray | WorkingMaps, roi: RoiOptions | None,
                          maps_out: str | None) -> None:
    """The sampled clip's reference at the same indices, its maps, and the pooled ROI-family values
    into `result` (raises `ClipError`; the reference's problems name it); the maps to `maps_out`.
    Nothing to do without a reference (or `roi`) and without `maps_out`."""
    if not ((spec.reference is not None and roi is not None) or maps_out):
        return
    maps = full_size(working)
    indices = sampled_indices(spec, sampling)
    if len(indices) != len(frames):
        raise ClipError(DECODE_FAILED, f"{os.path.basename(spec.path)}: decoded {len(frames)} sampled frames of "
                                       f"the {len(indices)} its packets promise")
    ref_maps = None
    if spec.reference is not None and roi is not None:
        refs = reference_frames(spec.reference, indices, sampling)
        ref_maps = _reference_maps(model, refs)
        per_frame = [pair_quality(d, r, dm, rm, roi) for d, r, dm, rm in zip(frames, refs, maps, ref_maps,
                                                                              strict=True)]
        result.quality = pool_frames(per_frame, roi.pooling)
    if maps_out:
        result.maps_file = write_maps(maps_out, spec, indices, maps, ref_maps)


def _reference_maps(model: SaliencyModel, frames: list[YuvFrame]) -> np.ndarray:
    """Full-size maps of reference frames; a failure names the reference."""
    try:
        common_size(frames)
        return full_size(predict_maps(model, frames))
    except ClipError as exc:
        raise as_reference_error(exc) from None


def _as_result(spec: ClipSpec, start: float, body: Callable[[], ClipResult]) -> ClipResult:
    """`body()`'s result with its time, or its failure as the clip's status: the one place where
    a clip's exceptions become statuses, so an engine never sees one."""
    try:
        result = body()
    except ClipError as exc:
        result = ClipResult(exc.status, error=exc.message)
    except MemoryError:
        result = ClipResult(DECODE_FAILED, error=f"{os.path.basename(spec.path)}: out of memory")
    except Exception as exc:  # noqa: BLE001 - the engine must never raise for a bad clip
        result = ClipResult(DECODE_FAILED, error=f"{type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - start
    return result


def single_frame_stats(maps: np.ndarray | WorkingMaps) -> tuple[float, float]:
    """(mean, var) of a one-frame clip: its map is the clip map under every reducer, so this is
    the statistic `reduce_stats` gives a single frame (same code path: `WorkingMaps.stats` at
    working size, `map_stats` at full size), without building the other reducers' maps."""
    if isinstance(maps, WorkingMaps):
        return maps.stats(maps.maps[0])
    return map_stats(maps[0])


def compute_frames(
    spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions, on_phase: PhaseFn | None = None,
    roi: RoiOptions | None = None, maps_out: str | None = None,
) -> ClipResult:
    """--per-frame: each of `spec.frames` run through the model alone, in one decode pass.

    A frame's value never depends on which other frames a table names (a motion-aware model
    sees no previous frame), and only one decoded frame is held at a time. Indices past the
    end are simply absent from `frame_stats`; the clip's frame count is then `frame_total`.
    Never raises: a decode or model failure is the whole clip's status."""
    start = time.perf_counter()
    reader = FramesAt(spec, spec.frames or (), sampling)
    report = on_phase or (lambda phase: None)

    def body() -> ClipResult:
        values: dict[int, tuple[float, float]] = {}
        pairs = _FramePairs(spec, model, sampling, roi, maps_out)
        report("decode")
        for index, frame in reader:
            report("model")
            maps = predict_maps(model, [frame])
            values[index] = single_frame_stats(maps)
            pairs.add(index, frame, maps)
            report("decode")
        return pairs.finish(ClipResult(OK, frames=len(values), frame_stats=values, frame_total=reader.total))

    return _as_result(spec, start, body)


class _FramePairs:
    """--per-frame with a reference and/or --maps-out: each frame's reference frame (decoded in step,
    one at a time), its ROI-family values, and the maps kept for the file."""

    def __init__(self, spec: ClipSpec, model: SaliencyModel, sampling: SamplingOptions, roi: RoiOptions | None,
                 maps_out: str | None) -> None:
        self.spec, self.model, self.roi, self.maps_out = spec, model, roi, maps_out
        wanted = spec.frames or ()
        self.refs = (reference_iter(spec.reference, wanted, sampling, 0)
                     if spec.reference is not None and roi is not None else None)
        self.ref_name = os.path.basename(spec.reference.path) if spec.reference is not None else ""
        self.quality: dict[int, dict[str, float]] = {}
        self.kept: tuple[list[int], list[np.ndarray], list[np.ndarray]] = ([], [], [])

    def add(self, index: int, frame: YuvFrame, maps: np.ndarray | WorkingMaps) -> None:
        if self.refs is None and not self.maps_out:
            return
        dis_map = full_size(maps)[0]
        ref_map = None
        if self.refs is not None and self.roi is not None:
            ref_index, ref_frame = next(self.refs, (None, None))
            if ref_index != index or ref_frame is None:
                raise ClipError(DECODE_FAILED, f"reference: {self.ref_name} is too short: frame {index} of the "
                                               "distorted clip has no counterpart")
            ref_map = _reference_maps(self.model, [ref_frame])[0]
            self.quality[index] = pair_quality(frame, ref_frame, dis_map, ref_map, self.roi)
        if self.maps_out:
            self.kept[0].append(index)
            self.kept[1].append(dis_map.astype(np.float16))
            if ref_map is not None:
                self.kept[2].append(ref_map.astype(np.float16))

    def finish(self, result: ClipResult) -> ClipResult:
        result.frame_quality = self.quality
        if self.maps_out and self.kept[0]:
            indices, maps, ref_maps = self.kept
            result.maps_file = write_maps(self.maps_out, self.spec, indices, np.stack(maps),
                                          np.stack(ref_maps) if ref_maps else None)
        return result


@dataclass(frozen=True)
class ClipJob:
    """Everything a worker needs to compute clips; picklable, sent to each worker once."""

    model: ModelSpec
    sampling: SamplingOptions
    reduce: ReduceOptions
    keep_maps: int = 0  # bytes: results carry their clip's maps up to this size (`compute_clip`)
    # --reference-column's settings (None: no reference is compared) and --maps-out's folder.
    roi: RoiOptions | None = None
    maps_out: str | None = None
    # How row errors name settings (`--max-pixels` or `max_pixels`), taken where the job is made:
    # a worker's process or thread doesn't inherit the caller's spelling.
    cli_spelling: bool = field(default_factory=spelling_in_use)

    def start(self, threads: int | None = None) -> ClipRunner:
        """Load the model (may raise: a worker that can't start is the engine's to handle)."""
        return ClipRunner(self, self.model.load(threads=threads))


class ClipRunner:
    """A started job: the loaded model plus the job's settings."""

    def __init__(self, job: ClipJob, model: SaliencyModel) -> None:
        self.job = job
        self.model = model

    def compute(self, spec: ClipSpec, on_phase: PhaseFn | None = None) -> ClipResult:
        """Never raises."""
        with cli_spelling(self.job.cli_spelling):
            return compute_clip(spec, self.model, self.job.sampling, self.job.reduce, on_phase, self.job.keep_maps,
                                self.job.roi, self.job.maps_out)

    def compute_decoded(self, spec: ClipSpec, frames: list[YuvFrame], decode_seconds: float) -> ClipResult:
        """The rest of `compute` for frames decoded elsewhere (`decoded_frames`). Never raises."""
        with cli_spelling(self.job.cli_spelling):
            return compute_decoded(spec, frames, self.model, self.job, decode_seconds)
