"""The gather of a relayout: for each slot lane, the move that brings its element from
the producer's map (or a local copy of it), padding riding along with a neighbour's
move; and the chunks alike but for their channel, gathered once and made in the others."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from pimc.isa.uop import Span
from pimc.lower.moves import PAD_LOWEST, Move, every_chunk, group_spans, runs


@dataclass(frozen=True)
class Source:
    """Where the producer's elements are: each id's slot (at), the slots' crossbars and
    rows, the cells a move may read, and the chunks' local copies (if any)."""

    at: np.ndarray
    sx: np.ndarray
    sr: np.ndarray
    cells: np.ndarray  # bool[crossbar - x0, row]
    x0: int
    local: tuple[int, int, int] | None  # (map's first crossbar, copy pitch, dst's first)
    end: int = 0  # with local copies: the crossbar they stop before (dst's end)
    length: int = 0  # copies over several home words: crossbar x + w * length names
    # word w of crossbar x (moves.on_words); cells and sx count a copy's crossbars so

    def rel(self, fx: np.ndarray) -> np.ndarray:
        """Crossbars (dst's, or a copy's further words) as the crossbar of the copy each
        is in, counted from that copy's first (-1 outside every copy)."""
        assert self.local is not None
        _, per_xb, first = self.local
        d = fx - first
        inside = (fx >= first) & (fx < self.end)
        if self.length:
            return np.where(inside, d // self.length * self.length
                            + d % self.length % per_xb, -1)
        return np.where(inside, d % per_xb, -1)

    def copy_of(self, x: int) -> int:
        """Which copy crossbar x (dst's, or a further word's) is in."""
        assert self.local is not None
        _, per_xb, first = self.local
        return ((x - first) % self.length if self.length else x - first) // per_xb


def gather(need: np.ndarray, dx_: np.ndarray, dr: np.ndarray, src: Source
            ) -> tuple[list[Move], dict[tuple[bool, Span, Span], list[int]], np.ndarray]:
    """Lane by lane, the moves that bring each slot its element (padding riding along
    with a neighbour's move where the cell it reads exists), and the padding fills; and
    the cells the ridden moves read ((crossbar - x0, row) pairs)."""
    moves: list[Move] = []
    pads: dict[tuple[bool, Span, Span], list[int]] = {}
    ridden = [np.zeros((2, 0), dtype=np.int64)]
    lo_x = int(dx_.min(initial=0))
    slot = np.zeros((int(dx_.max(initial=0)) - lo_x + 1, int(dr.max(initial=0)) + 1), dtype=bool)
    slot[dx_ - lo_x, dr] = True  # dst's slots: each written later in every lane (by its
    # move, a fill or a copy), so a bridged run may write garbage there first
    for lane in range(need.shape[1]):
        col = need[:, lane]
        dest = np.flatnonzero(col > 0)
        source = src.at[col[dest]]
        if src.local is None:
            base = 0
        else:  # the copy in the slot's own chunk, or the one before where that is nearer
            _, per_xb, first = src.local
            base = first + (dx_[dest] - first) // per_xb * per_xb
            x = (src.sx[source] % src.length if src.length else src.sx[source]) - dx_[dest]
            base = np.where((base > first) & (np.abs(base - per_xb + x) < np.abs(base + x)),
                            base - per_xb, base)
        dx = base + src.sx[source] - dx_[dest]
        by = dr[dest] - src.sr[source]
        pad = np.flatnonzero((col == 0) | (col == PAD_LOWEST))
        if len(dest) and len(pad):  # padding rides along with a neighbour's move
            rides = np.full(len(pad), -1)
            for near in neighbours(dest, pad, dx_):
                try_ = np.flatnonzero((rides < 0) & (near >= 0))
                fx, fr = dx_[pad[try_]] + dx[near[try_]], dr[pad[try_]] - by[near[try_]]
                if src.local is not None:  # in any copy (all alike)
                    fx = src.rel(fx)
                fx = fx - src.x0
                ok = ((fx >= 0) & (fx < src.cells.shape[0]) & (fr >= 0)
                      & (fr < src.cells.shape[1]))
                ok[ok] = src.cells[fx[ok], fr[ok]]
                rides[try_[ok]] = near[try_[ok]]
                ridden.append(np.stack([fx[ok], fr[ok]]))
            go = np.flatnonzero(rides >= 0)
            dest = np.r_[dest, pad[go]]
            dx, by = np.r_[dx, dx[rides[go]]], np.r_[by, by[rides[go]]]
        for (d, b), xbs, rows, early in _bridged(group_spans(dx, by, dx_[dest], dr[dest]),
                                                 slot, lo_x, src, ridden):
            moves.append(Move((lane,), d, b, xbs, rows, local=src.local is not None,
                              early=early))
        for low in (False, True):
            where = np.flatnonzero(col == (PAD_LOWEST if low else 0))
            zero = np.zeros(len(where), dtype=np.int64)
            for _, xbs, rows in group_spans(zero, zero, dx_[where], dr[where]):
                pads.setdefault((low, xbs, rows), []).append(lane)
    return moves, pads, np.concatenate(ridden, axis=1)


def _bridged(groups: list[tuple[tuple[int, int], Span, Span]], slot: np.ndarray, lo_x: int,
             src: Source, read: list[np.ndarray]
             ) -> list[tuple[tuple[int, int], Span, Span, bool]]:
    """A lane's moves, those alike but for their crossbars joined into one run over the
    gaps between them (a tap's planes but for the edge phase blocks its other moves
    fill) where every gap cell is a slot written later and reads a cell that exists,
    and no other bridged run of the lane writes a gap cell of this one's or has one
    where this writes: the run goes first (early), the moves of the gap slots after.
    The cells the gaps read are added to `read` ((crossbar - x0, row), as ridden)."""
    alike: dict[tuple[tuple[int, int], Span], list[Span]] = {}
    for key, xbs, rows in groups:
        alike.setdefault((key, rows), []).append(xbs)
    out: list[tuple[tuple[int, int], Span, Span, bool]] = []
    early: list[tuple[set[int], set[int], Span]] = []  # bridged: (data, gap crossbars, rows)
    for ((d, b), rows), spans in sorted(alike.items(), key=lambda kv: -len(kv[1])):
        whole = _run_over(spans)
        if whole is not None:
            have = np.zeros(len(whole), dtype=bool)
            for x in spans:
                have[(np.asarray(x.indices()) - whole.start) // whole.step] = True
            gap = np.asarray(whole.indices())[~have]
            r = np.asarray(rows.indices())
            fx = np.repeat(gap - lo_x, len(r))
            data, holes = set(np.asarray(whole.indices())[have].tolist()), set(gap.tolist())
            ok = ((fx >= 0) & (fx < slot.shape[0])).all() and r[-1] < slot.shape[1] \
                and slot[fx, np.tile(r, len(gap))].all() and _readable(gap + d, r - b, src) \
                and not any(rows.start < o.stop and o.start < rows.stop  # (in any order)
                            and (holes & their or data & theirs)
                            for their, theirs, o in early)
            if ok:
                read.append(_cell(np.repeat(gap + d, len(r)), np.tile(r - b, len(gap)), src))
                early.append((data, holes, rows))
                out.append(((d, b), whole, rows, True))
                continue
        out += [((d, b), xbs, rows, False) for xbs in spans]
    return out


def _run_over(spans: list[Span]) -> Span | None:
    """One run through all the spans (the largest step that meets every crossbar of
    theirs), if it is at most twice as long as they are together."""
    if len(spans) < 2:
        return None
    first = min(x.start for x in spans)
    last = max(x.last for x in spans)
    step = math.gcd(*(x.step for x in spans if len(x) > 1), *(x.start - first for x in spans))
    whole = Span(first, last + 1, step)
    return whole if len(whole) <= 2 * sum(len(x) for x in spans) else None


def _cell(fx: np.ndarray, fr: np.ndarray, src: Source) -> np.ndarray:
    """Crossbars and rows read, as (crossbar - x0, row) pairs in the map or in the copy
    each is in; crossbar -1 where neither holds it."""
    if src.local is not None:
        fx = src.rel(fx)
    fx = fx - src.x0
    bad = (fx < 0) | (fx >= src.cells.shape[0]) | (fr < 0) | (fr >= src.cells.shape[1])
    return np.stack([np.where(bad, -1, fx), fr])


def _readable(fx: np.ndarray, fr: np.ndarray, src: Source) -> bool:
    """Whether the cells at crossbars fx (each in every row fr) exist in the map, or in
    the copy in dst's crossbars each reads."""
    x, r = _cell(np.repeat(fx, len(fr)), np.tile(fr, len(fx)), src)
    return bool((x >= 0).all() and src.cells[x, r].all())


def chunk_classes(need: np.ndarray, chunks: int, src: Source) -> dict[int, list[tuple[int, int]]] | None:
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


def moved_on(m: Move, shift: int, on: int, width: int, src: Source) -> Move | None:
    """A representative chunk's move made `on` chunks further (its sources `shift`
    crossbars further in the producer's map or its local copy); None if the move
    straddles local copies."""
    if src.local is None:
        return dataclasses.replace(m, dx=m.dx + shift - on * width)
    per_xb, copy = src.local[1], src.copy_of
    a, b = m.xbs.start, m.xbs.stop - 1
    if copy(a) != copy(b) or copy(a + on * width) != copy(b + on * width):
        return None
    return dataclasses.replace(
        m, dx=m.dx + shift - on * width + (copy(a + on * width) - copy(a)) * per_xb)


def can_ride(ridden: np.ndarray, shift: int, src: Source) -> bool:
    """Whether the cells the ridden moves read, `shift` crossbars on, exist too."""
    fx, fr = ridden[0] + shift, ridden[1]
    return bool(((fx >= 0) & (fx < src.cells.shape[0])).all() and src.cells[fx, fr].all())


def merge_chunks(items: list[tuple[object, Span, int]], width: int) -> list[tuple[object, Span]]:
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
        out += [(op, run) for run in runs(sorted(set(starts)))]
    return out


def neighbours(dest: np.ndarray, pad: np.ndarray, xb: np.ndarray) -> list[np.ndarray]:
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


def gather_chunks(need: np.ndarray, dx_: np.ndarray, dr: np.ndarray, src: Source, chunks: int,
                  width: int) -> tuple[list[Move], dict[tuple[bool, Span, Span], list[int]]]:
    """gather() for slots in `chunks` chunks of `width` crossbars each: for one chunk of
    each class of alike chunks, then made in the others (each gathered itself where its
    moves would straddle local copies or ride over missing cells)."""
    classes = chunk_classes(need, chunks, src)
    if classes is None:
        moves, pads, _ = gather(need, dx_, dr, src)
        return moves, pads
    n = len(need) // chunks
    made: list[tuple[Move, int]] = []  # a move, and how many chunks on
    filled: list[tuple[tuple[bool, Span, Span, tuple[int, ...]], int]] = []
    for rep, members in classes.items():
        part = slice(rep * n, (rep + 1) * n)
        got, holes, rides = gather(need[part], dx_[part], dr[part], src)
        for c, shift in members:
            moved = [moved_on(m, shift, c - rep, width, src) for m in got]
            if None not in moved and can_ride(rides, shift, src):
                made += [(m, c - rep) for m in moved]
                filled += [((low, xbs, r, tuple(ls)), c - rep) for (low, xbs, r), ls in holes.items()]
                continue
            own = slice(c * n, (c + 1) * n)
            got_c, holes_c, _ = gather(need[own], dx_[own], dr[own], src)
            made += [(m, 0) for m in got_c]
            filled += [((low, xbs, r, tuple(ls)), 0) for (low, xbs, r), ls in holes_c.items()]
        made += [(m, 0) for m in got]
        filled += [((low, xbs, r, tuple(ls)), 0) for (low, xbs, r), ls in holes.items()]
    moves = [dataclasses.replace(m, xbs=xbs)
             for m, xbs in merge_chunks([(m, m.xbs, on) for m, on in made], width)]
    pads: dict[tuple[bool, Span, Span], list[int]] = {}
    for (low, _, r, ls), xbs in merge_chunks([(key, key[1], on) for key, on in filled], width):
        pads.setdefault((low, xbs, r), []).extend(ls)
    return moves, pads


@dataclass(frozen=True)
class Classes:
    """A chunked placement's chunks in classes alike but for a crossbar and row offset:
    each chunk's cells (crossbar: the producer's, or the copy's it reads; row), the copy
    each reads, and the classes (lists of chunks, the first a class's representative)."""

    xs: list[np.ndarray]
    rs: list[np.ndarray]
    base: np.ndarray
    groups: list[list[int]]


def classes(need: np.ndarray, src: Source, chunks: int, width: int, first: int
            ) -> Classes | None:
    """The chunks' classes (for extracted); None unless they are a few (at most half
    as many as the chunks)."""
    n = len(need) // chunks
    blocks = need.reshape(chunks, n, -1)
    base = np.zeros(chunks, dtype=np.int64)
    if src.local is not None:  # the copy each chunk reads: its group's
        _, per_xb, lo = src.local
        base = lo + (first + np.arange(chunks) * width - lo) // per_xb * per_xb
    alike: dict[bytes, list[int]] = {}
    xs, rs = [], []
    for c in range(chunks):
        data = blocks[c] > 0
        slot = src.at[blocks[c][data]]
        xs.append(base[c] + src.sx[slot])
        rs.append(src.sr[slot])
        key = (data.tobytes() + np.where(data, 0, blocks[c]).tobytes()
               + (xs[c] - xs[c][:1]).tobytes() + (rs[c] - rs[c][:1]).tobytes())
        alike.setdefault(key, []).append(c)
    return Classes(xs, rs, base, list(alike.values())) if len(alike) <= chunks // 2 else None


def extracted(need: np.ndarray, dx_: np.ndarray, dr: np.ndarray, src: Source, kinds: Classes,
              width: int, first: int, near: bool, joined: bool, words: int = 1, length: int = 0
              ) -> tuple[list[Move], list[Move], dict[tuple[bool, Span, Span], list[int]]] | None:
    """For chunks whose slots read the same cells of the map but for one crossbar and
    row offset each (a convolution's chunks of one input channel's taps, the channels
    laid out across rows as well as crossbars), or a few classes of such chunks (8
    channels a chunk, 20 a crossbar: 5 classes), a canonical copy in every chunk first:
    the cells each chunk reads, moved to the same place in its own crossbars as its
    class's first chunk has them, so the gather is planned once a class and every move
    serves all its chunks. Each source crossbar's copy goes to the chunk's crossbar
    most of its readers are in (`near`: the gather is then mostly SHIFTs, but the
    copies scatter), or all in order from the chunk's first (one TRANSFER a chunk);
    `joined`: every crossbar's copy takes the rows of all (if they exist), so that the
    copies of a chunk are one strided TRANSFER, not one a crossbar. A class that reads
    more crossbars than a chunk has takes up to `words` home words (source crossbar k in
    word k // width of crossbar k % width; word w of crossbar x named x + w * `length`,
    as moves.on_words reads it): a map's phase planes into a layer's channel blocks.
    (The moves that make the copies, the gather from them, its fills); None when a
    class reads more crossbars than its words hold, or a cell that does not exist."""
    n = len(need) // len(kinds.base)
    blocks = need.reshape(len(kinds.base), n, -1)
    xs, rs, base = kinds.xs, kinds.rs, kinds.base
    extract: list[Move] = []
    moves: list[Move] = []
    pads: dict[tuple[bool, Span, Span], list[int]] = {}
    for group in kinds.groups:
        members = np.asarray(group)
        rep = group[0]
        data = blocks[rep] > 0
        x, row = np.stack([xs[c] for c in group]), np.stack([rs[c] for c in group])
        slot = src.at[blocks[rep][data]]
        u, rank = np.unique(x[0], return_inverse=True)
        part = slice(rep * n, (rep + 1) * n)
        many = -(-len(u) // width)  # home words the copy takes
        if many > words or (many > 1 and (near or not length)):
            return None
        if not len(u):  # chunks of padding lanes only: their fills
            got, holes, _ = gather(need[part], dx_[part], dr[part], src)
        else:
            at = first + rep * width
            place = (_homes(rank, dx_[rep * n + np.nonzero(data)[0]] - at, len(u), width)
                     if near else np.arange(len(u)))
            span = length if many > 1 else 0  # a word's crossbars, as names count them
            made = _class_copies(x, row, u, rank, place, base[members][:, None],
                                 first + members * width, src, width, joined, span)
            if made is None:
                return None
            extract += made[0]
            canon_x = np.zeros(len(src.sx), dtype=np.int64)
            canon_x[slot] = (place % width + place // width * span)[rank]
            got, holes, _ = gather(need[part], dx_[part], dr[part],  # (its own copy only:
                                   Source(src.at, canon_x, src.sr, made[1], 0,  # classes
                                          (0, width, at), at + (many - 1) * span + width,
                                          span))  # differ)
        alike: dict[object, list[range]] = {}
        for m in got:
            alike.setdefault(dataclasses.replace(m, xbs=Span(0, 1)), []).append(m.xbs.indices())
        for (low, xbs, rows_), lanes in holes.items():
            alike.setdefault((low, rows_, tuple(lanes)), []).append(xbs.indices())
        for key, parts in alike.items():
            for xbs in every_chunk(np.concatenate(parts), (members - rep) * width, width):
                if isinstance(key, Move):
                    moves.append(dataclasses.replace(key, xbs=xbs))
                else:
                    pads.setdefault((key[0], xbs, key[1]), []).extend(key[2])
    return _joined(extract), moves, pads


def _class_copies(x: np.ndarray, row: np.ndarray, u: np.ndarray, rank: np.ndarray,
                  place: np.ndarray, base: np.ndarray, starts: np.ndarray, src: Source,
                  width: int, joined: bool, span: int = 0
                  ) -> tuple[list[Move], np.ndarray] | None:
    """The moves that copy a class's cells into its chunks (from `starts`), source
    crossbar u[k] of its first chunk to crossbar place[k] of each (place[k] // width:
    the home word, its crossbars named `span` on), in its first chunk's rows (x, row:
    each member's cells; base: the copy each reads), and the cells the copies hold;
    None where a member's cell does not exist."""
    tx, tr = x[:, :1] - x[0, 0], row[:, :1] - row[0, 0]
    lo_r = np.full(len(u), src.cells.shape[1])
    hi_r = np.full(len(u), -1)
    np.minimum.at(lo_r, rank, row[0])
    np.maximum.at(hi_r, rank, row[0])
    if joined and all(_exist(u[k] + tx - base - src.x0, np.arange(lo_r.min(), hi_r.max() + 1)
                             + tr, src) for k in range(len(u))):  # the same rows from each
        lo_r[:], hi_r[:] = lo_r.min(), hi_r.max()
    words = -(-len(u) // width)
    own = np.zeros(((words - 1) * span + width, src.cells.shape[1]), dtype=bool)
    moves: list[Move] = []
    for k, at in enumerate(place.tolist()):
        if not _exist(u[k] + tx - base - src.x0, np.arange(lo_r[k], hi_r[k] + 1) + tr, src):
            return None
        word, home = divmod(at, width)
        own[home + word * span, lo_r[k]:hi_r[k] + 1] = True
        rows = Span(int(lo_r[k]), int(hi_r[k]) + 1)
        moves += [Move((), int(u[k] + t - d), int(-b), Span(d, d + 1), rows,
                       local=src.local is not None, word=word)
                  for d, t, b in zip((starts + home).tolist(), tx[:, 0].tolist(),
                                     tr[:, 0].tolist(), strict=True)]
    return moves, own


def _exist(fx: np.ndarray, fr: np.ndarray, src: Source) -> bool:
    """Whether cells (fx[i], fr[i, j]) all exist in the map or its copy (fx: (n, 1)
    crossbars less x0, fr: (n, rows))."""
    fx = np.broadcast_to(fx, fr.shape)
    return bool(((fx >= 0) & (fx < src.cells.shape[0])).all() and (fr >= 0).all()
                and (fr < src.cells.shape[1]).all() and src.cells[fx, fr].all())


def _homes(rank: np.ndarray, dest: np.ndarray, count: int, width: int) -> np.ndarray:
    """Where in its chunk each of `count` source crossbars gets its canonical copy:
    the crossbar most of the slots that read it are in (the gather is then a SHIFT
    there, no TRANSFER), distinct, by most readers first; the rest in the free ones."""
    pairs, n = np.unique(rank * width + dest, return_counts=True)
    place = np.full(count, -1)
    taken = np.zeros(width, dtype=bool)
    for pair in pairs[np.argsort(-n, kind="stable")].tolist():
        k, x = divmod(pair, width)
        if place[k] < 0 and not taken[x]:
            place[k], taken[x] = x, True
    rest = place < 0
    place[rest] = np.flatnonzero(~taken)[:int(rest.sum())]
    return place


def _joined(moves: list[Move]) -> list[Move]:
    """Single-crossbar moves alike but for their crossbar joined into runs."""
    alike: dict[tuple[int, int, Span, bool, int], list[int]] = {}
    for m in moves:
        alike.setdefault((m.dx, m.by, m.rows, m.local, m.word), []).append(m.xbs.start)
    return [Move((), dx, by, run, rows, local=local, word=word)
            for (dx, by, rows, local, word), xs in alike.items() for run in runs(sorted(xs))]
