"""The compiled kernel engine against the numpy engine: same state, counts and errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pimc.runtime import Machine, kernel, run_program

from pimc.isa.builder import ProgramBuilder
from pimc.isa.check import op_problem
from pimc.isa.errors import PimError
from pimc.isa.parse import load_program
from pimc.isa.uop import Program, Span, Transfer
from tests.strategies import SMALL, programs

pytestmark = pytest.mark.skipif(not kernel.AVAILABLE, reason="numba is not installed")
SAMPLES = Path(__file__).parent.parent / "samples"
# Few distinct row spans, overlapping and nested, so writes move cells between the
# flags' summary codes (none, all, one named span, mixed) in every order.
SPANS = [None, Span(0, 64), Span(0, 32), Span(32, 96), Span(0, 128, 2), Span(5, 70), Span(0, 128)]


def _execute(prog: Program, engine: str, strict: bool, inputs=None, count_writes=True):
    m = Machine(prog, strict=strict, engine=engine, count_writes=count_writes)
    x = np.random.default_rng(len(prog.ops)).integers(0, 256, size=prog.inputs[0].shape,
                                                      dtype=np.uint8)
    m.host.load(inputs if inputs is not None else {"x": x}, 0)
    try:
        m.run()
    except PimError as exc:
        return m, str(exc)
    return m, None


def _same(prog: Program, strict: bool, count_writes: bool = True) -> None:
    (a, ea), (b, eb) = (_execute(prog, e, strict, count_writes=count_writes)
                        for e in ("numba", "numpy"))
    assert ea == eb
    if ea is None:
        assert np.array_equal(a.bits, b.bits)
        assert np.array_equal(a.tag, b.tag)
        assert a.stats.as_dict() == b.stats.as_dict()
        assert a.layer_energy == b.layer_energy


@settings(max_examples=150, deadline=None)
@given(programs(), st.booleans())
def test_random_programs_agree(prog, strict):
    _same(prog, strict)


@settings(max_examples=150, deadline=None)
@given(programs(crossbars=8, max_ops=20))
def test_shifts_and_transfers_in_the_kernel_agree(prog):
    """Without checks or write counts, the kernel runs SHIFT and TRANSFER itself (tiled
    with the NORs around them): the same cells, energy and counts."""
    _same(prog, False, count_writes=False)


@st.composite
def wide_programs(draw):
    """Random programs whose ops (but TRANSFERs) act on every crossbar."""
    prog = draw(programs(crossbars=8, max_ops=20))
    every = Span(0, prog.crossbars)
    body = [op if isinstance(op, Transfer) else dataclasses.replace(op, xbs=every)
            for op in prog.ops]
    return dataclasses.replace(prog, ops=tuple(body))


@settings(max_examples=100, deadline=None)
@given(wide_programs(), st.booleans())
def test_one_crossbar_tiles_agree(prog, strict):
    """Tiles of one crossbar each: a stretch runs crossbar by crossbar, in parallel."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernel, "TILE_BYTES", 1)
        _same(prog, strict, count_writes=strict)


@settings(max_examples=100, deadline=None)
@given(programs())
def test_a_run_without_checks_computes_what_a_checked_run_does(prog):
    """Without --strict the numpy path keeps no written/armed flags (nor the plain-NOR
    shortcut they allow): a program that passes the checks gives the same cells."""
    (a, ea), (b, eb) = (_execute(prog, "numpy", strict) for strict in (True, False))
    if ea is None:
        assert eb is None and np.array_equal(a.bits, b.bits)
        assert a.stats.as_dict() == b.stats.as_dict()


@st.composite
def span_programs(draw):
    """Random programs whose ops share a few row spans."""
    prog = draw(programs(max_ops=20))
    body = []
    for op in prog.ops:
        moved = dataclasses.replace(op, rows=draw(st.sampled_from(SPANS)))
        body.append(moved if op_problem(prog, moved) is None else op)
    return dataclasses.replace(prog, ops=tuple(body))


@settings(max_examples=150, deadline=None)
@given(span_programs(), st.booleans())
def test_shared_row_spans_agree(prog, strict):
    _same(prog, strict)


@settings(max_examples=100, deadline=None)
@given(span_programs())
def test_shifts_and_transfers_on_row_spans_agree(prog):
    _same(prog, False, count_writes=False)


def test_error_messages_agree_on_rows_read_before_written():
    b = ProgramBuilder(3, arch=SMALL)
    b.input("x", "u8", [3, SMALL.rows], 0)
    b.init(10, 1, rows=Span(0, 64))
    b.nor(10, 0, rows=Span(0, 64))
    b.init(11, 1, rows=Span(0, 64))
    b.nor(11, 10, rows=Span(0, 80))  # rows 64..79 of c10 were never written
    prog = b.build()
    errors = [_execute(prog, e, True)[1] for e in ("numba", "numpy")]
    assert errors[0] == errors[1]
    assert "reads c10 of crossbar 0 row 64, which was never written" in errors[0]


@pytest.mark.parametrize("name", ["ripple_add8.uop", "ripple_add8_loop.uop", "row_ops.uop",
                                  "full_adder.uop"])
def test_samples_agree(name):
    prog = load_program(SAMPLES / name, cache=False)
    outs = [run_program(prog, engine=e) for e in ("numba", "numpy")]
    for k in outs[0][0]:
        assert np.array_equal(outs[0][0][k], outs[1][0][k])
    assert outs[0][1].as_dict() == outs[1][1].as_dict()


def test_compiled_routine_programs_agree(tmp_path):
    from pimc.cli import main

    for sample in ("axpy.pk", "gemm_relu_gemm.onnx"):
        out = tmp_path / (sample + ".uop")
        assert main(["compile", str(SAMPLES / sample), "-o", str(out)]) == 0
        prog = load_program(out)
        weights = out.with_name(out.name + ".weights.npz")
        given = dict(np.load(weights)) if weights.exists() else {}
        a, b = (run_program(prog, given, engine=e) for e in ("numba", "numpy"))
        for k in a[0]:
            assert a[0][k].tobytes() == b[0][k].tobytes()
        assert a[1].as_dict() == b[1].as_dict()


def test_engine_choice_errors():
    b = ProgramBuilder(1, arch=SMALL)
    b.input("x", "u8", [1, SMALL.rows], 0)
    with pytest.raises(PimError, match="unknown engine"):
        Machine(b.build(), engine="gpu")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 64), st.integers(1, 4)),
                min_size=1, max_size=40))
def test_span_table_grows_its_subset_relation_in_place(spans):
    """The span table adds one row and one column of `subset` per new span (room grows
    geometrically); it equals the relation computed from all masks at once."""
    from pimc.runtime.bitops import row_mask
    from pimc.runtime.flags import SpanTable

    table = SpanTable(1)
    for start, length, step in spans:
        rows = range(start, min(64, start + length), step)
        table.id(rows, row_mask(64, rows))
    m = table.masks
    want = ~np.any(m[None, :, :] & ~m[:, None, :], axis=-1)  # [a, b]: b in a
    n = len(m)
    assert np.array_equal(table.subset[:n, :n], want) and not table.subset[n:].any()
    assert table.subset.flags.c_contiguous  # one array type for the kernel
