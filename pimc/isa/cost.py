"""What one micro-op costs in cycles and time: the ISA's timing model (docs/isa.md).

Cycles do not depend on data, so they are a function of the op and the architecture;
energy depends on how many rows are active and on the bits written, so the runtime
computes it while executing (see runtime.machine).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pimc.isa.arch import Arch, InitModel
from pimc.isa.uop import Call, Init, Item, Loop, Nor, Op, Routine, Search, SearchKind, Shift, Transfer


@dataclass(frozen=True)
class OpTiming:
    cycles_bulk: int  # with bulk INIT (FloatPIM, MultPIM)
    cycles_per_cell: int  # with one cycle per initialised column (AritPIM)
    ns_per_cycle: float

    def cycles(self, model: InitModel) -> int:
        return self.cycles_bulk if model is InitModel.BULK else self.cycles_per_cell

    def latency_ns(self, model: InitModel) -> float:
        return self.cycles(model) * self.ns_per_cycle


def init_phases(op: Init) -> int:
    """A row-parallel write is a SET phase for the 1 bits and a RESET phase for the 0 bits."""
    ones = bin(op.value).count("1")
    return int(ones > 0) + int(ones < len(op.cols))


def search_cycles(op: Search) -> int:
    # Max/min search eliminates candidates one bit column at a time, MSB first.
    return 1 if op.kind is SearchKind.EXACT else len(op.cols)


def transfer_distance(op: Transfer) -> int:
    """Hops over the inter-block switches (neighbours are 1 apart)."""
    src, dst = op.xbs.indices(), op.dst_xbs.indices()
    # the distance is linear along the spans: the farthest pair is at one end
    return max(abs(dst[0] - src[0]), abs(dst[-1] - src[-1])) if len(src) else 0


def timing(op: Op, arch: Arch) -> OpTiming:
    if isinstance(op, Nor):
        return OpTiming(1, 1, arch.t_nor_ns)
    if isinstance(op, Init):
        return OpTiming(init_phases(op), len(op.cols), arch.t_write_ns)
    if isinstance(op, Search):
        n = search_cycles(op)
        return OpTiming(n, n, arch.t_search_ns)
    if isinstance(op, Shift):
        n = len(op.dst_cols)
        return OpTiming(n, n, arch.t_shift_ns)
    if isinstance(op, Transfer):
        # FloatPIM Sec. 5.1: N+1 cycles for N bits between neighbouring blocks, pipelined.
        n = len(op.src_cols) + transfer_distance(op)
        return OpTiming(n, n, arch.t_transfer_ns)
    raise TypeError(f"not a micro-op: {op!r}")


def program_cycles(ops: Iterable[Op], arch: Arch) -> int:
    """Cycles of a straight-line op sequence under the architecture's INIT model."""
    return sum(timing(op, arch).cycles(arch.init_model) for op in ops)


def item_counts(item: Item, routines: dict[str, Routine], arch: Arch,
                memo: dict[str, tuple[int, int]] | None = None) -> tuple[int, int]:
    """(micro-ops executed, cycles) of an op, call or loop: cycles do not depend on data,
    so a routine is costed once (memo) however often it is called."""
    memo = {} if memo is None else memo
    if isinstance(item, Loop):
        ops = cycles = 0
        for sub in item.body:
            o, c = item_counts(sub, routines, arch, memo)
            ops, cycles = ops + o, cycles + c
        return ops * item.count, cycles * item.count
    if isinstance(item, Call):
        if item.routine not in memo:
            memo[item.routine] = (0, 0)  # recursion is the checker's to report
            ops = cycles = 0
            for sub in routines[item.routine].body:
                o, c = item_counts(sub, routines, arch, memo)
                ops, cycles = ops + o, cycles + c
            memo[item.routine] = (ops, cycles)
        return memo[item.routine]
    return 1, timing(item, arch).cycles(arch.init_model)
