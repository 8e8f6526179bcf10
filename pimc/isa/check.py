"""Static checks of a program against its architecture, before anything runs.

Everything that can be decided from the text alone is checked here (ranges, operand
counts, partition patterns); the runtime checks what depends on data (uninitialised
outputs, reads of never-written cells). Errors read `NAME:LINE: what is wrong`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from pimc.isa.arch import Arch
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.flow import routine_writes
from pimc.isa.uop import (
    Arg,
    Call,
    Init,
    Item,
    Loop,
    Nor,
    Op,
    Program,
    Rep,
    Routine,
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
    if cols and max(cols) >= arch.cols:
        bad = next(c for c in cols if c >= arch.cols)
        return f"{what} column c{bad} is out of range (crossbars have {arch.cols} columns)"
    if len(set(cols)) != len(cols):
        return f"{what} columns repeat a column"
    return None


def _check_span(span: Span, limit: int, what: str) -> str | None:
    if span.last >= limit:
        return f"{what} {span.last} is out of range (there are {limit})"
    return None


def op_problem(prog: Program, op: Op, frame: Routine | None = None) -> str | None:
    """What is statically wrong with `op` (in a routine's body if `frame`), or None."""
    arch = prog.arch
    if frame is not None:  # columns are frame columns; crossbars and rows are the call's
        if isinstance(op, Transfer) or op.rows is not None:
            return "an op inside a routine acts on the call's crossbars and rows"
        problem = _op_problem(prog, op, _frame_arch(arch, frame.width))
        return problem and problem.replace(
            "crossbars have", f"routine '{frame.name}' has").replace(" columns)", " frame columns)")
    problem = _check_span(op.xbs, prog.crossbars, "crossbar") or (
        _check_span(op.rows, arch.rows, "row") if op.rows is not None else None)
    return problem or _op_problem(prog, op, arch)


@functools.cache
def _frame_arch(arch: Arch, width: int) -> Arch:
    """The architecture as a routine body sees it: its frame is the crossbar's columns."""
    return dataclasses.replace(arch, cols=width)


def _op_problem(prog: Program, op: Op, arch: Arch) -> str | None:
    if isinstance(op, Init):
        if not 0 <= op.value < 1 << len(op.cols):
            shown = str(op.value) if op.value.bit_length() <= 64 else \
                f"of {op.value.bit_length()} bits"
            return f"value {shown} does not fit in {len(op.cols)} columns"
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


def _runs_meet(a: range, b: range) -> bool:
    """Whether two evenly spaced runs share an element (without listing them)."""
    if not a or not b or a[-1] < b[0] or b[-1] < a[0]:
        return False
    if a.step == b.step:
        return (b[0] - a[0]) % a.step == 0
    return bool(set(a) & set(b))


def _transfer_problem(prog: Program, op: Transfer) -> str | None:
    arch = prog.arch
    problem = _check_span(op.dst_xbs, prog.crossbars, "destination crossbar") or _check_cols(
        arch, op.src_cols, "source")
    if problem:
        return problem
    if len(op.dst_xbs) != len(op.xbs):
        return f"{len(op.xbs)} source crossbars but {len(op.dst_xbs)} destinations"
    if _runs_meet(op.xbs.indices(), op.dst_xbs.indices()):
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
    if not t.name or any(ch.isspace() or ch in '#@"' for ch in t.name):
        return f"tensor name '{t.name}' is empty or holds a space, '#', '@' or '\"'"
    if t.stride < 1:
        return f"tensor '{t.name}': stride must be positive"
    if 0 in t.shape:
        return f"tensor '{t.name}' of shape {list(t.shape)} has no elements"
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
    written = check_routines(prog, name)
    for i, item in enumerate(prog.ops):
        problem = item_problem(prog, item, None, 1, written)
        if problem:
            line, what = problem
            raise PimError(f"{name}:{line or item_line(prog, i, item)}: {what}")
    first = _untagged_predicate(prog)
    if first is not None:
        raise PimError(f"{name}:{item_line(prog, first, prog.ops[first])}: a predicated op "
                       "('?') with no SEARCH before it: every tag is still empty, so it "
                       "would do nothing")


def _untagged_predicate(prog: Program) -> int | None:
    """The index of the top-level item holding the first predicated op that no SEARCH
    precedes in execution order (each routine walked once: what matters is whether its
    body searches before it predicates)."""
    table = {r.name: r for r in prog.routines}
    memo: dict[str, tuple[bool, bool]] = {}

    def walk(body: tuple[Item, ...], searched: bool) -> tuple[bool, bool]:
        """(a predicated op runs before any SEARCH, a SEARCH has run) after `body`."""
        for item in body:
            if isinstance(item, Loop):
                bad, searched = walk(item.body, searched)
            elif isinstance(item, Call):
                if item.routine not in memo:
                    memo[item.routine] = walk(table[item.routine].body, False)
                early, searches = memo[item.routine]
                bad, searched = early and not searched, searched or searches
            else:
                bad = item.pred and not searched
                searched = searched or isinstance(item, Search)
            if bad:
                return True, searched
        return False, searched

    searched = False
    for i, item in enumerate(prog.ops):
        bad, searched = walk((item,), searched)
        if bad:
            return i
    return None


def item_line(prog: Program, index: int, item: Item) -> int:
    return item.line or prog.line_of(index)


def item_problem(prog: Program, item: Item, frame: Routine | None, count: int,
                 written: dict[str, set[str]]) -> tuple[int, str] | None:
    """The line (0: the item's own) and what is wrong with an op, call or loop (`count`:
    iterations of the enclosing loop; `written`: each routine's written segments)."""
    if isinstance(item, Loop):
        for sub in item.body:
            problem = item_problem(prog, sub, frame, item.count, written)
            if problem:
                return problem[0] or sub.line, problem[1]
        return None
    if isinstance(item, Call):
        what = call_problem(prog, item, frame, count, written)
    else:
        what = op_problem(prog, item, frame)
    return None if what is None else (0, what)


def check_routines(prog: Program, name: str) -> dict[str, set[str]]:
    """Each routine's body, and no routine calling itself through others; returns each
    routine's written segments."""
    table = {r.name: r for r in prog.routines}
    _check_recursion(prog, name, table)
    written = routine_writes(prog)
    for r in prog.routines:
        key = (id(r), prog.arch)
        if _CHECKED.get(key, (None,))[0] is r:
            continue  # the same routine object, checked before on this architecture
        for item in r.body:
            problem = item_problem(prog, item, r, 1, written)
            if problem:
                raise PimError(f"{name}:{problem[0] or item.line or r.line}: {problem[1]}")
        _CHECKED[key] = (r,)
    return written


# Routines the compiler made once and calls from every candidate program it builds: each
# is checked once per architecture (the entry keeps the object alive, so its id is not reused).
_CHECKED: dict[tuple[int, object], tuple[Routine]] = {}


def _check_recursion(prog: Program, name: str, table: dict[str, Routine]) -> None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(r: Routine, path: list[str]) -> None:
        state[r.name] = 1
        for callee in _callees(r.body):
            if state.get(callee) == 1:
                cycle = " -> ".join([*path[path.index(callee):], callee])
                raise PimError(f"{name}:{r.line}: recursion: {cycle}")
            if callee in table and callee not in state:
                visit(table[callee], [*path, callee])
        state[r.name] = 2

    for r in prog.routines:
        if r.name not in state:
            visit(r, [r.name])


def _callees(body: tuple[Item, ...]) -> list[str]:
    out: list[str] = []
    for item in body:
        if isinstance(item, Call):
            out.append(item.routine)
        elif isinstance(item, Loop):
            out += _callees(item.body)
    return out


def call_problem(prog: Program, call: Call, frame: Routine | None, count: int,
                 written_by: dict[str, set[str]]) -> str | None:
    """An undefined routine, unbound or unknown segments, columns outside the crossbar (or
    the caller's segment), and written segments overlapping others or themselves across
    the loop's iterations."""
    callee = next((r for r in prog.routines if r.name == call.routine), None)
    if callee is None:
        return f"no routine '{call.routine}'"
    if frame is None:
        if call.xbs is None:
            return "a CALL outside a routine names its crossbars"
        problem = _check_span(call.xbs, prog.crossbars, "crossbar") or (
            _check_span(call.rows, prog.arch.rows, "row") if call.rows is not None else None)
        if problem:
            return problem
    starts = callee.starts()
    bound = [a.segment for a in call.args]
    missing = [s for s in starts if s not in bound]
    unknown = [s for s in bound if s not in starts]
    if missing or unknown:
        return (f"CALL {call.routine}: " + (f"segment(s) {', '.join(missing)} not bound"
                if missing else f"no segment '{unknown[0]}' in routine '{call.routine}'"))
    spans = {}
    for a in call.args:
        width = starts[a.segment][1]
        lo = min(a.base, a.base + (count - 1) * a.stride)
        hi = max(a.base, a.base + (count - 1) * a.stride) + width
        if lo < 0:
            return f"CALL {call.routine}: segment '{a.segment}' starts before column 0"
        if frame is None and hi > prog.arch.cols:
            return (f"CALL {call.routine}: segment '{a.segment}' needs columns c{lo}..c{hi - 1}"
                    f"; crossbars have {prog.arch.cols}")
        if frame is not None and not any(s <= lo and hi <= s + w
                                         for s, w in frame.starts().values()):
            return (f"CALL {call.routine}: segment '{a.segment}' is not inside one segment "
                    f"of routine '{frame.name}'")
        spans[a.segment] = (a, width, lo, hi)
    written = written_by.get(call.routine, set())
    for s in [a.segment for a in call.args if a.segment in written]:
        a, width, _, _ = spans[s]
        if count > 1 and a.stride and abs(a.stride) < width:
            return (f"CALL {call.routine}: the LOOP's stride {a.stride:+d} on '{s}' makes "
                    f"iterations overwrite each other's {width}-column results")
        for other, (b, width2, _, _) in spans.items():
            if other != s and _meet(a, width, b, width2, count):
                return (f"CALL {call.routine}: written segment '{s}' overlaps segment "
                        f"'{other}'")
    return None


def _meet(a: Arg, wa: int, b: Arg, wb: int, count: int) -> bool:
    """Whether a's and b's columns overlap in some iteration i < count: -wb < d(i) < wa
    for d(i) = (b.base - a.base) + i * (b.stride - a.stride)."""
    d, ds = b.base - a.base, b.stride - a.stride
    if ds == 0:
        return -wb < d < wa
    lo, hi = sorted(((-wb - d) / ds, (wa - d) / ds))  # open interval of real i
    first = max(0, math.floor(lo) + 1)
    last = min(count - 1, math.ceil(hi) - 1)
    return first <= last
