"""Column allocation for a netlist: every value gets a crossbar column, reused once dead.

Linear scan in gate order. A cell is released after the last gate that reads it and goes
to the back of a FIFO, so the next allocation takes the cell dead the longest: that widens
the window in which emit.py can merge its re-INIT with others into one bulk INIT.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pimc.isa.errors import PimError
from pimc.synth.netlist import ONE, ZERO, Bit, Gate, Netlist, live_gates, when_values


@dataclass(frozen=True)
class Allocation:
    gates: tuple[Gate, ...]
    cell: dict[Bit, int]  # value -> column
    constants: tuple[tuple[int, int], ...]  # (output column, 0 or 1)
    peak_scratch: int
    src: dict[Bit, str] = field(default_factory=dict)  # value -> source annotation
    peak_at: Bit | None = None  # the value whose cell was the last new scratch column


def allocate(net: Netlist, outputs: Sequence[tuple[Bit, int]], scratch: Sequence[int],
             what: str = "routine", reserve: int = 32) -> Allocation:
    """Assign columns: inputs keep theirs, outputs get theirs, the rest come from `scratch`.

    A dead cell is reused only once `reserve` other dead cells are waiting (while the
    budget allows): each reused cell has then been dead for a while, which gives its
    re-INIT a long window to share a bulk INIT with others. Larger reserves trade scratch
    columns for fewer INIT cycles.
    """
    pinned: dict[Bit, int] = {}
    constants: list[tuple[int, int]] = []
    finals: list[Bit] = []
    for v, col in outputs:
        if v in (ZERO, ONE):
            constants.append((col, int(v == ONE)))
            continue
        if v in net.inputs or v in pinned:
            v = net.copy(v)
        pinned[v] = col
        finals.append(v)
    gates = live_gates(net, finals)
    # A value built by accumulation lives in the cell of its chain's first gate: pin that.
    chain_of = {g.out: g.acc_from for g in gates if g.acc_from is not None}
    for v, col in list(pinned.items()):
        while v in chain_of:
            v = chain_of[v]
            if v in pinned and pinned[v] != col:
                raise PimError(f"{what}: an output is accumulated into another output")
            pinned[v] = col
    last: dict[Bit, int] = {}
    for i, g in enumerate(gates):
        for x in g.reads():
            last[x] = i
    for v in finals:  # an output is read at the end
        last[v] = len(gates)
    cell: dict[Bit, int] = dict(net.inputs)
    free: deque[int] = deque()
    fresh = iter(scratch)
    peak = 0
    peak_at: Bit | None = None
    for i, g in enumerate(gates):
        if g.acc_from is not None:
            if g.acc_from in net.inputs or last.get(g.acc_from) != i:
                raise PimError(f"{what}: accumulate into a value that is an input or still "
                               "needed later")
            cell[g.out] = cell[g.acc_from]
        elif g.out in pinned:
            cell[g.out] = pinned[g.out]
        else:
            col = next(fresh, None) if len(free) <= reserve else None
            if col is not None:
                peak += 1
                peak_at = g.out
            elif free:
                col = free.popleft()
            else:
                raise PimError(f"{what} needs more than its {len(scratch)} scratch columns")
            cell[g.out] = col
        for x in set(g.ins) | set(when_values(g.when)):
            if x in (ZERO, ONE):
                continue
            if last[x] == i and x not in net.inputs and x not in pinned and x != g.acc_from:
                free.append(cell[x])
    missing = [v for v in finals if v not in cell and v not in pinned]
    assert not missing, missing
    return Allocation(tuple(gates), cell, tuple(constants), peak,
                      {g.out: net.src[g.out] for g in gates if g.out in net.src}, peak_at)
