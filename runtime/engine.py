"""The numba engine's side of the machine: blocks decoded for the kernel, run, and the
numpy path called for the ops the kernel hands back."""

from __future__ import annotations

import dataclasses

import numpy as np
from pimc.runtime import jit
from pimc.runtime import kernel_table as T
from pimc.runtime.block import Block, Template, site_block, template, top_block
from pimc.runtime.faults import FaultModel
from pimc.runtime.step import Step, bound

from pimc.isa.errors import PimError
from pimc.isa.uop import Item, Op, Routine, Span

NO_COUNTS = (np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1, 1), dtype=np.int64))


ARMED_RANK = 1 << 30  # an op checks its output after all of its inputs


def choose_engine(name: str, faults: FaultModel | None) -> str:
    """"numba" (the compiled kernel) or "numpy"; "auto" picks numba where it can run."""
    if name == "auto":
        return "numba" if jit.AVAILABLE and faults is None else "numpy"
    if name == "numba" and not jit.AVAILABLE:
        raise PimError("the numba engine needs numba: pip install 'pimc[fast]'")
    if name == "numba" and faults is not None:
        raise PimError("fault injection runs on the numpy engine")
    if name not in ("numba", "numpy"):
        raise PimError(f"unknown engine '{name}' (auto, numba or numpy)")
    return name


def runs(items: list, kind: type = Step) -> list:
    """Items with each run of consecutive `kind` items gathered in a list."""
    out: list = []
    for item in items:
        if isinstance(item, kind):
            if out and isinstance(out[-1], list):
                out[-1].append(item)
            else:
                out.append([item])
        else:
            out.append(item)
    return out


def layer_groups(items: list) -> list[list]:
    """Top-level items in runs of consecutive steps of one source line or node (one
    block each for the kernel; energy is still attributed per source)."""
    groups: list[list] = []
    for item in items:
        if isinstance(item, Step) and groups and isinstance(groups[-1][-1], Step) and \
                groups[-1][-1].op.src == item.op.src:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


class KernelPath:
    """The kernel-driving methods of Machine (a mixin)."""

    def _blocks_of(self, items: list) -> list[Block | Item]:
        """Top-level items with each run of consecutive steps decoded into a block."""
        blocks: list[Block | Item] = []
        for run in runs(items):
            if isinstance(run, list):
                block = top_block(self, tuple(s.op for s in run))
                block.escapes.update(enumerate(run))  # prepared already, with lines
                run = block
            blocks.append(run)
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
                    else run for run in runs(list(routine.body), Op)]
            blocks = self._sites[key] = [
                site_block(self, t, xbs, rows) if isinstance(t, Template) else t
                for t in templates]
        return blocks

    def _escape(self, block: Block, i: int) -> Step:
        step = block.escapes.get(i)
        if step is None:
            op = block.ops[i]
            if block.where is not None:
                op = dataclasses.replace(op, xbs=block.where[0], rows=block.where[1])
            step = block.escapes[i] = self.prepare(op, op.line)
        return step

    def _run_block(self, block: Block, cmap: np.ndarray | None) -> None:
        """Run a block in the kernel, handing its escapes to the numpy path."""
        units, tally, status = self._units, self._tally, self._status
        writes = self.writes
        start, n = 0, len(block.ops)
        from pimc.runtime import kernel  # numba, loaded where a kernel runs

        while start < n:
            units[:] = 0
            tally[:] = 0
            kernel.run_block(
                block.steps, block.cols, block.vals,
                self._identity if cmap is None else cmap, start, self.bits,
                self.written.code, self.written.map, self.armed.code, self.armed.map,
                self.spans.masks, self.spans.subset, writes is not None,
                self.writes.full if writes else NO_COUNTS[0],
                self.writes.span_counts if writes else NO_COUNTS[1],
                self.strict, units, tally, status, T.TILE_BYTES)
            self.stats.row_ops += int(tally[0])
            self._add_events(units, tally)
            self._armed_memo.clear()
            if status[0] == T.DONE:
                self.executed += n - start
                return
            i = int(status[1])
            self.executed += i - start
            if status[0] != T.ESCAPED:
                raise self._kernel_failure(block, i, cmap)
            step = self._escape(block, i)
            self._exec[type(step.op)](step if cmap is None else bound(step, cmap))
            self.executed += 1
            start = i + 1

    def _add_events(self, units: np.ndarray, tally: np.ndarray) -> None:
        """The kernel's energy events, kinds in the order it met them (as the numpy path
        would add them)."""
        U = T
        events = (("NOR", units[U.U_NOR], 0), ("INIT", units[U.U_SET], units[U.U_RESET]),
                  ("SHIFT", units[U.U_SHIFT_ONES], units[U.U_SHIFT] - units[U.U_SHIFT_ONES]),
                  ("TRANSFER", units[U.U_MOVE_ONES], units[U.U_MOVE] - units[U.U_MOVE_ONES]))
        met = tally[1 + U.KINDS:1 + 2 * U.KINDS]
        for slot in sorted(np.flatnonzero(met).tolist(), key=lambda k: met[k]):
            kind, a, b = events[slot]
            self.events.add(kind, a, b)

    def _kernel_failure(self, block: Block, i: int, cmap: np.ndarray | None) -> PimError:
        """The numpy path's message for the check the kernel failed."""
        kind, k, xi, row = (int(v) for v in self._status[[0, 2, 3, 4]])
        self.check_rank = k if kind == T.UNWRITTEN else ARMED_RANK + k
        step, row_of = self._escape(block, i), block.steps[i]
        off, reps = int(row_of[T.OFF]), int(row_of[T.REPS])
        j = k % reps
        frame = int(block.cols[off + (1 + k // reps if kind == T.UNWRITTEN else 0)])
        col = int((self._identity if cmap is None else cmap)[frame]) + j * int(row_of[T.RSHIFT])
        xb = self.xb_base + step.xs.start + xi * (step.xs.step or 1)
        if kind == T.UNWRITTEN:
            return self.fail(step.line, f"reads c{col} of crossbar {xb} row {row}, "
                             "which was never written")
        return self.fail(step.line, f"NOR into c{col} of crossbar {xb} row {row}, not "
                         "initialised to 1 since its last write (INIT it, or mark the op '&=')")
