"""Bit-sliced (partition-parallel) arithmetic: bit i of every word in partition i.

With P partitions, one NOR repeated over all partitions (rep=P/1) computes a bitwise
operation on whole words in one cycle; moving bits between partitions is a NOR whose
input and output sit `s` partitions apart, which the no-overlap rule lets run on every
(s+1)-th partition at once, so a shift by s lanes costs s+1 cycles. Values here are
whole bit-sliced words; the netlist, allocator and INIT scheduler are the scalar ones,
with columns meaning columns inside a partition.
"""

from __future__ import annotations

from pimc.isa.builder import ProgramBuilder
from pimc.isa.uop import Rep
from pimc.synth.logic import Logic
from pimc.synth.netlist import ZERO, Bit, Gate

ALL_LANES = (1 << 64) - 1  # a lane constant with every lane 1


class LaneLogic(Logic):
    def shifted(self, x: Bit, lanes: int) -> Bit:
        """x moved up by `lanes` lanes (zeros in), in lanes + 1 cycles (and a NOT)."""
        return self.not_(self.net.shift_not(x, lanes))

    def add(self, a: Bit, b: Bit, hi: int, cin: Bit = ZERO, lo: int = 0) -> Bit:
        """a + b (+ cin, a word that is 0 but maybe in lane lo) in lanes lo..hi-1.

        A ripple carry, lane to lane: with propagate p and generate g made lanewise, each
        carry is two single-lane NORs, u = p and c (inside lane i) and NOT c' =
        NOR(g, u) (from lane i to i+1), written into one cell per word. Cheaper here than
        a carry-prefix tree, whose long shifts cost one cycle per lane moved.
        """
        net = self.net
        n = net.nor(a, b)
        t2, t3 = net.nor(a, n), net.nor(b, n)  # b and not a, a and not b
        g = net.nor(n, t2, t3)  # generate: a and b
        xn = net.nor(t2, t3)  # NOT propagate
        not_carry = net.lane_constant(ALL_LANES, fresh=True)
        if cin != ZERO:
            not_carry = net.lane_nor(not_carry, (cin,), lo, lo)
        ands = net.lane_constant(ALL_LANES, fresh=True)
        for lane in range(lo, hi - 1):
            ands = net.lane_nor(ands, (xn, not_carry), lane, lane)  # p and c
            not_carry = net.lane_nor(not_carry, (g, ands), lane, lane + 1)
        return self.xor(xn, not_carry)  # p xor c = NOT p xor NOT c


    def multiply_wide(self, a: Bit, b: Bit, lanes: int) -> tuple[Bit, Bit]:
        """(low, high) words of the unsigned product a * b, by carry-save shift-and-add.

        For each bit j of b: a SEARCH selects the rows where it is 1 and a predicated NOR
        writes NOT a there into a cell that holds 1 elsewhere, which is NOT (a AND b_j):
        the partial product without moving b_j to every lane. One lanewise full adder adds
        it into the (sum, carry) pair; then the sum moves down one lane, and its lane 0,
        now final, goes to lane j of the low word. At the end the high word is
        sum + carry.
        """
        net = self.net
        total, carry = ZERO, ZERO
        low = net.nor(net.zero_from(b))  # all ones: lane j is overwritten by bit j
        for j in range(lanes):
            total, carry = self.full_adder(total, self.partial(a, b, j), carry)
            low = net.move_lane(low, self.not_(total), 0, j)
            total = self.not_(net.shift_not(total, -1))
        return low, self.add(total, carry, lanes)

    def partial(self, x: Bit, flag: Bit, lane: int) -> Bit:
        """x AND (lane `lane` of flag), in every lane: a SEARCH on that one bit and a
        predicated NOR write NOT x where it is 1, into a cell holding 1 elsewhere."""
        return self.not_(self.net.predicated_nor((((flag, lane),), 1), (x,)))

    def multiply_wide_signed(self, a: Bit, b: Bit, lanes: int) -> tuple[Bit, Bit]:
        """Signed product: the unsigned one, minus 2^N (a_sign * b + b_sign * a), the
        correction for reading two's complement words as unsigned."""
        low, high = self.multiply_wide(a, b, lanes)
        x, y = self.partial(b, a, lanes - 1), self.partial(a, b, lanes - 1)
        # high - x - y = NOT (NOT high + x + y): a carry-save step, then one addition.
        s, c = self.full_adder(self.not_(high), x, y)
        return low, self.not_(self.add(s, self.shifted(c, 1), lanes))


def emit_lane_gate(b: ProgramBuilder, out: int, ins: tuple[int, ...], gate: Gate, lanes: int,
                   width: int, pred: bool) -> None:
    """One netlist gate as micro-ops on columns inside partitions (width columns each)."""
    acc, shift = gate.acc_from is not None, gate.shift
    lo, hi = gate.lanes or (0, lanes)
    written = range(max(lo, shift), min(hi, lanes + min(shift, 0)))
    if shift == 0:
        b.nor(lo * width + out, *(lo * width + c for c in ins), acc=acc, pred=pred,
              rep=Rep(len(written), 1))
        return
    span = abs(shift) + 1
    for first in written[:span]:
        count = len(range(first, written.stop, span))
        b.nor(first * width + out, *((first - shift) * width + c for c in ins), acc=acc,
              pred=pred, rep=Rep(count, span))
