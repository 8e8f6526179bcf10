"""Wear levelling (FloatPIM Sec. 7, endurance management): the scratch columns a kernel
works in are the most written cells, so successive runs use them rotated across the free
columns of the crossbar, spreading the writes."""

from __future__ import annotations

from collections.abc import Callable

from pimc.isa import flow
from pimc.isa.errors import PimError
from pimc.isa.uop import Op, Transfer


def remap(op: Op, col: Callable[[int], int]) -> Op:
    """The op with every column c replaced by col(c) (a transposing TRANSFER writes a
    block whose columns follow from its rows: it cannot be moved)."""
    if isinstance(op, Transfer) and op.dst_row is not None:
        raise PimError(f"wear levelling cannot move the columns of a {op.opcode.value}")
    return flow.remap(op, col)


def repeat_runs(ops: tuple[Op, ...], runs: int, first_free: int, cols: int,
                level: bool) -> tuple[Op, ...]:
    """`runs` copies of a kernel's ops; with `level`, run r's scratch columns (those from
    first_free on) are rotated by r * (free columns // runs)."""
    free = cols - first_free
    out: list[Op] = []
    for r in range(runs):
        offset = r * (free // runs) if level else 0

        def col(c: int, offset: int = offset) -> int:
            return c if c < first_free else first_free + (c - first_free + offset) % free

        out += [remap(op, col) for op in ops] if offset else list(ops)
    return tuple(out)
