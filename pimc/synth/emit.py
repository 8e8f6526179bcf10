"""Emit an allocated netlist as micro-ops, with the fewest INITs that keep MAGIC legal.

Every NOR into a fresh value needs its cell initialised to 1 after the cell's previous
access and before the gate. Those windows are intervals over the gate sequence; INITs are
merged greedily (interval stabbing: place an INIT as late as possible, and let every later
window that still contains that point join it), which gives the fewest INIT ops, hence
the fewest bulk-INIT cycles, with exactly one initialisation per gate.
"""

from __future__ import annotations

import dataclasses

from pimc.isa.builder import ProgramBuilder, Where
from pimc.isa.errors import PimError
from pimc.isa.uop import NO_REP, Init, Op, Rep, Shift, Span, Transfer
from pimc.synth.alloc import Allocation
from pimc.synth.lanes import emit_lane_gate
from pimc.synth.netlist import ONE, ZERO, When


def schedule_inits(alloc: Allocation) -> list[list[int]]:
    """For each gate, the columns to INIT right before it (most lists are empty)."""
    groups: list[list[int]] = [[] for _ in alloc.gates]
    last_access: dict[int, int] = {}
    open_slot = -1
    for i, g in enumerate(alloc.gates):
        col = alloc.cell[g.out]
        if (g.acc_from is None and g.pattern is None and g.fill is None and g.row_shift is None
                and g.xb_shift is None):
            prev = last_access.get(col, -1)
            if open_slot > prev and open_slot >= 0:
                groups[open_slot].append(col)
            else:
                open_slot = i
                groups[i].append(col)
        for x in g.reads():
            if x in alloc.cell:
                last_access[alloc.cell[x]] = i
        last_access[col] = i
    return groups


def emit(alloc: Allocation, b: ProgramBuilder, *, xbs: Where = None, rows: Where = None,
         pred: bool = False, lanes: int = 0) -> None:
    """Append the routine's micro-ops to `b` (a SEARCH before each run of predicated gates).

    With `lanes`, the routine is bit-sliced: its columns are columns inside a partition and
    every op repeats over `lanes` partitions (lanes.py).
    """
    where = dict(xbs=xbs, rows=rows)
    rep = dict(rep=Rep(lanes, 1)) if lanes else {}
    width = b.arch.partition_width
    if alloc.constants:
        cols, values = zip(*sorted(alloc.constants), strict=True)
        b.init(cols, sum(v << i for i, v in enumerate(values)), pred=pred, **rep, **where)
    tag: tuple[tuple[int, ...], int] | None = None
    outer_note = b.source_note
    first_op = len(b.ops)
    for g, group in zip(alloc.gates, schedule_inits(alloc), strict=True):
        if g.out in alloc.src:
            b.source_note = alloc.src[g.out]
        if group:
            b.init(sorted(group), (1 << len(group)) - 1, pred=pred, **rep, **where)
        predicated = pred
        if g.when is not None:
            if pred:
                raise PimError("a routine with predicated gates cannot itself be predicated")
            search = _search_key(alloc, g.when, width)
            if search is None:
                continue  # a constant bit of the key never matches: no row is written
            if search[0] and search != tag:
                b.search(search[0], search[1], **where)
                tag = search
            predicated = bool(search[0])
        out = alloc.cell[g.out]
        if g.refill:
            b.init(out, 1, pred=predicated, **rep, **where)
            continue
        if g.pattern is not None:
            if not lanes:
                raise PimError("lane constants exist only in bit-sliced routines")
            _emit_lane_constant(b, out, g.pattern, lanes, width)
            continue
        here = dict(where)
        if g.rows is not None:
            if not _within(g.rows, rows):
                raise PimError("a gate's rows fall outside the routine's rows")
            here["rows"] = Span(*g.rows)
        if g.xbs is not None:
            if xbs is not None:
                raise PimError("a routine placed on given crossbars cannot choose its own")
            here["xbs"] = Span(*g.xbs)
        if g.fill is not None:
            b.init(out, g.fill, pred=predicated, **here)
            continue
        if g.row_shift is not None:
            if abs(g.row_shift) > b.arch.max_shift:
                raise PimError(f"a row move of {g.row_shift} in a bit-level netlist exceeds "
                               f"the barrel shifter's {b.arch.max_shift} rows")
            b.shift([alloc.cell[g.ins[0]]], [out], -g.row_shift, pred=predicated, **here)
            continue
        if g.xb_shift is not None:
            assert g.xbs is not None
            src = Span(g.xbs[0] + g.xb_shift, g.xbs[1] + g.xb_shift)
            b.transfer(src, here["xbs"], [alloc.cell[g.ins[0]]], [out], rows=here["rows"],
                       pred=predicated)
            continue
        ins = tuple(alloc.cell[x] for x in g.ins)
        if lanes:
            if pred or xbs is not None or rows is not None:
                raise PimError("bit-sliced routines run on whole crossbars")
            emit_lane_gate(b, out, ins, g, lanes, width, predicated)
            continue
        b.nor(out, *ins, acc=g.acc_from is not None, pred=predicated, **here)
    b.source_note = outer_note
    b.ops[first_op:] = merge_moves(b.ops[first_op:])


def merge_moves(ops: list[Op]) -> list[Op]:
    """Adjacent SHIFTs (or plain TRANSFERs, or INITs) that differ only in their columns
    become one op over all of them, when none touches a column an earlier one of them
    writes: a TRANSFER of N columns takes N + distance cycles, not N x (1 + distance), and
    a bulk INIT of many columns costs what one costs."""
    out: list[Op] = []
    for op in ops:
        prev = out[-1] if out else None
        if (isinstance(op, Init | Shift | Transfer) and type(prev) is type(op)
                and getattr(op, "rep", NO_REP) == NO_REP and _same_but_columns(prev, op)):
            if isinstance(op, Init) and not set(op.cols) & set(prev.cols):
                out[-1] = dataclasses.replace(prev, cols=prev.cols + op.cols,
                                              value=prev.value | op.value << len(prev.cols))
                continue
            if (isinstance(op, Shift | Transfer) and getattr(op, "dst_row", None) is None
                    and not set(op.src_cols) & set(prev.dst_cols)
                    and not set(op.dst_cols) & set(prev.dst_cols)):
                out[-1] = dataclasses.replace(prev, src_cols=prev.src_cols + op.src_cols,
                                              dst_cols=prev.dst_cols + op.dst_cols)
                continue
        out.append(op)
    return out


def _same_but_columns(a: Op, b: Op) -> bool:
    cols = {"cols": (), "value": 0} if isinstance(a, Init) else {"src_cols": (), "dst_cols": ()}
    return dataclasses.replace(a, **cols) == dataclasses.replace(b, **cols)


def _within(inner: tuple[int, int], outer: Where) -> bool:
    if outer is None:
        return True
    span = outer if isinstance(outer, Span) else Span.one(outer)
    return span.start <= inner[0] and inner[1] <= span.stop


def _emit_lane_constant(b: ProgramBuilder, col: int, pattern: int, lanes: int,
                        width: int) -> None:
    """A word with lane i = bit i of pattern, as INITs repeated over runs of partitions:
    every run on its own, or zeros everywhere and then the runs of ones, whichever takes
    fewer ops (an all-ones mask is one INIT)."""
    bits = [pattern >> lane & 1 for lane in range(lanes)]
    runs: list[tuple[int, int, int]] = []  # (start, end, bit)
    for lane, bit in enumerate(bits):
        if runs and runs[-1][2] == bit:
            runs[-1] = (runs[-1][0], lane + 1, bit)
        else:
            runs.append((lane, lane + 1, bit))
    ones = [r for r in runs if r[2]]
    if len(runs) > 1 + len(ones):
        b.init(col, 0, rep=Rep(lanes, 1))
        runs = ones
    for start, end, bit in runs:
        b.init(start * width + col, bit, rep=Rep(end - start, 1))


def _search_key(alloc: Allocation, when: When, width: int
                ) -> tuple[tuple[int, ...], int] | None:
    """The columns and key of the SEARCH for `when`, constants resolved (a bit-sliced key
    bit names a value and a lane: the column of that lane's partition)."""
    bits, key = when
    cols, value = [], 0
    for i, bit in enumerate(bits):
        want = key >> i & 1
        v, lane = (bit, 0) if isinstance(bit, int) else bit
        if v in (ZERO, ONE):
            if (v == ONE) != bool(want):
                return None
            continue
        value |= want << len(cols)
        cols.append(lane * width + alloc.cell[v])
    return tuple(cols), value
