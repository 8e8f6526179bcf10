"""Placing a compiled program clear of known-bad cells (`pimc compile --avoid`).

A program's footprint is the set of columns and rows its ops and tensors touch in each
of its crossbars. Faults elsewhere cannot change its results, so the first check is
whether any fault meets the footprint at all. If one does, the whole program moves by a
constant offset: of crossbars (onto spares), of columns (by whole partitions, so that
partition-parallel patterns stay legal) and, when no op acts on every row and nothing
shifts rows, of rows. A constant offset keeps every routine frame, loop stride and
tensor layout as it was; the search takes the smallest move that clears every fault.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from pimc.isa import flow
from pimc.isa.check import rep_columns, validate
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.faults import Fault
from pimc.isa.uop import NO_REP, Arg, Item, Op, Program, Shift, Span, TensorIO, Transfer


@dataclass(frozen=True)
class Footprint:
    cols: np.ndarray  # bool[arch.cols]
    rows: np.ndarray | None  # bool[arch.rows]; None: rows cannot move (all rows, shifts)


@dataclass(frozen=True)
class Placement:
    xbs: int  # offsets added to every crossbar, column and row
    cols: int
    rows: int


def footprint(prog: Program) -> Footprint:
    arch = prog.arch
    cols = np.zeros(arch.cols, bool)
    rows: np.ndarray | None = np.zeros(arch.rows, bool)
    for op in flow.expand(prog):
        for group in rep_columns(arch, flow.op_columns(op), getattr(op, "rep", NO_REP)):
            cols[list(group)] = True
        if isinstance(op, Transfer) and op.dst_row is not None and op.rows is not None:
            cols[op.dst_cols[0]:op.dst_cols[0] + len(op.rows)] = True
            if rows is not None:
                rows[op.dst_row:op.dst_row + len(op.src_cols)] = True
        if op.rows is None or isinstance(op, Shift):
            rows = None
        elif rows is not None:
            rows[op.rows.as_slice()] = True
    for t in (*prog.inputs, *prog.outputs):
        cols[t.columns(parse_dtype(t.dtype).bits)] = True
        if rows is not None:
            rows[t.rows.as_slice()] = True
    return Footprint(cols, rows)


def _meets(f: Fault, fp: Footprint, p: Placement, crossbars: int) -> bool:
    if not 0 <= f.xb - p.xbs < crossbars:
        return False
    if f.col is not None and not _hit(fp.cols, f.col - p.cols):
        return False
    rows = fp.rows
    return f.row is None or rows is None or _hit(rows, f.row - p.rows)


def _hit(used: np.ndarray, index: int) -> bool:
    return 0 <= index < len(used) and bool(used[index])


def _offsets(used: np.ndarray, size: int, step: int) -> list[int]:
    """Moves keeping the used indices inside 0..size-1, smallest first, in whole `step`s."""
    where = np.flatnonzero(used)
    if not len(where):
        return [0]
    lo, hi = -int(where[0]), size - 1 - int(where[-1])
    return sorted((d for d in range(lo, hi + 1) if d % step == 0), key=lambda d: (abs(d), d))


def place(prog: Program, faults: tuple[Fault, ...]) -> Placement | None:
    """The smallest move of the program that no fault meets (None: there is none)."""
    arch, n = prog.arch, prog.crossbars
    fp = footprint(prog)
    step = arch.partition_width if arch.partitions > 1 else 1
    col_moves = list(_offsets(fp.cols, arch.cols, step))
    row_moves = [0] if fp.rows is None else list(_offsets(fp.rows, arch.rows, 1))
    for dx in range(arch.max_crossbars - n + 1):
        near = [f for f in faults if 0 <= f.xb - dx < n]
        for dr in row_moves:
            hits = [f for f in near if f.row is None or fp.rows is None
                    or _hit(fp.rows, f.row - dr)]
            if any(f.col is None for f in hits):
                continue  # a whole bad row in the footprint's rows: no column move helps
            bad = np.array(sorted({f.col for f in hits}), dtype=np.int64)
            for dc in col_moves:
                shifted = bad - dc
                inside = shifted[(shifted >= 0) & (shifted < arch.cols)]
                if not fp.cols[inside].any():
                    return Placement(dx, dc, dr)
    return None


def _span(s: Span | None, d: int) -> Span | None:
    return s if s is None or not d else Span(s.start + d, s.stop + d, s.step)


def _move_op(op: Op, p: Placement) -> Op:
    where: dict[str, object] = {"xbs": _span(op.xbs, p.xbs), "rows": _span(op.rows, p.rows)}
    if isinstance(op, Transfer):
        where["dst_xbs"] = _span(op.dst_xbs, p.xbs)
        if op.dst_row is not None:
            where["dst_row"] = op.dst_row + p.rows
    return flow.remap(op, lambda c: c + p.cols, **where)


def _move_item(item: Item, p: Placement) -> Item:
    """A top-level item moved (routine bodies are relative to their call: unchanged)."""
    return flow.map_item(item, lambda op: _move_op(op, p), lambda c: dataclasses.replace(
        c, xbs=_span(c.xbs, p.xbs), rows=_span(c.rows, p.rows),
        args=tuple(Arg(a.segment, a.base + p.cols, a.stride) for a in c.args)))


def _move_io(t: TensorIO, p: Placement) -> TensorIO:
    return dataclasses.replace(t, xbs=_span(t.xbs, p.xbs), rows=_span(t.rows, p.rows),
                               col=t.col + p.cols)


def move(prog: Program, p: Placement) -> Program:
    """The program with every crossbar, column and row index offset by `p`."""
    moved = dataclasses.replace(
        prog, crossbars=prog.crossbars + p.xbs,
        ops=tuple(_move_item(i, p) for i in prog.ops),
        inputs=tuple(_move_io(t, p) for t in prog.inputs),
        outputs=tuple(_move_io(t, p) for t in prog.outputs))
    validate(moved, "the moved program")
    return moved


def avoid(prog: Program, faults: tuple[Fault, ...], where: str) -> tuple[Program, str]:
    """The program placed clear of `faults`, and a note of what moved."""
    p = place(prog, faults)
    fp = footprint(prog)
    if p is None:
        first = next((f for f in faults if _meets(f, fp, Placement(0, 0, 0), prog.crossbars)),
                     faults[0])
        rows = "every row" if fp.rows is None else f"{int(fp.rows.sum())} rows"
        raise PimError(
            f"{where}: cannot place the program ({prog.crossbars} crossbar(s), "
            f"{int(fp.cols.sum())} columns, {rows}) clear of the {len(faults)} fault(s): every "
            f"move onto spare crossbars, columns{'' if fp.rows is None else ' or rows'} "
            f"meets one (where it is, '{first.text()}')"
            + (" — its ops act on every row or shift rows, so rows cannot move"
               if fp.rows is None else ""))
    met = sum(_meets(f, fp, Placement(0, 0, 0), prog.crossbars) for f in faults)
    if p == Placement(0, 0, 0):
        return prog, f"none of the {len(faults)} fault(s) meets the cells it uses"
    note = (f"moved by {p.xbs} crossbar(s), {p.cols} column(s), {p.rows} row(s) clear of "
            f"the {met} fault(s) it met")
    moved = move(prog, p)
    return dataclasses.replace(moved, meta=(*moved.meta, ("avoided", note))), note
