"""The kernel language front end: parse tree to IR, and located syntax errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimc.frontend.dsl import parse_kernels
from pimc.isa.errors import PimError

AXPY = """
# y = a x + y
kernel axpy(a: f32, x: f32[1024], y: f32[1024]) -> (out: f32[1024]) {
    let t = a * x;   // scaled
    out = t + y;
}
"""


def test_kernel_becomes_a_graph_of_located_nodes():
    (k,) = parse_kernels(AXPY, "axpy.pk")
    ops = [k.node(n).op for n in k.nodes_in_order()]
    assert ops == ["input", "input", "input", "mul", "add"]
    add = k.outputs["out"]
    mul, y = k.operands(add)
    assert k.node(mul).op == "mul" and k.node(y).attr("name") == "y"
    assert str(k.node(mul).loc) == "axpy.pk:4:13"
    assert [p.name for p in k.params] == ["a", "x", "y"] and k.params[1].shape == (1024,)


def test_operand_order_and_repeated_operands_are_kept():
    (k,) = parse_kernels("kernel s(x: f32) -> (y: f32) { y = x - x * x; }")
    sub = k.outputs["y"]
    x, mul = k.operands(sub)
    assert k.node(x).op == "input" and k.operands(mul) == [x, x]


def test_calls_casts_comparisons_and_keywords():
    (k,) = parse_kernels("""kernel c(x: bf16[4], w: bf16[4]) -> (y: u8[4], m: bf16) {
        y = u8(x >= w);
        m = max(relu(select(x < w, x, -x)), axis=0);
    }""")
    ops = {k.node(n).op for n in k.graph}
    assert {"ge", "lt", "neg", "cast", "call:select", "call:relu", "call:max"} <= ops
    top = k.node(k.outputs["m"])
    assert top.attr("axis") == 0


@pytest.mark.parametrize(("text", "where", "message"), [
    ("kernel a(x: f32) -> (y: f32) { y = x + ; }", "1:40", "expected '(', '-', a name"),
    ("kernel a(x: f32) -> (y: f32) { y = z; }", "1:36", "'z' is not defined here"),
    ("kernel a(x: f33) -> (y: f32) { y = x; }", "1:13", "expected a type, found 'f33'"),
    ("kernel a(x: f32) -> (y: f32) { y = x; y = x; }", "1:39", "result 'y' is assigned twice"),
    ("kernel a(x: f32) -> (y: f32) { q = x; }", "1:32", "'q' is not a result of kernel 'a'"),
    ("kernel a(x: f32) -> (y: f32) { let x = x; y = x; }", "1:32", "'x' is already defined"),
    ("kernel a(x: f32) -> (y: f32) { y = x $ 2; }", "1:38", "unexpected character '$'"),
    ("kernel a(x: f32) -> (y: f32) { let q = x; }", "1:1", "never assigns result 'y'"),
    ("kernel a(x: f32) -> (y: f32) { y = x;", "1:37", "found the end of the file"),
])
def test_errors_point_at_the_source(text, where, message):
    with pytest.raises(PimError) as err:
        parse_kernels(text, "k.pk")
    first, source, caret = str(err.value).split("\n")
    assert first.startswith(f"k.pk:{where}: ") and message in first
    assert source == text and caret == " " * (int(where.split(":")[1]) - 1) + "^"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("kernel(x:f32[4])->{y=+*-;let,<>=0.5#\n ")),
               max_size=80))
def test_garbage_raises_only_pim_error(text):
    with contextlib.suppress(PimError):
        parse_kernels(text, "g.pk")
