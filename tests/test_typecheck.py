"""The type and shape checking pass on its own."""

from __future__ import annotations

import pytest

from pimc.frontend.dsl import parse_kernels
from pimc.isa.errors import PimError
from pimc.passes.typecheck import typecheck


def check(text: str):
    return typecheck(parse_kernels(text, "t.pk")[0], text)


def test_every_node_gets_a_type_and_literals_take_their_operands_type():
    k = check("""kernel k(x: bf16[4], w: bf16[4], s: bf16) -> (y: bf16[4], c: u8[4], t: bf16) {
        y = relu(select(x < w, x * w, -x)) + 2.5 * s;
        c = u8(x >= w);
        t = dot(x, w);
    }""")
    typed = {k.node(n).op: (k.node(n).dtype, k.node(n).shape) for n in k.graph}
    assert typed["lt"] == ("u1", (4,)) and typed["select"] == ("bf16", (4,))
    assert typed["const"] == ("bf16", ()) and typed["cast"] == ("u8", (4,))
    assert typed["dot"] == ("bf16", ()) and typed["relu"] == ("bf16", (4,))
    assert all(k.node(n).dtype for n in k.graph)


def test_reductions_drop_axes():
    k = check("kernel r(x: i32[3, 4]) -> (a: i32[4], b: i32[3], c: i32) "
              "{ a = sum(x, axis=0); b = max(x, axis=1); c = sum(x); }")
    assert [k.node(k.outputs[r]).shape for r in "abc"] == [(4,), (3,), ()]


def test_broadcasting_follows_numpy():
    k = check("kernel b(x: f32[3, 1], y: f32[4]) -> (z: f32[3, 4]) { z = x + y; }")
    assert k.node(k.outputs["z"]).shape == (3, 4)


@pytest.mark.parametrize(("text", "message"), [
    ("kernel a(x: f32, y: i32) -> (z: f32) { z = x + y; }", "different types: f32, i32"),
    ("kernel a(x: f32[4], y: f32[3]) -> (z: f32[4]) { z = x + y; }", "do not broadcast"),
    ("kernel a(x: f32[4]) -> (z: f32) { z = x; }", "declared f32 but is given f32[4]"),
    ("kernel a(x: f32) -> (z: f32) { z = foo(x); }", "no function foo with 1 argument"),
    ("kernel a(x: f32) -> (z: f32) { z = select(x, x, x); }", "condition must be a comparison"),
    ("kernel a(x: f32) -> (z: f32) { z = 1 + 2; }", "of literals only"),
    ("kernel a(x: f32[4]) -> (z: f32) { z = max(x); }", "needs an axis"),
    ("kernel a(x: f32[4]) -> (z: f32) { z = sum(x, axis=1); }", "axis 1 is out of range"),
    ("kernel a(x: f32[4], y: f32[3]) -> (z: f32) { z = dot(x, y); }", "two vectors of one"),
    ("kernel a(x: f32[4]) -> (z: f32[4]) { z = relu(x, axis=0); }", "takes no argument 'axis'"),
])
def test_type_errors_are_located(text, message):
    with pytest.raises(PimError) as err:
        check(text)
    assert str(err.value).startswith("t.pk:1:") and message in str(err.value)
