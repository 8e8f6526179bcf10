"""The IR's op vocabulary in one table: what each op takes and gives. The front ends, the
type checker, CSE, the stage cutter, the lowerings and the reference evaluator read it,
so an op is added here once (and `tests/test_ops.py` checks every reader knows it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    SOURCE = "source"  # a parameter or a literal
    VIEW = "view"  # the same elements, rearranged (free: the host or a move places them)
    ELEMENTWISE = "elementwise"  # one result element from the operands' elements there
    REDUCTION = "reduction"  # along an axis (or all of a vector)
    PRODUCT = "product"  # a matrix product over the inner axis


class Result(enum.Enum):
    SAME = "same"  # the operands' dtype
    BOOL = "u1"  # a comparison's flag
    ATTR = "attr"  # the `to` attribute (a cast)


@dataclass(frozen=True)
class OpInfo:
    kind: Kind
    arity: int  # operands (0 for sources)
    commutative: bool = False
    result: Result = Result.SAME
    call: str = ""  # the DSL's function name, if it is one (`max(x, axis=0)`: reduce_max)
    types: str = "any"  # the operand types it is defined on: any, float, int, raw (bits)


def _e(arity: int, commutative: bool = False, call: str = "", types: str = "any") -> OpInfo:
    return OpInfo(Kind.ELEMENTWISE, arity, commutative, call=call, types=types)


def _cmp(commutative: bool = False) -> OpInfo:
    return OpInfo(Kind.ELEMENTWISE, 2, commutative, Result.BOOL)


OPS: dict[str, OpInfo] = {
    "input": OpInfo(Kind.SOURCE, 0),
    "const": OpInfo(Kind.SOURCE, 0),
    "reshape": OpInfo(Kind.VIEW, 1),
    "transpose": OpInfo(Kind.VIEW, 1),
    "window": OpInfo(Kind.VIEW, 1),
    "slice": OpInfo(Kind.VIEW, 1),  # values start..stop-1 along one axis (a crop)
    "bitcast": OpInfo(Kind.VIEW, 1),  # the same bits read as another type
    "copy": _e(1),  # a value placed again (a network input's one-element-a-row copy)
    "add": _e(2, True),
    "sub": _e(2),
    "mul": _e(2, True),
    "div": _e(2, types="float"),
    "sqrt": _e(1, types="float"),
    "neg": _e(1),
    "abs": _e(1, call="abs"),
    "relu": _e(1, call="relu"),
    "min": _e(2, True, call="min"),
    "max": _e(2, True, call="max"),
    "select": _e(3, call="select"),  # (flag, if set, if clear)
    "and": _e(2, True, types="int"),  # bitwise
    "or": _e(2, True, types="int"),
    "float_key": _e(1, types="raw"),  # raw bits -> an unsigned key in the values' order
    "signed_key": _e(1, types="raw"),  # (what a SEARCH for the maximum ranks)
    "cast": OpInfo(Kind.ELEMENTWISE, 1, result=Result.ATTR),
    "lt": _cmp(),
    "le": _cmp(),
    "gt": _cmp(),
    "ge": _cmp(),
    "eq": _cmp(True),
    "ne": _cmp(True),
    "sum": OpInfo(Kind.REDUCTION, 1, call="sum"),
    "reduce_max": OpInfo(Kind.REDUCTION, 1, call="max"),
    "dot": OpInfo(Kind.REDUCTION, 2, True, call="dot"),
    "matmul": OpInfo(Kind.PRODUCT, 2),
}


def of_kind(kind: Kind) -> tuple[str, ...]:
    """The ops of one kind, in the table's order."""
    return tuple(name for name, info in OPS.items() if info.kind is kind)


VIEWS = of_kind(Kind.VIEW)
REDUCTIONS = of_kind(Kind.REDUCTION)
COMMUTATIVE = frozenset(name for name, info in OPS.items() if info.commutative)
COMPARISONS = frozenset(name for name, info in OPS.items() if info.result is Result.BOOL)
CALLS = {(info.call, info.arity): name for name, info in OPS.items() if info.call}
