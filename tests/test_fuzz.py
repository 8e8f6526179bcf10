"""Bad input of every kind ends in a clean PimError (the CLI's exit 2), never a traceback:
regression tests for what fuzzing found, and bounded property tests in the suite
(`python bench/fuzz.py` runs the same at volume)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from pimc.cli import main
from pimc.frontend.dsl import parse_kernels
from pimc.frontend.onnx_import import import_model
from pimc.isa.arch import Arch
from pimc.isa.check import validate
from pimc.isa.errors import PimError
from pimc.isa.text import parse_program
from pimc.passes.pipeline import run_passes

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ADDER = (SAMPLES / "ripple_add8.uop").read_text()
LOOPED = (SAMPLES / "ripple_add8_loop.uop").read_text()


def _parse_checked(text: str) -> None:
    validate(parse_program(text, "t.uop"), "t.uop")


@pytest.mark.parametrize("old,new", [
    (".crossbars 1", ".crossbars ²"),           # non-ASCII digits
    ("c32 = c0 c8", "c32 = c\u0661 c8"),       # ARABIC-INDIC DIGIT ONE
    ("c32 = c0 c8", "c32 = c" + "9" * 5000 + " c8"),   # past Python's int-string limit
    ("x0 r0:1024 c0\n", "x0 r0:1024 c" + "9" * 5000 + "\n"),
    ("[1024] x0 r0:1024 c0", "[0] x0 r0:1024 c0"),      # a zero-size tensor
    ("[1024] x0 r0:1024 c0", "[" + "9" * 5000 + "] x0 r0:1024 c0"),
])
def test_hostile_numbers_in_a_program_are_clean_errors(old, new):  # type: ignore[no-untyped-def]
    assert old in ADDER
    with pytest.raises(PimError, match=r"t\.uop"):
        _parse_checked(ADDER.replace(old, new, 1))


def test_a_huge_column_range_fails_fast():
    text = ADDER.replace('INIT     x0 c32:36,c16,c24 = 0x3f @"bit 0"',
                         "INIT     x0 c0:100000000 = 0", 1)
    t = time.perf_counter()
    with pytest.raises(PimError, match="longer than any crossbar"):
        _parse_checked(text)
    assert time.perf_counter() - t < 2  # not building a hundred million columns


@pytest.mark.parametrize("line", [".routine", ".routine   ", ".routine f t:0", ".routine f t:²"])
def test_malformed_routine_headers_are_clean_errors(line):  # type: ignore[no-untyped-def]
    text = LOOPED.replace(".routine", line + "\n.routine", 1)
    with pytest.raises(PimError, match=r"t\.uop:"):
        _parse_checked(text)


def test_pimc_show_checks_the_program_before_listing_it(tmp_path, capsys):  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.uop"
    bad.write_text(LOOPED.replace("full_add x0", "no_such_routine x0", 1))
    assert main(["show", str(bad), "--summary"]) == 2
    assert "no_such_routine" in capsys.readouterr().err


@pytest.mark.parametrize("field,value", [("t_nor_ns", "-1e309"), ("e_set_fj", "nan"),
                                         ("t_write_ns", "inf"), ("e_nor_fj", "-1")])
def test_architecture_values_must_be_finite_and_non_negative(field, value):  # type: ignore[no-untyped-def]
    with pytest.raises(PimError, match=field):
        Arch.from_fields({field: value})


def test_long_and_deep_expressions_parse_or_fail_cleanly():
    sum_600 = "kernel k(x: f32[4]) -> (y: f32[4]) { y = " + " + ".join(["x"] * 600) + "; }"
    (k,) = parse_kernels(sum_600)
    assert len(run_passes(k, sum_600, "ieee").graph) == 600  # the input and 599 adds
    deep = "kernel k(x: f32[4]) -> (y: f32[4]) { y = " + "-" * 20000 + "x; }"
    with pytest.raises(PimError, match="nested too deeply"):
        parse_kernels(deep)


def _gemm_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 4))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 2))], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("corrupt", ["short", "type"])
def test_a_corrupt_initializer_is_named(corrupt):  # type: ignore[no-untyped-def]
    m = _gemm_model()
    if corrupt == "short":
        m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-3]
    else:
        m.graph.initializer[0].data_type = 999
    with pytest.raises(PimError, match=r"m\.onnx: .*\bw\b"):
        import_model(m, "m.onnx")


def test_an_unknown_element_type_is_a_clean_error():
    m = _gemm_model()
    m.graph.input[0].type.tensor_type.elem_type = 999
    with pytest.raises(PimError, match=r"m\.onnx"):
        import_model(m, "m.onnx")


HOSTILE = ["0", "-1", "9" * 5000, "²", "\u0661\u0662", "", "é", "1e309", "nan", "c0:100000000",
           "r0:99999999", "x0:9999999", '@"', "[", "]", ",", "=", ":", "LOOP", "END", ".end",
           "CALL", "c1024", "x8192"]


@st.composite
def mutated(draw, text: str) -> str:  # type: ignore[no-untyped-def]
    """The text with one token replaced (a hostile one or another token), one line
    deleted or duplicated, or cut short."""
    lines = text.split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["token", "line", "cut"]))
    if kind == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "line":
        if draw(st.booleans()):
            del lines[i]
        else:
            lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))])
        return "\n".join(lines)
    tokens = lines[i].split(" ")
    j = draw(st.integers(0, len(tokens) - 1))
    tokens[j] = draw(st.sampled_from(HOSTILE + text.split()[:200]))
    lines[i] = " ".join(tokens)
    return "\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([ADDER, LOOPED, (SAMPLES / "row_ops.uop").read_text()]).flatmap(mutated))
def test_mutated_programs_parse_or_fail_cleanly(text):  # type: ignore[no-untyped-def]
    with contextlib.suppress(PimError):
        _parse_checked(text)


DSL = [(SAMPLES / n).read_text() for n in ("axpy.pk", "matrix_stats.pk", "fixed_filter.pk")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DSL).flatmap(mutated))
def test_mutated_kernels_parse_and_typecheck_or_fail_cleanly(text):  # type: ignore[no-untyped-def]
    with contextlib.suppress(PimError):
        for k in parse_kernels(text, "t.pk"):
            run_passes(k, text, "ieee")
