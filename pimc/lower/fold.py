"""Folding: a stage computed in passes over the same crossbars, when the network does not
fit the memory with one row an output (FloatPIM computes a layer's outputs in turn,
its weights staying where they are written while the input windows are brought in).

The stage's space (its result, in the order its resident is kept) is cut along one
axis into `parts` bands. The stage is lowered for one band: its inputs' views reach the
band through a `slice` step, so the same program serves every pass, its inputs moved in
for that pass (the slice moved on), while the weights, which do not vary along the axis,
are written once. After each pass the result is copied into a word of its own at the
top of the rows (the store), so the whole map stays in the stage's crossbars, one word a
pass. Readers plan their moves from the map as if it were unfolded (pass f's crossbars
numbered on from pass f - 1's) and cut each move into a move a word as it is emitted,
as they do for a map copied over several words (pimc.lower.moves.on_words).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from pimc.isa.arch import Arch
from pimc.isa.uop import Span, TensorIO, ViewOp, apply_view, view_shape
from pimc.lower.views import View, element_ids


@dataclass(frozen=True)
class Fold:
    space: tuple[int, ...]  # the stage's space, unfolded
    axis: int  # cut into bands along this axis
    parts: int  # the passes

    def band(self, f: int = 0) -> View:
        """The steps from the space to pass f's band of it."""
        s, a, n = self.space, self.axis, self.space[self.axis] // self.parts
        return (ViewOp("reshape", (*s[:a], self.parts, n, *s[a + 1:])),
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
        """Whether every pass places the same elements of t where the first does (a
        weight that does not vary along the axis: written once, at set-up)."""
        if not any(op.kind == "slice" for op in t.view):
            return True
        ids = element_ids(t.shape)
        first = apply_view(ids, self.passed(t, 0).view)
        return all(np.array_equal(first, apply_view(ids, self.passed(t, f).view))
                   for f in range(1, self.parts))

    def unfolded(self, result_view: View, out: TensorIO) -> TensorIO:
        """The band program's output `out` as every pass leaves it, as one placement:
        pass f's crossbars numbered on past the last pass's (the store's word f of
        crossbar i is crossbar out.xbs.start + f * len(out.xbs) + i)."""
        per = len(out.xbs) * len(out.rows)
        band = math.prod(self.space) // self.parts
        s, a = self.space, self.axis
        view = (*result_view, *self.band()[:2], ViewOp("reshape", (self.parts, band)),
                *((ViewOp("pad", (self.parts, per)),) if per > band else ()),
                ViewOp("reshape", (self.parts * per,)))
        if view_shape(out.shape, view) != (self.parts * per,) or s[a] % self.parts:
            raise ValueError(f"{out.name}: its band does not fill its crossbars' slots")
        ids = element_ids(out.shape)
        whole = apply_view(ids, view).reshape(self.parts, per)
        for f in (0, self.parts - 1):  # the band program's own placement, pass by pass
            mine = apply_view(ids, self.passed(out, f).view).reshape(-1)
            if not np.array_equal(mine, whole[f, :mine.size]):
                raise ValueError(f"{out.name}: its band is not placed in the space's order")
        return dataclasses.replace(out, view=view, xbs=Span(
            out.xbs.start, out.xbs.start + self.parts * len(out.xbs)))


def below_store(arch: Arch, bits: int, parts: int) -> Arch:
    """The architecture a folded stage's program and moves see: the columns below its
    store (as many as the partitions divide)."""
    cols = (arch.cols - parts * bits) // arch.partitions * arch.partitions
    if cols <= 0:
        raise ValueError(f"no room for a store of {parts} words")
    return dataclasses.replace(arch, cols=cols)


def store_columns(cols: int, bits: int, parts: int) -> list[list[int]]:
    """The store: pass f's word, at the top of the rows."""
    first = cols - parts * bits
    return [list(range(first + f * bits, first + (f + 1) * bits)) for f in range(parts)]
