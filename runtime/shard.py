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


def crosses(op: Transfer, ranges: list[tuple[int, int]]) -> bool:
    """Some pair of the copy has its source and destination in different shards."""
    def shard(x: int) -> int:
        return next(k for k, (a, b) in enumerate(ranges) if a <= x < b)
    return any(shard(s) != shard(d) for s, d in zip(op.xbs.indices(), op.dst_xbs.indices(),
                                                     strict=True))


def _local_pairs(op: Transfer, lo: int, hi: int) -> Transfer | None:
    """The pairs of a copy that stays within shards, restricted to this shard."""
    pairs = [i for i, (s, d) in enumerate(zip(op.xbs.indices(), op.dst_xbs.indices(), strict=True))
             if lo <= s < hi and lo <= d < hi]
    if not pairs:
        return None
    i, j = pairs[0], pairs[-1]
    return dataclasses.replace(
        op, xbs=Span(op.xbs.start + i * op.xbs.step - lo, op.xbs.start + j * op.xbs.step - lo + 1,
                     op.xbs.step),
        dst_xbs=Span(op.dst_xbs.start + i * op.dst_xbs.step - lo,
                     op.dst_xbs.start + j * op.dst_xbs.step - lo + 1, op.dst_xbs.step))


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


def shard(prog: Program, ranges: list[tuple[int, int]], k: int) -> Shard:
    lo, hi = ranges[k]
    moved = set(driver_items(prog, ranges))
    kept, items = [], []
    for i, item in enumerate(prog.ops):
        clipped = None if i in moved else _clip_item(item, lo, hi)
        if clipped is not None:
            kept.append(i)
            items.append(clipped)
    sub = dataclasses.replace(prog, crossbars=hi - lo, ops=tuple(items), inputs=(),  # I/O: the
                              outputs=(), lines=tuple(prog.line_of(i) for i in kept))  # driver's
    return Shard(lo, hi, sub, tuple(kept))
