"""Per-cell boolean flags (written, armed) that stay cheap for whole-column operations.

Each (column, crossbar) pair has a summary code: CLEAR (no row set), FULL (every row set) or
MIXED (see the bit-packed per-row map). Full-row ops only touch the small code array, so
strict checks cost almost nothing on the common path; masked ops fall back to the map.
"""

from __future__ import annotations

import numpy as np
from pimc.runtime.bitops import ALL

CLEAR, MIXED, FULL = np.uint8(0), np.uint8(1), np.uint8(2)  # ordered: all FULL <=> min is FULL

ColIndex = int | np.ndarray
XbIndex = slice


class CellFlags:
    def __init__(self, cols: int, crossbars: int, words: int) -> None:
        self.code = np.zeros((cols, crossbars), dtype=np.uint8)
        self.map = np.zeros((cols, crossbars, words), dtype=np.uint64)

    def _effective(self, cols: ColIndex, xbs: XbIndex) -> np.ndarray:
        """The per-row bits of the selection, whatever its summary codes say."""
        code = self.code[cols, xbs][..., None]
        return np.where(code == MIXED, self.map[cols, xbs], np.where(code == FULL, ALL, 0))

    def update(self, cols: ColIndex, xbs: XbIndex, mask: np.ndarray | None, value: bool) -> None:
        """Set (value=True) or clear the flag in the rows of `mask` (None: every row)."""
        if mask is None:
            self.code[cols, xbs] = FULL if value else CLEAR
            return
        new = self._effective(cols, xbs)
        new = (new | mask) if value else (new & ~mask)
        self.map[cols, xbs] = new
        # Re-summarise, so that e.g. an input written row by row reads as FULL again.
        self.code[cols, xbs] = np.where((new == ALL).all(axis=-1), FULL,
                                        np.where((new == 0).all(axis=-1), CLEAR, MIXED))

    def all_full(self, cols: ColIndex, xbs: XbIndex) -> bool:
        """Every row of the selection is set (answered from the summary codes alone)."""
        return bool(self.code[cols, xbs].min() == FULL)

    def all_set(self, cols: ColIndex, xbs: XbIndex, mask: np.ndarray | None) -> bool:
        code = self.code[cols, xbs]
        if code.min() == FULL:
            return True
        if mask is None and (code == CLEAR).any():
            return False
        want = ALL if mask is None else mask
        return not np.any(want & ~self._effective(cols, xbs))

    def first_unset(self, cols: np.ndarray, xbs: XbIndex, mask: np.ndarray | None,
                    ) -> tuple[int, int, int]:
        """(index into cols, index into xbs, row) of the first selected cell not set."""
        want = ALL if mask is None else mask
        bad = np.broadcast_to(want & ~self._effective(cols, xbs),
                              (len(cols), *self.map[0, xbs].shape))
        c, x, w = (int(v) for v in np.argwhere(bad != 0)[0])
        word = int(bad[c, x, w])
        return c, x, w * 64 + (word & -word).bit_length() - 1
