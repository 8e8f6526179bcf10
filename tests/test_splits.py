"""Choosing the stages' splits within a memory: `within` against brute force, a move's
counted cycles against the ops it emits, a network compiled into less memory."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from pimc.runtime import run_program

from pimc.compile import compile_model
from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.cost import item_counts
from pimc.isa.uop import Span
from pimc.lower.moves import Move, emit_move
from pimc.lower.splits import within
from pimc.reference.onnx_verify import verify_model
from samples.make_onnx_samples import small_cnn

options = st.lists(st.lists(st.tuples(st.integers(1, 50), st.integers(1, 20)),
                            min_size=1, max_size=4, unique_by=lambda o: o[1]),
                   min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(options, st.integers(1, 60))
def test_within_makes_the_slowest_stage_as_fast_as_brute_force_does(opts, limit):
    """Every split a stage, within the limit: the least cost of the costliest stage of
    all combinations, or None when even the fewest crossbars do not fit."""
    staged = [[(c, x, k) for k, (c, x) in enumerate(o)] for o in opts]
    fitting = [combo for combo in itertools.product(*staged)
               if sum(p[1] for p in combo) <= limit]
    picks = within(staged, limit)
    if not fitting:
        assert picks is None
        return
    assert picks is not None
    assert all(p in o for p, o in zip(picks, staged, strict=True))
    assert sum(p[1] for p in picks) <= limit
    assert max(p[0] for p in picks) == min(max(p[0] for p in combo) for combo in fitting)


@settings(max_examples=200, deadline=None)
@given(st.integers(-12, 12), st.integers(1, 12), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 1))
def test_a_moves_counted_cycles_are_those_of_the_ops_it_emits(dx, n, step, lanes, src_two):
    """Move.cycles ranks plans: a run whose sources are among its destinations is split
    into several TRANSFERs (each pays its width and distance), so it is counted so."""
    xbs = Span(16, 16 + (n - 1) * step + 1, step)
    m = Move(tuple(range(lanes)), dx, 0, xbs, Span(0, 4), src_step=src_two * (step + 1))
    if not dx:  # a SHIFT (strided() leaves no TRANSFER of distance 0)
        return
    arch = Arch(rows=64, cols=64, max_crossbars=64)
    b = ProgramBuilder(64, arch=arch)
    emit_move(b, m, list(range(8 * lanes)), list(range(8 * lanes, 16 * lanes)), 48, arch, "x")
    assert m.cycles(8, arch.max_shift) == sum(item_counts(i, {}, arch, {})[1] for i in b.ops)


def test_a_network_compiled_into_less_memory_fits_and_runs_bit_exact(tmp_path, capsys):
    """Given fewer crossbars than its fastest splits take (more than its fewest), each
    stage takes a slower split that fits, and the program still runs bit-exact."""
    model = small_cnn()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    fast, _ = compile_model(model, str(path))
    assert fast is not None
    fewest = int(dict(fast.meta)["fewest-crossbars"])
    limit = (fewest + fast.crossbars) // 2
    prog, imported = compile_model(model, str(path), arch=Arch(max_crossbars=limit))
    assert prog is not None and fewest <= prog.crossbars <= limit < fast.crossbars
    rng = np.random.default_rng(3)
    inputs = {**imported.constants, "x": rng.normal(0, 1, (1, 3, 12, 12)).astype(np.float32)}
    outputs, _ = run_program(prog, inputs)
    assert verify_model(prog, inputs, outputs, "m") == 0
    assert "bit-exact" in capsys.readouterr().out


def test_chunks_of_whole_channels_or_kernel_rows_are_tried_and_run_bit_exact(tmp_path,
                                                                               capsys):
    """A 5 x 5 convolution over 6 channels (150 lanes), the slowest stage within a small
    memory: its splits are counted with their gathers, chunks of whole kernel rows
    among them (30 chunks of 5 lanes, which no power of two gives), that one is taken,
    and the program runs bit-exact."""
    from onnx import TensorProto, helper, numpy_helper

    from pimc.frontend.onnx_import import import_model
    from pimc.isa.dtypes import parse_dtype
    from pimc.lower.splits import channel_chunks
    from pimc.lower.stages import split_stages

    rng = np.random.default_rng(3)
    w = {"w1": rng.normal(0, 0.4, (6, 2, 3, 3)), "w2": rng.normal(0, 0.3, (4, 6, 5, 5))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[2] * 4)]
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    prog, imported = compile_model(model, str(tmp_path / "m.onnx"), dtype="bf16",
                                   arch=Arch(rows=64, max_crossbars=480))
    chunks = sorted(int(c.split(":")[1]) for c in dict(prog.meta)["node-chunks"].split())
    assert chunks == [4, 30]  # the second convolution: 5 lanes a chunk, a kernel row
    k = next(s.kernel for s in split_stages(import_model(model, "m").kernel, 64)
             if any(s.kernel.node(n).attr("inner") == 150 for n in s.kernel.graph))
    assert channel_chunks(k, 150) == [1, 2, 3, 6, 30]  # 150, 75, 50, 25 and 5 lanes
    x = np.random.default_rng(6).normal(0, 1, (1, 2, 12, 12)).astype(np.float32)
    x = parse_dtype("bf16").from_bits(parse_dtype("bf16").to_bits(x))
    inputs = {**imported.constants, "x": x}
    outputs, _ = run_program(prog, inputs)
    verify_model(prog, inputs, outputs, "m")
    assert "576 of 576 elements bit-exact" in capsys.readouterr().out
