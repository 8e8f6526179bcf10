"""Moves inside one iteration space (pimc.lower.tensors): a computed value that another
matrix product needs with lanes (a hidden layer feeding the next) is computed once in its
natural layout, then shifted into the lanes, in every crossbar with the same pattern at
once; a mixin of the tensor lowering."""

from __future__ import annotations

import itertools
import math

import numpy as np

from pimc.ir import Loc, Param
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import ViewOp, apply_view, view_shape
from pimc.lower.views import Placement, View
from pimc.lower.words import Value


class RelayoutError(PimError):
    """A computed value this lowering cannot move into another product's lanes inside one
    space (the compiler then gives each product a stage of its own)."""


class InSpaceMoves:
    """Mixin of the tensor lowering: its values moved into lanes within the space."""

    def natural(self, shape: tuple[int, ...]) -> View:
        """A value of `shape` laid out in the space as it is: element (..., j) in slot
        (..., j), the space's last axis possibly longer (padding)."""
        space = self.space
        if shape[:-1] != space[:-1] or not shape or shape[-1] > space[-1]:
            raise RelayoutError(f"a matrix product's result of shape {list(shape)} feeds another "
                           f"one in a space {list(space)} it does not fit")
        return (ViewOp("pad", space), ViewOp("reshape", (*space, 1)))

    def _relayout(self, n: int, shape: tuple[int, ...], view: View, chunked: bool
                  ) -> list[Value]:
        """A computed value needed with lanes (a matrix product's output feeding another):
        computed once in its natural layout (valid in chunk 0), copied to the other chunks'
        crossbars by a TRANSFER tree if they have their own, then moved into the lanes:
        by doubling SHIFTs where each segment needs one value (_broadcast_in_segments),
        else by one SHIFT per lane and row distance over the strided rows that need it, in
        every crossbar with the same pattern at once."""
        label = self.k.node(n).loc.label or self.k.node(n).op
        if any(step.kind == "window" for step in view):
            raise PimError(f"{label}: a convolution or pooling window over a computed feature "
                           "map is not supported yet (windows over the network's input are)")
        try:
            natural = self.natural(shape)
        except RelayoutError as exc:
            raise RelayoutError(f"{label}: {exc}") from None
        (word,) = self.words(n, natural)
        rows_per = self.geo.rows
        spread = self.chunks > 1 and self.geo.crossbars > 1  # chunks in their own crossbars
        if spread:
            word = self._copy_to_chunks(word)
        ids = np.arange(1, math.prod(shape) + 1).reshape(shape)  # 0 marks padding
        have = apply_view(ids, natural).reshape(-1)
        slot_of = np.zeros(ids.size + 1, dtype=np.int64)
        slot_of[have[have > 0]] = np.flatnonzero(have > 0)
        lanes_in = view_shape(shape, view)[-1]
        need = apply_view(ids, (*view, *self.over_chunks(lanes_in, chunked)))
        need = need.reshape(-1, need.shape[-1])  # [slot, lane]
        node = self.k.node(n)
        lanes = []
        for lane in range(need.shape[1]):
            self.net.annotation = f"{node.loc} relayout"
            dest = np.flatnonzero(need[:, lane])
            source = slot_of[need[dest, lane]]
            if spread:  # from the copy in the destination's own chunk
                source = source + dest // self.slots * self.slots
            if np.any(source // rows_per != dest // rows_per):
                raise RelayoutError("a relayout between crossbars is not supported yet")
            doubled = self._broadcast_in_segments(word, dest, source)
            if doubled is not None:
                lanes.append(doubled)
                continue
            lanes.append(self._shifted_in(word, dest, source - dest))
        return lanes

    def _shifted_in(self, word: Value, dest: np.ndarray, delta: np.ndarray) -> Value:
        """A value holding, in each slot of `dest`, word's value `delta` slots away (zero
        elsewhere): one SHIFT per distance and crossbar row pattern."""
        value = self.net.fill(0, self.net.width[word], None)
        for (d, rows), xbs in _shift_groups(dest, delta, self.geo.rows):
            with self.net.limited(xbs=xbs):
                value = self.net.rows_from(word, d, rows, into=value)
        return value

    def _broadcast_in_segments(self, word: Value, dest: np.ndarray, source: np.ndarray
                               ) -> Value | None:
        """When every segment of the space's last axis (P slots) needs one source value in
        its first W slots: one SHIFT into each segment's first slot, then log2(W) doubling
        SHIFTs, each predicated on the rows whose index in the segment is in [t, 2t) (a
        SEARCH on a row-index column the host writes). None if the pattern differs."""
        per = self.space[-1] if self.space else 1
        width = int(np.max(dest % per)) + 1 if len(dest) else 0
        segments, at = np.unique(dest // per, return_index=True)
        counts = np.bincount(dest // per)[segments]
        one_source = np.all(source == source[at][np.searchsorted(segments, dest // per)])
        if (width < 4 or (self.chunks > 1 and self.slots % per) or not one_source
                or np.any(counts != width)):
            return None
        index = self.row_index(per)
        starts = segments * per
        value = self._shifted_in(word, starts, source[at] - starts)
        everywhere = (0, self.geo.rows)
        q = 0
        while 1 << q < width:
            when = (index, 1, q)  # bit q set, the bits above clear: [2^q, 2^(q+1))
            value = self.net.rows_from(value, -(1 << q), everywhere, into=value, when=when)
            q += 1
        return value

    def row_index(self, per: int) -> Value:
        """A column word the host writes: each row's index in its segment of `per` slots."""
        if self.index is None:
            bits = max(1, (per - 1).bit_length())
            total = self.chunks * self.slots if self.chunks > 1 else self.size
            param = Param("row_index_", f"u{bits}", (total,), self.k.params[0].loc
                          if self.k.params else Loc("", 0, 0))
            self.placements[("row_index_", ())] = Placement(param, self.col, 1, ())
            self.constants["row_index_"] = (np.arange(total) % per).astype(
                parse_dtype(param.dtype).host)
            self.index = self.net.input(self.col, bits)
            self.col += bits
        return self.index

    def _copy_to_chunks(self, word: Value) -> Value:
        """Chunk 0's value copied into every chunk, doubling: by SHIFTs into the chunks
        packed in the first crossbar (chunk_geometry), then by TRANSFERs of whole crossbars
        (the chunks' own crossbars, or the packed ones)."""
        word = self.net.copy(word)  # private cells the copies may take over
        packed = self.geo.rows // self.slots
        if packed > 1:
            have = 1
            while have < packed:
                word = self.net.rows_from(word, -have * self.slots,
                                          (have * self.slots, 2 * have * self.slots), into=word)
                have *= 2
            return self._copy_crossbars(word, 1, self.geo.crossbars)
        return self._copy_crossbars(word, self.geo.crossbars // self.chunks, self.chunks)

    def _copy_crossbars(self, word: Value, per: int, copies: int) -> Value:
        """The first `per` crossbars' word doubled into `copies` blocks of `per`."""
        have = 1
        while have < copies:
            count = min(have, copies - have)
            word = self.net.crossbars_from(word, -have * per, (have * per, (have + count) * per),
                                           (0, self.geo.rows), into=word)
            have += count
        return word


def _shift_groups(dest: np.ndarray, delta: np.ndarray, rows_per: int
                  ) -> list[tuple[tuple[int, tuple[int, int, int]], tuple[int, int] | None]]:
    """Destination slots grouped into SHIFT ops: (distance, strided rows), and the run of
    crossbars that share that row pattern (None: the only crossbar)."""
    by_pattern: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    for d in np.unique(delta):
        slots = dest[delta == d]
        for xb in np.unique(slots // rows_per):
            rows = tuple(int(r) for r in slots[slots // rows_per == xb] % rows_per)
            by_pattern.setdefault((int(d), rows), []).append(int(xb))
    out = []
    for (d, rows), xbs in by_pattern.items():
        step = rows[1] - rows[0] if len(rows) > 1 else 1
        if any(b - a != step for a, b in itertools.pairwise(rows)):
            raise RelayoutError("a relayout whose rows are not evenly spaced is not supported yet")
        span = (rows[0], rows[-1] + 1, step)
        start = 0
        for i in range(1, len(xbs) + 1):  # runs of consecutive crossbars
            if i == len(xbs) or xbs[i] != xbs[i - 1] + 1:
                out.append(((d, span), (xbs[start], xbs[i - 1] + 1)))
                start = i
    if max((x[1] for _, x in out), default=1) <= 1:
        return [(key, None) for key, _ in out]
    return out
