"""Lowering: a typed elementwise kernel to one NOR netlist (pimc.synth).

Layout: element i of every tensor in row i (crossbar i // rows), each value in adjacent
columns; scalars are broadcast into every row by the host. Each IR node becomes the
synthesis library's routine for its dtype; the whole kernel is one netlist, so column
allocation and INIT scheduling see every value's lifetime at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pimc.frontend.dsl import located_error
from pimc.ir import Kernel, Node, Param
from pimc.isa.dtypes import DType, Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import ViewOp
from pimc.lower.layout import Geometry, geometry
from pimc.ops import REDUCTIONS
from pimc.synth.float_ops import FloatOps
from pimc.synth.floating import FORMATS
from pimc.synth.logic import Word
from pimc.synth.netlist import ONE, ZERO, Bit, Netlist
from pimc.synth.oracle import cast_nan_canonical, numpy_nan_rule


@dataclass
class Lowered:
    net: Netlist
    elements: int  # rows computed (1 for an all-scalar kernel)
    inputs: list[tuple[Param, int]]  # parameter, first column
    outputs: list[tuple[Param, Word]]
    next_col: int  # first column after the inputs
    result_rows: dict[str, tuple[int, int, int]]  # reduction results: start, stop, step rows
    max_rows: int | None = None  # rows per crossbar, if fewer than the architecture's
    result_views: dict[str, tuple[ViewOp, ...]] = field(default_factory=dict)  # host read-back
    host_values: dict[str, np.ndarray] = field(default_factory=dict)  # inputs it adds itself


def elements_of(kernel: Kernel, text: str) -> int:
    """The one element count of the kernel's tensors (scalars broadcast to it)."""
    counts = {math.prod(p.shape) for p in kernel.params if p.shape}
    if len(counts) > 1:
        where = next(p.loc for p in kernel.params if p.shape)
        raise located_error(text, where, "tensors of different sizes together with a "
                                         "reduction are not supported yet")
    return counts.pop() if counts else 1


def constant_bits(node: Node, dt: DType) -> Word:
    value = node.attr("value")
    if node.attr("raw") is not None:  # a folded constant: its bits already
        raw = int(node.attr("raw"))
    elif dt.kind is Kind.FLOAT:
        raw = int(np.asarray(value).astype(dt.host).reshape(1).view(dt.storage)[0])
    else:
        raw = round(float(value) * (1 << dt.frac_bits)) if dt.kind is Kind.FIXED else int(value)
        raw &= (1 << dt.bits) - 1
    return [ONE if raw >> i & 1 else ZERO for i in range(dt.bits)]


def lower(kernel: Kernel, text: str, mode: str = "ieee", max_rows: int | None = None
          ) -> Lowered:
    """The netlist of a typed kernel (see typecheck), its elements spread over crossbars
    of `max_rows` rows (default: all in one), as layout.geometry places them."""
    net = Netlist()
    elements = elements_of(kernel, text)
    geo = geometry(elements, max_rows or elements)
    words: dict[int, Word] = {}
    inputs: list[tuple[Param, int]] = []
    col = 0
    for p in kernel.params:
        bits = parse_dtype(p.dtype).bits
        inputs.append((p, col))
        col += bits
    first_col = {p.name: c for p, c in inputs}
    placed: dict[int, tuple[int, int, int]] = {}  # reduction results: the rows they are in
    for n in kernel.nodes_in_order():
        node = kernel.node(n)
        where = {placed[o] for o in kernel.operands(n) if o in placed}
        if where:  # a reduction's result, in some rows only: what uses it stays there
            full = [o for o in kernel.operands(n) if o not in placed and kernel.node(o).shape]
            if node.op in REDUCTIONS or full or len(where) > 1:
                raise located_error(text, node.loc, "a reduction's result used with tensors "
                                                    "laid out otherwise (or reduced again) is "
                                                    "not supported yet")
            placed[n] = where.pop()
        ops = [words[o] for o in kernel.operands(n)]
        in_dtypes = [kernel.node(o).dtype for o in kernel.operands(n)]
        net.annotation = f"{node.loc} {node.op}"
        try:
            if node.op in REDUCTIONS:
                shape = kernel.node(kernel.operands(n)[0]).shape or ()
                words[n], placed[n] = _lower_reduction(
                    net, node, ops, parse_dtype(str(in_dtypes[0])), shape, mode, geo)
            else:
                words[n] = lower_node(net, node, ops, in_dtypes, mode, first_col)
        except PimError as exc:
            raise located_error(text, node.loc, str(exc)) from None
    outputs = [(r, words[kernel.outputs[r.name]]) for r in kernel.results]
    result_rows = {r.name: placed[kernel.outputs[r.name]] for r in kernel.results
                   if kernel.outputs[r.name] in placed}
    return Lowered(net, elements, inputs, outputs, col, result_rows)


def reduction_identity(op: str, dt: DType) -> int:
    """The raw bits a missing partner counts as: -0.0 or 0 for sums, the lowest value for
    max (so that x op identity = x, bit for bit, for every x but a signalling NaN)."""
    if op == "reduce_max":
        if dt.kind is Kind.FLOAT:
            fmt = FORMATS[dt.name]
            return (1 << (fmt.width - 1)) | (((1 << fmt.exp_bits) - 1) << fmt.frac_bits)
        return 1 << (dt.bits - 1) if dt.signed else 0
    return 1 << (dt.bits - 1) if dt.kind is Kind.FLOAT else 0


def tree_levels(n: int) -> list[tuple[int, int]]:
    """The pairwise reduction order: at each level (n, m), rows r < n - m take row r + m,
    rows n - m <= r < m take the identity, and m rows remain."""
    levels = []
    while n > 1:
        m = (n + 1) // 2
        levels.append((n, m))
        n = m
    return levels


def reduction_axes(shape: tuple[int, ...], axis: object) -> tuple[int, int, int]:
    """(outer, n, inner): the reduced axis of length n between the others, flattened; a
    reduction without an axis reduces everything."""
    if axis is None or len(shape) <= 1:
        return 1, math.prod(shape), 1
    k = int(axis)
    return math.prod(shape[:k]), shape[k], math.prod(shape[k + 1:])


def _lower_reduction(net: Netlist, node: Node, ops: list[Word], dt: DType,
                     shape: tuple[int, ...], mode: str, geo: Geometry
                     ) -> tuple[Word, tuple[int, int, int]]:
    """A log-depth tree. Over everything: inside every crossbar at once, SHIFT the upper
    half of the rows onto the lower half and combine, until row 0 holds the crossbar's
    part; then across crossbars, TRANSFER row 0 of the upper half onto the lower half and
    combine, until crossbar 0 holds the result. Along an axis: the same row tree with
    strides, in every segment at once. Padding counts as the identity. Returns the result
    and the rows it is in (start, stop, step)."""
    f = logic_for(net, dt.name, mode, "mul" if node.op == "dot" else "add")
    x = ops[0]
    if node.op == "dot":
        x = f.fmul(ops[0], ops[1]) if dt.kind is Kind.FLOAT else f.multiply_scaled(
            ops[0], ops[1], dt.signed, dt.frac_bits)
    op = "max" if node.op == "reduce_max" else "add"
    g = logic_for(net, dt.name, mode, op)
    identity = reduction_identity(node.op, dt)
    outer, length, inner = reduction_axes(shape, node.attr("axis"))
    if outer > 1 or inner > 1:
        return _segmented_tree(net, g, op, dt, x, identity, (outer, length, inner), geo)
    if geo.padded:  # the last crossbar's padding rows become the identity
        last = (geo.crossbars - 1, geo.crossbars)
        x = [_overwritten(net, bit, identity >> i & 1, (geo.tail, geo.rows), last)
             for i, bit in enumerate(x)]
    add = lambda a, b: combine(g, op, dt, a, b)  # noqa: E731
    x = block_tree(net, add, x, identity, geo.rows, 1)  # every crossbar at once
    x = block_tree(net, add, x, identity, geo.crossbars, 1, across=(0, 1), rows=(0, 1))
    return x, (0, 1, 1)


def block_tree(net: Netlist, combine: Callable[[Word, Word], Word], x: Word, identity: int,
               blocks: int, size: int, across: tuple[int, int] | None = None,
               rows: tuple[int, int] | None = None) -> Word:
    """Reduce `blocks` blocks of `size` rows into block 0 by the pairwise tree: at each
    level (n, m) block b < n - m takes block b + m by one SHIFT per column, blocks
    n - m <= b < m take the identity, and the first m blocks combine. With `across`,
    blocks of `size` crossbars instead, moved by TRANSFERs of the rows `across`; `rows`
    then limits the pads and the combining (None: every row)."""
    for n, m in tree_levels(blocks):
        bits = [identity >> i & 1 for i in range(len(x))]
        lo, hi = (n - m) * size, m * size
        if across is None:
            pads = [net.filled(b, (lo, hi)) if n - m < m else None for b in bits]
            partner = [net.rows_from(v, hi, (0, lo), into=pad)
                       for v, pad in zip(x, pads, strict=True)]
            limits = {"rows": (0, hi)}
        else:
            pads = [net.filled(b, rows, (lo, hi)) if n - m < m else None for b in bits]
            partner = [net.crossbars_from(v, hi, (0, lo), across, into=pad)
                       for v, pad in zip(x, pads, strict=True)]
            limits = {"rows": rows, "xbs": (0, hi)}
        with net.limited(**limits):
            x = combine(x, partner)
    return x


def _segmented_tree(net: Netlist, g: FloatOps, op: str, dt: DType, x: Word, identity: int,
                    axes: tuple[int, int, int], geo: Geometry
                    ) -> tuple[Word, tuple[int, int, int]]:
    """Reduce the middle axis of (outer, length, inner) in one crossbar: element (o, j, i)
    is row (o*length + j)*inner + i; each level SHIFTs by m*inner rows, and rows whose j
    has no partner take the identity (one INIT per segment)."""
    outer, length, inner = axes
    if geo.crossbars > 1:
        raise PimError("a reduction along an axis of a tensor longer than one crossbar is "
                       "not supported yet")
    if outer > 1 and inner > 1:
        raise PimError("a reduction along a middle axis is not supported yet (only the "
                       "first or the last)")
    total = outer * length * inner
    for n, m in tree_levels(length):
        bits = [identity >> i & 1 for i in range(len(x))]
        pads = [net.filled(b, None) for b in bits]
        partner = [net.rows_from(bit, m * inner, (0, total - m * inner), into=pad)
                   for bit, pad in zip(x, pads, strict=True)]
        for o in range(outer) if n - m < m else ():
            base = o * length * inner
            rows = (base + (n - m) * inner, base + m * inner)
            partner = [net.filled(b, rows, over=p) for b, p in zip(bits, partner, strict=True)]
        x = combine(g, op, dt, x, partner)
    return x, (0, outer * length * inner, length * inner) if inner == 1 else (0, inner, 1)


def _overwritten(net: Netlist, x: Bit, bit: int, rows: tuple[int, int],
                 xbs: tuple[int, int]) -> Bit:
    """A copy of x that is `bit` in `rows` of `xbs`."""
    if x in (ZERO, ONE):
        if (x == ONE) == bool(bit):
            return x
        x = net.filled(int(x == ONE), None)
    return net.filled(bit, rows, xbs, over=net.copy(x))


def combine(f: FloatOps, op: str, dt: DType, a: Word, b: Word) -> Word:
    if dt.kind is Kind.FLOAT:
        return f.fadd(a, b) if op == "add" else f.fminmax(a, b, True, dt.name == "f16")
    return f.add(a, b)[0] if op == "add" else f.maximum(a, b, dt.signed)


def logic_for(net: Netlist, dtype: str, mode: str, op: str) -> FloatOps:
    fmt = FORMATS.get(dtype, FORMATS["f32"])
    return FloatOps(net, fmt, mode, numpy_nan_rule(dtype, op) if dtype in FORMATS else
                    (False, False))


def lower_node(net: Netlist, node: Node, ops: list[Word], in_dtypes: list[str | None],
                mode: str, first_col: dict[str, int]) -> Word:
    op, dt = node.op, parse_dtype(str(node.dtype))
    if op == "input":
        return net.word_input(first_col[str(node.attr("name"))], dt.bits)
    if op == "const":
        return constant_bits(node, dt)
    if op in ("bitcast", "copy"):  # the same bits (copy: into a word of its own)
        return list(ops[0])
    operand_dt = parse_dtype(str(in_dtypes[0])) if in_dtypes else dt
    f = logic_for(net, operand_dt.name, mode, op)
    is_float = operand_dt.kind is Kind.FLOAT
    if op == "select":
        return f.select(ops[0][0], ops[1], ops[2])
    if op == "cast":
        return _cast(f, ops[0], operand_dt, dt, mode, net)
    if is_float:
        table = {"add": lambda: f.fadd(*ops), "sub": lambda: f.fsub(*ops),
                 "mul": lambda: f.fmul(*ops), "neg": lambda: f.fneg(ops[0]),
                 "div": lambda: f.fdiv(*ops), "sqrt": lambda: f.fsqrt(ops[0]),
                 "abs": lambda: f.fabs(ops[0]),
                 "relu": lambda: f.frelu(ops[0], operand_dt.name == "f16"),
                 "min": lambda: f.fminmax(*ops, False, operand_dt.name == "f16"),
                 "max": lambda: f.fminmax(*ops, True, operand_dt.name == "f16"),
                 "lt": lambda: f.flt(*ops), "le": lambda: f.fle(*ops),
                 "gt": lambda: f.flt(ops[1], ops[0]), "ge": lambda: f.fle(ops[1], ops[0]),
                 "eq": lambda: f.feq(*ops), "ne": lambda: [f.not_(f.feq(*ops)[0])]}
    else:
        s = operand_dt.signed
        table = {"add": lambda: f.add(*ops)[0], "sub": lambda: f.sub(*ops)[0],
                 "mul": lambda: f.multiply_scaled(*ops, s, operand_dt.frac_bits),
                 "neg": lambda: f.neg(ops[0]),
                 "abs": lambda: f.abs_(ops[0]) if s else list(ops[0]),
                 "relu": lambda: f.relu(ops[0]) if s else list(ops[0]),
                 "min": lambda: f.minimum(*ops, s), "max": lambda: f.maximum(*ops, s),
                 "lt": lambda: [f.less_than(*ops, s)], "le": lambda: [f.less_equal(*ops, s)],
                 "gt": lambda: [f.less_than(ops[1], ops[0], s)],
                 "ge": lambda: [f.less_equal(ops[1], ops[0], s)],
                 "eq": lambda: [f.equal(*ops)], "ne": lambda: [f.not_(f.equal(*ops))],
                 "and": lambda: [f.and_(a, b) for a, b in zip(*ops, strict=True)],
                 "or": lambda: [f.or_(a, b) for a, b in zip(*ops, strict=True)],
                 # raw bits -> an unsigned key in the values' order (lower.rowtree's SEARCH):
                 # a float's IEEE totalOrder (negatives' bits inverted, the sign flipped),
                 # a two's complement integer's (the sign flipped)
                 "float_key": lambda: [*(f.xor(a, ops[0][-1]) for a in ops[0][:-1]),
                                       f.not_(ops[0][-1])],
                 "signed_key": lambda: [*ops[0][:-1], f.not_(ops[0][-1])]}
    if op not in table:
        raise PimError(f"no lowering for {op} on {operand_dt.name} yet")
    return list(table[op]())


def _cast(f: FloatOps, x: Word, src: DType, dst: DType, mode: str, net: Netlist) -> Word:
    if src.kind is not Kind.FLOAT and dst.kind is not Kind.FLOAT:
        if src.frac_bits != dst.frac_bits:
            raise PimError(f"cast from {src.name} to {dst.name} (rescaling) is not supported yet")
        fill = x[-1] if src.signed and src.bits > 1 else ZERO
        return (list(x) + [fill] * dst.bits)[: dst.bits]
    if src.kind is Kind.FLOAT and dst.kind is not Kind.FLOAT:
        if not dst.signed:
            raise PimError(f"cast from {src.name} to unsigned {dst.name} is not supported yet")
        return f.to_int(x, dst.bits, dst.frac_bits)
    if src.kind is not Kind.FLOAT:
        g = FloatOps(net, FORMATS[dst.name], mode)
        value = list(x) if src.signed else [*x, ZERO]  # unsigned: one more, zero, sign bit
        return g.from_int(value, src.frac_bits)
    if src.name == dst.name:
        return list(x)
    g = FloatOps(net, FORMATS[dst.name], mode)
    return g.from_float(x, FORMATS[src.name], cast_nan_canonical(src.name, dst.name))
