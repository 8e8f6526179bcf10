"""The crossbar machine: bit-packed state, strict checks, and op-by-op cost accounting.

State is uint64[column, crossbar, row-word]: one column of every selected crossbar is a
contiguous block, so one op on many crossbars is one numpy call, not a Python loop.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import numpy as np
from pimc.runtime import kernel
from pimc.runtime.bitops import ALL, pack_rows, popcount, row_mask, shift_rows, unpack_rows
from pimc.runtime.block import Block, Template, site_block, template, top_block
from pimc.runtime.endurance import WriteCounter
from pimc.runtime.faults import FaultModel
from pimc.runtime.flags import CellFlags, SpanTable
from pimc.runtime.hostio import HostPort
from pimc.runtime.progress import Progress
from pimc.runtime.stats import Stats

from pimc.isa.arch import Arch
from pimc.isa.check import rep_columns, validate
from pimc.isa.cost import OpTiming, item_counts, timing
from pimc.isa.errors import PimError
from pimc.isa.flow import COLUMN_FIELDS, frame_bases
from pimc.isa.uop import (
    Init,
    Item,
    Loop,
    Nor,
    Op,
    Program,
    Routine,
    Search,
    SearchKind,
    Shift,
    Span,
    Transfer,
)


@dataclass(frozen=True)
class _Step:
    """An op with everything that does not depend on data worked out once."""

    op: Op
    line: int
    xs: slice
    nx: int
    rows: range | None  # None: every row
    static_mask: np.ndarray | None  # the rows' mask, None for every row
    timing: OpTiming
    reps: int
    aux: tuple = ()  # per-kind precomputation (INIT: the columns set and reset)


class Machine:
    """Executes one program; `strict` turns on the MAGIC and read-before-write checks."""

    def __init__(self, prog: Program, name: str = "<uop>", *, strict: bool = True,
                 count_writes: bool = True, faults: FaultModel | None = None,
                 engine: str = "auto") -> None:
        validate(prog, name)
        self.prog, self.name, self.strict = prog, name, strict
        self.engine = _engine(engine, faults)
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
        self.writes = WriteCounter(arch.cols, prog.crossbars, arch.rows) if count_writes else None
        self.stats = Stats(arch.init_model, arch.partitions)
        self.host = HostPort(self)
        self._masks: dict[range, np.ndarray] = {}
        self._blocks: dict[int, list[Block | Item]] = {}  # id of a list of steps -> its blocks
        self._identity = np.arange(arch.cols, dtype=np.int64)
        self._energy = np.zeros(2, dtype=np.float64)  # the kernel's NOR and INIT energy
        self._tally = np.zeros(4, dtype=np.int64)  # ... bit operations, NORs, INITs, first
        self._status = np.zeros(5, dtype=np.int64)
        # Python-side memo of the flag codes for whole columns of a crossbar span, so the
        # common whole-column op needs no numpy call to check them. "Written" only grows,
        # so a positive answer stays true; "armed" is dropped at every write of a column.
        self._written_memo: set[tuple[int, int, int, int]] = set()
        self._armed_memo: dict[int, set[tuple[int, int, int]]] = {}
        self._routines = {r.name: r for r in prog.routines}
        self.layer_energy: dict[str, Counter[str]] = {}
        self._sites: dict[tuple[str, Span, Span | None], list[_Step | Item]] = {}
        self._keep: list[list] = []  # type: ignore[type-arg]
        self._templates: dict[str, list[Template | Item]] = {}
        self._items = [self._prepare(item, prog.line_of(i)) if isinstance(item, Op) else item
                       for i, item in enumerate(prog.ops)]
        self._exec = {Init: self._init, Nor: self._nor, Search: self._search,
                      Shift: self._shift, Transfer: self._transfer}
        self._static_totals()
        self._groups = _layer_groups(self._items)
        if self.engine == "numba":  # decode top-level ops now: loading, not running
            for group in self._groups:
                self._blocks_of(group)

    # ------------------------------------------------------------------ preparation

    def rows_mask(self, rows: range) -> np.ndarray:
        mask = self._masks.get(rows)
        if mask is None:
            mask = self._masks[rows] = row_mask(self.arch.rows, rows)
        return mask

    def mask_id(self, rows: range) -> int:
        """The index of this row span's mask in the table the kernel reads."""
        return self.spans.id(rows, self.rows_mask(rows))

    def _prepare(self, op: Op, line: int) -> _Step:
        rows = op.rows.indices() if op.rows is not None else None
        if rows is not None and rows == range(self.arch.rows):
            rows = None
        return _Step(op, line, op.xbs.as_slice(), len(op.xbs), rows,
                     self.rows_mask(rows) if rows is not None else None,
                     timing(op, self.arch), getattr(getattr(op, "rep", None), "count", 1),
                     _init_columns(self.arch, op) if isinstance(op, Init) else ())

    def fail(self, line: int, msg: str) -> PimError:
        return PimError(f"{self.name}:{line}: {msg}")

    # ------------------------------------------------------------------ execution

    def run(self) -> Stats:
        """Execute every op in order, then total the costs (and the energy of each source
        line or ONNX node, in `layer_energy`)."""
        energy = self.stats.energy_fj
        progress = Progress(f"{self.name}: run", sum(self.stats.ops.values()), "micro-ops")
        done, memo = 0, {}  # type: ignore[var-annotated]
        for group in self._groups:
            progress.update(done)
            for item in group:
                done += 1 if isinstance(item, _Step) else item_counts(
                    item, self._routines, self.arch, memo)[0]
            before = Counter(energy)
            self._run(group, None, None, None, 0)
            item = group[0]
            src = item.op.src if isinstance(item, _Step) else item.src
            spent = self.layer_energy.setdefault(src, Counter())
            for kind, fj in energy.items():
                if fj != before[kind]:
                    spent[kind] += fj - before[kind]
        progress.close()
        self._finish()
        return self.stats

    def _run(self, items: list, cmap: np.ndarray | None, xbs: Span | None,  # type: ignore[type-arg]
             rows: Span | None, iteration: int) -> None:
        """Execute items; inside a routine, `cmap` maps its frame columns to crossbar
        columns and `xbs`/`rows` are the call's."""
        execute = self._exec
        if self.engine == "numba" and cmap is None:
            items = self._blocks_of(items)
        for item in items:
            if isinstance(item, Block):
                self._run_block(item, cmap)
            elif isinstance(item, _Step):
                if cmap is None:
                    execute[type(item.op)](item)
                else:
                    execute[type(item.op)](_bound(item, cmap))
            elif isinstance(item, Loop):  # a loop holds calls only
                for i in range(item.count):
                    self._run(item.body, cmap, xbs, rows, i)  # type: ignore[arg-type]
            else:
                routine = self._routines[item.routine]
                where = (item.xbs or xbs, item.rows or rows)
                bases = frame_bases(routine, item, iteration,
                                    None if cmap is None else cmap.tolist())
                inner = np.concatenate([np.arange(b, b + seg.width) for seg, b in
                                        zip(routine.segments, bases, strict=True)])
                body = (self._site_blocks(routine, *where) if self.engine == "numba"  # type: ignore[arg-type]
                        else self._site(routine, *where))  # type: ignore[arg-type]
                self._run(body, inner, *where, 0)  # type: ignore[arg-type]

    def _blocks_of(self, items: list) -> list[Block | Item]:  # type: ignore[type-arg]
        """Top-level runs of consecutive steps as blocks (decoded once per list)."""
        blocks = self._blocks.get(id(items))
        if blocks is None:
            blocks = []
            for run in _runs(items):
                if isinstance(run, list):
                    block = top_block(self, tuple(s.op for s in run))
                    block.escapes.update(enumerate(run))  # prepared already, with lines
                    run = block
                blocks.append(run)
            self._blocks[id(items)] = blocks
            self._keep.append(items)  # ids stay valid while the lists live
        return blocks

    def _site_blocks(self, routine: Routine, xbs: Span, rows: Span | None) -> list[Block | Item]:
        """A routine's body placed at one site: each run of ops a block, from templates
        decoded once per routine."""
        key = (routine.name, xbs, rows)
        blocks = self._sites.get(key)
        if blocks is None:
            templates = self._templates.get(routine.name)
            if templates is None:
                templates = self._templates[routine.name] = [
                    template(tuple(run), self.arch.partition_width) if isinstance(run, list)
                    else run for run in _runs(list(routine.body), Op)]
            blocks = self._sites[key] = [  # type: ignore[assignment]
                site_block(self, t, xbs, rows) if isinstance(t, Template) else t
                for t in templates]
        return blocks  # type: ignore[return-value]

    def _escape(self, block: Block, i: int) -> _Step:
        step = block.escapes.get(i)
        if step is None:
            op = block.ops[i]
            if block.where is not None:
                op = dataclasses.replace(op, xbs=block.where[0], rows=block.where[1])
            step = block.escapes[i] = self._prepare(op, op.line)
        return step

    def _run_block(self, block: Block, cmap: np.ndarray | None) -> None:
        """Run a block in the kernel, handing its escapes to the numpy path."""
        energy, tally, status, stats = self._energy, self._tally, self._status, self.stats.energy_fj
        writes = self.writes
        start, n = 0, len(block.ops)
        while start < n:
            energy[0], energy[1] = stats["NOR"], stats["INIT"]
            tally[:] = 0
            kernel.run_block(
                block.steps, block.cols, block.vals, block.energy,
                self._identity if cmap is None else cmap, start, self.bits,
                self.written.code, self.written.map, self.armed.code, self.armed.map,
                self.spans.masks, self.spans.subset, writes is not None,
                self.writes.full if writes else _NO_COUNTS[0],
                self.writes.span_counts if writes else _NO_COUNTS[1],
                self.strict, energy, tally, status)
            self.stats.row_ops += int(tally[0])
            for kind in (("NOR", "INIT") if tally[3] == 1 else ("INIT", "NOR")):
                k = int(kind == "INIT")  # keys in the order the numpy engine adds them
                if tally[1 + k]:
                    stats[kind] = float(energy[k])
            self._armed_memo.clear()
            if status[0] == kernel.DONE:
                return
            i = int(status[1])
            if status[0] != kernel.ESCAPED:
                raise self._kernel_failure(block, i, cmap)
            step = self._escape(block, i)
            self._exec[type(step.op)](step if cmap is None else _bound(step, cmap))
            start = i + 1

    def _kernel_failure(self, block: Block, i: int, cmap: np.ndarray | None) -> PimError:
        """The numpy path's message for the check the kernel failed."""
        kind, k, xi, row = (int(v) for v in self._status[[0, 2, 3, 4]])
        step, row_of = self._escape(block, i), block.steps[i]
        off, reps = int(row_of[kernel.OFF]), int(row_of[kernel.REPS])
        j = k % reps
        frame = int(block.cols[off + (1 + k // reps if kind == kernel.UNWRITTEN else 0)])
        col = int((self._identity if cmap is None else cmap)[frame]) + j * int(row_of[kernel.RSHIFT])
        xb = step.xs.start + xi * (step.xs.step or 1)
        if kind == kernel.UNWRITTEN:
            return self.fail(step.line, f"reads c{col} of crossbar {xb} row {row}, "
                             "which was never written")
        return self.fail(step.line, f"NOR into c{col} of crossbar {xb} row {row}, not "
                         "initialised to 1 since its last write (INIT it, or mark the op '&=')")

    def _site(self, routine: Routine, xbs: Span, rows: Span | None) -> list:  # type: ignore[type-arg]
        """A routine's body decoded once per place it runs (crossbars and rows)."""
        key = (routine.name, xbs, rows)
        steps = self._sites.get(key)
        if steps is None:
            steps = self._sites[key] = [
                self._prepare(dataclasses.replace(i, xbs=xbs, rows=rows), i.line)
                if isinstance(i, Op) else i for i in routine.body]
        return steps

    def _static_totals(self) -> None:
        """Cycles, latency and the columns and crossbars touched do not depend on data, so
        they are counted from the program's structure when it is loaded (run() adds what
        does: energy, writes)."""
        from pimc.runtime.count import Walker, static_totals

        self.walker = Walker(self.prog)  # routine summaries, kept for the layer report
        static_totals(self.prog, self.stats, self.walker)

    def _finish(self) -> None:
        if self.writes is not None:
            self.stats.endurance = self.writes.summary()
        if self.faults is not None:
            self.stats.faults = self.faults.finish().as_dict()

    def mask_of(self, step: _Step, xs: slice | None = None) -> np.ndarray | None:
        """Rows an op acts on: its row span, narrowed by each crossbar's tag if predicated."""
        if not step.op.pred:
            return step.static_mask
        tag = self.tag[step.xs if xs is None else xs]
        return tag if step.static_mask is None else tag & step.static_mask

    def active_rows(self, step: _Step, mask: np.ndarray | None) -> int:
        if mask is None:
            return self.arch.rows * step.nx
        if mask.ndim == 1:
            return popcount(mask) * step.nx
        return popcount(mask)

    def check_written(self, step: _Step, cols: np.ndarray | int, xs: slice,
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
            raise self.fail(step.line, f"reads c{cols_a[c]} of crossbar "
                            f"{xs.start + x * (xs.step or 1)} row {r}, which was never written")

    def note_write(self, step: _Step, cols: np.ndarray | int, xs: slice,
                   mask: np.ndarray | None, rows: range | None) -> None:
        """Book-keeping after writing data: written, no longer armed, one more write."""
        self.written.update(cols, xs, mask, True)
        self.armed.update(cols, xs, mask, False)
        for c in np.atleast_1d(cols).tolist() if not isinstance(cols, int) else (cols,):
            self._armed_memo.pop(c, None)
        if self.writes is not None:
            dense = mask if (mask is not None and step.op.pred) else None
            self.writes.add(cols, xs, rows, dense)
        if self.faults is not None:
            self.faults.after_write(self.bits, cols, xs, mask)

    def write_energy(self, data: np.ndarray, mask: np.ndarray | None, rows_active: int,
                     ncols: int) -> float:
        """E_set per 1 bit and E_reset per 0 bit written in the active rows."""
        ones = popcount(data if mask is None else data & mask)
        return ones * self.arch.e_set_fj + (rows_active * ncols - ones) * self.arch.e_reset_fj

    def _store(self, cols: np.ndarray, xs: slice, data: np.ndarray,
               mask: np.ndarray | None) -> None:
        if mask is None:
            self.bits[cols, xs] = data
        else:
            self.bits[cols, xs] = (self.bits[cols, xs] & ~mask) | (data & mask)

    # ------------------------------------------------------------------ the ops

    def _nor(self, step: _Step) -> None:
        op: Nor = step.op  # type: ignore[assignment]
        xs, mask = step.xs, self.mask_of(step)
        if step.reps == 1:
            out: int | np.ndarray = op.out
            ins: list[int | np.ndarray] = list(op.ins)
        else:
            cols = np.array(rep_columns(self.arch, (op.out, *op.ins), op.rep))
            out, ins = cols[:, 0], [cols[:, k] for k in range(1, cols.shape[1])]
        # An armed cell holds 1, so a NOR into fully armed columns is a plain NOR.
        key = (xs.start, xs.stop, xs.step or 1)
        plain = mask is None and step.reps == 1 and (
            key in self._armed_memo.get(out, ()) or self.armed.all_full(out, xs))  # type: ignore[arg-type]
        if self.strict:
            for c in ins:
                self.check_written(step, c, xs, mask)
            if not (op.acc or plain or self.armed.all_set(out, xs, mask)):
                c, x, r = self.armed.first_unset(np.atleast_1d(out), xs, mask)
                raise self.fail(step.line, f"NOR into c{np.atleast_1d(out)[c]} of crossbar "
                                f"{xs.start + x * (xs.step or 1)} row {r}, not initialised to 1 "
                                "since its last write (INIT it, or mark the op '&=')")
        bits = self.bits
        if plain:
            target = bits[out, xs]  # a view: computed in place, no temporary
            if len(ins) == 1:
                np.invert(bits[ins[0], xs], out=target)
            else:
                np.bitwise_or(bits[ins[0], xs], bits[ins[1], xs], out=target)
                for c in ins[2:]:
                    np.bitwise_or(target, bits[c, xs], out=target)
                np.invert(target, out=target)
        else:
            acc = np.bitwise_or.reduce([bits[c, xs] for c in ins]) if len(ins) > 1 else (
                bits[ins[0], xs].copy())
            if mask is not None:
                acc &= mask
            np.invert(acc, out=acc)
            bits[out, xs] &= acc
        if self.faults is not None:
            self.faults.gate(bits, out, xs, mask)
        self.note_write(step, out, xs, mask, step.rows)
        rows = self.active_rows(step, mask) * step.reps
        self.stats.energy_fj["NOR"] += self.arch.e_nor_fj * rows
        self.stats.row_ops += rows

    def _init(self, step: _Step) -> None:
        xs, mask = step.xs, self.mask_of(step)
        ones, zeros = step.aux
        for cols, fill in ((ones, ALL), (zeros, np.uint64(0))):
            if len(cols):
                index = _as_index(cols)
                self._store(index, xs, fill, mask)
                self.note_write(step, cols, xs, mask, step.rows)
        if len(ones):
            self.armed.update(_as_index(ones), xs, mask, True)
            if mask is None:
                key = (xs.start, xs.stop, xs.step or 1)
                for c in ones.tolist():
                    self._armed_memo.setdefault(c, set()).add(key)
        active = self.active_rows(step, mask)
        self.stats.energy_fj["INIT"] += active * (
            len(ones) * self.arch.e_set_fj + len(zeros) * self.arch.e_reset_fj)

    def _search(self, step: _Step) -> None:
        op: Search = step.op  # type: ignore[assignment]
        xs, mask = step.xs, self.mask_of(step)
        cols = np.array(op.cols)
        self.check_written(step, cols, xs, mask)
        sel = np.broadcast_to(ALL if mask is None else mask, self.tag[xs].shape)
        data = self.bits[cols, xs]
        if op.kind is SearchKind.EXACT:
            match = sel.copy()
            for i in range(len(cols)):
                match &= data[i] if op.key >> i & 1 else ~data[i]
        else:
            match = sel.copy()
            for i in reversed(range(len(cols))):  # most significant column first
                hit = match & (data[i] if op.kind is SearchKind.MAX else ~data[i])
                match = np.where(hit.any(axis=-1, keepdims=True), hit, match)
        self.stats.energy_fj["SEARCH"] += (self.arch.e_search_fj * self.active_rows(step, mask)
                                           * step.timing.cycles_bulk)
        self.tag[xs] = match  # last: `mask` may be a view of the old tag

    def _shift(self, step: _Step) -> None:
        op: Shift = step.op  # type: ignore[assignment]
        xs, mask = step.xs, self.mask_of(step)
        src, dst = np.array(op.src_cols), np.array(op.dst_cols)
        want = np.broadcast_to(ALL if mask is None else mask, self.tag[xs].shape)
        self.check_written(step, src, xs, shift_rows(want, -op.by))
        data = shift_rows(self.bits[src, xs], op.by)
        self._store(dst, xs, data, mask)
        self.note_write(step, dst, xs, mask, step.rows)
        self.stats.energy_fj["SHIFT"] += self.write_energy(
            data, mask, self.active_rows(step, mask), len(dst))

    def _transfer(self, step: _Step) -> None:
        op: Transfer = step.op  # type: ignore[assignment]
        dxs = op.dst_xbs.as_slice()
        src = np.array(op.src_cols)
        if op.dst_row is not None:
            self._transpose(step, op, dxs, src)
            return
        mask = self.mask_of(step, dxs)  # predicated on the destination's tag
        dst = np.array(op.dst_cols)
        self.check_written(step, src, step.xs, mask)
        data = self.bits[src, step.xs]
        self._store(dst, dxs, data, mask)
        self.note_write(step, dst, dxs, mask, step.rows)
        self.stats.energy_fj["TRANSFER"] += self.write_energy(
            data, mask, self.active_rows(step, mask), len(dst))

    def _transpose(self, step: _Step, op: Transfer, dxs: slice, src: np.ndarray) -> None:
        rows = op.rows.indices() if op.rows is not None else range(self.arch.rows)
        self.check_written(step, src, step.xs, step.static_mask)
        block = unpack_rows(self.bits[src, step.xs])[:, :, rows.start:rows.stop]  # [k, nx, L]
        dst = np.arange(op.dst_cols[0], op.dst_cols[0] + len(rows))
        target = unpack_rows(self.bits[dst, dxs])  # [L, nx, R]
        target[:, :, op.dst_row:op.dst_row + len(src)] = block.transpose(2, 1, 0)
        self.bits[dst, dxs] = pack_rows(target)
        dst_rows = range(op.dst_row, op.dst_row + len(src))
        dmask = self.rows_mask(dst_rows)
        self.note_write(step, dst, dxs, dmask, dst_rows)
        ones = int(np.count_nonzero(block))
        self.stats.energy_fj["TRANSFER"] += (ones * self.arch.e_set_fj
                                             + (block.size - ones) * self.arch.e_reset_fj)


_NO_COUNTS = (np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1, 1), dtype=np.int64))


def _engine(name: str, faults: FaultModel | None) -> str:
    """"numba" (the compiled kernel) or "numpy"; "auto" picks numba where it can run."""
    if name == "auto":
        return "numba" if kernel.AVAILABLE and faults is None else "numpy"
    if name == "numba" and not kernel.AVAILABLE:
        raise PimError("the numba engine needs numba: pip install 'pimc[fast]'")
    if name == "numba" and faults is not None:
        raise PimError("fault injection runs on the numpy engine")
    if name not in ("numba", "numpy"):
        raise PimError(f"unknown engine '{name}' (auto, numba or numpy)")
    return name


def _runs(items: list, kind: type = _Step) -> list:  # type: ignore[type-arg]
    """Items with each run of consecutive `kind` items gathered in a list."""
    out: list = []  # type: ignore[type-arg]
    for item in items:
        if isinstance(item, kind):
            if out and isinstance(out[-1], list):
                out[-1].append(item)
            else:
                out.append([item])
        else:
            out.append(item)
    return out


def _layer_groups(items: list) -> list[list]:  # type: ignore[type-arg]
    """Top-level items in runs of consecutive steps of one source line or node (one
    block each for the kernel; energy is still attributed per source)."""
    groups: list[list] = []  # type: ignore[type-arg]
    for item in items:
        if isinstance(item, _Step) and groups and isinstance(groups[-1][-1], _Step) and \
                groups[-1][-1].op.src == item.op.src:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _init_columns(arch: Arch, op: Init) -> tuple[np.ndarray, np.ndarray]:
    """The columns an INIT sets to 1 and resets to 0, over all its repetitions."""
    cols = [(c, op.value >> i & 1) for r in rep_columns(arch, op.cols, op.rep)
            for i, c in enumerate(r)]
    return (np.array([c for c, v in cols if v], dtype=np.intp),
            np.array([c for c, v in cols if not v], dtype=np.intp))


def _as_index(cols: np.ndarray) -> np.ndarray | slice:
    """A run of adjacent columns as a slice: numpy writes a slice faster than a list."""
    if len(cols) > 1 and cols[-1] - cols[0] == len(cols) - 1 and (np.diff(cols) == 1).all():
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return cols


def _bound(step: _Step, cmap: np.ndarray) -> _Step:
    """A routine body's step with its frame columns mapped to crossbar columns."""
    op = step.op
    fields = dict(op.__dict__)
    for name in COLUMN_FIELDS[type(op)]:
        value = fields[name]
        fields[name] = int(cmap[value]) if isinstance(value, int) else tuple(
            cmap[list(value)].tolist())
    new = object.__new__(type(op))
    new.__dict__.update(fields)
    step = dataclasses.replace(step, op=new)
    if isinstance(op, Init):
        object.__setattr__(step, "aux", tuple(cmap[a] for a in step.aux))
    return step


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
