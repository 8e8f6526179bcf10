"""Splitting a program's crossbars into contiguous shards, one program per shard.

Every micro-op acts within the crossbars it names, except a TRANSFER, which copies from
its source crossbars to its destination crossbars. A shard's program keeps each
top-level item clipped to the shard's crossbars and renumbered from 0; items with no
crossbar in the shard are left out. A TRANSFER whose source and destination of some
pair lie in different shards is left out of every shard: the driver (runtime/cluster.py)
executes it by moving the data between shards. The item positions of the whole program
are kept, so shards run the same segments and report failures in the same terms.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from pimc.isa.uop import Call, Item, Op, Program, Span, Transfer


@dataclass(frozen=True)
class Shard:
    lo: int  # first crossbar of the whole memory in this shard
    hi: int
    prog: Program  # crossbars renumbered from 0
    kept: tuple[int, ...]  # for each of prog's top-level items, its index in the whole program


def bounds(crossbars: int, n: int) -> list[tuple[int, int]]:
    """n contiguous, nearly equal ranges of crossbars (fewer when there are fewer)."""
    n = max(1, min(n, crossbars))
    cuts = [crossbars * k // n for k in range(n + 1)]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def clip(span: Span, lo: int, hi: int) -> Span | None:
    """The part of `span` inside lo..hi-1, renumbered from lo; None if empty."""
    first = span.start if span.start >= lo else span.start + -(-(lo - span.start) // span.step) * span.step
    last = min(span.last, hi - 1)
    if first > last:
        return None
    last -= (last - first) % span.step
    return Span(first - lo, last - lo + 1, span.step)


def _which(ranges: list[tuple[int, int]], xs: np.ndarray) -> np.ndarray:
    """The shard of each crossbar in xs."""
    return np.searchsorted(np.array([a for a, _ in ranges]), xs, side="right") - 1


def _pairs(op: Transfer) -> tuple[np.ndarray, np.ndarray]:
    src, dst = op.xbs, op.dst_xbs
    return (np.arange(src.start, src.stop, src.step), np.arange(dst.start, dst.stop, dst.step))


def crosses(op: Transfer, ranges: list[tuple[int, int]]) -> bool:
    """Some pair of the copy has its source and destination in different shards."""
    src, dst = _pairs(op)
    return bool(np.any(_which(ranges, src) != _which(ranges, dst)))


def _local_pairs(op: Transfer, lo: int, hi: int) -> Transfer | None:
    """The pairs of a copy that stays within shards, restricted to this shard."""
    src, dst = _pairs(op)
    pairs = np.flatnonzero((src >= lo) & (src < hi) & (dst >= lo) & (dst < hi))
    if not pairs.size:
        return None
    i, j = int(pairs[0]), int(pairs[-1])
    return dataclasses.replace(
        op, xbs=Span(op.xbs.start + i * op.xbs.step - lo, op.xbs.start + j * op.xbs.step - lo + 1,
                     op.xbs.step),
        dst_xbs=Span(op.dst_xbs.start + i * op.dst_xbs.step - lo,
                     op.dst_xbs.start + j * op.dst_xbs.step - lo + 1, op.dst_xbs.step))


def pieces(op: Transfer, ranges: list[tuple[int, int]]
           ) -> list[tuple[int, int, Transfer, Transfer]]:
    """The copy cut into runs of pairs with one source shard and one destination shard:
    (source shard, destination shard, the run as the source shard numbers its crossbars,
    the run as the destination shard does)."""
    src, dst = _pairs(op)
    s_of, d_of = _which(ranges, src), _which(ranges, dst)
    cuts = np.flatnonzero((np.diff(s_of) != 0) | (np.diff(d_of) != 0)) + 1
    out = []
    for i, j in itertools.pairwise([0, *cuts.tolist(), len(src)]):
        s, d = int(s_of[i]), int(d_of[i])
        src_span = Span(int(src[i]), int(src[j - 1]) + 1, op.xbs.step)
        dst_span = Span(int(dst[i]), int(dst[j - 1]) + 1, op.dst_xbs.step)
        shifted = [Span(sp.start - ranges[k][0], sp.stop - ranges[k][0], sp.step)
                   for sp, k in ((src_span, s), (dst_span, d))]
        out.append((s, d, dataclasses.replace(op, xbs=shifted[0], dst_xbs=dst_span),
                    dataclasses.replace(op, xbs=src_span, dst_xbs=shifted[1])))
    return out


def _clip_item(item: Item, lo: int, hi: int) -> Item | None:
    if isinstance(item, Transfer):
        return _local_pairs(item, lo, hi)
    if isinstance(item, Op):
        xbs = clip(item.xbs, lo, hi)
        return None if xbs is None else dataclasses.replace(item, xbs=xbs)
    if isinstance(item, Call):
        assert item.xbs is not None  # a top-level call names its crossbars
        xbs = clip(item.xbs, lo, hi)
        return None if xbs is None else dataclasses.replace(item, xbs=xbs)
    body = tuple(c for c in (_clip_item(c, lo, hi) for c in item.body) if c is not None)
    return dataclasses.replace(item, body=body) if body else None


def driver_items(prog: Program, ranges: list[tuple[int, int]]) -> list[int]:
    """Indices of the top-level TRANSFERs the driver executes (they cross shards)."""
    return [i for i, item in enumerate(prog.ops)
            if isinstance(item, Transfer) and crosses(item, ranges)]


def shard(prog: Program, ranges: list[tuple[int, int]], k: int,
          moved: set[int] | None = None, window: tuple[int, int] | None = None) -> Shard:
    """Shard k's program. `moved`: driver_items, if known; `window`: the first and last
    top-level item that touch the shard (none outside it does), to look at only those."""
    lo, hi = ranges[k]
    moved = set(driver_items(prog, ranges)) if moved is None else moved
    first, last = window or (0, len(prog.ops) - 1)
    last = min(last, len(prog.ops) - 1)  # an output lives past the last item
    kept, items = [], []
    for i in range(first, last + 1):
        clipped = None if i in moved else _clip_item(prog.ops[i], lo, hi)
        if clipped is not None:
            kept.append(i)
            items.append(clipped)
    sub = dataclasses.replace(prog, crossbars=hi - lo, ops=tuple(items), inputs=(),  # I/O: the
                              outputs=(), lines=tuple(prog.line_of(i) for i in kept))  # driver's
    return Shard(lo, hi, sub, tuple(kept))
