"""Lowering of tensor graphs (the ONNX front end's IR) to one NOR netlist.

Every value is computed in one iteration space, the shape of the kernel's results, one
element per crossbar row. A value is reached in that space through a view (reshape,
transpose and broadcast steps, pimc.isa.uop.ViewOp) of the tensor it is computed from;
views are pushed through the elementwise ops down to the inputs, where the host applies
them as it places the tensor (a transposed or replicated copy, each cell counted), so
shape operators cost nothing in the crossbar.

A matrix product needs its inner dimension K along the row (FloatPIM's layout: the row of
output (m, n) holds row m of A and column n of B, K values each): its operands are placed
with K lanes, multiplied lane by lane and summed by the pairwise tree over the lanes that
the reference follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pimc.ir import Kernel, Param
from pimc.isa.dtypes import Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import ViewOp, view_shape
from pimc.passes.lower import Lowered, _combine, _logic, _lower_node, tree_levels
from pimc.synth.logic import Word
from pimc.synth.netlist import Netlist

View = tuple[ViewOp, ...]


@dataclass(frozen=True)
class Placement:
    """A parameter as the host writes it: `lanes` values per row from `col` on, through
    `view` (whose last dimension is the lanes)."""

    param: Param
    col: int
    lanes: int
    view: View


def simplify(shape: tuple[int, ...], view: View) -> View:
    """The same view without steps that change nothing; consecutive reshapes and
    consecutive transposes merged."""
    out: list[tuple[ViewOp, tuple[int, ...]]] = []  # step, the shape it applies to
    for step in view:
        if out and out[-1][0].kind == step.kind and step.kind in ("reshape", "transpose"):
            prev, shape = out.pop()
            if step.kind == "transpose":
                step = ViewOp("transpose", tuple(prev.dims[d] for d in step.dims))
        after = step.shape_after(shape)
        if step.kind == "transpose":
            if tuple(step.dims) == tuple(range(len(shape))):
                continue
        elif after == shape:
            continue
        out.append((step, shape))
        shape = after
    return tuple(step for step, _ in out)


def widen(view: View, k: int) -> View:
    """The view acting on arrays with one more trailing axis of length k."""
    out = []
    for step in view:
        if step.kind == "transpose":
            out.append(ViewOp("transpose", (*step.dims, len(step.dims))))
        else:
            out.append(ViewOp(step.kind, (*step.dims, k)))
    return tuple(out)


def aligned(shape: tuple[int, ...], target: tuple[int, ...]) -> View:
    """numpy broadcasting of `shape` to `target` as view steps."""
    steps = []
    padded = (1,) * (len(target) - len(shape)) + tuple(shape)
    if padded != tuple(shape):
        steps.append(ViewOp("reshape", padded))
    if padded != tuple(target):
        steps.append(ViewOp("broadcast", tuple(target)))
    return tuple(steps)


class _TensorLowering:
    def __init__(self, kernel: Kernel, mode: str, space: tuple[int, ...]) -> None:
        self.k, self.mode, self.space = kernel, mode, space
        self.net = Netlist()
        self.memo: dict[tuple[int, View], list[Word]] = {}
        self.placements: dict[tuple[str, View], Placement] = {}
        self.col = 0

    def words(self, n: int, view: View) -> list[Word]:
        """Node n's values, one word per lane, as `view` places them."""
        node = self.k.node(n)
        shape = tuple(node.shape or ())
        view = simplify(shape, view)
        key = (n, view)
        if key not in self.memo:
            self.memo[key] = self._words(n, shape, view)
        return self.memo[key]

    def _words(self, n: int, shape: tuple[int, ...], view: View) -> list[Word]:
        node = self.k.node(n)
        lanes = view_shape(shape, view)[-1]
        self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
        if node.op == "input":
            return self._input(str(node.attr("name")), view, lanes)
        if node.op == "const":
            return [_lower_node(self.net, node, [], [], self.mode, {})] * lanes
        ops = self.k.operands(n)
        if node.op == "reshape":
            return self.words(ops[0], (ViewOp("reshape", shape), *view))
        if node.op == "transpose":
            return self.words(ops[0], (ViewOp("transpose", tuple(node.attr("perm"))), *view))
        if node.op == "matmul":
            return self._matmul(n, shape, view, lanes)
        lane_words = [self.words(o, (*aligned(tuple(self.k.node(o).shape or ()), shape), *view))
                      for o in ops]
        in_dtypes = [self.k.node(o).dtype for o in ops]
        self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
        try:
            return [_lower_node(self.net, node, [w[lane] for w in lane_words], in_dtypes,
                                self.mode, {}) for lane in range(lanes)]
        except PimError as exc:
            raise PimError(f"{node.loc.label or node.op}: {exc}") from None

    def _input(self, name: str, view: View, lanes: int) -> list[Word]:
        param = next(p for p in self.k.params if p.name == name)
        key = (name, view)
        if key not in self.placements:
            self.placements[key] = Placement(param, self.col, lanes, view)
            self.col += lanes * parse_dtype(param.dtype).bits
        first, bits = self.placements[key].col, parse_dtype(param.dtype).bits
        return [self.net.word_input(first + lane * bits, bits) for lane in range(lanes)]

    def _matmul(self, n: int, shape: tuple[int, ...], view: View, lanes: int) -> list[Word]:
        if lanes != 1:
            raise PimError("a matrix product feeding another matrix product is not "
                           "supported yet")
        node = self.k.node(n)
        a, b = self.k.operands(n)
        sa, sb = tuple(self.k.node(a).shape or ()), tuple(self.k.node(b).shape or ())
        k = sa[-1]
        inner = (*widen(view, k), ViewOp("reshape", (*self.space, k)))
        full = (*shape, k)
        va = (ViewOp("reshape", (*sa[:-1], 1, k)), *aligned((*sa[:-1], 1, k), full), *inner)
        perm = (*range(len(sb) - 2), len(sb) - 1, len(sb) - 2)
        nk = (*sb[:-2], 1, sb[-1], k)
        vb = (ViewOp("transpose", perm), ViewOp("reshape", nk), *aligned(nk, full), *inner)
        xa, xb = self.words(a, va), self.words(b, vb)
        dt = parse_dtype(str(node.dtype))
        self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
        f = _logic(self.net, dt.name, self.mode, "mul")
        if dt.kind is Kind.FLOAT:
            products = [f.fmul(p, q) for p, q in zip(xa, xb, strict=True)]
        else:
            products = [f.multiply_scaled(p, q, dt.signed, dt.frac_bits)
                        for p, q in zip(xa, xb, strict=True)]
        g = _logic(self.net, dt.name, self.mode, "add")
        for total, half in tree_levels(k):
            products = [_combine(g, "add", dt, products[i], products[i + half])
                        if i < total - half else products[i] for i in range(half)]
        return [products[0]]


def result_space(kernel: Kernel) -> tuple[int, ...]:
    """The iteration space: the first result's shape; every result must have as many
    elements."""
    shapes = [tuple(r.shape) for r in kernel.results]
    sizes = {math.prod(s) for s in shapes}
    if len(sizes) > 1:
        raise PimError("results of different sizes in one program are not supported yet: "
                       + ", ".join(f"{r.name} {list(r.shape)}" for r in kernel.results))
    return shapes[0] if shapes else ()


def lower_tensors(kernel: Kernel, mode: str = "ieee") -> tuple[Lowered, list[Placement]]:
    """The netlist of a tensor graph and where the host places each input."""
    space = result_space(kernel)
    low = _TensorLowering(kernel, mode, space)
    outputs = []
    for r in kernel.results:
        n = kernel.outputs[r.name]
        to_space = (ViewOp("reshape", (*space, 1)),)
        (word,) = low.words(n, to_space)
        outputs.append((r, word))
    elements = math.prod(space) if space else 1
    lowered = Lowered(low.net, elements, [], outputs, low.col, {})
    return lowered, list(low.placements.values())
