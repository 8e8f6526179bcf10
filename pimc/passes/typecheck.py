"""Type and shape checking: names every call, gives every node its dtype and shape.

Arithmetic takes operands of one dtype; a literal takes the type of the operand it meets
(a literal alone is an error: cast it). Shapes broadcast as numpy's do. Comparisons give
`u1`. Reductions (sum, dot, max with axis=) drop the reduced axes.
"""

from __future__ import annotations

import math

import numpy as np

from pimc.frontend.dsl import located_error
from pimc.ir import Kernel, Node
from pimc.isa.dtypes import Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.ops import CALLS, COMPARISONS, OPS, Result

BOOL = Result.BOOL.value


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def typecheck(kernel: Kernel, text: str = "") -> Kernel:
    """A copy of the kernel with every node typed; PimError at the first mistake."""
    k = kernel.copy()

    def fail(n: int, what: str) -> PimError:
        return located_error(text, k.node(n).loc, what)

    for n in k.nodes_in_order():
        node, ops = k.node(n), k.operands(n)
        typed = [k.node(o) for o in ops]
        op = node.op
        if op.startswith("call:"):
            op = _resolve_call(node, len(ops), fail, n)
        if op not in OPS or OPS[op].arity != len(ops):
            raise fail(n, f"no IR op {op} of {len(ops)} operand(s)")
        dtype, shape = _infer(op, node, typed, ops, k, fail, n)
        k.graph.nodes[n]["node"] = Node(op, node.loc, dtype, shape, node.attrs)
    for r in k.results:
        got = k.node(k.outputs[r.name])
        if got.dtype != r.dtype or got.shape != r.shape:
            raise located_error(text, k.result_locs[r.name],
                                f"result '{r.name}' is declared {_show(r.dtype, r.shape)} but "
                                f"is given {_show(got.dtype, got.shape)}")
    return k


def _show(dtype: str | None, shape: tuple[int, ...] | None) -> str:
    dims = "" if not shape else "[" + ", ".join(map(str, shape)) + "]"
    return f"{dtype or 'an untyped literal'}{dims}"


def _resolve_call(node: Node, arity: int, fail, n: int) -> str:
    name = node.op.split(":", 1)[1]
    keywords = dict(node.attrs)
    op = CALLS.get((name, arity))
    if op is None:
        known = ", ".join(_spelled(call, arity, op) for (call, arity), op in CALLS.items())
        raise fail(n, f"no function {name} with {arity} argument(s) (known: {known})")
    allowed = {"axis"} if op in ("sum", "reduce_max") else set()
    if set(keywords) - allowed:
        raise fail(n, f"{name}() takes no argument '{sorted(set(keywords) - allowed)[0]}'")
    if op == "reduce_max" and "axis" not in keywords:
        raise fail(n, "max of one tensor needs an axis: max(x, axis=0)")
    return op


def _spelled(call: str, arity: int, op: str) -> str:
    """How a call is written: max(x, axis=k), sum(x[, axis=k]), min(a, b)."""
    if op == "reduce_max":
        return f"{call}(x, axis=k)"
    if op == "sum":
        return f"{call}(x[, axis=k])"
    return f"{call}({ {1: 'x', 2: 'a, b', 3: 'c, a, b'}[arity]})"


def _check_literal(lit: Node, dtype: str, fail, n: int) -> None:
    """A literal must be a value of the type it takes: no silent wrap or truncation."""
    value, dt = lit.attr("value"), parse_dtype(dtype)
    if dt.kind is Kind.FLOAT:
        return
    if not math.isfinite(value):
        raise fail(n, f"{value} is not a value of {dtype}")
    if dt.kind is not Kind.FIXED and value != int(value):
        raise fail(n, f"{value} is not an integer: it cannot be a {dtype}")
    scale = 1 << dt.frac_bits  # fixed point: a literal rounds to the nearest step
    lo, hi = dt.raw_range
    if not lo <= round(value * scale) <= hi:
        raise fail(n, f"{value} is out of range for {dtype} "
                      f"({lo / scale:g} .. {hi / scale:g})")


def _infer(op, node, typed, ops, k, fail, n):
    if op == "input":
        return node.dtype, node.shape
    if op == "const":
        return None, ()
    if op == "cast":
        to = str(node.attr("to"))
        parse_dtype(to)
        if typed[0].dtype is None:  # a typed literal: f16(3)
            _check_literal(typed[0], to, fail, ops[0])
            k.graph.nodes[ops[0]]["node"] = typed[0].with_type(to, ())
        return to, typed[0].shape
    dtypes = {t.dtype for t in typed if t.dtype is not None}
    if op == "select":
        if typed[0].dtype != BOOL:
            raise fail(n, f"select's condition must be a comparison ({BOOL}), "
                          f"not {_show(typed[0].dtype, typed[0].shape)}")
        dtypes = {t.dtype for t in typed[1:] if t.dtype is not None}
    if len(dtypes) > 1:
        raise fail(n, f"operands of {op} have different types: "
                      f"{', '.join(_show(t.dtype, t.shape) for t in typed)} (cast one)")
    if not dtypes:
        raise fail(n, f"{op} of literals only: give one a type, e.g. f32(1.5)")
    dtype = dtypes.pop()
    for o, t in zip(ops, typed, strict=True):
        if t.dtype is None:  # the literal takes the type it meets
            _check_literal(t, dtype, fail, o)
            k.graph.nodes[o]["node"] = t.with_type(dtype, ())
    if op in ("sum", "reduce_max"):
        axis = node.attr("axis")
        shape = typed[0].shape
        if axis is None:
            return dtype, ()
        if not 0 <= int(axis) < len(shape):
            raise fail(n, f"axis {axis} is out of range for {_show(dtype, shape)}")
        return dtype, shape[: int(axis)] + shape[int(axis) + 1:]
    if op == "dot":
        a, b = typed
        if len(a.shape) != 1 or a.shape != b.shape:
            raise fail(n, f"dot takes two vectors of one length, not {_show(a.dtype, a.shape)}"
                          f" and {_show(b.dtype, b.shape)}")
        return dtype, ()
    shape = _broadcast([t.shape for t in typed])
    if shape is None:
        raise fail(n, f"shapes {', '.join(_show(t.dtype, t.shape) for t in typed)} "
                      f"do not broadcast")
    if op in COMPARISONS:
        return BOOL, shape
    return dtype, shape
