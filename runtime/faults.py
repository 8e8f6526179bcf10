"""Fault injection: stuck-at cells, cells that wear out after a number of writes, and
gates that fail transiently.

A `FaultModel` is the state of an unreliable memory, apart from any one program: the
same model may serve several runs in a row (the cells keep wearing). The machine calls
`after_write` after every write of data (INIT, NOR, SHIFT, TRANSFER, host writes) and
`gate` after every NOR; both act on the bit-packed state in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pimc.runtime.bitops import pack_rows, popcount, unpack_rows

from pimc.isa.arch import Arch
from pimc.isa.errors import PimError
from pimc.isa.faults import Fault, load_faults

MAX_COUNTED_CELLS = 1 << 28  # per-cell write counters (endurance) for at most 1 GB


@dataclass(frozen=True)
class FaultSpec:
    """What to inject: `pimc run --faults` parses it from 'key=value,...' or a map file."""

    cells: tuple[Fault, ...] = ()
    stuck0: float = 0.0  # fraction of cells stuck at 0
    stuck1: float = 0.0
    transient: float = 0.0  # probability that a NOR writes the wrong bit in a row
    endurance: int | None = None  # writes before a cell is stuck (None: never wears out)
    seed: int = 0

    KEYS = "map=FILE, stuck0=RATE, stuck1=RATE, stuck=RATE, transient=P, endurance=N|arch, seed=N"

    @classmethod
    def parse(cls, text: str, arch: Arch) -> FaultSpec:
        """'stuck=1e-4,seed=3', 'endurance=arch' (the architecture's limit) or a map file."""
        if "=" not in text:
            return cls(cells=load_faults(text))
        values: dict[str, object] = {}
        for item in text.split(","):
            key, _, raw = item.strip().partition("=")
            try:
                if key == "map":
                    values["cells"] = load_faults(raw)
                elif key in ("stuck0", "stuck1", "transient", "stuck"):
                    rate = float(raw)
                    if not 0 <= rate <= 1:
                        raise ValueError
                    if key == "stuck":
                        values["stuck0"] = values["stuck1"] = rate / 2
                    else:
                        values[key] = rate
                elif key == "endurance":
                    values[key] = arch.endurance_writes if raw == "arch" else int(raw)
                    if values[key] <= 0:
                        raise ValueError
                elif key == "seed":
                    values[key] = int(raw)
                    if values[key] < 0:
                        raise ValueError
                else:
                    raise PimError(f"--faults: unknown key '{key}' (known: {cls.KEYS})")
            except ValueError:
                raise PimError(f"--faults: bad value '{raw}' for {key}") from None
        return cls(**values)


@dataclass
class FaultReport:
    stuck_cells: int = 0
    hits: int = 0  # stuck cells a write wanted to set to the other value
    first_hits: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, c, r, stuck
    worn_cells: int = 0
    transient_flips: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"stuck_cells": self.stuck_cells, "cells_hit": self.hits,
                "first_hits": [f"x{x} c{c} r{r} stuck-at-{v}" for x, c, r, v in self.first_hits],
                "worn_cells": self.worn_cells, "transient_flips": self.transient_flips}

    def lines(self) -> list[str]:
        out = [f"faults: {self.stuck_cells:,} stuck cells, {self.hits:,} of them hit by a write "
               f"of the other value; {self.worn_cells:,} cells worn out; "
               f"{self.transient_flips:,} transient gate errors"]
        if self.first_hits:
            out.append("faults: first cells hit: " + ", ".join(
                f"x{x} c{c} r{r} (stuck at {v})" for x, c, r, v in self.first_hits))
        return out


class FaultModel:
    """Stuck cells per column (bit-packed masks over crossbars and rows), optional
    per-cell write counts for wear-out, and a random source for gate errors."""

    def __init__(self, spec: FaultSpec, arch: Arch, crossbars: int) -> None:
        self.arch, self.crossbars, self.spec = arch, crossbars, spec
        self.words = arch.rows // 64
        self.rng = np.random.default_rng(spec.seed)
        self.mask: dict[int, np.ndarray] = {}  # column -> uint64 [crossbars, words]
        self.value: dict[int, np.ndarray] = {}
        self.hit: dict[int, np.ndarray] = {}
        self.report = FaultReport()
        for f in spec.cells:
            self._check(f)
            rows = range(arch.rows) if f.row is None else (f.row,)
            for c in range(arch.cols) if f.col is None else (f.col,):
                if f.xb < crossbars:
                    for r in rows:
                        self._stick(c, f.xb, r, f.value)
        for value, rate in ((0, spec.stuck0), (1, spec.stuck1)):
            cells = crossbars * arch.cols * arch.rows
            count = int(self.rng.binomial(cells, rate)) if rate else 0
            for k in self.rng.choice(cells, size=count, replace=False).tolist():
                x, rest = divmod(k, arch.cols * arch.rows)
                self._stick(rest // arch.rows, x, rest % arch.rows, value)
        self.report.stuck_cells = sum(popcount(m) for m in self.mask.values())
        self.counts: np.ndarray | None = None
        if spec.endurance is not None:
            if arch.cols * crossbars * arch.rows > MAX_COUNTED_CELLS:
                raise PimError(f"--faults endurance counts every cell's writes: "
                               f"{arch.cols * crossbars * arch.rows:,} cells is more than "
                               f"the {MAX_COUNTED_CELLS:,} it can follow")
            self.counts = np.zeros((arch.cols, crossbars, arch.rows), dtype=np.uint32)

    def _check(self, f: Fault) -> None:
        a = self.arch
        if f.xb >= a.max_crossbars or (f.col or 0) >= a.cols or (f.row or 0) >= a.rows:
            raise PimError(f"fault '{f.text()}' is outside the memory ({a.max_crossbars} "
                           f"crossbars of {a.rows} rows x {a.cols} columns)")

    def _column(self, col: int) -> None:
        """Room for the stuck cells of a column (its mask, values and hits)."""
        if col not in self.mask:
            shape = (self.crossbars, self.words)
            self.mask[col], self.value[col], self.hit[col] = (
                np.zeros(shape, np.uint64) for _ in range(3))

    def _stick(self, col: int, xb: int, row: int, value: int) -> None:
        self._column(col)
        bit = np.uint64(1) << np.uint64(row % 64)
        self.mask[col][xb, row // 64] |= bit
        if value:
            self.value[col][xb, row // 64] |= bit
        else:
            self.value[col][xb, row // 64] &= ~bit

    def settle(self, bits: np.ndarray) -> None:
        """Stuck cells hold their value from the start."""
        for c, m in self.mask.items():
            bits[c] = (bits[c] & ~m) | self.value[c]

    def after_write(self, bits: np.ndarray, cols: int | np.ndarray, xs: slice,
                    mask: np.ndarray | None) -> None:
        """A write of `cols` in crossbars `xs` (rows `mask`, None: all) has happened:
        stuck cells keep their value (a hit when the write wanted the other), then the
        written cells age and those at their limit stick at what they now hold."""
        for c in np.atleast_1d(cols).tolist():
            if c in self.mask:
                m = self.mask[c][xs] if mask is None else self.mask[c][xs] & mask
                stuck = self.value[c][xs]
                self.hit[c][xs] |= (bits[c, xs] ^ stuck) & m
                bits[c, xs] = (bits[c, xs] & ~self.mask[c][xs]) | stuck
            if self.counts is not None:
                self._age(bits, c, xs, mask)

    def _age(self, bits: np.ndarray, c: int, xs: slice, mask: np.ndarray | None) -> None:
        assert self.counts is not None and self.spec.endurance is not None
        written = (np.ones((1, self.arch.rows), bool) if mask is None
                   else unpack_rows(np.atleast_2d(mask)).astype(bool))
        counts = self.counts[c, xs]
        counts += written
        limit = (counts == self.spec.endurance) & written
        if limit.any():
            worn = pack_rows(limit)
            self._column(c)
            self.mask[c][xs] |= worn
            self.value[c][xs] = (self.value[c][xs] & ~worn) | (bits[c, xs] & worn)
            self.report.worn_cells += popcount(worn)

    def gate(self, bits: np.ndarray, out: int | np.ndarray, xs: slice,
             mask: np.ndarray | None) -> None:
        """Each row a NOR wrote gets the wrong bit with probability `transient`."""
        p = self.spec.transient
        if not p:
            return
        for c in np.atleast_1d(out).tolist():
            target = bits[c, xs]
            cells = target.size * 64
            count = int(self.rng.binomial(cells, p))
            if not count:
                continue
            flips = np.zeros(target.size, np.uint64)
            where = self.rng.choice(cells, size=count, replace=False)
            np.bitwise_or.at(flips, where // 64, np.uint64(1) << (where % 64).astype(np.uint64))
            flips = flips.reshape(target.shape)
            if mask is not None:
                flips &= mask
            bits[c, xs] = target ^ flips
            self.report.transient_flips += popcount(flips)

    def finish(self) -> FaultReport:
        """Totals of what the faults did (stuck cells now include worn-out ones)."""
        r = self.report
        r.stuck_cells = sum(popcount(m) for m in self.mask.values())
        r.hits = sum(popcount(h) for h in self.hit.values())
        r.first_hits = []
        for c in sorted(self.hit):
            for x, w in zip(*np.nonzero(self.hit[c]), strict=True):
                word = int(self.hit[c][x, w])
                while word and len(r.first_hits) < 10:
                    bit = (word & -word).bit_length() - 1
                    row = int(w) * 64 + bit
                    r.first_hits.append((int(x), c, row, int(self.value[c][x, w]) >> bit & 1))
                    word &= word - 1
        r.first_hits.sort()
        return r


def fault_spec(text: str, arch: Arch) -> FaultSpec:
    if "=" not in text and not Path(text).exists():
        raise PimError(f"--faults: '{text}' is neither a fault map file nor "
                       f"key=value pairs ({FaultSpec.KEYS})")
    return FaultSpec.parse(text, arch)
