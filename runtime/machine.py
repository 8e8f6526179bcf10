"""The crossbar machine: bit-packed state, strict checks, and op-by-op cost accounting.

State is uint64[column, crossbar, row-word]: one column of every selected crossbar is a
contiguous block, so one op on many crossbars is one numpy call, not a Python loop.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
from pimc.runtime import kernel_table
from pimc.runtime.bitops import popcount, row_mask
from pimc.runtime.block import Block, Template
from pimc.runtime.endurance import WriteCounter, wear_fits
from pimc.runtime.engine import KernelPath, choose_engine, layer_groups
from pimc.runtime.faults import FaultModel
from pimc.runtime.flags import CellFlags, SpanTable
from pimc.runtime.hostio import HostPort
from pimc.runtime.ops import NumpyOps
from pimc.runtime.progress import Progress
from pimc.runtime.stats import Events, Stats, energy_of
from pimc.runtime.step import Step, bound, init_columns

from pimc.isa.check import validate
from pimc.isa.cost import item_counts, timing
from pimc.isa.errors import PimError
from pimc.isa.flow import frame_bases
from pimc.isa.uop import (
    Init,
    Item,
    Loop,
    Nor,
    Op,
    Program,
    Routine,
    Search,
    Shift,
    Span,
    Transfer,
)


class Machine(KernelPath, NumpyOps):
    """Executes one program; `strict` turns on the MAGIC and read-before-write checks."""

    def __init__(self, prog: Program, name: str = "<uop>", *, strict: bool = True,
                 count_writes: bool = True, faults: FaultModel | None = None,
                 engine: str = "auto", xb_base: int = 0, validated: bool = False) -> None:
        if not validated:  # a shard's program was checked whole, before it was cut
            validate(prog, name)
        self.xb_base = xb_base  # a shard's first crossbar: messages name the whole memory's
        self.prog, self.name, self.strict = prog, name, strict
        self.engine = choose_engine(engine, faults)
        arch = prog.arch
        self.arch = arch
        self.words = arch.rows // 64
        shape = (arch.cols, prog.crossbars, self.words)
        self.bits = np.zeros(shape, dtype=np.uint64)
        self.tag = np.zeros(shape[1:], dtype=np.uint64)
        self.faults = faults
        if faults is not None:
            if faults.crossbars != prog.crossbars or faults.arch.cols != arch.cols or \
                    faults.arch.rows != arch.rows:
                raise PimError(f"{name}: the fault model is for another memory shape")
            faults.settle(self.bits)
        self.spans = SpanTable(self.words)
        self.written = CellFlags(*shape, self.spans)
        self.armed = CellFlags(*shape, self.spans)
        # Beyond wear_fits the write tables would outweigh the cells: not counted.
        self.writes = WriteCounter(arch.cols, prog.crossbars, arch.rows) if (
            count_writes and wear_fits(prog.crossbars)) else None
        self.stats = Stats(arch.init_model, arch.partitions)
        self.host = HostPort(self)
        self._masks: dict[range, np.ndarray] = {}
        self._identity = np.arange(arch.cols, dtype=np.int64)
        self.events = Events()
        self._units = np.zeros(7, dtype=np.int64)  # the kernel's energy events (kernel_table.U_NOR)
        self._tally = np.zeros(2 + 2 * kernel_table.KINDS, dtype=np.int64)  # ... and op tallies
        self._status = np.zeros(5, dtype=np.int64)
        # Python-side memo of the flag codes for whole columns of a crossbar span, so the
        # common whole-column op needs no numpy call to check them. "Written" only grows,
        # so a positive answer stays true; "armed" is dropped at every write of a column.
        self._written_memo: set[tuple[int, int, int, int]] = set()
        self._armed_memo: dict[int, set[tuple[int, int, int]]] = {}
        self._routines = {r.name: r for r in prog.routines}
        self.layer_events: dict[str, Events] = {}
        self._sites: dict[tuple[str, Span, Span | None], list[Step | Item]] = {}
        self._templates: dict[str, list[Template | Item]] = {}
        self._items = [self.prepare(item, prog.line_of(i)) if isinstance(item, Op) else item
                       for i, item in enumerate(prog.ops)]
        self._exec = {Init: self._init, Nor: self._nor, Search: self._search,
                      Shift: self._shift, Transfer: self._transfer}
        if not validated:  # a shard's totals are the driver's, counted on the whole program
            self._static_totals()
        self._ranges: dict[tuple[int, int], list[tuple[int, list, list]]] = {}
        self._groups_in(0, len(self._items))  # decode top-level ops now: loading, not running
        self.executed = 0  # micro-ops executed so far
        self.failure: tuple[int, int, int] | None = None
        self.check_rank = 0  # which check of an op failed (its input, or its output)
        self.unset = (0, 0, 0)  # and the cell: (column index, crossbar, row)

    # ------------------------------------------------------------------ preparation

    def rows_mask(self, rows: range) -> np.ndarray:
        mask = self._masks.get(rows)
        if mask is None:
            mask = self._masks[rows] = row_mask(self.arch.rows, rows)
        return mask

    def mask_id(self, rows: range) -> int:
        """The index of this row span's mask in the table the kernel reads."""
        return self.spans.id(rows, self.rows_mask(rows))

    def prepare(self, op: Op, line: int) -> Step:
        rows = op.rows.indices() if op.rows is not None else None
        if rows is not None and rows == range(self.arch.rows):
            rows = None
        return Step(op, line, op.xbs.as_slice(), len(op.xbs), rows,
                     self.rows_mask(rows) if rows is not None else None,
                     timing(op, self.arch), getattr(getattr(op, "rep", None), "count", 1),
                     init_columns(self.arch, op) if isinstance(op, Init) else ())

    def fail(self, line: int, msg: str) -> PimError:
        return PimError(f"{self.name}:{line}: {msg}")

    # ------------------------------------------------------------------ execution

    def run(self) -> Stats:
        """Execute every op in order, then total the costs (and the energy of each source
        line or ONNX node, in `layer_energy`)."""
        progress = Progress(f"{self.name}: run", sum(self.stats.ops.values()), "micro-ops")
        self.run_items(0, len(self._items), progress)
        progress.close()
        self._finish()
        return self.stats

    def run_items(self, lo: int, hi: int, progress: Progress | None = None) -> None:
        """Execute top-level items lo..hi-1 (all of them, or one segment of a shard's
        program), noting each source's energy. On a failed check, `failure` says where in
        the execution it happened: (top-level item, micro-ops into it, check)."""
        if lo >= hi:  # a segment with nothing for this shard
            return
        done, memo = 0, {}
        for first, group, runnable in self._groups_in(lo, hi):
            if progress is not None:
                progress.update(done)
                for item in group:
                    done += 1 if isinstance(item, Step) else item_counts(
                        item, self._routines, self.arch, memo)[0]
            before = self.events.snapshot()
            self._top(runnable, first)
            item = group[0]
            src = item.op.src if isinstance(item, Step) else item.src
            spent = self.layer_events.setdefault(src, Events())
            for kind, (a, b) in self.events.since(before).items():
                spent.add(kind, a, b)

    def _groups_in(self, lo: int, hi: int) -> list[tuple[int, list, list]]:
        """The top-level items lo..hi-1 in runs of one source line or node each: the
        index of each run's first item, the run, and what executes it (for the kernel,
        its steps decoded into blocks, once)."""
        groups = self._ranges.get((lo, hi))
        if groups is None:
            groups = []
            if (lo, hi) == (0, len(self._items)):  # decoded at load, run later; a shard's
                self._ranges[(lo, hi)] = groups  # segments each run once: not kept
            first = lo
            for group in layer_groups(self._items[lo:hi]):
                groups.append((first, group, self._blocks_of(group) if self.engine == "numba"
                               else group))
                first += len(group)
        return groups

    def _top(self, items: list, first: int) -> None:
        """Run top-level items (steps, or their blocks), keeping where a failed check
        happened."""
        index = first
        for item in items:
            start = self.executed
            try:
                self._run([item], None, None, None, 0)
            except PimError:
                into = self.executed - start
                if isinstance(item, Block):  # top-level ops: one item each
                    index, into = index + into, 0
                self.failure = (index, into, self.check_rank)
                raise
            index += len(item.ops) if isinstance(item, Block) else 1

    def _run(self, items: list, cmap: np.ndarray | None, xbs: Span | None,
             rows: Span | None, iteration: int) -> None:
        """Execute items; inside a routine, `cmap` maps its frame columns to crossbar
        columns and `xbs`/`rows` are the call's."""
        execute = self._exec
        for item in items:
            if isinstance(item, Block):
                self._run_block(item, cmap)
            elif isinstance(item, Step):
                if cmap is None:
                    execute[type(item.op)](item)
                else:
                    execute[type(item.op)](bound(item, cmap))
                self.executed += 1
            elif isinstance(item, Loop):  # a loop holds calls only
                for i in range(item.count):
                    self._run(item.body, cmap, xbs, rows, i)
            else:
                routine = self._routines[item.routine]
                where = (item.xbs or xbs, item.rows or rows)
                bases = frame_bases(routine, item, iteration,
                                    None if cmap is None else cmap.tolist())
                inner = np.concatenate([np.arange(b, b + seg.width) for seg, b in
                                        zip(routine.segments, bases, strict=True)])
                body = (self._site_blocks(routine, *where) if self.engine == "numba"
                        else self._site(routine, *where))
                self._run(body, inner, *where, 0)

    def _site(self, routine: Routine, xbs: Span, rows: Span | None) -> list:
        """A routine's body decoded once per place it runs (crossbars and rows)."""
        key = (routine.name, xbs, rows)
        steps = self._sites.get(key)
        if steps is None:
            steps = self._sites[key] = [
                self.prepare(dataclasses.replace(i, xbs=xbs, rows=rows), i.line)
                if isinstance(i, Op) else i for i in routine.body]
        return steps

    def _static_totals(self) -> None:
        """Cycles, latency and the columns and crossbars touched do not depend on data, so
        they are counted from the program's structure when it is loaded (run() adds what
        does: energy, writes)."""
        from pimc.runtime.count import Walker, static_totals

        self.walker = Walker(self.prog)  # routine summaries, kept for the layer report
        static_totals(self.prog, self.stats, self.walker)

    @property
    def layer_energy(self) -> dict[str, Counter[str]]:
        """fJ by op kind for each source line or node, as executed."""
        return {src: energy_of(e.counts, self.arch) for src, e in self.layer_events.items()}

    def _finish(self) -> None:
        self.stats.energy_fj = energy_of(self.events.counts, self.arch)
        if self.writes is not None:
            self.stats.endurance = self.writes.summary()
        if self.faults is not None:
            self.stats.faults = self.faults.finish().as_dict()

    def mask_of(self, step: Step, xs: slice | None = None) -> np.ndarray | None:
        """Rows an op acts on: its row span, narrowed by each crossbar's tag if predicated."""
        if not step.op.pred:
            return step.static_mask
        tag = self.tag[step.xs if xs is None else xs]
        return tag if step.static_mask is None else tag & step.static_mask

    def active_rows(self, step: Step, mask: np.ndarray | None) -> int:
        if mask is None:
            return self.arch.rows * step.nx
        if mask.ndim == 1:
            return popcount(mask) * step.nx
        return popcount(mask)

    def check_written(self, step: Step, cols: np.ndarray | int, xs: slice,
                      mask: np.ndarray | None) -> None:
        if not self.strict:
            return
        memo = (cols, xs.start, xs.stop, xs.step or 1) if isinstance(cols, int) else None
        if mask is None and memo in self._written_memo:
            return
        if self.written.all_set(cols, xs, mask):
            if mask is None and memo is not None:
                self._written_memo.add(memo)
        else:
            cols_a = np.atleast_1d(cols)
            c, x, r = self.written.first_unset(cols_a, xs, mask)
            self.check_rank += c
            self.unset = (c, self.xb_base + xs.start + x * (xs.step or 1), r)
            raise self.fail(step.line, f"reads c{cols_a[c]} of crossbar "
                            f"{self.xb_base + xs.start + x * (xs.step or 1)} row {r}, which was "
                            "never written")

    def note_write(self, step: Step, cols: np.ndarray | int, xs: slice,
                   mask: np.ndarray | None, rows: range | None) -> None:
        """Book-keeping after writing data: written, no longer armed (what the strict
        checks read: a run without them does not keep it), one more write."""
        if self.strict:
            self.written.update(cols, xs, mask, True)
            self.armed.update(cols, xs, mask, False)
            for c in np.atleast_1d(cols).tolist() if not isinstance(cols, int) else (cols,):
                self._armed_memo.pop(c, None)
        if self.writes is not None:
            dense = mask if (mask is not None and step.op.pred) else None
            self.writes.add(cols, xs, rows, dense)
        if self.faults is not None:
            self.faults.after_write(self.bits, cols, xs, mask)


def run_program(prog: Program, inputs: dict[str, np.ndarray] | None = None, *,
                name: str = "<uop>", seed: int = 0, strict: bool = True,
                count_writes: bool = True, faults: FaultModel | None = None,
                engine: str = "auto") -> tuple[dict[str, np.ndarray], Stats]:
    """Load inputs (random ones, from `seed`, where missing), run, and read the outputs
    (on a memory with `faults`, if given)."""
    machine = Machine(prog, name, strict=strict, count_writes=count_writes, faults=faults,
                      engine=engine)
    machine.host.load(inputs or {}, seed)
    stats = machine.run()
    from pimc.runtime.count import layer_report

    stats.layers = layer_report(prog, machine.layer_energy, machine.walker)
    return machine.host.read_outputs(), stats
