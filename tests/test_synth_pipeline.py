"""The synthesis pipeline as a whole, on random logic: whatever the netlist, allocation and
INIT scheduling do, the runtime (in strict mode) must compute what Python computes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pimc.runtime import run_program

from pimc.isa.arch import Arch, InitModel
from pimc.isa.builder import ProgramBuilder
from pimc.isa.cost import program_cycles
from pimc.isa.uop import Span
from pimc.synth.alloc import allocate
from pimc.synth.emit import emit, merge_moves
from pimc.synth.logic import Logic
from pimc.synth.netlist import ONE, ZERO, Netlist

ROWS = 64
STEP = st.tuples(st.sampled_from(["nor", "or", "and", "xor", "xnor", "mux", "fa", "not",
                                  "acc", "pred"]),
                 st.lists(st.integers(0, 10**6), min_size=3, max_size=3))


def _build(steps, reserve, model):
    net = Netlist()
    logic = Logic(net)
    rng = np.random.default_rng(0)
    bits = {i: rng.integers(0, 2, ROWS).astype(bool) for i in range(4)}
    values = [net.input(i) for i in range(4)]
    truth = {v: bits[i] for i, v in enumerate(values)}
    truth[ZERO], truth[ONE] = np.zeros(ROWS, bool), np.ones(ROWS, bool)
    pool = [*values, ZERO, ONE]
    for kind, picks in steps:
        x, y, z = (pool[p % len(pool)] for p in picks)
        tx, ty, tz = truth[x], truth[y], truth[z]
        if kind == "nor":
            out, want = net.nor(x, y, z), ~(tx | ty | tz)
        elif kind == "or":
            out, want = logic.or_(x, y), tx | ty
        elif kind == "and":
            out, want = logic.and_(x, y), tx & ty
        elif kind == "xor":
            out, want = logic.xor(x, y), tx ^ ty
        elif kind == "xnor":
            out, want = logic.xnor(x, y), ~(tx ^ ty)
        elif kind == "mux":
            out, want = logic.mux(x, y, z), np.where(tx, ty, tz)
        elif kind == "fa":
            s, c = logic.full_adder(x, y, z)
            total = tx.astype(int) + ty + tz
            truth[s], truth[c] = (total % 2).astype(bool), total >= 2
            pool += [s, c]
            continue
        elif kind == "not":
            out, want = logic.not_(x), ~tx
        elif kind == "acc":
            # A fresh NOR taken private, then AND-accumulated in its own cell.
            fresh = net.nor(x, z)
            if fresh in (ZERO, ONE) or fresh in pool or not net.private(fresh):
                continue
            out, want = net.acc(fresh, y), ~(tx | tz) & ~ty
        else:  # a NOR of y in the rows where x (an input bit) is 1; 1 elsewhere
            if x not in values or y == ONE:
                continue
            out = net.predicated_nor(((x,), 1), (y,))
            if out in (ZERO, ONE):
                continue
            want = np.where(tx, ~ty, True)
        truth[out] = want
        pool.append(out)
    return net, truth, pool[-3:], bits


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=25), st.integers(0, 8),
       st.sampled_from(list(InitModel)))
def test_random_logic_runs_as_python_computes(steps, reserve, model):
    net, truth, results, bits = _build(steps, reserve, model)
    outputs = [(v, 4 + i) for i, v in enumerate(results)]
    alloc = allocate(net, outputs, range(8, 64), reserve=reserve)
    b = ProgramBuilder(1, arch=Arch(rows=ROWS, cols=64, init_model=model))
    for i in range(4):
        b.input(f"x{i}", "u1", [ROWS], i)
    for i in range(len(outputs)):
        b.output(f"y{i}", "u1", [ROWS], 4 + i)
    emit(alloc, b)
    out, _ = run_program(b.build(), {f"x{i}": bits[i].astype(np.uint8) for i in range(4)})
    for i, v in enumerate(results):
        assert np.array_equal(out[f"y{i}"].astype(bool), truth[v]), i


def test_adjacent_moves_merge_unless_one_reads_what_another_wrote():
    b = ProgramBuilder(4)
    b.transfer(Span(2, 4), Span(0, 2), [5], [9], rows=Span(0, 1))
    b.transfer(Span(2, 4), Span(0, 2), [6], [10], rows=Span(0, 1))
    b.transfer(Span(2, 4), Span(0, 2), [9], [11], rows=Span(0, 1))  # reads c9: kept apart
    b.shift([1], [2], -4)
    b.shift([3], [4], -4)
    b.shift([5], [6], -2)  # another distance
    merged = merge_moves(b.ops)
    assert [len(op.src_cols) for op in merged] == [2, 1, 2, 1]
    assert merged[0].src_cols == (5, 6) and merged[0].dst_cols == (9, 10)
    arch = b.arch
    assert program_cycles(merged, arch) < program_cycles(b.ops, arch)  # 2 + 2 < 2 x (1 + 2)


def test_a_gate_that_reads_the_value_whose_cell_it_takes_over_does_not_free_that_cell():
    net = Netlist()
    x = net.input(0)
    v = net.copy(x)
    moved = net.crossbars_from(v, -1, (1, 2), (0, ROWS), into=v)  # crossbar 1 <- crossbar 0
    others = [net.copy(x) for _ in range(3)]  # fresh values while `moved` is live
    final = net.nor(moved, others[-1])
    alloc = allocate(net, [(final, 10)], range(20, 30), reserve=0)
    born = next(i for i, g in enumerate(alloc.gates) if g.out == moved)
    used = next(i for i, g in enumerate(alloc.gates) if moved in g.ins)
    assert all(alloc.cell[g.out] != alloc.cell[moved]
               for g in alloc.gates[born + 1:used] if g.acc_from is None)
