"""Training: the step graph, its program run for several steps with the weights kept in
the crossbars, checked against a float64 numpy backward pass, the order-matched
reference and onnx's evaluator; the loss falls; bad input is named."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pimc.cli import main
from pimc.frontend.onnx_train import TrainSpec, training_step
from pimc.isa.errors import PimError
from pimc.reference.onnx_verify import lrn_reference
from samples.make_onnx_samples import checkerboards, training_cnn

F = TensorProto.FLOAT


def perceptron(inputs: int, hidden: int, classes: int, act: str = "Relu", softmax: bool = True,
               seed: int = 0) -> onnx.ModelProto:
    """x -> Gemm -> act -> MatMul + Add (-> Softmax), He-scaled random weights."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, np.sqrt(2 / inputs), (hidden, inputs)).astype(np.float32)
    w2 = rng.normal(0, np.sqrt(2 / hidden), (hidden, classes)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"], transB=1, name="fc1"),
             helper.make_node(act, ["z1"], ["a1"], name="act1"),
             helper.make_node("MatMul", ["a1", "w2"], ["m2"], name="fc2"),
             helper.make_node("Add", ["m2", "b2"], ["z2"], name="bias2")]
    out = "z2"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z2"], ["p"], axis=1, name="prob"))
        out = "p"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", F, [1, inputs])],
        [helper.make_tensor_value_info(out, F, [1, classes])],
        [numpy_helper.from_array(w1, "w1"),
         numpy_helper.from_array(rng.normal(0, 0.1, hidden).astype(np.float32), "b1"),
         numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(rng.normal(0, 0.1, classes).astype(np.float32), "b2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def blobs(n: int, dims: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable Gaussian blobs: class centres N(0, 1.5^2), points 0.5 around them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (classes, dims))
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(0, 0.5, (n, dims))).astype(np.float32), y


def numpy_step(model: onnx.ModelProto, x: np.ndarray, onehot: np.ndarray, lr: float,
               act: str, loss: str) -> tuple[float, dict[str, np.ndarray]]:
    """One SGD step of `perceptron` in float64, written out by hand."""
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    z1 = x @ w["w1"].T + w["b1"]
    a1 = {"Relu": np.maximum(z1, 0), "Sigmoid": 1 / (1 + np.exp(-z1)), "Tanh": np.tanh(z1)}[act]
    z2 = a1 @ w["w2"] + w["b2"]
    b = len(x)
    if loss == "ce":
        e = np.exp(z2 - z2.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        value = -float(np.sum(onehot * np.log(p))) / b
        dz2 = (p - onehot) / b
    else:
        value = float(np.sum((z2 - onehot) ** 2)) / z2.size
        dz2 = 2 * (z2 - onehot) / z2.size
    da1 = dz2 @ w["w2"].T
    dz1 = da1 * {"Relu": z1 > 0, "Sigmoid": a1 * (1 - a1), "Tanh": 1 - a1 ** 2}[act]
    grads = {"w1": dz1.T @ x, "b1": dz1.sum(axis=0), "w2": a1.T @ dz2, "b2": dz2.sum(axis=0)}
    return value, {k: w[k] - lr * g for k, g in grads.items()}


def _compile_and_run(tmp_path, model, data, steps, *flags):
    src, prog = tmp_path / "m.onnx", tmp_path / "m.uop"
    onnx.save(model, str(src))
    np.savez(tmp_path / "data.npz", **data)
    assert main(["compile", str(src), "-o", str(prog), "--train", *flags]) == 0
    code = main(["run", str(prog), "--steps", str(steps), "--data", str(tmp_path / "data.npz"),
                 "--verify", "-o", str(tmp_path / "out.npz")])
    return code, dict(np.load(tmp_path / "out.npz"))


@pytest.mark.parametrize("act, loss, softmax", [("Relu", "ce", True), ("Tanh", "ce", False),
                                                ("Sigmoid", "mse", False)])
def test_one_step_matches_a_float64_numpy_backward_pass(tmp_path, capsys, act, loss, softmax):
    """The new weights and the loss of one step on the crossbars, against the step
    written out in float64 numpy: float32 rounding apart (rtol 1e-4, atol 1e-6)."""
    model = perceptron(6, 8, 3, act, softmax)
    x, y = blobs(8, 6, 3)
    code, out = _compile_and_run(tmp_path, model, {"x": x, "labels": y}, 1, "--batch", "8",
                                 "--lr", "0.5", "--loss", loss)
    assert code == 0, capsys.readouterr().out
    value, want = numpy_step(model, x.astype(np.float64), np.eye(3)[y], 0.5, act, loss)
    assert out["loss"][0] == pytest.approx(value, rel=1e-4)
    for name, w in want.items():
        np.testing.assert_allclose(out[name], w, rtol=1e-4, atol=1e-6)
    assert "bit-exact against the order-matched reference" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_the_loss_falls_with_the_weights_kept_in_the_crossbars(tmp_path, capsys, dtype):
    """Twelve steps over separable blobs: every step bit-exact against the order-matched
    reference (its new weights fed back) and within tolerance of onnx's evaluator; the
    mean loss of the last four steps is under 1/8 of the first step's."""
    x, y = blobs(96, 8, 3, seed=1)
    code, out = _compile_and_run(tmp_path, perceptron(8, 8, 3), {"x": x, "labels": y}, 12,
                                 "--batch", "8", "--lr", "0.2", "--dtype", dtype)
    text = capsys.readouterr().out
    assert code == 0, text
    loss = out["loss"]
    assert loss[-4:].mean() < loss[0] / 8, loss
    assert "w1 after the last step: 64 of 64 elements bit-exact" in text
    assert "per phase" in text and "backward" in text and "update" in text


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_a_small_cnn_learns_with_every_step_bit_exact(tmp_path, capsys, dtype):
    """Ten steps of a convolution, max pool and global average pool over checkerboards:
    bit-exact against the order-matched reference at every step, within tolerance of
    onnx's evaluator (which also catches a weight's derived value, such as the turned
    kernel of a convolution's input gradient, going stale between steps); the mean loss
    of the last four steps is under 1/3 of the first step's."""
    code, out = _compile_and_run(tmp_path, training_cnn(), checkerboards(40), 10,
                                 "--batch", "4", "--lr", "0.5", "--dtype", dtype)
    text = capsys.readouterr().out
    assert code == 0, text
    assert out["loss"][-4:].mean() < out["loss"][0] / 3, out["loss"]
    assert "w1 after the last step: 18 of 18 elements bit-exact" in text


def test_the_trained_model_is_saved_with_the_final_weights(tmp_path):
    x, y = blobs(16, 4, 2)
    model = perceptron(4, 4, 2)
    src, prog = tmp_path / "m.onnx", tmp_path / "m.uop"
    onnx.save(model, str(src))
    np.savez(tmp_path / "d.npz", x=x, labels=np.eye(2, dtype=np.float32)[y])  # one-hot too
    assert main(["compile", str(src), "-o", str(prog), "--train", "--batch", "4"]) == 0
    assert main(["run", str(prog), "--steps", "2", "--data", str(tmp_path / "d.npz"),
                 "-o", str(tmp_path / "o.npz"), "--save-model", str(tmp_path / "t.onnx")]) == 0
    out = np.load(tmp_path / "o.npz")
    saved = {t.name: numpy_helper.to_array(t) for t in onnx.load(tmp_path / "t.onnx").graph.initializer}
    for name in ("w1", "b1", "w2", "b2"):
        assert np.array_equal(saved[name], out[name])
        assert not np.array_equal(saved[name], numpy_helper.to_array(
            next(t for t in model.graph.initializer if t.name == name)))


def test_counting_a_training_step_splits_it_by_phase(tmp_path, capsys):
    src, prog = tmp_path / "m.onnx", tmp_path / "m.uop"
    onnx.save(perceptron(4, 4, 2), str(src))
    assert main(["compile", str(src), "-o", str(prog), "--train", "--batch", "4"]) == 0
    capsys.readouterr()
    assert main(["run", str(prog), "--count-only"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("per phase"):]
    for phase in ("forward", "loss", "backward", "update"):
        assert int(table.split(f"\n{phase}")[1].split()[0].replace(",", "")) > 0
    assert "w1 write-back" in out


def test_the_step_graph_names_its_phases_and_its_state():
    step = training_step(perceptron(4, 4, 2), TrainSpec(batch=4))
    assert step.state == {f"{w}__new": w for w in ("w1", "b1", "w2", "b2")}
    names = {n.name.split("/")[0] for n in step.model.graph.node}
    assert {"backward", "update", "loss", "fc1"} <= names
    assert step.model.graph.output[0].name == "loss"
    onnx.checker.check_model(step.model)


def test_nodes_the_backward_pass_cannot_go_through_are_listed_at_once(tmp_path, capsys):
    model = perceptron(4, 4, 2)
    nodes = list(model.graph.node)
    nodes[1] = helper.make_node("Exp", ["z1"], ["a1"], name="act1")
    nodes.insert(3, helper.make_node("Abs", ["m2"], ["m3"], name="odd"))
    nodes[4] = helper.make_node("Add", ["m3", "b2"], ["z2"], name="bias2")
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    with pytest.raises(PimError, match=r"'act1' \(Exp: no gradient rule\).*'odd' \(Abs"):
        training_step(model, TrainSpec(batch=4))
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.uop"),
                 "--train"]) == 2
    assert "act1" in capsys.readouterr().err and not (tmp_path / "m.uop").exists()


@pytest.mark.parametrize("data, message", [
    ({"x": np.zeros((8, 4), np.float32)}, "no array 'labels'"),
    ({"x": np.zeros((8, 5), np.float32), "labels": np.zeros(8, np.int64)}, "'x': shape [8, 5]"),
    ({"x": np.zeros((8, 4), np.float32), "labels": np.full(8, 7)}, "'labels': class indices"),
    ({"x": np.zeros((2, 4), np.float32), "labels": np.zeros(2, np.int64)}, "fewer than a batch"),
])
def test_bad_data_is_named_before_any_step(tmp_path, capsys, data, message):
    src, prog = tmp_path / "m.onnx", tmp_path / "m.uop"
    onnx.save(perceptron(4, 4, 2), str(src))
    assert main(["compile", str(src), "-o", str(prog), "--train", "--batch", "4"]) == 0
    np.savez(tmp_path / "d.npz", **data)
    capsys.readouterr()
    assert main(["run", str(prog), "--steps", "3", "--data", str(tmp_path / "d.npz"),
                 "-o", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr()
    assert message in err.err and "d.npz" in err.err and "training steps" not in err.out
    assert not (tmp_path / "o.npz").exists()


def test_the_labels_input_must_be_a_new_name():
    with pytest.raises(PimError, match="already has a tensor 'x'"):
        training_step(perceptron(4, 4, 2), TrainSpec(batch=4, label="x"))


def test_training_flags_need_their_companions(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(perceptron(4, 4, 2), str(src))
    assert main(["compile", str(src), "-o", str(tmp_path / "m.uop"), "--lr", "0.1"]) == 2
    assert main(["compile", str(src), "-o", str(tmp_path / "m.uop")]) == 0
    assert main(["run", str(tmp_path / "m.uop"), "--steps", "2"]) == 2
    assert "pimc compile --train" in capsys.readouterr().err


def _model(nodes: list[onnx.NodeProto], name: str, x: list[int], z: list[int],
           inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A float32 model from input x to output z, opset 17."""
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", F, x)],
        [helper.make_tensor_value_info("z", F, z)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def strided_cnn(pool: str | None, smooth: bool = True, seed: int = 0) -> onnx.ModelProto:
    """Convolutions whose gradients take every path: asymmetric pads, a 3x3 stride 2
    (dY spread), a 1x1 stride 2 that skips the map's last row (cropped), a residual Add
    (Sum without a pool),
    a batch norm (its statistics stored, its scale and shift trained), a tiling pool if
    `pool` is given; Tanh and Sigmoid if `smooth`, else Relus."""
    rng = np.random.default_rng(seed)
    size = 3 if pool else 6  # the map the strided convolutions read
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c0"], pads=[1, 0, 1, 3], name="conv1"),
             helper.make_node("BatchNormalization", ["c0", "gamma", "beta", "mean", "var"],
                              ["c1"], name="bn1"),
             helper.make_node("Tanh" if smooth else "Relu", ["c1"], ["t1"], name="act1")]
    if pool:
        nodes.append(helper.make_node(pool, ["t1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                                      name="pool1"))
    read = "p1" if pool else "t1"
    nodes += [helper.make_node("Conv", [read, "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1],
                               name="conv2"),
              helper.make_node("Conv", [read, "w3"], ["c3"], strides=[2, 2], name="conv3"),
              helper.make_node("Add" if pool else "Sum", ["c2", "c3"], ["s"], name="residual"),
              helper.make_node("Sigmoid" if smooth else "Relu", ["s"], ["a"], name="act2"),
              helper.make_node("Flatten", ["a"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "w4"], ["z"], transB=1, name="fc")]
    out = (size - 1) // 2 + 1
    inits = {"w1": rng.normal(0, 0.5, (2, 1, 3, 3)), "b1": rng.normal(0, 0.1, 2),
             "gamma": rng.normal(1, 0.1, 2), "beta": rng.normal(0, 0.1, 2),
             "mean": rng.normal(0, 0.1, 2), "var": rng.uniform(0.5, 1.5, 2),
             "w2": rng.normal(0, 0.5, (3, 2, 3, 3)), "w3": rng.normal(0, 0.5, (3, 2, 1, 1)),
             "w4": rng.normal(0, 0.5, (2, 3 * out * out))}
    return _model(nodes, "strided", [1, 1, 6, 5], [1, 2], inits)


def _float64_loss(model: onnx.ModelProto, weights: dict[str, np.ndarray], x: np.ndarray,
                  onehot: np.ndarray) -> float:
    """The cross-entropy of the model run by onnx's evaluator in float64."""
    from onnx.reference import ReferenceEvaluator

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for v in (*m.graph.input, *m.graph.output):
        v.type.tensor_type.elem_type = TensorProto.DOUBLE
    del m.graph.initializer[:]
    m.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in weights.items())
    z = ReferenceEvaluator(m, new_ops=[lrn_reference()]).run(None, {"x": x.astype(np.float64)})[0]
    z = z.reshape(len(x), -1)
    z = z - z.max(axis=1, keepdims=True)
    return float(-np.sum(onehot * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))) / len(x))


def _matches_finite_differences(model: onnx.ModelProto, batch: int, seed: int) -> list[str]:
    """Checks the step graph's gradient of every trained weight (onnx's evaluator,
    float32, lr 1) against central differences of the float64 loss, within 1e-3
    absolute; returns the trained weights."""
    from onnx.reference import ReferenceEvaluator

    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(seed).normal(size=(batch, *shape[1:])).astype(np.float32)
    onehot = np.eye(2)[np.arange(batch) % 2]
    step = training_step(model, TrainSpec(batch=batch, lr=1.0))
    names = [o.name for o in step.model.graph.output]
    out = dict(zip(names, ReferenceEvaluator(step.model, new_ops=[lrn_reference()]).run(
        None, {"x": x, "labels": onehot.astype(np.float32)}), strict=True))
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    for name in step.weights:
        fd = np.zeros(w[name].size)
        for i in range(fd.size):
            hi, lo = dict(w), dict(w)
            hi[name], lo[name] = w[name].copy(), w[name].copy()
            hi[name].reshape(-1)[i] += 1e-6
            lo[name].reshape(-1)[i] -= 1e-6
            fd[i] = (_float64_loss(model, hi, x, onehot) - _float64_loss(model, lo, x, onehot)) / 2e-6
        np.testing.assert_allclose((w[name] - out[f"{name}__new"]).reshape(-1), fd, atol=1e-3,
                                   err_msg=name)
    return step.weights


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool", None])
def test_convolution_and_pool_gradients_match_finite_differences(pool):
    """Pads, strides (spread and cropped), a residual, a batch norm (its statistics not
    trained), tiling pools."""
    trained = _matches_finite_differences(strided_cnn(pool), 3, 2)
    assert set(trained) == {"w1", "b1", "gamma", "beta", "w2", "w3", "w4"}


def overlapping(pool: str, **attrs: object) -> onnx.ModelProto:
    """Conv -> Relu -> a pool whose windows overlap and reach into padding -> Gemm."""
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node(pool, ["r1"], ["p1"], name="pool1", **attrs),
             helper.make_node("Flatten", ["p1"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2"], ["z"], transB=1, name="fc")]
    inits = {"w1": rng.normal(0, 0.5, (2, 1, 3, 3)), "w2": rng.normal(0, 0.5, (2, 2 * 3 * 3))}
    return _model(nodes, "pooled", [1, 1, 6, 5], [1, 2], inits)


POOLS = [("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
         ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1]}),
         ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
         ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                          "count_include_pad": 1})]


@pytest.mark.parametrize("pool, attrs", POOLS)
def test_overlapping_pool_gradients_match_finite_differences(pool, attrs):
    """Windows that overlap and reach into padding: the taps' shares spread back and
    added tap by tap."""
    _matches_finite_differences(overlapping(pool, **attrs), 3, 6)


def test_an_overlapping_pools_gradient_reads_its_taps_through_strided_windows():
    """The taps of a 3 x 3, stride 2 max pool: nine 1 x 1 max pools of stride 2 read the
    input (strided windows, as the pool does: the map keeps its phase order), and no
    convolution multiplies by one-hot kernels."""
    step = training_step(overlapping(POOLS[0][0], **POOLS[0][1]), TrainSpec(batch=2))
    back = [n for n in step.model.graph.node if n.name == "backward/pool1"]
    assert back and not any(n.op_type == "Conv" for n in back)
    taps = [n for n in back if "r1" in n.input]
    assert len(taps) == 9 and {n.op_type for n in taps} == {"MaxPool"}
    assert all(list(a.ints) == [2, 2] for n in taps for a in n.attribute if a.name == "strides")


def test_a_strided_pools_map_crosses_to_the_backward_order_by_channel_copies(tmp_path, capsys,
                                                                          monkeypatch):
    """A 24 x 24 map (crossbars of 64 rows) stored in the 3 x 3 / 2 pool's phase order
    and read in natural order by the backward pass: each channel's planes are copied
    into its own crossbars over two home words (more crossbars than its block has), and
    the step runs bit-exact."""
    import pimc.lower.link as link
    from pimc.lower.move_ops import _room, emit_moves, placed_plan

    words = []

    def counted(b, src, dst, staging, arch, folded=None):
        p = placed_plan(src, dst, arch.max_shift, _room(dst, staging, arch))
        words.append(max((m.word for m in p.extract), default=0))
        return emit_moves(b, src, dst, staging, arch, folded)

    monkeypatch.setattr(link, "emit_moves", counted)
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[3, 3],
                              strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["p1"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2"], ["z"], transB=1, name="fc")]
    inits = {"w1": rng.normal(0, 0.5, (2, 1, 3, 3)), "w2": rng.normal(0, 0.1, (2, 2 * 12 * 12))}
    model = _model(nodes, "pooled", [1, 1, 24, 24], [1, 2], inits)
    (tmp_path / "rows.toml").write_text("rows = 64\n")
    x = rng.normal(size=(2, 1, 24, 24)).astype(np.float32)
    code, _ = _compile_and_run(tmp_path, model, {"x": x, "labels": np.array([0, 1])}, 1,
                               "--batch", "2", "--arch", str(tmp_path / "rows.toml"))
    assert code == 0, capsys.readouterr().out
    assert max(words) >= 1


def grouped(depthwise: bool) -> onnx.ModelProto:
    """Grouped convolutions: 2 groups (or depthwise, 4), strided and padded, then a
    grouped 1 x 1."""
    rng = np.random.default_rng(8)
    g1 = 4 if depthwise else 2
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], group=g1, pads=[1, 0, 1, 1],
                              strides=[2, 2], name="conv1"),
             helper.make_node("Tanh", ["c1"], ["t1"], name="act1"),
             helper.make_node("Conv", ["t1", "w2"], ["c2"], group=2, name="conv2"),
             helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w3"], ["z"], transB=1, name="fc")]
    inits = {"w1": rng.normal(0, 0.5, (4 if depthwise else 6, 4 // g1, 3, 3)),
             "b1": rng.normal(0, 0.1, 4 if depthwise else 6),
             "w2": rng.normal(0, 0.5, (4, 2 if depthwise else 3, 1, 1)),
             "w3": rng.normal(0, 0.5, (2, 4 * 3 * 2))}
    return _model(nodes, "grouped", [1, 4, 6, 5], [1, 2], inits)


def normalised() -> onnx.ModelProto:
    """Conv (5 channels) -> LRN (size 3, AlexNet's constants scaled up) -> Gemm."""
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, strides=[2, 2],
                              name="conv1"),
             helper.make_node("LRN", ["c1"], ["l1"], size=3, alpha=0.5, beta=0.75, bias=1.0,
                              name="lrn1"),
             helper.make_node("Flatten", ["l1"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w3"], ["z"], transB=1, name="fc")]
    inits = {"w1": rng.normal(0, 0.5, (5, 4, 3, 3)), "w3": rng.normal(0, 0.5, (2, 5 * 3 * 3))}
    return _model(nodes, "lrn", [1, 4, 6, 5], [1, 2], inits)


def squeezed() -> onnx.ModelProto:
    """SqueezeNet's shape: two branches concatenated along channels, a 1 x 1 classifier
    convolution, a global pool, and a (batch, classes, 1, 1) output."""
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="branch_a"),
             helper.make_node("Conv", ["x", "wb"], ["b"], pads=[1] * 4, name="branch_b"),
             helper.make_node("Concat", ["a", "b"], ["ab"], axis=1, name="concat"),
             helper.make_node("Relu", ["ab"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wc"], ["c"], name="classifier"),
             helper.make_node("GlobalAveragePool", ["c"], ["z"], name="gap")]
    inits = {"wa": rng.normal(0, 0.5, (2, 3, 1, 1)), "wb": rng.normal(0, 0.5, (3, 3, 3, 3)),
             "wc": rng.normal(0, 0.5, (2, 5, 1, 1))}
    return _model(nodes, "squeezed", [1, 3, 6, 5], [1, 2, 1, 1], inits)


@pytest.mark.parametrize("case", ["grouped", "depthwise", "lrn", "concat"])
def test_grouped_convolution_lrn_and_concat_gradients_match_finite_differences(case):
    model = {"lrn": normalised, "concat": squeezed, "depthwise": lambda: grouped(True)}.get(
        case, lambda: grouped(False))()
    _matches_finite_differences(model, 2, 9)


@pytest.mark.parametrize("case", ["overlapping max pool", "grouped convolutions", "lrn",
                                  "concat"])
def test_pools_groups_lrn_and_concat_run_bit_exact_for_two_steps(tmp_path, capsys, case):
    model = {"lrn": normalised, "grouped convolutions": lambda: grouped(False),
             "concat": squeezed}.get(case, lambda: overlapping(POOLS[0][0], **POOLS[0][1]))()
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(7).normal(size=(2, *shape[1:])).astype(np.float32)
    code, _ = _compile_and_run(tmp_path, model, {"x": x, "labels": np.array([0, 1])}, 2,
                               "--batch", "2")
    assert code == 0, capsys.readouterr().out


def test_a_strided_cnn_step_runs_bit_exact(tmp_path, capsys):
    """One step of the strided network on the crossbars: the spread and cropped
    gradients and the residual, bit-exact and within onnx's tolerance."""
    x = np.random.default_rng(3).normal(size=(4, 1, 6, 5)).astype(np.float32)
    code, _ = _compile_and_run(tmp_path, strided_cnn(None, smooth=False),
                               {"x": x, "labels": np.array([0, 1, 1, 0])}, 1, "--batch", "4")
    assert code == 0, capsys.readouterr().out


def test_an_opset_9_model_gets_a_step_graph_of_its_own_opset():
    """The light CNNs are opset 9: the step uses ReduceSum's and Pad's attribute forms,
    MatMul for the gradient products and Less for the max pool's mask; it computes what
    the opset-17 step computes."""
    from onnx.reference import ReferenceEvaluator

    new = training_cnn()
    old = training_cnn()
    old.opset_import[0].version = 9
    onnx.checker.check_model(old, full_check=True)
    feeds = {"x": checkerboards(4)["x"], "labels": np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]}
    outs = []
    for model in (old, new):
        step = training_step(model, TrainSpec(batch=4, lr=0.5))
        onnx.checker.check_model(step.model, full_check=True)
        outs.append(ReferenceEvaluator(step.model, new_ops=[lrn_reference()]).run(None, feeds))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_transposed_weight_placement_is_updated_in_its_own_order(tmp_path, capsys):
    """A 512-wide hidden layer read back by an 8-class one: the backward product reads
    the second weight transposed, so the step computes its update again in that
    placement's order (an extra stage) and writes it back a TRANSFER per lane; three
    steps stay bit-exact, every weight in every placement."""
    from pimc.isa.text import load_program
    from samples.make_onnx_samples import gemm_chain

    x = np.random.default_rng(5).normal(size=(3, 32)).astype(np.float32)
    code, _ = _compile_and_run(tmp_path, gemm_chain([32, 512, 8], batch=1),
                               {"x": x, "labels": np.array([1, 4, 6])}, 3, "--lr", "0.05")
    assert code == 0, capsys.readouterr().out
    meta = dict(load_program(tmp_path / "m.uop").meta)
    assert len(meta["stage-starts"].split()) > int(meta["stages"])  # the mirrored update


def test_a_training_program_is_verified_from_another_folder(tmp_path, monkeypatch, capsys):
    """Compiled with relative paths, the program records its step graph as
    m.uop.train.onnx; run from another folder, --verify finds it beside the program."""
    x, y = blobs(8, 8, 3, seed=2)
    onnx.save(perceptron(8, 8, 3), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "data.npz", x=x, labels=y)
    monkeypatch.chdir(tmp_path)
    assert main(["compile", "m.onnx", "-o", "m.uop", "--train", "--batch", "4"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code = main(["run", "../m.uop", "--steps", "2", "--data", "../data.npz", "--verify"])
    assert code == 0, capsys.readouterr().out


def test_a_training_steps_stages_sit_layer_by_layer():
    """Two layers' stages as they run: forward 1, relu, forward 2, loss, error into 1,
    weight gradient 2, relu backward, kernel and bias gradients 1. Placed, each layer's
    stages sit together: layer 1's update next to its forward stage, not a step away."""
    from types import SimpleNamespace as NS

    from pimc.lower.layers import layer_order

    def stage(ins=(), outs=(), residents=()):
        names = [NS(name=n) for n in (*ins, *residents)]
        return NS(program=NS(inputs=names, outputs=[NS(name=n) for n in outs]),
                  residents=tuple(residents))

    stages = [stage(("x", "w1", "b1"), ("f1",)), stage((), ("r1",), ("f1",)),
              stage(("w2",), ("f2",), ("r1",)), stage((), ("g2",), ("f2",)),
              stage(("w2",), ("g1",), ("g2",)), stage((), ("w2__new",), ("g2", "r1")),
              stage((), ("g1r",), ("g1", "r1")), stage((), ("w1__new",), ("g1r",)),
              stage((), ("b1__new.7.0",), ("g1r",))]  # a copy in another order (mirror)
    params = {"w1__new": "w1", "b1__new": "b1", "w2__new": "w2"}
    assert layer_order(stages, params) == [0, 6, 7, 8, 1, 2, 3, 4, 5]


def _two_steps(tmp_path, capsys, model: onnx.ModelProto, x: np.ndarray) -> str:
    """Two steps of batch 2 over four samples, verified; the report."""
    code, _ = _compile_and_run(tmp_path, model, {"x": x, "labels": np.array([0, 1, 1, 0])}, 2,
                               "--batch", "2")
    text = capsys.readouterr().out
    assert code == 0, text
    return text


def test_bias_and_batch_norm_gradients_run_down_the_rows_of_their_maps(tmp_path, capsys):
    """A convolution's bias gradient and a batch norm's two (sums over the batch and the
    positions of each channel, here 2 x 576 a channel, two crossbars) run down the rows
    where the map lies (lower.rowtree), the update B - lr dB in the planes' first rows
    beside them, not gathered into a row's lanes: a few dozen moves each (over 1,000
    crossbars and 110k cycles each before), and two steps bit-exact."""
    from pimc.isa.parse import load_program
    from pimc.isa.uop import Shift, Transfer

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c0"], pads=[1] * 4, name="conv1"),
             helper.make_node("BatchNormalization", ["c0", "gamma", "beta", "mean", "var"],
                              ["c1"], name="bn1"),
             helper.make_node("Relu", ["c1"], ["r"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w4"], ["z"], transB=1, name="fc")]
    inits = {"w1": rng.normal(0, 0.5, (2, 1, 3, 3)), "b1": rng.normal(0, 0.1, 2),
             "gamma": rng.normal(1, 0.1, 2), "beta": rng.normal(0, 0.1, 2),
             "mean": rng.normal(0, 0.1, 2), "var": rng.uniform(0.5, 1.5, 2),
             "w4": rng.normal(0, 0.5, (2, 2))}
    text = _two_steps(tmp_path, capsys, _model(nodes, "bn", [1, 1, 24, 24], [1, 2], inits),
                      rng.normal(size=(4, 1, 24, 24)).astype(np.float32))
    for name in ("b1", "gamma", "beta"):
        assert f"{name} after the last step: 2 of 2 elements bit-exact" in text
    prog = load_program(tmp_path / "m.uop")
    sums = [o for o in prog.ops if "ReduceSum" in o.src and ("bn1" in o.src or "conv1" in o.src)]
    assert {o.src.split()[0] for o in sums} and len(sums) < 3 * 120
    assert 0 < sum(isinstance(o, (Shift, Transfer)) for o in sums) < 3 * 40
    assert prog.crossbars < 2000  # (each sum's lanes took 1,028 crossbars before)
    assert not any(f"update/{name} Sub" in o.src for o in prog.ops for name in ("b1", "beta"))


def test_weight_gradients_run_down_the_rows_with_few_moves(tmp_path, capsys):
    """A convolution's weight gradient (lower.rowproduct): a row a position of the batch
    (2 x 576, two crossbars a plane), the window of X in its lanes, multiplied by the
    row's dY and summed down the rows by the pairwise tree; dY and X are not moved a
    position a lane (16,561 moves on 1,167 crossbars before; 229 on 59 now), and two
    steps are bit-exact."""
    from pimc.isa.parse import load_program
    from pimc.isa.uop import Call, Shift, Transfer

    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1] * 4, name="conv1"),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2"], ["z"], transB=1, name="fc")]
    inits = {"w1": rng.normal(0, 0.3, (4, 3, 3, 3)), "b1": rng.normal(0, 0.1, 4),
             "w2": rng.normal(0, 0.5, (2, 4))}
    text = _two_steps(tmp_path, capsys, _model(nodes, "wgrad", [1, 3, 24, 24], [1, 2], inits),
                      rng.normal(size=(4, 3, 24, 24)).astype(np.float32))
    assert "w1 after the last step: 108 of 108 elements bit-exact" in text
    prog = load_program(tmp_path / "m.uop")
    grad = [o for o in prog.ops if "backward/conv1 Conv" in o.src]
    assert grad and sum(isinstance(o, (Shift, Transfer)) for o in grad) < 400
    calls = [o for o in prog.ops if isinstance(o, Call) and "backward/conv1 Conv" in o.src]
    assert any(c.routine.startswith("mul_") for c in calls)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_small_weight_gradients_run_down_the_rows_bit_exact(tmp_path, capsys, monkeypatch,
                                                            dtype):
    """Weight gradients of small maps are lowered both ways and the cheaper kept, which
    is usually the product's; forced down the rows, planes shorter than a crossbar (several
    a crossbar) with strides, asymmetric pads and a 1 x 1 kernel train bit-exact."""
    import pimc.compile

    monkeypatch.setattr(pimc.compile, "AS_ANY_PRODUCT", 0)
    x = np.random.default_rng(3).normal(size=(4, 1, 6, 5)).astype(np.float32)
    code, _ = _compile_and_run(tmp_path, strided_cnn(None, smooth=False),
                               {"x": x, "labels": np.array([0, 1, 1, 0])}, 2, "--batch", "4",
                               "--dtype", dtype)
    assert code == 0, capsys.readouterr().out
