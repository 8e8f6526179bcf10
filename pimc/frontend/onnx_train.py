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
from onnx import helper, numpy_helper

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


class _Graph:
    """Nodes and constants appended while differentiating."""

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
    g = _Graph(shapes, next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
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
    if node.op_type == "Concat" and (int(attrs.get("axis", 0)) % max(len(x), 1) != 1  # type: ignore[call-overload]
                                     or len(x) not in (2, 4)):
        return ": only along the channel axis of a 2-D or 4-D tensor"
    if node.op_type == "Conv":
        if len(x) != 4:
            return ": 2-D convolutions only"
        if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):  # type: ignore[attr-defined]
            return ": dilations, only 1"
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            return ": auto_pad, only explicit pads"
        if any(p >= k for p, k in zip(attrs.get("pads", [0] * 4)[:2],  # type: ignore[index]
                                      shapes.get(node.input[1], (0, 0, 1, 1))[2:],
                                      strict=False)):
            return ": pads as wide as the kernel"
    if node.op_type in ("MaxPool", "AveragePool"):
        k = list(attrs.get("kernel_shape", []))  # type: ignore[call-overload]
        pads = list(attrs.get("pads", [0] * 4))  # type: ignore[call-overload]
        if len(x) != 4 or len(k) != 2:
            return ": 2-D pools only"
        if int(attrs.get("ceil_mode", 0)) or any(  # type: ignore[call-overload]
                int(d) != 1 for d in attrs.get("dilations", [1, 1])):  # type: ignore[attr-defined]
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


def _backward(node: onnx.NodeProto, dy: str, want: set[int], g: _Graph) -> dict[int, str]:
    """The gradients of the node's inputs in slots `want`, from its output's, `dy`."""
    if not want:
        return {}
    return {i: dx for i, dx in _gradients(node, dy, want, g).items() if i in want}


def _gradients(node: onnx.NodeProto, dy: str, want: set[int], g: _Graph) -> dict[int, str]:
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
        return _conv(node, dy, want, attrs, g, where)
    if op == "BatchNormalization":
        return _batch_norm(node, dy, want, attrs, g, where)
    if op == "LRN":
        return {0: _lrn(node, dy, attrs, g, where)}
    if op == "Concat":
        return _concat(node, dy, want, attrs, g, where)
    if op in ("GlobalAveragePool", "AveragePool", "MaxPool"):
        return {0: _pool(node, dy, attrs, g, where)}
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


def _unbroadcast(dy: str, full: tuple[int, ...], to: tuple[int, ...], g: _Graph,
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


def _unsupported(node: onnx.NodeProto, why: str) -> PimError:
    return PimError(f"node '{node.name or node.output[0]}' ({node.op_type}): training {why}")


def _conv(node: onnx.NodeProto, dy: str, want: set[int], attrs: dict[str, object], g: _Graph,
          where: str) -> dict[int, str]:
    """A 2-D convolution's gradients, as convolutions: dW correlates the input with dY
    (strides become dilations), dX convolves dY (strides as zeros between its values)
    with the kernel turned 180 degrees, dB sums dY. With G groups, dW is the correlation
    of every input channel with every output channel, its blocks across groups zeroed
    and summed away; dX a convolution of G groups."""
    x, w = node.input[0], node.input[1]
    shape = g.shapes
    n, c, h, wd = shape[x]
    m, cg, kh, kw = shape[w]
    oh, ow = shape[dy][2:]
    groups = int(attrs.get("group", 1))  # type: ignore[call-overload]
    sh, sw = (int(v) for v in attrs.get("strides", [1, 1]))  # type: ignore[attr-defined]
    pt, pl, pb, pr = (int(v) for v in attrs.get("pads", [0, 0, 0, 0]))  # type: ignore[attr-defined]
    mg = m // groups
    out: dict[int, str] = {}
    if 2 in want:
        out[2] = g.reduce_sum(dy, [0, 2, 3], False, where, (m,))
    if 1 in want:
        # dW[m, c] = sum over n of X[n, c] correlated with dY[n, m] dilated by the stride;
        # a remainder of the input the windows never reach is met by one zero row of dY
        rh, rw = (h + pt + pb - kh) % sh, (wd + pl + pr - kw) % sw
        eh, ew = int(rh > 0), int(rw > 0)
        grad = dy if not (eh or ew) else g.pad(dy, [0, 0, 0, 0, 0, 0, eh, ew], where,
                                                (n, m, oh + eh, ow + ew))
        xt = g.add("Transpose", [x], where, (c, n, h, wd), perm=[1, 0, 2, 3])
        gt = g.add("Transpose", [grad], where, (m, n, oh + eh, ow + ew), perm=[1, 0, 2, 3])
        pads = [pt, pl, pb + (sh - rh if rh else 0), pr + (sw - rw if rw else 0)]
        cw = g.add("Conv", [xt, gt], where, (c, m, kh, kw), pads=pads, dilations=[sh, sw])
        if groups > 1:  # keep each group's block: (G, C/G, G, M/G, ...) times its diagonal
            blocks = (groups, cg, groups, mg, kh, kw)
            cw = g.add("Reshape", [cw, g.const(np.array(blocks, dtype=np.int64), "shape")],
                       where, blocks)
            diagonal = np.eye(groups, dtype=np.float32).reshape(groups, 1, groups, 1, 1, 1)
            cw = g.add("Mul", [cw, g.const(diagonal, "diagonal")], where, blocks)
            cw = g.reduce_sum(cw, [2], False, where, (groups, cg, mg, kh, kw))
            cw = g.add("Transpose", [cw], where, (groups, mg, cg, kh, kw), perm=[0, 2, 1, 3, 4])
            out[1] = g.add("Reshape", [cw, g.const(np.array((m, cg, kh, kw), dtype=np.int64),
                                                   "shape")], where, (m, cg, kh, kw))
        else:
            out[1] = g.add("Transpose", [cw], where, (m, c, kh, kw), perm=[1, 0, 2, 3])
    if 0 in want:
        # the kernel turned 180 degrees: a product with the reversal of its kh * kw taps
        turned = w
        if kh * kw > 1:
            flip = np.eye(kh * kw, dtype=np.float32)[::-1].copy()
            flat = g.add("Reshape", [w, g.const(np.array([m * cg, kh * kw], dtype=np.int64),
                                                "shape")], where, (m * cg, kh * kw))
            turned = g.add("MatMul", [flat, g.const(flip, "flip")], where, (m * cg, kh * kw))
        # (G, M/G, C/G, k) -> (G, C/G, M/G, k): each group's channels swapped
        split = (groups, mg, cg, kh, kw)
        turned = g.add("Reshape", [turned, g.const(np.array(split, dtype=np.int64), "shape")],
                       where, split)
        turned = g.add("Transpose", [turned], where, (groups, cg, mg, kh, kw),
                       perm=[0, 2, 1, 3, 4])
        wt = g.add("Reshape", [turned, g.const(np.array((c, mg, kh, kw), dtype=np.int64),
                                               "shape")], where, (c, mg, kh, kw))
        out[0] = _transposed(dy, wt, groups, (n, c, h, wd), (kh, kw), (sh, sw), (pt, pl), g,
                             where)
    return out


def _transposed(dy: str, turned: str, group: int, shape: tuple[int, int, int, int],
                kernel: tuple[int, int], strides: tuple[int, int], begin: tuple[int, int],
                g: _Graph, where: str) -> str:
    """The transpose of a strided convolution (pads `begin` first) applied to dY: dY
    spread by the strides, convolved with the `turned` kernel (already turned 180
    degrees, input and output channels swapped), cropped where a stride skipped the
    input's last rows; `shape` is the input's."""
    n, c, h, w = shape
    _, m, oh, ow = g.shapes[dy]
    (kh, kw), (sh, sw), (pt, pl) = kernel, strides, begin
    up = dy if (sh, sw) == (1, 1) else _spread(dy, (n, m, oh, ow), (sh, sw), g, where)
    pads = [kh - 1 - pt, kw - 1 - pl, h - oh * sh + pt, w - ow * sw + pl]
    over = (max(0, -pads[2]), max(0, -pads[3]))  # spread a row too far: cropped
    pads = [*pads[:2], max(0, pads[2]), max(0, pads[3])]
    full = g.add("Conv", [up, turned], where, (n, c, h + over[0], w + over[1]), pads=pads,
                 group=group)
    return _crop(full, (n, c, h + over[0], w + over[1]), (h, w), g, where)


def _crop(t: str, shape: tuple[int, int, int, int], keep: tuple[int, int], g: _Graph,
          where: str) -> str:
    """The first `keep` rows and columns of a map: products with a selection matrix (the
    IR has no slice), exact for finite values."""
    n, c, h, w = shape
    if (h, w) == keep:
        return t
    if w != keep[1]:
        pick = g.const(np.eye(w, keep[1], dtype=np.float32), "crop")
        t = g.add("MatMul", [t, pick], where, (n, c, h, keep[1]))
        w = keep[1]
    if h != keep[0]:
        pick = g.const(np.eye(keep[0], h, dtype=np.float32), "crop")
        t = g.add("MatMul", [pick, t], where, (n, c, keep[0], w))
    return t


def _batch_norm(node: onnx.NodeProto, dy: str, want: set[int], attrs: dict[str, object],
                g: _Graph, where: str) -> dict[int, str]:
    """Batch normalisation with its stored statistics (as the forward pass computes it):
    a per-channel affine map, y = scale (x - mean) / sqrt(var + eps) + B, whose scale
    and shift train; the statistics stay as they are."""
    x, scale, mean, var = node.input[0], node.input[1], node.input[3], node.input[4]
    shape = g.shapes[x]
    c = shape[1]
    per = (c, *[1] * (len(shape) - 2))  # broadcast along the channel axis
    axes = [i for i in range(len(shape)) if i != 1]
    eps = float(attrs.get("epsilon", 1e-5))  # type: ignore[arg-type]
    root = g.add("Sqrt", [g.add("Add", [var, g.const(eps)], where, (c,))], where, (c,))
    inv = g.add("Div", [g.const(1.0), root], where, (c,))
    as_per = g.const(np.array(per, dtype=np.int64), "shape")
    out: dict[int, str] = {}
    if 0 in want:
        k = g.add("Reshape", [g.add("Mul", [scale, inv], where, (c,)), as_per], where, per)
        out[0] = g.add("Mul", [dy, k], where, shape)
    if 1 in want:
        centred = g.add("Sub", [x, g.add("Reshape", [mean, as_per], where, per)], where, shape)
        xhat = g.add("Mul", [centred, g.add("Reshape", [inv, as_per], where, per)], where, shape)
        out[1] = g.reduce_sum(g.add("Mul", [dy, xhat], where, shape), axes, False, where, (c,))
    if 2 in want:
        out[2] = g.reduce_sum(dy, axes, False, where, (c,))
    return out


def _concat(node: onnx.NodeProto, dy: str, want: set[int], attrs: dict[str, object],
            g: _Graph, where: str) -> dict[int, str]:
    """Each input's part of dY along the channel axis, picked by a 1 x 1 convolution (or
    a product, for 2-D) with a selection matrix: the IR has no slice; exact for finite
    values."""
    full = g.shapes[dy]
    out, start = {}, 0
    for i, x in enumerate(node.input):
        part = g.shapes[x][1]
        if i in want:
            pick = np.zeros((part, full[1]), dtype=np.float32)
            pick[np.arange(part), start + np.arange(part)] = 1
            if len(full) == 2:
                out[i] = g.add("MatMul", [dy, g.const(pick.T.copy(), "pick")], where, g.shapes[x])
            else:
                kernel = pick.reshape(part, full[1], *[1] * (len(full) - 2))
                out[i] = g.add("Conv", [dy, g.const(kernel, "pick")], where, g.shapes[x])
        start += part
    return out


def _lrn(node: onnx.NodeProto, dy: str, attrs: dict[str, object], g: _Graph, where: str
         ) -> str:
    """Local response normalisation, y = x d^-beta with d = bias + alpha / size times
    the sum of x^2 over channels c - lo .. c + hi:
    dx = dy d^-beta - (2 alpha beta / size) x times the sum of dy y / d over the channels
    whose windows hold c (c - hi .. c + lo)."""
    x, y = node.input[0], node.output[0]
    shape = g.shapes[x]
    n, c = shape[:2]
    rest = int(np.prod(shape[2:]))
    size = int(attrs["size"])  # type: ignore[call-overload]
    alpha, beta = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75))  # type: ignore[arg-type]
    bias = float(attrs.get("bias", 1.0))  # type: ignore[arg-type]
    lo = (size - 1) // 2
    flat = (n, 1, c, rest)
    ones = g.const(np.ones((1, 1, size, 1), dtype=np.float32), "window")

    def channel_sum(t: str, before: int) -> str:
        """Sums over `size` channels from c - before on (a convolution along channels)."""
        r = g.add("Reshape", [t, g.const(np.array(flat, dtype=np.int64), "shape")], where, flat)
        r = g.add("Conv", [r, ones], where, flat, pads=[before, 0, size - 1 - before, 0])
        return g.add("Reshape", [r, g.const(np.array(shape, dtype=np.int64), "shape")], where,
                     shape)

    sq = g.add("Mul", [x, x], where, shape)
    d = g.add("Add", [g.add("Mul", [channel_sum(sq, lo), g.const(alpha / size)], where, shape),
                      g.const(bias)], where, shape)
    log = g.add("Log", [d], where, shape)
    scale = g.add("Exp", [g.add("Mul", [log, g.const(-beta)], where, shape)], where, shape)
    back = channel_sum(g.add("Div", [g.add("Mul", [dy, y], where, shape), d], where, shape),
                       size - 1 - lo)
    cross = g.add("Mul", [g.add("Mul", [x, back], where, shape),
                          g.const(2 * alpha * beta / size)], where, shape)
    return g.add("Sub", [g.add("Mul", [dy, scale], where, shape), cross], where, shape)


def _spread(dy: str, shape: tuple[int, int, int, int], strides: tuple[int, int], g: _Graph,
            where: str) -> str:
    """dY with stride - 1 zeros after each value along both spatial axes."""
    n, m, oh, ow = shape
    sh, sw = strides
    r = g.add("Reshape", [dy, g.const(np.array([n, m, oh, 1, ow, 1], dtype=np.int64),
                                      "shape")], where, (n, m, oh, 1, ow, 1))
    zeros = np.array([0] * 6 + [0, 0, 0, sh - 1, 0, sw - 1], dtype=np.int64)
    r = g.pad(r, [int(v) for v in zeros], where, (n, m, oh, sh, ow, sw))
    return g.add("Reshape", [r, g.const(np.array([n, m, oh * sh, ow * sw], dtype=np.int64),
                                        "shape")], where, (n, m, oh * sh, ow * sw))


def _pool(node: onnx.NodeProto, dy: str, attrs: dict[str, object], g: _Graph, where: str
          ) -> str:
    """A pool's input gradient: spread evenly over a global or a tiling window; for a max
    pool, to the first position that holds its window's maximum."""
    x = node.input[0]
    n, c, h, w = g.shapes[x]
    if node.op_type == "GlobalAveragePool":
        share = g.const(np.full((1, 1, h, w), 1.0 / (h * w), dtype=np.float32), "share")
        return g.add("Mul", [dy, share], where, (n, c, h, w))
    k = [int(v) for v in attrs.get("kernel_shape", [])]  # type: ignore[attr-defined]
    s = [int(v) for v in attrs.get("strides", k)]  # type: ignore[attr-defined]
    if s != k or any(int(p) for p in attrs.get("pads", [])) or h % k[0] or w % k[1]:  # type: ignore[attr-defined]
        return _window_pool(node, dy, attrs, g, where)
    oh, ow = h // k[0], w // k[1]
    back = g.const(np.array([n, c, h, w], dtype=np.int64), "shape")
    if node.op_type == "AveragePool":
        col = g.const(np.array([n, c, oh, 1, ow, 1], dtype=np.int64), "shape")
        share = g.const(np.full((1, 1, 1, k[0], 1, k[1]), 1.0 / (k[0] * k[1]),
                                dtype=np.float32), "share")
        spread = g.add("Mul", [g.add("Reshape", [dy, col], where, (n, c, oh, 1, ow, 1)), share],
                       where, (n, c, oh, k[0], ow, k[1]))
        return g.add("Reshape", [spread, back], where, (n, c, h, w))
    # a max pool: the first position of each window (in row-major order) that holds
    # its maximum takes the gradient, as onnx's Indices and PyTorch choose
    kk = k[0] * k[1]
    big = (n, c, oh, k[0], ow, k[1])
    order = [0, 1, 2, 4, 3, 5]  # (n, c, oh, ow, kh, kw)
    lanes = (n, c, oh, ow, kk)
    xs = g.add("Reshape", [x, g.const(np.array(big, dtype=np.int64), "shape")], where, big)
    xs = g.add("Transpose", [xs], where, (n, c, oh, ow, *k), perm=order)
    xs = g.add("Reshape", [xs, g.const(np.array(lanes, dtype=np.int64), "shape")], where, lanes)
    one = (n, c, oh, ow, 1)
    y = g.add("Reshape", [node.output[0], g.const(np.array(one, dtype=np.int64), "shape")],
              where, one)
    # x < max is a miss (Less has floats in every opset, Equal only from 11)
    hit = g.add("Where", [g.add("Less", [xs, y], where, lanes), g.const(0.0), g.const(1.0)],
                where, lanes)
    earlier = g.add("MatMul", [hit, g.const(np.triu(np.ones((kk, kk), np.float32), 1),
                                             "earlier")], where, lanes)
    first = g.add("Where", [g.add("Greater", [earlier, g.const(0.5)], where, lanes),
                            g.const(0.0), hit], where, lanes)
    grad = g.add("Mul", [first, g.add("Reshape", [dy, g.const(np.array(one, dtype=np.int64),
                                                                "shape")], where, one)],
                 where, lanes)
    grad = g.add("Reshape", [grad, g.const(np.array((n, c, oh, ow, *k), dtype=np.int64),
                                           "shape")], where, (n, c, oh, ow, *k))
    grad = g.add("Transpose", [grad], where, big, perm=order)
    return g.add("Reshape", [grad, back], where, (n, c, h, w))


def _window_pool(node: onnx.NodeProto, dy: str, attrs: dict[str, object], g: _Graph,
                 where: str) -> str:
    """A pool whose windows overlap or reach into padding: each window's k taps are
    taken by a depthwise convolution with one-hot kernels, the gradient shared among
    them (the first maximum's, or the average's share), and added back to the input by
    the transpose of that convolution."""
    x = node.input[0]
    n, c, h, w = g.shapes[x]
    oh, ow = g.shapes[dy][2:]
    (kh, kw) = [int(v) for v in attrs["kernel_shape"]]  # type: ignore[attr-defined]
    sh, sw = [int(v) for v in attrs.get("strides", [1, 1])]  # type: ignore[attr-defined]
    pt, pl, pb, pr = [int(v) for v in attrs.get("pads", [0] * 4)]  # type: ignore[attr-defined]
    kk = kh * kw
    taps = np.zeros((c * kk, 1, kh, kw), dtype=np.float32)  # channel (c, t): tap t of c
    taps[np.arange(c * kk), 0, np.tile(np.arange(kk) // kw, c), np.tile(np.arange(kk) % kw, c)] = 1
    rows = np.arange(oh)[:, None] * sh + np.arange(kk)[None, :] // kw - pt  # (oh, kk)
    cols = np.arange(ow)[:, None] * sw + np.arange(kk)[None, :] % kw - pl  # (ow, kk)
    inside = (((rows >= 0) & (rows < h))[:, None, :] & ((cols >= 0) & (cols < w))[None, :, :])
    lanes = (n, c, oh, ow, kk)
    one = (n, c, oh, ow, 1)
    if node.op_type == "MaxPool":
        t = g.add("Conv", [x, g.const(taps, "taps")], where, (n, c * kk, oh, ow), group=c,
                  strides=[sh, sw], pads=[pt, pl, pb, pr])
        t = g.add("Reshape", [t, g.const(np.array((n, c, kk, oh, ow), dtype=np.int64),
                                         "shape")], where, (n, c, kk, oh, ow))
        t = g.add("Transpose", [t], where, lanes, perm=[0, 1, 3, 4, 2])
        y = g.add("Reshape", [node.output[0], g.const(np.array(one, dtype=np.int64), "shape")],
                  where, one)
        hit = g.add("Where", [g.add("Less", [t, y], where, lanes), g.const(0.0),
                              g.const(inside[None, None].astype(np.float32), "inside")],
                    where, lanes)  # a padding tap is never the maximum
        earlier = g.add("MatMul", [hit, g.const(np.triu(np.ones((kk, kk), np.float32), 1),
                                                 "earlier")], where, lanes)
        share = g.add("Where", [g.add("Greater", [earlier, g.const(0.5)], where, lanes),
                                g.const(0.0), hit], where, lanes)
    else:
        counted = np.full(inside.shape, float(kk)) if int(attrs.get("count_include_pad", 0)) \
            else np.broadcast_to(inside.sum(axis=-1, keepdims=True), inside.shape)  # type: ignore[call-overload]
        share = g.const((inside / counted)[None, None].astype(np.float32), "share")
    grad = g.add("Mul", [share, g.add("Reshape", [dy, g.const(np.array(one, dtype=np.int64),
                                                                "shape")], where, one)],
                 where, lanes)
    grad = g.add("Transpose", [grad], where, (n, c, kk, oh, ow), perm=[0, 1, 4, 2, 3])
    grad = g.add("Reshape", [grad, g.const(np.array((n, c * kk, oh, ow), dtype=np.int64),
                                           "shape")], where, (n, c * kk, oh, ow))
    turned = np.zeros((c, kk, kh, kw), dtype=np.float32)  # the taps' kernels turned
    turned[np.repeat(np.arange(c), kk), np.tile(np.arange(kk), c),
           kh - 1 - np.tile(np.arange(kk) // kw, c), kw - 1 - np.tile(np.arange(kk) % kw, c)] = 1
    return _transposed(grad, g.const(turned, "turned"), c, (n, c, h, w), (kh, kw), (sh, sw),
                       (pt, pl), g, where)
