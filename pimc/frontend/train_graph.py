"""The graph a training step adds to its model (`pimc/frontend/onnx_train.py`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class StepGraph:
    """The nodes and constants a training step adds to its model, each tensor's shape
    known, written in the model's own opset."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.consts: list[onnx.TensorProto] = []
        self.shapes = shapes
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}__{self.count}"

    def const(self, value: np.ndarray | float, hint: str = "c") -> str:
        name = self.fresh(hint)
        arr = np.asarray(value)
        self.consts.append(numpy_helper.from_array(
            arr.astype(np.float32) if arr.dtype.kind == "f" else arr, name))
        return name

    def add(self, op: str, ins: list[str], where: str, shape: tuple[int, ...],
            **attrs: object) -> str:
        out = self.fresh(where.replace("/", "_"))
        self.nodes.append(helper.make_node(op, ins, [out], name=where, **attrs))
        self.shapes[out] = shape
        return out

    # the operators whose form changed between opsets, in the model's own opset

    def reduce_sum(self, x: str, axes: list[int], keep: bool, where: str,
                   shape: tuple[int, ...]) -> str:
        if self.opset >= 13:
            return self.add("ReduceSum", [x, self.const(np.array(axes, dtype=np.int64), "axes")],
                            where, shape, keepdims=int(keep))
        return self.add("ReduceSum", [x], where, shape, axes=axes, keepdims=int(keep))

    def pad(self, x: str, pads: list[int], where: str, shape: tuple[int, ...]) -> str:
        if self.opset >= 11:
            return self.add("Pad", [x, self.const(np.array(pads, dtype=np.int64), "pads")],
                            where, shape)
        return self.add("Pad", [x], where, shape, pads=pads)

    def slice(self, x: str, starts: list[int], ends: list[int], axes: list[int], where: str,
              shape: tuple[int, ...]) -> str:
        if self.opset >= 10:
            ints = [self.const(np.array(v, dtype=np.int64), h)
                    for v, h in ((starts, "starts"), (ends, "ends"), (axes, "axes"))]
            return self.add("Slice", [x, *ints], where, shape)
        return self.add("Slice", [x], where, shape, starts=starts, ends=ends, axes=axes)

    def product(self, a: str, ta: bool, b: str, tb: bool, where: str, alpha: float = 1.0
                ) -> str:
        """alpha A' B' (A' = A transposed if ta, B' likewise), as MatMul: every opset."""
        sides = []
        for x, t in ((a, ta), (b, tb)):
            rows, cols = self.shapes[x]
            sides.append(self.add("Transpose", [x], where, (cols, rows), perm=[1, 0]) if t
                         else x)
        shape = (self.shapes[sides[0]][0], self.shapes[sides[1]][1])
        out = self.add("MatMul", sides, where, shape)
        return out if alpha == 1.0 else self.add("Mul", [out, self.const(alpha)], where, shape)
