"""Static checks of a program against its architecture, before anything runs.

Everything that can be decided from the text alone is checked here (ranges, operand
counts, partition patterns); the runtime checks what depends on data (uninitialised
outputs, reads of never-written cells). Errors read `NAME:LINE: what is wrong`.
"""

from __future__ import annotations

from pimc.isa.arch import Arch
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import (
    Init,
    Nor,
    Op,
    Program,
    Rep,
    Search,
    SearchKind,
    Shift,
    Span,
    TensorIO,
    Transfer,
)


def rep_columns(arch: Arch, cols: tuple[int, ...], rep: Rep) -> list[tuple[int, ...]]:
    """The columns a gate touches in each repetition (repetition j is j*step partitions on)."""
    w = arch.partition_width
    return [tuple(c + j * rep.step * w for c in cols) for j in range(rep.count)]


def _check_rep(arch: Arch, cols: tuple[int, ...], rep: Rep) -> str | None:
    if rep.count < 1 or rep.step < 1:
        return "rep count and step must be positive"
    if rep.count == 1:
        return None
    if arch.partitions == 1:
        return "rep needs an architecture with more than one partition"
    parts = [arch.partition_of(c) for c in cols]
    lo, hi = min(parts), max(parts)
    if hi - lo + 1 > rep.step:
        return (f"repetitions overlap: one gate spans partitions {lo}..{hi}, "
                f"wider than the step of {rep.step}")
    last = hi + (rep.count - 1) * rep.step
    if last >= arch.partitions:
        return f"the last repetition reaches partition {last} of {arch.partitions}"
    return None


def _check_cols(arch: Arch, cols: tuple[int, ...], what: str) -> str | None:
    bad = [c for c in cols if c >= arch.cols]
    if bad:
        return f"{what} column c{bad[0]} is out of range (crossbars have {arch.cols} columns)"
    if len(set(cols)) != len(cols):
        return f"{what} columns repeat a column"
    return None


def _check_span(span: Span, limit: int, what: str) -> str | None:
    if span.last >= limit:
        return f"{what} {span.last} is out of range (there are {limit})"
    return None


def op_problem(prog: Program, op: Op) -> str | None:
    """What is statically wrong with `op`, or None."""
    arch = prog.arch
    problem = _check_span(op.xbs, prog.crossbars, "crossbar") or (
        _check_span(op.rows, arch.rows, "row") if op.rows is not None else None)
    if problem:
        return problem
    if isinstance(op, Init):
        if not 0 <= op.value < 1 << len(op.cols):
            return f"value {op.value} does not fit in {len(op.cols)} columns"
        return _check_cols(arch, op.cols, "INIT") or _check_rep(arch, op.cols, op.rep) or (
            _check_cols(arch, sum(rep_columns(arch, op.cols, op.rep), ()), "INIT"))
    if isinstance(op, Nor):
        if not 1 <= len(op.ins) <= arch.max_nor_inputs:
            return f"NOR takes 1 to {arch.max_nor_inputs} inputs, got {len(op.ins)}"
        if op.out in op.ins:
            return f"NOR output c{op.out} is also an input (MAGIC needs distinct cells)"
        gate = (op.out, *op.ins)
        return _check_cols(arch, gate, "NOR") or _check_rep(arch, gate, op.rep) or (
            _check_cols(arch, sum(rep_columns(arch, gate, op.rep), ()), "NOR"))
    if isinstance(op, Search):
        if op.kind is SearchKind.EXACT and not 0 <= op.key < 1 << len(op.cols):
            return f"key {op.key} does not fit in {len(op.cols)} columns"
        return _check_cols(arch, op.cols, "SEARCH")
    if isinstance(op, Shift):
        if abs(op.by) > arch.max_shift:
            return f"shift by {op.by} exceeds the barrel shifter's {arch.max_shift} rows"
        if len(op.src_cols) != len(op.dst_cols):
            return "SHIFT source and destination differ in width"
        return _check_cols(arch, op.src_cols, "source") or _check_cols(arch, op.dst_cols,
                                                                        "destination")
    if isinstance(op, Transfer):
        return _transfer_problem(prog, op)
    return f"unknown micro-op {type(op).__name__}"


def _transfer_problem(prog: Program, op: Transfer) -> str | None:
    arch = prog.arch
    problem = _check_span(op.dst_xbs, prog.crossbars, "destination crossbar") or _check_cols(
        arch, op.src_cols, "source")
    if problem:
        return problem
    if len(op.dst_xbs) != len(op.xbs):
        return f"{len(op.xbs)} source crossbars but {len(op.dst_xbs)} destinations"
    if set(op.xbs.indices()) & set(op.dst_xbs.indices()):
        return "source and destination crossbars overlap (copy inside a crossbar with SHIFT)"
    if op.dst_row is None:
        if len(op.src_cols) != len(op.dst_cols):
            return "TRANSFER source and destination differ in width"
        return _check_cols(arch, op.dst_cols, "destination")
    rows = op.rows or Span(0, arch.rows)
    if op.pred or rows.step != 1:
        return "a transposing TRANSFER reads a contiguous row range, without ?tag"
    if op.dst_row + len(op.src_cols) > arch.rows:
        return f"transposed rows r{op.dst_row}+{len(op.src_cols)} exceed {arch.rows} rows"
    if op.dst_cols[0] + len(rows) > arch.cols:
        return f"transposed row of {len(rows)} bits from c{op.dst_cols[0]} exceeds {arch.cols} columns"
    return None


def io_problem(prog: Program, t: TensorIO) -> str | None:
    try:
        bits = parse_dtype(t.dtype).bits
    except PimError as exc:
        return str(exc)
    if not t.name.isidentifier():
        return f"tensor name '{t.name}' is not an identifier"
    if t.stride < 1:
        return f"tensor '{t.name}': stride must be positive"
    if t.broadcast:
        if t.shape != () or t.lanes != 1:
            return f"broadcast tensor '{t.name}' must be a scalar in one lane"
        return (_check_span(t.xbs, prog.crossbars, "crossbar")
                or _check_span(t.rows, prog.arch.rows, "row")
                or (f"tensor '{t.name}' needs columns up to c{max(t.columns(bits))}"
                    if max(t.columns(bits)) >= prog.arch.cols else None))
    try:
        placed = t.placed_elements
    except PimError as exc:
        return f"tensor '{t.name}': {exc}"
    if t.lanes < 1 or placed % t.lanes:
        return f"tensor '{t.name}': lanes={t.lanes} must divide its {placed} placed elements"
    slots = placed // t.lanes
    if slots > len(t.xbs) * len(t.rows):
        return f"tensor '{t.name}' needs {slots} rows but its placement holds {len(t.xbs) * len(t.rows)}"
    return (_check_span(t.xbs, prog.crossbars, "crossbar")
            or _check_span(t.rows, prog.arch.rows, "row")
            or (f"tensor '{t.name}' needs columns up to c{max(t.columns(bits))}"
                if max(t.columns(bits)) >= prog.arch.cols else None))


def validate(prog: Program, name: str = "<uop>") -> None:
    """Raise PimError for the first statically invalid header entry or op."""
    if not 1 <= prog.crossbars <= prog.arch.max_crossbars:
        raise PimError(f"{name}: {prog.crossbars} crossbars requested, the architecture has "
                       f"{prog.arch.max_crossbars}")
    names: dict[str, TensorIO] = {}
    for t in (*prog.inputs, *prog.outputs):
        problem = io_problem(prog, t)
        first = names.setdefault(t.name, t)
        again = first is not t and not (t in prog.inputs and first in prog.inputs
                                        and (t.dtype, t.shape) == (first.dtype, first.shape))
        if problem is None and again:
            problem = f"tensor name '{t.name}' is declared twice"  # an input may be placed twice
        if problem:
            raise PimError(f"{name}: {problem}")
    for i, op in enumerate(prog.ops):
        problem = op_problem(prog, op)
        if problem:
            raise PimError(f"{name}:{prog.line_of(i)}: {problem}")
