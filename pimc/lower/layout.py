"""Layout: which crossbars, rows and columns each tensor occupies.

Element i of every tensor is in row i % rows of crossbar i // rows (a tensor longer than
a crossbar spreads over several; the rows the last one does not fill are padding, which
the program zeroes in its input columns); each value sits in adjacent columns, inputs
first, then results, then the scratch columns the allocator may use. Scalars are
broadcast into every row by the host; a scalar result is read from row 0 of crossbar 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pimc.isa.arch import Arch
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Span, TensorIO, ViewOp

if TYPE_CHECKING:
    from pimc.ir import Param
    from pimc.lower.views import Placement
    from pimc.lower.words import Value, WordNet


@dataclass
class Lowered:
    """A stage lowered to words (pimc.lower.tensors): what layout places."""

    net: WordNet
    elements: int  # rows computed (1 for an all-scalar kernel)
    outputs: list[tuple[Param, Value]]
    next_col: int  # first column after the inputs
    max_rows: int | None = None  # rows per crossbar, if fewer than the architecture's
    result_views: dict[str, tuple[ViewOp, ...]] = field(default_factory=dict)  # host read-back
    host_values: dict[str, np.ndarray] = field(default_factory=dict)  # inputs it adds itself


@dataclass(frozen=True)
class Geometry:
    """How a kernel's elements spread: `rows` per crossbar over `crossbars`, the last one
    holding `tail` of them."""

    crossbars: int
    rows: int
    tail: int

    @property
    def padded(self) -> bool:
        return self.tail < self.rows


def geometry(elements: int, max_rows: int) -> Geometry:
    rows = min(elements, max_rows)
    crossbars = math.ceil(elements / rows)
    return Geometry(crossbars, rows, elements - (crossbars - 1) * rows)


@dataclass(frozen=True)
class Layout:
    crossbars: int
    rows: Span  # the rows every op acts on
    padding: tuple[int, int] | None  # rows of the last crossbar outside every tensor
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    first_scratch: int  # columns from here on are free for the allocator


def _placed(q: Placement, xbs: Span, rows: Span) -> TensorIO:
    """A scalar the view only replicates is one row-parallel write; others go as viewed."""
    p = q.param
    if not p.shape and q.lanes == 1:
        return TensorIO(p.name, p.dtype, (), xbs, rows, q.col, broadcast=True)
    view = () if all(step.kind == "reshape" for step in q.view) else q.view  # flat order kept
    return TensorIO(p.name, p.dtype, p.shape, xbs, rows, q.col, lanes=q.lanes, view=view)


def layout(low: Lowered, arch: Arch, what: str, placements: list[Placement]) -> Layout:
    geo = geometry(low.elements, min(low.max_rows or arch.rows, arch.rows))
    rows, crossbars = geo.rows, geo.crossbars
    if crossbars > arch.max_crossbars:
        raise PimError(f"{what} needs {crossbars} crossbars, the architecture has "
                       f"{arch.max_crossbars}")
    span, everywhere = Span(0, rows), Span(0, crossbars)
    inputs = tuple(_placed(q, everywhere, span) for q in placements)
    outputs, col = [], low.next_col
    for r, _ in low.outputs:
        outputs.append(TensorIO(r.name, r.dtype, r.shape, everywhere, span, col,
                                view=low.result_views.get(r.name, ())))
        col += parse_dtype(r.dtype).bits
    if col > arch.cols:
        raise PimError(f"{what} needs {col} columns for its inputs and results alone; "
                       f"crossbars have {arch.cols}")
    padding = (geo.tail, geo.rows) if geo.padded else None
    return Layout(crossbars, span, padding, inputs, tuple(outputs), col)
