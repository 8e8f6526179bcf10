"""The ONNX front end and the tensor lowering, each on its own, and `pimc compile` /
`pimc run --verify` on models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from pimc.runtime import run_program

from pimc.cli import main
from pimc.compile import compile_model
from pimc.frontend.onnx_import import import_model
from pimc.isa.errors import PimError
from pimc.isa.flow import flat
from pimc.isa.uop import ViewOp
from pimc.lower.tensors import lower_tensors
from pimc.lower.views import simplify
from pimc.reference.evaluate import evaluate

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, t, s)
                                           for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                              [numpy_helper.from_array(v, n) for n, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_shape_computations_fold_away_and_weights_become_host_inputs():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("Add", ["flat", "w"], ["y"])]
    m = model(nodes, [("x", F, [2, 3, 4])], [("y", F, [2, 12])],
              [("zero", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64)),
               ("w", np.ones((2, 12), np.float32))])
    imported = import_model(m, "m.onnx")
    ops = sorted(imported.kernel.node(n).op for n in imported.kernel.graph)
    assert ops == ["add", "input", "input", "reshape"]  # Shape, Gather, Concat folded
    assert set(imported.constants) == {"w"} and imported.constants["w"].shape == (2, 12)


def test_every_unsupported_node_is_listed_at_once(tmp_path, capsys):
    nodes = [helper.make_node("Sin", ["x"], ["a"], name="sine"),
             helper.make_node("Relu", ["a"], ["b"], name="ok"),
             helper.make_node("Hardmax", ["b"], ["y"], name="hard")]
    m = model(nodes, [("x", F, [1, 4, 2, 2])], [("y", F, [1, 4, 2, 2])], opset=13)
    with pytest.raises(PimError) as err:
        import_model(m, "m.onnx")
    text = str(err.value)
    assert "2 node(s)" in text
    assert "node 'sine' (Sin, domain 'ai.onnx', opset 13)" in text
    assert "node 'hard' (Hardmax, domain 'ai.onnx', opset 13)" in text
    path, out = tmp_path / "m.onnx", tmp_path / "m.uop"
    onnx.save(m, str(path))
    assert main(["compile", str(path), "-o", str(out)]) == 2
    assert "Hardmax" in capsys.readouterr().err and not out.exists()


def test_opsets_outside_the_range_and_bad_files_are_clear_errors(tmp_path, capsys):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [4])], [("y", F, [4])],
              opset=6)
    with pytest.raises(PimError, match="opset 6 is outside"):
        import_model(m, "m.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["compile", str(bad), "-o", str(tmp_path / "o.uop")]) == 2
    assert "bad.onnx" in capsys.readouterr().err


def test_views_push_shape_operators_into_the_host_placement():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
             helper.make_node("Relu", ["t"], ["y"])]
    m = model(nodes, [("x", F, [3, 5])], [("y", F, [5, 3])])
    low, placements = lower_tensors(import_model(m, "m.onnx").kernel)
    (p,) = placements
    assert p.view == (ViewOp("transpose", (1, 0)), ViewOp("reshape", (5, 3, 1)))
    assert low.elements == 15  # one row per output element, nothing moved in the crossbar


def test_simplify_merges_and_drops_steps():
    view = (ViewOp("transpose", (1, 0)), ViewOp("transpose", (1, 0)),
            ViewOp("reshape", (6,)), ViewOp("reshape", (2, 3)), ViewOp("broadcast", (2, 3)))
    assert simplify((2, 3), view) == ()


@pytest.mark.parametrize(("m_", "k", "n", "least"), [(3, 5, 4, 1), (2, 40, 3, 8),
                                                      (4, 13, 300, 2)])
def test_matrix_products_split_long_inner_axes_and_stay_bit_exact(m_, k, n, least):
    nodes = [helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.5)]
    m = model(nodes, [("a", F, [m_, k]), ("b", F, [n, k]), ("c", F, [n])], [("y", F, [m_, n])])
    prog, imported = compile_model(m, "g.onnx")
    chunks = int(dict(prog.meta)["chunks"])  # the fastest split: at least the fewest that fit
    assert chunks >= least
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(m_, k)).astype(np.float32),
         "b": rng.normal(size=(n, k)).astype(np.float32),
         "c": rng.normal(size=n).astype(np.float32)}
    out, stats = run_program(prog, x)
    want, _ = evaluate(imported.kernel, x)
    assert np.array_equal(out["y"].view(np.uint32), want["y"].astype(np.uint32))
    ref = ReferenceEvaluator(m).run(None, x)[0]
    assert np.allclose(out["y"], ref, rtol=1e-5, atol=1e-5)
    if chunks > 1 and prog.crossbars > 1:  # partial sums meet over the switches
        assert stats.ops["TRANSFER"] > 0


def test_compile_run_verify_a_model_with_weights(tmp_path, capsys):
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc"),
             helper.make_node("LeakyRelu", ["h"], ["y"], name="act", alpha=0.2)]
    m = model(nodes, [("x", F, [2, 6])], [("y", F, [2, 3])],
              [("w", rng.normal(size=(6, 3)).astype(np.float32)),
               ("b", rng.normal(size=3).astype(np.float32))])
    path, prog = tmp_path / "fc.onnx", tmp_path / "fc.uop"
    onnx.save(m, str(path))
    assert main(["compile", str(path), "-o", str(prog)]) == 0
    assert (tmp_path / "fc.uop.weights.npz").exists()
    assert main(["run", str(prog), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "6 of 6 elements bit-exact" in out and "6 of 6 within rtol" in out
    assert main(["show", str(prog), "--summary"]) == 0
    assert "fc Gemm" in capsys.readouterr().out


def test_the_shipped_gemm_relu_gemm_sample_compiles_runs_and_verifies(tmp_path, capsys):
    from pathlib import Path

    from samples.make_onnx_samples import gemm_relu_gemm

    sample = Path(__file__).resolve().parent.parent / "samples" / "gemm_relu_gemm.onnx"
    assert sample.read_bytes() == gemm_relu_gemm().SerializeToString()
    prog = tmp_path / "mlp.uop"
    assert main(["compile", str(sample), "-o", str(prog)]) == 0
    assert main(["run", str(prog), "--verify", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "32 of 32 elements bit-exact" in out and "32 of 32 within rtol 0.001" in out


def test_a_product_feeding_a_product_is_moved_into_lanes_by_doubling_shifts():
    m = onnx.load(str(__import__("pathlib").Path(__file__).resolve().parent.parent
                      / "samples" / "gemm_relu_gemm.onnx"))
    prog, imported = compile_model(m, "mlp.onnx")
    moves = [op for op in flat(prog).ops
             if op.opcode.value == "SHIFT" and op.src.endswith("relayout")]
    first = [op for op in moves if not op.pred]  # into each segment's first row: strided
    assert first and all(op.rows is not None and op.rows.step == 16 for op in first)
    doubling = [op for op in moves if op.pred]  # then to rows [t, 2t) of each segment
    assert {op.by for op in doubling} == {1, 2, 4}  # 8 outputs: log2(8) doublings
    # a hidden value per lane of fc2 reaches its 8 rows in 4 steps, not 8 SHIFTs
    assert sum(len(op.dst_cols) for op in moves) < 16 * 8 * 32 // 2
    x = {"x": np.random.default_rng(5).normal(size=(4, 8)).astype(np.float32)}
    out, _ = run_program(prog, {**x, **imported.constants})
    want, _ = evaluate(imported.kernel, {**x, **imported.constants})
    assert np.array_equal(out["y"].view(np.uint32), want["y"].astype(np.uint32))


@pytest.mark.parametrize(("dtype", "atol"), [("bf16", 0.1), ("f16", 0.02), ("q8.8", 0.25)])
def test_a_model_quantised_for_pim_by_a_flag(dtype, atol, tmp_path):
    from pathlib import Path

    from pimc.onnx_backend import PimBackend

    sample = Path(__file__).resolve().parent.parent / "samples" / "gemm_relu_gemm.onnx"
    m = onnx.load(str(sample))
    x = np.random.default_rng(2).normal(size=(4, 8)).astype(np.float32)
    (y,) = PimBackend.prepare(m, dtype=dtype).run([x])
    assert y.dtype == np.float32
    assert np.allclose(y, ReferenceEvaluator(m).run(None, {"x": x})[0], atol=atol, rtol=0.1)
    prog = tmp_path / "q.uop"
    assert main(["compile", str(sample), "-o", str(prog), "--dtype", dtype]) == 0
    assert main(["run", str(prog), "--verify"]) == 0  # bit-exact on its own terms


def test_a_product_feeding_a_product_over_several_crossbars_and_chunks():
    from samples.make_onnx_samples import gemm_relu_gemm

    m = gemm_relu_gemm(batch=40, features=4, hidden=32, classes=8)
    prog, imported = compile_model(m, "wide.onnx")
    assert prog.crossbars > 2 and int(dict(prog.meta)["chunks"]) > 1
    x = {"x": np.random.default_rng(6).normal(size=(40, 4)).astype(np.float32)}
    out, stats = run_program(prog, {**x, **imported.constants})
    want, _ = evaluate(imported.kernel, {**x, **imported.constants})
    assert np.array_equal(out["y"].view(np.uint32), want["y"].astype(np.uint32))
    assert np.allclose(out["y"], ReferenceEvaluator(m).run(None, x)[0], rtol=1e-4, atol=1e-5)
    assert stats.ops["TRANSFER"] > 0  # the hidden layer copied to every chunk's crossbars


def test_batchnorm_with_run_time_statistics_is_computed_in_onnxs_order():
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"],
                              epsilon=1e-3)]
    m = model(nodes, [("x", F, [2, 3, 4]), ("s", F, [3]), ("b", F, [3]), ("m", F, [3]),
                      ("v", F, [3])], [("y", F, [2, 3, 4])], opset=15)
    rng = np.random.default_rng(4)
    x = {"x": rng.normal(size=(2, 3, 4)), "s": rng.normal(size=3), "b": rng.normal(size=3),
         "m": rng.normal(size=3), "v": rng.uniform(0.5, 2, size=3)}
    x = {k: v.astype(np.float32) for k, v in x.items()}
    prog, imported = compile_model(m, "bn.onnx")
    assert {imported.kernel.node(n).op for n in imported.kernel.graph} >= {"div", "sqrt"}
    out, _ = run_program(prog, x)
    want = (x["x"] - x["m"].reshape(3, 1)) / np.sqrt(x["v"].reshape(3, 1) + np.float32(1e-3))
    want = want * x["s"].reshape(3, 1) + x["b"].reshape(3, 1)
    assert np.array_equal(out["y"], want.astype(np.float32))  # numpy's float32, bit for bit


def test_results_of_one_size_and_different_shapes_share_the_space():
    nodes = [helper.make_node("Relu", ["x"], ["y"]),
             helper.make_node("Flatten", ["x"], ["z"], axis=0)]
    m = model(nodes, [("x", F, [3, 4])], [("y", F, [3, 4]), ("z", F, [1, 12])])
    prog, _ = compile_model(m, "two.onnx")
    x = np.arange(-6, 6, dtype=np.float32).reshape(3, 4)
    out, _ = run_program(prog, {"x": x})
    assert np.array_equal(out["y"], np.maximum(x, 0)) and np.array_equal(out["z"], x.reshape(1, 12))


def test_results_of_different_sizes_are_each_the_last_stage_of_their_chain(tmp_path, capsys):
    """A loss and a weight update of one step: the results differ in size, so each ends
    a stage of its own; the host reads each where its stage left it."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 6)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("ReduceSum", ["h"], ["s"], keepdims=0),
             helper.make_node("Mul", ["w", "s"], ["w_new"])]
    m = model(nodes, [("x", F, [3, 4])], [("s", F, []), ("w_new", F, [4, 6])], [("w", w)])
    path, prog = tmp_path / "two.onnx", tmp_path / "two.uop"
    onnx.save(m, str(path))
    assert main(["compile", str(path), "-o", str(prog)]) == 0
    assert main(["run", str(prog), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "s: 1 of 1 elements bit-exact" in out and "w_new: 24 of 24 elements bit-exact" in out


def test_verify_follows_the_passes_the_compiler_ran(tmp_path, capsys):
    """A Softmax and a LogSoftmax of one map share their reductions after CSE; the split
    the program records for the shared node is the one the reference must use. A
    declared input nothing reads is no trouble either."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["z"]),
             helper.make_node("Softmax", ["z"], ["p"], axis=1),
             helper.make_node("LogSoftmax", ["z"], ["lp"], axis=1),
             helper.make_node("Mul", ["lp", "y"], ["out"])]
    m = model(nodes, [("x", F, [8, 16]), ("y", F, [8, 4]), ("unused", F, [2])],
              [("out", F, [8, 4])], [("w", rng.normal(size=(16, 4)).astype(np.float32))])
    path, prog = tmp_path / "ls.onnx", tmp_path / "ls.uop"
    onnx.save(m, str(path))
    assert main(["compile", str(path), "-o", str(prog)]) == 0
    for seed in ("0", "1", "2"):
        assert main(["run", str(prog), "--verify", "--seed", seed]) == 0
        assert "32 of 32 elements bit-exact" in capsys.readouterr().out
