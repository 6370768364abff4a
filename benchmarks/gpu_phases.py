"""`gpu_check.py` section (c): where one clip's time goes, and the preprocessing on the device.

One clip in the checking process, each phase timed alone (onnxruntime IO binding),
and the device's and the CPU's bounds on clips/s from it. Then design step (1) of
docs/performance.md (GPU), tried out: the vmaf-student preset's preprocessing as an ONNX graph that takes a frame's 8-bit
Y, U, V planes: each colour term a `Gather` on salmat's own 256-entry float32
tables (`salmat.color`), the chroma repeated 2×2 and cropped, the sums in
`color.rgb_planes`' order, the clip to [0, 1], (x − mean) / std per channel, and
zero padding to the preset's multiple. Every step is an exact copy or one IEEE
float32 operation, so the tensor should equal `Preprocess.encode`'s bit for bit;
the check measures how far it is on the device at hand, and what it costs there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17


def preprocess_graph(height: int, width: int, preset: Any) -> bytes:
    """The serialized graph for 8-bit 4:2:0 frames of `height` × `width`, input planes `y`, `u`, `v`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from salmat.color import _B_CB, _G_CB, _G_CR, _LUMA, _R_CR  # the tables' one home

    ch, cw = (height + 1) // 2, (width + 1) // 2
    ih, iw = preset.input_size(height, width)
    consts = {"luma": _LUMA, "r_cr": _R_CR, "g_cb": _G_CB, "g_cr": _G_CR, "b_cb": _B_CB,
              "zero": np.float32(0.0), "one": np.float32(1.0),
              "quad": np.array([ch, 2, cw, 2], np.int64), "doubled": np.array([2 * ch, 2 * cw], np.int64),
              "start": np.array([0, 0], np.int64), "end": np.array([height, width], np.int64),
              "axes13": np.array([1, 3], np.int64), "axis0": np.array([0], np.int64),
              "pads": np.array([0, 0, 0, 0, 0, 0, ih - height, iw - width], np.int64)}
    for c in range(3):
        consts[f"mean{c}"] = np.float32(preset.mean[c])
        consts[f"std{c}"] = np.float32(preset.std[c])
    node = helper.make_node
    nodes = [node("Cast", [p], [f"{p}_i"], to=TensorProto.INT32) for p in "yuv"]
    nodes.append(node("Gather", ["luma", "y_i"], ["Y"]))
    for term, plane in (("r_cr", "v"), ("g_cb", "u"), ("g_cr", "v"), ("b_cb", "u")):
        nodes += [node("Gather", [term, f"{plane}_i"], [f"{term}_s"]),  # at chroma size, then repeated 2×2
                  node("Unsqueeze", [f"{term}_s", "axes13"], [f"{term}_u"]),
                  node("Expand", [f"{term}_u", "quad"], [f"{term}_e"]),
                  node("Reshape", [f"{term}_e", "doubled"], [f"{term}_d"]),
                  node("Slice", [f"{term}_d", "start", "end"], [f"{term}_f"])]
    nodes += [node("Add", ["Y", "r_cr_f"], ["R0"]),
              node("Sub", ["Y", "g_cb_f"], ["Gd"]), node("Sub", ["Gd", "g_cr_f"], ["G0"]),
              node("Add", ["Y", "b_cb_f"], ["B0"])]
    for c, name in enumerate("RGB"):
        nodes += [node("Clip", [f"{name}0", "zero", "one"], [f"{name}c"]),
                  node("Sub", [f"{name}c", f"mean{c}"], [f"{name}m"]),
                  node("Div", [f"{name}m", f"std{c}"], [f"{name}n"]),
                  node("Unsqueeze", [f"{name}n", "axis0"], [f"{name}1"])]
    nodes += [node("Concat", ["R1", "G1", "B1"], ["chw"], axis=0),
              node("Unsqueeze", ["chw", "axis0"], ["nchw"]),
              node("Pad", ["nchw", "pads"], ["input"], mode="constant")]
    inputs = [helper.make_tensor_value_info("y", TensorProto.UINT8, [height, width]),
              helper.make_tensor_value_info("u", TensorProto.UINT8, [ch, cw]),
              helper.make_tensor_value_info("v", TensorProto.UINT8, [ch, cw])]
    output = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, ih, iw])
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    graph = helper.make_graph(nodes, "salmat_preprocess", inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def device_preprocessing(frames: list[Any], preset: Any, providers: list[Any], on: str,
                         repeat: int = 3) -> dict[str, Any]:
    """Max |Δ| of the graph's tensor against `preset.encode` (frame by frame), and the best-of-`repeat`
    seconds for the clip's frames: upload of the planes, then the graph with its output left on `on`."""
    import onnxruntime as ort

    height, width = frames[0].height, frames[0].width
    session = ort.InferenceSession(preprocess_graph(height, width, preset), providers=providers)
    worst, best = 0.0, {"upload_yuv_planes": float("inf"), "preprocess_on_device": float("inf")}
    for attempt in range(repeat):
        spent = {"upload_yuv_planes": 0.0, "preprocess_on_device": 0.0}
        for frame in frames:
            mark = time.perf_counter()
            planes = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(p), on, 0)
                      for k, p in zip("yuv", (frame.y, frame.u, frame.v))}
            spent["upload_yuv_planes"] += time.perf_counter() - mark
            mark = time.perf_counter()
            binding = session.io_binding()
            for name, value in planes.items():
                binding.bind_ortvalue_input(name, value)
            binding.bind_output("input", on)
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            spent["preprocess_on_device"] += time.perf_counter() - mark
            if attempt == 0:
                got = binding.copy_outputs_to_cpu()[0]
                worst = max(worst, float(np.max(np.abs(got - preset.encode([frame], None)))))
        best = {k: min(best[k], spent[k]) for k in best}
    return {"max_abs_vs_cpu_preprocessing": worst, "seconds_per_clip": {k: round(v, 4) for k, v in best.items()},
            "frames": len(frames), "bound_on": on}


# ---- (c) where one clip's time goes -------------------------------------------------------------


def breakdown(setup: Any) -> dict[str, Any]:
    out = {"fp32": clip_phases(setup, str(setup.model), "fp32")}
    if setup.fp16[:1] == ["--model-path"]:
        out["fp16"] = clip_phases(setup, setup.fp16[1], "fp32")
    else:
        out["fp16"] = clip_phases(setup, str(setup.model), "fp16")
    try:
        out["device_preprocess"] = device_preprocess(setup)
    except Exception as exc:  # noqa: BLE001 - a trial; the phases above stand without it
        out["device_preprocess"] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:1500]}"}
    return out


def device_preprocess(setup: Any) -> dict[str, Any]:
    """The preset's preprocessing as a graph on the device (below): equal to the CPU's? how fast?"""
    from salmat.decode import decode_sampled
    from salmat.models.presets import resolve_preset
    from salmat.sources import ClipSpec
    from salmat.values import SamplingOptions

    args = setup.args
    frames = decode_sampled(ClipSpec(str(setup.clips[0])), SamplingOptions("head", args.head, args.head, None))
    on = "cuda" if args.device == "cuda" else "cpu"
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if on == "cuda" else ["CPUExecutionProvider"]
    return device_preprocessing(frames, resolve_preset("vmaf-student"), providers, on)


class Laps:
    """Seconds per phase, summed over the laps of one pass."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.mark = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.mark
        self.mark = now


def one_pass(model: Any, clip: Path, sampling: Any, on: str) -> dict[str, float]:
    """decode → per frame: preprocess, upload, inference, download → maps and reducers, each timed."""
    import onnxruntime as ort

    from salmat.decode import decode_sampled
    from salmat.sources import ClipSpec
    from salmat.temporal import reduce_stats

    session = model.session
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    lap = Laps()
    frames = decode_sampled(ClipSpec(str(clip)), sampling)
    lap("decode")
    outs = []
    for frame in frames:
        x = model.preset.encode([frame], None)
        lap("preprocess")
        value = ort.OrtValue.ortvalue_from_numpy(x, on, 0)
        lap("upload")
        binding = session.io_binding()
        binding.bind_ortvalue_input(name_in, value)
        binding.bind_output(name_out, on)
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        lap("inference")
        outs.append(binding.copy_outputs_to_cpu()[0])
        lap("download")
    h, w = frames[0].height, frames[0].width
    maps = np.concatenate([model.preset.decode(o, h, w) for o in outs])
    reduce_stats(maps, [f.luma8() for f in frames], 0.6)
    lap("maps_and_reducers")
    return lap.seconds


def clip_phases(setup: Any, model_path: str, precision: str, repeat: int = 3) -> dict[str, Any]:
    """One clip in this process, best of `repeat`, each phase timed alone (onnxruntime IO binding)."""
    from salmat.models import load_model
    from salmat.values import SamplingOptions

    args = setup.args
    model = load_model(model_path=model_path, preprocess="vmaf-student", device=args.device, precision=precision,
                       runtime="onnxruntime")
    session = getattr(model, "session", None)
    if session is None:
        return {"skipped": f"{type(model).__name__} is not an onnxruntime model: no IO binding"}
    on = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    sampling = SamplingOptions("head", args.head, args.head, None)
    best: dict[str, float] = {}
    for _ in range(repeat):
        for phase, seconds in one_pass(model, setup.clips[0], sampling, on).items():
            best[phase] = min(best.get(phase, float("inf")), seconds)
    gpu_side = best["upload"] + best["inference"] + best["download"]
    cpu_side = best["decode"] + best["preprocess"] + best["maps_and_reducers"]
    cores = os.cpu_count() or 1
    tf32 = session.get_provider_options().get("CUDAExecutionProvider", {}).get("use_tf32")
    return {"bound_on": on, "frames": args.head, "cuda_use_tf32": tf32,
            "seconds_per_clip": {k: round(v, 4) for k, v in best.items()},
            "clips_per_s_if_gpu_bound": round(1 / gpu_side, 2) if gpu_side else None,
            "clips_per_s_if_cpu_bound": round(cores / cpu_side, 2) if cpu_side else None,
            "cpu_cores": cores}
