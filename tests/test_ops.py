"""The IR op table (pimc.ops): every elementwise op it lists, on every type it allows, is
lowered to routine calls whose run on the runtime equals the reference evaluator's, bit
for bit; the passes read their op sets from it."""

import networkx as nx
import numpy as np
import pytest
from pimc.runtime import run_program
from pimc.runtime.hostio import complete_inputs

from pimc.ir import Kernel, Loc, Node, Param, add_node
from pimc.isa.arch import Arch
from pimc.lower.build import build_word_program
from pimc.lower.tensors import lower_tensors
from pimc.ops import CALLS, COMMUTATIVE, OPS, REDUCTIONS, VIEWS, Kind, Result
from pimc.reference.evaluate import evaluate

LOC = Loc("t", 1, 1)
TYPES = {"float": ("f32", "bf16"), "int": ("i16", "u8"), "raw": ("u16", "u32")}
CASES = [(op, dt) for op, info in OPS.items()
         if info.kind is Kind.ELEMENTWISE and op != "copy"
         for dt in (TYPES["float"] + TYPES["int"] if info.types == "any" else TYPES[info.types])]


def _one_node(op: str, dt: str) -> Kernel:
    info = OPS[op]
    types = ["u1", dt, dt] if op == "select" else [dt] * info.arity
    params = tuple(Param(f"x{i}", t, (64,), LOC) for i, t in enumerate(types))
    k = Kernel("k", params, (), nx.MultiDiGraph())
    ins = [add_node(k, Node("input", LOC, p.dtype, p.shape, (("name", p.name),)), ())
           for p in params]
    to = "f32" if dt != "f32" else "i32"
    out = {Result.SAME: dt, Result.BOOL: "u1", Result.ATTR: to}[info.result]
    attrs = (("to", to),) if info.result is Result.ATTR else ()
    n = add_node(k, Node(op, LOC, out, (64,), attrs), tuple(ins))
    k.results = (Param("y", out, (64,), LOC),)
    k.outputs = {"y": n}
    return k


@pytest.mark.parametrize(("op", "dt"), CASES)
def test_every_elementwise_op_lowers_to_what_the_reference_computes(op, dt):
    k = _one_node(op, dt)
    low, placements = lower_tensors(k, "ieee", 1, Arch())
    prog = build_word_program(low, placements, Arch(), "t", "op", ())
    inputs = complete_inputs(prog.inputs, {}, 3)
    got, _ = run_program(prog, inputs)
    want, _ = evaluate(k, inputs)
    bits = np.asarray(got["y"]).view(f"u{np.asarray(got['y']).dtype.itemsize}")
    assert np.array_equal(bits.astype(np.uint64), want["y"]), op


def test_the_passes_read_their_op_sets_from_the_table():
    assert set(VIEWS) == {"reshape", "transpose", "window", "slice", "bitcast"}
    assert set(REDUCTIONS) == {"sum", "dot", "reduce_max"}
    assert {"add", "mul", "min", "max", "eq", "ne", "dot"} <= COMMUTATIVE
    assert "sub" not in COMMUTATIVE and "lt" not in COMMUTATIVE
    assert CALLS[("max", 1)] == "reduce_max" and CALLS[("max", 2)] == "max"
