"""Fixed-point routines, executed by the runtime on 4096 rows and compared bit for bit."""

from __future__ import annotations

import pytest

from pimc.isa.arch import Arch, InitModel
from pimc.isa.errors import PimError
from pimc.synth.routines import INT_OPS, build_bit_sliced, build_routine
from pimc.synth.verify import verify

WIDTHS = ["u4", "i4", "u8", "i8", "i16", "u32", "i32", "q4.4", "q8.24", "u64", "i64"]


@pytest.mark.parametrize("dtype", WIDTHS)
@pytest.mark.parametrize("op", sorted(INT_OPS))
def test_int_routine_is_bit_exact(op, dtype):
    routine = build_routine(op, dtype, crossbars=4)
    stats, rows = verify(routine, seed=len(op))
    assert rows == 4096
    assert stats.ops["NOR"] > 0 or op in ("abs", "relu")


@pytest.mark.parametrize("dtype", ["u64", "i64", "q32.32"])
def test_products_wider_than_64_bits_come_out_as_halves(dtype):
    out = build_routine("mul_wide", dtype, crossbars=1).program.outputs[0]
    assert out.lanes == 2 and out.shape[-1] == 2 and out.dtype == "u64"


def test_per_cell_init_model_verifies_too():
    arch = Arch(init_model=InitModel.PER_CELL)
    stats, _ = verify(build_routine("add", "i32", arch=arch, crossbars=4))
    assert stats.total_cycles == stats.cycles_per_cell > stats.cycles_bulk


def test_scratch_budget_too_small_is_a_clear_error():
    with pytest.raises(PimError, match="add on i32 needs more than its 3 scratch columns"):
        build_routine("add", "i32", scratch_budget=3)


def test_scratch_budget_is_respected():
    routine = build_routine("mul", "i16", scratch_budget=64)
    assert routine.peak_scratch <= 64
    verify(routine)


@pytest.mark.parametrize("dtype", ["u8", "i16", "u32", "i32"])
@pytest.mark.parametrize("model", list(InitModel))
def test_bit_sliced_add_is_bit_exact(dtype, model):
    arch = Arch(partitions=32, init_model=model)
    routine = build_bit_sliced("add", dtype, arch=arch, crossbars=4)
    stats, rows = verify(routine)
    assert rows == 4096
    if dtype == "i32":
        assert stats.total_cycles < 95  # PyPIM's and AritPIM's 32-partition int32 add


def test_bit_sliced_needs_enough_partitions():
    with pytest.raises(PimError, match="bit-sliced i32 needs 32 partitions, the arch has 16"):
        build_bit_sliced("add", "i32", arch=Arch(partitions=16))


@pytest.mark.parametrize("dtype", ["u8", "i8", "u16", "i32", "u32"])
def test_bit_sliced_multiply_is_bit_exact(dtype):
    arch = Arch(partitions=32)
    stats, rows = verify(build_bit_sliced("mul_wide", dtype, arch=arch, crossbars=4))
    assert rows == 4096
    if dtype == "i32":
        assert stats.total_cycles < 1156  # PyPIM's 32-partition product (AritPIM's: 1251)
