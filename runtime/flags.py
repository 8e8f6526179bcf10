"""Per-cell boolean flags (written, armed) that stay cheap for whole-column operations.

Each (column, crossbar) pair has a summary code: CLEAR (no row set), FULL (every row set),
NAMED + k (exactly the rows of row span k of the machine's span table) or MIXED (see the
bit-packed per-row map). Whole-column and row-span ops mostly touch only the small code
array, so strict checks cost almost nothing on the common paths; other masks fall back
to the map.
"""

from __future__ import annotations

import numpy as np
from pimc.runtime.bitops import ALL

CLEAR, MIXED, FULL, NAMED = np.uint8(0), np.uint8(1), np.uint8(2), 3
MAX_SPANS = 256 - NAMED  # spans beyond these are kept in the map


class SpanTable:
    """The row spans ops act on, each as a word mask, numbered in order of first use;
    `subset[a, b]` says span b's rows are all in span a."""

    def __init__(self, words: int) -> None:
        self.ids: dict[range, int] = {}
        self._masks = np.zeros((0, words), dtype=np.uint64)  # with room to grow
        self._subset = np.zeros((0, 0), dtype=np.bool_)

    @property
    def masks(self) -> np.ndarray:
        return self._masks[:len(self.ids)]

    @property
    def subset(self) -> np.ndarray:
        """The whole table, room to grow included (only ids in use are looked up): always
        C-contiguous, so the kernel is compiled for one array type. (A slice of it was
        contiguous or not with its size: two variants in numba's on-disk cache, once
        found mismatched, a segfault; concurrent processes, a Dask cluster's workers,
        compiling at once are the likely cause.)"""
        return self._subset

    def id(self, rows: range, mask: np.ndarray) -> int:
        sid = self.ids.get(rows)
        if sid is None:
            sid = len(self.ids)
            if sid == len(self._masks):  # room doubles: adding n spans costs O(n^2)
                grow = max(8, sid)
                self._masks = np.concatenate([self._masks, np.zeros((grow, self._masks.shape[1]),
                                                                    dtype=np.uint64)])
                subset = np.zeros((sid + grow, sid + grow), dtype=np.bool_)
                subset[:sid, :sid] = self._subset[:sid, :sid]
                self._subset = subset
            self._masks[sid] = mask
            m = self._masks[:sid + 1]
            self._subset[sid, :sid + 1] = ~np.any(m & ~mask[None], axis=-1)  # b in the new one
            self._subset[:sid + 1, sid] = ~np.any(mask[None] & ~m, axis=-1)  # the new one in a
            self.ids[rows] = sid
        return sid

ColIndex = int | np.ndarray
XbIndex = slice


class CellFlags:
    def __init__(self, cols: int, crossbars: int, words: int, spans: SpanTable) -> None:
        self.code = np.zeros((cols, crossbars), dtype=np.uint8)
        self.map = np.zeros((cols, crossbars, words), dtype=np.uint64)
        self.spans = spans

    def _effective(self, cols: ColIndex, xbs: XbIndex) -> np.ndarray:
        """The per-row bits of the selection, whatever its summary codes say."""
        code = self.code[cols, xbs]
        out = np.where(code[..., None] == MIXED, self.map[cols, xbs],
                       np.where(code[..., None] == FULL, ALL, np.uint64(0)))
        spans = code >= NAMED
        if spans.any():
            out[spans] = self.spans.masks[code[spans].astype(np.intp) - NAMED]
        return out

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
        return bool((self.code[cols, xbs] == FULL).all())

    def all_set(self, cols: ColIndex, xbs: XbIndex, mask: np.ndarray | None) -> bool:
        code = self.code[cols, xbs]
        if (code == FULL).all():
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
