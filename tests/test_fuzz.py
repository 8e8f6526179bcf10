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
def test_hostile_numbers_in_a_program_are_clean_errors(old, new):
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
def test_malformed_routine_headers_are_clean_errors(line):
    text = LOOPED.replace(".routine", line + "\n.routine", 1)
    with pytest.raises(PimError, match=r"t\.uop:"):
        _parse_checked(text)


def test_pimc_show_checks_the_program_before_listing_it(tmp_path, capsys):
    bad = tmp_path / "bad.uop"
    bad.write_text(LOOPED.replace("full_add x0", "no_such_routine x0", 1))
    assert main(["show", str(bad), "--summary"]) == 2
    assert "no_such_routine" in capsys.readouterr().err


@pytest.mark.parametrize("field,value", [("t_nor_ns", "-1e309"), ("e_set_fj", "nan"),
                                         ("t_write_ns", "inf"), ("e_nor_fj", "-1")])
def test_architecture_values_must_be_finite_and_non_negative(field, value):
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
def test_a_corrupt_initializer_is_named(corrupt):
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


@pytest.mark.parametrize("source,message", [
    ("kernel k(x: u8[4], x: u8[4]) -> (y: u8[4]) { y = x; }", "'x' is declared twice"),
    ("kernel k(x: u8[4]) -> (x: u8[4]) { x = x; }", "'x' is declared twice"),
    ("kernel k(x: u8[4]) -> (y: u8[4]) { y = x + 300; }", r"300 is out of range for u8 \(0 .. 255\)"),
    ("kernel k(x: i8[4]) -> (y: i8[4]) { y = x + 128; }", "out of range for i8"),
    ("kernel k(x: u8[4]) -> (y: u8[4]) { y = x + 1.5; }", "1.5 is not an integer"),
    ("kernel k(x: u8[4]) -> (y: u8[4]) { y = x + u8(256); }", "out of range"),
    ("kernel k(x: u8[4]) -> (y: u8[4]) { y = x + 1e400; }", "inf is not a value of u8"),
    ("kernel k(x: q8.8[4]) -> (y: q8.8[4]) { y = x + 200.0; }", "out of range for q8.8"),
    ("kernel k(x: u8[0]) -> (y: u8[0]) { y = x; }", "zero-size dimension"),
    ("kernel k(x: u8[4,0]) -> (y: u8[4]) { y = sum(x, axis=1); }", "zero-size dimension"),
    ("kernel k(x: u8[" + ",".join(["1"] * 33) + "]) -> (y: u8[1]) { y = u8(1); }",
     "33 dimensions; at most 32"),
    ("kernel k(x: f32[4]) -> (y: f32[4]) { y = x + " + "9" * 5000 + "; }",
     "a literal of 5000 characters is too long"),
])
def test_kernel_declarations_and_literals_are_checked(source, message):
    with pytest.raises(PimError, match=message) as err:
        (k,) = parse_kernels(source, "k.pk")
        run_passes(k, source, "ieee")
    assert str(err.value).startswith("k.pk:1:")


def test_literals_that_fit_their_type_are_accepted():
    source = ("kernel k(x: i8[4], q: q8.8[4]) -> (y: i8[4], z: q8.8[4]) "
              "{ y = x + 127 - 0; z = q * 0.3 - 127.5; }")
    (k,) = parse_kernels(source)
    run_passes(k, source, "ieee")


def _one_node(op: str, ins: list, out_shape: tuple, inits: tuple = (),
              **attrs: object) -> onnx.ModelProto:
    names = [i.name for i in ins] + [t.name for t in inits]
    node = helper.make_node(op, names, ["y"], name="n1", **attrs)
    g = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, out_shape)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _vi(name: str, shape: tuple, elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.mark.parametrize("model,message", [
    (lambda: _one_node("Flatten", [_vi("x", (2, 3))], (2, 3), axis=7),
     r"n1 \(Flatten\): .*axis"),
    (lambda: _one_node("Squeeze", [_vi("x", (2, 1))], (2,),
                       (numpy_helper.from_array(np.array([5]), "ax"),)),
     r"n1 \(Squeeze\): .*axis value: 5"),
    (lambda: _one_node("Add", [_vi("x", (4,), TensorProto.BOOL), _vi("z", (4,), TensorProto.BOOL)],
                       (4,)), r"n1 \(Add\): .*bool"),
    (lambda: _one_node("Add", [_vi("x", (2, 3)), _vi("z", (4,))], (2, 3)),
     r"n1 \(Add\): Incompatible dimensions"),
    (lambda: _one_node("Relu", [_vi("x", (0, 3))], (0, 3)), "'x' has a zero-size dimension"),
    (lambda: _one_node("MatMul", [_vi("x", (1, 4))], (1, 0),
                       (numpy_helper.from_array(np.zeros((4, 0), np.float32), "w"),)),
     "'w' has a zero-size dimension"),
])
def test_invalid_onnx_nodes_are_named(model, message):
    with pytest.raises(PimError, match=message):
        import_model(model(), "m.onnx")


HOSTILE = ["0", "-1", "9" * 5000, "²", "\u0661\u0662", "", "é", "1e309", "nan", "c0:100000000",
           "r0:99999999", "x0:9999999", '@"', "[", "]", ",", "=", ":", "LOOP", "END", ".end",
           "CALL", "c1024", "x8192"]


@st.composite
def mutated(draw, text: str) -> str:
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
def test_mutated_programs_parse_or_fail_cleanly(text):
    with contextlib.suppress(PimError):
        _parse_checked(text)


DSL = [(SAMPLES / n).read_text() for n in ("axpy.pk", "matrix_stats.pk", "fixed_filter.pk")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DSL).flatmap(mutated))
def test_mutated_kernels_parse_and_typecheck_or_fail_cleanly(text):
    with contextlib.suppress(PimError):
        for k in parse_kernels(text, "t.pk"):
            run_passes(k, text, "ieee")


# ---------------------------------------------------------------- the CLI's files


def _no_temporaries(folder: Path) -> bool:
    return not list(folder.glob(".*.tmp"))


def test_unwritable_outputs_are_clean_errors(tmp_path, capsys):
    src = SAMPLES / "axpy.pk"
    assert main(["compile", str(src), "-o", str(tmp_path / "no" / "a.uop")]) == 2
    assert main(["compile", str(src), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "is a directory" in err and "Traceback" not in err
    assert _no_temporaries(tmp_path)


def test_an_output_never_overwrites_an_input(tmp_path, capsys):
    src = tmp_path / "k.pk"
    src.write_text((SAMPLES / "axpy.pk").read_text())
    assert main(["compile", str(src), "-o", str(src)]) == 2
    assert src.read_text() == (SAMPLES / "axpy.pk").read_text()
    prog = tmp_path / "k.uop"
    assert main(["compile", str(src), "-o", str(prog)]) == 0
    assert main(["run", str(prog), "-o", str(prog)]) == 2
    assert main(["run", str(prog), "-o", str(tmp_path / "o.npz"), "--stats",
                 str(tmp_path / "o.npz")]) == 2
    assert "would overwrite" in capsys.readouterr().err


def test_a_run_writes_its_outputs_and_statistics_together_or_neither(tmp_path):
    stats = tmp_path / "s.json"
    assert main(["run", str(SAMPLES / "ripple_add8.uop"), "--stats", str(stats),
                 "-o", str(tmp_path / "missing" / "o.npz")]) == 2
    assert not stats.exists() and _no_temporaries(tmp_path)


def test_write_all_leaves_nothing_when_one_file_fails(tmp_path):
    from pimc.fileio import write_all

    def fail(f):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_all([(tmp_path / "a.uop", lambda f: f.write(b"x")), (tmp_path / "b.npz", fail)])
    assert not list(tmp_path.iterdir())


def test_outputs_get_the_permissions_of_new_files(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        out = tmp_path / "a.uop"
        assert main(["compile", str(SAMPLES / "axpy.pk"), "-o", str(out)]) == 0
    finally:
        os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o644


def test_an_interrupt_exits_130_without_a_traceback_or_files(tmp_path, capsys, monkeypatch):
    import pimc.compile

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pimc.compile, "compile_source", interrupted)
    assert main(["compile", str(SAMPLES / "axpy.pk"), "-o", str(tmp_path / "a.uop")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_negative_seed_is_refused_by_the_argument_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(SAMPLES / "ripple_add8.uop"), "--seed", "-1"])
    assert exc.value.code == 2 and "non-negative" in capsys.readouterr().err


def _kernel_program(tmp_path: Path, source: str) -> str:
    src, prog = tmp_path / "k.pk", tmp_path / "k.uop"
    src.write_text(source)
    assert main(["compile", str(src), "-o", str(prog)]) == 0
    return str(prog)


def test_verify_takes_float_inputs_given_as_their_bits(tmp_path, capsys):
    """The format `run -o` writes (bf16 as uint16 bits) is accepted by --inputs --verify."""
    prog = _kernel_program(tmp_path, "kernel k(x: bf16[64]) -> (y: bf16[64]) { y = x * x; }")
    bits = np.random.default_rng(1).integers(0, 1 << 16, 64, dtype=np.uint16)
    np.savez(tmp_path / "in.npz", x=bits)
    assert main(["run", prog, "--inputs", str(tmp_path / "in.npz"), "--verify"]) == 0
    assert "64 of 64 elements bit-exact" in capsys.readouterr().out


@pytest.mark.parametrize("source,value,message", [
    ("kernel k(x: q8.8[4]) -> (y: q8.8[4]) { y = x + x; }", np.full(4, np.nan), "NaN or infinity"),
    ("kernel k(x: u8[4]) -> (y: u8[4]) { y = x + x; }", np.full(4, 0.5), "fractions"),
    ("kernel k(x: u8[4]) -> (y: u8[4]) { y = x + x; }", np.full(4, 300), "outside u8's range"),
    ("kernel k(x: u8[4]) -> (y: u8[4]) { y = x + x; }", np.zeros(5), "shape (5,)"),
])
def test_inputs_a_type_cannot_hold_are_refused(tmp_path, capsys, source, value, message):
    prog = _kernel_program(tmp_path, source)
    np.savez(tmp_path / "in.npz", x=value)
    assert main(["run", prog, "--inputs", str(tmp_path / "in.npz")]) == 2
    assert message in capsys.readouterr().err or pytest.fail(capsys.readouterr().err)


def test_real_inputs_to_a_fixed_point_kernel_are_rounded_not_truncated(tmp_path):
    prog = _kernel_program(tmp_path, "kernel k(x: q8.8[4]) -> (y: q8.8[4]) { y = x + x; }")
    np.savez(tmp_path / "in.npz", x=np.array([0.5, 0.25, -1.0, 0.00196]))
    assert main(["run", prog, "--inputs", str(tmp_path / "in.npz"), "--verify",
                 "-o", str(tmp_path / "o.npz")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o.npz")["y"], [256, 128, -512, 2])


def test_a_weights_file_missing_a_tensor_is_refused(tmp_path, capsys):
    prog = tmp_path / "g.uop"
    assert main(["compile", str(SAMPLES / "gemm_relu_gemm.onnx"), "-o", str(prog)]) == 0
    sidecar = tmp_path / "g.uop.weights.npz"
    weights = dict(np.load(sidecar))
    del weights["b1"]
    np.savez(sidecar, **weights)
    assert main(["run", str(prog)]) == 2
    assert "lacks b1" in capsys.readouterr().err


def test_a_long_kernel_compiles_per_distinct_operation(tmp_path):
    """600 float32 adds: one routine called 599 times, not a 600-adder netlist."""
    from pimc.compile import compile_source

    source = "kernel k(x: f32[4]) -> (y: f32[4]) { y = " + " + ".join(["x"] * 600) + "; }"
    prog = compile_source(source, "k.pk")
    assert prog is not None and len(prog.routines) == 1 and len(prog.ops) == 599


def test_inputs_left_out_of_an_inputs_file_are_named(tmp_path, capsys):
    np.savez(tmp_path / "in.npz", a=np.arange(1024, dtype=np.uint8))
    assert main(["run", str(SAMPLES / "ripple_add8.uop"), "--inputs",
                 str(tmp_path / "in.npz")]) == 0
    assert "in.npz: no b; drawn at random (--seed 0)" in capsys.readouterr().err
