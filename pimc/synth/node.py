"""The NOR netlist of one IR op on words of bits (pimc.synth's float and integer
logic), and the bits of a constant: what each arithmetic routine (pimc.lower.arith) and
the reference's constants are built from."""

from __future__ import annotations

import numpy as np

from pimc.ir import Node
from pimc.isa.dtypes import DType, Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.synth.float_ops import FloatOps
from pimc.synth.floating import FORMATS
from pimc.synth.logic import Word
from pimc.synth.netlist import ONE, ZERO, Netlist
from pimc.synth.oracle import cast_nan_canonical, numpy_nan_rule


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
