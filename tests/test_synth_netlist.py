"""The synthesis passes on their own: netlist simplification, allocation, INIT scheduling."""

from __future__ import annotations

import numpy as np
import pytest
from pimc.runtime import run_program

from pimc.isa.arch import Arch, InitModel
from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.synth.alloc import allocate
from pimc.synth.emit import emit, schedule_inits
from pimc.synth.logic import Logic
from pimc.synth.netlist import ONE, ZERO, Netlist, live_gates


def test_constants_fold():
    net = Netlist()
    x = net.input(0)
    assert net.nor(x, ONE) == ZERO
    assert net.nor(ZERO) == ONE
    assert net.nor(x, ZERO) == net.nor(x)
    assert net.nor(x, net.nor(x)) == ZERO  # x and not x
    assert not net.gates[1:]  # only NOT x was built


def test_double_negation_and_sharing():
    net = Netlist()
    x, y = net.input(0), net.input(1)
    assert net.nor(net.nor(x)) == x
    assert net.nor(x, y) == net.nor(y, x)
    assert len(net.gates) == 2


def test_nor_of_an_or_becomes_one_wider_gate():
    net = Netlist()
    x, y, z = (net.input(i) for i in range(3))
    either = Logic(net).or_(x, y)
    out = net.nor(either, z)
    assert net.gates[-1].ins == tuple(sorted((x, y, z)))
    assert live_gates(net, [out]) == [net.gates[-1]]  # the OR itself is dead


def test_wide_nor_is_an_accumulate_chain():
    net = Netlist()
    xs = [net.input(i) for i in range(7)]
    net.nor(*xs)
    assert [len(g.ins) for g in net.gates] == [3, 3, 1]
    assert [g.acc_from is not None for g in net.gates] == [False, True, True]


def test_accumulated_values_are_not_read_again_by_simplification():
    net = Netlist()
    x, y, z = net.input(0), net.input(1), net.input(2)
    nx = net.nor(x)
    t = net.nor(nx, y)  # reads nx, before the accumulate
    assert net.private(nx)
    net.acc(nx, z)  # nx's cell now holds something else
    assert net.nor(x) != nx  # not handed out by hash-consing
    u = net.nor(net.nor(t), z)  # would flatten to NOR(nx, y, z): must not
    assert nx not in net.gates[-1].ins and net.gates[-1].out == u


def _program(net: Netlist, outputs, scratch=range(8, 64), **kw):
    alloc = allocate(net, outputs, scratch, **kw)
    b = ProgramBuilder(1, arch=Arch(rows=64, cols=64))
    for col in sorted(net.inputs.values()):
        b.input(f"x{col}", "u1", [64], col)
    for i, (_, col) in enumerate(outputs):
        b.output(f"y{i}", "u1", [64], col)
    emit(alloc, b)
    return alloc, b.build()


def test_allocation_reuses_dead_cells_and_pins_outputs():
    net = Netlist()
    logic = Logic(net)
    a, b = net.input(0), net.input(1)
    x = logic.xor(a, b)
    alloc, prog = _program(net, [(x, 7), (a, 6), (ONE, 5)], reserve=0)
    assert alloc.cell[x] == 7
    assert alloc.constants == ((5, 1),)
    assert alloc.peak_scratch <= 4  # 5 NORs, cells reused as soon as they are dead
    inputs = {"x0": np.arange(64) % 2, "x1": np.arange(64) // 2 % 2}
    out, _ = run_program(prog, inputs)  # strict: every NOR's cell was initialised
    assert np.array_equal(out["y0"], inputs["x0"] ^ inputs["x1"])
    assert np.array_equal(out["y1"], inputs["x0"]) and out["y2"].all()


def test_budget_error_names_the_routine():
    net = Netlist()
    logic = Logic(net)
    a, b = net.input(0), net.input(1)
    with pytest.raises(PimError, match="xor needs more than its 1 scratch columns"):
        allocate(net, [(logic.xor(a, b), 7)], range(8, 9), what="xor")


def test_inits_merge_into_the_fewest_groups():
    net = Netlist()
    xs = [net.input(i) for i in range(4)]
    outs = [net.nor(xs[i], xs[(i + 1) % 4]) for i in range(4)]
    alloc = allocate(net, [(v, 8 + i) for i, v in enumerate(outs)], range(16, 32))
    groups = schedule_inits(alloc)
    assert [len(g) for g in groups] == [4, 0, 0, 0]  # one bulk INIT arms all four outputs


@pytest.mark.parametrize("model", list(InitModel))
def test_reserve_trades_columns_for_init_cycles(model):
    net = Netlist()
    logic = Logic(net)
    a = [net.input(i) for i in range(8)]
    acc = a[0]
    for v in a[1:]:
        acc = logic.xor(acc, v)
    tight = allocate(net, [(acc, 9)], range(10, 64), reserve=0)
    loose = allocate(net, [(acc, 9)], range(10, 64), reserve=16)
    n_groups = [sum(bool(g) for g in schedule_inits(x)) for x in (tight, loose)]
    assert tight.peak_scratch < loose.peak_scratch and n_groups[1] < n_groups[0]


def test_accumulating_into_a_value_still_needed_is_an_error():
    net = Netlist()
    x, y = net.input(0), net.input(1)
    v = net.nor(x, y)
    assert net.private(v)
    w = net.acc(v, x)
    with pytest.raises(PimError, match="an output is accumulated into another output"):
        allocate(net, [(v, 8), (w, 9)], range(16, 32))
    u = net.nor(v, y)  # reads v after the accumulate took its cell
    with pytest.raises(PimError, match="accumulate into a value that is an input or still"):
        allocate(net, [(w, 9), (u, 10)], range(16, 32))
