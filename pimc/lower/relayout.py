"""Moves that put a resident tensor (a feature map one stage computed and left in its
crossbars) where another stage reads it, as the host would have placed it: TRANSFERs
over the switches between the stages' crossbars, SHIFTs through the barrel shifter
inside a crossbar, INITs for the padding. Every move is a micro-op, so it is counted.

Both ends are described by a TensorIO (the producer's output, the consumer's input
placement: lanes, host view), so the moves follow from the same placement rules the
host uses; the runtime's tests of host placement cover what they must reproduce.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Span, TensorIO, apply_view, view_shape
from pimc.isa.view import lowest
from pimc.lower.factor import Factored, factor
from pimc.runtime.hostio import slot_places, slots

PAD_LOWEST = -1  # an id the gather marks max pooling's padding with (ids start at 1)
COPIED = -2  # a slot a doubling copy fills


@dataclass(frozen=True)
class Move:
    """Lanes `lanes` in rows `rows` of crossbars `xbs` take the word of crossbar x + dx,
    row r - by (a TRANSFER when dx is not 0, a SHIFT when by is not 0): from the
    producer's word, its copy in dst's crossbars (`local`), or the same lanes (a
    doubling copy)."""

    lanes: tuple[int, ...]
    dx: int
    by: int
    xbs: Span
    rows: Span
    local: bool = False  # from the copy of the producer's word in dst's crossbars


@dataclass(frozen=True)
class Fill:
    """Lanes in rows `rows` of crossbars `xbs` hold zero, or the dtype's lowest value."""

    lanes: tuple[int, ...]
    xbs: Span
    rows: Span
    lowest: bool


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]  # from the producer (or its local copies), lane by lane
    fills: tuple[Fill, ...]  # then the padding
    copies: tuple[Move, ...]  # then the repeated blocks, doubling
    spread: tuple[Move, ...] = ()  # first: the producer's word copied into every chunk
    home_zero: Span | None = None  # before that: zeros where the first copy does not reach


def plan(src: TensorIO, dst: TensorIO) -> Plan:
    """The moves that build `dst`'s placement from `src`'s (one value a slot).

    Where the placement repeats a block of slots (a convolution's input windows, the
    same for every output channel), the first block is gathered and then doubled.
    Padding slots next to moved ones ride along with the move (whatever the shifted
    block holds) and are written after it, so a tap's block is one move, not a move per
    image row."""
    if src.lanes != 1 or src.shape != dst.shape or src.dtype != dst.dtype:
        raise PimError(f"{dst.name}: cannot move a {src.dtype}{list(src.shape)} placement "
                       f"into a {dst.dtype}{list(dst.shape)} one")
    size = int(np.prod(src.shape, dtype=np.int64))
    ids = np.arange(1, size + 1, dtype=np.int32 if size < 2**31 - 1 else np.int64).reshape(src.shape)
    have = apply_view(ids, src.view).reshape(-1)
    _, sx, sr = slots(src)  # each slot's crossbar and row, as the host places them
    at = np.zeros(size + 1, dtype=np.int64)
    at[have[have > 0]] = np.flatnonzero(have > 0)
    x0 = int(sx.min())
    sources = np.zeros((int(sx.max()) - x0 + 1, int(sr.max()) + 1), dtype=bool)
    sources[sx - x0, sr] = True  # where a move may read (whatever it holds)
    shape = view_shape(dst.shape, dst.view)
    rows = factor(dst.shape, dst.view, low=PAD_LOWEST)
    blank: list[Fill] = []
    if rows is None:
        need = apply_view(ids, dst.view, low=PAD_LOWEST).reshape(-1, dst.lanes)
        _, dx_, dr = slots(dst)
        need, copies = _doubling(need, shape, dx_, dr)
    else:  # each distinct row gathered once, then copied to its repeats
        need, dx_, dr, copies, blank = _repeats(rows, dst)
    spread, local, home_zero = _spread(src, dst, shape, sx[have > 0])
    if local is not None:  # read from the chunk's own copy, a few crossbars away
        lo_x, per_xb, _ = local
        sx = sx - lo_x  # the copy's crossbar, relative to its chunk's first
        home = np.zeros((per_xb, sources.shape[1]), dtype=bool)
        home[: sources.shape[0] - (lo_x - x0)] = sources[lo_x - x0:lo_x - x0 + per_xb]
        sources, x0 = home, 0
    read = _Source(at, sx, sr, sources, x0, local)
    classes = None
    if rows is not None and rows.chunks > 1 and len(rows.row) % len(dst.rows) == 0:
        classes = _classes(need, rows.chunks, read)
    if classes is None:
        moves, pads, _ = _gather(need, dx_, dr, read)
    else:  # gathered for one chunk of each class, then made in the others
        n = len(need) // rows.chunks
        width = len(rows.row) // len(dst.rows) * dst.xbs.step  # a chunk's crossbars
        made: list[tuple[Move, int]] = []  # a move, and how many chunks on
        filled: list[tuple[bool, Span, Span, tuple[int, ...], int]] = []
        for rep, members in classes.items():
            part = slice(rep * n, (rep + 1) * n)
            got, holes, rides = _gather(need[part], dx_[part], dr[part], read)
            for c, shift in members:
                moved = [_moved(m, shift, c - rep, width, read) for m in got]
                if None in moved or not _can_ride(rides, shift, read):
                    got_c, holes_c, _ = _gather(need[c * n:(c + 1) * n], dx_[c * n:(c + 1) * n],
                                                dr[c * n:(c + 1) * n], read)
                    made += [(m, 0) for m in got_c]
                    filled += [(low, xbs, r, tuple(ls), 0) for (low, xbs, r), ls in holes_c.items()]
                    continue
                made += [(m, c - rep) for m in moved]  # type: ignore[misc]
                filled += [(low, xbs, r, tuple(ls), c - rep) for (low, xbs, r), ls in holes.items()]
            made += [(m, 0) for m in got]
            filled += [(low, xbs, r, tuple(ls), 0) for (low, xbs, r), ls in holes.items()]
        moves = [dataclasses.replace(m, xbs=xbs) for m, xbs
                 in _merged([(m, m.xbs, on) for m, on in made], width)]
        pads = {}
        for (low, _, r, ls, _), xbs in _merged([((low, xbs, r, ls, 0), xbs, on)
                                                 for low, xbs, r, ls, on in filled], width):
            pads.setdefault((low, xbs, r), []).extend(ls)
    fills = tuple(Fill(tuple(lanes), xbs, rows, low) for (low, xbs, rows), lanes in pads.items())
    return Plan(tuple(moves), (*fills, *blank), tuple(copies), tuple(spread), home_zero)


@dataclass(frozen=True)
class _Source:
    """Where the producer's elements are: each id's slot (at), the slots' crossbars and
    rows, the cells a move may read, and the chunks' local copies (if any)."""

    at: np.ndarray
    sx: np.ndarray
    sr: np.ndarray
    cells: np.ndarray  # bool[crossbar - x0, row]
    x0: int
    local: tuple[int, int, int] | None


def _gather(need: np.ndarray, dx_: np.ndarray, dr: np.ndarray, src: _Source
            ) -> tuple[list[Move], dict[tuple[bool, Span, Span], list[int]], np.ndarray]:
    """Lane by lane, the moves that bring each slot its element (padding riding along
    with a neighbour's move where the cell it reads exists), and the padding fills; and
    the cells the ridden moves read ((crossbar - x0, row) pairs)."""
    moves: list[Move] = []
    pads: dict[tuple[bool, Span, Span], list[int]] = {}
    ridden = [np.zeros((2, 0), dtype=np.int64)]
    for lane in range(need.shape[1]):
        col = need[:, lane]
        dest = np.flatnonzero(col > 0)
        source = src.at[col[dest]]
        if src.local is None:
            base = 0
        else:
            _, per_xb, first = src.local
            base = first + (dx_[dest] - first) // per_xb * per_xb
        dx = base + src.sx[source] - dx_[dest]
        by = dr[dest] - src.sr[source]
        pad = np.flatnonzero((col == 0) | (col == PAD_LOWEST))
        if len(dest) and len(pad):  # padding rides along with a neighbour's move
            rides = np.full(len(pad), -1)
            for near in _neighbours(dest, pad, dx_):
                try_ = np.flatnonzero((rides < 0) & (near >= 0))
                fx, fr = dx_[pad[try_]] + dx[near[try_]], dr[pad[try_]] - by[near[try_]]
                if src.local is not None:  # the copy in the padding slot's own chunk
                    fx = np.where((fx - first) // per_xb == (dx_[pad[try_]] - first) // per_xb,
                                  (fx - first) % per_xb, -1)
                fx = fx - src.x0
                ok = ((fx >= 0) & (fx < src.cells.shape[0]) & (fr >= 0)
                      & (fr < src.cells.shape[1]))
                ok[ok] = src.cells[fx[ok], fr[ok]]
                rides[try_[ok]] = near[try_[ok]]
                ridden.append(np.stack([fx[ok], fr[ok]]))
            go = np.flatnonzero(rides >= 0)
            dest = np.r_[dest, pad[go]]
            dx, by = np.r_[dx, dx[rides[go]]], np.r_[by, by[rides[go]]]
        for (d, b), xbs, rows in _groups(dx, by, dx_[dest], dr[dest]):
            moves.append(Move((lane,), d, b, xbs, rows, local=src.local is not None))
        for low in (False, True):
            where = np.flatnonzero(col == (PAD_LOWEST if low else 0))
            zero = np.zeros(len(where), dtype=np.int64)
            for _, xbs, rows in _groups(zero, zero, dx_[where], dr[where]):
                pads.setdefault((low, xbs, rows), []).append(lane)
    return moves, pads, np.concatenate(ridden, axis=1)


def _classes(need: np.ndarray, chunks: int, src: _Source) -> dict[int, list[tuple[int, int]]] | None:
    """Chunks whose slots hold a representative chunk's ids plus one offset (the same
    padding), read from cells one crossbar offset away in the same rows: a convolution's
    chunks of one channel's taps, for channels whole crossbars apart.
    {representative: [(chunk, crossbar offset)]}; None when that saves little."""
    blocks = need.reshape(chunks, -1)
    data = blocks > 0
    lo = np.where(data, blocks, np.iinfo(blocks.dtype).max).min(axis=1)
    sx, sr = src.sx[src.at], src.sr[src.at]  # each element's crossbar and row
    reps: dict[bytes, list[int]] = {}
    out: dict[int, list[tuple[int, int]]] = {}
    for c in range(chunks):
        mine = blocks[c][data[c]]
        key = np.where(data[c], blocks[c] - lo[c] + 1, blocks[c]).tobytes() + sr[mine].tobytes()
        alike = reps.setdefault(key, [])
        for r in alike[-4:]:
            theirs = blocks[r][data[r]]
            shift = sx[mine] - sx[theirs]
            if len(mine) and (shift == shift[0]).all() and (sr[mine] == sr[theirs]).all():
                out[r].append((c, int(shift[0])))
                break
        else:
            alike.append(c)
            out[c] = []
    return out if len(out) <= chunks // 2 else None


def _moved(m: Move, shift: int, on: int, width: int, src: _Source) -> Move | None:
    """A representative chunk's move made `on` chunks further (its sources `shift`
    crossbars further in the producer's map or its local copy); None if the move
    straddles local copies."""
    if src.local is None:
        return dataclasses.replace(m, dx=m.dx + shift - on * width)
    _, per_xb, first = src.local

    def copy(x: int) -> int:
        return (x - first) // per_xb

    a, b = m.xbs.start, m.xbs.stop - 1
    if copy(a) != copy(b) or copy(a + on * width) != copy(b + on * width):
        return None
    return dataclasses.replace(
        m, dx=m.dx + shift - on * width + (copy(a + on * width) - copy(a)) * per_xb)


def _can_ride(ridden: np.ndarray, shift: int, src: _Source) -> bool:
    """Whether the cells the ridden moves read, `shift` crossbars on, exist too."""
    fx, fr = ridden[0] + shift, ridden[1]
    return bool(((fx >= 0) & (fx < src.cells.shape[0])).all() and src.cells[fx, fr].all())


def _merged(items: list[tuple[object, Span, int]], width: int) -> list[tuple[object, Span]]:
    """(op, its crossbars in its representative chunk, chunks on): each op placed in its
    chunk, and the ops alike but for their one crossbar merged into evenly spaced runs."""
    single: dict[object, list[int]] = {}
    out: list[tuple[object, Span]] = []
    for op, xbs, on in items:
        if len(xbs) == 1:
            single.setdefault(op, []).append(xbs.start + on * width)
        else:
            out.append((op, Span(xbs.start + on * width, xbs.stop + on * width, xbs.step)))
    for op, starts in single.items():
        out += [(op, run) for run in _runs(sorted(set(starts)))]
    return out


def _neighbours(dest: np.ndarray, pad: np.ndarray, xb: np.ndarray) -> list[np.ndarray]:
    """For each padding slot, the index in `dest` of the moved slot just before it in its
    crossbar, and of the one just after it (-1: none); slots in (crossbar, row) order."""
    order = np.argsort(np.r_[dest, pad], kind="stable")
    moved = order < len(dest)
    at = np.arange(len(order))
    before = np.maximum.accumulate(np.where(moved, at, -1))
    after = np.minimum.accumulate(np.where(moved, at, len(order))[::-1])[::-1]
    here = np.flatnonzero(~moved)
    slot = pad[order[here] - len(dest)]
    out = []
    for near in (before[here], after[here]):
        found = (near >= 0) & (near < len(order))
        index = np.where(found, order[np.clip(near, 0, len(order) - 1)], -1)
        index[found] = np.where(xb[dest[index[found]]] == xb[slot[found]], index[found], -1)
        result = np.full(len(pad), -1)
        result[order[here] - len(dest)] = index
        out.append(result)
    return out


def _repeats(f: Factored, dst: TensorIO
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Move], list[Fill]]:
    """For a factored placement: the ids the first slot row of each row of x needs (in
    every chunk) and those slots' crossbars and rows; the copies that double each first
    row into its repeats, all lanes and chunks at once (whole blocks of crossbars where
    the rows repeat so); zeros for the padding rows."""
    per_xb = len(dst.rows)
    block, times = _period(f.row, per_xb)
    row = f.row[:block]
    valid = np.flatnonzero(row >= 0)
    order = valid[np.argsort(row[valid], kind="stable")]  # by row of x, then slot row
    new = np.r_[True, row[order][1:] != row[order][:-1]]
    starts = np.flatnonzero(new)
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    first = np.sort(order[new])
    blank = np.flatnonzero(row < 0)
    # padding rows amid first rows go with them (a move may carry garbage in, a fill follows)
    lo = np.full(-(-block // per_xb), block)
    hi = np.full(len(lo), -1)
    np.minimum.at(lo, first // per_xb, first)
    np.maximum.at(hi, first // per_xb, first)
    amid = (blank >= lo[blank // per_xb]) & (blank <= hi[blank // per_xb])
    first, blank = np.sort(np.r_[first, blank[amid]]), blank[~amid]
    chunk0 = np.arange(f.chunks)[:, None] * len(f.row)
    xb, at = slot_places(dst, (chunk0 + first[None, :]).ravel())
    lanes = tuple(range(f.per))
    copies: list[Move] = []
    d = 1
    while d <= int(rank.max(initial=0)):
        pick = np.flatnonzero((rank >= d) & (rank < 2 * d))
        copies += [Move(lanes, dx, by, xbs, rows) for (dx, by), xbs, rows
                   in _chunk_groups(dst, f, order[pick], order[pick - d])]
        d *= 2
    fills = [Fill(lanes, xbs, rows, False) for _, xbs, rows in _chunk_groups(dst, f, blank, None)]
    width = block // per_xb * dst.xbs.step  # the block's crossbars
    d = 1
    while d < times:  # the whole block doubled, a level at a time
        n = min(d, times - d)
        into = Span(dst.xbs.start + d * width, dst.xbs.start + (d + n) * width, dst.xbs.step)
        copies += [Move(lanes, dx, by, xbs, rows) for (dx, by), xbs, rows
                   in _in_chunks([((-d * width, 0), into, dst.rows)], f, dst)]
        d += n
    return f.need(first), xb, at, copies, fills


def _period(row: np.ndarray, per_xb: int) -> tuple[int, int]:
    """(B, m): the slot rows are their first B (whole crossbars) repeated m times."""
    if len(row) % per_xb or len(row) == per_xb:
        return len(row), 1
    xbs = row.reshape(-1, per_xb)
    for k in np.flatnonzero((xbs == xbs[0]).all(axis=1))[1:].tolist():
        if len(xbs) % k == 0 and (xbs.reshape(-1, k, per_xb) == xbs[:k]).all():
            return k * per_xb, len(xbs) // k
    return len(row), 1


def _chunk_groups(dst: TensorIO, f: Factored, into: np.ndarray, source: np.ndarray | None
                  ) -> list[tuple[tuple[int, int], Span, Span]]:
    """_groups of the moves from slot rows `source` (None: fills) into `into`, in every
    chunk."""
    per_chunk, chunks = len(f.row), f.chunks
    if per_chunk % len(dst.rows):  # chunks share crossbars: every chunk's slots spelled out
        base = (np.arange(chunks)[:, None] * per_chunk)
        into = (base + into[None, :]).ravel()
        source = None if source is None else (base + source[None, :]).ravel()
    tx, tr = slot_places(dst, into)
    fx, fr = (tx, tr) if source is None else slot_places(dst, source)
    groups = _groups(fx - tx, tr - fr, tx, tr)
    return groups if per_chunk % len(dst.rows) else _in_chunks(groups, f, dst)


def _in_chunks(groups: list[tuple[tuple[int, int], Span, Span]], f: Factored, dst: TensorIO
               ) -> list[tuple[tuple[int, int], Span, Span]]:
    """Chunk 0's moves made in every chunk (chunks of whole crossbars): a move per
    crossbar over the chunks, or a move per chunk, whichever is fewer."""
    chunks = f.chunks
    if chunks == 1:
        return groups
    step = len(f.row) // len(dst.rows) * dst.xbs.step
    out = []
    for key, xbs, rows in groups:
        if len(xbs) <= chunks:
            spans = [Span(x, x + (chunks - 1) * step + 1, step) for x in xbs.indices()]
        else:
            spans = [Span(xbs.start + c * step, xbs.stop + c * step, xbs.step)
                     for c in range(chunks)]
        out += [(key, s, rows) for s in spans]
    return out


def _spread(src: TensorIO, dst: TensorIO, shape: tuple[int, ...], held: np.ndarray
            ) -> tuple[list[Move], tuple[int, int, int] | None, Span | None]:
    """The moves that copy the producer's word into dst's crossbars, so that each lane
    is gathered from a copy near it rather than from the producer, which may be tens of
    thousands of crossbars off (a TRANSFER costs its distance): into every chunk when
    dst's lanes are split in chunks of whole crossbars, each wide enough (once into the
    first, then doubling), else once at the start of dst's crossbars if it fits there.
    And (the producer's first crossbar, crossbars per copy, dst's first crossbar), and
    the crossbars of the first copy to zero first (so that each doubling copies whole
    blocks of crossbars, one TRANSFER a level)."""
    chunks = shape[0] if len(shape) == 3 else 1
    per = math.prod(shape[1:-1]) if len(shape) == 3 else 0
    rows = len(dst.rows)
    if src.rows != dst.rows or not len(held) or dst.xbs.step != 1:
        return [], None, None
    lo, span = int(held.min()), int(held.max() - held.min()) + 1
    if chunks > 1 and per % rows == 0 and span <= per // rows:
        per_xb = per // rows  # a copy in each chunk
    elif span <= len(dst.xbs):
        per_xb, chunks = len(dst.xbs), 1  # one copy, at the start of dst's crossbars
    else:
        return [], None, None
    first = dst.xbs.start
    moves = [Move((), lo - first, 0, Span(first, first + span), src.rows)]
    done = 1
    while done < chunks:
        count = min(done, chunks - done)
        at = first + done * per_xb
        moves.append(Move((), -done * per_xb, 0, Span(at, at + count * per_xb), src.rows,
                          local=True))
        done += count
    zero = Span(first, first + per_xb) if chunks > 1 and span < per_xb else None
    return moves, (lo, per_xb, first), zero


def _doubling(need: np.ndarray, shape: tuple[int, ...], xb: np.ndarray, row: np.ndarray
              ) -> tuple[np.ndarray, list[Move]]:
    """Where each chunk's slots repeat a block of T slots M times (and, inside that
    block, a smaller one, and so on): the need with the repeats marked COPIED, and the
    copies that double each block into them, innermost first."""
    chunks = shape[0] if len(shape) == 3 else 1
    per = need.shape[0] // chunks
    blocks = need.reshape(chunks, per, -1).copy()
    lanes = tuple(range(need.shape[1]))
    copies: list[Move] = []
    span = per
    while True:
        same = (blocks[:, 1:span // 2 + 1] == blocks[:, :1]).all(axis=(0, 2))
        data = np.cumsum((blocks[:, :span // 2] > 0).any(axis=(0, 2))) > 0
        for t in (np.flatnonzero(same & data) + 1).tolist()[:64]:  # blocks[:, t] repeats 0
            m = 1  # how many times the first t slots repeat
            while (m + 1) * t <= span and np.array_equal(blocks[:, m * t:(m + 1) * t],
                                                         blocks[:, :t]):
                m += 1
            if m > 1:
                break
        else:
            return blocks.reshape(need.shape), copies
        blocks[:, t:m * t] = COPIED
        level: list[Move] = []
        done = 1
        while done < m:
            count = min(done, m - done)
            first = (np.arange(chunks)[:, None] * per + np.arange(count * t)[None, :]).ravel()
            dest = first + done * t
            for (d, b), xbs, rows in _groups(xb[first] - xb[dest], row[dest] - row[first],
                                             xb[dest], row[dest]):
                level.append(Move(lanes, d, b, xbs, rows))
            done += count
        copies = level + copies
        span = t


def _groups(dx: np.ndarray, by: np.ndarray, xb: np.ndarray, row: np.ndarray
            ) -> list[tuple[tuple[int, int], Span, Span]]:
    """Destinations grouped into ops: one (dx, by), a run of crossbars with a step, and
    the same evenly spaced rows in each."""
    if not len(xb):
        return []
    place = xb * (int(row.max()) + 1) + row
    if np.any(np.diff(place) < 0):  # callers mostly give destinations in order already
        first = np.argsort(place, kind="stable")
        dx, by, xb, row = dx[first], by[first], xb[first], row[first]
    key = (dx - dx.min()) * (int(by.max() - by.min()) + 1) + (by - by.min())
    order = np.argsort(key, kind="stable")  # by (dx, by), then crossbar and row
    dx, by, xb, row = dx[order], by[order], xb[order], row[order]
    cut = np.flatnonzero((np.diff(dx) != 0) | (np.diff(by) != 0) | (np.diff(xb) != 0)) + 1
    lo, hi = np.r_[0, cut], np.r_[cut, len(xb)]
    # a crossbar's rows are one evenly spaced run when their steps agree (most are)
    step = np.r_[np.diff(row), 0]
    last = hi - 1
    inner = np.maximum(last - lo, 1)
    within = np.arange(len(row)) < np.repeat(last, hi - lo)  # a step to a row of the same run
    low_step = np.minimum.reduceat(np.where(within, step, np.iinfo(np.int64).max), lo)
    high_step = np.maximum.reduceat(np.where(within, step, -1), lo)
    even = (hi - lo == 1) | (low_step == high_step)
    out: list[tuple[tuple[int, int], Span, Span]] = []
    # even crossbars: grouped by (dx, by, first row, last row, step) with numpy ...
    e = np.flatnonzero(even)
    fields = np.stack([dx[lo[e]], by[lo[e]], row[lo[e]], row[last[e]],
                       np.maximum((row[last[e]] - row[lo[e]]) // inner[e], 1), xb[lo[e]]])
    fields = fields[:, np.lexsort(fields[::-1])]
    new = np.flatnonzero(np.any(np.diff(fields[:5], axis=1) != 0, axis=0)) + 1
    ends = np.r_[new, fields.shape[1]] if len(e) else np.zeros(0, dtype=np.int64)
    for g0, g1 in zip(np.r_[0, new][:len(ends)].tolist(), ends.tolist(), strict=True):
        kdx, kby, first, end, st = (int(v) for v in fields[:5, g0])
        rows = Span(first, end + 1, st)
        out += [((kdx, kby), run, rows) for run in _runs(fields[5, g0:g1].tolist())]
    # ... the others (rows in several runs) one by one
    by_rows: dict[tuple[tuple[int, int], tuple[Span, ...]], list[int]] = {}
    for i in np.flatnonzero(~even).tolist():
        key = (int(dx[lo[i]]), int(by[lo[i]]))
        by_rows.setdefault((key, _row_spans(row[lo[i]:hi[i]])), []).append(int(xb[lo[i]]))
    for (key, spans), xs in by_rows.items():
        for run in _runs(xs):
            out += [(key, run, rows) for rows in spans]
    return out


def _runs(xs: list[int]) -> list[Span]:
    """Sorted crossbars as few evenly spaced runs: the best of runs of one step q in each
    residue class modulo q (q = 1..16, or a common gap: a layout's crossbars repeat
    their pattern with some period), or greedy runs of any step (for short lists)."""
    arr = np.asarray(xs, dtype=np.int64)
    if len(arr) == 1:
        return [Span(int(arr[0]), int(arr[0]) + 1)]
    gaps, counts = np.unique(np.diff(arr), return_counts=True)
    steps = set(range(1, min(16, len(arr)) + 1)) | set(gaps[np.argsort(-counts)[:4]].tolist())

    def starts(q: int) -> np.ndarray:  # whether x begins a run of step q (x - q absent)
        at = np.searchsorted(arr, arr - q)
        return (at >= len(arr)) | (arr[np.minimum(at, len(arr) - 1)] != arr - q)

    q = min(sorted(steps), key=lambda q: int(starts(q).sum()))
    count = int(starts(q).sum())
    if len(arr) <= 256:
        greedy = _row_spans(arr)
        if len(greedy) < count:
            return list(greedy)
    order = np.lexsort((arr, arr % q))  # by class, then crossbar
    cls = arr[order]
    cut = np.flatnonzero((np.diff(cls) != q) | (np.diff(cls % q) != 0)) + 1
    lo, hi = np.r_[0, cut], np.r_[cut, len(cls)] - 1
    return [Span(a, b + 1, q) for a, b in zip(cls[lo].tolist(), cls[hi].tolist(), strict=True)]


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
    """Append the micro-ops of plan(src, dst); columns from `staging` on are free in
    dst's crossbars (a TRANSFER lands there before its SHIFT). The count of ops."""
    p = plan(src, dst)
    dt = parse_dtype(dst.dtype)
    bits = dt.bits
    cols = dst.columns(bits)
    start = len(b.ops)

    def lanes(ls: tuple[int, ...]) -> list[int]:
        return [c for lane in ls for c in cols[lane * bits:(lane + 1) * bits]]

    home = list(range(staging + bits, staging + 2 * bits))  # the chunks' copies
    if p.spread and home[-1] >= arch.cols:
        raise PimError(f"{dst.name}: no free columns for a copy of the map in each chunk")
    if p.home_zero is not None:
        b.init(home, 0, xbs=p.home_zero, rows=dst.rows)
    for m in p.spread:
        _move(b, m, home if m.local else src.columns(bits), home, staging, arch, dst.name)
    for m in p.moves:
        _move(b, m, home if m.local else src.columns(bits), lanes(m.lanes), staging, arch,
              dst.name)
    raw = int(dt.to_bits(np.array([lowest(np.dtype(dt.host))], dtype=dt.host))[0])
    for f in p.fills:
        b.init(lanes(f.lanes), raw if f.lowest else 0, xbs=f.xbs, rows=f.rows)
    width = max(1, (arch.cols - staging) // bits)  # lanes a staged copy can carry
    for m in p.copies:
        step = width if m.dx and m.by else len(m.lanes)
        for k in range(0, len(m.lanes), step):
            part = lanes(m.lanes[k:k + step])
            _move(b, m, part, part, staging, arch, dst.name)
    return len(b.ops) - start


def _move(b: ProgramBuilder, m: Move, words: list[int], lane: list[int], staging: int,
          arch: Arch, name: str) -> None:
    if abs(m.by) > arch.max_shift:
        raise PimError(f"{name}: a move of {abs(m.by)} rows exceeds the barrel shifter's "
                       f"{arch.max_shift}")
    if staging + (len(lane) if m.by and m.dx else 0) > arch.cols:
        raise PimError(f"{name}: no free columns to stage a move in")
    if m.dx == 0:
        b.shift(words, lane, m.by, xbs=m.xbs, rows=m.rows)
        return
    d, step = abs(m.dx), m.xbs.step
    if d % step == 0 and d < m.xbs.stop - m.xbs.start:  # sources among the destinations:
        # destinations 2d apart, whose sources (d away) are none of them
        spans = [(Span(m.xbs.start + u, m.xbs.stop, 2 * d),
                  Span(m.xbs.start + u + m.dx, m.xbs.stop + m.dx, 2 * d))
                 for u in range(0, min(2 * d, m.xbs.stop - m.xbs.start), step)]
    else:
        spans = [(m.xbs, Span(m.xbs.start + m.dx, m.xbs.stop + m.dx, step))]
    before = Span(m.rows.start - m.by, m.rows.stop - m.by, m.rows.step)
    temp = list(range(staging, staging + len(lane)))
    for into, from_xbs in spans:
        if m.by == 0:
            b.transfer(from_xbs, into, words, lane, rows=m.rows)
        else:
            b.transfer(from_xbs, into, words, temp, rows=before)
            b.shift(temp, lane, m.by, xbs=into, rows=m.rows)
