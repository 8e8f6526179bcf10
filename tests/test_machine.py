"""The bit-packed runtime against the numpy-bool reference, and its strict checks and costs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from pimc.runtime import Machine, run_program
from pimc.runtime.bitops import unpack_rows
from pimc.runtime.reference import ReferenceMachine

from pimc.isa.arch import Arch, InitModel
from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.uop import Rep, SearchKind, Span
from tests.strategies import programs

SMALL = Arch(rows=128, cols=32, partitions=4)


def _run_both(prog, strict):
    x = np.random.default_rng(len(prog.ops)).integers(0, 256, size=prog.inputs[0].shape,
                                                      dtype=np.uint8)
    fast, ref = Machine(prog, strict=strict), ReferenceMachine(prog, strict=strict)
    fast.host.load({"x": x}, 0)
    ref.load("x", x)
    errors = []
    for m in (fast, ref):
        try:
            m.run()
            errors.append(None)
        except PimError as exc:
            errors.append(str(exc).split(": ")[0])
    return fast, ref, errors


@settings(max_examples=150, deadline=None)
@given(programs())
def test_machine_matches_reference(prog):
    fast, ref, errors = _run_both(prog, strict=False)
    assert errors == [None, None]
    state = unpack_rows(fast.bits).transpose(1, 2, 0)  # -> [crossbar, row, column]
    assert np.array_equal(state, ref.cells)
    assert np.array_equal(unpack_rows(fast.tag), ref.tag)
    for kind, fj in ref.energy_fj.items():
        assert fast.stats.energy_fj[kind] == pytest.approx(fj, rel=1e-9, abs=1e-9)
    e = fast.stats.endurance
    written = ref.writes[ref.writes > 0]
    assert e.max_writes_per_cell == ref.writes.max()
    assert e.cells_written == written.size
    assert e.cell_writes == ref.writes.sum()


@settings(max_examples=150, deadline=None)
@given(programs())
def test_strict_checks_match_reference(prog):
    """Both machines reject the same programs, at the same line."""
    _, _, errors = _run_both(prog, strict=True)
    assert errors[0] == errors[1]


def _adder_builder(**kw):
    b = ProgramBuilder(2, arch=SMALL, **kw)
    b.input("a", "u1", [2, 128], 0)
    b.input("b", "u1", [2, 128], 1)
    return b


def test_nor_into_uninitialised_cell_names_the_line():
    b = _adder_builder()
    b.nor(2, 0, 1)
    with pytest.raises(PimError, match=r"<uop>:\d+: NOR into c2 of crossbar 0 row 0, not init"):
        run_program(b.build())


def test_nor_output_must_be_reinitialised_after_use():
    b = _adder_builder()
    b.init(2, 1)
    b.nor(2, 0, 1)
    b.nor(2, 0)
    prog = b.build()
    with pytest.raises(PimError) as err:
        run_program(prog)
    assert f":{prog.lines[2]}: NOR into c2" in str(err.value)


def test_accumulate_skips_the_init_check_and_ands():
    b = _adder_builder()
    b.init(2, 1)
    b.nor(2, 0)  # c2 = not a
    b.nor(2, 1, acc=True)  # c2 = not a and not b
    b.output("y", "u1", [2, 128], 2)
    a, bb = np.random.default_rng(0).integers(0, 2, (2, 2, 128)).astype(np.uint8)
    out, _ = run_program(b.build(), {"a": a, "b": bb})
    assert np.array_equal(out["y"], (1 - a) & (1 - bb))


def test_init_to_zero_does_not_arm_a_nor():
    b = _adder_builder()
    b.init(2, 0)
    b.nor(2, 0)
    with pytest.raises(PimError, match="not initialised"):
        run_program(b.build())


def test_reading_a_never_written_column_is_an_error():
    b = _adder_builder()
    b.init(3, 1)
    b.nor(3, 0, 9)
    with pytest.raises(PimError, match="reads c9 of crossbar 0 row 0, which was never written"):
        run_program(b.build())


def test_reading_rows_written_by_a_partial_init_is_checked_per_row():
    b = _adder_builder()
    b.init(5, 0, rows=Span(0, 64))
    b.init(3, 1)
    b.nor(3, 5, rows=Span(0, 64))
    run_program(b.build())
    b.nor(4, 5, rows=Span(0, 65))
    with pytest.raises(PimError, match="reads c5 of crossbar 0 row 64"):
        run_program(b.build())


def test_output_of_never_written_cells_is_an_error():
    b = _adder_builder()
    b.output("y", "u1", [2, 128], 7)
    with pytest.raises(PimError, match="output 'y' reads c7"):
        run_program(b.build())


def test_no_strict_runs_anything():
    b = _adder_builder()
    b.nor(2, 0, 9)
    run_program(b.build(), strict=False)


def test_predicated_ops_touch_only_tagged_rows():
    b = ProgramBuilder(1, arch=SMALL)
    b.input("x", "u4", [128], 0)
    b.search(range(4), key=5)
    b.init(8, 0)
    b.init(8, 1, pred=True)
    b.output("hit", "u1", [128], 8)
    x = np.arange(128, dtype=np.uint8) % 16
    out, stats = run_program(b.build(), {"x": x})
    assert np.array_equal(out["hit"], (x == 5).astype(np.uint8))
    e = SMALL
    assert stats.energy_fj["INIT"] == pytest.approx(128 * e.e_reset_fj + 8 * e.e_set_fj)


@pytest.mark.parametrize("kind", [SearchKind.MAX, SearchKind.MIN])
def test_max_min_search_per_crossbar(kind):
    b = ProgramBuilder(3, arch=SMALL)
    b.input("x", "u8", [3, 128], 0)
    b.search(range(8), kind=kind, rows=Span(0, 100))
    b.init(9, 0)
    b.init(9, 1, pred=True)
    b.output("best", "u1", [3, 128], 9)
    x = np.random.default_rng(3).integers(0, 256, (3, 128), dtype=np.uint8)
    out, stats = run_program(b.build(), {"x": x})
    pick = x[:, :100].max(axis=1) if kind is SearchKind.MAX else x[:, :100].min(axis=1)
    want = (x == pick[:, None]) & (np.arange(128) < 100)
    assert np.array_equal(out["best"], want.astype(np.uint8))
    assert stats.cycles["SEARCH"] == 8  # one exact search per bit column


def test_shift_brings_zeros_from_outside():
    b = ProgramBuilder(1, arch=SMALL)
    b.input("x", "u8", [128], 0)
    b.shift(range(8), range(8, 16), -3)
    b.shift(range(8), range(16, 24), 70)
    b.output("up", "u8", [128], 8)
    b.output("down", "u8", [128], 16)
    x = np.arange(1, 129, dtype=np.uint8)
    out, _ = run_program(b.build(), {"x": x})
    assert np.array_equal(out["up"], np.concatenate([x[3:], np.zeros(3, np.uint8)]))
    assert np.array_equal(out["down"], np.concatenate([np.zeros(70, np.uint8), x[:58]]))


def test_partition_repeated_gate_runs_in_one_cycle():
    arch = Arch(rows=64, cols=32, partitions=4)  # 8 columns per partition
    b = ProgramBuilder(1, arch=arch)
    for p in range(4):
        b.input(f"x{p}", "u1", [64], 8 * p)
        b.output(f"y{p}", "u1", [64], 8 * p + 2)
    b.init(2, 1, rep=Rep(4, 1))
    b.nor(2, 0, rep=Rep(4, 1))  # y_p = not x_p in all four partitions at once
    xs = {f"x{p}": np.random.default_rng(p).integers(0, 2, 64, dtype=np.uint8) for p in range(4)}
    out, stats = run_program(b.build(), xs)
    for p in range(4):
        assert np.array_equal(out[f"y{p}"], 1 - xs[f"x{p}"])
    assert stats.cycles["INIT"] == 1 and stats.cycles["NOR"] == 1
    assert stats.energy_fj["NOR"] == pytest.approx(4 * 64 * arch.e_nor_fj)


def test_cycles_follow_the_init_model():
    for model, init_cycles in ((InitModel.BULK, 2), (InitModel.PER_CELL, 3)):
        arch = Arch(rows=64, cols=32, init_model=model)
        b = ProgramBuilder(3, arch=arch)
        b.init([0, 1, 2], 0b101)  # a SET and a RESET phase, or three cells
        b.init(3, 1)
        b.nor(3, 0, 1)
        b.search([0, 1, 2, 3], kind=SearchKind.MAX)
        b.shift([0, 1, 2], [4, 5, 6], 1)
        b.transfer(0, 2, [0, 1], [7, 8])  # 2 bits + 2 hops
        _, stats = run_program(b.build())
        assert stats.cycles["INIT"] == init_cycles + 1
        assert stats.cycles_bulk == 2 + 1 + 1 + 4 + 3 + 4
        assert stats.cycles_per_cell == 3 + 1 + 1 + 4 + 3 + 4
        assert stats.latency_ns == pytest.approx(
            (init_cycles + 1) * arch.t_write_ns + arch.t_nor_ns + 4 * arch.t_search_ns
            + 3 * arch.t_shift_ns + 4 * arch.t_transfer_ns)


def test_nor_energy_counts_active_rows_of_every_crossbar():
    b = ProgramBuilder(3, arch=SMALL)
    b.init([0, 1], 3)
    b.nor(1, 0, xbs=Span(0, 2), rows=Span(0, 64))
    _, stats = run_program(b.build())
    assert stats.energy_fj["NOR"] == pytest.approx(SMALL.e_nor_fj * 64 * 2)
    assert stats.row_ops == 128
    assert stats.crossbars_used == 3 and stats.columns_used == 2


def test_transposing_transfer_rotates_a_column_block():
    b = ProgramBuilder(2, arch=SMALL)
    b.input("x", "u1", [128, 3], 0, xbs=0, lanes=3)
    b.transfer(0, 1, [0, 1, 2], 4, dst_row=10, rows=Span(5, 25))
    b.output("t", "u1", [3, 20], 4, xbs=1, rows=Span(10, 13), lanes=20)
    x = np.random.default_rng(1).integers(0, 2, (128, 3), dtype=np.uint8)
    out, _ = run_program(b.build(), {"x": x})
    assert np.array_equal(out["t"], x[5:25].T)
