"""A lowered stage to a program: the crossbar layout, column allocation and emission of a
word-level program (routine calls, loops, moves)."""

from __future__ import annotations

from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Program, Span
from pimc.lower.arith import REGISTRY
from pimc.lower.layout import Lowered, layout
from pimc.lower.views import Placement
from pimc.lower.words import WordNet, allocate_words, emit_words, routines_used


def build_word_program(low: Lowered, placements: list[Placement], arch: Arch, file: str,
                       what: str, meta: tuple[tuple[str, str], ...]) -> Program:
    """Layout, word allocation and emission of a word-level program (pimc.lower)."""
    net: WordNet = low.net
    place = layout(low, arch, f"{file}: {what}", placements)
    b = ProgramBuilder(place.crossbars, arch=arch, source=file, meta=meta)
    b.inputs, b.outputs = list(place.inputs), list(place.outputs)
    rows = place.rows if len(place.rows) != arch.rows else None
    if place.padding:  # the last crossbar's rows beyond the tensors: zeros, so reading is legal
        for t in place.inputs:
            if not t.broadcast:
                cols = t.columns(parse_dtype(t.dtype).bits)
                b.init(cols, 0, xbs=place.crossbars - 1, rows=Span(*place.padding))
    routines = routines_used(tuple(net.steps), REGISTRY)
    scratch = arch.cols - max((r.starts().get("t", (0, 0))[1] for r in routines), default=0)
    product = scratch - max((net.width[s.out] for s in net.steps if s.kind == "mac"), default=0)
    if product <= place.first_scratch:
        raise PimError(f"{file}: {what} needs {place.first_scratch} columns for its placed "
                       f"inputs and results and {arch.cols - product} for routine scratch; "
                       f"crossbars have {arch.cols}")
    outputs = [(value, t.col) for t, (_, value) in zip(place.outputs, low.outputs, strict=True)]
    placed = allocate_words(net, outputs, place.first_scratch, product,
                            f"{file}: {what}")
    b.meta += (("columns", f"{placed.peak} of {arch.cols} for values, then "
                           f"{arch.cols - product} for routine scratch"
                + (f"; the most at {placed.peak_at}" if placed.peak_at else "")),)
    emit_words(placed, net, b, scratch, product, rows)
    b.routines += routines_used(placed.steps, REGISTRY)
    return b.build()
