"""Exact per-cell write counts, kept cheap for whole-column writes.

Writes to every row of a column are counted per (column, crossbar); writes to a row span
per (span, column, crossbar); writes under a data-dependent row mask per row, in a dense
counter made only for the columns that get one. The per-cell totals are assembled once,
at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.bitops import unpack_rows


@dataclass(frozen=True)
class Endurance:
    max_writes_per_cell: int
    mean_writes_per_written_cell: float
    cells_written: int
    cell_writes: int


class WriteCounter:
    def __init__(self, cols: int, crossbars: int, rows: int) -> None:
        self.rows = rows
        self.full = np.zeros((cols, crossbars), dtype=np.int64)
        self.spans: dict[range, np.ndarray] = {}
        self.dense: dict[int, np.ndarray] = {}

    def add(self, cols: int | np.ndarray, xbs: slice, rows: range | None,
            mask: np.ndarray | None = None) -> None:
        """Count one write of `cols` in crossbars `xbs`: every row, a row span, or a mask."""
        if mask is not None:
            per_row = unpack_rows(mask).astype(np.uint32)  # [xbs, R]
            for c in np.atleast_1d(cols):
                dense = self.dense.get(int(c))
                if dense is None:
                    dense = self.dense[int(c)] = np.zeros(self.full.shape[1:] + (self.rows,),
                                                          dtype=np.uint32)
                dense[xbs] += per_row
        elif rows is None or (rows.start == 0 and rows.stop >= self.rows and rows.step == 1):
            self.full[cols, xbs] += 1
        else:
            table = self.spans.get(rows)
            if table is None:
                table = self.spans[rows] = np.zeros_like(self.full)
            table[cols, xbs] += 1

    def summary(self) -> Endurance:
        best, written, total = 0, 0, 0
        special = set(self.dense)
        for table in self.spans.values():
            special.update(np.nonzero(table.any(axis=1))[0].tolist())
        for c in np.nonzero(self.full.any(axis=1))[0]:
            if int(c) in special:
                continue
            base = self.full[c]
            best = max(best, int(base.max()))
            written += int(np.count_nonzero(base)) * self.rows
            total += int(base.sum()) * self.rows
        for c in special:
            counts = np.repeat(self.full[c][:, None], self.rows, axis=1)
            for span, table in self.spans.items():
                counts[:, span.start:span.stop:span.step] += table[c][:, None]
            if c in self.dense:
                counts += self.dense[c]
            best = max(best, int(counts.max()))
            written += int(np.count_nonzero(counts))
            total += int(counts.sum())
        mean = total / written if written else 0.0
        return Endurance(best, mean, written, total)
