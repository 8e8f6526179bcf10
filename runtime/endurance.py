"""Exact per-cell write counts, kept cheap for the common whole-column writes.

A write of every row, or of a row span, of some columns in a slice of crossbars is one
increment of a dense (column, crossbar) table (one per row span); a write under a data-dependent row mask
(a tag) is counted per row, in a dense counter made only for the columns that get one.
The per-cell totals are assembled once, at the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pimc.runtime.bitops import unpack_rows

from pimc.isa.dtypes import parse_dtype
from pimc.isa.uop import Span, TensorIO


@dataclass(frozen=True)
class Endurance:
    max_writes_per_cell: int
    mean_writes_per_written_cell: float
    cells_written: int
    cell_writes: int
    # cells by writes: {"1": n, "2-3": n, "4-7": n, ...} (written cells only)
    histogram: dict[str, int] = field(default_factory=dict)


def _bucket(writes: np.ndarray) -> np.ndarray:
    """floor(log2(w)) of positive counts."""
    out = np.zeros(writes.shape, dtype=np.int64)
    w = writes.astype(np.int64)
    for k in range(1, 63):
        more = w >= (1 << k)
        if not more.any():
            break
        out[more] = k
    return out


def _label(k: int) -> str:
    return "1" if k == 0 else f"{1 << k}-{(2 << k) - 1}"


def _as_index(cols: int | np.ndarray | tuple[int, ...]) -> np.ndarray:
    return np.atleast_1d(np.asarray(cols, dtype=np.intp))


SPAN_TABLES = 64  # row spans counted in a (columns x crossbars) table of their own
# Beyond this many crossbars in one machine or count, those tables would outweigh the
# cells themselves (a whole network's memory): writes per cell are then not counted.
WEAR_CROSSBARS = 8192


def wear_fits(crossbars: int) -> bool:
    """Whether writes per cell are counted for a memory of this many crossbars (a whole
    program's: streamed and sharded runs count as one machine would)."""
    return crossbars <= WEAR_CROSSBARS


def wear_not_counted(crossbars: int) -> str:
    return (f"writes per cell not counted: {crossbars:,} crossbars, over the "
            f"{WEAR_CROSSBARS:,} whose write counts fit beside their cells")


class WriteCounter:
    """Dense counts: per (column, crossbar) for writes of every row, per row span for
    writes of some rows, per row for writes under a data-dependent mask."""

    def __init__(self, cols: int, crossbars: int, rows: int) -> None:
        self.cols, self.crossbars, self.rows = cols, crossbars, rows
        self.full = np.zeros((cols, crossbars), dtype=np.int64)
        # One (column, crossbar) table per row span, stacked so compiled code can index it.
        self.span_ids: dict[range, int] = {}
        self._tables = np.zeros((0, cols, crossbars), dtype=np.int64)  # with room to grow
        self.dense: dict[int, np.ndarray] = {}
        # Writes of row spans beyond the first SPAN_TABLES: (columns, crossbars, rows,
        # times), folded per touched (column, crossbar) when summarised (moves between
        # stages use many small spans: a table each would not fit).
        self.events: list[tuple[np.ndarray, np.ndarray, range, np.ndarray]] = []

    def span_id(self, rows: range) -> int:
        """The index of the table that counts writes of this row span."""
        sid = self.span_ids.get(rows)
        if sid is None:
            sid = self.span_ids[rows] = len(self.span_ids)
            if sid == len(self._tables):  # room grows by half: n tables copy O(n) in all
                grow = max(1, sid // 2)
                self._tables = np.concatenate([self._tables, np.zeros(
                    (grow, self.cols, self.crossbars), dtype=np.int64)])
        return sid

    @property
    def span_counts(self) -> np.ndarray:
        """One (column, crossbar) table of writes per row span, in order of first use."""
        return self._tables[:len(self.span_ids)]

    @property
    def spans(self) -> list[tuple[range, np.ndarray]]:
        return [(rows, self.span_counts[sid]) for rows, sid in self.span_ids.items()]

    def add(self, cols: int | np.ndarray | tuple[int, ...], xbs: slice, rows: range | None,
            mask: np.ndarray | None = None, times: int | np.ndarray = 1) -> None:
        """Count `times` writes of `cols` in crossbars `xbs`: every row, a row span, or a
        mask (times may give one count per column)."""
        index = _as_index(cols)
        if mask is None:
            if rows is not None and rows.start == 0 and rows.step == 1 and rows.stop >= self.rows:
                rows = None
            if rows is not None and rows not in self.span_ids and len(self.span_ids) >= SPAN_TABLES:
                xs = np.arange(self.crossbars)[xbs]
                t = np.broadcast_to(np.asarray(times), index.shape).astype(np.int64)
                self.events.append((index, xs, rows, t))
                return
            sid = -1 if rows is None else self.span_id(rows)  # may grow span_counts
            table = self.full if rows is None else self.span_counts[sid]
            add = np.asarray(times)
            table[index, xbs] += add[:, None] if add.ndim else add
            return
        per_row = unpack_rows(mask).astype(np.uint32)  # [xbs, R]
        for c in index.tolist():
            dense = self.dense.get(c)
            if dense is None:
                dense = self.dense[c] = np.zeros((self.crossbars, self.rows), dtype=np.uint32)
            dense[xbs] += per_row

    def _events(self) -> tuple[np.ndarray, np.ndarray]:
        """The (column, crossbar) pairs written by span events, as c * crossbars + x,
        and their writes per row."""
        if not self.events:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.rows), dtype=np.int64)
        keys = [(c[:, None] * self.crossbars + x[None, :]).ravel() for c, x, _, _ in self.events]
        pairs = np.unique(np.concatenate(keys))
        extra = np.zeros((len(pairs), self.rows), dtype=np.int64)
        for key, (_, x, rows, t) in zip(keys, self.events, strict=True):
            at = np.searchsorted(pairs, key)
            add = np.repeat(t, len(x))
            extra[at, rows.start:rows.stop:rows.step] += add[:, None]
        return pairs, extra

    def summary(self) -> Endurance:
        """Max, mean and histogram of writes per cell. Rows fall into classes by which
        row spans hold them; within a class every row of a (column, crossbar) has the same
        count, so each class is one (columns x crossbars) table weighted by its rows.
        Columns with per-row (masked) counts are added row by row."""
        spans = self.spans
        member = np.zeros((len(spans), self.rows), dtype=bool)
        for k, (span, _) in enumerate(spans):
            member[k, span.start:span.stop:span.step] = True
        classes, weight = np.unique(member.T, axis=0, return_counts=True) if spans else (
            np.zeros((1, 0), dtype=bool), np.array([self.rows]))
        dense = sorted(self.dense)
        plain = np.ones((self.cols, self.crossbars), dtype=bool)
        plain[dense] = False
        pairs, extra = self._events()
        plain[pairs // self.crossbars, pairs % self.crossbars] = False
        best, written, total = 0, 0, 0
        hist: Counter[int] = Counter()

        def tally(counts: np.ndarray, times: int) -> None:
            nonlocal best, written, total
            nz = counts[counts > 0]
            if not nz.size:
                return
            best = max(best, int(nz.max()))
            written += int(nz.size) * times
            total += int(nz.sum()) * times
            for k, n in enumerate(np.bincount(_bucket(nz))):
                if n:
                    hist[k] += int(n) * times

        for cls, times in zip(classes, weight, strict=True):
            table = self.full.copy()
            for k in np.flatnonzero(cls):
                table += spans[k][1]
            tally(table[plain], int(times))
        for c in dense:
            counts = np.repeat(self.full[c][:, None], self.rows, axis=1)
            for span, table in spans:
                counts[:, span.start:span.stop:span.step] += table[c][:, None]
            mine = pairs // self.crossbars == c
            counts[pairs[mine] % self.crossbars] += extra[mine]
            tally(counts + self.dense[c], 1)
        alone = ~np.isin(pairs // self.crossbars, dense)
        if alone.any():
            c, x = pairs[alone] // self.crossbars, pairs[alone] % self.crossbars
            counts = extra[alone] + self.full[c, x][:, None]
            for span, table in spans:
                counts[:, span.start:span.stop:span.step] += table[c, x][:, None]
            tally(counts, 1)
        mean = total / written if written else 0.0
        return Endurance(best, mean, written, total, {_label(k): hist[k] for k in sorted(hist)})


def host_writes(t: TensorIO) -> list[tuple[np.ndarray, Span, range]]:
    """The host's writes of a placed input as (columns, crossbars, rows): whole crossbars
    of slots as one span write, then the partly filled last one."""
    bits = parse_dtype(t.dtype).bits
    cols = np.array(t.columns(bits))
    slots = len(t.xbs) * len(t.rows) if t.broadcast else t.placed_elements // t.lanes
    per, xbs, rows = len(t.rows), t.xbs, t.rows
    full, rest = divmod(slots, per)
    out = []
    if full:
        out.append((cols, Span(xbs.start, xbs.start + (full - 1) * xbs.step + 1, xbs.step),
                    rows.indices()))
    if rest:
        x = xbs.start + full * xbs.step
        out.append((cols, Span.one(x), range(rows.start, rows.start + rest * rows.step,
                                             rows.step)))
    return out


def count_host_writes(writes: WriteCounter, t: TensorIO) -> None:
    for cols, xbs, rows in host_writes(t):
        writes.add(cols, xbs.as_slice(), rows)
