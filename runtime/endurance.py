"""Exact per-cell write counts, kept cheap for the common whole-column writes.

A write of every row, or of a row span, of some columns in a slice of crossbars is one
dictionary increment, keyed by what was written; a write under a data-dependent row mask
(a tag) is counted per row, in a dense counter made only for the columns that get one.
The per-cell totals are assembled once, at the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from runtime.bitops import unpack_rows

_Key = tuple[tuple[int, ...], int, int, int, range | None]  # cols, xb slice, rows


@dataclass(frozen=True)
class Endurance:
    max_writes_per_cell: int
    mean_writes_per_written_cell: float
    cells_written: int
    cell_writes: int


def _as_tuple(cols: int | np.ndarray) -> tuple[int, ...]:
    return (cols,) if isinstance(cols, int) else tuple(int(c) for c in np.atleast_1d(cols))


class WriteCounter:
    def __init__(self, cols: int, crossbars: int, rows: int) -> None:
        self.cols, self.crossbars, self.rows = cols, crossbars, rows
        self.events: Counter[_Key] = Counter()
        self.dense: dict[int, np.ndarray] = {}

    def add(self, cols: int | np.ndarray, xbs: slice, rows: range | None,
            mask: np.ndarray | None = None) -> None:
        """Count one write of `cols` in crossbars `xbs`: every row, a row span, or a mask."""
        if mask is None:
            if rows is not None and rows.start == 0 and rows.step == 1 and rows.stop >= self.rows:
                rows = None
            self.events[(_as_tuple(cols), xbs.start, xbs.stop, xbs.step or 1, rows)] += 1
            return
        per_row = unpack_rows(mask).astype(np.uint32)  # [xbs, R]
        for c in _as_tuple(cols):
            dense = self.dense.get(c)
            if dense is None:
                dense = self.dense[c] = np.zeros((self.crossbars, self.rows), dtype=np.uint32)
            dense[xbs] += per_row

    def summary(self) -> Endurance:
        # Whole-column writes: per (column, crossbar); span writes: per row span.
        full = np.zeros((self.cols, self.crossbars), dtype=np.int64)
        spans: dict[range, np.ndarray] = {}
        for (cols, start, stop, step, rows), n in self.events.items():
            table = full if rows is None else spans.setdefault(rows, np.zeros_like(full))
            table[list(cols), start:stop:step] += n
        special = set(self.dense)
        for table in spans.values():
            special.update(np.nonzero(table.any(axis=1))[0].tolist())
        best, written, total = 0, 0, 0
        plain = [c for c in np.nonzero(full.any(axis=1))[0].tolist() if c not in special]
        if plain:
            base = full[plain]
            best = int(base.max())
            written = int(np.count_nonzero(base)) * self.rows
            total = int(base.sum()) * self.rows
        for c in special:
            counts = np.repeat(full[c][:, None], self.rows, axis=1)
            for span, table in spans.items():
                counts[:, span.start:span.stop:span.step] += table[c][:, None]
            if c in self.dense:
                counts += self.dense[c]
            best = max(best, int(counts.max()))
            written += int(np.count_nonzero(counts))
            total += int(counts.sum())
        mean = total / written if written else 0.0
        return Endurance(best, mean, written, total)
