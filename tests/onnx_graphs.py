"""Small ONNX graphs with known weights, built with the `onnx.helper` API, for the ONNX tests.

Every builder returns an `onnx.ModelProto`; `save(model, path)` writes it. The graphs
mimic the historical saliency students' interface: input `input` float32
[1, 3, H, W], output `saliency_map` float32 [1, 1, H, W].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # old enough for any onnxruntime >= 1.17

# Known weights for the conv 3→1 graph: out = sigmoid(sum_c sum_ij W[c,i,j] x[c, y+i-1, x+j-1] + B).
CONV_WEIGHTS = np.array(
    [
        [[0.10, -0.20, 0.05], [0.30, 0.50, -0.10], [0.00, 0.20, 0.15]],
        [[-0.25, 0.10, 0.00], [0.05, -0.40, 0.20], [0.10, 0.00, -0.05]],
        [[0.20, 0.00, -0.30], [0.15, 0.25, 0.05], [-0.10, 0.30, 0.10]],
    ],
    dtype=np.float32,
).reshape(1, 3, 3, 3)
CONV_BIAS = np.array([0.1], dtype=np.float32)


def _model(nodes, inputs, outputs, initializers, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="salmat-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _io(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    onnx.save(model, str(path))
    return path


def conv_sigmoid(
    weights: np.ndarray = CONV_WEIGHTS,
    bias: np.ndarray = CONV_BIAS,
    height: int | str = "H",
    width: int | str = "W",
    batch: int | str = 1,
    activation: str = "Sigmoid",
) -> onnx.ModelProto:
    """Conv 3→1, 3×3, stride 1, zero padding 1, then `activation` (Sigmoid or Identity)."""
    nodes = [
        helper.make_node("Conv", ["input", "W", "B"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node(activation, ["conv"], ["saliency_map"]),
    ]
    return _model(
        nodes,
        [_io("input", [batch, 3, height, width])],
        [_io("saliency_map", [batch, 1, height, width])],
        [numpy_helper.from_array(weights.astype(np.float32), "W"), numpy_helper.from_array(bias.astype(np.float32), "B")],
        "conv_sigmoid",
    )


def encoder_decoder(seed: int = 0, channels: int = 4) -> onnx.ModelProto:
    """Conv+ReLU, three 2× MaxPools, three 2× nearest Resizes, conv 1×1 + Sigmoid; batch fixed to 1.

    Sides that are not multiples of 8 come back smaller than they went in, so the
    graph only works on padded input (the historical students' shape behaviour).
    """
    rng = np.random.default_rng(seed)
    c = channels
    inits = [
        numpy_helper.from_array((rng.standard_normal((c, 3, 3, 3)) * 0.3).astype(np.float32), "w_in"),
        numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "b_in"),
        numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.2).astype(np.float32), "w_mid"),
        numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "b_mid"),
        numpy_helper.from_array((rng.standard_normal((1, c, 1, 1)) * 2.0).astype(np.float32), "w_out"),
        numpy_helper.from_array(np.array([0.05], dtype=np.float32), "b_out"),
        numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32), "scales"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w_in", "b_in"], ["c0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
    ]
    prev = "r0"
    for i in range(3):
        nodes.append(helper.make_node("MaxPool", [prev], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
        prev = f"p{i}"
    nodes += [
        helper.make_node("Conv", [prev, "w_mid", "b_mid"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
    ]
    prev = "r1"
    for i in range(3):
        nodes.append(helper.make_node("Resize", [prev, "", "scales"], [f"u{i}"], mode="nearest"))
        prev = f"u{i}"
    nodes += [
        helper.make_node("Conv", [prev, "w_out", "b_out"], ["c2"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["saliency_map"]),
    ]
    return _model(
        nodes,
        [_io("input", [1, 3, "H", "W"])],
        [_io("saliency_map", [1, 1, "H", "W"])],
        inits,
        "encoder_decoder",
    )


def two_outputs(input_name: str = "input", outputs: tuple[str, str] = ("first", "second")) -> onnx.ModelProto:
    """Conv 3→1 (the known weights), then two maps: `outputs[0]` = sigmoid(conv), the first and so
    the default one, and `outputs[1]` = sigmoid(−conv) = 1 − the first."""
    first, second = outputs
    nodes = [
        helper.make_node("Conv", [input_name, "W", "B"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["conv"], [first]),
        helper.make_node("Neg", ["conv"], ["negated"]),
        helper.make_node("Sigmoid", ["negated"], [second]),
    ]
    return _model(
        nodes,
        [_io(input_name, [1, 3, "H", "W"])],
        [_io(first, [1, 1, "H", "W"]), _io(second, [1, 1, "H", "W"])],
        [numpy_helper.from_array(CONV_WEIGHTS, "W"), numpy_helper.from_array(CONV_BIAS, "B")],
        "two_outputs",
    )


def wrong_rank() -> onnx.ModelProto:
    """Input of rank 3 ([3, H, W]): not an image batch."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["saliency_map"], axes=[0], keepdims=1)]
    return _model(nodes, [_io("input", [3, "H", "W"])], [_io("saliency_map", [1, "H", "W"])], [], "wrong_rank")


def four_channel_input() -> onnx.ModelProto:
    """Input [1, 4, H, W]: the channel dimension is not 3."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["saliency_map"], axes=[1], keepdims=1)]
    return _model(nodes, [_io("input", [1, 4, "H", "W"])], [_io("saliency_map", [1, 1, "H", "W"])], [], "four_channels")


def two_channel_output() -> onnx.ModelProto:
    """Output [1, 2, H, W]: a saliency map has one channel."""
    w = np.ones((2, 3, 1, 1), dtype=np.float32) / 3.0
    nodes = [helper.make_node("Conv", ["input", "W"], ["saliency_map"], kernel_shape=[1, 1])]
    return _model(
        nodes,
        [_io("input", [1, 3, "H", "W"])],
        [_io("saliency_map", [1, 2, "H", "W"])],
        [numpy_helper.from_array(w, "W")],
        "two_channel_output",
    )


def nan_output() -> onnx.ModelProto:
    """Right shape, NaN values: log of a strictly negative number (−exp(x) − 1)."""
    w = np.ones((1, 3, 1, 1), dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "W"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Exp", ["c"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]),
        helper.make_node("Neg", ["e1"], ["neg"]),
        helper.make_node("Log", ["neg"], ["saliency_map"]),
    ]
    return _model(
        nodes,
        [_io("input", [1, 3, "H", "W"])],
        [_io("saliency_map", [1, 1, "H", "W"])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")],
        "nan_output",
    )


def shrinking_output() -> onnx.ModelProto:
    """Declares [1, 1, H, W] but returns a map half the size (a 2× MaxPool): wrong shape at run time."""
    w = np.ones((1, 3, 1, 1), dtype=np.float32) / 3.0
    nodes = [
        helper.make_node("Conv", ["input", "W"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Sigmoid", ["m"], ["saliency_map"]),
    ]
    return _model(
        nodes,
        [_io("input", [1, 3, "H", "W"])],
        [_io("saliency_map", [1, 1, "H2", "W2"])],
        [numpy_helper.from_array(w, "W")],
        "shrinking_output",
    )


def slow_graph(layers: int = 24) -> onnx.ModelProto:
    """A valid saliency graph that is slow at full size: `layers` 3x3 convs of 64 channels, then a
    1x1 conv and a sigmoid (24 layers: many seconds per 320x180 frame on two cores)."""
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "input"
    chans = [3] + [64] * layers
    for i in range(layers):
        w = (rng.standard_normal((chans[i + 1], chans[i], 3, 3)) * 0.01).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        prev = f"c{i}"
    inits.append(numpy_helper.from_array(np.full((1, 64, 1, 1), 0.01, dtype=np.float32), "w_out"))
    nodes += [helper.make_node("Conv", [prev, "w_out"], ["logit"], kernel_shape=[1, 1]),
              helper.make_node("Sigmoid", ["logit"], ["saliency_map"])]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [1, 3, "H", "W"])],
                              [helper.make_tensor_value_info("saliency_map", TensorProto.FLOAT, [1, 1, "H", "W"])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model
