"""Running one program as shards of its crossbars, each shard its own Machine.

The driver is the same whether the shards live in Dask workers (runtime/cluster.py) or
one after another in this process (runtime/stream.py); a pool says where. The program
runs in segments split at the TRANSFERs that cross shards: each shard runs a segment on
its own crossbars, then the driver executes the crossing TRANSFER by reading the source
halves where the sources are and writing the destination halves where the destinations
are. SHIFT, SEARCH and tags never leave a crossbar, so they stay inside a shard.

What is reported is what one machine would report: cycles and time come from the
program's structure, energy from integer event counts summed over the shards, wear from
per-cell counts of disjoint crossbars, and a failed check is the first one in execution
order (item, micro-op within it, which check, lowest crossbar), with the same message.
"""

from __future__ import annotations

import bisect
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pimc.runtime.endurance import Endurance
from pimc.runtime.hostio import (
    account_read,
    complete_inputs,
    decode,
    host_values,
    placed_mask,
    slots,
    unwritten_output,
)
from pimc.runtime.machine import Machine
from pimc.runtime.progress import Progress
from pimc.runtime.shard import Shard, clip, pieces
from pimc.runtime.stats import Events, HostIO, Stats, energy_of

from pimc.isa.errors import PimError
from pimc.isa.uop import Program, Span, TensorIO, Transfer

Failure = tuple[int, int, int, int, str]  # item, micro-ops into it, check, crossbar, message


class ShardWorker:
    """One shard's machine (in a Dask worker, an actor)."""

    def __init__(self, part: Shard, name: str, strict: bool, count_writes: bool,
                 engine: str) -> None:
        self.part = part
        self.m = Machine(part.prog, name, strict=strict, count_writes=count_writes,
                         engine=engine, xb_base=part.lo, validated=True)
        if self.m.engine == "numba":
            from pimc.runtime import kernel  # numba, loaded where a kernel runs

            kernel.warm()  # set-up, not run time
        self.busy = 0.0  # seconds spent running segments

    def _local(self, lo: int, hi: int) -> tuple[int, int] | None:
        a, b = max(lo, self.part.lo), min(hi, self.part.hi)
        return (a - self.part.lo, b - self.part.lo) if a < b else None

    def place(self, cols: np.ndarray, lo: int, data: np.ndarray, mask: np.ndarray,
              spans: list[tuple[np.ndarray, Span, range]]) -> None:
        """Host writes of the cells of crossbars lo.. that fall in this shard."""
        part = self._local(lo, lo + mask.shape[0])
        if part is not None:
            a, b = part
            cut = slice(a + self.part.lo - lo, b + self.part.lo - lo)
            self.m.host.place(cols, slice(a, b), data[:, cut], mask[cut])
        if self.m.writes is not None:
            for c, xbs, rows in spans:
                local = clip(xbs, self.part.lo, self.part.hi)
                if local is not None:
                    self.m.writes.add(c, local.as_slice(), rows)

    def run(self, lo: int, hi: int) -> Failure | None:
        """Run the program's top-level items lo..hi-1 that this shard has; a failure as
        (item, micro-ops into it, check, crossbar, message)."""
        kept = self.part.kept
        a, b = bisect.bisect_left(kept, lo), bisect.bisect_left(kept, hi)
        start = time.perf_counter()
        try:
            self.m.run_items(a, b)
        except PimError as exc:
            item, into, rank = self.m.failure or (a, 0, 0)
            return kept[item], into, rank, self.part.lo, str(exc)
        finally:
            self.busy += time.perf_counter() - start
        return None

    def mask(self, op: Transfer, line: int) -> np.ndarray | None:
        return self.m.transfer_mask(self.m.prepare(op, line))

    def copy_out(self, op: Transfer, line: int, mask: np.ndarray | None
                 ) -> tuple[np.ndarray | None, tuple[int, int, int, str] | None]:
        try:
            return self.m.transfer_out(self.m.prepare(op, line), mask), None
        except PimError as exc:
            return None, (*self.m.unset, str(exc))

    def copy_in(self, op: Transfer, line: int, data: np.ndarray, mask: np.ndarray | None
                ) -> None:
        before = self.m.events.snapshot()
        self.m.transfer_in(self.m.prepare(op, line), data, mask)
        spent = self.m.layer_events.setdefault(op.src, Events())
        for kind, (a, b) in self.m.events.since(before).items():
            spent.add(kind, a, b)

    def words(self, cols: np.ndarray, lo: int, hi: int, mask: np.ndarray
              ) -> tuple[int, np.ndarray, tuple[int, int, int] | None] | None:
        """The words of an output's columns over this shard's part of crossbars lo..hi-1,
        and (if strict) its first selected cell never written."""
        part = self._local(lo, hi)
        if part is None:
            return None
        a, b = part
        xs = slice(a, b)
        cut = mask[a + self.part.lo - lo:b + self.part.lo - lo]
        bad = self.m.host.unwritten(cols, xs, cut) if self.m.strict else None
        return a + self.part.lo, self.m.bits[cols, xs].copy(), bad

    def summary(self) -> dict[str, Any]:
        m = self.m
        return {"events": m.events.snapshot(),
                "layers": {k: e.snapshot() for k, e in m.layer_events.items()},
                "row_ops": m.stats.row_ops,
                "endurance": m.writes.summary() if m.writes is not None else None,
                "rss_mb": memory_mb(), "busy_s": self.busy}

    def memory(self) -> float:
        return memory_mb()


def memory_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM, of this program's own
    address space: ru_maxrss also counts the parent's peak before the exec that
    started it (a run launched by a large process reported that process's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def merge_endurance(parts: list[Endurance]) -> Endurance:
    """Per-cell statistics of disjoint crossbars, combined."""
    written = sum(p.cells_written for p in parts)
    total = sum(p.cell_writes for p in parts)
    hist: Counter[str] = Counter()
    for p in parts:
        hist.update(p.histogram)
    order = sorted(hist, key=lambda k: int(k.split("-")[0]))
    return Endurance(max((p.max_writes_per_cell for p in parts), default=0),
                     total / written if written else 0.0, written, total,
                     {k: hist[k] for k in order})


class Pool(Protocol):
    """Where the shards live. `start` begins a call on shard k and `wait` gives its
    result (a local pool runs it in `start`); `run` and `each` act on every shard that
    has work; `done(i)` says items before i are over (a local pool frees shards)."""

    ranges: list[tuple[int, int]]

    def place(self, t: TensorIO, values: np.ndarray, host: HostIO) -> None: ...
    def start(self, k: int, method: str, *args: Any) -> Any: ...
    def wait(self, k: int, handle: Any, what: str) -> Any: ...
    def run(self, lo: int, hi: int) -> list[Failure]: ...
    def done(self, upto: int) -> None: ...
    def each(self, what: str, method: str, *args: Any) -> list[Any]: ...


@dataclass
class Timing:
    segments: int
    crossing_transfers: int
    setup_s: float
    run_s: float
    summaries: list[dict[str, Any]]


def drive(prog: Program, given: dict[str, np.ndarray], pool: Pool, moved: list[int], *,
          name: str, seed: int, strict: bool, count_writes: bool, start: float,
          what: str, on_ready: Callable[[], None] | None = None,
          ) -> tuple[dict[str, np.ndarray], Stats, Timing]:
    """Set up the inputs, run the segments between the crossing TRANSFERs `moved`, read
    the outputs and gather what the shards counted."""
    from pimc.runtime.count import Walker, layer_report, static_totals

    stats = Stats(prog.arch.init_model, prog.arch.partitions)
    walker = Walker(prog)
    static_totals(prog, stats, walker)
    known = {t.name for t in prog.inputs}
    extra = sorted(set(given) - known)
    if extra:
        raise PimError(f"{name}: inputs given that the program does not declare: "
                       f"{', '.join(extra)}")
    complete = complete_inputs(prog.inputs, given, seed)
    for t in prog.inputs:
        pool.place(t, host_values(t, complete[t.name], name), stats.host)
    setup_s = time.perf_counter() - start
    if on_ready is not None:
        on_ready()
    cuts = [*moved, len(prog.ops)]
    progress = Progress(f"{name}: {what}", len(cuts), "segments")
    t0, lo = time.perf_counter(), 0
    for k, cut in enumerate(cuts):
        progress.update(k)
        if lo < cut:
            failures = pool.run(lo, cut)
            if failures:
                raise PimError(min(failures)[4])
        if cut < len(prog.ops):
            _transfer(prog, cut, pool)
        lo = cut + 1
        pool.done(lo)
    progress.close()
    run_s = time.perf_counter() - t0
    outputs = {t.name: _read(t, prog, pool, name, strict, stats) for t in prog.outputs}
    summaries = pool.each("the summary", "summary")
    events, layers = Events(), {}
    for s in summaries:
        for kind, (a, b) in s["events"].items():
            events.add(kind, a, b)
        for src, counts in s["layers"].items():
            layer = layers.setdefault(src, Events())
            for kind, (a, b) in counts.items():
                layer.add(kind, a, b)
        stats.row_ops += s["row_ops"]
    stats.energy_fj = energy_of(events.counts, prog.arch)
    if count_writes:
        stats.endurance = merge_endurance([s["endurance"] for s in summaries])
    stats.layers = layer_report(prog, {k: energy_of(e.counts, prog.arch)
                                       for k, e in layers.items()}, walker)
    return outputs, stats, Timing(len(cuts), len(moved), setup_s, run_s, summaries)


def _transfer(prog: Program, index: int, pool: Pool) -> None:
    """Execute a TRANSFER between shards: masks where the destinations are, the source
    halves where the sources are (the first unwritten source cell, in the order one
    machine checks them, is the error), then the destination halves."""
    op: Transfer = prog.ops[index]
    line = prog.line_of(index)
    parts = pieces(op, pool.ranges)
    masks = [pool.wait(d, pool.start(d, "mask", dop, line), "a transfer")
             for _, d, _, dop in parts]
    outs = [pool.start(s, "copy_out", sop, line, m) for (s, _, sop, _), m in zip(parts, masks,
                                                                                 strict=True)]
    results = [pool.wait(s, f, "a transfer") for (s, *_), f in zip(parts, outs, strict=True)]
    failures = [bad for _, bad in results if bad is not None]
    if failures:
        raise PimError(min(failures)[3])
    ins = [pool.start(d, "copy_in", dop, line, data, m) for (_, d, _, dop), (data, _), m in
           zip(parts, results, masks, strict=True)]
    for (_, d, *_), f in zip(parts, ins, strict=True):
        pool.wait(d, f, "a transfer")


def _read(t: TensorIO, prog: Program, pool: Pool, name: str, strict: bool, stats: Stats
          ) -> np.ndarray:
    cols, xb, _ = slots(t)
    lo, hi = int(xb.min()), int(xb.max()) + 1
    mask = placed_mask(t, prog.arch.rows, lo, hi)
    words = np.zeros((len(cols), hi - lo, prog.arch.rows // 64), dtype=np.uint64)
    bad = []
    for part in pool.each("reading outputs", "words", cols, lo, hi, mask):
        if part is None:
            continue
        first, w, unset = part
        words[:, first - lo:first - lo + w.shape[1]] = w
        if unset is not None:
            bad.append(unset)
    if strict and bad:
        raise unwritten_output(name, t, cols, min(bad))
    account_read(stats.host, t)
    return decode(t, words, lo)
