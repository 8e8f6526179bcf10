"""pimc as an ONNX backend (onnx.backend.base): models compile to micro-ops that the
bit-level runtime executes.

A model is compiled when `run` first sees its inputs: inputs that decide shapes (the
shape of a Reshape, the axes of a Squeeze or Unsqueeze) are then fixed, as constants, for
that compilation; every other input, weights included, is written into the crossbars by
the host at run time. Compilations are cached per such binding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from pimc.compile import compile_model
from pimc.frontend.onnx_import import Imported
from pimc.isa.arch import Arch
from pimc.isa.dtypes import Kind, dequantize, parse_dtype, quantize
from pimc.isa.uop import Program
from pimc.runtime import run_program

# (op type, input position) pairs whose value decides a shape, not data.
SHAPE_INPUTS = {("Reshape", 1), ("Squeeze", 1), ("Unsqueeze", 1), ("Dropout", 1),
                ("Dropout", 2), ("ConstantOfShape", 0), ("Expand", 1), ("Pad", 1), ("Pad", 2),
                ("Pad", 3), ("Slice", 1), ("Slice", 2), ("Slice", 3), ("Slice", 4)}


def shape_inputs(model: onnx.ModelProto) -> set[str]:
    """Graph inputs that decide shapes (bound at compile time)."""
    names = {x for nd in model.graph.node for i, x in enumerate(nd.input)
             if (nd.op_type, i) in SHAPE_INPUTS}
    return names & {i.name for i in model.graph.input}


class PimRep(BackendRep):
    def __init__(self, model: onnx.ModelProto, *, mode: str = "ieee", dtype: str = "f32",
                 arch: Arch | None = None) -> None:
        self.model, self.mode, self.dtype, self.arch = model, mode, dtype, arch
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in inits]
        self.bound = shape_inputs(model)
        self.cache: dict[bytes, tuple[Program, Imported]] = {}
        self.last_stats: Any = None

    def compiled(self, feed: dict[str, np.ndarray]) -> tuple[Program, Imported]:
        bind = {n: np.asarray(feed[n]) for n in sorted(self.bound) if n in feed}
        key = b"".join(n.encode() + v.tobytes() + str(v.shape).encode() for n, v in bind.items())
        if key not in self.cache:
            self.cache[key] = compile_model(self.model, self.model.graph.name or "model",
                                            arch=self.arch, mode=self.mode, dtype=self.dtype,
                                            bind=bind)
        return self.cache[key]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            feed = dict(inputs)
        else:
            seq = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feed = dict(zip(self.input_names, seq, strict=False))
        prog, imported = self.compiled(feed)
        host = {p.name: quantize(feed[p.name], parse_dtype(p.dtype))
                for p in imported.kernel.params if p.name in feed}
        host.update(imported.constants)
        outputs, self.last_stats = run_program(prog, host, name=prog.source or "model")
        results = []
        for out in self.model.graph.output:
            value = np.asarray(outputs[out.name])
            dt = parse_dtype(next(r.dtype for r in imported.kernel.results if r.name == out.name))
            if dt.kind is Kind.FIXED:  # back to the model's float32
                value = dequantize(value, dt).astype(np.float32)
            elif out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
                value = value.astype(np.float32)  # computed in bfloat16 or float16
            if out.type.tensor_type.elem_type == onnx.TensorProto.BOOL:
                value = value.astype(bool)
            results.append(value)
        return tuple(results)


class PimBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> PimRep:
        super().prepare(model, device, **kwargs)
        return PimRep(model, mode=kwargs.get("mode", "ieee"), dtype=kwargs.get("dtype", "f32"),
                      arch=kwargs.get("arch"))

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, Any]] | None = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        values = list(inputs)
        names = [x or f"in{i}" for i, x in enumerate(node.input)]
        graph_inputs = [helper.make_tensor_value_info(
            n, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.shape(v))
            for n, v in zip(names, values, strict=False)]
        outs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                for o in node.output]
        graph = helper.make_graph([node], "node", graph_inputs, outs)
        model = helper.make_model(graph)
        rep = cls.prepare(model, device, **kwargs)
        return rep.run(dict(zip(names, values, strict=False)))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = PimBackend.prepare
run_node = PimBackend.run_node
supports_device = PimBackend.supports_device
run_model = PimBackend.run_model
