"""A convolution's weight gradient as FloatPIM computes it: down the rows.

dW = windows(X)^T dY sums over the batch's positions q. Lowered as any product, each
output (m, c, k) is a row with q in its lanes, so dY and X move a position a lane
(millions of moves for one layer). Here each output channel m instead gets a plane of
rows, one row a position q, holding the window of X at q in its lanes (the forward
convolution's im2col row) and dY[q, m] in one word: every lane is multiplied by its
row's dY in place, then the lanes are summed down the rows by the pairwise tree (row
SHIFTs, and TRANSFERs where a plane spans crossbars), every plane and lane at once. The
tree is the reference's order for a product split in one-lane chunks, which the stage
records. The ops after the product (the update W - lr dW) run in the planes' first
rows, where the sums are, with W placed beside them.

Crossbars go plane group by lane chunk by crossbar of a plane. The windows are placed
once (the first plane group) and copied to the others by a doubling of TRANSFERs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pimc.ir import Kernel
from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.dtypes import Kind, parse_dtype
from pimc.isa.uop import Program, Span, TensorIO, ViewOp
from pimc.lower.arith import REGISTRY, arith_routine
from pimc.lower.moves import shift_hops
from pimc.lower.rowtree import After, _across, after_op, apply_after
from pimc.lower.splits import with_chunks
from pimc.lower.trees import reduction_identity, tree_levels
from pimc.lower.views import View, simplify
from pimc.lower.words import routines_called

VIEWS = ("transpose", "reshape", "window")


@dataclass(frozen=True)
class Product:
    """A stage's product found by `_pattern`: the matmul node, its operands' inputs and
    views (A: (batch.., R, K) with a window among its views; B: (1.., K, J)), the views
    from the product to the result, and the ops after them."""

    node: int
    a: tuple[str, tuple[int, ...], View]
    b: tuple[str, tuple[int, ...], View]
    after_view: View  # the product (batch.., R, J) -> the result's shape
    after: tuple[After, ...]


def row_products(kernel: Kernel, residents: tuple[str, ...], arch: Arch, mode: str,
                 file: str) -> list[tuple[Program, Kernel, int]]:
    """The stage's programs down the rows (row_product) with the most lanes a row that
    fit, a half and a quarter of them, each with its lanes: fewer lanes take more
    crossbars and fewer cycles (a row's lanes are computed one after another); none if
    the stage is not a weight gradient with its update (its second operand a map another
    stage made, one of `residents`, not a weight as a forward convolution's; the weight
    placed after it, as W - lr dW: not an input gradient). Lanes come in whole windows of an input channel
    (or whole kernel rows), as the forward convolution's chunks (splits.channel_chunks),
    so the windows gather once a channel. (Fewer lanes still would multiply the
    crossbars, and the slots the relayout plans, for little: the moves stay.)"""
    found = _pattern(kernel)
    if (found is None or found.b[0] not in residents
            or not any(isinstance(a.value, str) for a in found.after)):
        return []
    first = row_product(kernel, arch, mode, file, 1 << 30)
    if first is None:
        return []
    most = first[2]
    shape = found.a[1]
    for v in found.a[2]:  # the windows' positions: the forward kernel's taps
        if v.kind == "window":
            axis, _, axes = v.window()
            taps = list(v.shape_after(shape)[axis:axis + len(axes)])
            break
        shape = v.shape_after(shape)
    made = []
    for lanes in sorted({_whole(-(-most // d), (math.prod(taps), taps[-1], 1))
                         for d in (1, 2, 4)}, reverse=True):
        got = row_product(kernel, arch, mode, file, lanes)
        assert got is not None
        made.append((got[0], got[1], lanes))
    return made


def _whole(most: int, units: tuple[int, ...]) -> int:
    """The most lanes up to `most` in whole units, of the first unit that fits."""
    unit = next(u for u in units if u <= most)
    return most // unit * unit


def row_product(kernel: Kernel, arch: Arch, mode: str, file: str, lanes: int
                ) -> tuple[Program, Kernel, int] | None:
    """The program of a stage that is a convolution's weight gradient (and perhaps its
    update), lowered down the rows with `lanes` lanes a row (at most the most that
    fit), the kernel with the split it follows recorded, and the most lanes a row
    takes; None when the stage is not one, or not one lane fits."""
    found = _pattern(kernel)
    if found is None:
        return None
    node = kernel.node(found.node)
    dt = str(node.dtype)
    d = parse_dtype(dt)
    if d.kind is not Kind.FLOAT or kernel.results[0].dtype != dt:
        return None
    bits, rows = d.bits, arch.rows
    a_shape = tuple(kernel.node(kernel.operands(found.node)[0]).shape or ())
    k = a_shape[-1]
    lanes_all = math.prod(a_shape[:-1])
    j = int((node.shape or ())[-1])
    mul = arith_routine("mul", (dt, dt), dt, mode, arch, inplace=True)
    add = arith_routine("add", (dt, dt), dt, mode, arch, inplace=True)
    tail = [arith_routine(a.op, (dt, dt), dt, mode, arch, inplace=True) for a in found.after]
    scratch = max(r.starts()["t"][1] for r in (mul, add, *tail))
    span = -(-k // rows)
    fixed = 3 * bits  # dY, a partner, a staging word
    most = min(lanes_all, (arch.cols - scratch - fixed) // bits)
    if most < 1:
        return None
    lanes = min(lanes, most)
    chunks = -(-lanes_all // lanes)
    pitch = max(k, lanes)  # (the sums end a lane a row: lanes <= a plane's rows)
    count = max(1, min(rows // pitch, j)) if span == 1 else 1  # planes a crossbar
    groups = -(-j // count)  # plane groups
    region = groups * chunks * span  # then the collected sums' crossbars
    crossbars = region + groups * -(-(count * chunks) // (rows // lanes))
    word = [list(range(i * bits, (i + 1) * bits)) for i in range(lanes)]
    dy_col = lanes * bits
    partner = list(range(dy_col + bits, dy_col + 2 * bits))
    stage = list(range(dy_col + 2 * bits, dy_col + 3 * bits))
    b = ProgramBuilder(crossbars, arch=arch, source=file)
    used = Span(0, count * pitch) if span == 1 else None
    layout = _Layout(lanes_all, lanes, chunks, k, j, count, pitch, groups, span, rows)
    x_name, x_shape, x_view = found.a
    y_name, y_shape, y_view = found.b
    b.inputs.append(TensorIO(x_name, dt, x_shape, Span(0, chunks * span), Span(0, rows), 0,
                             lanes, view=simplify(x_shape, (*x_view, *layout.windows()))))
    for q in range(span):  # dY in the first chunk's planes, one input a crossbar of them
        b.inputs.append(TensorIO(y_name, dt, y_shape, Span(q, region, chunks * span),
                                 Span(0, count * pitch if span == 1 else rows), dy_col,
                                 view=simplify(y_shape, (*y_view, *layout.errors(q)))))
    b.source_note = f"{node.loc} {node.loc.label or node.op}"
    b.meta = (("lanes-a-row", str(lanes)),)
    step = chunks * span  # a plane group's crossbars
    done = 1
    while done < groups:  # the windows, copied to every plane group
        n = min(done, groups - done)
        b.transfer(Span(0, n * step), Span(done * step, (done + n) * step),
                   range(lanes * bits), range(lanes * bits), rows=used)
        done += n
    for g in range(1, chunks):  # dY, from the first chunk into the others
        for q in range(span):
            b.transfer(Span(q, region, step), Span(g * span + q, region, step),
                       range(dy_col, dy_col + bits), range(dy_col, dy_col + bits), rows=used)
    planes = Span(0, region)
    heads = Span(0, region, span)  # the planes' first crossbars
    for w in word:
        b.call(mul.name, a=w[0], b=dy_col, t=arch.cols - scratch, xbs=planes, rows=used)
    identity = reduction_identity("sum", d)
    for size, m in tree_levels(k):
        where: dict[str, Span] = {"xbs": planes}
        if span > 1 and m <= rows:  # what is left of the planes is in their first crossbars
            where = {"xbs": heads, "rows": Span(0, m)}
        elif span == 1:  # the rows still summing: each plane's first m (and those between)
            where = {"xbs": planes, "rows": Span(0, (count - 1) * pitch + m)}
        for w in word:
            if span > 1:
                _across(b, w, partner, stage, size, m, span, groups * chunks, identity)
            else:
                shift_hops(b, w, partner, -m, partner, xbs=planes,
                           rows=Span(0, count * pitch - m))  # (what the planes hold)
                b.init(partner, identity, xbs=planes, rows=Span(count * pitch - m, count * pitch))
                for p in range(size - m, m):
                    b.init(partner, identity, xbs=planes, rows=Span(p, count * pitch, pitch))
            b.call(add.name, a=w[0], b=partner[0], t=arch.cols - scratch, **where)
    firsts = Span(0, count * pitch, pitch) if span == 1 else Span(0, 1)
    for i in range(1, lanes):  # lane i of the sums into row i, one word a row
        shift_hops(b, word[i], word[0], i, partner, xbs=heads,
                   rows=Span(firsts.start + i, firsts.stop + i, firsts.step))
    _collect(b, layout, word[0], partner, stage)
    result = kernel.results[0]
    back = _inverse(tuple(node.shape or ()), found.after_view)
    collection, held = Span(region, crossbars), word[1][0] if lanes > 1 else dy_col
    filled = Span(0, layout.per * lanes)
    for r, a in zip(tail, found.after, strict=True):  # the update, in the collection
        if isinstance(a.value, str):  # W placed beside its new gradient, one word a row
            b.inputs.append(TensorIO(a.value, dt, a.shape, collection, filled, held,
                                     view=simplify(a.shape, (*back, *layout.collected()))))
        apply_after(b, r, a, word[0], partner, range(held, held + bits), collection, filled)
    b.outputs.append(TensorIO(result.name, dt, tuple(result.shape), collection, filled, 0,
                              view=simplify(tuple(result.shape), (*back, *layout.collected()))))
    b.source_note = ""
    b.routines += routines_called([mul, add, *tail], REGISTRY)
    return b.build(), with_chunks(kernel, {found.node: k}), most


@dataclass(frozen=True)
class _Layout:
    """Where the stage keeps things: crossbars (plane group, lane chunk, crossbar of a
    plane); in a crossbar, `count` planes `pitch` rows apart (or one plane over `span`
    crossbars); lanes of `lanes` words."""

    lanes_all: int
    lanes: int
    chunks: int
    k: int
    j: int
    count: int
    pitch: int
    groups: int
    span: int
    rows: int

    def _planes(self, shape: tuple[int, ...], lead: int) -> View:
        """(*lead axes, count, p, *lanes) planes (p <= a plane's rows) -> the crossbars'
        rows, padded."""
        head, (count, p), tail = shape[:lead], shape[lead:lead + 2], shape[lead + 2:]
        if self.span == 1:
            n = math.prod(head)
            return (ViewOp("pad", (*head, count, self.pitch, *tail)),
                    ViewOp("reshape", (n, count * self.pitch, *tail)),
                    ViewOp("pad", (n, self.rows, *tail)))
        return (ViewOp("reshape", (*head, p, *tail)),
                ViewOp("pad", (*head, self.span * self.rows, *tail)))

    def windows(self) -> View:
        """A: (batch.., R, K) -> the first plane group: (chunk, count, k, lanes)."""
        lanes, k, g = self.lanes, self.k, self.chunks
        return (ViewOp("reshape", (self.lanes_all, k)), ViewOp("transpose", (1, 0)),
                ViewOp("pad", (k, g * lanes)), ViewOp("reshape", (k, g, lanes)),
                ViewOp("transpose", (1, 0, 2)), ViewOp("reshape", (g, 1, k, lanes)),
                ViewOp("broadcast", (g, self.count, k, lanes)),
                *self._planes((g, self.count, k, lanes), 1))

    def errors(self, q: int) -> View:
        """B: (1.., K, J) -> crossbar q of the first chunk's planes, one word: (group,
        count, pitch) (the other chunks' copies are the stage's own)."""
        k, c = self.k, self.count
        steps = (ViewOp("reshape", (k, self.j)), ViewOp("transpose", (1, 0)),
                 ViewOp("pad", (self.groups * c, k)))
        if self.span > 1:
            return (*steps, ViewOp("pad", (self.groups, self.span * self.rows)),
                    ViewOp("slice", (1, q * self.rows, (q + 1) * self.rows)))
        return (*steps, ViewOp("reshape", (self.groups, c, k)),
                ViewOp("pad", (self.groups, c, self.pitch)),
                ViewOp("reshape", (self.groups, c * self.pitch)))

    def firsts(self) -> View:
        """The product (batch.., R, J) -> the planes' first rows (group, chunk, count,
        lanes)."""
        lanes, c, g = self.lanes, self.count, self.chunks
        return (ViewOp("reshape", (self.lanes_all, self.j)), ViewOp("transpose", (1, 0)),
                ViewOp("pad", (self.j, g * lanes)), ViewOp("reshape", (self.j, g, lanes)),
                ViewOp("pad", (self.groups * c, g, lanes)),
                ViewOp("reshape", (self.groups, c, g, lanes)),
                ViewOp("transpose", (0, 2, 1, 3)))

    @property
    def per(self) -> int:
        """Planes' sums a crossbar of the collection holds."""
        return self.rows // self.lanes

    @property
    def collection(self) -> int:
        """The collection's crossbars a plane group."""
        return -(-self.count * self.chunks // self.per)

    def collected(self) -> View:
        """The product -> the collection, one word a row: (group, its crossbar, row),
        plane i = (count, chunk) of a group at rows (i % per) * lanes of its crossbar
        i // per."""
        n, lanes = self.count * self.chunks, self.lanes
        q = self.collection
        return (*self.firsts(), ViewOp("transpose", (0, 2, 1, 3)),
                ViewOp("reshape", (self.groups, n, lanes)),
                ViewOp("pad", (self.groups, q * self.per, lanes)),
                ViewOp("reshape", (self.groups * q, self.per * lanes)))


def _collect(b: ProgramBuilder, layout: _Layout, word: list[int], into: list[int],
             stage: list[int]) -> None:
    """The planes' sums (lane l in row l of a plane, in `word`) collected into whole
    crossbars after the planes (layout.collected), where the write-backs read them as
    a block: each plane's rows SHIFTed into place (`stage`) and TRANSFERred into `into`
    of its group's first crossbars, every group at once; then those crossbars into the
    collection (a TRANSFER each). From the planes directly, each would cross the stage."""
    lo = layout
    step = lo.chunks * lo.span
    region = lo.groups * step
    for c in range(lo.count):
        for g in range(lo.chunks):
            i = c * lo.chunks + g
            at = Span((i % lo.per) * lo.lanes, (i % lo.per + 1) * lo.lanes)
            src = Span(g * lo.span, region, step)
            by, dst = at.start - c * lo.pitch, Span(i // lo.per, region, step)
            if dst == src:  # (its own first crossbar)
                shift_hops(b, word, into, by, stage, xbs=src, rows=at)
                continue
            shift_hops(b, word, stage, by, stage, xbs=src, rows=at)
            b.transfer(src, dst, stage, into, rows=at)
    q, n = lo.collection, lo.count * lo.chunks
    b.init(word, 0, xbs=Span(region, region + lo.groups * q))  # (rows no plane fills)
    for k in range(q):
        b.transfer(Span(k, region, step), Span(region + k, region + lo.groups * q, q), into,
                   word, rows=Span(0, min(lo.per, n - k * lo.per) * lo.lanes))


def _inverse(shape: tuple[int, ...], view: View) -> View:
    """The view undoing `view` (reshapes and transposes) from its result back to `shape`."""
    shapes = [shape]
    for step in view:
        shapes.append(step.shape_after(shapes[-1]))
    out = []
    for step, before in zip(reversed(view), reversed(shapes[:-1]), strict=True):
        if step.kind == "reshape":
            out.append(ViewOp("reshape", before))
        else:
            out.append(ViewOp("transpose", tuple(int(i) for i in np.argsort(step.dims))))
    return tuple(out)


def _chain(kernel: Kernel, n: int, kinds: tuple[str, ...] = VIEWS
           ) -> tuple[str, tuple[int, ...], View] | None:
    """(input name, its shape, the views from it to node n) when n is reached from one
    input through single-operand views only."""
    steps: list[ViewOp] = []
    while (node := kernel.node(n)).op != "input":
        ops = kernel.operands(n)
        if node.op not in kinds or len(ops) != 1:
            return None
        steps.append(_as_view(kernel, n))
        n = ops[0]
    return str(node.attr("name")), tuple(node.shape or ()), tuple(reversed(steps))


def _as_view(kernel: Kernel, n: int) -> ViewOp:
    node = kernel.node(n)
    if node.op == "transpose":
        return ViewOp("transpose", tuple(node.attr("perm")))
    if node.op == "window":
        return ViewOp("window", tuple(node.attr("step")))
    return ViewOp("reshape", tuple(node.shape or ()))


def _pattern(kernel: Kernel) -> Product | None:
    """The stage's product when the kernel is a convolution's weight gradient: one
    matmul of a windowed input (A, its inner axis the positions) by another input (B,
    no batch axes of its own), then reshapes and transposes, then elementwise ops with
    a scalar constant or one placed input of the result's shape, to its one result."""
    products = [n for n in kernel.graph if kernel.node(n).op == "matmul"]
    if len(products) != 1 or len(kernel.results) != 1:
        return None
    (n,) = products
    a_op, b_op = kernel.operands(n)
    a, b = _chain(kernel, a_op), _chain(kernel, b_op)
    if a is None or b is None or not any(s.kind == "window" for s in a[2]):
        return None
    b_shape = tuple(kernel.node(b_op).shape or ())
    if math.prod(b_shape[:-2]) != 1:
        return None
    if any(s.kind == "window" and s.window()[1] != 0 for s in a[2]):  # zero padding only
        return None
    prev, view, after = n, [], []
    while kernel.outputs[kernel.results[0].name] != prev:
        users = list(kernel.graph.successors(prev))
        if len(users) != 1:
            return None
        (u,) = users
        node = kernel.node(u)
        if node.op in ("transpose", "reshape") and not after:
            view.append(_as_view(kernel, u))
        elif (op := after_op(kernel, u, prev, str(node.dtype))) is not None and not (
                isinstance(op.value, str) and any(isinstance(x.value, str) for x in after)):
            after.append(op)  # (one placed input at most)
        else:
            return None
        prev = u
    return Product(n, a, b, tuple(view), tuple(after))
