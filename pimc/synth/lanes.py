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
from pimc.synth.netlist import Bit


class LaneLogic(Logic):
    def shifted(self, x: Bit, lanes: int) -> Bit:
        """x moved up by `lanes` lanes (zeros in), in lanes + 1 cycles (and a NOT)."""
        return self.not_(self.net.shift_not(x, lanes))

    def add(self, a: Bit, b: Bit, lanes: int) -> Bit:
        """a + b on `lanes`-bit words, by a Kogge-Stone carry prefix."""
        net = self.net
        n = net.nor(a, b)
        t2, t3 = net.nor(a, n), net.nor(b, n)  # b and not a, a and not b
        g = net.nor(n, t2, t3)  # generate: a and b
        p = self.or_(t2, t3)  # propagate: a xor b
        big_g, big_p = g, p
        s = 1
        while s < lanes:
            # G <- G or (P and G shifted by s); P <- P and P shifted by s.
            carry_in = net.nor(self.not_(big_p), net.shift_not(big_g, s))
            last = s * 2 >= lanes
            big_g = self.or_(big_g, carry_in)
            if not last:
                big_p = net.nor(self.not_(big_p), net.shift_not(big_p, s))
            s *= 2
        carries = self.shifted(big_g, 1)
        return self.xor(p, carries)


def emit_lane_gate(b: ProgramBuilder, out: int, ins: tuple[int, ...], shift: int, lanes: int,
                   width: int, acc: bool) -> None:
    """One netlist gate as micro-ops on columns inside partitions (width columns each)."""
    if shift == 0:
        b.nor(out, *ins, acc=acc, rep=Rep(lanes, 1))
        return
    (src,) = ins
    span = abs(shift) + 1
    written = range(shift, lanes) if shift > 0 else range(0, lanes + shift)
    for first in written[:span]:
        count = len(range(first, written.stop, span))
        b.nor(first * width + out, (first - shift) * width + src, acc=acc, rep=Rep(count, span))
