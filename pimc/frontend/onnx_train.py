"""A training step as an ONNX graph: the model's forward pass, a loss, the backward pass
and the SGD update of every weight, W <- W - lr * dL/dW (FloatPIM Sec. 2.1, 4.3).

The step is an ordinary ONNX model (inputs: the model's, and the one-hot labels; results:
the loss, then each weight's new value), so the compiler lowers it like any model and
`pimc run --verify` checks it against the order-matched reference and onnx's evaluator.
What makes it training is `Step.state`: each new weight is moved, by micro-ops, into
every placement its weight has, so the next step finds it there (`pimc/lower/link.py`).
The backward nodes are named `backward/<node>` and the updates `update/<weight>`, so the
per-layer report tells the phases apart."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from pimc.frontend.train_graph import StepGraph
from pimc.frontend.train_windows import (
    batch_norm_grad,
    concat_grad,
    conv_grad,
    lrn_grad,
    pool_grad,
)
from pimc.isa.errors import PimError

LOSSES = ("ce", "mse")
# the inputs of each operator a gradient flows back through
THROUGH = {"Gemm": (0, 1, 2), "MatMul": (0, 1), "Add": (0, 1), "Relu": (0,), "Sigmoid": (0,),
           "Tanh": (0,), "Flatten": (0,), "Reshape": (0,), "Identity": (0,),
           "Dropout": (0,), "Conv": (0, 1, 2), "GlobalAveragePool": (0,),
           "AveragePool": (0,), "MaxPool": (0,), "Sum": tuple(range(64)),
           "BatchNormalization": (0, 1, 2), "LRN": (0,), "Concat": tuple(range(64))}


@dataclass(frozen=True)
class TrainSpec:
    """`pimc compile --train`'s choices: the loss (softmax cross-entropy or mean squared
    error), the learning rate, the batch (the model input's first axis), the name of the
    labels input (one-hot, the shape of the model's output)."""

    loss: str = "ce"
    lr: float = 0.01
    batch: int | None = None
    label: str = "labels"


@dataclass
class Step:
    model: onnx.ModelProto
    state: dict[str, str]  # new weight's result name -> the weight it replaces
    loss: str = "loss"
    weights: list[str] = field(default_factory=list)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out: dict[str, tuple[int, ...]] = {}
    g = inferred.graph
    for v in (*g.input, *g.value_info, *g.output):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[v.name] = tuple(int(d.dim_value) for d in dims)
    for t in g.initializer:
        out[t.name] = tuple(t.dims)
    return out


def _with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name for t in m.graph.initializer}
    for v in m.graph.input:
        if v.name not in inits and v.type.tensor_type.shape.dim:
            v.type.tensor_type.shape.dim[0].dim_value = batch
    for v in (*m.graph.output, *m.graph.value_info):
        if v.type.tensor_type.shape.dim:
            v.type.tensor_type.shape.dim[0].Clear()
    del m.graph.value_info[:]
    return m


def training_step(model: onnx.ModelProto, spec: TrainSpec, file: str = "<model>") -> Step:
    """The training step of `model` (one output; every float initializer a gradient
    reaches is trained). PimError naming every node the backward pass cannot go through."""
    if spec.loss not in LOSSES:
        raise PimError(f"--loss must be one of {', '.join(LOSSES)}, not '{spec.loss}'")
    if not spec.lr > 0:
        raise PimError(f"--lr must be positive, not {spec.lr}")
    if spec.label in {v.name for v in model.graph.input} | {
            o for n in model.graph.node for o in n.output} | {
            t.name for t in model.graph.initializer}:
        raise PimError(f"{file}: the model already has a tensor '{spec.label}'; name the "
                       "labels input otherwise (--label NAME)")
    if spec.batch is not None:
        model = _with_batch(model, spec.batch)
    g0 = model.graph
    if len(g0.output) != 1:
        raise PimError(f"{file}: training needs a model of one output, not {len(g0.output)}")
    shapes = _shapes(model)
    out = g0.output[0].name
    if out not in shapes or len(shapes[out]) < 2 or any(d != 1 for d in shapes[out][2:]):
        raise PimError(f"{file}: training needs an output of (batch, values), trailing axes "
                       f"of 1 allowed; '{out}' is {list(shapes.get(out, ()))}")
    inits = {t.name: t for t in g0.initializer}
    producer = {o: n for n in g0.node for o in n.output}
    slots = {n.input[i] for n in g0.node for i in THROUGH.get(n.op_type, ())
             if i < len(n.input)}  # a batch norm's statistics are read, not trained
    trained = [t.name for t in g0.initializer if t.data_type == onnx.TensorProto.FLOAT
               and len(t.dims) >= 1 and t.name in slots and _reaches(t.name, g0, out)]
    if not trained:
        raise PimError(f"{file}: no float weight reaches the output: nothing to train")
    last = producer.get(out)
    folded = last if spec.loss == "ce" and last is not None and last.op_type == "Softmax" \
        else None  # the cross-entropy's gradient goes through it at once: p - labels
    bad = [(n, why) for n in g0.node if n is not folded and _needs(n, g0, trained, out)
           and (why := _refusal(n, shapes)) is not None]
    if bad:
        raise PimError(f"{file}: the training path cannot differentiate "
                       + "; ".join(f"node '{n.name or n.output[0]}' ({n.op_type}{why})"
                                   for n, why in bad))
    g = StepGraph(shapes, next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                            17))
    batch, classes = shapes[out][:2]
    pair = (batch, classes)
    labels = spec.label
    g.shapes[labels] = pair
    grads: dict[str, str] = {}

    def as_pair(t: str) -> str:
        """A (batch, values, 1, ...) tensor as (batch, values)."""
        return t if len(g.shapes[t]) == 2 else g.add(
            "Reshape", [t, g.const(np.array(pair, dtype=np.int64), "shape")], "loss/flatten", pair)

    def as_given(grad: str, t: str) -> str:
        """A (batch, values) gradient in the shape of `t`."""
        return grad if len(g.shapes[t]) == 2 else g.add(
            "Reshape", [grad, g.const(np.array(g.shapes[t], dtype=np.int64), "shape")],
            "backward/loss", g.shapes[t])

    if spec.loss == "ce":
        logits = folded.input[0] if folded is not None else out
        p = as_pair(out) if folded is not None else g.add(
            "Softmax", [as_pair(logits)], "loss/softmax", pair, axis=1)
        lp = g.add("LogSoftmax", [as_pair(logits)], "loss/log_softmax", pair, axis=1)
        picked = g.add("Mul", [labels, lp], "loss/picked", (batch, classes))
        total = g.reduce_sum(picked, [0, 1], False, "loss/sum", ())
        loss = g.add("Mul", [total, g.const(-1.0 / batch)], "loss/mean", ())
        diff = g.add("Sub", [p, labels], "backward/loss", (batch, classes))
        grads[logits] = as_given(g.add("Mul", [diff, g.const(1.0 / batch)], "backward/loss",
                                       pair), logits)
    else:
        n = batch * classes
        diff = g.add("Sub", [as_pair(out), labels], "loss/error", pair)
        sq = g.add("Mul", [diff, diff], "loss/square", (batch, classes))
        total = g.reduce_sum(sq, [0, 1], False, "loss/sum", ())
        loss = g.add("Mul", [total, g.const(1.0 / n)], "loss/mean", ())
        grads[out] = as_given(g.add("Mul", [diff, g.const(2.0 / n)], "backward/loss", pair),
                              out)
    for node in reversed(list(g0.node)):
        if not any(o in grads for o in node.output) or node.op_type not in THROUGH:
            continue
        if node is folded:
            continue
        want = {i for i in THROUGH[node.op_type] if i < len(node.input) and node.input[i]
                and _needs_grad(node.input[i], g0, trained, inits)}
        for slot, dx in _backward(node, grads[node.output[0]], want, g).items():
            x = node.input[slot]
            grads[x] = g.add("Add", [grads[x], dx], f"backward/{node.name or node.op_type}",
                             g.shapes[x]) if x in grads else dx
    lr = g.const(spec.lr, "lr")
    outputs = [helper.make_tensor_value_info("loss", onnx.TensorProto.FLOAT, [])]
    g.nodes.append(helper.make_node("Identity", [loss], ["loss"], name="loss/mean"))
    state = {}
    for w in trained:
        scaled = g.add("Mul", [grads[w], lr], f"update/{w}", shapes[w])
        new = f"{w}__new"
        g.nodes.append(helper.make_node("Sub", [w, scaled], [new], name=f"update/{w}"))
        outputs.append(helper.make_tensor_value_info(new, onnx.TensorProto.FLOAT,
                                                     list(shapes[w])))
        state[new] = w
    inputs = [*g0.input, helper.make_tensor_value_info(labels, onnx.TensorProto.FLOAT,
                                                       [batch, classes])]
    graph = helper.make_graph([*g0.node, *g.nodes], f"{g0.name}_train", inputs, outputs,
                              [*g0.initializer, *g.consts])
    step = helper.make_model(graph, opset_imports=model.opset_import)
    step.ir_version = model.ir_version
    return Step(step, state, "loss", trained)


def _reaches(name: str, graph: onnx.GraphProto, out: str) -> bool:
    """Whether `out` depends on `name` through operators a gradient goes through (or
    any operator: the caller lists those it cannot)."""
    live = {name}
    for n in graph.node:
        if any(i in live for i in n.input):
            live.update(n.output)
    return out in live


def _refusal(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why the backward pass cannot go through this node, or None if it can."""
    if node.op_type not in THROUGH:
        return ": no gradient rule"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x = shapes.get(node.input[0], ())
    if node.op_type == "MatMul" and (len(x) != 2 or len(shapes.get(node.input[1], ())) != 2):
        return ": 2-D products only"
    if node.op_type == "Concat" and (int(attrs.get("axis", 0)) % max(len(x), 1) != 1
                                     or len(x) not in (2, 4)):
        return ": only along the channel axis of a 2-D or 4-D tensor"
    if node.op_type == "Conv":
        if len(x) != 4:
            return ": 2-D convolutions only"
        if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):
            return ": dilations, only 1"
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            return ": auto_pad, only explicit pads"
        if any(p >= k for p, k in zip(attrs.get("pads", [0] * 4)[:2],
                                      shapes.get(node.input[1], (0, 0, 1, 1))[2:],
                                      strict=False)):
            return ": pads as wide as the kernel"
    if node.op_type in ("MaxPool", "AveragePool"):
        k = list(attrs.get("kernel_shape", []))
        pads = list(attrs.get("pads", [0] * 4))
        if len(x) != 4 or len(k) != 2:
            return ": 2-D pools only"
        if int(attrs.get("ceil_mode", 0)) or any(
                int(d) != 1 for d in attrs.get("dilations", [1, 1])):
            return ": ceil_mode or dilations"
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            return ": auto_pad, only explicit pads"
        if pads[0] >= k[0] or pads[1] >= k[1]:
            return ": pads as wide as the window"
    return None


def _needs(node: onnx.NodeProto, graph: onnx.GraphProto, trained: list[str], out: str) -> bool:
    """A node the gradient of some trained weight must go back through."""
    return any(_reaches(o, graph, out) for o in node.output) and any(
        _reaches(w, graph, node.output[0]) for w in trained)


def _needs_grad(x: str, graph: onnx.GraphProto, trained: list[str],
                inits: dict[str, onnx.TensorProto]) -> bool:
    if x in inits:
        return x in trained
    return any(_reaches(w, graph, x) for w in trained)


def _backward(node: onnx.NodeProto, dy: str, want: set[int], g: StepGraph) -> dict[int, str]:
    """The gradients of the node's inputs in slots `want`, from its output's, `dy`."""
    if not want:
        return {}
    return {i: dx for i, dx in _gradients(node, dy, want, g).items() if i in want}


def _gradients(node: onnx.NodeProto, dy: str, want: set[int], g: StepGraph) -> dict[int, str]:
    where = f"backward/{node.name or node.op_type}"
    op, ins = node.op_type, list(node.input)
    shape = g.shapes
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if op in ("Flatten", "Reshape", "Identity", "Dropout"):
        x = ins[0]
        return {0: g.add("Reshape", [dy, g.const(np.array(shape[x], dtype=np.int64), "shape")],
                         where, shape[x])}
    if op == "Relu":
        zero = g.const(0.0)
        positive = g.add("Greater", [ins[0], zero], where, shape[ins[0]])
        return {0: g.add("Where", [positive, dy, zero], where, shape[ins[0]])}
    if op == "Sigmoid":
        y = node.output[0]
        rest = g.add("Sub", [g.const(1.0), y], where, shape[y])
        slope = g.add("Mul", [y, rest], where, shape[y])
        return {0: g.add("Mul", [dy, slope], where, shape[y])}
    if op == "Tanh":
        y = node.output[0]
        sq = g.add("Mul", [y, y], where, shape[y])
        slope = g.add("Sub", [g.const(1.0), sq], where, shape[y])
        return {0: g.add("Mul", [dy, slope], where, shape[y])}
    if op == "Conv":
        return conv_grad(node, dy, want, attrs, g, where)
    if op == "BatchNormalization":
        return batch_norm_grad(node, dy, want, attrs, g, where)
    if op == "LRN":
        return {0: lrn_grad(node, dy, attrs, g, where)}
    if op == "Concat":
        return concat_grad(node, dy, want, attrs, g, where)
    if op in ("GlobalAveragePool", "AveragePool", "MaxPool"):
        return {0: pool_grad(node, dy, attrs, g, where)}
    if op in ("Add", "Sum"):
        return {i: _unbroadcast(dy, shape[node.output[0]], shape[x], g, where)
                for i, x in enumerate(ins) if i in want}
    if op == "MatMul":
        a, b = ins
        if len(shape[a]) != 2 or len(shape[b]) != 2:
            raise PimError(f"node '{node.name or node.output[0]}' (MatMul): training "
                           "supports 2-D products only")
        made = {0: lambda: g.product(dy, False, b, True, where),
                1: lambda: g.product(a, True, dy, False, where)}
        return {i: made[i]() for i in sorted(want)}
    # Gemm: Y = alpha * A' B' + beta * C, A' = A or its transpose, B' likewise
    a, b = ins[0], ins[1]
    ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    out = {}
    if 0 in want:
        out[0] = g.product(b, bool(tb), dy, True, where, alpha) if ta else \
            g.product(dy, False, b, not tb, where, alpha)
    if 1 in want:
        out[1] = g.product(dy, True, a, bool(ta), where, alpha) if tb else \
            g.product(a, not ta, dy, False, where, alpha)
    if 2 in want:
        dc = dy if beta == 1.0 else g.add("Mul", [dy, g.const(beta)], where, shape[dy])
        out[2] = _unbroadcast(dc, shape[node.output[0]], shape[ins[2]], g, where)
    return out


def _unbroadcast(dy: str, full: tuple[int, ...], to: tuple[int, ...], g: StepGraph,
                 where: str) -> str:
    """dy summed over the axes `to` was broadcast along, in `to`'s shape."""
    lead = len(full) - len(to)
    axes = [i for i in range(len(full))
            if i < lead or (to[i - lead] == 1 and full[i] != 1)]
    if not axes:
        return dy
    kept = tuple(1 if i in axes else d for i, d in enumerate(full))
    summed = g.reduce_sum(dy, axes, True, where, kept)
    return summed if kept == to else g.add(
        "Reshape", [summed, g.const(np.array(to, dtype=np.int64), "shape")], where, to)
