"""`pimc compile --avoid`: a program moved clear of known-bad cells computes what it did
on a perfect memory, on the faulty one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pimc.runtime import run_program
from pimc.runtime.faults import FaultModel, FaultSpec

from pimc.avoid import Placement, avoid, footprint, place
from pimc.cli import main
from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.faults import Fault
from pimc.isa.uop import Span

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ARCH = Arch(rows=128, cols=32, max_crossbars=3)


def _program(rows: Span | None = None):
    """y = x in crossbars 0..1 (rows `rows`, or all), through one scratch column."""
    b = ProgramBuilder(2, arch=ARCH)
    n = 128 if rows is None else len(rows)
    b.input("x", "u4", [2, n], 0, rows=rows)
    for k in range(4):
        b.init([10, 4 + k], 0b11, rows=rows)
        b.nor(10, k, rows=rows)
        b.nor(4 + k, 10, rows=rows)
    b.output("y", "u4", [2, n], 4, rows=rows)
    return b.build()


def _outputs(prog, faults=()):
    x = np.random.default_rng(0).integers(0, 16, prog.inputs[0].shape, dtype=np.uint8)
    model = FaultModel(FaultSpec(cells=tuple(faults)), prog.arch, prog.crossbars)
    out, _ = run_program(prog, {"x": x}, faults=model)
    return out["y"]


def test_the_footprint_is_the_cells_used():
    fp = footprint(_program(Span(0, 64)))
    assert np.flatnonzero(fp.cols).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10]
    assert fp.rows is not None and np.flatnonzero(fp.rows).tolist() == list(range(64))
    assert footprint(_program()).rows is None  # every row: rows cannot move


def test_faults_outside_the_footprint_leave_the_program_where_it_is():
    prog = _program()
    moved, note = avoid(prog, (Fault(0, 20, 3, 1), Fault(2, 0, None, 0)), "p")
    assert moved is prog and "none of the 2 fault(s)" in note


@pytest.mark.parametrize("faults,expected", [
    ((Fault(1, 10, 5, 1),), Placement(0, 1, 0)),  # the scratch column: one column on
    ((Fault(0, None, 5, 1),), Placement(1, 0, 0)),  # a bad row in every column: a spare crossbar
])
def test_the_smallest_move_is_chosen(faults, expected):
    prog = _program()
    assert place(prog, faults) == expected
    moved, _ = avoid(prog, faults, "p")
    assert (_outputs(moved, faults) == _outputs(prog)).all()
    assert not (_outputs(prog, faults) == _outputs(prog)).all()  # the faults mattered


def test_rows_move_when_no_op_acts_on_every_row():
    prog = _program(Span(0, 64))
    faults = (Fault(0, None, 10, 1), Fault(1, None, 20, 1))
    p = place(prog, faults)
    assert p == Placement(0, 0, 21)
    moved, _ = avoid(prog, faults, "p")
    assert (_outputs(moved, faults) == _outputs(prog)).all()


def test_a_program_that_cannot_be_moved_is_a_clear_error():
    faults = tuple(Fault(x, None, 0, 1) for x in range(3))
    with pytest.raises(PimError, match=r"p: cannot place the program \(2 crossbar\(s\), 9 "
                                       r"columns, every row\) clear of the 3 fault\(s\)"):
        avoid(_program(), faults, "p")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.builds(Fault, st.integers(0, 2), st.none() | st.integers(0, 31),
                          st.integers(0, 127), st.integers(0, 1)), max_size=6))
def test_a_moved_program_on_the_faulty_memory_matches_the_perfect_one(faults):
    faults = tuple(faults)
    for prog in (_program(), _program(Span(32, 96))):
        try:
            moved, _ = avoid(prog, faults, "p")
        except PimError:
            continue
        assert (_outputs(moved, faults) == _outputs(prog)).all()


def test_pimc_compile_avoid(tmp_path, capsys):
    faults = tmp_path / "bad.txt"
    faults.write_text("x0 c40 stuck-at-1\n")
    prog = str(tmp_path / "g.uop")
    assert main(["compile", str(SAMPLES / "gemm_relu_gemm.onnx"), "-o", prog,
                 "--avoid", str(faults)]) == 0
    assert "--avoid: moved by" in capsys.readouterr().out
    assert main(["run", prog, "--faults", str(faults), "--verify"]) == 0
    faults.write_text("x0 c40\n")
    assert main(["compile", str(SAMPLES / "axpy.pk"), "-o", prog, "--avoid", str(faults)]) == 2
    assert "bad.txt:1: expected" in capsys.readouterr().err
