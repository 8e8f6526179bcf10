"""Fixed-point (two's complement or unsigned) arithmetic on words of netlist bits.

Words are least significant bit first. Every function returns new bits and leaves its
operands alone; costs (NOR gates per bit) are in docs/arithmetic.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from pimc.synth.logic import Logic, Word
from pimc.synth.netlist import ONE, ZERO, Bit


class Fixed(Logic):
    def invert(self, a: Sequence[Bit]) -> Word:
        return [self.not_(x) for x in a]

    def add(self, a: Sequence[Bit], b: Sequence[Bit], cin: Bit = ZERO) -> tuple[Word, Bit]:
        """Ripple-carry a + b + cin: (sum, carry out); 9 NORs per full-adder bit."""
        out, c = [], cin
        for x, y in zip(a, b, strict=True):
            s, c = self.full_adder(x, y, c)
            out.append(s)
        return out, c

    def sub(self, a: Sequence[Bit], b: Sequence[Bit]) -> tuple[Word, Bit]:
        """a - b = a + not b + 1: (difference, carry); carry = 1 iff a >= b unsigned."""
        return self.add(a, self.invert(b), ONE)

    def increment(self, a: Sequence[Bit], inc: Bit) -> tuple[Word, Bit]:
        """a + inc for a single bit inc: half adders."""
        out, c = [], inc
        for x in a:
            s, c = self.half_adder(x, c)
            out.append(s)
        return out, c

    def neg(self, a: Sequence[Bit]) -> Word:
        return self.increment(self.invert(a), ONE)[0]

    def conditional_negate(self, a: Sequence[Bit], sign: Bit) -> Word:
        """sign ? -a : a as (a xor sign) + sign."""
        return self.increment([self.xor(x, sign) for x in a], sign)[0]

    def abs_(self, a: Sequence[Bit]) -> Word:
        return self.conditional_negate(a, a[-1])

    def carry_chain(self, a: Sequence[Bit], b: Sequence[Bit], cin: Bit) -> Bit:
        """The carry out of a + b + cin without the sum bits: a majority per bit."""
        c = cin
        for x, y in zip(a, b, strict=True):
            c = self.majority(x, y, c)
        return c

    def majority(self, x: Bit, y: Bit, z: Bit) -> Bit:
        """MAJ(x, y, z) = NOR(NOR(x, y), NOR(y, z), NOR(x, z)): 4 NORs."""
        if z in (ZERO, ONE):
            return self.and_(x, y) if z == ZERO else self.or_(x, y)
        net = self.net
        return net.nor(net.nor(x, y), net.nor(y, z), net.nor(x, z))

    def less_than(self, a: Sequence[Bit], b: Sequence[Bit], signed: bool) -> Bit:
        """a < b: the borrow of a - b. Signed: the sign bits swap roles."""
        a, b = list(a), list(b)
        if signed:
            a[-1], b[-1] = b[-1], a[-1]
        # a >= b iff the carry of a + not b + 1 is set.
        return self.not_(self.carry_chain(a, self.invert(b), ONE))

    def less_equal(self, a: Sequence[Bit], b: Sequence[Bit], signed: bool) -> Bit:
        return self.not_(self.less_than(b, a, signed))

    def equal(self, a: Sequence[Bit], b: Sequence[Bit]) -> Bit:
        """All bits equal: NOR of every bit's two xor terms (3 NORs per bit, then a wide NOR)."""
        terms: list[Bit] = []
        for x, y in zip(a, b, strict=True):
            n = self.net.nor(x, y)
            terms += [self.net.nor(x, n), self.net.nor(y, n)]
        return self.net.nor(*terms)

    def select(self, sel: Bit, if1: Sequence[Bit], if0: Sequence[Bit]) -> Word:
        return [self.mux(sel, x, y) for x, y in zip(if1, if0, strict=True)]

    def minimum(self, a: Sequence[Bit], b: Sequence[Bit], signed: bool) -> Word:
        return self.select(self.less_than(a, b, signed), a, b)

    def maximum(self, a: Sequence[Bit], b: Sequence[Bit], signed: bool) -> Word:
        return self.select(self.less_than(a, b, signed), b, a)

    def relu(self, a: Sequence[Bit]) -> Word:
        """max(a, 0) for signed a: clear every bit when the sign is set (2 NORs per bit)."""
        sign = a[-1]
        return [self.net.nor(self.not_(x), sign) for x in a[:-1]] + [ZERO]

    def shift_left(self, a: Sequence[Bit], k: int) -> Word:
        return ([ZERO] * k + list(a))[: len(a)]

    def shift_right(self, a: Sequence[Bit], k: int, signed: bool) -> Word:
        fill = a[-1] if signed else ZERO
        return (list(a) + [fill] * k)[k:]

    def multiply(self, a: Sequence[Bit], b: Sequence[Bit], signed: bool,
                 width: int | None = None) -> Word:
        """a * b, the low `width` bits (default 2N) of the product: an array of full adders.

        The array runs on complements: a full adder of complements gives the complements of
        sum and carry, and the complement of a partial product, not a_i or not b_j, is an OR
        that the netlist folds into the adder's first NORs, so no gate computes a partial
        product. Signed operands use Baugh-Wooley: the partial products with exactly one
        sign bit are complemented and the constant 2^N + 2^(2N-1) is added, here by starting
        the (complemented) accumulator from it. The low N bits need no correction.
        """
        n = len(a)
        width = width or len(a) + len(b)
        baugh_wooley = signed and width > n
        if baugh_wooley and len(b) != n:
            raise ValueError("signed products need operands of one width")
        na, nb = self.invert(a), self.invert(b[:width])
        start = (1 << n) + (1 << (2 * n - 1)) if baugh_wooley else 0
        acc: Word = [ZERO if start >> i & 1 else ONE for i in range(width)]
        for j, nbj in enumerate(nb):
            carry = ONE
            for i in range(j, width):
                k = i - j
                if k >= len(na):
                    npp = ONE
                elif baugh_wooley and (k == n - 1) != (j == n - 1):
                    npp = self.net.nor(na[k], nbj)  # the complemented product, complemented
                else:
                    npp = self.or_(na[k], nbj)
                acc[i], carry = self.full_adder(acc[i], npp, carry)
        return self.invert(acc)

    def multiply_scaled(self, a: Sequence[Bit], b: Sequence[Bit], signed: bool,
                        frac_bits: int) -> Word:
        """N x N -> N: integers keep the low half; fixed point Q(I.F) drops F fraction bits
        (rounding toward minus infinity, as an arithmetic shift does)."""
        n = len(a)
        return self.multiply(a, b, signed, n + frac_bits)[frac_bits:]
