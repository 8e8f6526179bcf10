"""Wear levelling: rotated scratch columns spread the writes, results unchanged."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pimc.runtime import run_program

from pimc.compile import compile_source
from pimc.isa.uop import Init, Nor, Span
from pimc.wear import remap, repeat_runs

SOURCE = "kernel k(x: i16[256], y: i16[256]) -> (z: i16[256]) { z = x * y + x; }"


def test_remap_moves_every_column():
    op = Nor(xbs=Span(0, 1), out=5, ins=(1, 6))
    assert remap(op, lambda c: c + 10) == Nor(xbs=Span(0, 1), out=15, ins=(11, 16))


def test_runs_repeat_and_rotation_spares_the_fixed_columns():
    ops = (Init(xbs=Span(0, 1), cols=(40, 41), value=3), Nor(xbs=Span(0, 1), out=40, ins=(0,)))
    flat = repeat_runs(ops, 3, 32, 64, level=False)
    assert flat == ops * 3
    rotated = repeat_runs(ops, 3, 32, 64, level=True)
    assert [op.cols for op in rotated[::2]] == [(40, 41), (50, 51), (60, 61)]
    assert all(0 in op.ins for op in rotated[1::2])  # input column 0 does not move


def test_wear_levelling_lowers_the_most_written_cell_and_keeps_results():
    inputs = {"x": np.arange(256, dtype=np.int16), "y": np.full(256, -3, np.int16)}
    results = {}
    for level in (False, True):
        prog = compile_source(SOURCE, "k.pk", runs=4, wear_level=level)
        out, stats = run_program(prog, inputs)
        results[level] = (out["z"], stats.endurance.max_writes_per_cell)
    assert np.array_equal(results[False][0], results[True][0])
    assert results[True][1] < results[False][1]


def test_a_reduction_over_crossbars_moves_with_its_columns():
    from pimc.isa.arch import Arch

    text = "kernel s(x: i16[200]) -> (t: i16) { t = sum(x); }"
    x = {"x": np.arange(200, dtype=np.int16)}
    outs = []
    for level in (False, True):
        prog = compile_source(text, "s.pk", runs=3, wear_level=level, arch=Arch(rows=64))
        out, _ = run_program(prog, x)
        outs.append(int(out["t"]))
    assert outs == [int(x["x"].sum()), int(x["x"].sum())]  # ints: any order, numpy's sum


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True),
                          st.integers(0, 3), st.integers(1, 4), st.integers(0, 15),
                          st.integers(1, 16), st.integers(1, 3), st.booleans()),
                min_size=1, max_size=12),
       st.integers(0, 3))
def test_write_counts_are_exact_however_row_spans_are_kept(writes, tables):
    """Row spans counted in tables of their own, or (past the first few) as events
    folded per cell at the end, give the cell counts of a brute-force tally."""
    from pimc.runtime import endurance

    brute = np.zeros((8, 4, 16), dtype=np.int64)
    counter = endurance.WriteCounter(8, 4, 16)
    saved, endurance.SPAN_TABLES = endurance.SPAN_TABLES, tables
    try:
        for cols, x0, nx, r0, length, step, whole in writes:
            xs = slice(x0, min(4, x0 + nx))
            rows = None if whole else range(r0, min(16, r0 + length), step)
            counter.add(np.array(cols), xs, rows)
            picked = slice(None) if rows is None else slice(rows.start, rows.stop, rows.step)
            for c in cols:
                brute[c, xs, picked] += 1
    finally:
        endurance.SPAN_TABLES = saved
    e = counter.summary()
    nz = brute[brute > 0]
    assert e.max_writes_per_cell == (int(nz.max()) if nz.size else 0)
    assert e.cells_written == nz.size and e.cell_writes == int(nz.sum())
