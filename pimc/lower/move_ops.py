"""A relayout's plan (pimc.lower.relayout) as micro-ops, and what it costs: the moves and
copies into a stage's placement of a value another stage left, the padding filled."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Span, TensorIO
from pimc.isa.view import lowest
from pimc.lower.fold import Store
from pimc.lower.moves import Move, emit_move, staged
from pimc.lower.relayout import Plan, pieces, plan, real_cycles


def first_free(ts: tuple[TensorIO, ...]) -> int:
    """The first column after a stage's placed tensors (its inputs and outputs): a
    TRANSFER lands there before its SHIFT, and the map's copies follow (emit_moves)."""
    return max((t.col + t.lanes * parse_dtype(t.dtype).bits for t in ts), default=0)


def _room(dst: TensorIO, staging: int, arch: Arch) -> int:
    """The words of dst's type free after the staging word: relayout.plan's room."""
    return (arch.cols - staging) // parse_dtype(dst.dtype).bits - 1


Key = tuple[TensorIO, TensorIO, int, int]  # both ends from the first crossbar of either,
# unnamed; max_shift; room
_PLANS: OrderedDict[Key, Plan] = OrderedDict()  # the plans made, the most recent last
KEEP = 512


def _key(src: TensorIO, dst: TensorIO, max_shift: int, room: int) -> tuple[Key, int]:
    at = min(src.xbs.start, dst.xbs.start)
    return (dataclasses.replace(relocated(src, -at), name=""),
            dataclasses.replace(relocated(dst, -at), name=""), max_shift, room), at


def placed_plan(src: TensorIO, dst: TensorIO, max_shift: int, room: int) -> Plan:
    """plan(src, dst), planned once per placement relative to the first crossbar of
    either: a plan moved by whole crossbars with both ends is the same plan moved (a
    network's repeated blocks, and the splits a compile within a memory counts before
    it links)."""
    key, at = _key(src, dst, max_shift, room)
    if key in _PLANS:
        _PLANS.move_to_end(key)
        return _moved(_PLANS[key], at)
    try:
        made = plan(*key)
    except PimError as exc:  # planned unnamed: the message names the placement again
        if not str(exc).startswith(":"):
            raise
        raise PimError(f"{dst.name}{exc}") from None
    _keep(key, made)
    return _moved(made, at)


def _keep(key: Key, made: Plan) -> None:
    _PLANS[key] = made
    while len(_PLANS) > KEEP:
        _PLANS.popitem(last=False)


def prefetch(pairs: list[tuple[TensorIO, TensorIO, int]], arch: Arch) -> None:
    """Make the plans of these (src, dst, staging) relayouts not made yet, in parallel
    over the processors this process may use (each plan is a pure function of its two
    ends, and planning is most of a large compile). Fewer than four, or one processor
    (or PIMC_JOBS=1): left to placed_plan, one at a time. A plan that fails here is
    made again there, to raise its error."""
    keys = list(dict.fromkeys(_key(s, d, arch.max_shift, _room(d, staging, arch))[0]
                              for s, d, staging in pairs))
    keys = [k for k in keys if k not in _PLANS]
    jobs = min(int(os.environ.get("PIMC_JOBS", len(os.sched_getaffinity(0)))), len(keys))
    if jobs < 2 or len(keys) < 4:
        return
    keys.sort(key=lambda k: -len(k[1].xbs) * k[1].lanes)  # the largest first
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        for key, made in zip(keys, pool.map(_plan_or_none, keys), strict=True):
            if made is not None:
                _keep(key, made)


def _plan_or_none(key: Key) -> Plan | None:
    try:
        return plan(*key)
    except PimError:
        return None


def shifted(span: Span, by: int) -> Span:
    return Span(span.start + by, span.stop + by, span.step)


def relocated(t: TensorIO, by: int) -> TensorIO:
    """A placement `by` crossbars further on."""
    return dataclasses.replace(t, xbs=shifted(t.xbs, by))


def _moved(p: Plan, at: int) -> Plan:
    """The plan's ops `at` crossbars further on (distances stay)."""
    if not at:
        return p

    def ms(moves: tuple[Move, ...]) -> tuple[Move, ...]:
        return tuple(dataclasses.replace(m, xbs=shifted(m.xbs, at)) for m in moves)

    return Plan(ms(p.moves), tuple(dataclasses.replace(f, xbs=shifted(f.xbs, at)) for f in p.fills),
                ms(p.copies), ms(p.spread),
                None if p.home_zero is None else (shifted(p.home_zero[0], at), *p.home_zero[1:]),
                ms(p.down), ms(p.extract))


def move_cycles(src: TensorIO, dst: TensorIO, staging: int, arch: Arch) -> int:
    """About the cycles emit_moves spends on plan(src, dst): its moves' and copies'
    (Move.cycles, as emitted), one a fill."""
    p = placed_plan(src, dst, arch.max_shift, _room(dst, staging, arch))
    bits = parse_dtype(dst.dtype).bits
    return (sum(real_cycles(m, dst, bits, arch.max_shift, (*p.spread, *p.extract))
                for m in (*p.spread, *p.extract, *p.moves, *p.down, *p.copies))
            + len(p.fills))


def emit_moves(b: ProgramBuilder, src: TensorIO, dst: TensorIO, staging: int,
               arch: Arch, folded: Store | None = None) -> int:
    """Append the micro-ops of plan(src, dst); columns from `staging` on are free in
    dst's crossbars (a TRANSFER lands there before its SHIFT). `folded`: src is a folded
    stage's map as if unfolded, kept there (pimc.lower.fold). The count of ops."""
    p = placed_plan(src, dst, arch.max_shift, _room(dst, staging, arch))
    assert all(dst.xbs.start <= m.xbs.start and m.xbs.stop <= dst.xbs.stop
               for m in (*p.spread, *p.extract, *p.moves, *p.fills, *p.copies)), \
        f"{dst.name}: a move leaves"
    dt = parse_dtype(dst.dtype)
    bits = dt.bits
    cols = dst.columns(bits)
    start = len(b.ops)

    def lanes(ls: tuple[int, ...]) -> list[int]:
        return [c for lane in ls for c in cols[lane * bits:(lane + 1) * bits]]

    def from_src(m: Move) -> list[tuple[Move, list[int]]]:
        """A move from the map, with the columns it reads (a folded map's: a move a
        pass's word)."""
        return [(m, src.columns(bits))] if folded is None else folded.pieces(m)

    words = 1 + max((m.word for m in p.spread), default=0)
    copied = 1 + max((m.word for m in p.extract), default=-1)  # the canonical copies' words
    homes = [list(range(staging + bits * (1 + w), staging + bits * (2 + w)))
             for w in range(words + copied)]  # the map's copies in dst's crossbars
    if (p.spread or p.extract) and homes[-1][-1] >= arch.cols:
        raise PimError(f"{dst.name}: no free columns for a copy of the map in each chunk")
    if p.home_zero is not None:
        b.init(homes[p.home_zero[2]], 0, xbs=p.home_zero[0], rows=p.home_zero[1])

    def read(m: Move, first: int = 0) -> list[tuple[Move, list[int]]]:
        """The pieces of a move, each with the columns it reads: a word of the map's
        copy over dst's home words (those of the canonical copies from `first`), or of
        the map."""
        if not m.local:
            return from_src(m)
        return [(piece, homes[first + w]) for piece, w in pieces(m, (*p.spread, *p.extract),
                                                                  dst)]

    for m in p.spread:
        for piece, cols_ in ([(m, homes[m.word])] if m.local else from_src(m)):
            emit_move(b, piece, cols_, homes[m.word], staging, arch, dst.name)
    for m in p.extract:  # each chunk's cells into its canonical copy (the last words)
        for piece, cols_ in read(m):
            emit_move(b, piece, cols_, homes[words + m.word], staging, arch, dst.name)
    for m in sorted(p.moves, key=lambda m: not m.early):  # bridged runs, then the rest
        for piece, cols_ in read(m, words if p.extract else 0):
            emit_move(b, piece, cols_, lanes(m.lanes), staging, arch, dst.name)
    width = max(1, (arch.cols - staging) // bits)  # lanes a staged copy can carry
    for m in p.down:
        _copy(b, m, lanes, width, staging, arch, dst.name)
    raw = int(dt.to_bits(np.array([lowest(np.dtype(dt.host))], dtype=dt.host))[0])
    for f in p.fills:  # the lowest value in every lane of the fill
        low = sum(raw << (k * bits) for k in range(len(f.lanes)))
        b.init(lanes(f.lanes), low if f.lowest else 0, xbs=f.xbs, rows=f.rows)
    for m in p.copies:
        _copy(b, m, lanes, width, staging, arch, dst.name)
    return len(b.ops) - start


def _copy(b: ProgramBuilder, m: Move, lanes: Callable[[tuple[int, ...]], list[int]],
          width: int, staging: int, arch: Arch, name: str) -> None:
    """A copy of dst's own lanes, in parts a staged move can carry."""
    step = width if staged(m, arch) else len(m.lanes)
    for k in range(0, len(m.lanes), step):
        part = lanes(m.lanes[k:k + step])
        emit_move(b, m, part, part, staging, arch, name)
