"""The reference for verification: a typed kernel evaluated on raw bits, op by op, in the
order of the IR, with the synthesis oracle's semantics (numpy's, bit for bit).

In `ftz` mode floats outside that mode's domain (infinities, NaN, overflow) make the
hardware's result undefined: such elements are reported as unchecked, not compared.
"""

from __future__ import annotations

import numpy as np

from pimc.ir import Kernel
from pimc.isa.dtypes import DType, Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.view import LOWEST, ViewOp, apply_view, windows
from pimc.lower.trees import reduction_axes, reduction_identity, tree_levels
from pimc.ops import REDUCTIONS
from pimc.synth.floating import FORMATS
from pimc.synth.netlist import ONE
from pimc.synth.node import constant_bits
from pimc.synth.oracle import (
    conversion,
    float_cast_reference,
    float_misc_reference,
    float_reference,
    int_reference,
    numpy_nan_rule,
)


def _raw(dt: DType, values: np.ndarray) -> np.ndarray:
    return dt.to_bits(np.asarray(values)).astype(np.uint64)


def _special(fmt, raw: np.ndarray) -> np.ndarray:
    """Infinities and NaNs."""
    e_max = np.uint64((1 << fmt.exp_bits) - 1)
    return ((raw >> np.uint64(fmt.frac_bits)) & e_max) == e_max


def _daz(fmt, raw: np.ndarray) -> np.ndarray:
    """Subnormals read as zeros of their sign."""
    sub = ((raw >> np.uint64(fmt.frac_bits)) & np.uint64((1 << fmt.exp_bits) - 1)) == 0
    return np.where(sub, raw & np.uint64(1 << (fmt.width - 1)), raw)


def evaluate_node(kernel: Kernel, n: int, mode: str) -> np.ndarray:
    """One node whose operands are all constants (for constant folding)."""
    values = {o: _constant(kernel, o) for o in kernel.operands(n)}
    node = kernel.node(n)
    args = [np.asarray(values[o], dtype=np.uint64) for o in kernel.operands(n)]
    arg_dt = [parse_dtype(str(kernel.node(o).dtype)) for o in kernel.operands(n)]
    dt = parse_dtype(str(node.dtype))
    if node.op in ("bitcast", "copy"):
        return args[0]
    if arg_dt[0].kind is Kind.FLOAT and node.op != "select":
        return _float_op(node.op, node, arg_dt[0], dt, args, mode)
    return _int_op(node.op, node, arg_dt[0], dt, args, arg_dt, mode)


def _constant(kernel: Kernel, n: int) -> np.uint64:
    node = kernel.node(n)
    bits = constant_bits(node, parse_dtype(str(node.dtype)))
    return np.uint64(sum(1 << i for i, b in enumerate(bits) if b == ONE))


def evaluate(kernel: Kernel, inputs: dict[str, np.ndarray], mode: str = "ieee"
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(results as raw bits, per result the mask of elements a comparison may check: in
    ftz mode an element, or a reduction, that met an infinity or a NaN is left out).
    Reductions follow the hardware's trees (the splits the kernel records)."""
    values: dict[int, np.ndarray] = {}
    ok: dict[int, np.ndarray] = {}  # per node: the elements still in the ftz domain
    for n in kernel.nodes_in_order():
        node = kernel.node(n)
        dt = parse_dtype(str(node.dtype))
        args = [values[o] for o in kernel.operands(n)]
        arg_dt = [parse_dtype(str(kernel.node(o).dtype)) for o in kernel.operands(n)]
        here = np.ones((), dtype=bool)
        if node.op not in ("reshape", "transpose", "matmul", "window", "slice"):
            for o in kernel.operands(n):
                here = here & ok[o]
        else:
            here = np.broadcast_to(ok[kernel.operands(n)[0]], np.shape(args[0]))
        if node.op == "input" and str(node.attr("name")) not in inputs \
                and not kernel.graph.out_degree(n):  # declared, read by nothing
            values[n] = np.zeros(node.shape or (), dtype=np.uint64)
        elif node.op == "input":
            values[n] = _raw(dt, inputs[str(node.attr("name"))])
        elif node.op == "const":
            values[n] = _constant(kernel, n)
        elif node.op in ("bitcast", "copy"):  # the same bits
            values[n] = args[0]
        elif node.op == "reshape":
            values[n] = np.asarray(args[0]).reshape(node.shape)
            here = here.reshape(node.shape)
        elif node.op == "transpose":
            perm = tuple(node.attr("perm"))
            values[n] = np.transpose(args[0], perm)
            here = np.transpose(here, perm)
        elif node.op == "window":
            step = ViewOp("window", tuple(node.attr("step")))
            low = np.uint64(reduction_identity("reduce_max", dt))
            values[n] = windows(np.asarray(args[0], dtype=np.uint64), step, low)
            here = windows(np.broadcast_to(ok[kernel.operands(n)[0]], np.shape(args[0])),
                           ViewOp("window", (step.dims[0], LOWEST, *step.dims[2:])), True)
        elif node.op == "slice":
            step = (ViewOp("slice", tuple(node.attr("step"))),)
            values[n] = apply_view(np.asarray(args[0]), step)
            here = apply_view(np.broadcast_to(here, np.shape(args[0])), step)
        elif node.op == "matmul":
            values[n], seen = _matmul(node, arg_dt[0], args, mode)
            b_ok = np.broadcast_to(ok[kernel.operands(n)[1]], np.shape(args[1]))
            here = here.all(axis=-1)[..., :, None] & b_ok.all(axis=-2)[..., None, :]
            if mode == "ftz" and arg_dt[0].kind is Kind.FLOAT:
                here = here & ~seen
        elif node.op in REDUCTIONS:
            values[n], seen = _reduce(node, arg_dt[0], args, mode)
            here = _reduce_mask(node, here, np.shape(args[0]))
            if mode == "ftz" and arg_dt[0].kind is Kind.FLOAT:
                here = here & ~seen
        elif arg_dt[0].kind is Kind.FLOAT and node.op != "select":
            args = list(np.broadcast_arrays(*[np.asarray(a, dtype=np.uint64) for a in args]))
            fmt = FORMATS[arg_dt[0].name]
            values[n] = _float_op(node.op, node, arg_dt[0], dt, args, mode)
            if mode == "ftz":
                for a in args:
                    here = here & ~_special(fmt, a)
                if dt.kind is Kind.FLOAT:
                    here = here & ~_special(FORMATS[dt.name], values[n])
        else:
            args = list(np.broadcast_arrays(*[np.asarray(a, dtype=np.uint64) for a in args]))
            values[n] = _int_op(node.op, node, arg_dt[0], dt, args, arg_dt, mode)
        ok[n] = here
    results = {r.name: values[kernel.outputs[r.name]] for r in kernel.results}
    masks = {r.name: np.broadcast_to(ok[kernel.outputs[r.name]], r.shape).copy()
             for r in kernel.results}
    return results, masks


def _reduce(node, dt, args, mode):
    """The same trees as the hardware's (pimc.lower.tensors), op for op: the pairwise
    tree along the axis, every segment at once; split in chunks, each chunk's tree and
    then the tree over the chunks (padding = identity). Returns the result and, per result
    element, whether an infinity or NaN came up on the way (in any operand or partial
    result; max's identity, -inf, is computed with, as its padding is)."""
    shape = np.shape(args[0])
    x = np.asarray(args[0], dtype=np.uint64).reshape(-1)
    if node.op == "dot":
        x = _binary("mul", node, dt, x, np.asarray(args[1], dtype=np.uint64).reshape(-1), mode)
    op = "max" if node.op == "reduce_max" else "add"
    identity = np.uint64(reduction_identity(node.op, dt))
    outer, length, inner = reduction_axes(shape, node.attr("axis"))
    # the identity (max's -inf) pads the trees: an operand's or a partial's infinity or
    # NaN counts, padding's does not
    special = (lambda v: _special(FORMATS[dt.name], v) & (v != identity)) if (
        dt.kind is Kind.FLOAT) else (lambda v: np.zeros(np.shape(v), dtype=bool))
    if node.attr("searched"):  # lower.rowtree's SEARCH: the largest by its order key
        x = x.reshape(outer, length, inner)
        pick = _order_key(x, dt).argmax(axis=1)[:, None]
        out_shape = shape[: len(shape) - 1] if inner == 1 else shape[1:]
        return (np.take_along_axis(x, pick, 1).reshape(out_shape),
                special(x).any(axis=1).reshape(out_shape))
    chunks = int(node.attr("chunks", 1))
    if chunks > 1:  # lowering.tensors: each chunk's tree, then a tree over the chunks
        per = -(-length // chunks)
        pad = identity if node.op == "reduce_max" else np.uint64(0)
        x = x.reshape(outer, length)
        x = np.concatenate([x, np.full((outer, chunks * per - length), pad, np.uint64)], 1)
        x = x.reshape(outer, chunks, per).transpose(2, 1, 0)  # [j, chunk, o]
        first = special(x).any(axis=(0, 1))
        x, seen = _tree(x, per, identity, op, node, dt, mode, special)
        x, more = _tree(x, chunks, identity, op, node, dt, mode, special)
        return x.reshape(shape[:-1]), (first | seen.any(axis=0) | more).reshape(shape[:-1])
    x = x.reshape(outer, length, inner).transpose(1, 0, 2)  # [j, o, i]
    out_shape = () if node.attr("axis") is None else (
        shape[: len(shape) - 1] if inner == 1 else shape[1:])
    first = special(x).any(axis=0)
    x, seen = _tree(x, length, identity, op, node, dt, mode, special)
    return x.reshape(out_shape), (first | seen).reshape(out_shape)


def _matmul(node, dt, args, mode):
    """The hardware's order (lower_tensors): products lane by lane, then the pairwise tree
    over the inner dimension. Also, per element, whether an infinity or NaN came up."""
    a, b = (np.asarray(x, dtype=np.uint64) for x in args)
    k = a.shape[-1]
    full = (*node.shape, k)
    lanes_a = np.broadcast_to(a[..., :, None, :], full)
    lanes_b = np.broadcast_to(np.swapaxes(b, -1, -2)[..., None, :, :], full)
    products = _binary("mul", node, dt, lanes_a, lanes_b, mode)
    special = (lambda v: _special(FORMATS[dt.name], v)) if dt.kind is Kind.FLOAT else (
        lambda v: np.zeros(np.shape(v), dtype=bool))
    chunks = int(node.attr("chunks", 1))
    per = -(-k // chunks)
    x = np.moveaxis(products, -1, 0)  # [lane, ...]
    seen = special(x).any(axis=0)
    zero = _binary("mul", node, dt, np.zeros(1, np.uint64), np.zeros(1, np.uint64), mode)
    x = np.concatenate([x, np.broadcast_to(zero, (chunks * per - k, *x.shape[1:]))])
    x = x.reshape(chunks, per, *x.shape[1:])
    acc = x[:, 0]
    for j in range(1, per):  # multiply-accumulate in every chunk
        acc = _binary("add", node, dt, acc, x[:, j], mode)
        seen |= special(acc).any(axis=0)
    identity = np.uint64(reduction_identity("sum", dt))
    total, more = _tree(acc, chunks, identity, "add", node, dt, mode, special)
    return total, seen | more


def _reduce_mask(node, ok, shape):
    """A mask over a reduction's operand reduced like the operand: all along the axis."""
    ok = np.broadcast_to(ok, shape)
    outer, length, inner = reduction_axes(shape, node.attr("axis"))
    if outer > 1 or inner > 1:
        ok = ok.reshape(outer, length, inner).all(axis=1)
        return ok.reshape(shape[: len(shape) - 1] if inner == 1 else shape[1:])
    return np.asarray(ok.all())


def _order_key(x, dt):
    """The unsigned key a SEARCH max ranks raw bits by: a float's IEEE totalOrder (the
    lowering's float_key), a signed integer's sign flipped."""
    if dt.kind is Kind.FLOAT:
        return _key("float_key", x, dt.bits)
    return _key("signed_key", x, dt.bits) if dt.signed else x


def _key(op, x, bits):
    """float_key or signed_key of raw bits `bits` wide."""
    top = np.uint64(1 << (bits - 1))
    if op == "float_key":
        return np.where(x & top, ~x & np.uint64((1 << bits) - 1), x | top)
    return x ^ top


def _tree(x, length, identity, op, node, dt, mode, special):
    """The pairwise tree over axis 0 (row r takes row r + m, m = ceil(n / 2), repeatedly)."""
    seen = np.zeros(x.shape[1:], dtype=bool)  # the partial results' (the caller checks x)
    for n, m in tree_levels(length):
        partner = np.full((m, *x.shape[1:]), identity, dtype=np.uint64)
        partner[: n - m] = x[m:n]
        x = _binary(op, node, dt, x[:m], partner, mode)
        seen = seen | special(x).any(axis=0)
    return x[0], seen


def _binary(op, node, dt, a, b, mode):
    if dt.kind is Kind.FLOAT:
        return _float_op(op, node, dt, dt, [a, b], mode)
    return _int_op(op, node, dt, dt, [a, b], [dt, dt], mode)


def _float_op(op, node, src, dt, args, mode):
    fmt = FORMATS[src.name]
    e, m = fmt.exp_bits, fmt.frac_bits
    if op in ("add", "sub", "mul"):
        return float_reference(op, args[0], args[1], e, m, mode, numpy_nan_rule(src.name, op))
    if op == "cast":
        if dt.kind is Kind.FLOAT:
            return float_cast_reference(args[0], src.name, dt.name, mode)
        return conversion(f"to_{dt.name}", args[0], e, m, mode)
    if mode == "ftz" and op not in ("neg", "abs"):
        # Compared as if subnormals were zeros; min, max and relu return an operand as is.
        flushed = [_daz(fmt, a) for a in args]
        if op in ("min", "max", "relu"):
            picks = float_misc_reference(op, src.name, flushed, e, m)
            return np.where(picks == flushed[0], args[0],
                            args[1] if len(args) > 1 else np.uint64(0))
        args = flushed
    swapped = {"gt": "lt", "ge": "le"}
    if op in swapped:
        return float_misc_reference(swapped[op], src.name, [args[1], args[0]], e, m)
    if op == "ne":
        return np.uint64(1) - float_misc_reference("eq", src.name, args, e, m)
    return float_misc_reference(op, src.name, args, e, m, mode)


def _int_op(op, node, src, dt, args, arg_dt, mode):
    if op == "select":
        return np.where(args[0] == 1, args[1], args[2])
    if op == "cast":
        if dt.kind is Kind.FLOAT:
            fmt = FORMATS[dt.name]
            # An unsigned source reads as a signed number one bit wider (a zero sign bit).
            name = f"from_{src.name}" if src.signed else f"from_i{src.bits + 1}"
            return conversion(name, args[0], fmt.exp_bits, fmt.frac_bits, mode)
        raw = [int(v) for v in args[0].reshape(-1)]
        if src.signed and src.bits > 1:
            raw = [v - (1 << src.bits) if v >> (src.bits - 1) else v for v in raw]
        out = [v & ((1 << dt.bits) - 1) for v in raw]
        return np.array(out, dtype=np.uint64).reshape(args[0].shape)
    swapped = {"gt": "lt", "ge": "le"}
    if op in swapped:
        return int_reference(swapped[op], src, [args[1], args[0]], 1)
    if op == "ne":
        return np.uint64(1) - int_reference("eq", src, args, 1)
    if op == "and":
        return args[0] & args[1]
    if op == "or":
        return args[0] | args[1]
    if op in ("float_key", "signed_key"):
        return _key(op, args[0], src.bits)
    if op in ("neg", "abs", "relu", "add", "sub", "mul", "min", "max", "lt", "le", "eq"):
        if op in ("abs", "relu") and not src.signed:
            return args[0]
        return int_reference(op, src, args, dt.bits)
    raise PimError(f"no reference for {op} on {src.name}")
