"""Kernels end to end: compile, run on the runtime, verify bit for bit against the
reference rebuilt from the program (and the lowering and evaluation on their own)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from pimc.runtime import run_program
from pimc.runtime.hostio import complete_inputs

from pimc.cli import main
from pimc.compile import compile_source
from pimc.isa.arch import Arch
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.text import parse_program, print_program
from pimc.reference.evaluate import evaluate
from pimc.reference.kernel_verify import reference

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

KERNELS = """
kernel ints(a: i16[256], b: i16[256], s: i16) -> (y: i16[256], f: u1[256], z: i32[256]) {
    y = select(a < b, a * s - b, abs(-b));
    f = a != b;
    z = i32(max(y, a)) + i32(min(a, b));
}
kernel floats(x: f16[128], w: f16[128]) -> (y: f16[128], n: i32[128], m: f16[128]) {
    y = relu(x * w - 1.5) + f16(3);
    n = i32(x);
    m = min(x, w);
}
kernel convert(x: u8[64], q: q4.4[64]) -> (y: bf16[64], r: q4.4[64]) {
    y = bf16(x) + bf16(q);
    r = q * q;
}
"""


def _run_and_check(text: str, kernel: str, mode: str, seed: int, arch: Arch | None = None,
                   ) -> None:
    prog = parse_program(print_program(compile_source(text, "k.pk", kernel=kernel,
                                                      mode=mode, arch=arch)))
    inputs = complete_inputs(prog.inputs, {}, seed)
    outputs, _ = run_program(prog, inputs)
    want, checkable = evaluate(reference(prog), inputs, mode)
    for t in prog.outputs:
        got = parse_dtype(t.dtype).to_bits(outputs[t.name]).astype(np.uint64)
        ok = checkable[t.name]
        assert np.array_equal(got[ok], want[t.name][ok]), t.name
        assert ok.mean() > 0.5


@pytest.mark.parametrize("kernel", ["ints", "floats", "convert"])
@pytest.mark.parametrize("mode", ["ieee", "ftz"])
def test_kernels_compute_what_the_reference_computes(kernel, mode):
    _run_and_check(KERNELS, kernel, mode, seed=5)


@pytest.mark.parametrize("mode", ["ieee", "ftz"])
def test_tensors_longer_than_a_crossbar_spread_over_several_with_padding(mode):
    text = """kernel odd(a: i16[150], x: f32[150], s: f32) -> (y: i16[150], z: f32[150]) {
        y = a * a - a; z = relu(x * s + x); }"""
    # 150 elements on crossbars of 64 rows: the third holds 22 and 42 rows of padding
    _run_and_check(text, "odd", mode, seed=6, arch=Arch(rows=64))


@pytest.mark.parametrize("sample", ["axpy.pk", "relu_affine.pk", "fixed_filter.pk", "dot.pk",
                                    "vmax.pk", "long_sum.pk", "matrix_stats.pk"])
def test_samples_compile_run_and_verify_from_the_cli(tmp_path, capsys, sample):
    prog = tmp_path / "prog.uop"
    assert main(["compile", str(SAMPLES / sample), "-o", str(prog)]) == 0
    assert main(["run", str(prog), "--verify", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out and "differ" not in out


def test_verify_catches_a_wrong_program(tmp_path, capsys):
    prog = tmp_path / "p.uop"
    main(["compile", str(SAMPLES / "axpy.pk"), "-o", str(prog)])
    text = prog.read_text().splitlines()
    last_nor = max(i for i, line in enumerate(text) if line.lstrip().startswith("NOR"))
    out_col, ins = text[last_nor].split(" = ")  # in the last routine: one of its gates
    text[last_nor] = f"{out_col} = a.0 {ins.split(' ', 1)[1] if ' ' in ins else ''}".rstrip()
    prog.write_text("\n".join(text) + "\n")
    capsys.readouterr()
    assert main(["run", str(prog), "--verify"]) == 1
    assert "elements differ" in capsys.readouterr().out


@pytest.mark.parametrize("text, where, shown", [
    # a syntax error
    ("kernel a(x: f32) -> (y: f32) {\n  y = x + ;\n}\n", "2:11: expected", "  y = x + ;"),
    # an operation the lowering lacks, named at its line
    ("kernel k(x: f32[8]) -> (y: u8[8]) {\n  y = u8(x);\n}\n",
     "2:7: cast: cast from f32 to unsigned u8 is not supported", "  y = u8(x);\n      ^")])
def test_compile_errors_exit_2_and_leave_no_output(tmp_path, capsys, text, where, shown):
    bad = tmp_path / "bad.pk"
    bad.write_text(text)
    out = tmp_path / "bad.uop"
    assert main(["compile", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:{where}") and shown in err
    assert not out.exists()


def test_several_kernels_need_a_choice():
    with pytest.raises(PimError, match=r"several kernels .* choose one with --kernel"):
        compile_source(KERNELS, "k.pk")
    with pytest.raises(PimError, match="no kernel 'nope'"):
        compile_source(KERNELS, "k.pk", kernel="nope")


def test_a_reduction_along_a_middle_axis_reads_its_operand_transposed():
    text = "kernel r(x: f32[2, 3, 4]) -> (s: f32[2, 4]) { s = sum(x, axis=1); }"
    prog = compile_source(text, "r.pk")
    x = np.random.default_rng(2).normal(size=(2, 3, 4)).astype(np.float32)
    out, _ = run_program(prog, {"x": x})
    want, _ = evaluate(reference(prog), {"x": x})
    assert np.array_equal(out["s"].view(np.uint32), want["s"].astype(np.uint32))
    assert np.allclose(out["s"], x.sum(axis=1), rtol=1e-6)


def test_program_records_what_it_computes():
    prog = compile_source(KERNELS, "k.pk", kernel="ints")
    meta = dict(prog.meta)
    assert meta["kernel"] == "ints" and meta["mode"] == "ieee" and "kernel ints" in \
        meta["kernel-source"]
    assert any(t.broadcast for t in prog.inputs)  # the scalar s


def test_show_groups_micro_code_by_source_line(tmp_path, capsys):
    prog = tmp_path / "p.uop"
    main(["compile", str(SAMPLES / "relu_affine.pk"), "-o", str(prog)])
    capsys.readouterr()
    assert main(["show", str(prog)]) == 0
    text = capsys.readouterr().out
    assert f"# {SAMPLES / 'relu_affine.pk'}:3  let z = x * w + b;  [CALL 2;" in text
    assert "y = relu(z);" in text and "# per source line" in text
    assert "#   mul_bf16: " in text and "called 1 times" in text  # each routine once
    ops_listed = sum(1 for line in text.splitlines() if line.startswith(("CALL", "INIT")))
    assert ops_listed == len(parse_program(prog.read_text()).ops)


def test_a_kernel_too_big_for_the_columns_says_where_and_how_many():
    text = "kernel big(x: f32[64], y: f32[64]) -> (z: f32[64]) { z = x * y + x; }"
    with pytest.raises(PimError) as err:
        compile_source(text, "b.pk", arch=Arch(rows=64, cols=160))
    msg = str(err.value)
    # the multiply's routine alone needs more columns than a crossbar has
    assert msg.startswith("b.pk:1:58: mul: mul_f32 needs more than its 160 scratch columns")
    assert msg.endswith(text + "\n" + " " * 57 + "^")  # the line, a caret at the multiply
    with pytest.raises(PimError) as err:
        compile_source(text, "b.pk", arch=Arch(rows=64, cols=320))
    msg = str(err.value)  # the routine fits, not with the placed values beside it
    assert msg.startswith("b.pk: kernel 'big' needs 96 columns for its placed inputs and "
                          "results and 230 for routine scratch; crossbars have 320"), msg


REDUCTIONS = """
kernel dotp(x: f32[1000], y: f32[1000]) -> (d: f32) { d = dot(x, y); }
kernel vmax(x: i32[77]) -> (m: i32) { m = max(x, axis=0); }
kernel total(x: bf16[256]) -> (t: bf16) { t = sum(x); }
kernel fmax(x: f16[100]) -> (m: f16) { m = max(x, axis=0); }
kernel qsum(x: q8.8[33], w: q8.8[33]) -> (s: q8.8) { s = dot(x, w); }
"""


@pytest.mark.parametrize("kernel", ["dotp", "vmax", "total", "fmax", "qsum"])
@pytest.mark.parametrize("mode", ["ieee", "ftz"])
@pytest.mark.parametrize("rows", [1024, 64])
def test_reductions_follow_the_same_pairwise_tree(kernel, mode, rows):
    prog = compile_source(REDUCTIONS, "r.pk", kernel=kernel, mode=mode, arch=Arch(rows=rows))
    rng = np.random.default_rng(8)
    inputs = {}
    for t in prog.inputs:  # finite values, so that the order of a float sum matters
        dt = parse_dtype(t.dtype)
        values = rng.normal(0, 4, t.shape) if dt.kind.value == "f" else rng.integers(-99, 99,
                                                                                      t.shape)
        inputs[t.name] = values.astype(dt.host)
    outputs, stats = run_program(prog, inputs)
    want, checkable = evaluate(reference(prog), inputs, mode)
    (t,) = prog.outputs
    got = parse_dtype(t.dtype).to_bits(outputs[t.name]).astype(np.uint64)
    assert bool(checkable[t.name]) and int(got) == int(want[t.name])
    # split in chunks down the rows: the chunks' partial results meet by SHIFTs inside a
    # crossbar, over the switches between crossbars
    assert int(dict(prog.meta)["chunks"]) > 1
    assert stats.ops.get("SHIFT", 0) > 0 or stats.ops.get("TRANSFER", 0) > 0
    assert (stats.ops.get("TRANSFER", 0) > 0) == (prog.crossbars > 1)


def test_a_float_sum_is_not_numpys_sequential_sum_but_is_within_tolerance():
    prog = compile_source(REDUCTIONS, "r.pk", kernel="dotp")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=1000).astype(np.float32), rng.normal(size=1000).astype(np.float32)
    out, _ = run_program(prog, {"x": x, "y": y})
    assert abs(float(out["d"]) - float(np.dot(x.astype(np.float64), y))) < 1e-3


def test_a_reduction_result_meets_the_tensor_it_came_from():
    text = "kernel c(x: f32[8]) -> (y: f32[8]) { y = x - sum(x); }"
    prog = compile_source(text, "c.pk")
    x = np.arange(8, dtype=np.float32)
    out, _ = run_program(prog, {"x": x})
    assert np.array_equal(out["y"], x - np.float32(28))


AXES = """
kernel rows(x: f32[6, 50]) -> (r: f32[6]) { r = sum(x, axis=1); }
kernel cols(k: i16[6, 50]) -> (c: i16[50]) { c = max(k, axis=0); }
kernel fcols(x: bf16[7, 9]) -> (c: bf16[9]) { c = max(x, axis=0); }
kernel whole(x: f32[4, 40]) -> (t: f32) { t = sum(x); }
"""


@pytest.mark.parametrize("kernel", ["rows", "cols", "fcols", "whole"])
@pytest.mark.parametrize("mode", ["ieee", "ftz"])
def test_reductions_along_an_axis_run_in_every_segment_at_once(kernel, mode):
    prog = compile_source(AXES, "a.pk", kernel=kernel, mode=mode)
    rng = np.random.default_rng(3)
    inputs = {t.name: (rng.normal(0, 4, t.shape) if "f" in t.dtype else
                       rng.integers(-999, 999, t.shape)).astype(parse_dtype(t.dtype).host)
              for t in prog.inputs}
    outputs, _ = run_program(prog, inputs)
    want, checkable = evaluate(reference(prog), inputs, mode)
    (t,) = prog.outputs
    got = parse_dtype(t.dtype).to_bits(outputs[t.name]).astype(np.uint64)
    assert checkable[t.name].all() and np.array_equal(got, want[t.name])
    assert got.shape == t.shape
    if kernel == "cols":  # order-free: numpy's own answer
        assert np.array_equal(outputs["c"], inputs["k"].max(axis=0))


def test_the_reported_column_high_water_mark_is_what_the_runtime_sees():
    prog = compile_source((SAMPLES / "axpy.pk").read_text(), "axpy.pk")
    columns = dict(prog.meta)["columns"]
    _, stats = run_program(prog)
    values, scratch = (int(w) for w in re.findall(r"(\d+) (?:of 1024 for values|for routine)",
                                                   columns))
    assert stats.columns_used == values + scratch
    assert "axpy.pk:" in columns  # where the peak is


def test_tensors_of_different_sizes_broadcast_as_numpy_does(tmp_path, capsys):
    text = """kernel bias_act(x: f32[16, 64], b: f32[64], s: f32) -> (y: f32[16, 64],
                                                                   big: u1[16, 64]) {
        let z = x * s + b;
        y = relu(z);
        big = z > b;
    }"""
    prog = compile_source(text, "b.pk")
    (b,) = [t for t in prog.inputs if t.name == "b"]
    assert "broadcast" in [step.kind for step in b.view]  # the host writes 16 copies
    rng = np.random.default_rng(0)
    x = {"x": rng.normal(size=(16, 64)).astype(np.float32),
         "b": rng.normal(size=64).astype(np.float32), "s": np.float32(0.5)}
    out, _ = run_program(prog, x)
    z = x["x"] * x["s"] + x["b"]
    assert np.array_equal(out["y"], np.maximum(z, 0)) and np.array_equal(out["big"], z > x["b"])
    source = tmp_path / "b.pk"
    source.write_text(text)
    assert main(["compile", str(source), "-o", str(tmp_path / "b.uop")]) == 0
    assert main(["run", str(tmp_path / "b.uop"), "--verify"]) == 0
