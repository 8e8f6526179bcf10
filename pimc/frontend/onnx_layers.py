"""The ONNX operators that compare, select, cast, reshape, multiply matrices, clip and
normalise: a mixin of the importer's builder (pimc.frontend.onnx_import), each written
with the IR's elementwise ops, views and matmul."""

from __future__ import annotations

import math

import numpy as np

from pimc.frontend.onnx_windows import Unsupported
from pimc.isa.dtypes import parse_dtype, quantize

COMPARE = {"Less": "lt", "LessOrEqual": "le", "Greater": "gt", "GreaterOrEqual": "ge",
           "Equal": "eq"}


class LayerOps:
    """Mixin of the ONNX importer's builder for the operators that are neither
    elementwise arithmetic nor windows."""

    def op_Less(self, nd, attrs):
        return self.binary(COMPARE[nd.op_type], self.operand(nd.input[0]),
                           self.operand(nd.input[1]))

    op_LessOrEqual = op_Greater = op_GreaterOrEqual = op_Equal = op_Less

    def op_Where(self, nd, attrs):
        c, x, y = (self.operand(v) for v in nd.input)
        shape = np.broadcast_shapes(*(self.info(v).shape for v in (c, x, y)))
        return self.node("select", str(self.info(x).dtype), shape, (c, x, y))

    def _cast(self, x: int, dt: str) -> int:
        if str(self.info(x).dtype) == dt:
            return x
        return self.node("cast", dt, self.info(x).shape, (x,))

    def op_Cast(self, nd, attrs):
        return self._cast(self.operand(nd.input[0]), self.dtype_of(attrs["to"], "Cast's target"))

    def op_CastLike(self, nd, attrs):
        like = self.operand(nd.input[1])
        return self._cast(self.operand(nd.input[0]), str(self.info(like).dtype))

    def op_Identity(self, nd, attrs):
        return self.operand(nd.input[0])

    def op_Dropout(self, nd, attrs):
        if len(nd.input) > 2 and nd.input[2] and bool(self._static(nd.input[2], "training_mode")):
            raise Unsupported("training mode (inference only)")
        if self.opset < 7 and not attrs.get("is_test", 1):
            raise Unsupported("training mode (inference only)")
        return self.operand(nd.input[0])

    def op_Flatten(self, nd, attrs):
        x = self.operand(nd.input[0])
        shape = self.info(x).shape
        axis = attrs.get("axis", 1)
        axis = axis + len(shape) if axis < 0 else axis
        return self.reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])))

    def op_Reshape(self, nd, attrs):
        x = self.operand(nd.input[0])
        if self.opset < 5 or len(nd.input) < 2:
            target = list(attrs["shape"])
        else:
            target = [int(v) for v in self._static(nd.input[1], "the shape")]
        shape = self.info(x).shape
        allowzero = attrs.get("allowzero", 0)
        dims = [shape[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
        if -1 in dims:
            known = math.prod(d for d in dims if d != -1)
            dims[dims.index(-1)] = math.prod(shape) // known if known else 0
        return self.reshape(x, tuple(dims))

    def _axes(self, nd, attrs, rank: int | None) -> list[int]:
        """The axes attribute or input; negative ones counted from `rank` (None: as given)."""
        if "axes" in attrs:
            axes = [int(a) for a in attrs["axes"]]
        elif len(nd.input) > 1 and nd.input[1]:
            axes = [int(v) for v in self._static(nd.input[1], "the axes")]
        else:
            axes = []
        return sorted(a + rank if a < 0 and rank is not None else a for a in axes)

    def op_Squeeze(self, nd, attrs):
        x = self.operand(nd.input[0])
        shape = self.info(x).shape
        axes = self._axes(nd, attrs, len(shape)) or [i for i, d in enumerate(shape) if d == 1]
        return self.reshape(x, tuple(d for i, d in enumerate(shape) if i not in axes))

    def op_Unsqueeze(self, nd, attrs):
        x = self.operand(nd.input[0])
        shape = list(self.info(x).shape)
        for a in self._axes(nd, attrs, len(shape) + len(self._axes(nd, attrs, None))):
            shape.insert(a, 1)
        return self.reshape(x, tuple(shape))

    def op_Transpose(self, nd, attrs):
        x = self.operand(nd.input[0])
        rank = len(self.info(x).shape)
        perm = tuple(attrs.get("perm", range(rank - 1, -1, -1)))
        return self.transpose(x, perm)

    def op_MatMul(self, nd, attrs):
        return self.matmul(self.operand(nd.input[0]), self.operand(nd.input[1]))

    def op_Gemm(self, nd, attrs):
        """alpha * A' @ B' + beta * C (A' = A or its transpose, likewise B')."""
        a, b = self.operand(nd.input[0]), self.operand(nd.input[1])
        if attrs.get("transA", 0):
            a = self.transpose(a, (1, 0))
        if attrs.get("transB", 0):
            b = self.transpose(b, (1, 0))
        y = self.matmul(a, b)
        dt = str(self.info(y).dtype)
        alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
        if alpha != 1.0:
            y = self.binary("mul", y, self._scalar(alpha, dt))
        if len(nd.input) > 2 and nd.input[2]:
            c = self.operand(nd.input[2])
            if beta != 1.0:
                c = self.binary("mul", c, self._scalar(beta, dt))
            y = self.binary("add", y, c)
        return y

    def _scalar(self, value: float, dt: str) -> int:
        return self.node("const", dt, (), value=value, raw=raw_bits(value, dt))

    def op_Clip(self, nd, attrs):
        """min(max(x, lo), hi), numpy's clip; a missing bound is no bound."""
        y = self.operand(nd.input[0])
        dt = str(self.info(y).dtype)
        if self.opset < 11:
            lo = self._scalar(attrs["min"], dt) if "min" in attrs else None
            hi = self._scalar(attrs["max"], dt) if "max" in attrs else None
        else:
            lo = self.operand(nd.input[1]) if len(nd.input) > 1 and nd.input[1] else None
            hi = self.operand(nd.input[2]) if len(nd.input) > 2 and nd.input[2] else None
        if lo is not None:
            y = self.binary("max", y, lo)
        if hi is not None:
            y = self.binary("min", y, hi)
        return y

    def op_LeakyRelu(self, nd, attrs):
        """x where x >= 0, else alpha * x (as select(x < 0, x * alpha, x))."""
        x = self.operand(nd.input[0])
        dt = str(self.info(x).dtype)
        negative = self.binary("lt", x, self._scalar(0.0, dt))
        scaled = self.binary("mul", x, self._scalar(attrs.get("alpha", 0.01), dt))
        shape = self.info(x).shape
        return self.node("select", dt, shape, (negative, scaled, x))

    def op_BatchNormalization(self, nd, attrs):
        """Inference: (x - mean) / sqrt(var + eps) * scale + bias per channel, in that
        order (onnx's). With constant statistics the host folds them first into
        x * a + b, a = scale / sqrt(var + eps) and b = bias - mean * a (float32)."""
        if attrs.get("training_mode", 0) or any(o for o in nd.output[1:]):
            raise Unsupported("training mode (inference only)")
        x = self.operand(nd.input[0])
        rank = len(self.info(x).shape)
        per_channel = (-1,) + (1,) * (rank - 2)
        eps = np.float32(attrs.get("epsilon", 1e-5))
        if all(n in self.consts for n in nd.input[1:5]):
            scale, bias, mean, var = (np.asarray(self.consts[n], dtype=np.float32)
                                      for n in nd.input[1:5])
            a = scale / np.sqrt(var + eps)
            b = bias - mean * a
            for tag, arr in (("scale", a), ("shift", b)):
                self.consts[f"{nd.output[0]}__bn_{tag}"] = arr.reshape(per_channel)
            y = self.binary("mul", x, self.value(f"{nd.output[0]}__bn_scale"))
            return self.binary("add", y, self.value(f"{nd.output[0]}__bn_shift"))
        scale, bias, mean, var = (self.reshape(self.operand(n), (
            self.info(self.operand(n)).shape[0], *per_channel[1:])) for n in nd.input[1:5])
        dt = str(self.info(x).dtype)
        spread = self.unary("sqrt", self.binary("add", var, self._scalar(float(eps), dt)))
        y = self.binary("div", self.binary("sub", x, mean), spread)
        return self.binary("add", self.binary("mul", y, scale), bias)


def raw_bits(value: object, dt: str) -> int:
    """The bits of one value in `dt` (fixed point: quantised, round to nearest)."""
    d = parse_dtype(dt)
    return int(d.to_bits(quantize(np.asarray(value).reshape(1), d))[0])
