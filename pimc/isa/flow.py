"""Routines, calls and loops: one table of each micro-op's column fields, and the
expansion of a structured program into the flat ops it executes.

The table (COLUMN_FIELDS) is what remapping needs: the expansion here, wear levelling
and the checker read it instead of spelling each op's fields out again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from pimc.isa.errors import PimError
from pimc.isa.uop import Call, Init, Item, Loop, Nor, Op, Program, Routine, Search, Shift, Span, Transfer

# Per op type: the fields holding columns (an int or a tuple of ints).
COLUMN_FIELDS: dict[type, tuple[str, ...]] = {
    Init: ("cols",),
    Nor: ("out", "ins"),
    Search: ("cols",),
    Shift: ("src_cols", "dst_cols"),
    Transfer: ("src_cols", "dst_cols"),
}


def op_columns(op: Op) -> tuple[int, ...]:
    """Every column an op names (a transposing TRANSFER: its first destination column)."""
    out: list[int] = []
    for name in COLUMN_FIELDS[type(op)]:
        value = getattr(op, name)
        out.extend((value,) if isinstance(value, int) else value)
    return tuple(out)


def written_columns(op: Op) -> tuple[int, ...]:
    if isinstance(op, Nor):
        return (op.out,)
    if isinstance(op, Init):
        return op.cols
    if isinstance(op, Shift | Transfer):
        return op.dst_cols
    return ()


def remap(op: Op, col: Callable[[int], int], **where: object) -> Op:
    """The op with every column c replaced by col(c) (and `where` fields replaced)."""
    changes: dict[str, object] = dict(where)
    for name in COLUMN_FIELDS[type(op)]:
        value = getattr(op, name)
        changes[name] = col(value) if isinstance(value, int) else tuple(map(col, value))
    return dataclasses.replace(op, **changes)


def map_item(item: Item, op: Callable[[Op], Op], call: Callable[[Call], Call]) -> Item:
    """A top-level item with `op` applied to each of its ops and `call` to each of its
    calls, through loops (routine bodies are relative to their calls: not visited)."""
    if isinstance(item, Loop):
        return dataclasses.replace(item, body=tuple(map_item(i, op, call) for i in item.body))
    return call(item) if isinstance(item, Call) else op(item)


def frame_bases(routine: Routine, call: Call, iteration: int,
                outer: list[int] | None) -> list[int]:
    """Absolute first column of each of the routine's segments for this call: a segment's
    frame columns map to consecutive crossbar columns from there."""
    args = {a.segment: a for a in call.args}
    bases = []
    for seg in routine.segments:
        a = args[seg.name]
        frame = a.base + iteration * a.stride
        bases.append(frame if outer is None else outer[frame])
    return bases


def column_map(routine: Routine, bases: list[int]) -> list[int]:
    """Frame column -> crossbar column."""
    cmap: list[int] = []
    for seg, base in zip(routine.segments, bases, strict=True):
        cmap.extend(range(base, base + seg.width))
    return cmap


def routines_of(prog: Program) -> dict[str, Routine]:
    return {r.name: r for r in prog.routines}


def expand(prog: Program) -> Iterator[Op]:
    """The flat op sequence the program executes, columns, crossbars and rows absolute;
    each op keeps the line of its own text."""
    table = routines_of(prog)

    def items(body: tuple[Item, ...], cmap: list[int] | None, xbs: Span | None,
              rows: Span | None, iteration: int) -> Iterator[Op]:
        for item in body:
            if isinstance(item, Loop):
                for i in range(item.count):
                    yield from items(item.body, cmap, xbs, rows, i)
            elif isinstance(item, Call):
                routine = table.get(item.routine)
                if routine is None:
                    raise PimError(f"line {item.line}: no routine '{item.routine}'")
                inner = column_map(routine, frame_bases(routine, item, iteration, cmap))
                yield from items(routine.body, inner, item.xbs or xbs, item.rows or rows, 0)
            elif cmap is None:
                yield item
            else:
                yield remap(item, cmap.__getitem__, xbs=xbs, rows=item.rows or rows)

    yield from items(prog.ops, None, None, None, 0)


def flat(prog: Program) -> Program:
    """The same program without routines (what `pimc show --flat` prints)."""
    ops = tuple(expand(prog))
    return dataclasses.replace(prog, ops=ops, routines=(),
                               lines=tuple(op.line for op in ops))


def has_structure(prog: Program) -> bool:
    return bool(prog.routines) or any(not isinstance(i, Op) for i in prog.ops)


def routine_writes(prog: Program) -> dict[str, set[str]]:
    """Routine name -> the segments its body writes (through nested calls too)."""
    table = {r.name: r for r in prog.routines}
    done: dict[str, set[str]] = {}

    def frame_writes(body: tuple[Item, ...], r: Routine) -> set[int]:
        cols: set[int] = set()
        for item in body:
            if isinstance(item, Loop):
                cols |= frame_writes(item.body, r)  # conservative: every iteration's base
                for sub in item.body:
                    if isinstance(sub, Call) and sub.routine in table:
                        callee = table[sub.routine]
                        starts = callee.starts()
                        for a in sub.args:
                            if a.segment in writes(callee) and a.segment in starts:
                                w = starts[a.segment][1]
                                for i in range(item.count):
                                    cols.update(range(a.base + i * a.stride,
                                                      a.base + i * a.stride + w))
            elif isinstance(item, Call):
                callee = table.get(item.routine)
                if callee is not None:
                    starts = callee.starts()
                    for a in item.args:
                        if a.segment in writes(callee) and a.segment in starts:
                            cols.update(range(a.base, a.base + starts[a.segment][1]))
            else:
                cols.update(written_columns(item))
        return cols

    def writes(r: Routine) -> set[str]:
        if r.name not in done:
            done[r.name] = set()  # recursion is reported by check_routines
            cols = frame_writes(r.body, r)
            done[r.name] = {s for s, (a, w) in r.starts().items()
                            if any(a <= c < a + w for c in cols)}
        return done[r.name]

    return {r.name: writes(r) for r in prog.routines}
