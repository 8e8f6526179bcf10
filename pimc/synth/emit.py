"""Emit an allocated netlist as micro-ops, with the fewest INITs that keep MAGIC legal.

Every NOR into a fresh value needs its cell initialised to 1 after the cell's previous
access and before the gate. Those windows are intervals over the gate sequence; INITs are
merged greedily (interval stabbing: place an INIT as late as possible, and let every later
window that still contains that point join it), which gives the fewest INIT ops, hence
the fewest bulk-INIT cycles, with exactly one initialisation per gate.
"""

from __future__ import annotations

from pimc.isa.builder import ProgramBuilder, Where
from pimc.synth.alloc import Allocation


def schedule_inits(alloc: Allocation) -> list[list[int]]:
    """For each gate, the columns to INIT right before it (most lists are empty)."""
    groups: list[list[int]] = [[] for _ in alloc.gates]
    last_access: dict[int, int] = {}
    open_slot = -1
    for i, g in enumerate(alloc.gates):
        col = alloc.cell[g.out]
        if g.acc_from is None:
            prev = last_access.get(col, -1)
            if open_slot > prev and open_slot >= 0:
                groups[open_slot].append(col)
            else:
                open_slot = i
                groups[i].append(col)
        for x in g.ins:
            last_access[alloc.cell[x]] = i
        last_access[col] = i
    return groups


def emit(alloc: Allocation, b: ProgramBuilder, *, xbs: Where = None, rows: Where = None,
         pred: bool = False) -> None:
    """Append the routine's micro-ops to `b`."""
    where = dict(xbs=xbs, rows=rows, pred=pred)
    if alloc.constants:
        cols, values = zip(*sorted(alloc.constants), strict=True)
        b.init(cols, sum(v << i for i, v in enumerate(values)), **where)
    for g, group in zip(alloc.gates, schedule_inits(alloc), strict=True):
        if group:
            b.init(sorted(group), (1 << len(group)) - 1, **where)
        b.nor(alloc.cell[g.out], *(alloc.cell[x] for x in g.ins),
              acc=g.acc_from is not None, **where)
