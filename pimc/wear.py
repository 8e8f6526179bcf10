"""Wear levelling (FloatPIM Sec. 7, endurance management): the scratch columns a kernel
works in are the most written cells, so successive runs use them rotated across the free
columns of the crossbar, spreading the writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from pimc.isa import flow
from pimc.isa.errors import PimError
from pimc.isa.uop import Call, Item, Loop, Op, Routine, Transfer


def remap(op: Op, col: Callable[[int], int]) -> Op:
    """The op with every column c replaced by col(c) (a transposing TRANSFER writes a
    block whose columns follow from its rows: it cannot be moved)."""
    if isinstance(op, Transfer) and op.dst_row is not None:
        raise PimError(f"wear levelling cannot move the columns of a {op.opcode.value}")
    return flow.remap(op, col)


def _remap_item(item: Item, col: Callable[[int], int]) -> Item:
    """A top-level item with its crossbar columns replaced by col(c): an op's columns, a
    call's bases (its routine's frame columns are relative to them)."""
    return flow.map_item(item, lambda op: remap(op, col), lambda c: dataclasses.replace(
        c, args=tuple(dataclasses.replace(a, base=col(a.base)) for a in c.args)))


def _segments(item: Item, routines: dict[str, Routine], count: int = 1
              ) -> Iterator[tuple[int, int]]:
    """(first column, width) of every run of crossbar columns a call binds, over all
    iterations of its loop (an argument strides with the loop around its call): a
    rotation must keep each one contiguous."""
    if isinstance(item, Loop):
        for i in item.body:
            yield from _segments(i, routines, item.count)
    elif isinstance(item, Call):
        widths = {s.name: s.width for s in routines[item.routine].segments}
        for a in item.args:
            yield a.base, (count - 1) * a.stride + widths[a.segment]


def _rotation(offset: int, first_free: int, free: int) -> Callable[[int], int]:
    def col(c: int) -> int:
        return c if c < first_free else first_free + (c - first_free + offset) % free
    return col


def _keeps_segments(spans: list[tuple[int, int]], offset: int, first_free: int,
                    free: int) -> bool:
    return all(b < first_free or (b - first_free + offset) % free + w <= free
               for b, w in spans)


def repeat_runs(items: tuple[Item, ...], runs: int, first_free: int, cols: int, level: bool,
                routines: tuple[Routine, ...] = ()) -> tuple[Item, ...]:
    """`runs` copies of a kernel's items; with `level`, run r's scratch columns (those
    from first_free on; the host's inputs and results lie below) are rotated by about
    r * (free columns // runs): the nearest larger rotation that keeps every routine
    call's columns contiguous."""
    if runs < 1:
        raise PimError(f"runs must be at least 1, not {runs}")
    free = cols - first_free
    table = {r.name: r for r in routines}
    spans = [s for i in items for s in _segments(i, table)]
    out: list[Item] = []
    for r in range(runs):
        offset = r * (free // runs) if level else 0
        if offset:
            offset = next((o % free for o in range(offset, offset + free)
                           if _keeps_segments(spans, o % free, first_free, free)), 0)
        col = _rotation(offset, first_free, free)
        out += [_remap_item(i, col) for i in items] if offset else list(items)
    return tuple(out)

