"""Bit-sliced float multiply (ftz): bit k of each float in partition k.

The significands multiply by lanes.py's carry-save loop; the exponents add where they
already are (their lanes), so no field ever moves far; every data-dependent choice
(normalisation, the sticky bit, flushing) is a SEARCH and predicated writes, which cost
the same on every lane. Semantics are Floating's ftz mode, bit for bit.
"""

from __future__ import annotations

from pimc.synth.floating import Format
from pimc.synth.lanes import LaneLogic
from pimc.synth.netlist import ZERO, Bit, When


class LaneFloat(LaneLogic):
    def __init__(self, net, fmt: Format) -> None:  # type: ignore[no-untyped-def]
        super().__init__(net)
        self.fmt = fmt

    def mask(self, lo: int, hi: int) -> Bit:
        return self.net.lane_constant(((1 << hi) - 1) ^ ((1 << lo) - 1))

    def keep(self, x: Bit, lo: int, hi: int) -> Bit:
        """x in lanes lo..hi-1, 0 elsewhere."""
        return self.net.nor(self.not_(x), self.not_(self.mask(lo, hi)))

    def fmul(self, a: Bit, b: Bit) -> Bit:
        fmt, net = self.fmt, self.net
        m, e, width = fmt.frac_bits, fmt.exp_bits, fmt.width
        p = m + 1
        # Significand of a: fraction lanes and a hidden 1 in lane m (zero operands are
        # flushed at the end, whatever the product).
        sig_a = self.or_(self.keep(a, 0, m), self.mask(m, p))
        total = carry = ZERO
        low = net.nor(net.zero_from(b))
        for j in range(p):
            partial = sig_a if j == m else self.partial(sig_a, b, j)
            total, carry = self.full_adder(total, partial, carry)
            low = net.move_lane(low, self.not_(total), 0, j)
            total = self.not_(net.shift_not(total, -1))
        high = self.add(total, carry, p)
        top: When = (((high, p - 1),), 1)
        not_top: When = (((high, p - 1),), 0)
        # Significand, hidden bit in lane m: the product's top p bits.
        sig_inv = net.predicated_nor(top, (high,))
        sig_inv = net.predicated_nor(not_top, (high,), sig_inv, shift=1)
        sig_inv = net.predicated_nor(not_top, (low,), sig_inv, shift=1 - p, lanes=(0, 1))
        sig = self.not_(sig_inv)
        # Guard bit in lane 0, and the sticky bit (1 unless every bit below the guard is 0).
        g_inv = net.predicated_nor(top, (low,), None, shift=1 - p, lanes=(0, 1))
        g_inv = net.predicated_nor(not_top, (low,), g_inv, shift=2 - p, lanes=(0, 1))
        guard = self.not_(g_inv)
        ones = self.mask(0, width)
        exact_top: When = (((high, p - 1), *((low, k) for k in range(p - 1))), 1)
        exact_low: When = (((high, p - 1), *((low, k) for k in range(p - 2))), 0)
        sticky = net.predicated_nor(exact_top, (ones,))
        sticky = net.predicated_nor(exact_low, (ones,), sticky)
        up = self.and_(guard, self.or_(sticky, sig), self.mask(0, 1))
        # Exponent: t = ea + eb + 1 + top in lanes m..m+e (e + 1 bits); as bias + 1 is
        # 2^(e-1), the field is t with bit e-1 flipped when t > 2^(e-1).
        t_inv = net.lane_constant((1 << width) - 1, fresh=True)
        t_inv = net.move_lane(t_inv, high, p - 1, m + 1)  # lane m+1: top
        t_inv = net.move_lane(t_inv, self.not_(high), p - 1, m)  # lane m: not top
        s, c = self.full_adder(self.keep(a, m, m + e), self.keep(b, m, m + e),
                               self.not_(t_inv))
        t = self.add(s, self.shifted(c, 1), 16)
        field = self.xor(t, self.mask(m + e - 1, m + e))
        packed = self.or_(self.keep(sig, 0, m), self.keep(field, m, m + e))
        rounded = self.add(packed, up, width)
        sign = self.keep(self.xor(a, b), width - 1, width)
        result = self.or_(self.keep(rounded, 0, width - 1), sign)
        # Special rows. t = 2^(e-1): the value is just below the smallest normal and rounds,
        # on the subnormal grid, up to it only if its top p bits are all ones.
        zero_inv = self.not_(sign)
        t_lanes = tuple((t, m + k) for k in range(e + 1))
        edge: When = (t_lanes, 1 << (e - 1))
        result = net.overwrite(edge, result, zero_inv)
        all_ones: When = (t_lanes + tuple((sig, k) for k in range(p)),
                          1 << (e - 1) | ((1 << p) - 1) << (e + 1))
        result = net.overwrite(all_ones, result, self.not_(self.or_(sign, self.mask(m, m + 1))))
        for when in ((((t, m + e - 1), (t, m + e)), 0),  # t < 2^(e-1): underflow
                     (tuple((a, m + k) for k in range(e)), 0),  # a is zero or subnormal
                     (tuple((b, m + k) for k in range(e)), 0)):
            result = net.overwrite(when, result, zero_inv)
        return result
