"""The IR passes on their own: constant folding, reductions along the last axis, CSE,
DCE; the lowering and layout."""

from __future__ import annotations

import numpy as np
from pimc.runtime import run_program
from pimc.runtime.hostio import complete_inputs

from pimc.compile import compile_source
from pimc.frontend.dsl import parse_kernels
from pimc.isa.arch import Arch
from pimc.lower.layout import Geometry, geometry, layout
from pimc.lower.splits import split_matmuls
from pimc.lower.tensors import lower_tensors
from pimc.passes.cse import cse
from pimc.passes.dce import dce
from pimc.passes.fold import fold_constants
from pimc.passes.last_axis import last_axis
from pimc.passes.pipeline import format_kernel
from pimc.passes.typecheck import typecheck
from pimc.reference.evaluate import evaluate


def typed(text: str):
    return typecheck(parse_kernels(text, "p.pk")[0], text)


def ops(k) -> list[str]:
    return sorted(k.node(n).op for n in k.graph)


def test_fold_replaces_constant_subtrees_with_their_bits():
    k = typed("kernel f(x: f32[8]) -> (y: f32[8]) { y = x * (f32(1.5) + 2.25); }")
    folded = dce(fold_constants(k))
    assert ops(folded) == ["const", "input", "mul"]
    const = next(folded.node(n) for n in folded.graph if folded.node(n).attr("raw"))
    assert const.attr("raw") == int(np.float32(3.75).view(np.uint32))


def test_fold_follows_the_reference_bit_for_bit():
    text = "kernel f(x: i8[4]) -> (y: i8[4]) { y = x + i8(100) * 3; }"
    k = typed(text)
    x = {"x": np.array([1, -2, 3, 127], np.int8)}
    before, _ = evaluate(k, x)
    after, _ = evaluate(fold_constants(k), x)
    assert np.array_equal(before["y"], after["y"])  # 100 * 3 wraps the same way


def test_cse_merges_equal_expressions_commutative_ones_in_any_order():
    k = typed("kernel c(a: i32[4], b: i32[4]) -> (y: i32[4], z: i32[4]) "
              "{ y = a * b + b * a; z = (a - b) + (a - b); }")
    merged = cse(k)
    assert ops(merged).count("mul") == 1 and ops(merged).count("sub") == 1
    assert ops(cse(merged)) == ops(merged)


def test_dce_drops_what_no_result_uses_but_keeps_inputs():
    k = typed("kernel d(a: i32[4], unused: i32[4]) -> (y: i32[4]) "
              "{ let waste = a * a; y = a + a; }")
    cleaned = dce(k)
    assert ops(cleaned) == ["add", "input", "input"]


def test_the_pipeline_uses_them_and_stays_bit_exact():
    text = """kernel p(a: i16[64], b: i16[64]) -> (y: i16[64]) {
        let dead = a * b;
        y = (a + b) * (b + a) + i16(2) * 3;
    }"""
    prog = compile_source(text, "p.pk")
    inputs = complete_inputs(prog.inputs, {}, 1)
    out, _ = run_program(prog, inputs)
    want, _ = evaluate(typed(text), inputs)
    assert np.array_equal(out["y"].view(np.uint16).astype(np.uint64), want["y"])


def test_last_axis_moves_a_reduced_axis_last_and_flattens_a_whole_reduction():
    k = last_axis(typed("kernel a(m: i16[4, 10]) -> (c: i16[10], t: i16) "
                        "{ c = max(m, axis=0); t = sum(m); }"))
    assert format_kernel(k) == """\
kernel a(m: i16[4, 10]) -> (c: i16[10], t: i16) {
  %0 = input {name='m'} : i16[4, 10]  # p.pk:1:10
  %3 = transpose %0 {perm=(1, 0)} : i16[10, 4]  # p.pk:1:55
  %1 = reduce_max %3 {axis=1} : i16[10]  # p.pk:1:55
  %4 = reshape %0 : i16[40]  # p.pk:1:75
  %2 = sum %4 : i16  # p.pk:1:75
  c = %1
  t = %2
}"""
    x = np.arange(40, dtype=np.int16).reshape(4, 10) * 7 % 13
    after, _ = evaluate(k, {"m": x})  # the same values reduced in the same order
    assert np.array_equal(after["c"], x.max(axis=0)) and int(after["t"]) == int(x.sum())


def test_lower_splits_a_whole_reduction_in_chunks_that_meet_by_shifts():
    k = split_matmuls(typed("kernel s(x: i8[300]) -> (t: i8) { t = sum(x); }"), 4)
    low, (placed,) = lower_tensors(k, "ieee", 4, Arch())
    assert low.elements == 4 and placed.lanes == 75  # 4 chunks of 75 lanes, one per row
    assert [s.by for s in low.net.steps if s.kind == "rows"] == [2, 1]  # the chunks' tree


def test_layout_places_lanes_and_the_scalars_broadcast():
    k = typed("kernel e(a: f32[2500], s: f32) -> (y: f32[2500]) { y = a * s; }")
    low, placements = lower_tensors(k, "ieee", 1, Arch())
    place = layout(low, Arch(), "e", placements)
    assert place.crossbars == 3 and place.padding == (452, 1024)
    a, s = place.inputs
    assert (a.col, s.col, s.broadcast) == (0, 32, True)
    (y,) = place.outputs
    assert y.col == 64 and len(y.xbs) == 3 and place.first_scratch == 96
    assert geometry(2048, 1024) == Geometry(2, 1024, 1024) and not geometry(8, 1024).padded


GOLDEN_AFTER_DCE = """\
# IR after dce
kernel k(x: f32[4]) -> (y: f32[4]) {
  %0 = input {name='x'} : f32[4]  # k.pk:1:10
  %5 = const {raw=1077936128} : f32  # k.pk:2:16
  %6 = mul %0, %5 : f32[4]  # k.pk:2:11
  %13 = add %6, %6 : f32[4]  # k.pk:3:7
  y = %13
}"""


def test_the_pipeline_prints_golden_ir_and_stops_where_asked():
    from pimc.frontend.dsl import parse_kernels
    from pimc.passes.pipeline import pass_names, run_passes

    text = ("kernel k(x: f32[4]) -> (y: f32[4]) {\n  let a = x * (f32(2) + f32(1));\n"
            "  y = a + x * (f32(2) + f32(1));\n}\n")
    printed: list[str] = []
    (kernel,) = parse_kernels(text, "k.pk")
    assert run_passes(kernel, text, "ieee", stop_after="dce", out=printed.append) is None
    assert printed == [GOLDEN_AFTER_DCE]
    assert pass_names() == ["typecheck", "fold", "last-axis", "cse", "dce", "lower"]
