"""Lowering of tensor graphs (the ONNX front end's IR) to a word-level program of routine
calls, multiply-accumulate loops and moves (pimc.lower.words).

Every value is computed in one iteration space, the shape of the kernel's results, one
element per crossbar row. A value is reached in that space through a view (reshape,
transpose and broadcast steps, pimc.isa.uop.ViewOp) of the tensor it is computed from;
views are pushed through the elementwise ops down to the inputs, where the host applies
them as it places the tensor (a transposed or replicated copy, each cell counted), so
shape operators cost nothing in the crossbar.

A matrix product needs its inner dimension K along the row (FloatPIM's layout: the row of
output (m, n) holds row m of A and column n of B, K values each): its operands are placed
with K lanes, multiplied and accumulated lane by lane (FloatPIM's MAC: one product live at
a time). When K lanes do not fit a row, K is split into C chunks (MatPIM): the whole space
is repeated C times, chunk c in its own rows or crossbars holding lanes c*Kc..(c+1)*Kc-1
(zero-padded), and the partial sums meet in a log-depth tree: SHIFTs when the chunks share
a crossbar, TRANSFERs over the switches when each has its own. Other inputs are written
into every chunk. The reference follows the same order. Each arithmetic op is a call of
its routine (pimc.lower.arith, synthesised once); a matrix product over placed inputs is one
LOOP over its lanes, so compiling costs the same for K = 64 or 8192.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import networkx as nx
import numpy as np

from pimc.ir import Kernel
from pimc.isa.arch import Arch
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import LocatedError, PimError
from pimc.isa.uop import ViewOp, view_shape
from pimc.isa.view import LOWEST, ZERO
from pimc.lower.arith import arith_routine
from pimc.lower.inspace import InSpaceMoves
from pimc.lower.layout import Geometry, Lowered, geometry
from pimc.lower.trees import reduction_identity, tree_levels
from pimc.lower.views import Placement, View, aligned, simplify, widen
from pimc.lower.words import Value, WordNet, word_tree
from pimc.ops import REDUCTIONS
from pimc.synth.netlist import ONE
from pimc.synth.node import constant_bits


class _TensorLowering(InSpaceMoves):
    def __init__(self, kernel: Kernel, mode: str, space: tuple[int, ...], chunks: int,
                 arch: Arch, pack: bool) -> None:
        self.k, self.mode, self.space, self.chunks = kernel, mode, space, chunks
        self.arch = arch
        self.size = math.prod(space) if space else 1
        self.geo, self.slots = chunk_geometry(self.size, chunks, arch.rows, pack)
        self.net = WordNet()
        self.memo: dict[tuple[int, View, bool], list[Value]] = {}
        self.placements: dict[tuple[str, View], Placement] = {}
        self.col = 0
        self.index: Value | None = None  # the row-index column, once a relayout needs it
        self.constants: dict[str, np.ndarray] = {}  # host-written values the lowering adds
        self.after_matmul = {n for n in kernel.graph if kernel.node(n).op == "matmul"
                             or any(kernel.node(a).op == "matmul"
                                    for a in nx.ancestors(kernel.graph, n))}

    def words(self, n: int, view: View, chunked: bool = False) -> list[Value]:
        """Node n's values, one word per lane, as `view` places them in the space; if
        `chunked`, the view's lanes are split over the chunks (a matmul's inner axis)."""
        node = self.k.node(n)
        shape = tuple(node.shape or ())
        view = simplify(shape, view)
        key = (n, view, chunked)
        if key not in self.memo:
            self.memo[key] = self._words(n, shape, view, chunked)
        return self.memo[key]

    def lanes_per_chunk(self, lanes: int) -> int:
        return -(-lanes // self.chunks)

    def over_chunks(self, lanes: int, chunked: bool) -> View:
        """The view steps from (space..., lanes) to (chunks, slots per chunk, lanes per
        chunk); a chunk's slots beyond the space are zero padding."""
        c, size, per_chunk = self.chunks, self.size, self.slots
        if c == 1:
            return ()
        if chunked:
            per = self.lanes_per_chunk(lanes)
            steps = [ViewOp("pad", (*self.space, c * per)), ViewOp("reshape", (size, c, per)),
                     ViewOp("transpose", (1, 0, 2))]
        else:
            per = lanes
            steps = [ViewOp("reshape", (1, size, per)), ViewOp("broadcast", (c, size, per))]
        if per_chunk > size:
            steps.append(ViewOp("pad", (c, per_chunk, per)))
        return tuple(steps)

    def _words(self, n: int, shape: tuple[int, ...], view: View, chunked: bool) -> list[Value]:
        node = self.k.node(n)
        lanes = view_shape(shape, view)[-1]
        count = self.lanes_per_chunk(lanes) if chunked else lanes
        self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
        if node.op == "input":
            return self._input(str(node.attr("name")), view, lanes, chunked)
        if node.op == "const":
            dt = parse_dtype(str(node.dtype))
            raw = sum(1 << i for i, bit in enumerate(constant_bits(node, dt)) if bit == ONE)
            return [self.net.constant(raw, dt.bits)] * count
        ops = self.k.operands(n)
        if node.op == "reshape":
            return self.words(ops[0], (ViewOp("reshape", shape), *view), chunked)
        if node.op == "transpose":
            perm = tuple(node.attr("perm"))
            return self.words(ops[0], (ViewOp("transpose", perm), *view), chunked)
        if node.op in ("window", "slice"):
            step = ViewOp(node.op, tuple(node.attr("step")))
            return self.words(ops[0], (step, *view), chunked)
        if node.op == "bitcast":  # the same words read as another type
            return self.words(ops[0], view, chunked)
        if lanes > 1 and n in self.after_matmul:
            return self._relayout(n, shape, view, chunked)
        if node.op == "matmul":
            return self._matmul(n, shape, view)
        if node.op in REDUCTIONS:
            return [self._reduce(n, shape, view)] * count
        lane_words = [self.words(o, (*aligned(tuple(self.k.node(o).shape or ()), shape), *view),
                                 chunked) for o in ops]
        in_dtypes = tuple(str(self.k.node(o).dtype) for o in ops)
        self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
        try:
            routine = arith_routine(node.op, in_dtypes, str(node.dtype), self.mode, self.arch)
        except PimError as exc:
            raise LocatedError(node.loc, f"{node.loc.label or node.op}: {exc}") from None
        bits = parse_dtype(str(node.dtype)).bits
        return [self.net.call(routine, [w[lane] for w in lane_words], bits)
                for lane in range(count)]

    def _input(self, name: str, view: View, lanes: int, chunked: bool) -> list[Value]:
        param = next(p for p in self.k.params if p.name == name)
        full = simplify(param.shape, (*view, *self.over_chunks(lanes, chunked)))
        count = self.lanes_per_chunk(lanes) if chunked else lanes
        key = (name, full)
        if key not in self.placements:
            self.placements[key] = Placement(param, self.col, count, full)
            self.col += count * parse_dtype(param.dtype).bits
        first, bits = self.placements[key].col, parse_dtype(param.dtype).bits
        return [self.net.input(first + lane * bits, bits) for lane in range(count)]

    def _matmul(self, n: int, shape: tuple[int, ...], view: View) -> list[Value]:
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
        xa, xb = self.words(a, va, chunked=True), self.words(b, vb, chunked=True)
        dt = str(node.dtype)
        bits = parse_dtype(dt).bits
        self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
        mul = arith_routine("mul", (dt, dt), dt, self.mode, self.arch)
        acc = arith_routine("add", (dt, dt), dt, self.mode, self.arch, inplace=True)
        stride = self._stride(xa)
        if stride is not None and stride == self._stride(xb):  # one LOOP over the lanes
            total = self.net.mac(mul, acc, xa[0], xb[0], len(xa), stride, bits)
        else:  # lanes computed in the crossbar (a relayout): one call per lane
            total = self.net.call(mul, [xa[0], xb[0]], bits)
            for p, q in zip(xa[1:], xb[1:], strict=True):
                total = self.net.accumulate(acc, total, [self.net.call(mul, [p, q], bits)])
        return [self._across_chunks(dt, total)]

    def _reduce(self, n: int, shape: tuple[int, ...], view: View) -> Value:
        """A reduction along the last axis (or of a vector): the reduced axis becomes the
        lanes of each row, combined by the pairwise tree the reference uses (lane j takes
        lane j + m, lanes without a partner take the identity). Split in chunks (its
        `chunks` attribute, for a placed operand), each chunk's tree runs in its own rows,
        then the chunks meet in a log-depth tree, as a matrix product's do."""
        node = self.k.node(n)
        ops = self.k.operands(n)
        operand = tuple(self.k.node(ops[0]).shape or ())
        axis = node.attr("axis")
        last = (axis is None and len(operand) == 1) or axis == len(operand) - 1
        if not last:
            raise PimError(f"{node.loc}: a reduction along an axis other than the last, of "
                           "tensors of different sizes, is not supported yet")
        chunked = int(node.attr("chunks", 1)) > 1
        length = self.lanes_per_chunk(operand[-1]) if chunked else operand[-1]
        lanes_view = (*widen(view, operand[-1]), ViewOp("reshape", (*self.space, operand[-1])))
        extra = self.chunks * length - operand[-1] if chunked else 0
        if extra:  # the last chunk's missing lanes: the identity (max) or +0 (sums)
            fill = LOWEST if node.op == "reduce_max" else ZERO
            lanes_view = (*lanes_view, ViewOp("window", (len(self.space), fill, 1, 1, 0, extra, 1)),
                          ViewOp("reshape", (*self.space, operand[-1] + extra)))
        dt = str(node.dtype)
        bits = parse_dtype(dt).bits
        leaf = self._lanes_on_demand(ops, operand, lanes_view, node.op == "dot", chunked)
        self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
        op = "max" if node.op == "reduce_max" else "add"
        combine = arith_routine(op, (dt, dt), dt, self.mode, self.arch)
        identity = reduction_identity(node.op, parse_dtype(dt))
        none = self.net.constant(identity, bits)
        levels = tree_levels(length)

        def partial(level: int, j: int) -> Value:  # depth first: few partial sums live
            if level == 0:
                return leaf(j)
            size, m = levels[level - 1]
            right = partial(level - 1, j + m) if j + m < size else none
            left = partial(level - 1, j)
            self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
            return self.net.call(combine, [left, right], bits)

        total = partial(len(levels), 0)
        if not chunked:
            return total
        self.net.annotation = f"{node.loc} {node.loc.label or node.op}"
        if total in self.net.inputs:  # one lane per chunk: the tree writes in place
            total = self.net.copy(total)
        return self._across_chunks(dt, total, op, identity)

    def _lanes_on_demand(self, ops: list[int], operand: tuple[int, ...], lanes_view: View,
                         dot: bool, chunked: bool = False) -> Callable[[int], Value]:
        """Lane j of what a reduction reduces, built when the tree first needs it: an
        elementwise operand used only here (or dot's products) one lane at a time."""
        inner = ops
        node = self.k.node(ops[0])
        routine = None
        if dot:
            dt = str(node.dtype)
            routine = arith_routine("mul", (dt, dt), dt, self.mode, self.arch)
        elif (node.op not in ("input", "const", "reshape", "transpose", "window", "slice",
                                 "matmul", *REDUCTIONS)
              and self.k.graph.out_degree(ops[0]) == 1):
            inner = self.k.operands(ops[0])
            dtypes = tuple(str(self.k.node(o).dtype) for o in inner)
            routine = arith_routine(node.op, dtypes, str(node.dtype), self.mode, self.arch)
        if routine is None:
            (lanes,) = [self.words(ops[0], lanes_view, chunked)]
            return lanes.__getitem__
        words = [self.words(o, (*aligned(tuple(self.k.node(o).shape or ()), operand),
                                *lanes_view), chunked) for o in inner]
        bits = parse_dtype(str(node.dtype)).bits
        label = f"{node.loc} {node.loc.label or node.op}"

        def lane(j: int) -> Value:
            self.net.annotation = label
            return self.net.call(routine, [w[j] for w in words], bits)

        return lane

    def _stride(self, lanes: list[Value]) -> int | None:
        """The column distance between consecutive lanes, if all are placed inputs."""
        cols = [self.net.inputs.get(v) for v in lanes]
        if None in cols:
            return None
        if len(cols) == 1:
            return self.net.width[lanes[0]]
        step = cols[1] - cols[0]
        ok = all(b - a == step for a, b in itertools.pairwise(cols))
        return step if ok and step >= self.net.width[lanes[0]] else None

    def _across_chunks(self, dt: str, x: Value, op: str = "add", identity: int | None = None
                       ) -> Value:
        """The chunks' partial results (sums, or maxima), combined in a log-depth tree
        into chunk 0: SHIFTs when the chunks share a crossbar, TRANSFERs when each has
        its crossbars."""
        acc = arith_routine(op, (dt, dt), dt, self.mode, self.arch, inplace=True)
        if identity is None:
            identity = reduction_identity("sum", parse_dtype(dt))
        if self.geo.crossbars == 1:
            return word_tree(self.net, acc, x, identity, self.chunks, self.slots)
        if self.geo.rows > self.slots:  # packed: geo.rows // slots chunks a crossbar
            return word_tree(self.net, acc, x, identity, self.chunks, self.slots,
                             packed=self.geo.rows // self.slots)
        return word_tree(self.net, acc, x, identity, self.chunks,
                         self.geo.crossbars // self.chunks, across=(0, self.geo.rows))


def chunk_geometry(size: int, chunks: int, rows: int, pack: bool = True
                   ) -> tuple[Geometry, int]:
    """Where the chunks go, and the slots each takes: rows of one crossbar when all fit;
    else, if `pack`, a power of two of them, q, in each crossbar when the chunks are a
    power of two too (every level of their tree then moves whole crossbars, or stays in the
    first); else crossbars of their own (the last rows of a chunk's last crossbar
    padding)."""
    if chunks * size <= rows:
        return geometry(chunks * size, rows), size
    if size <= rows:
        q = 1 << ((rows // size).bit_length() - 1)
        if pack and q > 1 and chunks & (chunks - 1) == 0:
            return geometry(chunks * size, q * size), size
        return geometry(chunks * size, size), size
    slots = -(-size // rows) * rows
    return geometry(chunks * slots, rows), slots


def result_space(kernel: Kernel) -> tuple[int, ...]:
    """The iteration space: the first result's shape, its last axis widened to the widest
    matrix product feeding another (so that both fit, FloatPIM-style, one row per output
    neuron); every result must have as many elements."""
    shapes = [tuple(r.shape) for r in kernel.results]
    sizes = {math.prod(s) for s in shapes}
    if len(sizes) > 1:
        raise PimError("results of different sizes in one program are not supported yet: "
                       + ", ".join(f"{r.name} {list(r.shape)}" for r in kernel.results))
    space = shapes[0] if shapes else ()
    widest = max((kernel.node(n).shape[-1] for n in kernel.graph
                  if kernel.node(n).op == "matmul" and any(
                      kernel.node(d).op == "matmul" for d in nx.descendants(kernel.graph, n))),
                 default=0)
    if space and widest > space[-1]:
        space = (*space[:-1], widest)
    return space


def lower_tensors(kernel: Kernel, mode: str = "ieee", chunks: int = 1, arch: Arch | None = None,
                  result_view: View = (), pack: bool = True) -> tuple[Lowered, list[Placement]]:
    """The word program of a tensor graph (in Lowered.net) and where the host places each
    input, matrix products' inner axes split in `chunks`. A `result_view` (one result)
    orders the result's elements in the space (a stage's resident map in the order its
    readers want, pimc.lower.stages). `pack`: chunks may share a crossbar (not for a
    stage whose inputs other stages' moves bring in: a chunk a crossbar gives every
    crossbar the same row pattern, so one move serves them all; chunks packed take a
    move each, which costs more than the crossbars they save)."""
    space = result_space(kernel)
    if result_view:
        space = view_shape(tuple(kernel.results[0].shape), result_view)
    low = _TensorLowering(kernel, mode, space, chunks, arch or Arch(), pack)
    outputs, views = [], {}
    for r in kernel.results:
        n = kernel.outputs[r.name]
        shape = tuple(r.shape)
        widened = math.prod(shape) != math.prod(space)  # the space's last axis is wider
        to_space = simplify(shape, (*result_view, ViewOp("reshape", (*space, 1))) if result_view
                            else (ViewOp("pad", space) if widened else ViewOp("reshape", space),
                                  ViewOp("reshape", (*space, 1))))
        (word,) = low.words(n, to_space)
        outputs.append((r, word))
        if any(step.kind in ("pad", "transpose", "slice") for step in to_space):
            views[r.name] = to_space[:-1]
    elements = chunks * low.slots if chunks > 1 else low.size
    lowered = Lowered(low.net, elements, outputs, low.col, max_rows=low.geo.rows,
                      result_views=views, host_values=low.constants)
    return lowered, list(low.placements.values())
