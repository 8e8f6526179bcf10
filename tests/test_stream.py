"""A streamed run (shards of crossbars made and dropped by lifetime) gives what one
machine gives: outputs, counts, wear, host traffic and the first failed check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pimc.runtime import run_program
from pimc.runtime.stream import lifetimes, live_ranges, peak_crossbars, run_streamed, windows

from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.parse import load_program
from pimc.isa.text import print_program
from pimc.isa.uop import Program, Span, TensorIO
from tests.outcomes import early_failure_in_the_second_half, outcomes
from tests.strategies import SMALL, programs

SAMPLES = Path(__file__).parent.parent / "samples"


def _both(prog: Program, inputs=None, strict=True, ranges=None):
    """(outputs, stats dict) or the error, from one machine and streamed."""
    return outcomes(lambda: run_program(prog, inputs, strict=strict),
                    lambda: run_streamed(prog, inputs, strict=strict, ranges=ranges))


@st.composite
def short_lived(draw):
    """Random programs on 4 crossbars of which only the last is read back, cut into
    random shards (so some die before the end)."""
    prog = draw(programs(crossbars=4, max_ops=16))
    y = TensorIO("y", "u32", (1, SMALL.rows), Span(3, 4), Span(0, SMALL.rows), 0)
    cuts = sorted(draw(st.sets(st.integers(1, 3))))
    ranges = list(zip([0, *cuts], [*cuts, 4], strict=True))
    return dataclasses.replace(prog, outputs=(y,)), ranges


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(short_lived(), st.booleans())
def test_random_programs_agree(case, strict):
    prog, ranges = case
    single, streamed = _both(prog, strict=strict, ranges=ranges)
    assert single == streamed


def test_lifetimes_cut_the_memory_into_shards_that_live_apart():
    b = ProgramBuilder(8, arch=SMALL)
    b.input("x", "u8", [2, SMALL.rows], 0, xbs=Span(0, 2))
    b.init(10, 1, xbs=Span(0, 2))
    b.nor(10, 0, xbs=Span(0, 2))
    b.transfer(Span(0, 2), Span(2, 4), [10], [10])  # the stage on 0-1 ends here
    b.init(11, 1, xbs=Span(2, 4))
    b.nor(11, 10, xbs=Span(2, 4))
    b.transfer(Span(2, 4), Span(6, 8), [11], [0])  # and the one on 2-3 here
    b.output("y", "u8", [2, SMALL.rows], 0, xbs=Span(6, 8))
    prog = b.build()
    first, last = lifetimes(prog)
    assert first.tolist() == [0, 0, 2, 2, -1, -1, 5, 5]
    assert last.tolist() == [2, 2, 5, 5, -1, -1, 7, 7]  # the output lives to the end
    ranges = live_ranges(first, last, small=0)
    assert ranges == [(0, 2), (2, 4), (4, 6), (6, 8)]
    spans = windows(first, last, ranges)
    assert spans == [(0, 2), (2, 5), (-1, -1), (5, 7)]
    assert peak_crossbars(ranges, spans) == 4  # never all six used ones at once
    assert live_ranges(first, last) == [(0, 8)]  # small ones go together
    x = {"x": np.arange(2 * SMALL.rows).reshape(2, -1) % 256}
    single, streamed = _both(prog, x, ranges=ranges)
    assert single == streamed


def test_the_first_failure_in_execution_order_is_reported():
    single, streamed = _both(early_failure_in_the_second_half(), ranges=[(0, 2), (2, 4)])
    assert isinstance(single, str) and single == streamed
    assert "crossbar 2" in single


def test_conv_sample_streamed_from_the_command_line(tmp_path, capsys):
    from pimc.cli import main

    out = tmp_path / "conv.uop"
    assert main(["compile", str(SAMPLES / "conv_relu.onnx"), "-o", str(out)]) == 0
    prog = load_program(out)
    weights = dict(np.load(out.with_name(out.name + ".weights.npz")))
    first, last = lifetimes(prog)
    single, streamed = _both(prog, weights, ranges=live_ranges(first, last, small=0))
    assert single == streamed
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["run", str(out), "--verify", "-o", f"{one}.npz", "--stats", f"{one}.json"]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--verify", "-o", f"{two}.npz", "--stats", f"{two}.json",
                 "--stream"]) == 0
    assert "streamed in" in capsys.readouterr().out
    assert Path(f"{one}.json").read_text() == Path(f"{two}.json").read_text()
    a, b = np.load(f"{one}.npz"), np.load(f"{two}.npz")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert main(["run", str(out), "--stream", "--workers", "2"]) == 2


def test_host_traffic_counted_from_values_is_that_of_the_cells(tmp_path):
    from pimc.runtime.count import host_traffic
    from pimc.runtime.hostio import account, account_values, complete_inputs, encode
    from pimc.runtime.stats import HostIO

    from pimc.cli import main

    out = tmp_path / "cnn.uop"
    assert main(["compile", str(SAMPLES / "small_cnn.onnx"), "-o", str(out)]) == 0
    prog = load_program(out)
    assert {t.name for t in prog.inputs if not t.setup} == {"x"}  # weights: set-up writes
    values = complete_inputs(prog.inputs, dict(np.load(f"{out}.weights.npz")), 0)
    cells, counted = HostIO(), HostIO()
    for t in prog.inputs:
        account(cells, t, encode(t, values[t.name], prog.arch.rows), prog.arch)
        account_values(counted, t, values[t.name], prog.arch)
    assert cells == counted and cells.setup.set_cells > 0 and cells.input.set_cells > 0
    bound = host_traffic(prog)  # counted from the placements alone, as --count-only does
    for w, b in ((cells.setup, bound.setup), (cells.input, bound.input)):
        assert (w.cells, w.row_writes) == (b.cells, b.row_writes) and w.energy_fj <= b.energy_fj
    assert cells.setup.row_writes < cells.setup.cells // 32  # weights: a write serves rows
    one = TensorIO("w", "bf16", (), Span(0, 3, 2), Span(0, SMALL.rows), 4, broadcast=True)
    cells, counted = HostIO(), HostIO()  # one value written into every row
    account(cells, one, encode(one, np.float32(-1.5), SMALL.rows), SMALL)
    account_values(counted, one, np.float32(-1.5), SMALL)
    assert cells == counted and cells.input.row_writes == 2  # one in each crossbar


def test_memories_too_large_for_write_tables_say_wear_is_not_counted(tmp_path, capsys,
                                                                       monkeypatch):
    from pimc.runtime import endurance

    from pimc.cli import main

    monkeypatch.setattr(endurance, "WEAR_CROSSBARS", 2)
    b = ProgramBuilder(4, arch=SMALL)
    b.input("x", "u8", [4, SMALL.rows], 0)
    b.init(10, 1)
    b.nor(10, 0)
    b.output("y", "u8", [4, SMALL.rows], 0)
    path = tmp_path / "p.uop"
    path.write_text(print_program(b.build()))
    assert main(["run", str(path), "--count-only"]) == 0
    assert "writes per cell not counted: 4 crossbars" in capsys.readouterr().out
    assert main(["run", str(path), "--stream"]) == 0
    out = capsys.readouterr().out
    assert "writes per cell not counted: 4 crossbars, over the 2" in out
    assert main(["run", str(path)]) == 0
    assert "writes per cell not counted: 4 crossbars, over the 2" in capsys.readouterr().out
    assert main(["run", str(path), "--stream", "--count-only"]) == 0


def test_an_input_encoded_shard_by_shard_is_the_whole_encoding(tmp_path):
    from pimc.runtime.hostio import complete_inputs, encode

    from pimc.cli import main

    out = tmp_path / "cnn.uop"
    assert main(["compile", str(SAMPLES / "small_cnn.onnx"), "-o", str(out)]) == 0
    prog = load_program(out)
    assert {t.name for t in prog.inputs if not t.setup} == {"x"}  # weights: set-up writes
    values = complete_inputs(prog.inputs, dict(np.load(f"{out}.weights.npz")), 0)
    rows = prog.arch.rows
    for t in prog.inputs:
        whole = encode(t, values[t.name], rows)
        n = whole.mask.shape[0]
        for cut in {1, n // 2, n - 1} - {0, n}:
            data, mask = np.zeros_like(whole.data), np.zeros_like(whole.mask)
            for lo, hi in ((0, whole.lo + cut), (whole.lo + cut, prog.crossbars)):
                p = encode(t, values[t.name], rows, (lo, hi))
                if p.slots:
                    data[:, p.lo - whole.lo:p.lo - whole.lo + p.mask.shape[0]] |= p.data
                    mask[p.lo - whole.lo:p.lo - whole.lo + p.mask.shape[0]] |= p.mask
            assert np.array_equal(data, whole.data) and np.array_equal(mask, whole.mask)


def test_a_run_whose_live_shards_cannot_fit_is_refused_before_any_work():
    b = ProgramBuilder(4, arch=SMALL)
    b.input("x", "u8", [4, SMALL.rows], 0)
    b.output("y", "u8", [4, SMALL.rows], 0)
    prog = b.build()
    cells = 4 * SMALL.rows * SMALL.cols
    run_streamed(prog, memory_bytes=3 * cells / 8)  # fits, checked
    with pytest.raises(PimError, match=r"4 crossbars are alive at once.*--no-strict"):
        run_streamed(prog, memory_bytes=cells / 8)
    run_streamed(prog, strict=False, memory_bytes=cells / 8)
    with pytest.raises(PimError, match=r"alive at once.*computer's [0-9.]+ GB$"):
        run_streamed(prog, strict=False, memory_bytes=cells / 16)
