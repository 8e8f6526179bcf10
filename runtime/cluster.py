"""One program on a memory sharded over Dask workers: `pimc run --workers N`.

Each worker holds one shard's Machine (runtime/shard.py) as a Dask actor, so its
crossbars stay in that process between calls; runtime/driver.py runs the segments, every
worker its own part in parallel, and the TRANSFERs between shards.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pimc.runtime.driver import Failure, ShardWorker, drive
from pimc.runtime.endurance import host_writes, wear_fits
from pimc.runtime.hostio import account, encode
from pimc.runtime.shard import bounds, driver_items, shard
from pimc.runtime.stats import HostIO, Stats

from pimc.isa.check import validate
from pimc.isa.errors import PimError
from pimc.isa.uop import Program, TensorIO

CONNECT_TIMEOUT = "10s"  # how long a scheduler address may take to answer
POLL_S = 1.0  # how often a wait looks whether the worker is still there
LOST_AFTER = 3  # looks in a row without it
BYTES_PER_CELL = 3 / 8 + 0.05  # state, "written" and "armed" maps; codes and counts


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


def _client(workers: int, scheduler: str | None):
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


def _result(future, what: str, client=None, address: str | None = None):
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
    ranges: list[tuple[int, int]]
    actors: list
    addresses: list[str]
    arch: Any

    def place(self, t: TensorIO, values: np.ndarray, host: HostIO) -> None:
        p = encode(t, values, self.arch.rows)
        self.each("host writes", "place", p.cols, p.lo, p.data, p.mask, host_writes(t))
        account(host, t, p, self.arch)

    def start(self, k: int, method: str, *args: Any) -> Any:
        return getattr(self.actors[k], method)(*args)

    def wait(self, k: int, future: Any, what: str) -> Any:
        return _result(future, what, self.client, self.addresses[k])

    def run(self, lo: int, hi: int) -> list[Failure]:
        return [r for r in self.each("a run", "run", lo, hi) if r is not None]

    def done(self, upto: int) -> None:
        pass

    def each(self, what: str, method: str, *args: Any) -> list[Any]:
        """The call on every shard at once; their results in shard order."""
        futures = [self.start(k, method, *args) for k in range(len(self.actors))]
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
    count_writes = count_writes and wear_fits(prog.crossbars)  # as one machine would
    client, cluster = _client(workers or 2, scheduler)
    try:
        return _run(client, prog, inputs or {}, name, seed, strict, count_writes, engine,
                    workers, start, on_ready)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run(client, prog: Program, given: dict[str, np.ndarray], name: str, seed: int,
         strict: bool, count_writes: bool, engine: str, workers: int | None, start: float,
         on_ready: Callable[[Any], None] | None) -> tuple[dict[str, np.ndarray], Stats, ClusterReport]:
    addresses = list(client.scheduler_info()["workers"])
    if not addresses:
        raise PimError("the Dask cluster has no workers")
    ranges = bounds(prog.crossbars, workers or len(addresses))
    _check_memory(client, prog, ranges)
    moved = driver_items(prog, ranges)
    parts = [shard(prog, ranges, k, set(moved)) for k in range(len(ranges))]
    homes = [addresses[k % len(addresses)] for k in range(len(parts))]
    futures = [client.submit(ShardWorker, p, name, strict, count_writes, engine, actor=True,
                             workers=[home]) for p, home in zip(parts, homes, strict=True)]
    pool = _Pool(client, ranges, [], homes, prog.arch)
    pool.actors = [pool.wait(k, f, "set-up") for k, f in enumerate(futures)]
    outputs, stats, t = drive(prog, given, pool, moved, name=name, seed=seed, strict=strict,
                              count_writes=count_writes, start=start,
                              what=f"run on {len(parts)} workers",
                              on_ready=None if on_ready is None else lambda: on_ready(client))
    report = ClusterReport(len(parts), t.segments, t.crossing_transfers, t.setup_s, t.run_s,
                           [s["rss_mb"] for s in t.summaries],
                           [s["busy_s"] for s in t.summaries])
    return outputs, stats, report


def _check_memory(client, prog: Program, ranges: list[tuple[int, int]]) -> None:
    """Refuse, before any work, shards larger than the workers' memory."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    limit = min(limits) if limits and all(limits) else 0
    per_xb = prog.arch.rows * prog.arch.cols * BYTES_PER_CELL
    need = max(b - a for a, b in ranges) * per_xb
    if limit and need > 0.8 * limit:
        raise PimError(f"a shard of {max(b - a for a, b in ranges):,} crossbars needs about "
                       f"{need / 2**20:,.0f} MB, more than a worker's memory limit of "
                       f"{limit / 2**20:,.0f} MB: use more workers or larger ones")
