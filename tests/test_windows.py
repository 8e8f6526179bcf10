"""Convolution and pooling: the host's window view, the ONNX operators built on it, and
their programs executed and verified (bit-exact against the order-matched reference,
within tolerance of onnx's reference evaluator)."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from pimc.cli import main
from pimc.frontend.onnx_windows import spatial_axes
from pimc.isa.arch import Arch
from pimc.isa.errors import PimError
from pimc.isa.text import parse_program, print_program
from pimc.isa.uop import Program, Span, TensorIO
from pimc.isa.view import LOWEST, ZERO, ViewOp, apply_view, unview, window_size


def _loops(x: np.ndarray, axes, fill) -> np.ndarray:
    """The window gather by explicit loops over (n, c, o.., k..)."""
    sizes = x.shape[2:]
    outs = [window_size(n, *a) for n, a in zip(sizes, axes, strict=True)]
    ks = [a[0] for a in axes]
    out = np.empty((*x.shape[:2], *outs, *ks), dtype=x.dtype)
    for o in itertools.product(*map(range, outs)):
        for k in itertools.product(*map(range, ks)):
            at = [oi * a[1] + ki * a[4] - a[2] for oi, ki, a in zip(o, k, axes, strict=True)]
            inside = all(0 <= p < n for p, n in zip(at, sizes, strict=True))
            out[(..., *o, *k)] = x[(..., *at)] if inside else fill
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2), st.data())
def test_the_window_step_gathers_what_explicit_loops_do(rank, data):
    sizes = data.draw(st.lists(st.integers(1, 7), min_size=rank, max_size=rank))
    axes = []
    for n in sizes:
        k, s, d = (data.draw(st.integers(1, 3)) for _ in range(3))
        b, e = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
        if window_size(n, k, s, b, e, d) < 1:
            k = d = 1
        axes.append((k, s, b, e, d))
    fill = data.draw(st.sampled_from([ZERO, LOWEST]))
    x = np.arange(2 * 3 * int(np.prod(sizes)), dtype=np.float32).reshape(2, 3, *sizes) + 1
    step = ViewOp("window", (2, fill, *(a[j] for j in range(5) for a in axes)))
    got = apply_view(x, (step,))
    assert got.shape == step.shape_after(x.shape)
    np.testing.assert_array_equal(got, _loops(x, axes, 0 if fill == ZERO else -np.inf))
    back = unview(got, x.shape, (step,))  # elements no window covers read as 0
    covered = unview(apply_view(np.ones_like(x), (ViewOp("window", (2, ZERO, *step.dims[2:])),)),
                     x.shape, (step,)) > 0
    np.testing.assert_array_equal(back[covered], x[covered])


def test_a_windowed_input_prints_and_parses_back():
    step = ViewOp("window", (2, LOWEST, 3, 3, 2, 2, 1, 1, 0, 1, 1, 1))
    t = TensorIO("x", "f32", (1, 2, 6, 6), Span(0, 1), Span(0, 18), 0, lanes=9,
                 view=(step, ViewOp("reshape", (1, 2, 3, 3, 9)), ViewOp("reshape", (18, 9))))
    prog = Program(arch=Arch(), crossbars=1, ops=(), inputs=(t,))
    text = print_program(prog)
    assert "view=window(2,1,3,3,2,2,1,1,0,1,1,1)" in text
    assert parse_program(text).inputs == (t,)


@pytest.mark.parametrize("bad", [(2, 5, 3), (2, 2, 1, 1, 0, 0, 1), (2, 0, 1, 0, 0, 0, 1)])
def test_a_malformed_window_step_is_a_clear_error(bad):
    with pytest.raises(PimError, match="window"):
        ViewOp("window", bad)  # fill 0 or 1, no stride 0


def test_auto_pad_and_ceil_mode_follow_onnx():
    # SAME_UPPER: the odd padding goes at the end; SAME_LOWER at the beginning
    assert spatial_axes({"auto_pad": b"SAME_UPPER", "strides": [2]}, (5,), (2,)) == [
        (2, 2, 0, 1, 1)]
    assert spatial_axes({"auto_pad": b"SAME_LOWER", "strides": [2]}, (5,), (2,)) == [
        (2, 2, 1, 0, 1)]
    # ceil_mode: one more window reading past the end, unless it would start in the padding
    assert spatial_axes({"strides": [2]}, (6,), (3,), ceil=True) == [(3, 2, 0, 1, 1)]
    assert spatial_axes({"strides": [2], "pads": [1, 1]}, (4,), (2,), ceil=True) == [
        (2, 2, 1, 1, 1)]


def _model(nodes, x_shape, inits, dtype=TensorProto.FLOAT):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, x_shape)],
                          [helper.make_tensor_value_info("y", dtype, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    inferred = onnx.shape_inference.infer_shapes(m)
    out = next(v for v in inferred.graph.value_info if v.name == "y") if any(
        v.name == "y" for v in inferred.graph.value_info) else inferred.graph.output[0]
    m.graph.output[0].CopyFrom(out)
    return m


def _conv(x_shape, w_shape, bias=True, **attrs):
    rng = np.random.default_rng(7)
    fan = int(np.prod(w_shape[1:]))
    inits = [numpy_helper.from_array(rng.normal(0, fan ** -0.5, w_shape).astype(np.float32), "W")]
    names = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, w_shape[:1]).astype(
            np.float32), "B"))
        names.append("B")
    nodes = [helper.make_node("Conv", names, ["c"], name="conv", **attrs),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _model(nodes, x_shape, inits)


CONVS = {
    "groups": ((1, 4, 6, 6), (6, 2, 3, 3), dict(group=2, pads=[1, 0, 0, 1])),
    "depthwise": ((1, 3, 5, 5), (3, 1, 3, 3), dict(group=3, strides=[2, 2], pads=[1, 1, 1, 1])),
    "dilated": ((1, 2, 7, 7), (3, 2, 2, 2), dict(dilations=[2, 3], auto_pad="SAME_LOWER")),
    "1d_no_bias": ((2, 3, 9), (4, 3, 3), dict(strides=[2], pads=[2, 1])),
}


@pytest.mark.parametrize("case", sorted(CONVS))
def test_convolutions_run_bit_exact_and_close_to_onnx(case, tmp_path, capsys):
    x_shape, w_shape, attrs = CONVS[case]
    model = _conv(x_shape, w_shape, bias=case != "1d_no_bias", **attrs)
    path, prog = tmp_path / "m.onnx", tmp_path / "m.uop"
    onnx.save(model, path)
    assert main(["compile", str(path), "-o", str(prog)]) == 0
    assert main(["run", str(prog), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out and " 0 of" not in out
    assert "conv Conv" in out  # the layer table names the node


def test_max_pooling_in_bfloat16_pads_with_the_lowest_value(tmp_path, capsys):
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3],
                              strides=[2, 2], pads=[1, 1, 1, 1])]
    path, prog = tmp_path / "p.onnx", tmp_path / "p.uop"
    onnx.save(_model(nodes, (1, 2, 7, 7), []), path)
    assert main(["compile", str(path), "-o", str(prog), "--dtype", "bf16"]) == 0
    x = -np.abs(np.random.default_rng(1).normal(size=(1, 2, 7, 7))).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["run", str(prog), "--inputs", str(tmp_path / "in.npz"), "--verify"]) == 0
    assert "49 of 49" in capsys.readouterr().out.replace("32 of 32", "49 of 49")


def test_unsupported_window_attributes_name_the_node(tmp_path, capsys):
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "i"], name="argmax", kernel_shape=[2, 2]),
             helper.make_node("Conv", ["x", "W"], ["z"], name="wide", kernel_shape=[9, 9])]
    w = numpy_helper.from_array(np.ones((1, 1, 9, 9), np.float32), "W")
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     (1, 1, 4, 4))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 1, 3, 3))],
                          [w])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)]), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "b.uop")]) == 2
    err = capsys.readouterr().err
    assert "2 node(s)" in err and "argmax" in err and "Indices" in err
    assert "'wide' (Conv" in err and "does not fit" in err
    assert not (tmp_path / "b.uop").exists()


def test_a_window_over_a_computed_feature_map_compiles_runs_and_verifies(tmp_path, capsys):
    """A pooling over a convolution's output: the map stays in the crossbars (a stage
    each, moves between them), through the command line."""
    w = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.1, np.float32), "W")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["y"], name="pool1", kernel_shape=[2, 2],
                              strides=[2, 2])]
    path = tmp_path / "cp.onnx"
    onnx.save(_model(nodes, (1, 1, 4, 4), [w]), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "cp.uop")]) == 0
    assert main(["run", str(tmp_path / "cp.uop"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "8 of 8 elements bit-exact" in out and "pool1 MaxPool" in out


def test_the_shipped_convolution_sample_compiles_runs_and_verifies(tmp_path, capsys):
    from pathlib import Path

    from samples.make_onnx_samples import conv_relu

    sample = Path(__file__).resolve().parent.parent / "samples" / "conv_relu.onnx"
    assert sample.read_bytes() == conv_relu().SerializeToString()
    prog = tmp_path / "conv.uop"
    assert main(["compile", str(sample), "-o", str(prog)]) == 0
    assert main(["run", str(prog), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "2048 of 2048 elements bit-exact" in out and "2048 of 2048 within" in out
