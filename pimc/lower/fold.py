"""Folding: a stage computed in passes over the same crossbars, when the network does not
fit the memory with one row an output (FloatPIM computes a layer's outputs in turn,
its weights staying where they are written while the input windows are brought in).

The stage's space (its result, in the order its resident is kept) is cut along one
axis into `parts` bands. The stage is lowered for one band: its inputs' views reach the
band through a `slice` step, so the same program serves every pass, its inputs moved in
for that pass (the slice moved on), while the weights, which do not vary along the axis,
are written once. After each pass one TRANSFER keeps the band's result in a word of its
own in the store, crossbars after the band's that hold the whole map, a word a pass.
Readers plan their moves from the map as if it were unfolded (pass f's crossbars
numbered on from pass f - 1's) and cut each move into a move a word as it is emitted,
as they do for a map copied over several words (pimc.lower.moves.on_words).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from pimc.isa.dtypes import parse_dtype
from pimc.isa.uop import Span, TensorIO, ViewOp, apply_view, view_shape
from pimc.lower.factor import factor
from pimc.lower.moves import Move, on_words
from pimc.lower.views import View, element_ids


@dataclass(frozen=True)
class Fold:
    space: tuple[int, ...]  # the stage's result after `lead`, unfolded
    axis: int  # cut into bands along this axis
    parts: int  # the passes
    lead: View = ()  # the first steps of the stage's result view (its order of the
    # result; the rest, which lays it out in crossbars, gives way to the band's own)

    @property
    def width(self) -> int:
        """A band's extent along the axis (the last band padded where the passes do
        not divide it)."""
        return -(-self.space[self.axis] // self.parts)

    def band(self, f: int = 0) -> View:
        """The steps from the result to pass f's band of it: the band's elements in
        order, filling its crossbars' rows."""
        s, a, n = self.space, self.axis, self.width
        pad = (ViewOp("pad", (*s[:a], n * self.parts, *s[a + 1:])),) if n * self.parts > s[a] \
            else ()
        return (*self.lead, *pad, ViewOp("reshape", (*s[:a], self.parts, n, *s[a + 1:])),
                ViewOp("transpose", (a, *range(a), *range(a + 1, len(s) + 1))),
                ViewOp("slice", (0, f, f + 1)),
                ViewOp("reshape", (*s[:a], n, *s[a + 1:])))

    def passed(self, t: TensorIO, f: int) -> TensorIO:
        """An input of the band's program as pass f places it: its slice moved on."""
        steps = [i for i, op in enumerate(t.view) if op == ViewOp("slice", (0, 0, 1))]
        if len(steps) != 1:
            raise ValueError(f"{t.name}: not one band slice in its view")
        view = list(t.view)
        view[steps[0]] = ViewOp("slice", (0, f, f + 1))
        return dataclasses.replace(t, view=tuple(view))

    def stationary(self, t: TensorIO) -> bool:
        """Whether the second and the last pass place the elements of t the first does,
        where they place any (a weight that does not vary along the axis: written once,
        at set-up; a slot padding in a later pass computes nothing anyone reads). The
        fold's axis is one along which the channels do not vary (pimc.fit), so every
        pass holds the first's channels where it holds any; this checks the band
        program places its weights by them. (Checking every pass cost VGG-19's compile
        two minutes.)"""
        if not any(op.kind == "slice" for op in t.view):
            return True
        later = sorted({1, self.parts - 1})
        rows = factor(t.shape, self.passed(t, 0).view)
        if rows is not None:  # a value repeated down the rows (a weight over positions):
            # compared by which repeat each slot holds, not slot by slot (VGG-19's would
            # take 9 GB)
            return all((other := factor(t.shape, self.passed(t, f).view)) is not None
                       and np.all((other.row == rows.row) | (other.row < 0)) for f in later)
        ids = element_ids(t.shape)
        first = apply_view(ids, self.passed(t, 0).view)
        return all(np.all(((other := apply_view(ids, self.passed(t, f).view)) == first)
                          | (other == 0)) for f in later)

    def store(self, out: TensorIO, first: int, cols: int) -> Store:
        """Where the passes keep the band program's result `out`: from crossbar
        `first`, `cols` columns a row."""
        bits = parse_dtype(out.dtype).bits
        return Store(first, -(-out.placed_elements // len(out.rows)), bits, cols // bits)

    def stored(self, outs: tuple[TensorIO, ...], cols: int) -> int:
        """The crossbars of the store of a band program's results."""
        return sum(self.store(t, 0, cols).crossbars(self.parts) for t in outs)

    def unfolded(self, out: TensorIO, store: Store) -> TensorIO:
        """The band program's output `out` as the passes leave it in the store, as one
        placement: pass f's crossbars numbered on past pass f - 1's (Store.pieces)."""
        per = store.length * len(out.rows)
        band = math.prod(self.space) // self.space[self.axis] * self.width
        view = (*self.band()[:-2], ViewOp("reshape", (self.parts, band)),
                *((ViewOp("pad", (self.parts, per)),) if per > band else ()),
                ViewOp("reshape", (self.parts * per,)))
        if view_shape(out.shape, view) != (self.parts * per,):
            raise ValueError(f"{out.name}: its band does not fill its crossbars' slots")
        ids = element_ids(out.shape)
        whole = apply_view(ids, view).reshape(self.parts, per)
        for f in (0, self.parts - 1):  # the band program's own placement, pass by pass
            mine = apply_view(ids, self.passed(out, f).view).reshape(-1)
            if not np.array_equal(mine, whole[f, :mine.size]):
                raise ValueError(f"{out.name}: its band is not placed in the space's order")
        return dataclasses.replace(out, view=view, col=0, xbs=Span(
            store.first, store.first + self.parts * store.length))


@dataclass(frozen=True)
class Store:
    """The passes' results: pass f's word in crossbars first + (f // words) * length
    + i (i < length, the band's result crossbars), columns (f % words) * bits on."""

    first: int
    length: int
    bits: int
    words: int

    def crossbars(self, parts: int) -> int:
        return -(-parts // self.words) * self.length

    def at(self, f: int) -> tuple[Span, list[int]]:
        """Pass f's crossbars and columns."""
        x = self.first + f // self.words * self.length
        w = f % self.words
        return Span(x, x + self.length), list(range(w * self.bits, (w + 1) * self.bits))

    def pieces(self, m: Move) -> list[tuple[Move, list[int]]]:
        """A move from the unfolded map (Fold.unfolded) as moves from the store, each
        with the columns it reads."""
        out = []
        for piece, f in on_words(m, self.first, self.length):
            x, cols = self.at(f)
            out.append((dataclasses.replace(piece, dx=piece.dx + x.start - self.first), cols))
        return out
