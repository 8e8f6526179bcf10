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
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Span, TensorIO, ViewOp, apply_view, view_shape
from pimc.lower.factor import Factored, factor
from pimc.lower.gather import Source, classes, extracted, gather, gather_chunks, neighbours
from pimc.lower.moves import (
    COPIED,
    PAD_LOWEST,
    Fill,
    Move,
    every_chunk,
    group_spans,
    on_words,
    runs,
    strided,
)
from pimc.lower.views import element_ids, element_slots
from pimc.runtime.hostio import slot_places, slots

__all__ = ["PAD_LOWEST", "Plan", "plan"]

MAX_WORDS = 4  # home words a map's one copy in a smaller stage may take


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]  # from the producer (or its local copies), lane by lane
    fills: tuple[Fill, ...]  # then the padding
    copies: tuple[Move, ...]  # then the repeated blocks, doubling
    spread: tuple[Move, ...] = ()  # first: the producer's word copied into every chunk
    home_zero: tuple[Span, Span, int] | None = None  # before that: zeros (crossbars,
    # rows, home word) where the first copy does not reach, in the rows the copies move
    down: tuple[Move, ...] = ()  # after the moves, before the fills: one row's word
    # doubled down the rows of crossbars that hold one value a lane (a bias, a weight)
    extract: tuple[Move, ...] = ()  # after the spread: each chunk's cells into a
    # canonical copy in its own crossbars, which the moves then read (gather.extracted)


def plan(src: TensorIO, dst: TensorIO, max_shift: int = Arch().max_shift,
         room: int = MAX_WORDS) -> Plan:
    """The moves that build `dst`'s placement from `src`'s (one value a slot), chosen
    for a barrel shifter of `max_shift` rows, with `room` free words in dst's rows for
    copies of the map (beside the staging word).

    Where the placement repeats a block of slots (a convolution's input windows, the
    same for every output channel), the first block is gathered and then doubled.
    Padding slots next to moved ones ride along with the move (whatever the shifted
    block holds) and are written after it, so a tap's block is one move, not a move per
    image row. Chunks alike but for their channel may first copy the cells they read
    into their own crossbars (gather.extracted), where that counts fewer cycles. A map
    wider than a chunk is copied into every chunk over several words, or into every
    group of chunks it fits, whichever counts fewer cycles (_spread)."""
    if dst.broadcast:  # one value in every slot: a broadcast view of the same slots
        slots_ = len(dst.xbs) * len(dst.rows)
        dst = dataclasses.replace(dst, broadcast=False, view=(
            ViewOp("reshape", (1, 1)), ViewOp("broadcast", (slots_, 1))))
    if src.lanes != 1 or src.shape != dst.shape or src.dtype != dst.dtype:
        raise PimError(f"{dst.name}: cannot move a {src.dtype}{list(src.shape)} placement "
                       f"into a {dst.dtype}{list(dst.shape)} one")
    ids = element_ids(src.shape)
    have = apply_view(ids, src.view).reshape(-1)
    _, sx, sr = slots(src)  # each slot's crossbar and row, as the host places them
    at = element_slots(have, ids.size)
    x0 = int(sx.min())
    sources = np.zeros((int(sx.max()) - x0 + 1, int(sr.max()) + 1), dtype=bool)
    sources[sx - x0, sr] = True  # where a move may read (whatever it holds)
    shape = view_shape(dst.shape, dst.view)
    factored = factor(dst.shape, dst.view, low=PAD_LOWEST)
    blank: list[Fill] = []
    if factored is None:
        need = apply_view(ids, dst.view, low=PAD_LOWEST).reshape(-1, dst.lanes)
        _, dx_, dr = slots(dst)
        need, copies = _doubling(need, shape, dx_, dr)
    else:  # each distinct row gathered once, then copied to its repeats
        need, dx_, dr, copies, blank = _repeats(factored, dst)
    need, down = _down_rows(need, dx_, dr)
    bits = parse_dtype(dst.dtype).bits
    made = [_planned(src, dst, shape, sx, sr, sources, x0, at, have, need, dx_, dr, factored,
                     max_shift, room, by_words=False)]
    if not made[0][4] and _words(src, dst, shape, have, sx, room):  # (canonical copies
        made.append(_planned(src, dst, shape, sx, sr, sources, x0, at, have, need, dx_,  # read
                             dr, factored, max_shift, room, by_words=True))  # one word)
    moves, fills, spread, home_zero, extract = min(
        made, key=lambda m: _real((*m[2], *m[4], *m[0]), dst, bits, max_shift,
                                  (*m[2], *m[4])) + len(m[1]))
    return Plan(tuple(moves), (*fills, *blank), tuple(copies), tuple(spread), home_zero,
                tuple(down), tuple(extract))


def _words(src: TensorIO, dst: TensorIO, shape: tuple[int, ...], have: np.ndarray,
           sx: np.ndarray, room: int) -> bool:
    """Whether the map spans more crossbars than a chunk of dst has, but at most as
    many as `room` words of it (so its copies may go a group of chunks each, or over
    several words into every chunk: _spread)."""
    if len(shape) != 3 or not (have > 0).any():
        return False
    held = sx[have > 0]
    per = math.prod(shape[1:-1])
    width = per // len(dst.rows) if per % len(dst.rows) == 0 else 0
    return width > 0 and 1 < -(-(int(held.max() - held.min()) + 1) // width) \
        <= min(room, MAX_WORDS)


def pieces(m: Move, spread: tuple[Move, ...] | list[Move], dst: TensorIO
           ) -> list[tuple[Move, int]]:
    """A move as emitted, with the home word it reads: one from a map's copy over
    several home words cut into a move a word (moves.on_words)."""
    if m.local and any(s.word for s in spread):
        return on_words(m, dst.xbs.start, len(dst.xbs))
    return [(m, 0)]


def real_cycles(m: Move, dst: TensorIO, bits: int, max_shift: int,
                spread: tuple[Move, ...] | list[Move]) -> int:
    """Move.cycles of a move as emitted (pieces)."""
    return sum(p.cycles(bits, max_shift) for p, _ in pieces(m, spread, dst))


def _planned(src: TensorIO, dst: TensorIO, shape: tuple[int, ...], sx: np.ndarray,
             sr: np.ndarray, sources: np.ndarray, x0: int, at: np.ndarray, have: np.ndarray,
             need: np.ndarray, dx_: np.ndarray, dr: np.ndarray, factored: Factored | None,
             max_shift: int, room: int, by_words: bool
             ) -> tuple[list[Move], tuple[Fill, ...], list[Move], tuple[Span, Span, int] | None,
                        list[Move]]:
    """The gather of `need` from the map or its copies in dst's crossbars (_spread):
    (moves, fills, spread, home_zero, extract)."""
    spread, local, home_zero, words = _spread(src, dst, shape, sx[have > 0], room, by_words)
    length = 0
    if local is not None:  # read from the chunk's own copy, a few crossbars away
        lo_x, per_xb, first = local
        rel = np.arange(sources.shape[0]) + x0 - lo_x  # each map crossbar, in the copy
        length = len(dst.xbs) if words > 1 else 0
        sx = _in_copy(sx - lo_x, per_xb, length)  # as the copy's crossbar, from its first
        keep = (rel >= 0) & (rel < words * per_xb)
        home = np.zeros(((words - 1) * length + per_xb, sources.shape[1]), dtype=bool)
        home[_in_copy(rel[keep], per_xb, length)] = sources[keep]
        sources, x0 = home, 0
        end = first + words * length if words > 1 else max(dst.xbs.stop, first + per_xb)
    else:
        end = dst.xbs.stop
    read = Source(at, sx, sr, sources, x0, local, end, length)  # (a copy over several
    # words runs on past dst's end)
    bits = parse_dtype(dst.dtype).bits
    extract: list[Move] = []
    chunks, width = _chunked(factored, shape, dst)
    kinds = classes(need, read, chunks, width, dst.xbs.start) \
        if chunks > 1 and dst.xbs.step == 1 and words < room else None  # (a word for the
    # copies)
    if factored is not None and chunks > 1:
        moves, pads = gather_chunks(need, dx_, dr, read, chunks, width)
        moves = _cheaper(moves, bits, max_shift)
        for near, joined in ((False, True), (False, False), (True, False)) if kinds else ():
            alt = extracted(need, dx_, dr, read, kinds, width, dst.xbs.start, near, joined)
            if alt is None:
                break
            ext, via, holes = (_cheaper(alt[0], bits, max_shift),
                               _cheaper(alt[1], bits, max_shift), alt[2])
            if _spent((*ext, *via), bits, max_shift) + len(holes) \
                    < _spent((*extract, *moves), bits, max_shift) + len(pads):
                extract, moves, pads = ext, via, holes
    elif kinds is not None and (alt := extracted(
            need, dx_, dr, read, kinds, width, dst.xbs.start, False, True,
            room - words, len(dst.xbs))) is not None:
        # a map's channel blocks that read alike (but for their offset): each block's
        # cells copied into its own crossbars first, the gather planned once for all.
        # Gathered from the map instead, each channel's elements would move one by one,
        # as far as the two layouts' channel pitches drift apart (a phase-ordered map
        # into a natural one: 260k moves, 100M cycles at ResNet-50's stem)
        extract, moves, pads = (_cheaper(alt[0], bits, max_shift),
                                _cheaper(alt[1], bits, max_shift), alt[2])
    else:
        moves, pads, _ = gather(need, dx_, dr, read)
        moves = _cheaper(moves, bits, max_shift)
    fills = tuple(Fill(tuple(lanes), xbs, span, low) for (low, xbs, span), lanes in pads.items())
    return moves, fills, spread, home_zero, extract


def _chunked(factored: Factored | None, shape: tuple[int, ...], dst: TensorIO
             ) -> tuple[int, int]:
    """(chunks, a chunk's crossbars) of a placement whose slots come in chunks of whole
    crossbars: a convolution's lanes chunks (factored), or a map's channel blocks (the
    leading axis of its placed shape: a layer's (channels, crossbars, rows)); (1, 0)
    otherwise."""
    rows = len(dst.rows)
    if factored is not None:
        if factored.chunks > 1 and len(factored.row) % rows == 0:
            return factored.chunks, len(factored.row) // rows * dst.xbs.step
        return 1, 0
    per = math.prod(shape[1:-1])
    if len(shape) >= 4 and shape[0] > 1 and per % rows == 0:
        return shape[0], per // rows * dst.xbs.step
    return 1, 0


def _real(moves: tuple[Move, ...], dst: TensorIO, bits: int, max_shift: int,
          spread: tuple[Move, ...]) -> int:
    return sum(real_cycles(m, dst, bits, max_shift, spread) for m in moves)


def _in_copy(m: np.ndarray, per_xb: int, length: int) -> np.ndarray:
    """Map crossbars (from the copy's first) as crossbars of a copy over several words
    of `length` crossbars each (word w's crossbar i named i + w * length)."""
    return m // per_xb * length + m % per_xb if length else m


def _spent(moves: tuple[Move, ...] | list[Move], bits: int, max_shift: int) -> int:
    return sum(m.cycles(bits, max_shift) for m in moves)


def _down_rows(need: np.ndarray, xb: np.ndarray, row: np.ndarray
               ) -> tuple[np.ndarray, list[Move]]:
    """Runs of a crossbar's rows that need one element a lane (a bias or a weight
    placed for every output position of a channel, a few channels a crossbar): each
    run's first row is gathered, and its word doubled down to the run's last row
    (FloatPIM's row-parallel copy of a weight); the padding among them is filled after.
    The need with the other rows of the runs marked COPIED, and the doubling copies."""
    data = need > 0
    rows_with = np.flatnonzero(data.any(axis=1))
    if len(rows_with) < 4:
        return need, []
    at = rows_with[np.lexsort((row[rows_with], xb[rows_with]))]  # data slots by place
    v, full = need[at], data[at].all(axis=1)
    new = np.r_[True, (xb[at][1:] != xb[at][:-1]) | (v[1:] != v[:-1]).any(axis=1)
                | ~full[1:] | ~full[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(at)]
    long = (ends - starts >= 4) & full[starts]
    if not long.any():
        return need, []
    starts, ends = starts[long], ends[long]
    need = need.copy()
    mark = np.zeros(len(at) + 1, dtype=np.int64)
    np.add.at(mark, starts + 1, 1)
    np.add.at(mark, ends, -1)
    inner = np.cumsum(mark)[:-1] > 0  # in a run, after its first row
    need[at[inner]] = COPIED
    lanes = tuple(range(need.shape[1]))
    spans: dict[tuple[int, int], list[int]] = {}  # (first row, last row) -> crossbars,
    for x, a, b in zip(xb[at[starts]].tolist(), row[at[starts]].tolist(),  # ascending
                       row[at[ends - 1]].tolist(), strict=True):
        spans.setdefault((a, b), []).append(x)
    down: list[Move] = []
    for (a, b), xbs in sorted(spans.items()):
        k = 1
        while a + k <= b:
            rows = Span(a + k, min(a + 2 * k, b + 1))
            down += [Move(lanes, 0, k, run, rows) for run in runs(xbs)]
            k *= 2
    return need, down


def _cheaper(moves: list[Move], bits: int, max_shift: int) -> list[Move]:
    """Each lane's moves as gathered, or re-cut into runs of two steps (strided), which
    ever counts fewer cycles. A lane of one move has nothing to re-cut."""
    lanes: dict[tuple[int, ...], list[Move]] = {}
    for m in moves:
        lanes.setdefault(m.lanes, []).append(m)
    out: list[Move] = []
    for ms in lanes.values():
        if len(ms) == 1:
            out += ms
            continue
        out += min((ms, strided(ms)), key=lambda v: _spent(v, bits, max_shift))
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
    whole = len(f.row) % per_xb == 0  # chunks of whole crossbars: slot s at (s // R, s % R)
    for start, end, d in _levels(order, rank, per_xb if whole else 0):
        pick = np.flatnonzero((rank >= start) & (rank < end))
        into, source = order[pick], order[pick - d]
        if whole:
            into, source = _blank_riders(row, into, source, per_xb)
        copies += [Move(lanes, dx, by, xbs, rows) for (dx, by), xbs, rows
                   in _chunkgroups(dst, f, into, source)]
    fills = [Fill(lanes, xbs, rows, False) for _, xbs, rows in _chunkgroups(dst, f, blank, None)]
    width = block // per_xb * dst.xbs.step  # the block's crossbars
    d = 1
    while d < times:  # the whole block doubled, a level at a time
        n = min(d, times - d)
        into = Span(dst.xbs.start + d * width, dst.xbs.start + (d + n) * width, dst.xbs.step)
        copies += [Move(lanes, dx, by, xbs, rows) for (dx, by), xbs, rows
                   in _in_chunks([((-d * width, 0), into, dst.rows)], f, dst)]
        d += n
    return f.need(first), xb, at, copies, fills


def _levels(order: np.ndarray, rank: np.ndarray, per_xb: int) -> list[tuple[int, int, int]]:
    """The doubling of each first slot row into its repeats: (first, end, d), the
    repeats ranked [first, end) copied from those d before. Where the repeat P ranks on
    lies exactly one crossbar on (a layer's output channels, P of them a crossbar), the
    first P are doubled inside the crossbar and then whole crossbars are (the same rows
    of each, a TRANSFER a level, never a block of rows that straddles two crossbars);
    else 1, 2, 4, ... at a time."""
    top = int(rank.max(initial=0))
    period = 0
    if per_xb and top:
        gap = order[:top + 1] - order[0]  # the first row of x's repeats
        hit = np.flatnonzero((gap == per_xb) & (rank[:top + 1] == np.arange(top + 1)))
        if len(hit):
            p = int(hit[0])
            at = np.flatnonzero(rank >= p)
            period = p if np.all(order[at] - order[at - p] == per_xb) else 0
    levels, d = [], 1
    while period and d < period:
        levels.append((d, min(2 * d, period), d))
        d *= 2
    d = period or 1
    while d <= top:
        levels.append((d, 2 * d, d))
        d *= 2
    return levels


def _blank_riders(row: np.ndarray, into: np.ndarray, source: np.ndarray, per_xb: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A copy level's slots, plus the padding slots next to them (in the same crossbar)
    that the neighbour's move (the same crossbar and row distance, so they group) would
    fill from padding too: padding is zeroed before the copies, so carrying zeros onto
    zeros changes nothing, and the copy of a block of rows is one run instead of one per
    image row (a phase plane's padded positions)."""
    pad = np.flatnonzero(row < 0)
    if not len(pad) or not len(into):
        return into, source
    rides = np.full(len(pad), -1)
    for near in neighbours(into, pad, np.arange(len(row)) // per_xb):
        try_ = np.flatnonzero((rides < 0) & (near >= 0))
        n = near[try_]
        src = pad[try_] + source[n] - into[n]
        ok = (src >= 0) & (src < len(row))
        ok &= (src // per_xb - pad[try_] // per_xb) == (source[n] // per_xb - into[n] // per_xb)
        ok[ok] = row[src[ok]] < 0
        rides[try_[ok]] = n[ok]
    go = np.flatnonzero(rides >= 0)
    return (np.r_[into, pad[go]],
            np.r_[source, pad[go] + source[rides[go]] - into[rides[go]]])


def _period(row: np.ndarray, per_xb: int) -> tuple[int, int]:
    """(B, m): the slot rows are their first B (whole crossbars) repeated m times."""
    if len(row) % per_xb or len(row) == per_xb:
        return len(row), 1
    xbs = row.reshape(-1, per_xb)
    for k in np.flatnonzero((xbs == xbs[0]).all(axis=1))[1:].tolist():
        if len(xbs) % k == 0 and (xbs.reshape(-1, k, per_xb) == xbs[:k]).all():
            return k * per_xb, len(xbs) // k
    return len(row), 1


def _chunkgroups(dst: TensorIO, f: Factored, into: np.ndarray, source: np.ndarray | None
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
    groups = group_spans(fx - tx, tr - fr, tx, tr)
    return groups if per_chunk % len(dst.rows) else _in_chunks(groups, f, dst)


def _in_chunks(groups: list[tuple[tuple[int, int], Span, Span]], f: Factored, dst: TensorIO
               ) -> list[tuple[tuple[int, int], Span, Span]]:
    """Chunk 0's moves made in every chunk (chunks of whole crossbars): the crossbars of
    the moves alike but for them, in every chunk, as few runs as may be (a crossbar of
    every phase block, the blocks tiling the chunks: one run over all)."""
    chunks = f.chunks
    if chunks == 1:
        return groups
    step = len(f.row) // len(dst.rows) * dst.xbs.step
    alike: dict[tuple[tuple[int, int], Span], list[range]] = {}
    for key, xbs, rows in groups:
        alike.setdefault((key, rows), []).append(xbs.indices())
    return [(key, run, rows) for (key, rows), parts in alike.items()
            for run in every_chunk(np.concatenate(parts), np.arange(chunks) * step, step)]


def _spread(src: TensorIO, dst: TensorIO, shape: tuple[int, ...], held: np.ndarray,
            room: int, by_words: bool
            ) -> tuple[list[Move], tuple[int, int, int] | None, tuple[Span, Span, int] | None,
                       int]:
    """The moves that copy the producer's word into dst's crossbars, so that each lane
    is gathered from a copy near it rather than from the producer, which may be tens of
    thousands of crossbars off (a TRANSFER costs its distance): when dst's lanes are
    split in chunks of whole crossbars, into every chunk if each is wide enough, else
    (`by_words`) into every chunk over several home words, or into every group of the
    fewest chunks that are (once into the first, then doubling); otherwise once at the
    start of dst's crossbars, over several home words where the map has more crossbars
    than dst (VGG-19's pool1 reads a map of 3,136 crossbars into a stage of 1,792:
    gathered from its producer, every lane crossed 262,144 crossbars). At most `room`
    words. And (the producer's first crossbar, a copy's crossbars in a word (copies
    that far apart), dst's first crossbar); the crossbars of the first copy to zero
    first, and their word (so that each doubling copies whole blocks of crossbars, one
    TRANSFER a level); the home words a copy takes."""
    chunks = shape[0] if len(shape) == 3 else 1
    per = math.prod(shape[1:-1]) if len(shape) == 3 else 0
    rows = len(dst.rows)
    if not len(held) or dst.xbs.step != 1 or room < 1:  # (whole crossbars' rows are
        return [], None, None, 1  # copied, row for row)
    lo, span = int(held.min()), int(held.max() - held.min()) + 1
    width = per // rows if chunks > 1 and per % rows == 0 else 0  # a chunk's crossbars
    group = max(1, -(-span // width)) if width else chunks  # chunks a copy serves
    first, end, length = dst.xbs.start, dst.xbs.stop, len(dst.xbs)
    words = 1
    if by_words and 1 < group <= min(room, MAX_WORDS):  # every chunk, over `group` words
        per_xb, words = width, group
    else:
        while group < chunks and (-(-chunks // group) - 1) * group * width + span > length:
            group += 1  # the last copy must fit in dst's crossbars
        if group < chunks:
            per_xb, chunks = group * width, -(-chunks // group)  # a copy every `group` chunks
        elif span <= length:
            per_xb, chunks = length, 1  # one copy, at the start of dst's crossbars
        elif span <= min(room, MAX_WORDS) * length:  # one copy over several words
            per_xb, chunks, words = length, 1, -(-span // length)
        else:
            return [], None, None, 1
    moves = [Move((), lo + w * per_xb - first, 0,
                  Span(first, first + min(per_xb, span - w * per_xb)), src.rows, word=w)
             for w in range(words)]
    done = 1
    while done < chunks:  # whole blocks, the last cut at dst's end (the next stage's)
        count = min(done, chunks - done)
        at = first + done * per_xb
        moves += [Move((), -done * per_xb, 0, Span(at, min(at + count * per_xb, end)),
                       src.rows, local=True, word=w) for w in range(words)]
        done += count
    last = span - (words - 1) * per_xb  # crossbars the last word's first copy fills
    zero = (Span(first, first + per_xb), src.rows, words - 1) \
        if chunks > 1 and last < per_xb else None
    return moves, (lo, per_xb, first), zero, words


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
            for (d, b), xbs, rows in group_spans(xb[first] - xb[dest], row[dest] - row[first],
                                             xb[dest], row[dest]):
                level.append(Move(lanes, d, b, xbs, rows))
            done += count
        copies = level + copies
        span = t


