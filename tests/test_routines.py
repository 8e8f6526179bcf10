"""Routines, calls and loops in the micro-code: printed and parsed, checked, executed as
their expansion would be, and counted without executing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pimc.runtime import run_program
from pimc.runtime.count import count_program

from pimc.cli import main
from pimc.isa.builder import ProgramBuilder
from pimc.isa.check import validate
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.flow import flat
from pimc.isa.text import load_program, parse_program, print_program
from pimc.isa.uop import Op
from pimc.listing import listing
from tests.strategies import programs

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
EXACT_KEYS = ("ops", "cycles", "cycles_by_kind", "cycles_bulk_init", "cycles_per_cell_init",
              "latency_ns", "columns_used", "crossbars_used")


def _inputs(prog, seed=0):
    rng = np.random.default_rng(seed)
    return {t.name: rng.integers(0, 1 << parse_dtype(t.dtype).bits, t.shape).astype(np.uint8)
            for t in prog.inputs}


def test_routine_program_round_trips():
    prog = load_program(SAMPLES / "ripple_add8_loop.uop")
    again = parse_program(print_program(prog))
    assert again == prog
    assert print_program(again) == print_program(prog)


def test_loop_sample_computes_what_the_flat_sample_does():
    looped = load_program(SAMPLES / "ripple_add8_loop.uop")
    plain = load_program(SAMPLES / "ripple_add8.uop")
    inputs = _inputs(plain)
    out_a, stats_a = run_program(looped, inputs)
    out_b, stats_b = run_program(plain, inputs)
    for k in out_b:
        assert np.array_equal(out_a[k], out_b[k])
    a, b = stats_a.as_dict(), stats_b.as_dict()
    for key in EXACT_KEYS:
        assert a[key] == pytest.approx(b[key]), key
    assert a["endurance"] == b["endurance"] and a["host_io"] == b["host_io"]
    assert a["energy_fj"] == pytest.approx(b["energy_fj"], rel=1e-12)


def test_expansion_executes_the_same():
    prog = load_program(SAMPLES / "ripple_add8_loop.uop")
    inputs = _inputs(prog, 3)
    flat_prog = flat(prog)
    assert not flat_prog.routines and all(isinstance(op, Op) for op in flat_prog.ops)
    assert len(flat_prog.ops) == sum(count_program(prog).ops.values())
    out_a, stats_a = run_program(prog, inputs)
    out_b, stats_b = run_program(flat_prog, inputs)
    assert all(np.array_equal(out_a[k], out_b[k]) for k in out_a)
    assert stats_a.as_dict()["endurance"] == stats_b.as_dict()["endurance"]


HEAD = (".pimc 2\n.crossbars 1\n.routine inc a:1 out:1 t:1\n  INIT t.0,out.0 = 3\n"
        "  NOR t.0 = a.0\n  NOR out.0 = t.0\n.end\n")


@pytest.mark.parametrize("body, message", [
    ("CALL nope x0 a=c0\n", "prog.uop:8: no routine 'nope'"),
    ("CALL inc x0 a=c0 out=c1\n", "prog.uop:8: CALL inc: segment(s) t not bound"),
    ("CALL inc x0 a=c0 out=c1 t=c1024\n", "prog.uop:8: CALL inc: segment 't' needs columns"),
    ("CALL inc x0 a=c0 out=c1 t=c1\n", "written segment 'out' overlaps segment 't'"),
    ("LOOP 4\nCALL inc x0 a=c0+1 out=c10+1 t=c1020+2\nEND\n",
     "prog.uop:9: CALL inc: segment 't' needs columns c1020..c1026"),
    ("CALL inc x3 a=c0 out=c1 t=c2\n", "prog.uop:8: crossbar 3 is out of range"),
    ("LOOP 3\nEND\n", "prog.uop:8: an empty LOOP"),
    ("LOOP 3\nCALL inc x0 a=c0 out=c1 t=c2\n", "prog.uop:8: LOOP without END"),
    ("LOOP 2\nNOR x0 c1 = c0\nEND\n", "a LOOP holds CALLs only"),
])
def test_bad_calls_name_their_line(body, message):
    with pytest.raises(PimError) as err:
        validate(parse_program(HEAD + body, "prog.uop"), "prog.uop")
    assert message in str(err.value)


def test_loop_overwriting_its_own_outputs_is_refused():
    text = (".pimc 2\n.crossbars 1\n.routine two a:2 out:2\n  INIT out.0:2 = 3\n"
            "  NOR out.0 = a.0\n  NOR out.1 = a.1\n.end\nLOOP 4\n"
            "  CALL two x0 a=c0+2 out=c100+1\nEND\n")
    with pytest.raises(PimError, match=r"prog.uop:9: .*stride \+1 on 'out' makes iterations "
                                       r"overwrite"):
        validate(parse_program(text, "prog.uop"), "prog.uop")


def test_recursion_and_bad_frames_are_refused():
    text = (".pimc 2\n.crossbars 1\n.routine f a:1\n  CALL g a=a.0\n.end\n"
            ".routine g a:1\n  CALL f a=a.0\n.end\n")
    with pytest.raises(PimError, match=r"prog.uop:6: recursion: f -> g -> f"):
        validate(parse_program(text, "prog.uop"), "prog.uop")
    with pytest.raises(PimError, match=r"prog.uop:4: 'a.1' is past the end of segment 'a'"):
        parse_program(".pimc 2\n.crossbars 1\n.routine f a:1\n  NOR a.1 = a.0\n.end\n",
                      "prog.uop")
    with pytest.raises(PimError, match=r"prog.uop:4: a TRANSFER names its crossbars"):
        parse_program(".pimc 2\n.crossbars 1\n.routine f a:1\n  TRANSFER a.0 -> a.0\n.end\n",
                      "prog.uop")


def test_cli_reports_a_bad_call_with_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.uop"
    path.write_text(HEAD + "CALL inc x0 a=c0 out=c1 t=c1\n")
    assert main(["run", str(path)]) == 2
    assert "bad.uop:8: CALL inc: written segment 'out' overlaps" in capsys.readouterr().err


def test_nested_calls_and_loops_inside_routines():
    """A routine that loops over another: the frame columns compose."""
    b = ProgramBuilder(1)
    b.input("a", "u8", [1024], 0)
    with b.routine("inc", a=1, out=1, t=1) as f:
        b.init([f["t"], f["out"]], 3)
        b.nor(f["t"], f["a"])
        b.nor(f["out"], f["t"])
    with b.routine("copy8", a=8, out=8, t=1) as f, b.loop(8):
        b.call("inc", a=(f["a"], 1), out=(f["out"], 1), t=f["t"])
    b.call("copy8", a=0, out=20, t=30)
    b.output("copied", "u8", [1024], 20)
    prog = parse_program(print_program(b.build()))
    a = np.arange(1024).astype(np.uint8)
    out, stats = run_program(prog, {"a": a})
    assert np.array_equal(out["copied"], a)
    assert stats.ops["NOR"] == 16 and count_program(prog).ops["NOR"] == 16
    assert "called 8 times" in listing(prog) and "called 1 times" in listing(prog)


@pytest.mark.parametrize("name", ["full_adder.uop", "ripple_add8.uop", "ripple_add8_loop.uop",
                                  "row_ops.uop"])
def test_count_only_equals_executed_counts(name):
    prog = load_program(SAMPLES / name)
    _, ran = run_program(prog, _inputs(prog))
    counted = count_program(prog)
    a, b = ran.as_dict(), counted.as_dict()
    assert a.keys() == b.keys()
    for key in EXACT_KEYS:
        assert a[key] == pytest.approx(b[key]), key
    lo, hi = b["energy_fj_bounds"]
    assert lo * (1 - 1e-12) <= a["energy_fj"] <= hi * (1 + 1e-12)
    assert a["host_io"]["input"]["cells"] == b["host_io"]["input"]["cells"]
    if name != "row_ops.uop":  # no predicated op, no data moved: energy and wear are exact
        assert a["energy_fj"] == pytest.approx(b["energy_fj"], rel=1e-12)
        assert a["endurance"] == b["endurance"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=programs(), seed=st.integers(0, 3))
def test_count_only_bounds_random_programs(prog, seed):
    _, ran = run_program(prog, seed=seed, strict=False)
    counted = count_program(prog)
    a, b = ran.as_dict(), counted.as_dict()
    for key in EXACT_KEYS:
        assert a[key] == pytest.approx(b[key]), key
    lo, hi = b["energy_fj_bounds"]
    assert lo * (1 - 1e-9) - 1e-6 <= a["energy_fj"] <= hi * (1 + 1e-9) + 1e-6
    ea, eb = a["endurance"], b["endurance"]
    assert ea["max_writes_per_cell"] <= eb["max_writes_per_cell"]
    if not any(op.pred for op in prog.ops):
        assert ea == eb
