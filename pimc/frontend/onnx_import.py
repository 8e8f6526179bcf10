"""The ONNX front end: a model -> the same dataflow IR as the kernel language (pimc.ir).

The model is checked, its shapes inferred, and everything computable before run time is
folded on the host: initializers, Constant, ConstantOfShape, Shape (of static shapes) and
any node whose inputs are all constants (run once by onnx's reference evaluator). What
remains must be an operator pimc lowers; otherwise one error lists every unsupported node.

Array constants (weights) become kernel parameters the host writes, their values kept in
`Imported.constants`; scalar constants become IR constants. Gemm, Clip, LeakyRelu,
BatchNormalization (with constant statistics) and the variadic Max/Min/Sum are expressed
with the IR's elementwise ops, `matmul`, `reshape` and `transpose`; convolutions and
pooling with `window` too (pimc.frontend.onnx_windows).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from pimc.frontend.onnx_layers import COMPARE, LayerOps, raw_bits
from pimc.frontend.onnx_transcendental import TranscendentalOps
from pimc.frontend.onnx_windows import Unsupported, WindowOps
from pimc.ir import Kernel, Loc, Node, Param, add_node
from pimc.isa.dtypes import parse_dtype, quantize
from pimc.isa.errors import PimError

OPSET_MIN = 7

# ONNX element types pimc computes with, and their IR dtypes.
DTYPES = {onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.FLOAT16: "f16",
          onnx.TensorProto.BFLOAT16: "bf16", onnx.TensorProto.INT8: "i8",
          onnx.TensorProto.INT16: "i16", onnx.TensorProto.INT32: "i32",
          onnx.TensorProto.INT64: "i64", onnx.TensorProto.UINT8: "u8",
          onnx.TensorProto.UINT16: "u16", onnx.TensorProto.UINT32: "u32",
          onnx.TensorProto.UINT64: "u64", onnx.TensorProto.BOOL: "u1"}

ELEMENTWISE = {"Add": "add", "Sub": "sub", "Mul": "mul", "Neg": "neg", "Abs": "abs",
               "Relu": "relu", "Div": "div", "Sqrt": "sqrt"}
VARIADIC = {"Max": "max", "Min": "min", "Sum": "add"}
SHAPE_OPS = ("Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Unsqueeze")
WINDOWS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Pad", "Slice",
           "ReduceMax", "ReduceSum", "Concat")
SUPPORTED = (*ELEMENTWISE, *VARIADIC, *COMPARE, *SHAPE_OPS, *WINDOWS, "Transpose", "MatMul",
             "Gemm", "Clip", "LeakyRelu", "BatchNormalization", "Where", "Cast", "CastLike",
             "Exp", "Log", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "LRN")


@dataclass
class Imported:
    kernel: Kernel
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # host-written weights
    opset: int = 0
    names: dict[str, str] = field(default_factory=dict)  # a variable's param, by tensor


def load_model(path: str | Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise PimError(f"{path}: cannot load the ONNX model: {exc}") from None


def _opset(model: onnx.ModelProto, name: str) -> int:
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    newest = onnx.defs.onnx_opset_version()
    if not OPSET_MIN <= version <= newest:
        raise PimError(f"{name}: opset {version} is outside the supported {OPSET_MIN}..{newest}")
    return version


class _Builder(LayerOps, WindowOps, TranscendentalOps):
    """Walks the graph once, folding constants and emitting IR nodes."""

    def __init__(self, model: onnx.ModelProto, name: str, dtype: str,
                 bind: dict[str, np.ndarray], variables: frozenset[str] = frozenset()) -> None:
        self.model, self.name, self.float_dtype = model, name, dtype
        self.variables = variables
        self.opset = _opset(model, name)
        self.kernel = Kernel(model.graph.name or Path(name).stem, (), ())
        self.values: dict[str, int] = {}  # tensor name -> IR node
        self.consts: dict[str, np.ndarray] = {}  # tensor name -> value, known now
        self.weights: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.types: dict[str, int] = {}
        self.unsupported: list[str] = []
        self.poisoned: set[str] = set()  # outputs of unsupported nodes
        self.bind = bind
        self.loc = Loc(name, 0, 0)

    # ------------------------------------------------------------------ types and shapes

    def dtype_of(self, elem_type: int, what: str) -> str:
        if elem_type not in DTYPES:
            try:
                name = helper.tensor_dtype_to_string(elem_type) if elem_type else "unknown"
            except KeyError:
                name = f"number {elem_type} (not an ONNX element type)"
            raise PimError(f"{self.name}: {what} has element type {name}, which pimc does "
                           f"not compute with")
        dt = DTYPES[elem_type]
        return self.float_dtype if dt == "f32" else dt

    def collect_types(self, graph: onnx.GraphProto) -> None:
        for vi in (*graph.input, *graph.value_info, *graph.output):
            t = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                continue
            self.types[vi.name] = t.elem_type
            if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
                self.shapes[vi.name] = tuple(int(d.dim_value) for d in t.shape.dim)

    # ------------------------------------------------------------------ IR building

    def node(self, op: str, dtype: str, shape: tuple[int, ...], operands: tuple[int, ...] = (),
             **attrs: object) -> int:
        return add_node(self.kernel, Node(op, self.loc, dtype, tuple(shape),
                                          tuple(sorted(attrs.items()))), operands)

    def value(self, name: str, param: bool = False) -> int:
        """The IR node of a tensor; constants become IR constants or host-written params
        (always a param if `param`)."""
        if name in self.values:
            return self.values[name]
        arr = self.consts[name]
        dt = self.dtype_of(helper.np_dtype_to_tensor_dtype(arr.dtype), f"constant '{name}'")
        if arr.size == 1 and not param:
            flat = arr.reshape(-1)[0]
            n = self.node("const", dt, arr.shape, value=float(flat) if dt[0] in "fbq" else
                          int(flat), raw=raw_bits(flat, dt))
        else:
            pname = _identifier(name, self.values.keys() | self.weights.keys())
            self.weights[pname] = quantize(arr, parse_dtype(dt))
            self.kernel.params = (*self.kernel.params, Param(pname, dt, arr.shape, self.loc))
            n = self.node("input", dt, arr.shape, name=pname)
        self.values[name] = n
        return n

    def info(self, n: int) -> Node:
        return self.kernel.node(n)

    def binary(self, op: str, a: int, b: int) -> int:
        na, nb = self.info(a), self.info(b)
        shape = np.broadcast_shapes(na.shape, nb.shape)
        dtype = "u1" if op in ("lt", "le", "gt", "ge", "eq", "ne") else na.dtype
        return self.node(op, str(dtype), shape, (a, b))

    def unary(self, op: str, a: int) -> int:
        na = self.info(a)
        return self.node(op, str(na.dtype), na.shape, (a,))

    def reshape(self, a: int, shape: tuple[int, ...]) -> int:
        na = self.info(a)
        if tuple(shape) == na.shape:
            return a
        if math.prod(shape) != math.prod(na.shape or ()):
            raise PimError(f"cannot reshape {list(na.shape)} to {list(shape)}")
        return self.node("reshape", str(na.dtype), tuple(shape), (a,))

    def transpose(self, a: int, perm: tuple[int, ...]) -> int:
        na = self.info(a)
        if tuple(perm) == tuple(range(len(perm))):
            return a
        return self.node("transpose", str(na.dtype), tuple(na.shape[p] for p in perm), (a,),
                         perm=tuple(perm))

    def matmul(self, a: int, b: int) -> int:
        """numpy's matmul: 1-D operands get a unit axis, removed again after."""
        sa, sb = self.info(a).shape, self.info(b).shape
        a2 = self.reshape(a, (1, *sa)) if len(sa) == 1 else a
        b2 = self.reshape(b, (*sb, 1)) if len(sb) == 1 else b
        sa2, sb2 = self.info(a2).shape, self.info(b2).shape
        if sa2[-1] != sb2[-2]:
            raise PimError(f"MatMul of {list(sa)} and {list(sb)}: inner dimensions differ")
        batch = np.broadcast_shapes(sa2[:-2], sb2[:-2])
        y = self.node("matmul", str(self.info(a).dtype), (*batch, sa2[-2], sb2[-1]), (a2, b2),
                      inner=sa2[-1])
        out = tuple(batch) + (sa2[-2],) * (len(sa) > 1) + (sb2[-1],) * (len(sb) > 1)
        return self.reshape(y, out)

    # ------------------------------------------------------------------ the walk

    def run(self) -> Imported:
        graph = self.model.graph
        self.collect_types(graph)
        for init in graph.initializer:
            try:
                self.consts[init.name] = numpy_helper.to_array(init)
            except (ValueError, TypeError, KeyError) as exc:
                raise PimError(f"{self.name}: initializer '{init.name}' is corrupt: {exc}"
                               ) from None
        names = {}
        for v in sorted(self.variables):  # initial values only: never folded on the host
            if v not in self.consts:
                raise PimError(f"{self.name}: '{v}' is not an initializer")
            names[v] = self.info(self.value(v, param=True)).attr("name")
            del self.consts[v]
        for inp in graph.input:
            if inp.name in self.consts or inp.name in names:
                continue  # an initializer's default value: folded as a constant
            if inp.name in self.bind:
                self.consts[inp.name] = np.asarray(self.bind[inp.name])
                continue
            dt = self.dtype_of(self.types.get(inp.name, 0), f"input '{inp.name}'")
            if inp.name not in self.shapes:
                raise PimError(f"{self.name}: input '{inp.name}' has no static shape")
            shape = self.shapes[inp.name]
            self.kernel.params = (*self.kernel.params, Param(inp.name, dt, shape, self.loc))
            self.values[inp.name] = self.node("input", dt, shape, name=inp.name)
        for i, nd in enumerate(graph.node):
            self.loc = Loc(self.name, i + 1, 0, f"{nd.name or f'node{i}'} {nd.op_type}")
            try:
                self.visit(nd)
            except Unsupported as why:
                self.poisoned.update(nd.output)
                self.unsupported.append(f"  node '{nd.name or f'#{i}'}' ({nd.op_type}, domain "
                                        f"'{nd.domain or 'ai.onnx'}', opset {self.opset}): {why}")
            except PimError as exc:
                raise PimError(f"{self.name}: node '{nd.name or f'#{i}'}' ({nd.op_type}): "
                               f"{exc}") from None
        if self.unsupported:
            raise PimError(f"{self.name}: {len(self.unsupported)} node(s) pimc cannot compile:\n"
                           + "\n".join(self.unsupported))
        results = []
        for out in graph.output:
            n = self.value(out.name) if out.name in self.consts else self.values[out.name]
            node = self.info(n)
            results.append(Param(out.name, str(node.dtype), tuple(node.shape or ()), self.loc))
            self.kernel.outputs[out.name] = n
        self.kernel.results = tuple(results)
        return Imported(self.kernel, self.weights, self.opset, names)

    def visit(self, nd: onnx.NodeProto) -> None:
        ins = [x for x in nd.input]
        present = [x for x in ins if x]
        if nd.domain not in ("", "ai.onnx"):
            raise Unsupported("operators outside the default domain are not supported")
        if any(x in self.poisoned for x in present):  # downstream of an unsupported node
            self.poisoned.update(nd.output)
            if nd.op_type not in SUPPORTED:
                raise Unsupported("no lowering for this operator")
            return
        if nd.op_type == "Shape" and ins[0] in self.shapes:
            self._fold_shape(nd)
            return
        if nd.op_type in ("Constant", "ConstantOfShape") or (
                present and all(x in self.consts for x in present)
                and not self._evaluator_wrong(nd.op_type)):
            self._fold(nd)
            return
        if nd.op_type not in SUPPORTED:
            raise Unsupported("no lowering for this operator")
        attrs = {a.name: helper.get_attribute_value(a) for a in nd.attribute}
        out = getattr(self, "op_" + nd.op_type, None)
        result = out(nd, attrs) if out else self._elementwise(nd)
        self.values[nd.output[0]] = result
        for i, extra in enumerate(nd.output[1:], 1):
            if extra and (nd.op_type, i) == ("Dropout", 1):  # inference: the mask is all true
                self.values[extra] = self.node("const", "u1", self.info(result).shape,
                                               value=1, raw=1)
            elif extra:
                raise Unsupported(f"output '{extra}' (only the first output is computed)")

    def _evaluator_wrong(self, op: str) -> bool:
        """Operators onnx's reference evaluator gets wrong at this opset (so not folded
        with it): Softmax-family before 13, BatchNormalization-9, LRN (it sums the
        squares over the batch axis's length, not the channels)."""
        return (op in ("Softmax", "LogSoftmax", "Hardmax") and self.opset < 13) or (
            op == "BatchNormalization" and 9 <= self.opset < 14) or op == "LRN"

    def _fold(self, nd: onnx.NodeProto) -> None:
        from onnx.reference import ReferenceEvaluator

        inputs = [x for x in nd.input if x]
        graph = helper.make_graph(
            [nd], "fold",
            [helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(
                self.consts[x].dtype), self.consts[x].shape) for x in inputs],
            [helper.make_tensor_value_info(y, onnx.TensorProto.UNDEFINED, None)
             for y in nd.output if y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        try:
            outs = ReferenceEvaluator(model).run(None, {x: self.consts[x] for x in inputs})
        except Exception as exc:
            raise Unsupported(f"could not be folded as a constant ({exc})") from None
        for y, v in zip([y for y in nd.output if y], outs, strict=True):
            self.consts[y] = np.asarray(v)

    def _fold_shape(self, nd: onnx.NodeProto) -> None:
        shape = np.array(self.shapes[nd.input[0]], dtype=np.int64)
        attrs = {a.name: helper.get_attribute_value(a) for a in nd.attribute}
        start, end = attrs.get("start", 0), attrs.get("end")
        self.consts[nd.output[0]] = shape[start:end]

    def operand(self, name: str) -> int:
        if name not in self.values and name not in self.consts:
            raise PimError(f"tensor '{name}' is not defined before its use")
        return self.value(name)

    def _elementwise(self, nd: onnx.NodeProto) -> int:
        ops = [self.operand(x) for x in nd.input if x]
        if nd.op_type in ELEMENTWISE:
            op = ELEMENTWISE[nd.op_type]
            return self.unary(op, ops[0]) if len(ops) == 1 else self.binary(op, *ops)
        y = ops[0]
        for other in ops[1:]:  # left to right, as the reference evaluator does
            y = self.binary(VARIADIC[nd.op_type], y, other)
        return y

    def _static(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise Unsupported(f"{what} must be known at compile time (a constant or an "
                               f"initializer)")
        return self.consts[name]

    def _out_shape(self, nd: onnx.NodeProto) -> tuple[int, ...] | None:
        return self.shapes.get(nd.output[0])

def _identifier(name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "w"
    base = "w_" + base if not base[0].isalpha() else base
    out, k = base, 1
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    return out


def import_model(model: onnx.ModelProto, name: str = "<model>", *, dtype: str = "f32",
                 bind: dict[str, np.ndarray] | None = None,
                 variables: frozenset[str] = frozenset()) -> Imported:
    """The IR of a model. `dtype` replaces float32 (bf16, f16 or a Q format such as q8.8:
    quantised for PIM, the host rounding what it writes); `bind`
    fixes inputs whose values decide shapes (e.g. a Reshape's shape fed as an input);
    `variables`: initializers whose values change between runs (a training step's
    weights), host-written params that nothing is folded from."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise PimError(f"{name}: not a valid ONNX model: {str(exc).splitlines()[0]}") from None
    _check_initializers(model, name)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except Exception as exc:
        raise PimError(f"{name}: {_inference_problems(str(exc))}") from None
    _refuse_empty(inferred, name)
    return _Builder(inferred, name, dtype, dict(bind or {}), variables).run()


def _inference_problems(text: str) -> str:
    """onnx's shape-inference report as one line per node: 'node (Op): reason'."""
    found = re.findall(r"\(op_type:(\w+), node name: ([^)]*)\): (?:\[\w+\] )?([^\n]+)", text)
    if not found:
        return f"shape inference failed: {text.strip()}"
    return "invalid node(s):\n" + "\n".join(
        f"  {node or '(unnamed)'} ({op}): {why.strip()}" for op, node, why in found)


def _refuse_empty(model: onnx.ModelProto, name: str) -> None:
    """A tensor with a zero-size dimension has no elements to place on rows."""
    producer = {o: n for n in model.graph.node for o in n.output}
    g = model.graph
    for info in (*g.input, *g.value_info, *g.output):
        dims = info.type.tensor_type.shape.dim
        if any(d.HasField("dim_value") and d.dim_value == 0 for d in dims):
            node = producer.get(info.name)
            where = f" (output of {node.name or '(unnamed)'} {node.op_type})" if node else ""
            raise PimError(f"{name}: tensor '{info.name}'{where} has a zero-size dimension "
                           f"{[d.dim_value if d.HasField('dim_value') else '?' for d in dims]}")


def _check_initializers(model: onnx.ModelProto, name: str) -> None:
    """Element types and sizes of the stored tensors, named, before shape inference."""
    for init in model.graph.initializer:
        if init.data_type not in onnx.TensorProto.DataType.values():
            raise PimError(f"{name}: initializer '{init.name}' has element type number "
                           f"{init.data_type}, not an ONNX element type")
        if 0 in init.dims:
            raise PimError(f"{name}: initializer '{init.name}' has a zero-size dimension "
                           f"{list(init.dims)}")
