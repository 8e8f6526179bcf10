"""Running a program larger than this computer's memory: `pimc run` streams it.

A whole network's program names hundreds of thousands of crossbars, but at any moment
only a few stages hold live data: a stage's crossbars are first written by the moves that
gather its inputs and last read when its result moves on. The memory is cut into shards
at those lifetimes (contiguous crossbars first and last used by about the same items),
and runtime/driver.py runs the program with each shard's Machine made just before its
first item (its host inputs written then: no item touches them before) and dropped,
after it is summarised, once its last item has run. Outputs stay to the end. What is
counted is what one machine counts; only the simulator's memory differs.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pimc.runtime.driver import Failure, ShardWorker, drive, memory_mb
from pimc.runtime.endurance import host_writes, wear_fits
from pimc.runtime.hostio import account_values, encode, slot_crossbars, slots
from pimc.runtime.shard import driver_items, shard
from pimc.runtime.stats import HostIO, Stats

from pimc.isa.check import validate
from pimc.isa.errors import PimError
from pimc.isa.uop import Call, Item, Op, Program, Span, TensorIO, Transfer

SMALL = 512  # crossbars (64 MB of cells) that may live longer than they need to


def _spans(item: Item) -> list[Span]:
    if isinstance(item, Transfer):
        return [item.xbs, item.dst_xbs]
    if isinstance(item, Op | Call):
        assert item.xbs is not None  # a top-level call names its crossbars
        return [item.xbs]
    return [s for c in item.body for s in _spans(c)]


def lifetimes(prog: Program) -> tuple[np.ndarray, np.ndarray]:
    """Per crossbar, the first and the last top-level item that touches it (an output's
    crossbars live past the end, to len(ops) + 1; an unused input's, item 0 alone); -1 and -1 for
    a crossbar nothing touches."""
    n, end = prog.crossbars, len(prog.ops)
    first, last = np.full(n, end + 1), np.full(n, -1)
    for i, item in enumerate(prog.ops):
        for s in _spans(item):
            cut = slice(s.start, s.stop, s.step)
            np.minimum(first[cut], i, out=first[cut])
            last[cut] = i  # items come in order
    for t in prog.outputs:
        _, xb, _ = slots(t)
        first[xb] = np.minimum(first[xb], end)
        last[xb] = end + 1  # past the last segment: read after it
    for t in prog.inputs:  # written by the host and never used: made and dropped at once
        _, xb, _ = slots(t)
        idle = xb[last[xb] < 0]
        first[idle], last[idle] = 0, 0
    first[last < 0] = -1
    return first, last


def live_ranges(first: np.ndarray, last: np.ndarray, small: int = SMALL
                ) -> list[tuple[int, int]]:
    """Contiguous shards of crossbars that live at about the same time: runs of equal
    lifetimes, a run joined to the shard before it when each lifetime covers most of
    their union, or when both are small."""
    n = len(first)
    cuts = np.flatnonzero((np.diff(first) != 0) | (np.diff(last) != 0)) + 1
    out: list[list[int]] = []  # [lo, hi, first, last]
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), n], strict=True):
        f, la = int(first[a]), int(last[a])
        if out:
            lo, hi, F, L = out[-1]
            union = max(L, la) - min(F, f) + 1
            similar = union <= 1.25 * min(L - F + 1, la - f + 1)
            if similar or (hi - lo) + (b - a) <= small:
                out[-1] = [lo, b, min(F, f), max(L, la)]
                continue
        out.append([a, b, f, la])
    return [(lo, hi) for lo, hi, _, _ in out]


def windows(first: np.ndarray, last: np.ndarray, ranges: list[tuple[int, int]]
            ) -> list[tuple[int, int]]:
    """Each shard's first and last item (-1, -1: none touches it)."""
    out = []
    for lo, hi in ranges:
        used = last[lo:hi] >= 0
        out.append((int(first[lo:hi][used].min()), int(last[lo:hi][used].max()))
                   if used.any() else (-1, -1))
    return out


def peak_crossbars(ranges: list[tuple[int, int]], spans: list[tuple[int, int]]) -> int:
    """The most crossbars live at once, shard by shard."""
    events = sorted([(f, hi - lo) for (lo, hi), (f, la) in zip(ranges, spans, strict=True)
                     if la >= 0] + [(la + 1, lo - hi) for (lo, hi), (f, la)
                                    in zip(ranges, spans, strict=True) if la >= 0])
    live = best = 0
    for _, d in events:
        live += d
        best = max(best, live)
    return best


class LocalPool:
    """Shards made in this process one after another, each only while it lives."""

    def __init__(self, prog: Program, ranges: list[tuple[int, int]],
                 spans: list[tuple[int, int]], moved: list[int], name: str, strict: bool,
                 count_writes: bool, engine: str) -> None:
        self.prog, self.ranges, self.spans = prog, ranges, spans
        self.moved = set(moved)
        self.args = (name, strict, count_writes, engine)
        self.live: dict[int, ShardWorker] = {}
        self.gone: list[dict[str, Any]] = []  # the summaries of dropped shards
        self.inputs: list[tuple[TensorIO, np.ndarray, int, int]] = []  # and crossbars
        self.order = sorted((f, k) for k, (f, la) in enumerate(spans) if la >= 0)
        self.next = 0  # into order: shards before it are made
        self.made: set[int] = set()
        self.most = 0  # the most crossbars live at once

    def place(self, t: TensorIO, values: np.ndarray, host: HostIO) -> None:
        account_values(host, t, values, self.prog.arch)
        self.inputs.append((t, values, *slot_crossbars(t)))  # written when its shards are made

    def _make(self, k: int) -> ShardWorker:
        if k in self.made:
            return self.live[k]
        self.made.add(k)
        lo, hi = self.ranges[k]
        w = ShardWorker(shard(self.prog, self.ranges, k, self.moved, self.spans[k]), *self.args)
        for t, values, a, b in self.inputs:
            if a < hi and lo < b:
                p = encode(t, values, self.prog.arch.rows, (lo, hi))
                w.place(p.cols, p.lo, p.data, p.mask, host_writes(t))
        self.live[k] = w
        self.most = max(self.most, sum(b - a for a, b in (self.ranges[j] for j in self.live)))
        return w

    def _upto(self, hi: int) -> None:
        """Make every shard whose first item comes before item hi."""
        while self.next < len(self.order) and self.order[self.next][0] < hi:
            self._make(self.order[self.next][1])
            self.next += 1

    def start(self, k: int, method: str, *args: Any) -> Any:
        return getattr(self._make(k), method)(*args)

    def wait(self, k: int, handle: Any, what: str) -> Any:
        return handle

    def run(self, lo: int, hi: int) -> list[Failure]:
        self._upto(hi + 1)  # and those the crossing TRANSFER at hi reaches
        return [r for k, w in sorted(self.live.items()) if self.spans[k][0] < hi
                and (r := w.run(lo, hi)) is not None]

    def done(self, upto: int) -> None:
        self._upto(upto)  # a shard whose life was one crossing TRANSFER, or no item at all
        over = [k for k in self.live if self.spans[k][1] < upto]
        for k in over:
            self.gone.append(self.live.pop(k).summary())
        if over:
            gc.collect()  # a Machine and its host port refer to each other: free it now

    def each(self, what: str, method: str, *args: Any) -> list[Any]:
        self._upto(len(self.prog.ops) + 1)
        out = [getattr(w, method)(*args) for _, w in sorted(self.live.items())]
        return self.gone + out if method == "summary" else out


@dataclass(frozen=True)
class StreamReport:
    shards: int
    crossbars: int
    peak_crossbars: int  # the most made at once
    segments: int
    crossing_transfers: int
    setup_s: float
    run_s: float
    rss_mb: float

    def lines(self) -> list[str]:
        return [f"streamed in {self.shards} shards by lifetime: at most "
               f"{self.peak_crossbars:,} of {self.crossbars:,} crossbars held at once; "
               f"{self.segments} segments, {self.crossing_transfers} TRANSFERs between "
               f"shards; set-up {self.setup_s:.1f} s, run {self.run_s:.1f} s, peak memory "
               f"{self.rss_mb:,.0f} MB"]


def state_bytes(prog: Program, crossbars: int, strict: bool) -> float:
    """The cells of that many crossbars: a bit each, and with the strict checks two more
    (the written and armed flags)."""
    return crossbars * prog.arch.rows * prog.arch.cols * (3 if strict else 1) / 8


def _check_memory(prog: Program, most: int, strict: bool, memory_bytes: float,
                  name: str) -> None:
    """Refuse, before any work, a run whose live shards cannot fit."""
    need = state_bytes(prog, most, strict)
    if need > memory_bytes:
        hint = (" (--no-strict keeps one bit per cell instead of three)"
                if strict and state_bytes(prog, most, False) <= memory_bytes else "")
        raise PimError(f"{name}: {most:,} crossbars are alive at once, about "
                       f"{need / 2**30:,.1f} GB of cells, more than this computer's "
                       f"{memory_bytes / 2**30:,.1f} GB{hint}")


def needs_streaming(prog: Program, budget_bytes: float, strict: bool) -> bool:
    """One machine for the whole memory would not fit in `budget_bytes`."""
    return state_bytes(prog, prog.crossbars, strict) > budget_bytes


def run_streamed(prog: Program, inputs: dict[str, np.ndarray] | None = None, *,
                 name: str = "<uop>", seed: int = 0, strict: bool = True,
                 count_writes: bool = True, engine: str = "auto",
                 ranges: list[tuple[int, int]] | None = None,
                 memory_bytes: float | None = None,
                 ) -> tuple[dict[str, np.ndarray], Stats, StreamReport]:
    """run_program with shards made and dropped by lifetime (`ranges`: the shards, if
    not those of live_ranges); refused at once if the shards alive together would not
    fit in `memory_bytes`."""
    validate(prog, name)
    start = time.perf_counter()
    first, last = lifetimes(prog)
    ranges = ranges or live_ranges(first, last)
    count_writes = count_writes and wear_fits(prog.crossbars)  # as one machine would
    spans = windows(first, last, ranges)
    if memory_bytes is not None:
        _check_memory(prog, peak_crossbars(ranges, spans), strict, memory_bytes, name)
    moved = driver_items(prog, ranges)
    pool = LocalPool(prog, ranges, spans, moved, name, strict, count_writes, engine)
    outputs, stats, t = drive(prog, inputs or {}, pool, moved, name=name, seed=seed,
                              strict=strict, count_writes=count_writes, start=start,
                              what=f"streamed in {len(ranges)} shards")
    return outputs, stats, StreamReport(len(ranges), prog.crossbars, pool.most, t.segments,
                                        t.crossing_transfers, t.setup_s, t.run_s, memory_mb())
