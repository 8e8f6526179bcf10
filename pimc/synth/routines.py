"""Element-parallel arithmetic routines as whole programs: operands in columns of one row,
every row (and every crossbar of the span) computing at once.

`build_routine` lays out the operands, synthesises the op, allocates and emits it, and
returns a Program whose inputs and outputs the runtime loads and reads. The same table
drives the tests (verification against numpy) and bench/arith.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.cost import program_cycles
from pimc.isa.dtypes import DType, Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Program, Span
from pimc.synth.alloc import allocate
from pimc.synth.emit import emit
from pimc.synth.fixed import Fixed
from pimc.synth.float_ops import FloatOps
from pimc.synth.floating import FORMATS
from pimc.synth.lane_float import LaneFloat
from pimc.synth.lanes import LaneLogic
from pimc.synth.logic import Word
from pimc.synth.netlist import Bit, Netlist
from pimc.synth.oracle import numpy_nan_rule

Build = Callable[[Fixed, list[Word], DType], list[Word] | Word]


@dataclass(frozen=True)
class OpSpec:
    arity: int
    build: Build
    out_dtype: Callable[[DType], str]  # result dtype name, from the operand dtype


def _same(dt: DType) -> str:
    return dt.name


def _bool(dt: DType) -> str:
    return "u1"


def _wide(dt: DType) -> str:
    if 2 * dt.bits > 64:
        return f"u{dt.bits}"  # two halves of the 2N-bit product (see build_routine)
    if dt.kind is Kind.FIXED:
        return f"q{2 * (dt.bits - dt.frac_bits)}.{2 * dt.frac_bits}"
    return f"{dt.kind.value}{2 * dt.bits}"



INT_OPS: dict[str, OpSpec] = {
    "add": OpSpec(2, lambda f, w, dt: f.add(w[0], w[1])[0], _same),
    "sub": OpSpec(2, lambda f, w, dt: f.sub(w[0], w[1])[0], _same),
    "neg": OpSpec(1, lambda f, w, dt: f.neg(w[0]), _same),
    "abs": OpSpec(1, lambda f, w, dt: f.abs_(w[0]) if dt.signed else w[0], _same),
    "mul": OpSpec(2, lambda f, w, dt: f.multiply_scaled(w[0], w[1], dt.signed, dt.frac_bits),
                  _same),
    "mul_wide": OpSpec(2, lambda f, w, dt: f.multiply(w[0], w[1], dt.signed), _wide),
    "lt": OpSpec(2, lambda f, w, dt: [f.less_than(w[0], w[1], dt.signed)], _bool),
    "le": OpSpec(2, lambda f, w, dt: [f.less_equal(w[0], w[1], dt.signed)], _bool),
    "eq": OpSpec(2, lambda f, w, dt: [f.equal(w[0], w[1])], _bool),
    "min": OpSpec(2, lambda f, w, dt: f.minimum(w[0], w[1], dt.signed), _same),
    "max": OpSpec(2, lambda f, w, dt: f.maximum(w[0], w[1], dt.signed), _same),
    "relu": OpSpec(1, lambda f, w, dt: f.relu(w[0]) if dt.signed else w[0], _same),
    "select": OpSpec(3, lambda f, w, dt: f.select(w[2][0], w[0], w[1]), _same),
    "shl3": OpSpec(1, lambda f, w, dt: f.shift_left(w[0], 3), _same),
    "shr3": OpSpec(1, lambda f, w, dt: f.shift_right(w[0], 3, dt.signed), _same),
}

@dataclass(frozen=True)
class FloatSpec:
    build: Callable[[FloatOps, list[Word]], Word]
    operands: Callable[[str], list[str]]  # operand dtypes, from the float dtype
    result: Callable[[str], str]  # result dtype


def _two(d: str) -> list[str]:
    return [d, d]


def _one(d: str) -> list[str]:
    return [d]


def _float(d: str) -> str:
    return d


def _flag(d: str) -> str:
    return "u1"


def _ties_to_a(f: FloatOps) -> bool:
    return f.fmt == FORMATS["f16"]  # numpy's float16 min/max loop keeps a on ties


FLOAT_OPS: dict[str, FloatSpec] = {
    "add": FloatSpec(lambda f, w: f.fadd(w[0], w[1]), _two, _float),
    "sub": FloatSpec(lambda f, w: f.fsub(w[0], w[1]), _two, _float),
    "mul": FloatSpec(lambda f, w: f.fmul(w[0], w[1]), _two, _float),
    "div": FloatSpec(lambda f, w: f.fdiv(w[0], w[1]), _two, _float),
    "sqrt": FloatSpec(lambda f, w: f.fsqrt(w[0]), _one, _float),
    "neg": FloatSpec(lambda f, w: f.fneg(w[0]), _one, _float),
    "abs": FloatSpec(lambda f, w: f.fabs(w[0]), _one, _float),
    "lt": FloatSpec(lambda f, w: f.flt(w[0], w[1]), _two, _flag),
    "le": FloatSpec(lambda f, w: f.fle(w[0], w[1]), _two, _flag),
    "eq": FloatSpec(lambda f, w: f.feq(w[0], w[1]), _two, _flag),
    "min": FloatSpec(lambda f, w: f.fminmax(w[0], w[1], False, _ties_to_a(f)), _two, _float),
    "max": FloatSpec(lambda f, w: f.fminmax(w[0], w[1], True, _ties_to_a(f)), _two, _float),
    "relu": FloatSpec(lambda f, w: f.frelu(w[0], _ties_to_a(f)), _one, _float),
    "to_i32": FloatSpec(lambda f, w: f.to_int(w[0], 32), _one, lambda d: "i32"),
    "from_i32": FloatSpec(lambda f, w: f.from_int(w[0]), lambda d: ["i32"], _float),
    "to_q16.16": FloatSpec(lambda f, w: f.to_int(w[0], 32, 16), _one, lambda d: "q16.16"),
    "from_q16.16": FloatSpec(lambda f, w: f.from_int(w[0], 16), lambda d: ["q16.16"], _float),
    "to_q4.4": FloatSpec(lambda f, w: f.to_int(w[0], 8, 4), _one, lambda d: "q4.4"),
    "from_q4.4": FloatSpec(lambda f, w: f.from_int(w[0], 4), lambda d: ["q4.4"], _float),
}

OPERANDS = "abc"


@dataclass(frozen=True)
class Routine:
    program: Program
    op: str
    dtype: str
    mode: str
    peak_scratch: int
    align: str = "nor"


def operand_dtypes(op: str, dt: DType) -> list[str]:
    spec = INT_OPS[op]
    return [dt.name] * min(spec.arity, 2) + (["u1"] if spec.arity == 3 else [])


def build_routine(op: str, dtype: str, *, arch: Arch | None = None, crossbars: int = 1,
                  rows: int | None = None, scratch_budget: int | None = None,
                  mode: str | None = None, align: str = "auto") -> Routine:
    """A program computing `op` element-wise on every row of `crossbars` crossbars.

    `mode` is ieee or ftz for floating point (default ieee), int otherwise. `align` picks
    the float adder's exponent alignment: "nor" (a barrel shifter of NOR muxes), "search"
    (FloatPIM's: one SEARCH per shift amount and predicated NORs), or "auto": both are
    synthesised and the one with fewer cycles on `arch` is kept.
    """
    if align == "auto":
        if op in ("add", "sub") and parse_dtype(dtype).kind is Kind.FLOAT:
            arch = arch or Arch()
            kw = dict(arch=arch, crossbars=crossbars, rows=rows, scratch_budget=scratch_budget,
                      mode=mode)
            both = [build_routine(op, dtype, align=a, **kw) for a in ("nor", "search")]
            return min(both, key=lambda r: program_cycles(r.program.ops, arch))
        align = "nor"
    arch = arch or Arch()
    dt = parse_dtype(dtype)
    is_float = dt.kind is Kind.FLOAT
    mode = mode or ("ieee" if is_float else "int")
    table = FLOAT_OPS if is_float else INT_OPS
    if op not in table:
        raise PimError(f"unknown op '{op}' for {dtype} (known: {', '.join(table)})")
    if is_float and mode not in ("ieee", "ftz"):
        raise PimError(f"floating point mode must be ieee or ftz, not '{mode}'")
    rows = rows or arch.rows
    net = Netlist(max_fanin=arch.max_nor_inputs)
    b = ProgramBuilder(crossbars, arch=arch, source=f"pimc.synth:{op}:{dtype}:{mode}")
    shape = [crossbars, rows]
    col, words = 0, []
    names = operand_dtypes(op, dt) if not is_float else FLOAT_OPS[op].operands(dt.name)
    for name, odt in zip(OPERANDS, names, strict=False):
        width = parse_dtype(odt).bits
        b.input(name, odt, shape, col, rows=range_span(rows))
        words.append(net.word_input(col, width))
        col += width
    if is_float:
        logic = FloatOps(net, FORMATS[dt.name], mode, numpy_nan_rule(dt.name, op), align)
        result: list[Bit] = list(FLOAT_OPS[op].build(logic, words))
        out_dt = parse_dtype(FLOAT_OPS[op].result(dt.name))
    else:
        spec = INT_OPS[op]
        result = list(spec.build(Fixed(net), words, dt))
        out_dt = parse_dtype(spec.out_dtype(dt))
    # A result wider than 64 bits leaves as its halves: lanes 2 of a type of half the width.
    lanes = len(result) // out_dt.bits
    if len(result) != lanes * out_dt.bits:
        raise AssertionError(f"{op}: {len(result)} result bits for {out_dt.name}")
    b.output("y", out_dt.name, [*shape, lanes] if lanes > 1 else shape, col,
             rows=range_span(rows), lanes=lanes)
    outputs = [(bit, col + i) for i, bit in enumerate(result)]
    col += len(result)
    budget = arch.cols - col if scratch_budget is None else scratch_budget
    if col + budget > arch.cols:
        raise PimError(f"{op} {dtype}: operands and result take {col} of {arch.cols} columns")
    alloc = allocate(net, outputs, range(col, col + budget), what=f"{op} on {dtype}")
    with b.annotate(f"{op} {dtype}"):
        emit(alloc, b, rows=range_span(rows) if rows != arch.rows else None)
    return Routine(b.build(), op, dtype, mode, alloc.peak_scratch, align)


BIT_SLICED_OPS = {"add", "mul_wide"}
BIT_SLICED_FLOAT_OPS = {"add", "mul"}


def build_bit_sliced(op: str, dtype: str, *, arch: Arch, crossbars: int = 1,
                     rows: int | None = None) -> Routine:
    """`op` with bit i of every word in partition i (lanes.py): words of at most
    `partitions` bits, every op repeated over the partitions."""
    dt = parse_dtype(dtype)
    is_float = dt.kind is Kind.FLOAT
    if op not in (BIT_SLICED_FLOAT_OPS if is_float else BIT_SLICED_OPS):
        raise PimError(f"no bit-sliced {op} on {dtype} yet")
    if dt.bits > arch.partitions:
        raise PimError(f"bit-sliced {dtype} needs {dt.bits} partitions, the arch has "
                       f"{arch.partitions}")
    rows = rows or arch.rows
    width = arch.partition_width
    net = Netlist(max_fanin=arch.max_nor_inputs)
    b = ProgramBuilder(crossbars, arch=arch, source=f"pimc.synth:{op}:{dtype}:bit-sliced")
    shape = [crossbars, rows]
    b.input("a", dtype, shape, 0, rows=range_span(rows), stride=width)
    b.input("b", dtype, shape, 1, rows=range_span(rows), stride=width)
    logic, a, bb = LaneLogic(net), net.input(0), net.input(1)
    if is_float:
        b.output("y", dtype, shape, 2, rows=range_span(rows), stride=width)
        lane_float = LaneFloat(net, FORMATS[dtype])
        fn = lane_float.fadd if op == "add" else lane_float.fmul
        outputs = [(fn(a, bb), 2)]
    elif op == "add":
        b.output("y", dtype, shape, 2, rows=range_span(rows), stride=width)
        outputs = [(logic.add(a, bb, dt.bits), 2)]
    else:
        # The 2N-bit product folds over the partitions: low word in column 2, high in 3.
        b.output("y", f"{dt.kind.value}{2 * dt.bits}", shape, 2, rows=range_span(rows),
                 stride=width, fold=dt.bits)
        signed = dt.kind is not Kind.UINT
        multiply = logic.multiply_wide_signed if signed else logic.multiply_wide
        low, high = multiply(a, bb, dt.bits)
        outputs = [(low, 2), (high, 3)]
    scratch = range(2 + len(outputs), width)
    alloc = allocate(net, outputs, scratch, what=f"bit-sliced {op} on {dtype}")
    with b.annotate(f"{op} {dtype} bit-sliced"):
        emit(alloc, b, lanes=dt.bits)
    mode = "ftz" if is_float else "int"
    return Routine(b.build(), op, dtype, mode, alloc.peak_scratch, "bit-sliced")


def range_span(rows: int) -> Span:
    return Span(0, rows)
