"""One program on a memory sharded over Dask workers: `pimc run --workers N`.

Each worker holds one shard's Machine (runtime/shard.py) as a Dask actor, so its
crossbars stay in that process between calls. The program runs in segments, split at the
TRANSFERs that cross shards: every worker runs a segment on its own crossbars, in
parallel; then the driver executes the crossing TRANSFER by reading the source halves
where the sources are and writing the destination halves where the destinations are.
SHIFT, SEARCH and tags never leave a crossbar, so they stay inside a shard.

What is reported is what one process would report: cycles and time come from the
program's structure, energy from integer event counts summed over the shards, wear from
per-cell counts of disjoint crossbars, and a failed check is the first one in execution
order (item, micro-op within it, which check, lowest crossbar), with the same message.
"""

from __future__ import annotations

import bisect
import dataclasses
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from pimc.runtime import kernel
from pimc.runtime.endurance import Endurance, host_writes
from pimc.runtime.hostio import (
    account,
    account_read,
    complete_inputs,
    decode,
    encode,
    host_values,
    placed_mask,
    slots,
    unwritten_output,
)
from pimc.runtime.machine import Machine
from pimc.runtime.progress import Progress
from pimc.runtime.shard import Shard, bounds, clip, crosses, driver_items, shard
from pimc.runtime.stats import Events, Stats, energy_of

from pimc.isa.check import validate
from pimc.isa.errors import PimError
from pimc.isa.uop import Program, Span, Transfer

CONNECT_TIMEOUT = "10s"  # how long a scheduler address may take to answer
POLL_S = 1.0  # how often a wait looks whether the worker is still there
LOST_AFTER = 3  # looks in a row without it
BYTES_PER_CELL = 3 / 8 + 0.05  # state, "written" and "armed" maps; codes and counts


class ShardWorker:
    """One shard's machine, living in a Dask worker (an actor)."""

    def __init__(self, part: Shard, name: str, strict: bool, count_writes: bool,
                 engine: str) -> None:
        self.part = part
        self.m = Machine(part.prog, name, strict=strict, count_writes=count_writes,
                         engine=engine, xb_base=part.lo, validated=True)
        if self.m.engine == "numba":
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

    def run(self, lo: int, hi: int) -> tuple[int, int, int, int, str] | None:
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


@dataclasses.dataclass
class ClusterReport:
    workers: int
    segments: int
    crossing_transfers: int
    setup_s: float
    run_s: float
    worker_rss_mb: list[float]
    worker_busy_s: list[float]  # each shard's time running segments, within run_s

    def lines(self) -> list[str]:
        return [f"sharded over {self.workers} workers: {self.segments} segments, "
                f"{self.crossing_transfers} TRANSFERs between shards; set-up "
                f"{self.setup_s:.2f} s, run {self.run_s:.2f} s (busy "
                + ", ".join(f"{b:.2f}" for b in self.worker_busy_s) + " s); peak memory per "
                "worker " + ", ".join(f"{m:,.0f} MB" for m in self.worker_rss_mb)]


def _client(workers: int, scheduler: str | None):  # type: ignore[no-untyped-def]
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise PimError("--workers needs Dask distributed: pip install 'pimc[cluster]'") from None
    if scheduler:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT), None
        except (OSError, TimeoutError) as exc:
            raise PimError(f"--scheduler {scheduler}: no Dask scheduler answers there "
                           f"({exc.__class__.__name__})") from None
    import logging

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _result(future, what: str, client=None, address: str | None = None):  # type: ignore[no-untyped-def]
    """Wait for an actor call; a lost worker is a clear error, not a traceback or a hang
    (an actor's calls do not fail over: while waiting, the worker is looked for)."""
    missing = 0
    while True:
        try:
            return future.result(timeout=POLL_S)
        except PimError:
            raise
        except TimeoutError:
            gone = client is not None and address not in client.scheduler_info()["workers"]
            missing = missing + 1 if gone else 0
            if missing >= LOST_AFTER:  # gone for several looks: not a slow heartbeat
                raise PimError(f"a worker was lost during {what} ({address} left the "
                               "cluster); nothing was written") from None
        except Exception as exc:  # whatever a dying worker raises
            raise PimError(f"a worker was lost during {what} ({exc.__class__.__name__}: "
                           f"{str(exc)[:200]}); nothing was written") from None


@dataclasses.dataclass
class _Pool:
    """The shards' actors, and where each lives (to notice a lost one)."""

    client: Any
    actors: list  # type: ignore[type-arg]
    addresses: list[str]

    def wait(self, k: int, future, what: str):  # type: ignore[no-untyped-def]
        return _result(future, what, self.client, self.addresses[k])

    def each(self, what: str, call) -> list:  # type: ignore[no-untyped-def,type-arg]
        """call(actor) on every shard at once; their results in shard order."""
        futures = [call(a) for a in self.actors]
        return [self.wait(k, f, what) for k, f in enumerate(futures)]


def run_sharded(prog: Program, inputs: dict[str, np.ndarray] | None = None, *,
                workers: int | None = None, scheduler: str | None = None, name: str = "<uop>",
                seed: int = 0, strict: bool = True, count_writes: bool = True,
                engine: str = "auto", on_ready: Callable[[Any], None] | None = None,
                ) -> tuple[dict[str, np.ndarray], Stats, ClusterReport]:
    """run_program on a memory whose crossbars are split over Dask workers: a local
    cluster of `workers` processes (default 2), or the cluster whose scheduler is at
    `scheduler` (one shard per worker unless `workers` says how many). `on_ready(client)`
    is called once the shards hold their inputs, before anything runs."""
    validate(prog, name)
    start = time.perf_counter()
    client, cluster = _client(workers or 2, scheduler)
    try:
        return _run(client, prog, inputs or {}, name, seed, strict, count_writes, engine,
                    workers, start, on_ready)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run(client, prog: Program, given: dict[str, np.ndarray], name: str, seed: int,  # type: ignore[no-untyped-def]
         strict: bool, count_writes: bool, engine: str, workers: int | None, start: float,
         on_ready: Callable[[Any], None] | None) -> tuple[dict[str, np.ndarray], Stats, ClusterReport]:
    from pimc.runtime.count import Walker, layer_report, static_totals

    addresses = list(client.scheduler_info()["workers"])
    if not addresses:
        raise PimError("the Dask cluster has no workers")
    ranges = bounds(prog.crossbars, workers or len(addresses))
    _check_memory(client, prog, ranges)
    parts = [shard(prog, ranges, k) for k in range(len(ranges))]
    homes = [addresses[k % len(addresses)] for k in range(len(parts))]
    futures = [client.submit(ShardWorker, p, name, strict, count_writes, engine, actor=True,
                             workers=[home]) for p, home in zip(parts, homes, strict=True)]
    pool = _Pool(client, [], homes)
    pool.actors = [pool.wait(k, f, "set-up") for k, f in enumerate(futures)]
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
        p = encode(t, host_values(t, complete[t.name], name), prog.arch.rows)
        spans = host_writes(t)
        pool.each("host writes", lambda a: a.place(p.cols, p.lo, p.data, p.mask, spans))  # noqa: B023
        account(stats.host, p, prog.arch)
    setup_s = time.perf_counter() - start
    if on_ready is not None:
        on_ready(client)
    moved = driver_items(prog, ranges)
    cuts = [*moved, len(prog.ops)]
    progress = Progress(f"{name}: run on {len(parts)} workers", len(cuts), "segments")
    t0, lo = time.perf_counter(), 0
    for k, cut in enumerate(cuts):
        progress.update(k)
        if lo < cut:
            failures = [r for r in pool.each("a run", lambda a: a.run(lo, cut))  # noqa: B023
                        if r is not None]
            if failures:
                raise PimError(min(failures)[4])
        if cut < len(prog.ops):
            _transfer(prog, cut, ranges, pool)
        lo = cut + 1
    progress.close()
    run_s = time.perf_counter() - t0
    outputs = {t.name: _read(t, prog, pool, name, strict, stats) for t in prog.outputs}
    summaries = pool.each("the summary", lambda a: a.summary())
    events, layers = Events(), {}  # type: ignore[var-annotated]
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
    report = ClusterReport(len(parts), len(cuts), len(moved), setup_s, run_s,
                           [s["rss_mb"] for s in summaries], [s["busy_s"] for s in summaries])
    return outputs, stats, report


def _check_memory(client, prog: Program, ranges: list[tuple[int, int]]) -> None:  # type: ignore[no-untyped-def]
    """Refuse, before any work, shards larger than the workers' memory."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    limit = min(limits) if limits and all(limits) else 0
    per_xb = prog.arch.rows * prog.arch.cols * BYTES_PER_CELL
    need = max(b - a for a, b in ranges) * per_xb
    if limit and need > 0.8 * limit:
        raise PimError(f"a shard of {max(b - a for a, b in ranges):,} crossbars needs about "
                       f"{need / 2**20:,.0f} MB, more than a worker's memory limit of "
                       f"{limit / 2**20:,.0f} MB: use more workers or larger ones")


def _transfer(prog: Program, index: int, ranges: list[tuple[int, int]], pool: _Pool) -> None:
    """Execute a TRANSFER between shards: masks where the destinations are, the source
    halves where the sources are (the first unwritten source cell, in the order one
    machine checks them, is the error), then the destination halves."""
    op: Transfer = prog.ops[index]  # type: ignore[assignment]
    line = prog.line_of(index)
    assert crosses(op, ranges)
    pieces = _pieces(op, ranges)
    actors = pool.actors
    masks = [pool.wait(d, actors[d].mask(dop, line), "a transfer") for _, d, _, dop in pieces]
    outs = [actors[s].copy_out(sop, line, m) for (s, _, sop, _), m in zip(pieces, masks,
                                                                            strict=True)]
    results = [pool.wait(s, f, "a transfer") for (s, *_), f in zip(pieces, outs, strict=True)]
    failures = [bad for _, bad in results if bad is not None]
    if failures:
        raise PimError(min(failures)[3])
    ins = [actors[d].copy_in(dop, line, data, m) for (_, d, _, dop), (data, _), m in
           zip(pieces, results, masks, strict=True)]
    for (_, d, *_), f in zip(pieces, ins, strict=True):
        pool.wait(d, f, "a transfer")


def _pieces(op: Transfer, ranges: list[tuple[int, int]]
            ) -> list[tuple[int, int, Transfer, Transfer]]:
    """The copy cut into runs of pairs with one source shard and one destination shard:
    (source shard, destination shard, the run as the source shard numbers its crossbars,
    the run as the destination shard does)."""
    def which(x: int) -> int:
        return next(k for k, (a, b) in enumerate(ranges) if a <= x < b)

    src, dst = list(op.xbs.indices()), list(op.dst_xbs.indices())
    out, i = [], 0
    while i < len(src):
        s, d = which(src[i]), which(dst[i])
        j = i
        while j + 1 < len(src) and which(src[j + 1]) == s and which(dst[j + 1]) == d:
            j += 1
        src_span = Span(src[i], src[j] + 1, op.xbs.step)
        dst_span = Span(dst[i], dst[j] + 1, op.dst_xbs.step)
        shifted = [Span(sp.start - ranges[k][0], sp.stop - ranges[k][0], sp.step)
                   for sp, k in ((src_span, s), (dst_span, d))]
        out.append((s, d, dataclasses.replace(op, xbs=shifted[0], dst_xbs=dst_span),
                    dataclasses.replace(op, xbs=src_span, dst_xbs=shifted[1])))
        i = j + 1
    return out


def _read(t, prog: Program, pool: _Pool, name: str, strict: bool, stats: Stats  # type: ignore[no-untyped-def]
          ) -> np.ndarray:
    cols, xb, _ = slots(t)
    lo, hi = int(xb.min()), int(xb.max()) + 1
    mask = placed_mask(t, prog.arch.rows, lo, hi)
    words = np.zeros((len(cols), hi - lo, prog.arch.rows // 64), dtype=np.uint64)
    bad = []
    for part in pool.each("reading outputs", lambda a: a.words(cols, lo, hi, mask)):
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
