"""Hypothesis strategies for micro-op programs that pass the static checks."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from pimc.isa.arch import Arch, InitModel
from pimc.isa.check import op_problem
from pimc.isa.text import op_lines
from pimc.isa.uop import (
    Init,
    Nor,
    Op,
    Program,
    Rep,
    Search,
    SearchKind,
    Shift,
    Span,
    TensorIO,
    Transfer,
)

SMALL = Arch(rows=128, cols=32, partitions=4, max_crossbars=8, max_shift=100)
CROSSBARS = 3


@st.composite
def spans(draw: st.DrawFn, limit: int) -> Span:
    start = draw(st.integers(0, limit - 1))
    stop = draw(st.integers(start + 1, limit))
    return Span(start, stop, draw(st.integers(1, 3)))


def distinct_cols(arch: Arch, lo: int = 1, hi: int = 4) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(0, arch.cols - 1), min_size=lo, max_size=hi,
                    unique=True).map(tuple)


@st.composite
def ops(draw: st.DrawFn, arch: Arch = SMALL, crossbars: int = CROSSBARS) -> Op:
    common = dict(
        xbs=draw(spans(crossbars)),
        rows=draw(st.none() | spans(arch.rows)),
        pred=draw(st.booleans()),
        src=draw(st.sampled_from(["", "k.pk:1:2", 'odd "src" #1 \\ é'])),
    )
    kind = draw(st.sampled_from(["init", "init", "nor", "nor", "nor", "search", "shift",
                                 "transfer", "transpose"]))
    if kind == "init":
        cols = draw(distinct_cols(arch))
        op: Op = Init(cols=cols, value=draw(st.integers(0, (1 << len(cols)) - 1)),
                      rep=draw(reps(arch)), **common)
    elif kind == "nor":
        gate = draw(distinct_cols(arch, 2, 1 + arch.max_nor_inputs))
        op = Nor(out=gate[0], ins=gate[1:], acc=draw(st.booleans()), rep=draw(reps(arch)),
                 **common)
    elif kind == "search":
        cols = draw(distinct_cols(arch))
        skind = draw(st.sampled_from(list(SearchKind)))
        key = draw(st.integers(0, (1 << len(cols)) - 1)) if skind is SearchKind.EXACT else 0
        op = Search(cols=cols, kind=skind, key=key, **common)
    elif kind == "shift":
        n = draw(st.integers(1, 3))
        op = Shift(src_cols=draw(distinct_cols(arch, n, n)), dst_cols=draw(distinct_cols(arch, n, n)),
                   by=draw(st.integers(-arch.max_shift, arch.max_shift)), **common)
    else:
        n = draw(st.integers(1, 3))
        src_x = draw(st.integers(0, crossbars - 2))
        dst_x = draw(st.integers(src_x + 1, crossbars - 1))
        common.update(xbs=Span.one(src_x))
        if kind == "transfer" and crossbars >= 4:  # room for several crossbars each way
            length = draw(st.integers(1, crossbars // 4 + 1))
            step, dstep = draw(st.integers(1, 2)), draw(st.integers(1, 2))  # steps may differ
            far, dfar = (length - 1) * step + 1, (length - 1) * dstep + 1
            src_x = draw(st.integers(0, crossbars - far))
            dst_x = draw(st.integers(0, crossbars - dfar))
            common.update(xbs=Span(src_x, src_x + far, step))
            dst_xbs = Span(dst_x, dst_x + dfar, dstep)
        else:
            dst_xbs = Span.one(dst_x)
        if kind == "transpose":
            r0 = draw(st.integers(0, arch.rows - 1))
            length = draw(st.integers(1, min(arch.rows - r0, arch.cols)))
            common.update(rows=Span(r0, r0 + length), pred=False)
            op = Transfer(dst_xbs=Span.one(dst_x), src_cols=draw(distinct_cols(arch, n, n)),
                          dst_cols=(draw(st.integers(0, arch.cols - length)),),
                          dst_row=draw(st.integers(0, arch.rows - n)), **common)
        else:
            op = Transfer(dst_xbs=dst_xbs, src_cols=draw(distinct_cols(arch, n, n)),
                          dst_cols=draw(distinct_cols(arch, n, n)), **common)
    return op


def reps(arch: Arch) -> st.SearchStrategy[Rep]:
    return st.sampled_from([Rep(), Rep(), Rep(2, 2), Rep(4, 1), Rep(2, 3)])


def program(arch: Arch, crossbars: int, body: list[Op], inputs: tuple[TensorIO, ...] = (),
            outputs: tuple[TensorIO, ...] = ()) -> Program:
    prog = Program(arch=arch, crossbars=crossbars, ops=tuple(body), inputs=inputs,
                   outputs=outputs)
    return Program(**{**prog.__dict__, "lines": op_lines(prog)})


@st.composite
def programs(draw: st.DrawFn, arch: Arch = SMALL, crossbars: int = CROSSBARS,
             max_ops: int = 12) -> Program:
    """Statically valid programs over an input `x` that fills columns 0..7 of every cell."""
    model = draw(st.sampled_from(list(InitModel)))
    arch = Arch(**{**arch.__dict__, "init_model": model})
    x = TensorIO("x", "u8", (crossbars, arch.rows), Span(0, crossbars), Span(0, arch.rows), 0)
    shell = program(arch, crossbars, [])
    body = draw(st.lists(ops(arch, crossbars).filter(lambda o: op_problem(shell, o) is None),
                         max_size=max_ops))
    return program(arch, crossbars, _tagged(body), inputs=(x,))


def _tagged(body: list[Op]) -> list[Op]:
    """Ops predicated only once a SEARCH has set the tags (the checker refuses others)."""
    out, searched = [], False
    for op in body:
        out.append(dataclasses.replace(op, pred=False) if op.pred and not searched else op)
        searched = searched or isinstance(op, Search)
    return out
