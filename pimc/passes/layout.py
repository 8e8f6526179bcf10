"""Layout: which crossbars, rows and columns each tensor occupies.

Element i of every tensor is in row i % rows of crossbar i // rows (a tensor longer than
a crossbar takes whole crossbars); each value sits in adjacent columns, inputs first, then
results, then the scratch columns the allocator may use. Scalars are broadcast into every
row by the host; a scalar result is read from row 0 of crossbar 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pimc.isa.arch import Arch
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Span, TensorIO
from pimc.passes.lower import Lowered


@dataclass(frozen=True)
class Layout:
    crossbars: int
    rows: Span  # the rows every op acts on
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    first_scratch: int  # columns from here on are free for the allocator


def layout(low: Lowered, arch: Arch, what: str) -> Layout:
    rows = min(low.elements, arch.rows)
    if low.elements > arch.rows and low.elements % arch.rows:
        raise PimError(f"{what} has {low.elements} elements; more than one crossbar's "
                       f"{arch.rows} rows is supported only in whole crossbars yet")
    crossbars = math.ceil(low.elements / arch.rows)
    if crossbars > arch.max_crossbars:
        raise PimError(f"{what} needs {crossbars} crossbars, the architecture has "
                       f"{arch.max_crossbars}")
    span, everywhere = Span(0, rows), Span(0, crossbars)
    inputs = tuple(TensorIO(p.name, p.dtype, p.shape, everywhere, span, col,
                            broadcast=not p.shape) for p, col in low.inputs)
    outputs, col = [], low.next_col
    for r, _ in low.outputs:
        if r.shape:
            outputs.append(TensorIO(r.name, r.dtype, r.shape, everywhere, span, col))
        else:
            outputs.append(TensorIO(r.name, r.dtype, (), Span.one(0), Span.one(0), col))
        col += parse_dtype(r.dtype).bits
    if col > arch.cols:
        raise PimError(f"{what} needs {col} columns for its inputs and results alone; "
                       f"crossbars have {arch.cols}")
    return Layout(crossbars, span, inputs, tuple(outputs), col)
