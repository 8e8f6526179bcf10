"""Decoding runs of micro-ops into the tables runtime/kernel.py executes.

A block is a run of consecutive ops of a routine body at one site (its crossbars and
rows), or of one layer at top level. NOR, INIT, SHIFT and plain TRANSFER ops become
table rows; the rest (SEARCH, predicated ops, transposing TRANSFERs) become escapes that
the numpy path runs, as do SHIFT and TRANSFER in runs that keep strict checks or write
counts.
Columns stay as the ops name them (frame columns inside a routine), mapped per call.
A routine body is decoded once into a template; each site then fills in its crossbars
and rows with a few array operations, so the cost of a new site does not grow with
the body's length in Python steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pimc.runtime import kernel_table as K

from pimc.isa.uop import Init, Nor, Op, Shift, Span, Transfer

if TYPE_CHECKING:
    from pimc.runtime.machine import Machine
    from pimc.runtime.step import Step


@dataclass(frozen=True)
class Template:
    """What does not depend on where the ops run."""

    steps: np.ndarray  # int64[n, K.FIELDS], the site columns zero
    cols: np.ndarray  # int64: each op's columns (NOR: out, then ins), from steps[:, OFF]
    vals: np.ndarray  # uint8: an INIT's bit for each of its columns
    ones: np.ndarray  # int64[n]: INIT: cells set per row (over repetitions)
    zeros: np.ndarray  # int64[n]: INIT: cells reset per row
    ops: tuple[Op, ...]


@dataclass(frozen=True)
class Block:
    steps: np.ndarray  # int64[n, K.FIELDS]
    cols: np.ndarray
    vals: np.ndarray
    ops: tuple[Op, ...]
    where: tuple[Span, Span | None] | None  # the site; None: each op's own fields
    escapes: dict[int, Step] = field(default_factory=dict)  # prepared on first use


def _copy(op: Shift | Transfer, top: bool) -> bool:
    """Whether the kernel runs this SHIFT or TRANSFER (when the run keeps no per-row
    flags or counts): not predicated; a TRANSFER only at top level (a routine's names
    crossbars of its own) and plain (its source and destination crossbars never meet:
    the checker holds them apart)."""
    if op.pred:
        return False
    return isinstance(op, Shift) or (top and op.dst_row is None)


def template(ops: tuple[Op, ...], arch_partition_width: int, top: bool = False) -> Template:
    n = len(ops)
    steps = np.zeros((n, K.FIELDS), dtype=np.int64)
    ones, zeros = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    cols: list[int] = []
    vals: list[int] = []
    for i, op in enumerate(ops):
        row = steps[i]
        if isinstance(op, Shift | Transfer) and _copy(op, top):
            row[K.KIND], row[K.OFF] = (K.SHIFT if isinstance(op, Shift) else K.MOVE), len(cols)
            cols.extend((*op.src_cols, *op.dst_cols))
            vals.extend([0] * 2 * len(op.src_cols))
            row[K.NCOLS], row[K.REPS] = 2 * len(op.src_cols), 1
            if isinstance(op, Shift):
                row[K.BY], row[K.ACC] = op.by, not set(op.src_cols) & set(op.dst_cols)
            else:
                row[K.DX0], row[K.DXSTEP] = op.dst_xbs.start, op.dst_xbs.step
            continue
        if op.pred or not isinstance(op, Nor | Init):
            row[K.KIND] = K.ESCAPE
            continue
        reps = op.rep.count
        row[K.OFF], row[K.REPS] = len(cols), reps
        row[K.RSHIFT] = op.rep.step * arch_partition_width
        if isinstance(op, Nor):
            row[K.KIND], row[K.ACC] = K.NOR, op.acc
            names = (op.out, *op.ins)
            cols.extend(names)
            vals.extend([0] * len(names))
        else:
            row[K.KIND] = K.INIT
            bits = [op.value >> k & 1 for k in range(len(op.cols))]
            cols.extend(op.cols)
            vals.extend(bits)
            ones[i], zeros[i] = sum(bits) * reps, (len(bits) - sum(bits)) * reps
        row[K.NCOLS] = len(cols) - row[K.OFF]
    return Template(steps, np.array(cols, dtype=np.int64), np.array(vals, dtype=np.uint8),
                    ones, zeros, ops)


def _fill(machine: Machine, t: Template, steps: np.ndarray, index: slice | np.ndarray,
          xbs: Span, rows: Span | None) -> None:
    """Fill the site columns and the energy events of the ops at `index`, all run at
    (xbs, rows); these do not depend on data for NOR and INIT."""
    arch = machine.arch
    sel = steps[index]
    r = rows.indices() if rows is not None else None
    if r is not None and r == range(arch.rows):
        r = None
    sel[:, K.X0], sel[:, K.NX], sel[:, K.XSTEP] = xbs.start, len(xbs), xbs.step
    if r is None:
        sel[:, K.MASK], sel[:, K.W0], sel[:, K.W1], sel[:, K.SPAN] = -1, 0, machine.words, -1
        active = arch.rows * len(xbs)
    else:
        mask = machine.rows_mask(r)
        live = np.flatnonzero(mask)
        sel[:, K.MASK], sel[:, K.W0], sel[:, K.W1] = machine.mask_id(r), live[0], live[-1] + 1
        gates = np.isin(sel[:, K.KIND], (K.NOR, K.INIT)).any()  # moves count on the numpy path
        sel[:, K.SPAN] = machine.writes.span_id(r) if machine.writes and gates else -1
        active = int(np.bitwise_count(mask).sum()) * len(xbs)
    nor = sel[:, K.KIND] == K.NOR
    copy = (sel[:, K.KIND] == K.SHIFT) | (sel[:, K.KIND] == K.MOVE)
    sel[:, K.ROWOPS] = np.where(nor, active * sel[:, K.REPS],
                                np.where(copy, active * sel[:, K.NCOLS] // 2, 0))
    sel[:, K.SET] = np.where(nor | copy, 0, active * t.ones[index])
    sel[:, K.RESET] = np.where(nor | copy, 0, active * t.zeros[index])
    steps[index] = sel


def site_block(machine: Machine, t: Template, xbs: Span, rows: Span | None) -> Block:
    """A routine body's template placed at a call site."""
    steps = t.steps.copy()
    live = steps[:, K.KIND] != K.ESCAPE
    _fill(machine, t, steps, np.flatnonzero(live), xbs, rows)
    return Block(steps, t.cols, t.vals, t.ops, (xbs, rows))


def top_block(machine: Machine, ops: tuple[Op, ...]) -> Block:
    """Top-level ops, each acting where its own fields say (filled per distinct place)."""
    t = template(ops, machine.arch.partition_width, top=True)
    steps = t.steps.copy()
    places: dict[tuple[Span, Span | None], list[int]] = {}
    for i, op in enumerate(ops):
        if steps[i, K.KIND] != K.ESCAPE:
            places.setdefault((op.xbs, op.rows), []).append(i)
    for (xbs, rows), index in places.items():
        _fill(machine, t, steps, np.array(index), xbs, rows)
    return Block(steps, t.cols, t.vals, ops, None)
