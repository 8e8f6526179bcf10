"""What an executed program cost: counted op by op by the machine, printed as a table or JSON."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from pimc.runtime.endurance import Endurance

from pimc.isa.arch import Arch, InitModel

STATS_FORMAT = 2  # 2: counted_without_executing, energy_fj_bounds, histogram, layers


# The energy per counted event of each op kind: (first count's unit, second count's unit).
UNITS = {"NOR": ("e_nor_fj", None), "INIT": ("e_set_fj", "e_reset_fj"),
         "SEARCH": ("e_search_fj", None), "SHIFT": ("e_set_fj", "e_reset_fj"),
         "TRANSFER": ("e_set_fj", "e_reset_fj")}


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows of cells as lines: the first column to the left, the others to the right,
    each as wide as its widest cell (counts of a whole network do not fit a fixed width)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [" ".join([r[0].ljust(widths[0] + 1)] + [c.rjust(w + 1) for c, w
                                                       in zip(r[1:], widths[1:], strict=True)])
            for r in rows]


class Events:
    """Energy as integer counts per op kind: NOR row-gates, cells set and reset by INIT,
    SHIFT and TRANSFER, SEARCH row-cycles. Integer sums do not depend on the order of
    addition, so the kernel, the numpy path and shards of a memory add them in any order
    and the energy (count x unit, once, at the end) is the same to the last bit."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}  # in order of first use

    def add(self, kind: str, first: int, second: int = 0) -> None:
        c = self.counts.setdefault(kind, [0, 0])
        c[0] += int(first)
        c[1] += int(second)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {k: (a, b) for k, (a, b) in self.counts.items()}

    def since(self, before: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        out = {}
        for k, (a, b) in self.counts.items():
            a0, b0 = before.get(k, (0, 0))
            if (a, b) != (a0, b0):
                out[k] = (a - a0, b - b0)
        return out


def energy_of(counts: dict[str, tuple[int, int]] | dict[str, list[int]], arch: object
              ) -> Counter[str]:
    """fJ per op kind from event counts, kinds in sorted order (totals are then summed in
    one order however the counts were gathered)."""
    out: Counter[str] = Counter()
    for kind, (a, b) in sorted(counts.items()):
        ua, ub = UNITS[kind]
        out[kind] = a * getattr(arch, ua) + (b * getattr(arch, ub) if ub else 0.0)
    return out


@dataclass
class HostWrites:
    """Cells the host writes, and in how many row-parallel writes (a SET and a RESET phase
    each: FloatPIM's row-parallel write puts one row's bits into any rows of a crossbar)."""

    cells: int = 0
    row_writes: int = 0
    set_cells: int = 0
    reset_cells: int = 0
    energy_fj: float = 0.0  # from the two counts above

    def add(self, cells: int, ones: int, row_writes: int, arch: Arch) -> None:
        self.cells += cells
        self.row_writes += row_writes
        self.set_cells += ones
        self.reset_cells += cells - ones
        self.energy_fj = self.set_cells * arch.e_set_fj + self.reset_cells * arch.e_reset_fj


@dataclass
class HostIO:
    """Host I/O, counted apart from compute: the set-up writes made once per program
    (weights and constants), the inputs written per run, the outputs read."""

    setup: HostWrites = field(default_factory=HostWrites)
    input: HostWrites = field(default_factory=HostWrites)
    output_cells: int = 0
    output_row_reads: int = 0

    def writes(self, setup: bool) -> HostWrites:
        return self.setup if setup else self.input


@dataclass
class Stats:
    init_model: InitModel
    partitions: int
    ops: Counter[str] = field(default_factory=Counter)
    cycles: Counter[str] = field(default_factory=Counter)  # under the architecture's INIT model
    cycles_bulk: int = 0
    cycles_per_cell: int = 0
    latency_ns: float = 0.0
    energy_fj: Counter[str] = field(default_factory=Counter)
    row_ops: int = 0  # sum over ops of active rows x crossbars x repetitions (bit-operations)
    columns_used: int = 0
    crossbars_used: int = 0
    endurance: Endurance | None = None
    host: HostIO = field(default_factory=HostIO)
    # Counted without executing: data-dependent energy is bounded, not measured.
    counted: bool = False
    energy_bounds: tuple[float, float] | None = None
    layers: list[dict[str, object]] = field(default_factory=list)  # runtime.count.layer_report
    faults: dict[str, object] | None = None  # runtime.faults.FaultReport, when injected

    @property
    def total_cycles(self) -> int:
        return self.cycles_bulk if self.init_model is InitModel.BULK else self.cycles_per_cell

    @property
    def total_energy_fj(self) -> float:
        return float(sum(self.energy_fj.values()))

    def as_dict(self) -> dict[str, object]:
        return {
            "format_version": STATS_FORMAT,
            "init_model": self.init_model.value,
            "partitions": self.partitions,
            "ops": dict(self.ops),
            "cycles": self.total_cycles,
            "cycles_by_kind": dict(self.cycles),
            "cycles_bulk_init": self.cycles_bulk,
            "cycles_per_cell_init": self.cycles_per_cell,
            "latency_ns": self.latency_ns,
            "energy_fj": self.total_energy_fj,
            "energy_fj_bounds": list(self.energy_bounds or (self.total_energy_fj,) * 2),
            "counted_without_executing": self.counted,
            "energy_fj_by_kind": dict(self.energy_fj),
            "bit_operations": self.row_ops,
            "columns_used": self.columns_used,
            "crossbars_used": self.crossbars_used,
            "endurance": asdict(self.endurance) if self.endurance else None,
            "host_io": asdict(self.host),
            "layers": self.layers,
            **({"faults": self.faults} if self.faults is not None else {}),
        }

    def table(self) -> str:
        rows = [["op", "count", "cycles", "energy (pJ)"]]
        rows += [[kind, f"{self.ops[kind]:,}", f"{self.cycles[kind]:,}",
                  f"{self.energy_fj[kind] / 1e3:,.3f}"] for kind in sorted(self.ops)]
        rows.append(["total", f"{sum(self.ops.values()):,}", f"{self.total_cycles:,}",
                     f"{self.total_energy_fj / 1e3:,.3f}"])
        lines = aligned(rows)
        other = "per-cell" if self.init_model is InitModel.BULK else "bulk"
        other_cycles = self.cycles_per_cell if other == "per-cell" else self.cycles_bulk
        e = self.endurance
        h = self.host
        if self.energy_bounds and self.counted:
            lo, hi = self.energy_bounds
            lines.append(f"(counted without executing: energy of data-dependent writes and "
                         f"predicated ops is between {lo / 1e3:,.3f} and {hi / 1e3:,.3f} pJ; "
                         f"the upper bound is shown)")
        lines += [
            "",
            f"INIT model        {self.init_model.value} ({other_cycles:,} cycles with {other} INIT)",
            f"partitions        {self.partitions}",
            f"latency           {self.latency_ns:,.1f} ns",
            f"bit-operations    {self.row_ops:,} (active rows x crossbars x gates)",
            f"crossbars used    {self.crossbars_used:,}",
            f"columns used      {self.columns_used:,}",
        ]
        if e is not None:
            lines += [
                f"writes per cell   max {e.max_writes_per_cell:,}, "
                f"mean {e.mean_writes_per_written_cell:.2f} over {e.cells_written:,} written cells",
            ]
        lines += [
            *(f"host {what:<12}{w.cells:,} cells in {w.row_writes:,} row writes, "
              f"{w.energy_fj / 1e3:,.3f} pJ{note}"
              for what, w, note in (("setup", h.setup, " (weights: once, not per run)"),
                                    ("input", h.input, "")) if w.cells or what == "input"),
            f"host output       {h.output_cells:,} cells in {h.output_row_reads:,} row reads",
        ]
        return "\n".join(lines)
