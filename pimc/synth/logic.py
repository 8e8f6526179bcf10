"""Boolean building blocks over a Netlist: the gate-level vocabulary of the arithmetic.

Words are lists of bits, least significant first. Costs are in NOR gates; the netlist's
simplifier removes what constants make unnecessary.
"""

from __future__ import annotations

from collections.abc import Sequence

from pimc.synth.netlist import ONE, ZERO, Bit, Netlist

Word = list[Bit]


class Logic:
    def __init__(self, net: Netlist) -> None:
        self.net = net

    def not_(self, x: Bit) -> Bit:
        return self.net.nor(x)

    def or_(self, *xs: Bit) -> Bit:
        return self.net.nor(self.net.nor(*xs))

    def and_(self, *xs: Bit) -> Bit:
        return self.net.nor(*(self.not_(x) for x in xs))

    def xnor(self, a: Bit, b: Bit) -> Bit:
        """4 NORs: NOR(NOR(a, n), NOR(b, n)) with n = NOR(a, b)."""
        n = self.net.nor(a, b)
        return self.net.nor(self.net.nor(a, n), self.net.nor(b, n))

    def xor(self, a: Bit, b: Bit) -> Bit:
        """5 NORs, or 4 when the caller can use xnor's two middle terms directly."""
        if a in (ZERO, ONE) or b in (ZERO, ONE):
            k, x = (a, b) if a in (ZERO, ONE) else (b, a)
            return x if k == ZERO else self.not_(x)
        n = self.net.nor(a, b)
        return self.net.nor(n, self.net.nor(self.net.nor(a, n), self.net.nor(b, n)))

    def mux(self, sel: Bit, if1: Bit, if0: Bit) -> Bit:
        """sel ? if1 : if0 as OR(AND(sel, if1), AND(not sel, if0)): 4-5 NORs."""
        if sel in (ZERO, ONE):
            return if1 if sel == ONE else if0
        if if1 == if0:
            return if1
        ns = self.not_(sel)
        # NOR(ns, n1) = sel and if1; NOR(sel, n0) = not sel and if0.
        return self.or_(self.net.nor(ns, self.not_(if1)), self.net.nor(sel, self.not_(if0)))

    def full_adder(self, a: Bit, b: Bit, c: Bit) -> tuple[Bit, Bit]:
        """(sum, carry) in 9 NORs, one of them an accumulate that needs no INIT."""
        if c == ZERO:
            return self.half_adder(a, b)
        if a == ZERO or b == ZERO:
            return self.half_adder(c, b if a == ZERO else a)
        net = self.net
        n1 = net.nor(a, b)
        fresh = net.next_value
        xn = net.nor(net.nor(a, n1), net.nor(b, n1))  # xnor(a, b)
        n2 = net.nor(xn, c)  # xor(a, b) and not c
        u1 = net.nor(xn, n2)  # xor(a, b) and c
        # u2 = xnor(a, b) and not c, in xn's own cell (saving an INIT) when xn was made
        # here and nothing else can share it.
        u2 = net.acc(xn, c) if xn >= fresh and net.private(xn) else net.nor(c, n2)
        s = net.nor(u1, u2)  # xnor(xnor(a, b), c) = a ^ b ^ c
        return s, net.nor(n1, n2)

    def half_adder(self, a: Bit, b: Bit) -> tuple[Bit, Bit]:
        """(a xor b, a and b) in 6 NORs."""
        if a == ZERO or b == ZERO:
            return (b if a == ZERO else a), ZERO
        if a == ONE or b == ONE:
            x = b if a == ONE else a
            return self.not_(x), x
        net = self.net
        n1 = net.nor(a, b)
        t2, t3 = net.nor(a, n1), net.nor(b, n1)
        return net.nor(n1, net.nor(t2, t3)), net.nor(n1, t2, t3)

    def any_(self, xs: Sequence[Bit]) -> Bit:
        return self.or_(*xs)

    def none(self, xs: Sequence[Bit]) -> Bit:
        return self.net.nor(*xs)
