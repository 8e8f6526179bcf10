"""Host I/O: every dtype written into its placed cells reads back bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pimc.runtime import run_program
from pimc.runtime.stats import HostWrites

from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.text import parse_program, print_program
from pimc.isa.uop import Span, TensorIO, ViewOp

ARCH = Arch(rows=64, cols=256)


@pytest.mark.parametrize("dtype", ["u1", "u3", "u8", "i8", "i5", "u16", "i32", "u64", "i64",
                                   "f32", "f16", "bf16", "q4.4", "q8.24"])
@pytest.mark.parametrize("lanes", [1, 3])
def test_dtype_round_trip(dtype, lanes):
    dt = parse_dtype(dtype)
    b = ProgramBuilder(3, arch=ARCH)
    shape = (2, 45 * lanes)  # 90 slots: a full crossbar, then part of the next one
    b.input("x", dtype, shape, 7, xbs=Span(0, 3, 2), lanes=lanes)
    b.output("y", dtype, shape, 7, xbs=Span(0, 3, 2), lanes=lanes)
    raw = np.random.default_rng(0).integers(0, 1 << min(dt.bits, 63), shape, dtype=np.uint64)
    raw[0, :4] = [0, 1, (1 << dt.bits) - 1, 1 << (dt.bits - 1)]
    x = dt.from_bits(raw.astype(dt.storage))
    out, stats = run_program(b.build(), {"x": x})
    assert out["y"].dtype == dt.host
    assert np.array_equal(out["y"].view(dt.storage), x.view(dt.storage))
    assert stats.host.input.cells == x.size * dt.bits
    assert stats.endurance.max_writes_per_cell == 1
    assert stats.endurance.cells_written == x.size * dt.bits


def test_bf16_accepts_raw_bits():
    b = ProgramBuilder(1, arch=ARCH)
    b.input("x", "bf16", [4], 0, rows=Span(0, 4))
    b.output("y", "bf16", [4], 0, rows=Span(0, 4))
    bits = np.array([0x3F80, 0xC000, 0x7F80, 0x0001], np.uint16)  # 1, -2, inf, subnormal
    out, _ = run_program(b.build(), {"x": bits})
    assert np.array_equal(out["y"].view(np.uint16), bits)
    assert float(out["y"][1]) == -2.0


def test_non_numeric_input_is_rejected():
    b = ProgramBuilder(1, arch=ARCH)
    b.input("x", "u8", [2], 0, rows=Span(0, 2))
    with pytest.raises(PimError, match="holds <U1, not numbers"):
        run_program(b.build(), {"x": np.array(["a", "b"])})


@pytest.mark.parametrize("name", ["f64", "u0", "u65", "q0.0", "int8", ""])
def test_unknown_dtypes(name):
    with pytest.raises(PimError, match="unknown dtype"):
        parse_dtype(name)


def test_bit_sliced_layout_puts_bit_b_in_partition_b():
    arch = Arch(rows=64, cols=256, partitions=32)  # 8 columns per partition
    b = ProgramBuilder(1, arch=arch)
    b.input("x", "i32", [64], 3, stride=8)
    b.output("y", "i32", [64], 3, stride=8)
    x = np.random.default_rng(4).integers(-2**31, 2**31, 64).astype(np.int32)
    prog = b.build()
    out, stats = run_program(prog, {"x": x})
    assert np.array_equal(out["y"], x)
    assert prog.inputs[0].columns(32)[:3] == [3, 11, 19] and stats.columns_used == 32


def test_broadcast_input_fills_every_row_in_one_row_parallel_write_per_crossbar():
    b = ProgramBuilder(2, arch=ARCH)
    b.input("s", "f32", [], 0, broadcast=True)
    b.output("y", "f32", [2, 64], 0)
    out, stats = run_program(b.build(), {"s": np.float32(2.5)})
    assert (out["y"] == 2.5).all()
    assert stats.host.input.row_writes == 2 and stats.host.input.cells == 32 * 128


def test_meta_and_broadcast_round_trip_through_text():
    from pimc.isa.text import parse_program, print_program

    b = ProgramBuilder(1, arch=ARCH, meta=(("kernel", "axpy"), ("source-text", "a\n# b")))
    b.input("s", "f32", [], 0, broadcast=True)
    b.inputs.append(TensorIO("w", "i8", (2, 3), Span(0, 1), Span(0, 12), 0, lanes=2,
                             view=(ViewOp("broadcast", (2, 2, 3)),), setup=True))
    prog = b.build()
    text = print_program(prog)
    assert ".meta kernel @" in text and " broadcast" in text and "broadcast(2,2,3) setup" in text
    assert parse_program(text) == prog


def test_a_view_places_a_transposed_replicated_copy_and_an_input_may_be_placed_twice():
    b = ProgramBuilder(1)
    view = (ViewOp("transpose", (1, 0)), ViewOp("reshape", (3, 1, 2)),
            ViewOp("broadcast", (3, 4, 2)))
    b.inputs = [TensorIO("w", "i8", (2, 3), Span(0, 1), Span(0, 12), 0, lanes=2, view=view),
                TensorIO("w", "i8", (2, 3), Span(0, 1), Span(0, 6), 16)]
    b.outputs = [TensorIO("y", "i8", (12, 2), Span(0, 1), Span(0, 12), 0, lanes=2)]
    prog = parse_program(print_program(b.build()))
    assert prog.inputs == tuple(b.inputs)
    assert "view=transpose(1,0).reshape(3,1,2)" in print_program(prog)
    w = np.arange(6, dtype=np.int8).reshape(2, 3)
    out, stats = run_program(prog, {"w": w})
    want = np.broadcast_to(w.T.reshape(3, 1, 2), (3, 4, 2)).reshape(12, 2)
    assert np.array_equal(out["y"], want)
    assert stats.host.input.cells == (12 * 2 + 6) * 8  # every replicated copy is written
    # each run of 4 equal rows is one row-parallel write, the plain copy a write a row
    assert stats.host.input.row_writes == 3 + 6 and stats.host.setup == HostWrites()


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(["u1", "u3", "i8", "f32", "bf16", "f16", "q4.4", "u64"]),
       lanes=st.integers(1, 3), rows=st.tuples(st.integers(0, 70), st.integers(1, 3)),
       xbs=st.tuples(st.integers(0, 3), st.integers(1, 3)), slots=st.integers(1, 200),
       broadcast=st.booleans(), cut=st.integers(0, 12), seed=st.integers(0, 2**32 - 1))
def test_the_compiled_scatter_encodes_as_the_numpy_path(dtype, lanes, rows, xbs,
                                                        slots, broadcast, cut, seed):
    from pimc.runtime import hostio, jit

    if not jit.AVAILABLE:
        pytest.skip("numba is not installed")
    r = Span(rows[0], min(128, rows[0] + rows[1] * 40), rows[1])
    per = len(r)
    if broadcast:
        lanes, shape = 1, ()
        slots = per * (slots // per + 1)
    else:
        shape = (slots * lanes,)
    nxb = -(-slots // per)
    t = TensorIO("x", dtype, shape, Span(xbs[0], xbs[0] + nxb * xbs[1], xbs[1]), r, 3,
                 lanes=lanes, broadcast=broadcast)
    dt = parse_dtype(dtype)
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 1 << min(dt.bits, 62), size=shape or (1,), dtype=np.uint64)
    values = dt.from_bits(raw.astype(dt.storage)).reshape(shape)
    within = (cut, cut + 2) if cut < 6 else None
    got = hostio.encode(t, values, 128, within)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jit, "AVAILABLE", False)
        want = hostio.encode(t, values, 128, within)
    assert (got.lo, got.slots, got.broadcast) == (want.lo, want.slots, want.broadcast)
    assert np.array_equal(got.cols, want.cols)
    if want.slots:
        assert np.array_equal(got.data, want.data) and np.array_equal(got.mask, want.mask)
