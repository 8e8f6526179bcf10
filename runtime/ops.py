"""The numpy path: each micro-op as a few numpy calls on the machine's bit-packed state.

Every op kind runs here on the numpy engine; on the numba engine, the SEARCH, SHIFT,
TRANSFER and predicated ops the kernel hands back (runtime/engine.py).
"""

from __future__ import annotations

import numpy as np
from pimc.runtime.bitops import ALL, pack_rows, popcount, shift_rows, unpack_rows
from pimc.runtime.engine import ARMED_RANK
from pimc.runtime.step import Step, as_index

from pimc.isa.check import rep_columns
from pimc.isa.uop import Nor, Search, SearchKind, Shift, Transfer


class NumpyOps:
    """The op implementations of Machine (a mixin: they use its state and checks)."""

    def count_copy(self, kind: str, data: np.ndarray, mask: np.ndarray | None,
                   rows_active: int, ncols: int) -> None:
        """A copy sets the 1 bits and resets the 0 bits it writes in the active rows."""
        ones = popcount(data if mask is None else data & mask)
        self.events.add(kind, ones, rows_active * ncols - ones)

    def _store(self, cols: np.ndarray | slice, xs: slice, data: np.ndarray,
               mask: np.ndarray | None) -> None:
        index = as_index(cols) if isinstance(cols, np.ndarray) else cols
        if mask is None:
            self.bits[index, xs] = data
        elif isinstance(index, slice):  # adjacent columns: in place, no gathered copy
            target = self.bits[index, xs]
            np.bitwise_and(target, ~mask, out=target)
            target |= data & mask
        else:
            self.bits[index, xs] = (self.bits[index, xs] & ~mask) | (data & mask)

    # ------------------------------------------------------------------ the ops

    def _nor(self, step: Step) -> None:
        op: Nor = step.op
        xs, mask = step.xs, self.mask_of(step)
        if step.reps == 1:
            out: int | np.ndarray = op.out
            ins: list[int | np.ndarray] = list(op.ins)
        else:
            cols = np.array(rep_columns(self.arch, (op.out, *op.ins), op.rep))
            out, ins = cols[:, 0], [cols[:, k] for k in range(1, cols.shape[1])]
        # An armed cell holds 1, so a NOR into fully armed columns is a plain NOR.
        key = (xs.start, xs.stop, xs.step or 1)
        plain = self.strict and mask is None and step.reps == 1 and (  # flags kept if strict
            key in self._armed_memo.get(out, ()) or self.armed.all_full(out, xs))
        if self.strict:
            for k, c in enumerate(ins):
                self.check_rank = k * step.reps
                self.check_written(step, c, xs, mask)
            if not (op.acc or plain or self.armed.all_set(out, xs, mask)):
                c, x, r = self.armed.first_unset(np.atleast_1d(out), xs, mask)
                self.check_rank = ARMED_RANK + c
                raise self.fail(step.line, f"NOR into c{np.atleast_1d(out)[c]} of crossbar "
                                f"{self.xb_base + xs.start + x * (xs.step or 1)} row {r}, not "
                                "initialised to 1 since its last write (INIT it, or mark the op "
                                "'&=')")
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
        self.events.add("NOR", rows)
        self.stats.row_ops += rows

    def _init(self, step: Step) -> None:
        xs, mask = step.xs, self.mask_of(step)
        ones, zeros = step.aux
        for cols, fill in ((ones, ALL), (zeros, np.uint64(0))):
            if len(cols):
                index = as_index(cols)
                self._store(index, xs, fill, mask)
                self.note_write(step, cols, xs, mask, step.rows)
        if len(ones) and self.strict:
            self.armed.update(as_index(ones), xs, mask, True)
            if mask is None:
                key = (xs.start, xs.stop, xs.step or 1)
                for c in ones.tolist():
                    self._armed_memo.setdefault(c, set()).add(key)
        active = self.active_rows(step, mask)
        self.events.add("INIT", active * len(ones), active * len(zeros))

    def _search(self, step: Step) -> None:
        op: Search = step.op
        xs, mask = step.xs, self.mask_of(step)
        cols = np.array(op.cols)
        self.check_rank = 0
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
        self.events.add("SEARCH", self.active_rows(step, mask) * step.timing.cycles_bulk)
        self.tag[xs] = match  # last: `mask` may be a view of the old tag

    def _shift(self, step: Step) -> None:
        op: Shift = step.op
        xs, mask = step.xs, self.mask_of(step)
        src, dst = np.array(op.src_cols), np.array(op.dst_cols)
        want = np.broadcast_to(ALL if mask is None else mask, self.tag[xs].shape)
        self.check_rank = 0
        self.check_written(step, src, xs, shift_rows(want, -op.by))
        data = shift_rows(self.bits[src, xs], op.by)
        self._store(dst, xs, data, mask)
        self.note_write(step, dst, xs, mask, step.rows)
        self.count_copy("SHIFT", data, mask, self.active_rows(step, mask), len(dst))

    def _transfer(self, step: Step) -> None:
        dst_mask = self.transfer_mask(step)
        self.transfer_in(step, self.transfer_out(step, dst_mask), dst_mask)

    def transfer_mask(self, step: Step) -> np.ndarray | None:
        """The rows a plain copy writes in each destination crossbar (its tag if predicated)."""
        op: Transfer = step.op
        return None if op.dst_row is not None else self.mask_of(step, op.dst_xbs.as_slice())

    def transfer_out(self, step: Step, dst_mask: np.ndarray | None) -> np.ndarray:
        """A copy's source half: check and read the source columns (a sharded memory runs
        it where the source crossbars are)."""
        op: Transfer = step.op
        src = np.array(op.src_cols)
        self.check_rank = 0
        if op.dst_row is None:
            self.check_written(step, src, step.xs, dst_mask)
            return self.bits[src, step.xs]
        rows = op.rows.indices() if op.rows is not None else range(self.arch.rows)
        self.check_written(step, src, step.xs, step.static_mask)
        return unpack_rows(self.bits[src, step.xs])[:, :, rows.start:rows.stop]  # [k, nx, L]

    def transfer_in(self, step: Step, data: np.ndarray, mask: np.ndarray | None) -> None:
        """A copy's destination half: write what transfer_out read, count it."""
        op: Transfer = step.op
        dxs = op.dst_xbs.as_slice()
        if op.dst_row is not None:
            self._transpose(step, op, dxs, data)
            return
        dst = np.array(op.dst_cols)
        self._store(dst, dxs, data, mask)
        self.note_write(step, dst, dxs, mask, step.rows)
        self.count_copy("TRANSFER", data, mask, self.active_rows(step, mask), len(dst))

    def _transpose(self, step: Step, op: Transfer, dxs: slice, block: np.ndarray) -> None:
        rows = op.rows.indices() if op.rows is not None else range(self.arch.rows)
        src = op.src_cols
        dst = np.arange(op.dst_cols[0], op.dst_cols[0] + len(rows))
        target = unpack_rows(self.bits[dst, dxs])  # [L, nx, R]
        target[:, :, op.dst_row:op.dst_row + len(src)] = block.transpose(2, 1, 0)
        self.bits[dst, dxs] = pack_rows(target)
        dst_rows = range(op.dst_row, op.dst_row + len(src))
        dmask = self.rows_mask(dst_rows)
        self.note_write(step, dst, dxs, dmask, dst_rows)
        ones = int(np.count_nonzero(block))
        self.events.add("TRANSFER", ones, block.size - ones)
