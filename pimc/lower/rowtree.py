"""A global pool where the map lies: each channel's spatial positions are consecutive
rows of one crossbar (a resident map's natural order), so the sum or maximum over them
is a log-depth tree of row SHIFTs and in-place CALLs, in every plane and crossbar at
once. Gathering the positions into the lanes of a row instead moves every element on
its own (the rows of a lane are a plane apart), ~100,000 TRANSFERs for ResNet-50's
2048 x 7 x 7 map. The result stays in the first row of each plane, where the next
stage's gather reads it (FloatPIM's reductions run down the rows of a block the same way).
A maximum can instead be found by SEARCH, FloatPIM's max pooling (`by="search"`); the
compiler counts both and keeps the cheaper.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pimc.ir import Kernel
from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.dtypes import Kind, parse_dtype
from pimc.isa.uop import Program, Routine, SearchKind, Span, TensorIO, ViewOp, apply_view, view_shape
from pimc.lower.arith import REGISTRY, arith_routine
from pimc.lower.moves import shift_hops
from pimc.lower.trees import reduction_identity, tree_levels
from pimc.lower.views import View, element_ids, element_slots, simplify
from pimc.lower.words import routines_called


def row_tree(kernel: Kernel, placed: View, arch: Arch, mode: str, file: str,
             by: str = "tree") -> Program | None:
    """The program of a stage that only reduces a resident over its trailing axes (a
    global pool, then perhaps its mean's division), when `placed` (the resident's
    placement, its producer's result view) keeps each reduced run in one crossbar, runs
    at a fixed pitch, or a run longer than a crossbar in order (see _runs); None
    otherwise (the stage is lowered as usual).

    `by`: "tree", the reference's pairwise tree of the op; or, for a maximum, "search":
    FloatPIM's max pooling, a SEARCH for the largest in each plane (see _search_max),
    then a tree of ORs carries it to the plane's first row. The search picks by IEEE
    totalOrder (+0 over -0, a NaN by its sign), which the reference then follows."""
    found = _pattern(kernel)
    if found is None or (by == "search" and kernel.node(found[3]).op != "reduce_max"):
        return None
    name, shape, length, n, after, pre = found
    node = kernel.node(n)
    runs = _runs(shape, length, placed, arch.rows, pre)
    if runs is None or (by == "search" and runs[2] > 1):
        return None
    pitch, count, span, flat = runs
    outer = math.prod(shape) // length
    own = simplify(shape, (*pre, ViewOp("reshape", (outer, length)), *flat))
    dt = str(node.dtype)
    d = parse_dtype(dt)
    bits = d.bits
    raw = f"u{bits}"  # the search variant works on the raw bits
    if by == "search":
        acc = arith_routine("or", (raw, raw), raw, mode, arch, inplace=True)
        keyed = "float_key" if d.kind is Kind.FLOAT else "signed_key" if d.signed else None
        key = [arith_routine(keyed, (raw,), raw, mode, arch)] if keyed else []
        identity = 0
    else:
        op = "max" if node.op == "reduce_max" else "add"
        acc, key = arith_routine(op, (dt, dt), dt, mode, arch, inplace=True), []
        identity = reduction_identity(node.op, d)
    result = kernel.results[0]
    cast = [arith_routine("cast", (dt,), result.dtype, mode, arch)] if (
        after and after[-1].op == "cast") else []
    after = after[:len(after) - len(cast)]
    tail = [arith_routine(a.op, (dt, dt), dt, mode, arch, inplace=True) for a in after]
    mask = 2 * bits  # the search variant's column of the planes' largest
    out, out_bits = mask + 1, parse_dtype(result.dtype).bits  # a cast's result
    stage = range(out, out + bits)  # (runs over crossbars) a partner on its way
    held = range(out + max(bits, out_bits), out + max(bits, out_bits) + bits)  # an input
    needs = max(mask + (by == "search"), stage.stop if span > 1 else 0,
                held.stop if any(isinstance(a.value, str) for a in after) else 0)
    if any(needs > arch.cols - r.starts()["t"][1]
           for r in (acc, *key, *tail)) or any(
            out + out_bits > arch.cols - r.starts()["t"][1] for r in cast):
        return None
    crossbars = math.prod(view_shape(shape, own)) // arch.rows
    b = ProgramBuilder(crossbars, arch=arch, source=file)
    b.inputs.append(TensorIO(name, dt, shape, Span(0, crossbars), Span(0, arch.rows), 0,
                             view=own))
    word, partner = range(bits), range(bits, 2 * bits)
    b.source_note = f"{node.loc} {node.loc.label or node.op}"
    if by == "search":
        b.meta = (("searched", str(n)),)
        _search_max(b, word, partner, mask, key, Span(0, length), pitch, count)
    b.init(partner, identity)
    for size, m in tree_levels(length):  # position j takes j + m; j in [size - m, m) none
        where: dict[str, Span] = {}
        if span > 1:
            _across(b, list(word), list(partner), list(stage), size, m, span, outer, identity)
            if m <= arch.rows:  # what is left of the runs is in their first crossbars
                where = {"xbs": Span(0, crossbars, span), "rows": Span(0, m)}
        else:
            shift_hops(b, list(word), list(partner), -m, list(partner),
                       rows=Span(0, arch.rows - m))
            for j in range(size - m, m):
                b.init(partner, identity, rows=Span(j, count * pitch, pitch))
        b.call(acc.name, a=0, b=bits, t=arch.cols - acc.starts()["t"][1], **where)
    firsts = Span(0, count * pitch, pitch)  # the planes' first rows: the results
    heads = None if span == 1 else Span(0, crossbars, span)  # (runs over crossbars)
    for r, a in zip(tail, after, strict=True):  # a mean's division, a bias's update
        apply_after(b, r, a, word, partner, held, heads, firsts)
    for r in cast:  # (its other rows zero: a block move into the reader carries them)
        b.init(range(out, out + out_bits), 0)
        b.call(r.name, a=0, out=out, t=arch.cols - r.starts()["t"][1], xbs=heads,
               rows=firsts)
    heads_view = (ViewOp("reshape", (outer, 1)), ViewOp("pad", (outer, length)), *flat)
    view = simplify(tuple(result.shape), heads_view)
    for a in after:  # the placed input, in the runs' first rows (a bias beside its sum)
        if isinstance(a.value, str):
            b.inputs.append(TensorIO(a.value, dt, a.shape, Span(0, crossbars),
                                     Span(0, arch.rows), held.start,
                                     view=simplify(a.shape, heads_view)))
    b.outputs.append(TensorIO(result.name, result.dtype, tuple(result.shape), Span(0, crossbars),
                              Span(0, arch.rows), out if cast else 0, view=view))
    b.source_note = ""
    b.routines += routines_called([acc, *key, *tail, *cast], REGISTRY)
    return b.build()


def _search_max(b: ProgramBuilder, word: range, keys: range, mask: int, key: list[Routine],
                plane: Span, pitch: int, count: int) -> None:
    """Leave each plane's largest word where it is and zero the others: the words'
    order keys (their raw bits, for unsigned integers), one SEARCH max per plane slot of
    a crossbar (every crossbar at once; a search spans its crossbar's selected rows, so
    the slots go one after another), each marking its winners in the mask column
    through the tag; then one SEARCH for the unmarked rows, whose words an INIT zeroes.
    Ties are equal words, so the OR tree after gives the largest."""
    cols = list(word)
    if key:
        b.call(key[0].name, a=word[0], out=keys[0], t=b.arch.cols - key[0].starts()["t"][1])
        cols = list(keys)
    b.init(mask, 0)
    for j in range(count):
        rows = Span(j * pitch + plane.start, j * pitch + plane.stop)
        b.search(cols, kind=SearchKind.MAX, rows=rows)
        b.init(mask, 1, pred=True)
    b.search([mask], 0)
    b.init(word, 0, pred=True)


def _pattern(kernel: Kernel) -> tuple[str, tuple[int, ...], int, int, list[After], View] | None:
    """(resident name, its shape, the reduced length, the reduction node, the ops after
    it, the view before the reshape) when the kernel is input -> reshape to (..., L) ->
    sum or max over that last axis, then reshapes and arithmetic with scalar constants
    (a mean's division) or with one placed input of the result's shape (a bias minus
    its scaled gradient) up to its one result, perhaps cast last (a bfloat16 network's
    float32 output). A window over the whole of the trailing axes (an AveragePool as
    large as its map) may come before the reshape: it only reshapes; so may a transpose
    (a bias gradient's sum over the batch and the positions of each channel)."""
    nodes = [n for n in kernel.nodes_in_order() if kernel.node(n).op != "const"]
    reductions = [n for n in nodes if kernel.node(n).op in ("sum", "reduce_max")]
    if len(reductions) != 1 or len(kernel.results) != 1:
        return None
    first = reductions[0]
    while kernel.node(first).op != "input" and len(kernel.operands(first)) == 1:
        (first,) = kernel.operands(first)
    placed = [n for n in nodes if kernel.node(n).op == "input" and n != first]
    nodes = [first, *(n for n in nodes if kernel.node(n).op != "input")]
    if len(nodes) > 3 and _whole(kernel, nodes[1]):
        nodes = [nodes[0], *nodes[2:]]
    pre: View = ()
    if len(nodes) > 3 and kernel.node(nodes[1]).op == "transpose":  # a channel's sum over
        pre = (ViewOp("transpose", tuple(kernel.node(nodes[1]).attr("perm"))),)  # the batch
        nodes = [nodes[0], *nodes[2:]]
    if len(nodes) < 3 or len(placed) > 1:
        return None
    i, r, n = (kernel.node(x) for x in nodes[:3])
    if (i.op, r.op, n.op) not in (("input", "reshape", "sum"), ("input", "reshape", "reduce_max")):
        return None
    shape, flat = tuple(i.shape or ()), tuple(r.shape or ())
    if n.attr("axis") != len(flat) - 1 or len(flat) < 2 or math.prod(flat) != math.prod(shape):
        return None
    after: list[After] = []
    for prev, u in itertools.pairwise(nodes[2:]):
        node, ops = kernel.node(u), kernel.operands(u)
        if (op := after_op(kernel, u, prev, str(n.dtype))) is not None:
            after.append(op)
        elif node.op == "cast" and u == nodes[-1] and ops[0] == prev:  # into the output type
            after.append(After("cast", 0))
        elif node.op != "reshape" or ops[0] != prev:
            return None
    if kernel.outputs[kernel.results[0].name] != nodes[-1]:
        return None
    return str(i.attr("name")), shape, flat[-1], nodes[2], after, pre


@dataclass(frozen=True)
class After:
    """An op after the reduction, in the runs' first rows: with a scalar constant (its
    raw bits), or with a placed input (its name and shape; `flipped`: the reduced value
    is the second operand, as in a bias minus its scaled gradient)."""

    op: str
    value: int | str
    flipped: bool = False
    shape: tuple[int, ...] = ()


def apply_after(b: ProgramBuilder, r: Routine, a: After, word: Sequence[int],
                partner: Sequence[int], held: Sequence[int], xbs: Span | None, rows: Span
                ) -> None:
    """An op after the reduction on the words in `word` (the result stays there): its
    other operand into `partner`, the placed input from `held` or the constant, then
    the routine `r` (a flipped op computed as such, then its result moved back)."""
    if isinstance(a.value, str):
        b.shift(list(held), list(partner), 0, xbs=xbs, rows=rows)
    else:
        b.init(partner, a.value, xbs=xbs, rows=rows)
    x, y = (partner[0], word[0]) if a.flipped else (word[0], partner[0])
    b.call(r.name, a=x, b=y, t=b.arch.cols - r.starts()["t"][1], xbs=xbs, rows=rows)
    if a.flipped:
        b.shift(list(partner), list(word), 0, xbs=xbs, rows=rows)


def after_op(kernel: Kernel, u: int, prev: int, dtype: str) -> After | None:
    """Node u as an op after a reduction's value `prev`: arithmetic with a scalar
    constant (after it), or with one placed input of its shape (either side); None if
    it is neither."""
    node, ops = kernel.node(u), kernel.operands(u)
    if node.op not in ("div", "mul", "add", "sub") or len(ops) != 2 or ops.count(prev) != 1:
        return None
    other = kernel.node(ops[1 - ops.index(prev)])
    if other.dtype != dtype:
        return None
    if other.op == "const" and ops[0] == prev and math.prod(other.shape or ()) == 1:
        return After(node.op, int(other.attr("raw")))
    if other.op == "input" and tuple(other.shape or ()) == tuple(node.shape or ()):
        return After(node.op, str(other.attr("name")), ops[0] != prev, tuple(other.shape or ()))
    return None


def _whole(kernel: Kernel, n: int) -> bool:
    """Whether node n is a window over the whole of its operand's trailing axes (no
    padding, dilation 1): every output position's window is the whole map, in order."""
    node = kernel.node(n)
    if node.op != "window":
        return False
    axis, _, axes = ViewOp("window", tuple(node.attr("step"))).window()
    (operand,) = kernel.operands(n)
    shape = tuple(kernel.node(operand).shape or ())
    return axis + len(axes) == len(shape) and all(
        k == size and pb == pe == 0 and d == 1
        for (k, _, pb, pe, d), size in zip(axes, shape[axis:], strict=True))


def _runs(shape: tuple[int, ...], length: int, placed: View, rows: int, pre: View
          ) -> tuple[int, int, int, View] | None:
    """(pitch, runs a crossbar, crossbars a run, the stage's own placement of the runs
    matrix (outer, length)) when the producer's placement keeps each run of `length`
    elements (a plane, perhaps with padding amid it; the runs are `pre` of the tensor,
    reshaped) in one crossbar, the runs' first rows k * pitch (k < runs a crossbar) in
    crossbar after crossbar, or, for a run longer than a crossbar, keeps its elements in
    order: the stage's own placement keeps that, with each run's elements in consecutive
    rows (a long run in whole crossbars of its own), so the copy into it moves whole
    blocks (a row of a padded plane at a time), and the tree's partners are a constant
    number of rows apart."""
    at = element_slots(apply_view(element_ids(shape), placed).reshape(-1), math.prod(shape))
    slot = at[apply_view(element_ids(shape), pre).reshape(-1, length)]
    outer = len(slot)
    if length > rows:
        if (slot[:, 1:] <= slot[:, :-1]).any():
            return None
        span = -(-length // rows)
        return rows, 1, span, (ViewOp("pad", (outer, span * rows)),
                               ViewOp("reshape", (outer * span, rows)))
    xb, row = slot // rows, slot % rows
    if not (xb == xb[:, :1]).all() or (row[:, 1:] <= row[:, :-1]).any():
        return None
    count = int(np.count_nonzero(xb[:, 0] == xb[0, 0]))
    pitch = int(row[1, 0] - row[0, 0]) if count > 1 else length
    k = np.arange(outer)
    if (pitch < length or count * pitch > rows or (xb[:, 0] != xb[0, 0] + k // count).any()
            or (row[:, 0] != k % count * pitch).any()):
        return None
    padded = -(-outer // count) * count
    return pitch, count, 1, (ViewOp("pad", (padded, pitch)),
                             ViewOp("reshape", (padded // count, count * pitch)),
                             ViewOp("pad", (padded // count, rows)))


def _across(b: ProgramBuilder, word: list[int], partner: list[int], stage: list[int],
            size: int, m: int, span: int, runs: int, identity: int) -> None:
    """One level of the tree over runs of `span` crossbars each (position r of a run in
    its crossbar r // rows, row r % rows): positions r < size - m get r + m's word in
    `partner`, a row SHIFT inside a crossbar and, from the crossbars m // rows on, a
    SHIFT into `stage` and a TRANSFER over the switches (one per crossbar of a run, every
    run at once); positions size - m <= r < m get the identity. (The runs are the
    program's first runs x span crossbars.)"""
    rows = b.arch.rows
    whole = Span(0, runs * span)
    a, s = divmod(m, rows)
    last = size - m - 1  # the last position that takes a partner

    def xbs(q: int) -> Span:  # crossbar q of every run
        return Span(q, q + (runs - 1) * span + 1, span)

    # rows [0, rows - s) of crossbar q take rows [s, rows) of crossbar q + a
    if a == 0:
        shift_hops(b, word, partner, -s, partner, xbs=whole, rows=Span(0, rows - s))
    else:
        src = word
        if s:
            shift_hops(b, word, stage, -s, stage, xbs=whole, rows=Span(0, rows - s))
            src = stage
        for q in range(last // rows + 1):
            b.transfer(xbs(q + a), xbs(q), src, partner, rows=Span(0, rows - s))
    # rows [rows - s, rows) of crossbar q take rows [0, s) of crossbar q + a + 1
    if s and last >= rows - s:
        shift_hops(b, word, stage, rows - s, stage, xbs=whole, rows=Span(rows - s, rows))
        for q in range((last - (rows - s)) // rows + 1):
            b.transfer(xbs(q + a + 1), xbs(q), stage, partner, rows=Span(rows - s, rows))
    for p in range(size - m, m):
        b.init(partner, identity, xbs=xbs(p // rows), rows=Span(p % rows, p % rows + 1))
