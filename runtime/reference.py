"""A slow, obviously-correct interpreter over numpy bool arrays, one cell per element.

It is the oracle the bit-packed Machine is tested against (state, tags, energy and
per-cell writes must agree), and the "numpy-bool" baseline of bench/runtime.py: the way
published Python PIM simulators hold a crossbar (a bool per cell, vectorised over rows
and, here, over crossbars too).
"""

from __future__ import annotations

import numpy as np

from pimc.isa.check import rep_columns, validate
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Init, Nor, Op, Program, Search, SearchKind, Shift, Transfer


class ReferenceMachine:
    def __init__(self, prog: Program, name: str = "<uop>", strict: bool = True) -> None:
        validate(prog, name)
        a = prog.arch
        self.prog, self.arch, self.name, self.strict = prog, a, name, strict
        shape = (prog.crossbars, a.rows, a.cols)  # [crossbar, row, column]
        self.cells = np.zeros(shape, dtype=bool)
        self.written = np.zeros(shape, dtype=bool)
        self.armed = np.zeros(shape, dtype=bool)
        self.writes = np.zeros(shape, dtype=np.int64)
        self.tag = np.zeros(shape[:2], dtype=bool)
        self.energy_fj: dict[str, float] = {}

    def selected(self, op: Op, xs: slice) -> np.ndarray:
        """bool[crossbars, R]: the rows `op` acts on in each crossbar of `xs`."""
        sel = np.zeros(self.tag[xs].shape, dtype=bool)
        rows = op.rows.as_slice() if op.rows is not None else slice(None)
        sel[:, rows] = True
        return sel & self.tag[xs] if op.pred else sel

    def _charge(self, kind: str, fj: float) -> None:
        self.energy_fj[kind] = self.energy_fj.get(kind, 0.0) + float(fj)

    def _write(self, xs: slice, sel: np.ndarray, col: int, values: np.ndarray, kind: str) -> None:
        """Write values[x, r] where sel[x, r]; charge E_set / E_reset per written bit."""
        old = self.cells[xs, :, col]
        self.cells[xs, :, col] = np.where(sel, values, old)
        self.written[xs, :, col] |= sel
        self.armed[xs, :, col] &= ~sel
        self.writes[xs, :, col] += sel
        if kind:
            ones = np.count_nonzero(values & sel)
            self._charge(kind, ones * self.arch.e_set_fj
                         + (np.count_nonzero(sel) - ones) * self.arch.e_reset_fj)

    def _need_written(self, line: int, xs: slice, sel: np.ndarray, col: int) -> None:
        if self.strict and not self.written[xs, :, col][sel].all():
            raise PimError(f"{self.name}:{line}: reads c{col}, never written")

    def run(self) -> None:
        for i, op in enumerate(self.prog.ops):
            self.step(op, self.prog.line_of(i))

    def step(self, op: Op, line: int) -> None:
        a, xs = self.arch, op.xbs.as_slice()
        sel = self.selected(op, xs)
        if isinstance(op, Nor):
            for gate in rep_columns(a, (op.out, *op.ins), op.rep):
                out, ins = gate[0], list(gate[1:])
                for c in ins:
                    self._need_written(line, xs, sel, c)
                if self.strict and not op.acc and not self.armed[xs, :, out][sel].all():
                    raise PimError(f"{self.name}:{line}: NOR into c{out} not initialised")
                nor = ~self.cells[xs][:, :, ins].any(axis=2)
                self._write(xs, sel, out, self.cells[xs, :, out] & nor, "")
                self._charge("NOR", a.e_nor_fj * np.count_nonzero(sel))
        elif isinstance(op, Init):
            for cols in rep_columns(a, op.cols, op.rep):
                for i, c in enumerate(cols):
                    bit = bool(op.value >> i & 1)
                    self._write(xs, sel, c, np.full(sel.shape, bit), "INIT")
                    self.armed[xs, :, c] |= sel & bit
        elif isinstance(op, Search):
            self._search(op, line, xs, sel)
        elif isinstance(op, Shift):
            old = self.cells[xs].copy()
            src_rows = np.arange(a.rows) - op.by
            inside = (src_rows >= 0) & (src_rows < a.rows)
            for s, d in zip(op.src_cols, op.dst_cols, strict=True):
                read = np.zeros_like(sel)
                read[:, src_rows[inside]] = sel[:, inside]
                self._need_written(line, xs, read, s)
                moved = np.zeros_like(sel)
                moved[:, inside] = old[:, src_rows[inside], s]
                self._write(xs, sel, d, moved, "SHIFT")
        elif isinstance(op, Transfer):
            self._transfer(op, line, xs)

    def _search(self, op: Search, line: int, xs: slice, sel: np.ndarray) -> None:
        for c in op.cols:
            self._need_written(line, xs, sel, c)
        weights = np.int64(1) << np.arange(len(op.cols), dtype=np.int64)
        values = (self.cells[xs][:, :, list(op.cols)] * weights).sum(axis=2)
        if op.kind is SearchKind.EXACT:
            match = sel & (values == op.key)
        else:
            masked = np.where(sel, values, -1 if op.kind is SearchKind.MAX else 1 << 62)
            best = masked.max(axis=1) if op.kind is SearchKind.MAX else masked.min(axis=1)
            match = sel & (values == best[:, None])
        self.tag[xs] = match
        cycles = 1 if op.kind is SearchKind.EXACT else len(op.cols)
        self._charge("SEARCH", self.arch.e_search_fj * np.count_nonzero(sel) * cycles)

    def _transfer(self, op: Transfer, line: int, xs: slice) -> None:
        dxs = op.dst_xbs.as_slice()
        if op.dst_row is None:
            dsel = self.selected(op, dxs)  # predicated on the destination's tag
            old = self.cells[xs].copy()
            for sc, dc in zip(op.src_cols, op.dst_cols, strict=True):
                self._need_written(line, xs, dsel, sc)
                self._write(dxs, dsel, dc, old[:, :, sc], "TRANSFER")
            return
        rows = op.rows.indices() if op.rows is not None else range(self.arch.rows)
        block = self.cells[xs][:, rows.start:rows.stop, list(op.src_cols)]  # [x, L, k]
        read = np.zeros(self.tag[xs].shape, dtype=bool)
        read[:, rows.start:rows.stop] = True
        for sc in op.src_cols:
            self._need_written(line, xs, read, sc)
        dsel = np.zeros(self.tag[dxs].shape, dtype=bool)
        dsel[:, op.dst_row:op.dst_row + len(op.src_cols)] = True
        for i in range(len(rows)):
            values = np.zeros_like(dsel)
            values[:, op.dst_row:op.dst_row + len(op.src_cols)] = block[:, i, :]
            self._write(dxs, dsel, op.dst_cols[0] + i, values, "TRANSFER")

    def load(self, name: str, values: np.ndarray) -> None:
        """Host write of a declared input, element by element."""
        t = next(t for t in self.prog.inputs if t.name == name)
        dt = parse_dtype(t.dtype)
        raw = dt.to_bits(np.asarray(values).reshape(-1))
        if t.broadcast:
            raw = np.repeat(raw, len(t.xbs) * len(t.rows))
        for e, v in enumerate(raw.tolist()):
            slot, lane = divmod(e, t.lanes)
            x = t.xbs.start + slot // len(t.rows) * t.xbs.step
            r = t.rows.start + slot % len(t.rows) * t.rows.step
            for b in range(dt.bits):
                c = t.columns(dt.bits)[lane * dt.bits + b]
                self.cells[x, r, c] = bool(v >> b & 1)
                self.written[x, r, c] = True
                self.armed[x, r, c] = False
                self.writes[x, r, c] += 1
