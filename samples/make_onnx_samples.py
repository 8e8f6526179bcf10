"""Writes the ONNX samples of samples/: a two-layer perceptron, Gemm -> Relu -> Gemm, with
fixed random weights (4 inputs of 8 features, 16 hidden neurons, 8 outputs), and a
convolution layer, Conv -> Relu (3 x 16 x 16 in, 8 channels of 3 x 3 out, padded).

Run `python samples/make_onnx_samples.py`; the tests check the shipped file is exactly
what this script writes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def gemm_relu_gemm(batch: int = 4, features: int = 8, hidden: int = 16, classes: int = 8,
                   seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weights = {"w1": rng.normal(0, 0.5, (features, hidden)), "b1": rng.normal(0, 0.1, hidden),
               "w2": rng.normal(0, 0.5, (hidden, classes)), "b2": rng.normal(0, 0.1, classes)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2")]
    graph = helper.make_graph(
        nodes, "gemm_relu_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, classes])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pimc samples")
    model.ir_version = 8
    return model


def gemm_chain(sizes: list[int], batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """Gemm layers of the given widths with ReLU between them, weights N(0, 1/K) (a
    sensible scale: activations stay of order one however wide the layer)."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (k, n) in enumerate(itertools.pairwise(sizes)):
        inits += [numpy_helper.from_array(rng.normal(0, k ** -0.5, (k, n)).astype(np.float32),
                                          f"w{i}"),
                  numpy_helper.from_array(rng.normal(0, 0.1, n).astype(np.float32), f"b{i}")]
        last = i == len(sizes) - 2
        out = "y" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out], name=f"fc{i}"))
        prev = out
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    graph = helper.make_graph(
        nodes, "gemm_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pimc samples")
    model.ir_version = 8
    return model


def conv_relu(shape: tuple[int, ...] = (1, 3, 16, 16), channels: int = 8, kernel: int = 3,
              stride: int = 1, pad: int = 1, seed: int = 0) -> onnx.ModelProto:
    """One convolution layer with bias and ReLU, weights N(0, 1/fan-in)."""
    rng = np.random.default_rng(seed)
    fan = shape[1] * kernel * kernel
    w = rng.normal(0, fan ** -0.5, (channels, shape[1], kernel, kernel)).astype(np.float32)
    b = rng.normal(0, 0.1, channels).astype(np.float32)
    side = [(n + 2 * pad - kernel) // stride + 1 for n in shape[2:]]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[pad] * 4,
                              strides=[stride] * 2, kernel_shape=[kernel] * 2),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "conv_relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], channels, *side])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pimc samples")
    model.ir_version = 8
    return model


def small_cnn(shape: tuple[int, ...] = (1, 3, 12, 12), channels: tuple[int, int] = (8, 8),
              classes: int = 4, seed: int = 0) -> onnx.ModelProto:
    """A CNN whose feature maps stay in the crossbars: Conv 3x3 -> Relu -> MaxPool 2x2/2
    -> Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm, weights N(0, 1/fan-in)."""
    rng = np.random.default_rng(seed)
    c0, (c1, c2) = shape[1], channels
    inits = {"w1": rng.normal(0, (c0 * 9) ** -0.5, (c1, c0, 3, 3)),
             "b1": rng.normal(0, 0.1, c1),
             "w2": rng.normal(0, (c1 * 9) ** -0.5, (c2, c1, 3, 3)),
             "b2": rng.normal(0, 0.1, c2),
             "w3": rng.normal(0, c2 ** -0.5, (classes, c2)), "b3": rng.normal(0, 0.1, classes)}
    conv = {"pads": [1] * 4, "kernel_shape": [3, 3]}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", **conv),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", **conv),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], classes])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pimc samples")
    model.ir_version = 8
    return model


def training_cnn(seed: int = 0) -> onnx.ModelProto:
    """A CNN small enough to train on the simulator in seconds a step: x (1 x 6 x 6) ->
    Conv 3x3 (2 filters, pad 1) -> Relu -> MaxPool 2x2 -> GlobalAveragePool -> Flatten
    -> Gemm (2 classes); learns `checkerboards`."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                              name="pool1"),
             helper.make_node("GlobalAveragePool", ["p1"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["z"], transB=1, name="fc")]
    inits = {"w1": rng.normal(0, 0.5, (2, 1, 3, 3)), "b1": rng.normal(0, 0.1, 2),
             "w3": rng.normal(0, 0.7, (2, 2)), "b3": rng.normal(0, 0.1, 2)}
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def checkerboards(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Training data for training_cnn: class 1 a +-2 checkerboard over noise, class 0
    noise (each image offset), labels as class indices."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    board = np.indices((6, 6)).sum(axis=0) % 2 * 2 - 1.0
    x = rng.normal(0, 0.3, (n, 1, 6, 6)) + rng.normal(0, 0.5, (n, 1, 1, 1))
    x[y == 1, 0] += 2 * board
    return {"x": x.astype(np.float32), "labels": y}


def blobs(samples: int = 256, features: int = 8, classes: int = 8, seed: int = 7
          ) -> dict[str, np.ndarray]:
    """Training data for gemm_relu_gemm: separable Gaussian blobs (class centres
    N(0, 1.5^2), points 0.5 around them), labels as class indices."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (classes, features))
    labels = rng.integers(0, classes, samples)
    x = centres[labels] + rng.normal(0, 0.5, (samples, features))
    return {"x": x.astype(np.float32), "labels": labels}


def main() -> None:
    np.savez(HERE / "blobs.npz", **blobs())
    onnx.save(gemm_relu_gemm(), str(HERE / "gemm_relu_gemm.onnx"))
    onnx.save(conv_relu(), str(HERE / "conv_relu.onnx"))
    onnx.save(small_cnn(), str(HERE / "small_cnn.onnx"))


if __name__ == "__main__":
    main()
