"""The moves of a relayout (pimc.lower.relayout): a word moved by a crossbar and row
distance, or a padding fill, and how slot arrays group into such ops (runs of crossbars
with a step, evenly spaced rows)."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.uop import Span

PAD_LOWEST = -1  # an id the gather marks max pooling's padding with (ids start at 1)
COPIED = -2  # a slot a doubling copy fills


@dataclass(frozen=True)
class Move:
    """Lanes `lanes` in rows `rows` of crossbars `xbs` take the word of crossbar x + dx,
    row r - by (a TRANSFER when dx is not 0, a SHIFT when by is not 0): from the
    producer's word, its copy in dst's crossbars (`local`), or the same lanes (a
    doubling copy). With `src_step`, the source crossbars step by it from x + dx (one
    TRANSFER pairs two runs of different steps: a map's phase planes into a layer's
    phase blocks of another size)."""

    lanes: tuple[int, ...]
    dx: int
    by: int
    xbs: Span
    rows: Span
    local: bool = False  # from the copy of the producer's word in dst's crossbars
    src_step: int = 0  # 0: the destinations' step
    word: int = 0  # a copy into dst's crossbars: which of its home words it fills
    early: bool = False  # before its lane's other moves, which overwrite some of what it
    # writes (a run bridged over a few slots they fill: one move, not one a piece)

    @property
    def sources(self) -> Span:
        step = self.src_step or self.xbs.step
        first = self.xbs.start + self.dx
        return Span(first, first + (len(self.xbs) - 1) * step + 1, step)

    def cycles(self, bits: int, max_shift: int) -> int:
        """Its counted cycles, near enough to choose between plans: the TRANSFERs (their
        width and farthest pair, one a part where sources are among the destinations:
        emit_move) and the SHIFTs (in hops past the barrel shifter)."""
        n = bits * max(1, len(self.lanes))
        last = (len(self.xbs) - 1) * ((self.src_step or self.xbs.step) - self.xbs.step)
        far = max(abs(self.dx), abs(self.dx + last))  # the first pair's distance, the last's
        moved = n + far if self.dx or self.src_step else 0
        return self.parts() * (moved + (n * -(-abs(self.by) // max(1, max_shift))
                                        if self.by else 0))

    def parts(self) -> int:
        """The TRANSFERs it takes: a run whose sources are among its destinations is
        split into runs 2 dx apart, whose sources are none of them."""
        d, step, length = abs(self.dx), self.xbs.step, self.xbs.stop - self.xbs.start
        if self.src_step or not d or d % step or d >= length:
            return 1
        return len(range(0, min(2 * d, length), step))


@dataclass(frozen=True)
class Fill:
    """Lanes in rows `rows` of crossbars `xbs` hold zero, or the dtype's lowest value."""

    lanes: tuple[int, ...]
    xbs: Span
    rows: Span
    lowest: bool


def group_spans(dx: np.ndarray, by: np.ndarray, xb: np.ndarray, row: np.ndarray
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
        out += [((kdx, kby), run, rows) for run in runs(fields[5, g0:g1].tolist())]
    # ... the others (rows in several runs) one by one
    by_rows: dict[tuple[tuple[int, int], tuple[Span, ...]], list[int]] = {}
    for i in np.flatnonzero(~even).tolist():
        key = (int(dx[lo[i]]), int(by[lo[i]]))
        by_rows.setdefault((key, row_spans(row[lo[i]:hi[i]])), []).append(int(xb[lo[i]]))
    for (key, spans), xs in by_rows.items():
        for run in runs(xs):
            out += [(key, run, rows) for rows in spans]
    return out


def strided(moves: list[Move]) -> list[Move]:
    """The TRANSFERs among `moves` re-cut into runs whose destinations and sources each
    step evenly (another step than the destinations' where they do), crossbar pairs
    alike in lanes, rows and row shift: a lane's moves into every phase block of a layer
    from every phase plane of its map are then one TRANSFER, not one per phase. Runs
    whose sources meet their destinations (which the ISA refuses) stay pairs."""
    out = [m for m in moves if not m.dx and not m.src_step]
    pairs: dict[tuple[object, ...], list[tuple[int, int, int, int, int]]] = {}
    for m in moves:
        if m.dx or m.src_step:
            key = (m.lanes, m.by, m.rows, m.local, m.early)
            pairs.setdefault(key, []).append((m.xbs.start, len(m.xbs), m.xbs.step, m.dx,
                                              m.src_step or m.xbs.step))
    for (lanes, by, rows, local, early), parts in pairs.items():
        first, n, step, dx, sstep = np.array(parts, dtype=np.int64).T
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # each pair's index in its move
        xd = np.repeat(first, n) + k * np.repeat(step, n)
        xs = np.repeat(first + dx, n) + k * np.repeat(sstep, n)
        order = np.argsort(xd, kind="stable")
        xd, xs = xd[order], xs[order]
        dd, ds = np.diff(xd), np.diff(xs)
        ok = (dd > 0) & (ds > 0)
        new = np.r_[True, (dd[1:] != dd[:-1]) | (ds[1:] != ds[:-1]) | ~ok[1:]] if len(dd) else \
            np.zeros(0, dtype=bool)
        seg = np.flatnonzero(new)  # equal-step segments of the diffs
        end = np.r_[seg[1:], len(dd)] - 1  # last diff of each segment
        last = end[np.searchsorted(seg, np.arange(len(dd)), side="right") - 1] if len(dd) else end
        i, n = 0, len(xd)
        while i < n:
            j = int(last[i]) + 1 if i + 1 < n and ok[i] else i
            out += _paired(Move(lanes, 0, by, Span(0, 1), rows, local, early=early),
                           xd[i:j + 1], xs[i:j + 1])
            i = j + 1
    return out


def _paired(like: Move, d: np.ndarray, s: np.ndarray) -> list[Move]:
    """Moves like `like` from crossbars s to d (each evenly spaced, sorted): one, or
    where the steps differ and some crossbar is both a source and a destination, one
    per piece that _apart cuts (a pair within one crossbar a shift of its own)."""
    two = len(d) > 1 and d[1] - d[0] != s[1] - s[0]
    whole = [(0, len(d))]
    if two and not set(range(int(d[0]), int(d[-1]) + 1, int(d[1] - d[0]))).isdisjoint(
            range(int(s[0]), int(s[-1]) + 1, int(s[1] - s[0]))):
        whole = _apart(d, s)  # (most runs meet none of their sources)
    out = []
    for a, b in whole:
        step = int(d[a + 1] - d[a]) if b - a > 1 else 1
        sstep = int(s[a + 1] - s[a]) if two and b - a > 1 else 0
        out.append(Move(like.lanes, int(s[a] - d[a]), like.by,
                        Span(int(d[a]), int(d[b - 1]) + 1, step), like.rows, like.local, sstep,
                        like.word, like.early))
    return out


def on_words(m: Move, first: int, length: int) -> list[tuple[Move, int]]:
    """A move from a map copied over several home words of `length` crossbars from
    `first` (its sources numbered as if the copy ran on past them: crossbar first +
    w * length + i is word w's crossbar first + i), cut into moves from one word each:
    (move, word)."""
    d = np.asarray(m.xbs.indices())
    v = np.asarray(m.sources.indices()) - first
    word, real = v // length, first + v % length
    cuts = [0, *(np.flatnonzero(np.diff(word)) + 1).tolist(), len(d)]
    return [(piece, int(word[a])) for a, b in itertools.pairwise(cuts)
            for piece in _paired(m, d[a:b], real[a:b])]


def _apart(d: np.ndarray, s: np.ndarray) -> list[tuple[int, int]]:
    """A run of pairs (destinations d, sources s, each evenly spaced) cut into the
    fewest consecutive pieces in which no crossbar is both a source and a destination:
    each crossbar in both is an interval of pairs that a cut must split."""
    j = np.searchsorted(s, d)
    hit = np.flatnonzero((j < len(s)) & (s[np.minimum(j, len(s) - 1)] == d))
    cuts: list[int] = []
    for lo, hi in sorted(zip(np.minimum(hit, j[hit]).tolist(), np.maximum(hit, j[hit]).tolist(),
                             strict=True), key=lambda e: e[1]):
        if lo == hi:  # a pair within one crossbar: a piece of its own
            cuts += [lo, lo + 1]
        elif not cuts or cuts[-1] <= lo:
            cuts.append(hi)  # a piece starts at the later pair
    bounds = sorted({0, *cuts, len(d)})
    return list(itertools.pairwise(bounds))


def runs(xs: list[int], hint: tuple[int, ...] = ()) -> list[Span]:
    """Sorted crossbars as few evenly spaced runs: the best of runs of one step q in each
    residue class modulo q (q = 1..16, or a common gap between crossbars 1 to 16 apart
    in the list: a layout's crossbars repeat their pattern with some period), or greedy
    runs of any step (for short lists); `hint`: more steps to try."""
    if len(xs) == 1:  # (most calls: a plan asks for every crossbar's moves)
        return [Span(int(xs[0]), int(xs[0]) + 1)]
    arr = np.asarray(xs, dtype=np.int64)
    n = len(arr)
    gap = arr[1] - arr[0]
    if gap > 0 and np.all(arr[2:] - arr[1:-1] == gap):  # (most others are one run)
        return [Span(int(arr[0]), int(arr[-1]) + 1, int(gap))]
    lags = np.arange(1, min(16, n - 1) + 1)  # a pattern of `lag` crossbars repeating:
    i = np.arange(n)  # the most frequent gaps between crossbars `lag` apart in the list
    gaps = arr[np.minimum(i[None, :] + lags[:, None], n - 1)] - arr[None, :]
    wide = int(gaps.max()) + 1
    key, count = np.unique((lags[:, None] * wide + gaps)[i[None, :] + lags[:, None] < n],
                           return_counts=True)
    lag, gap_ = key // wide, key % wide
    first = np.lexsort((gap_, -count, lag))
    rank = np.arange(len(first)) - np.searchsorted(lag[first], lag[first])
    qs = np.union1d(np.r_[np.arange(1, min(16, n) + 1), np.asarray(hint, dtype=np.int64)],
                    gap_[first[rank < np.where(lag[first] == 1, 4, 1)]])
    back = arr[None, :] - qs[:, None]  # x - q: whether x begins a run of step q
    span = int(arr[-1] - arr[0]) + 1
    if span <= 64 * n:  # looked up in a bitmap of the crossbars
        held = np.zeros(span, dtype=bool)
        held[arr - arr[0]] = True
        back -= arr[0]
        starts = n - (held[np.clip(back, 0, span - 1)] & (back >= 0)).sum(axis=1)
    else:
        starts = (arr[np.minimum(np.searchsorted(arr, back), n - 1)] != back).sum(axis=1)
    best = int(np.argmin(starts))  # (the least step of the fewest runs)
    q, count_ = int(qs[best]), int(starts[best])
    if n <= 256:
        greedy = row_spans(arr)
        if len(greedy) < count_:
            return list(greedy)
    order = np.lexsort((arr, arr % q))  # by class, then crossbar
    cls = arr[order]
    cut = np.flatnonzero((np.diff(cls) != q) | (np.diff(cls % q) != 0)) + 1
    lo, hi = np.r_[0, cut], np.r_[cut, len(cls)] - 1
    return [Span(a, b + 1, q) for a, b in zip(cls[lo].tolist(), cls[hi].tolist(), strict=True)]


def every_chunk(xs: np.ndarray, offsets: np.ndarray, width: int) -> list[Span]:
    """A chunk's crossbars `xs` and theirs in the chunks `offsets` crossbars on (chunks
    `width` wide), as few runs as may be (a crossbar of every phase block, the blocks
    tiling the chunks: one run over all of them)."""
    every = np.sort((np.asarray(xs)[None, :] + np.asarray(offsets)[:, None]).ravel())
    gaps = np.unique(np.diff(offsets))
    return runs(every.tolist(), (*_divisors(width), *gaps[:1].tolist()))


@functools.cache
def _divisors(n: int) -> tuple[int, ...]:
    return tuple(q for q in range(1, n + 1) if n % q == 0)


def row_spans(rows: np.ndarray) -> tuple[Span, ...]:
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


def hop_rows(rows: Span | None, by: int, limit: int, nrows: int
             ) -> tuple[Span | None, Span | None]:
    """For a shift of `rows` by `by` in hops of `limit`: the rows between source and
    destination (the hops write), and those with a hop more on each side (they read)."""
    if rows is None:
        return None, None
    lo, hi = min(rows.start, rows.start - by), max(rows.stop, rows.stop - by)
    return Span(lo, hi), Span(max(0, lo - limit), min(nrows, hi + limit))


def shift_hops(b: ProgramBuilder, src: list[int], dst: list[int], by: int, temp: list[int],
               *, xbs: Span | None = None, rows: Span | None = None, pred: bool = False
               ) -> None:
    """SHIFT src -> dst by `by` rows. A shift wider than the barrel shifter's max_shift
    (FloatPIM's serves 7 x 7 kernels) is re-written in hops of at most max_shift through
    `temp` (contiguous free columns in every row, or dst itself when dst holds nothing
    else it needs), every hop a counted SHIFT: temp zeroed, the first hop from src's
    rows into temp, the equal ones between (over the band of rows from source to
    destination) as a LOOP of a one-SHIFT routine, so the program does not grow with
    the distance, the last into dst's rows (predicated with `pred`). Every element
    passes only through rows between its source and destination, inside the crossbar."""
    limit = b.arch.max_shift
    if abs(by) <= limit:
        b.shift(src, dst, by, xbs=xbs, rows=rows, pred=pred)
        return
    if limit < 1:
        raise PimError(f"a shift of {by} rows needs a barrel shifter (max_shift is 0)")
    step = limit if by > 0 else -limit
    hops = -(-abs(by) // limit)
    first = by - step * (hops - 1)  # the remainder rides on the first hop
    band, wide = hop_rows(rows, by, limit, b.arch.rows)
    if src != temp:  # (a caller hopping from temp itself has written all its rows)
        b.init(temp, 0, xbs=xbs, rows=wide)  # every row the banded hops read is written
    at = None if rows is None else Span(rows.start - by + first, rows.stop - by + first,
                                        rows.step)
    b.shift(src, temp, first, xbs=xbs, rows=at)
    middle = hops - 2
    if middle == 1:
        b.shift(temp, temp, step, xbs=xbs, rows=band)
    elif middle > 1:
        name = f"shift_{'down' if step > 0 else 'up'}{limit}_w{len(temp)}"
        if all(r.name != name for r in b.routines):
            note, b.source_note = b.source_note, name
            with b.routine(name, t=len(temp)) as f:
                cols = range(f["t"], f["t"] + len(temp))
                b.shift(cols, cols, step)
            b.source_note = note
        with b.loop(middle):
            b.call(name, t=temp[0], xbs=xbs, rows=band)
    b.shift(temp, dst, step, xbs=xbs, rows=rows, pred=pred)


def staged(m: Move, arch: Arch) -> bool:
    """Whether the move passes through the staging columns: a TRANSFER then a SHIFT, or
    a shift in hops (wider than the barrel shifter)."""
    return bool(m.dx and m.by) or abs(m.by) > arch.max_shift


def emit_move(b: ProgramBuilder, m: Move, words: list[int], lane: list[int], staging: int,
              arch: Arch, name: str) -> None:
    """One move's micro-ops: a SHIFT (in hops), or TRANSFERs (runs whose sources are
    among their destinations split apart), through the staging columns from `staging`
    on where the rows shift too."""
    if staging + (len(lane) if staged(m, arch) else 0) > arch.cols:
        raise PimError(f"{name}: no free columns to stage a move in")
    temp = list(range(staging, staging + len(lane)))
    if m.dx == 0:
        shift_hops(b, words, lane, m.by, temp, xbs=m.xbs, rows=m.rows)
        return
    d, step = abs(m.dx), m.xbs.step
    if m.src_step:  # (runs of two steps: strided() keeps them apart)
        spans = [(m.xbs, m.sources)]
    elif m.parts() > 1:  # sources among the destinations: destinations 2d apart,
        # whose sources (d away) are none of them
        spans = [(Span(m.xbs.start + u, m.xbs.stop, 2 * d),
                  Span(m.xbs.start + u + m.dx, m.xbs.stop + m.dx, 2 * d))
                 for u in range(0, min(2 * d, m.xbs.stop - m.xbs.start), step)]
    else:
        spans = [(m.xbs, Span(m.xbs.start + m.dx, m.xbs.stop + m.dx, step))]
    before = Span(m.rows.start - m.by, m.rows.stop - m.by, m.rows.step)
    for into, from_xbs in spans:
        if m.by == 0:
            b.transfer(from_xbs, into, words, lane, rows=m.rows)
        else:
            if abs(m.by) > arch.max_shift:  # hops read temp's rows around the move's
                b.init(temp, 0, xbs=into, rows=hop_rows(m.rows, m.by, arch.max_shift,
                                                        arch.rows)[1])
            b.transfer(from_xbs, into, words, temp, rows=before)
            shift_hops(b, temp, lane, m.by, temp, xbs=into, rows=m.rows)
