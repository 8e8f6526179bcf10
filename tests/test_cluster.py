"""A memory sharded over Dask workers gives what one process gives: outputs, counts,
wear and the first failed check, on a local cluster of 2 workers."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pimc.runtime import cluster as C
from pimc.runtime import run_program
from pimc.runtime.shard import bounds, clip, driver_items, shard

from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.parse import load_program
from pimc.isa.uop import Program, Span, TensorIO
from tests.outcomes import early_failure_in_the_second_half, outcomes
from tests.strategies import SMALL, programs

distributed = pytest.importorskip("distributed")
SAMPLES = Path(__file__).parent.parent / "samples"


@pytest.fixture(scope="module")
def scheduler():
    import logging

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    yield cluster.scheduler_address
    cluster.close()


def _both(prog: Program, scheduler: str, inputs=None, strict=True):
    """(outputs, stats dict) or the error, from one process and from 2 shards."""
    return outcomes(lambda: run_program(prog, inputs, strict=strict),
                    lambda: C.run_sharded(prog, inputs, workers=2, scheduler=scheduler,
                                          strict=strict))


def test_clip_and_bounds():
    assert bounds(5, 2) == [(0, 2), (2, 5)] and bounds(1, 4) == [(0, 1)]
    assert clip(Span(0, 10, 3), 4, 8) == Span(2, 3)  # 6 -> 2
    assert clip(Span(1, 8, 2), 2, 6) == Span(1, 4, 2)  # 3, 5 -> 1, 3
    assert clip(Span(0, 2), 4, 8) is None


def test_conv_sample_with_transfer_trees_across_shards(tmp_path, scheduler):
    from pimc.cli import main

    out = tmp_path / "conv.uop"
    assert main(["compile", str(SAMPLES / "conv_relu.onnx"), "-o", str(out)]) == 0
    prog = load_program(out)
    assert driver_items(prog, bounds(prog.crossbars, 2))  # some TRANSFERs cross the cut
    weights = dict(np.load(out.with_name(out.name + ".weights.npz")))
    single, sharded = _both(prog, scheduler, weights)
    assert single == sharded
    # and from the command line, verified against the reference, with the same files
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["run", str(out), "--verify", "-o", f"{one}.npz", "--stats", f"{one}.json"]) == 0
    assert main(["run", str(out), "--verify", "-o", f"{two}.npz", "--stats", f"{two}.json",
                 "--scheduler", scheduler]) == 0
    assert Path(f"{one}.json").read_text() == Path(f"{two}.json").read_text()
    a, b = np.load(f"{one}.npz"), np.load(f"{two}.npz")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_cli_bad_scheduler_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from pimc.cli import main

    monkeypatch.setattr(C, "CONNECT_TIMEOUT", "1s")
    out = tmp_path / "out.npz"
    code = main(["run", str(SAMPLES / "ripple_add8.uop"), "--scheduler", "tcp://127.0.0.1:9",
                 "-o", str(out)])
    assert code == 2 and not out.exists()
    assert "no Dask scheduler answers" in capsys.readouterr().err
    assert main(["run", str(SAMPLES / "ripple_add8.uop"), "--workers", "2", "--faults",
                 "stuck=1e-3"]) == 2


@st.composite
def wide_programs(draw):
    """Random programs on 4 crossbars whose state is all read back as an output."""
    prog = draw(programs(crossbars=4, max_ops=16))
    y = TensorIO("y", "u32", (4, SMALL.rows), Span(0, 4), Span(0, SMALL.rows), 0)
    return dataclasses.replace(prog, outputs=(y,))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_programs(), st.booleans())
def test_random_programs_agree(scheduler, prog, strict):
    single, sharded = _both(prog, scheduler, strict=strict)
    assert single == sharded


def test_the_first_failure_in_execution_order_is_reported(scheduler):
    """Shard 1 fails at an earlier op than shard 0 does: the error is shard 1's."""
    single, sharded = _both(early_failure_in_the_second_half(), scheduler)
    assert isinstance(single, str) and single == sharded
    assert "crossbar 2" in single


def test_shards_split_a_transfer_into_runs_per_shard_pair():
    b = ProgramBuilder(4, arch=SMALL)
    b.input("x", "u8", [4, SMALL.rows], 0)
    b.transfer(Span(0, 1), Span(1, 2), [0], [9])  # stays in shard 0
    b.transfer(Span(0, 2), Span(2, 4), [1], [10])  # crosses
    prog = b.build()
    ranges = bounds(4, 2)
    assert driver_items(prog, ranges) == [1]
    first = shard(prog, ranges, 0)
    assert first.kept == (0,) and first.prog.ops[0].xbs == Span(0, 1)
    assert shard(prog, ranges, 1).kept == ()


def test_unanswering_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(C, "CONNECT_TIMEOUT", "1s")
    b = ProgramBuilder(2, arch=SMALL)
    b.input("x", "u8", [2, SMALL.rows], 0)
    with pytest.raises(PimError, match="no Dask scheduler answers"):
        C.run_sharded(b.build(), scheduler="tcp://127.0.0.1:9")


def test_memory_too_small_is_refused_before_any_work():
    import logging

    with distributed.LocalCluster(n_workers=1, processes=False, memory_limit="64MB",
                                  dashboard_address=None, silence_logs=logging.ERROR) as c:
        b = ProgramBuilder(2048)
        b.input("x", "u8", [2048, 1024], 0)
        with pytest.raises(PimError, match="more than a worker's memory limit"):
            C.run_sharded(b.build(), scheduler=c.scheduler_address, workers=1)


def test_a_worker_lost_mid_run_is_a_clear_error():
    import logging
    import signal

    b = ProgramBuilder(64)
    b.input("x", "u8", [64, 1024], 0)
    for i in range(300):
        b.init(20, 1)
        b.nor(20, i % 8, (i + 1) % 8)
    prog = b.build()

    def kill_one(client) -> None:  # the shards are set up: end one worker's process
        pid = next(iter(client.run(os.getpid).values()))
        os.kill(pid, signal.SIGKILL)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.CRITICAL) as c, \
            pytest.raises(PimError, match="a worker was lost during a run"):
        C.run_sharded(prog, scheduler=c.scheduler_address, workers=2, on_ready=kill_one)
