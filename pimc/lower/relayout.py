"""Moves that put a resident tensor (a feature map one stage computed and left in its
crossbars) where another stage reads it, as the host would have placed it: TRANSFERs
over the switches between the stages' crossbars, SHIFTs through the barrel shifter
inside a crossbar, INITs for the padding. Every move is a micro-op, so it is counted.

Both ends are described by a TensorIO (the producer's output, the consumer's input
placement: lanes, host view), so the moves follow from the same placement rules the
host uses; the runtime's tests of host placement cover what they must reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Span, TensorIO, apply_view
from pimc.isa.view import lowest

PAD_LOWEST = -1  # an id the gather marks max pooling's padding with (ids start at 1)


@dataclass(frozen=True)
class Move:
    """Lane `lane` in rows `rows` of crossbars `xbs` takes the source word of crossbar
    x + dx, row r - by (a TRANSFER, then a SHIFT by `by` if it is not 0)."""

    lane: int
    dx: int
    by: int
    xbs: Span
    rows: Span


@dataclass(frozen=True)
class Fill:
    """Lane `lane` in rows `rows` of crossbars `xbs` holds the dtype's lowest value."""

    lane: int
    xbs: Span
    rows: Span


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]
    fills: tuple[Fill, ...]
    zeros: bool  # some slot lanes are zero padding (a window's or a chunk's)


def _slots(t: TensorIO) -> tuple[np.ndarray, np.ndarray]:
    """Each slot's crossbar and row."""
    count = t.placed_elements // t.lanes
    index = np.arange(count)
    per = len(t.rows)
    return (t.xbs.start + index // per * t.xbs.step,
            t.rows.start + index % per * t.rows.step)


def plan(src: TensorIO, dst: TensorIO) -> Plan:
    """The moves that build `dst`'s placement from `src`'s (one value a slot)."""
    if src.lanes != 1 or src.shape != dst.shape or src.dtype != dst.dtype:
        raise PimError(f"{dst.name}: cannot move a {src.dtype}{list(src.shape)} placement "
                       f"into a {dst.dtype}{list(dst.shape)} one")
    size = int(np.prod(src.shape, dtype=np.int64))
    ids = np.arange(1, size + 1, dtype=np.int64).reshape(src.shape)
    have = apply_view(ids, src.view).reshape(-1)
    sx, sr = _slots(src)
    at = np.zeros(size + 1, dtype=np.int64)
    at[have[have > 0]] = np.flatnonzero(have > 0)
    need = apply_view(ids, dst.view, low=PAD_LOWEST).reshape(-1, dst.lanes)
    dx_, dr = _slots(dst)
    moves: list[Move] = []
    fills: list[Fill] = []
    for lane in range(dst.lanes):
        col = need[:, lane]
        dest = np.flatnonzero(col > 0)
        source = at[col[dest]]
        dx = sx[source] - dx_[dest]
        by = dr[dest] - sr[source]
        for (d, b), xbs, rows in _groups(dx, by, dx_[dest], dr[dest]):
            moves.append(Move(lane, d, b, xbs, rows))
        low = np.flatnonzero(col == PAD_LOWEST)
        zero = np.zeros(len(low), dtype=np.int64)
        fills += [Fill(lane, xbs, rows) for _, xbs, rows in _groups(zero, zero, dx_[low], dr[low])]
    return Plan(tuple(moves), tuple(fills), bool(np.any(need == 0)))


def _groups(dx: np.ndarray, by: np.ndarray, xb: np.ndarray, row: np.ndarray
            ) -> list[tuple[tuple[int, int], Span, Span]]:
    """Destinations grouped into ops: one (dx, by), a run of crossbars with a step, and
    the same evenly spaced rows in each."""
    if not len(xb):
        return []
    order = np.lexsort((row, xb, by, dx))
    dx, by, xb, row = dx[order], by[order], xb[order], row[order]
    cut = np.flatnonzero((np.diff(dx) != 0) | (np.diff(by) != 0) | (np.diff(xb) != 0)) + 1
    per_xb: list[tuple[tuple[int, int], int, tuple[Span, ...]]] = []
    for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(xb)], strict=True):
        per_xb.append(((int(dx[lo]), int(by[lo])), int(xb[lo]), _row_spans(row[lo:hi])))
    out: list[tuple[tuple[int, int], Span, Span]] = []
    i = 0
    while i < len(per_xb):  # runs of crossbars with one key and the same rows
        key, first, spans = per_xb[i]
        j, step = i + 1, 0
        while j < len(per_xb) and per_xb[j][0] == key and per_xb[j][2] == spans:
            gap = per_xb[j][1] - per_xb[j - 1][1]
            if step and gap != step:
                break
            step, j = gap, j + 1
        xbs = Span(first, per_xb[j - 1][1] + 1, step or 1)
        out += [(key, xbs, rows) for rows in spans]
        i = j
    return out


def _row_spans(rows: np.ndarray) -> tuple[Span, ...]:
    """Sorted rows as few evenly spaced runs (greedy)."""
    out, i, n = [], 0, len(rows)
    while i < n:
        j = i
        if i + 1 < n:
            step = rows[i + 1] - rows[i]
            j = i + 1
            while j + 1 < n and rows[j + 1] - rows[j] == step:
                j += 1
        out.append(Span(int(rows[i]), int(rows[j]) + 1, int(rows[j] - rows[i]) // max(1, j - i)
                        or 1))
        i = j + 1
    return tuple(out)


def emit_moves(b: ProgramBuilder, src: TensorIO, dst: TensorIO, staging: int,
               arch: Arch) -> int:
    """Append the micro-ops of plan(src, dst); `staging` is the first of a word of free
    columns in dst's crossbars (where a TRANSFER lands before its SHIFT). The count of
    ops."""
    p = plan(src, dst)
    dt = parse_dtype(dst.dtype)
    bits = dt.bits
    cols = dst.columns(bits)
    words = src.columns(bits)
    temp = list(range(staging, staging + bits))
    if staging + bits > arch.cols:
        raise PimError(f"{dst.name}: no free columns to stage a move in")
    start = len(b.ops)
    if p.zeros:
        b.init(cols, 0, xbs=dst.xbs, rows=dst.rows)
    if p.fills:
        raw = int(dt.to_bits(np.array([lowest(np.dtype(dt.host))], dtype=dt.host))[0])
        for f in p.fills:
            b.init(cols[f.lane * bits:(f.lane + 1) * bits], raw, xbs=f.xbs, rows=f.rows)
    for m in p.moves:
        lane = cols[m.lane * bits:(m.lane + 1) * bits]
        if abs(m.by) > arch.max_shift:
            raise PimError(f"{dst.name}: a move of {abs(m.by)} rows exceeds the barrel "
                           f"shifter's {arch.max_shift}")
        from_xbs = Span(m.xbs.start + m.dx, m.xbs.stop + m.dx, m.xbs.step)
        if m.by == 0:
            b.transfer(from_xbs, m.xbs, words, lane, rows=m.rows)
            continue
        before = Span(m.rows.start - m.by, m.rows.stop - m.by, m.rows.step)
        b.transfer(from_xbs, m.xbs, words, temp, rows=before)
        b.shift(temp, lane, m.by, xbs=m.xbs, rows=m.rows)
    return len(b.ops) - start
