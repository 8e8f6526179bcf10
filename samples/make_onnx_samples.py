"""Writes the ONNX sample of samples/: a two-layer perceptron, Gemm -> Relu -> Gemm, with
fixed random weights (4 inputs of 8 features, 16 hidden neurons, 8 outputs).

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


def main() -> None:
    onnx.save(gemm_relu_gemm(), str(HERE / "gemm_relu_gemm.onnx"))


if __name__ == "__main__":
    main()
