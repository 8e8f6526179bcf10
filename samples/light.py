"""The real CNN architectures the onnx wheel ships (`onnx/backend/test/data/light/`), with
seeded random weights of a sensible scale in place of their constant 0.02 (every weight
equal would hide a wrong index): convolution and Gemm weights N(0, 2 / fan-in) (He),
biases N(0, 0.01^2), batch-norm scales near 1, shifts and means near 0, variances in
[0.5, 1.5]. `load_light("light_resnet50", until="gpu_0/res2_0_branch2a_1")` cuts a
model at a tensor (and `start=` at another), for tests and benchmarks of single layers
and blocks at full size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

NAMES = ("light_bvlc_alexnet", "light_resnet50", "light_vgg19", "light_squeezenet",
         "light_inception_v1")


def light_path(name: str) -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"{name}.onnx"


def _value(shape: tuple[int, ...], op: str, slot: int, rng: np.random.Generator) -> np.ndarray:
    """A weight of this shape, for input `slot` of an `op` node."""
    if op in ("Conv", "Gemm") and slot == 1:
        fan = int(np.prod(shape[1:])) if op == "Conv" else shape[-1]
        return rng.normal(0.0, np.sqrt(2.0 / max(fan, 1)), shape)
    if op == "BatchNormalization":
        return {1: lambda: rng.normal(1.0, 0.1, shape), 2: lambda: rng.normal(0.0, 0.1, shape),
                3: lambda: rng.normal(0.0, 0.1, shape),
                4: lambda: rng.uniform(0.5, 1.5, shape)}[slot]()
    return rng.normal(0.0, 0.01, shape)


def with_random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """The model with every ConstantOfShape weight replaced by a seeded random
    initializer (Gemm's transB is honoured by fan-in: the last axis of a (N, K) B)."""
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    users: dict[str, tuple[str, int]] = {}
    for n in g.node:
        for slot, name in enumerate(n.input):
            users.setdefault(name, (n.op_type, slot))
    keep, made = [], []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = tuple(int(d) for d in numpy_helper.to_array(inits[n.input[0]]))
            op, slot = users.get(n.output[0], ("", 0))
            made.append(numpy_helper.from_array(_value(shape, op, slot, rng).astype(np.float32),
                                                n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(made)
    used = {name for n in g.node for name in n.input}
    for field in (g.initializer, g.input):  # the shapes the constants were made from
        kept = [t for t in field if t.name in used]
        del field[:]
        field.extend(kept)
    m.ir_version = max(m.ir_version, 4)  # initializers need not be listed as inputs
    return onnx.shape_inference.infer_shapes(m)


def load_light(name: str, seed: int = 0, until: str | None = None,
               start: str | None = None) -> onnx.ModelProto:
    """A light model with random weights, cut after tensor `until` if given, and before
    tensor `start` (which becomes the input) if given."""
    model = with_random_weights(onnx.load(str(light_path(name))), seed)
    if until is None and start is None:
        return model
    from onnx.utils import Extractor

    inputs = [start] if start else [i.name for i in model.graph.input
                                    if i.name not in {t.name for t in model.graph.initializer}]
    return Extractor(model).extract_model(inputs, [until or model.graph.output[0].name])
