"""Costs from a program's structure, without executing it (`pimc run --count-only`).

Cycles, latency, op counts, the columns and crossbars used and host traffic do not depend
on data: they come out equal to what the machine counts when it runs. Energy and writes
per cell do depend on data where an op is predicated (only tagged rows act) and, for
energy, where SHIFT or TRANSFER write data (a 1 costs E_set, a 0 E_reset): there the count
gives bounds, [lo, hi], and reports hi. A routine is summarised once per crossbar and row
count it runs on; a loop multiplies, so counting takes time in proportion to the text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pimc.runtime.endurance import WriteCounter, count_host_writes, wear_fits
from pimc.runtime.hostio import row_writes, slot_count
from pimc.runtime.stats import HostIO, Stats, aligned

from pimc.isa.arch import Arch
from pimc.isa.check import rep_columns, validate
from pimc.isa.cost import timing
from pimc.isa.dtypes import parse_dtype
from pimc.isa.flow import frame_bases, written_columns
from pimc.isa.uop import Call, Init, Item, Loop, Nor, Op, Program, Routine, Search, Shift, Span, Transfer


@dataclass
class Block:
    """What a block of items costs where it runs on a given number of active rows."""

    ops: Counter[str] = field(default_factory=Counter)
    cycles: Counter[str] = field(default_factory=Counter)
    cycles_bulk: int = 0
    cycles_per_cell: int = 0
    latency_ns: float = 0.0
    energy_lo: Counter[str] = field(default_factory=Counter)
    energy_hi: Counter[str] = field(default_factory=Counter)
    row_ops: int = 0
    writes: Counter[int] = field(default_factory=Counter)  # frame column -> writes per row
    cols: set[int] = field(default_factory=set)  # frame columns touched

    def scaled(self, active: int) -> Block:
        """This one-row block on `active` rows."""
        b = Block(Counter(self.ops), Counter(self.cycles), self.cycles_bulk,
                  self.cycles_per_cell, self.latency_ns,
                  Counter({k: v * active for k, v in self.energy_lo.items()}),
                  Counter({k: v * active for k, v in self.energy_hi.items()}),
                  self.row_ops * active, self.writes, self.cols)
        return b

    def add(self, other: Block, times: int = 1, col: dict[int, int] | None = None) -> None:
        """Fold `other` in `times` over, its columns renamed by `col`."""
        for mine, theirs in ((self.ops, other.ops), (self.cycles, other.cycles),
                             (self.energy_lo, other.energy_lo), (self.energy_hi, other.energy_hi)):
            for k, v in theirs.items():
                mine[k] += v * times
        self.cycles_bulk += other.cycles_bulk * times
        self.cycles_per_cell += other.cycles_per_cell * times
        self.latency_ns += other.latency_ns * times
        self.row_ops += other.row_ops * times
        rename = (lambda c: c) if col is None else col.__getitem__
        for c, n in other.writes.items():
            self.writes[rename(c)] += n * times
        self.cols.update(map(rename, other.cols))


def op_block(op: Op, arch: Arch, active: int) -> Block:
    """One op's cost on `active` selected rows (summed over its crossbars)."""
    b = Block()
    t, kind = timing(op, arch), op.opcode.value
    b.ops[kind] = 1
    b.cycles[kind] = t.cycles(arch.init_model)
    b.cycles_bulk, b.cycles_per_cell = t.cycles_bulk, t.cycles_per_cell
    b.latency_ns = t.latency_ns(arch.init_model)
    reps = getattr(getattr(op, "rep", None), "count", 1)
    if isinstance(op, Nor):
        hi = arch.e_nor_fj * active * reps
        lo = 0.0 if op.pred else hi
        b.row_ops = active * reps
        b.cols.update(*rep_columns(arch, (op.out, *op.ins), op.rep))
        written = [cols[0] for cols in rep_columns(arch, (op.out,), op.rep)]
    elif isinstance(op, Init):
        cols = [c for r in rep_columns(arch, op.cols, op.rep) for c in r]
        ones = sum(op.value >> i & 1 for i in range(len(op.cols))) * reps
        hi = active * (ones * arch.e_set_fj + (len(cols) - ones) * arch.e_reset_fj)
        lo = 0.0 if op.pred else hi
        b.cols.update(cols)
        written = cols
    elif isinstance(op, Search):
        hi = arch.e_search_fj * active * t.cycles_bulk
        lo = 0.0 if op.pred else hi
        b.cols.update(op.cols)
        written = []
    else:
        assert isinstance(op, Shift | Transfer)
        cells = active * len(op.dst_cols)
        hi, lo = cells * arch.e_set_fj, (0.0 if op.pred else cells * arch.e_reset_fj)
        b.cols.update(op.src_cols, written_columns(op))
        written = list(written_columns(op))
    b.energy_lo[kind], b.energy_hi[kind] = lo, hi
    for c in written:
        b.writes[c] += 1
    return b


class Walker:
    """Walks a program's structure, summarising each routine once per active-row count."""

    def __init__(self, prog: Program) -> None:
        self.prog, self.arch = prog, prog.arch
        self.routines = {r.name: r for r in prog.routines}
        self.memo: dict[tuple[str, int], Block] = {}

    def routine(self, r: Routine, active: int) -> Block:
        """A routine's cost on `active` rows: its body acts on the call's rows, so every
        energy and bit-operation count is the one-row summary times `active`."""
        key = (r.name, active)
        if key not in self.memo:
            unit = self.memo.get((r.name, 1))
            if unit is None:
                unit = self.memo[(r.name, 1)] = Block()
                self.body(unit, r.body, 1)
            self.memo[key] = unit.scaled(active)
        return self.memo[key]

    def body(self, b: Block, items: tuple[Item, ...], active: int) -> None:
        """Items of a routine body: frame columns, every op on the call's rows."""
        for item in items:
            if isinstance(item, Loop):
                for i in range(item.count):  # strided columns: each iteration renames
                    for call in item.body:
                        self.call_in_frame(b, call, active, i)
            elif isinstance(item, Call):
                self.call_in_frame(b, item, active, 0)
            else:
                b.add(op_block(item, self.arch, active))

    def call_in_frame(self, b: Block, call: Call, active: int, i: int) -> None:
        r = self.routines[call.routine]
        cmap = _cmap(r, frame_bases(r, call, i, None))
        b.add(self.routine(r, active), 1, cmap)


def _cmap(r: Routine, bases: list[int]) -> dict[int, int]:
    out, f = {}, 0
    for seg, base in zip(r.segments, bases, strict=True):
        for j in range(seg.width):
            out[f + j] = base + j
        f += seg.width
    return out


def _rows(span: Span | None, arch: Arch) -> range | None:
    return None if span is None else span.indices()


@dataclass
class Layer:
    """One source line or ONNX node's share of a program."""

    block: Block = field(default_factory=Block)
    crossbars: set[int] = field(default_factory=set)
    rows: int = 0  # the most rows one of its ops acts on, per crossbar
    column_high: int = 0  # one past the highest column it touches


def _alike(loop: Loop) -> bool:
    """Whether every iteration of a top-level loop runs the same ops on the same columns
    (no call's segment strides; no loop inside)."""
    return all(isinstance(i, Call) and all(a.stride == 0 for a in i.args) for i in loop.body)


def _count(prog: Program, stats: Stats, writes: WriteCounter | None,
           layers: dict[str, Layer] | None = None, walker: Walker | None = None) -> Block:
    """Fill the data-independent totals of `stats`; count writes if asked, and each
    top-level item's cost into `layers` by its source annotation; return the whole
    program's block (energy bounds by kind)."""
    arch = prog.arch
    walker = walker or Walker(prog)
    total = Block()

    def note(src: str, block: Block, cols: set[int] | list[int], xbs: list[Span],
             rows: int, times: int) -> None:
        if layers is None:
            return
        layer = layers.setdefault(src, Layer())
        layer.block.add(block, times)
        for x in xbs:
            layer.crossbars.update(x.indices())
        layer.rows = max(layer.rows, rows)
        layer.column_high = max(layer.column_high, max(cols, default=-1) + 1)
    used_xbs = np.zeros(prog.crossbars, dtype=bool)
    used_cols: set[int] = set()

    def top(items: tuple[Item, ...], iteration_of: int, count: int, times: int) -> None:
        """`times`: how often each item runs as it is (a loop whose iterations are alike)."""
        for item in items:
            if isinstance(item, Loop):
                if _alike(item):  # counted once, times its count
                    top(item.body, 0, item.count, times * item.count)
                    continue
                for i in range(item.count):
                    top(item.body, i, item.count, times)
                continue
            if isinstance(item, Call):
                r = walker.routines[item.routine]
                xbs, rows = item.xbs, item.rows
                assert xbs is not None
                active = (len(rows) if rows is not None else arch.rows) * len(xbs)
                block = walker.routine(r, active)
                cmap = _cmap(r, frame_bases(r, item, iteration_of, None))
                total.add(block, times, None)
                mapped = [cmap[c] for c in block.cols]
                used_cols.update(mapped)
                note(item.src, block, mapped, [xbs], len(rows) if rows else arch.rows, times)
                used_xbs[xbs.as_slice()] = True
                if writes is not None and block.writes:
                    cols = np.array([cmap[c] for c in block.writes])
                    per = np.array(list(block.writes.values())) * times
                    writes.add(cols, xbs.as_slice(), _rows(rows, arch), times=per)
                continue
            op = item
            rows_n = len(op.rows) if op.rows is not None else arch.rows
            xbs = op.dst_xbs if isinstance(op, Transfer) else op.xbs
            active = rows_n * len(op.xbs)
            block = op_block(op, arch, active)
            if isinstance(op, Transfer) and op.dst_row is not None:
                block.energy_hi["TRANSFER"] = rows_n * len(op.src_cols) * len(op.xbs) * arch.e_set_fj
                block.energy_lo["TRANSFER"] = rows_n * len(op.src_cols) * len(op.xbs) * arch.e_reset_fj
                dst = list(range(op.dst_cols[0], op.dst_cols[0] + rows_n))
                block.cols.update(dst)
                block.writes = Counter()
                if writes is not None:
                    writes.add(np.array(dst), op.dst_xbs.as_slice(),
                               range(op.dst_row, op.dst_row + len(op.src_cols)), times=times)
            elif writes is not None and block.writes:
                writes.add(np.array(list(block.writes)), xbs.as_slice(), _rows(op.rows, arch),
                           times=times)
            total.add(block, times)
            used_cols.update(block.cols)
            note(op.src, block, block.cols,
                 [op.xbs, op.dst_xbs] if isinstance(op, Transfer) else [op.xbs], rows_n, times)
            used_xbs[op.xbs.as_slice()] = True
            if isinstance(op, Transfer):
                used_xbs[op.dst_xbs.as_slice()] = True

    top(prog.ops, 0, 1, 1)
    for t in (*prog.inputs, *prog.outputs):
        used_cols.update(t.columns(parse_dtype(t.dtype).bits))
        used_xbs[t.xbs.as_slice()] = True
    stats.ops.update(total.ops)
    stats.cycles.update(total.cycles)
    stats.cycles_bulk += total.cycles_bulk
    stats.cycles_per_cell += total.cycles_per_cell
    stats.latency_ns += total.latency_ns
    stats.columns_used = len(used_cols)
    stats.crossbars_used = int(used_xbs.sum())
    return total


def static_totals(prog: Program, stats: Stats, walker: Walker | None = None) -> None:
    """The data-independent part of what a run will count (the machine calls this)."""
    _count(prog, stats, None, walker=walker)


def count_program(prog: Program, name: str = "<uop>", wear: bool = True) -> Stats:
    """Everything `run` reports, from the structure alone; data-dependent energy as its
    upper bound (bounds in `energy_fj_bounds`), predicated writes as if every selected
    row were tagged. Without `wear`, no writes per cell (their tables grow with columns
    x crossbars: a whole network's hundreds of thousands of crossbars)."""
    validate(prog, name)
    stats = Stats(prog.arch.init_model, prog.arch.partitions)
    wear = wear and wear_fits(prog.crossbars)
    writes = WriteCounter(prog.arch.cols, prog.crossbars, prog.arch.rows) if wear else None
    for t in prog.inputs if writes is not None else ():
        count_host_writes(writes, t)
    walker = Walker(prog)
    total = _count(prog, stats, writes, walker=walker)
    stats.energy_fj.update(total.energy_hi)
    stats.row_ops = total.row_ops
    stats.energy_bounds = (float(sum(total.energy_lo.values())),
                           float(sum(total.energy_hi.values())))
    stats.counted = True
    stats.endurance = writes.summary() if writes is not None else None
    stats.host = host_traffic(prog)
    stats.layers = layer_report(prog, walker=walker)
    return stats


def host_traffic(prog: Program) -> HostIO:
    """Host writes and reads as the host port counts them (cells, row writes; energy is
    data-dependent: bounded above by E_set per cell)."""
    h = HostIO()
    for t in prog.inputs:
        bits = parse_dtype(t.dtype).bits
        cells = slot_count(t) * t.lanes * bits
        h.writes(t.setup).add(cells, cells, row_writes(t), prog.arch)
    for t in prog.outputs:
        bits = parse_dtype(t.dtype).bits
        slots = t.placed_elements // t.lanes
        h.output_cells += slots * t.lanes * bits
        h.output_row_reads += slots
    return h


MOVES = ("SHIFT", "TRANSFER")


def layer_report(prog: Program, executed: dict[str, Counter[str]] | None = None,
                 walker: Walker | None = None) -> list[dict[str, object]]:
    """A row per source line / ONNX node, in program order: cycles, time, energy by op
    kind (executed if given, else the structural upper bound), crossbars and rows used,
    column high-water mark, movement (SHIFT, TRANSFER) against compute, shares."""
    layers: dict[str, Layer] = {}
    _count(prog, Stats(prog.arch.init_model, prog.arch.partitions), None, layers, walker)
    total_cycles = sum(sum(v.block.cycles.values()) for v in layers.values()) or 1
    energies = {k: (executed or {}).get(k) or v.block.energy_hi for k, v in layers.items()}
    total_energy = sum(sum(e.values()) for e in energies.values()) or 1.0
    out = []
    for key, layer in layers.items():
        b, energy = layer.block, energies[key]
        cycles = sum(b.cycles.values())
        moved = sum(b.cycles[k] for k in MOVES)
        e = float(sum(energy.values()))
        out.append({
            "layer": key or "(no source)",
            "cycles": cycles, "time_ns": b.latency_ns,
            "energy_fj": e, "energy_fj_by_kind": {k: float(v) for k, v in sorted(energy.items())},
            "energy_measured": executed is not None and key in executed,
            "crossbars": len(layer.crossbars), "rows_per_crossbar": layer.rows,
            "column_high_water": layer.column_high,
            "movement_cycles": moved, "compute_cycles": cycles - moved,
            "movement_energy_fj": float(sum(energy.get(k, 0.0) for k in MOVES)),
            "share_of_cycles": cycles / total_cycles, "share_of_energy": e / total_energy,
        })
    return out


def layer_table(rows: list[dict[str, object]]) -> str:
    out = [["layer", "cycles", "time us", "energy nJ", "xbars", "rows", "cols", "move %",
            "share %"]]
    for r in rows:
        place, _, label = str(r["layer"]).partition(" ")
        name = f"{place.rsplit('/', 1)[-1]} {label}".strip()
        move = 100 * r["movement_cycles"] / max(r["cycles"], 1)
        out.append([name[-40:], f"{r['cycles']:,}", f"{r['time_ns'] / 1e3:,.1f}",
                    f"{r['energy_fj'] / 1e6:,.2f}", f"{r['crossbars']:,}",
                    f"{r['rows_per_crossbar']}", f"{r['column_high_water']}", f"{move:.1f}",
                    f"{100 * r['share_of_cycles']:.1f}"])
    lines = aligned(out)
    return "\n".join(lines)
