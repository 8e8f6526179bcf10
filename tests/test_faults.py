"""Fault injection: the fault-map format, stuck cells, wear-out and transient gate errors
in the runtime, and `pimc run --faults`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pimc.runtime import run_program
from pimc.runtime.faults import FaultModel, FaultSpec

from pimc.cli import main
from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.faults import Fault, parse_faults, print_faults

SMALL = Arch(rows=128, cols=32)
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@given(st.lists(st.builds(Fault, st.integers(0, 9), st.none() | st.integers(0, 31),
                          st.integers(0, 127), st.integers(0, 1))
                | st.builds(Fault, st.integers(0, 9), st.integers(0, 31), st.none(),
                            st.integers(0, 1))).map(tuple))
def test_fault_maps_round_trip(faults):
    assert parse_faults(print_faults(faults)) == faults


@pytest.mark.parametrize("line", ["x0 stuck-at-1", "x0 c1 r2 stuck-at-2", "c1 r2 stuck-at-0",
                                  "x0 c1 r2", "x0 c² stuck-at-1"])
def test_malformed_fault_lines_are_located(line):
    with pytest.raises(PimError, match=r"f\.txt:2: expected"):
        parse_faults("# a map\n" + line + "\n", "f.txt")


@pytest.mark.parametrize("spec,message", [("stuck=2", "bad value"), ("endurance=0", "bad value"),
                                          ("seed=-1", "bad value"), ("bogus=1", "unknown key")])
def test_bad_fault_specs_are_refused(spec, message):
    with pytest.raises(PimError, match=message):
        FaultSpec.parse(spec, SMALL)


def _copy_program(writes: int = 1):
    """y = x (8 bits), through NOR twice; column 8..15 rewritten `writes` times."""
    b = ProgramBuilder(1, arch=SMALL)
    b.input("x", "u8", [128], 0)
    for _ in range(writes):
        b.init(list(range(8, 24)), 0xFFFF)
        for k in range(8):
            b.nor(8 + k, k)
            b.nor(16 + k, 8 + k)
    b.output("y", "u8", [128], 16)
    return b.build()


def _run(prog, spec: FaultSpec, x: np.ndarray):
    model = FaultModel(spec, prog.arch, prog.crossbars)
    out, stats = run_program(prog, {"x": x}, faults=model)
    return out["y"], stats.faults


X = np.random.default_rng(0).integers(0, 256, 128, dtype=np.uint8)


def test_a_stuck_cell_changes_a_result_only_where_the_result_wants_the_other_value():
    x = np.zeros(128, np.uint8)
    x[5] = 0b100
    y, report = _run(_copy_program(), FaultSpec(cells=(Fault(0, 18, 5, 0),)), x)
    assert y[5] == 0 and (np.delete(y, 5) == np.delete(x, 5)).all()  # bit 2 of row 5
    assert report["cells_hit"] == 1 and report["first_hits"] == ["x0 c18 r5 stuck-at-0"]
    y, report = _run(_copy_program(), FaultSpec(cells=(Fault(0, 18, 6, 0),)), x)
    # The INIT to 1 before the NOR hit the cell, but the result in row 6 is a 0 anyway.
    assert (y == x).all() and report["cells_hit"] == 1


def test_a_stuck_column_and_a_stuck_row():
    y, _ = _run(_copy_program(), FaultSpec(cells=(Fault(0, 16, None, 1),)), X)
    assert (y == X | 1).all()
    y, report = _run(_copy_program(), FaultSpec(cells=(Fault(0, None, 9, 0),)), X)
    assert y[9] == 0 and (np.delete(y, 9) == np.delete(X, 9)).all()
    assert report["stuck_cells"] == 32


def test_faults_outside_the_program_do_nothing_and_outside_the_memory_are_refused():
    y, report = _run(_copy_program(), FaultSpec(cells=(Fault(0, 30, 1, 1),)), X)
    assert (y == X).all() and report["cells_hit"] == 0
    with pytest.raises(PimError, match="outside the memory"):
        FaultModel(FaultSpec(cells=(Fault(0, 32, 1, 1),)), SMALL, 1)


def test_cells_wear_out_after_the_endurance_limit():
    """Columns 8..23 are written 2 times per pass (INIT, then NOR): with 3 passes and an
    endurance of 4 writes, they stick after the second pass at what it left."""
    prog = _copy_program(writes=3)
    y, report = _run(prog, FaultSpec(endurance=4), X)
    assert report["worn_cells"] == 16 * 128
    assert (y == X).all()  # stuck at the values of the second pass: the same data
    y, _ = _run(prog, FaultSpec(endurance=4), X ^ 0xFF)
    assert (y == (X ^ 0xFF)).all()
    model = FaultModel(FaultSpec(endurance=4), SMALL, 1)  # one memory, aging over two runs
    run_program(prog, {"x": X}, faults=model)
    out, _ = run_program(prog, {"x": X ^ 0xFF}, faults=model)
    assert (out["y"] == X).all()  # the second run cannot rewrite the worn cells


def test_transient_errors_follow_their_probability_and_seed():
    prog = _copy_program()
    y, report = _run(prog, FaultSpec(transient=1.0), X)
    assert report["transient_flips"] == 16 * 128 and (y == X).all()  # every gate inverted twice
    a, ra = _run(prog, FaultSpec(transient=0.01, seed=4), X)
    b, rb = _run(prog, FaultSpec(transient=0.01, seed=4), X)
    assert (a == b).all() and ra == rb and 0 < ra["transient_flips"] < 16 * 128


def test_random_stuck_cells_follow_the_rate():
    model = FaultModel(FaultSpec(stuck0=0.01, stuck1=0.01, seed=1), SMALL, 4)
    assert 0.015 < model.report.stuck_cells / (4 * 32 * 128) < 0.025


def test_pimc_run_reports_faults_and_changed_outputs(tmp_path, capsys):
    faults = tmp_path / "f.txt"
    faults.write_text("x0 c16 stuck-at-1  # bit 0 of the sum\n")
    stats = tmp_path / "s.json"
    prog = str(SAMPLES / "ripple_add8.uop")
    assert main(["run", prog, "--faults", str(faults), "--stats", str(stats)]) == 0
    out = capsys.readouterr().out
    assert "faults: 1,024 stuck cells" in out and "elements differ from a fault-free run" in out
    record = json.loads(stats.read_text())["faults"]
    assert 0 < record["outputs_changed"]["s"] < 1024  # about half the sums are odd anyway
    assert main(["run", prog, "--faults", "stuck0=0.5,nonsense=1"]) == 2
    assert main(["run", prog, "--faults", str(tmp_path / "missing.txt")]) == 2
    assert "Traceback" not in capsys.readouterr().err
