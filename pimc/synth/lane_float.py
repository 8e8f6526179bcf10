"""Bit-sliced float multiply (ftz): bit k of each float in partition k.

The significands multiply by lanes.py's carry-save loop; the exponents add where they
already are (their lanes), so no field ever moves far; every data-dependent choice
(normalisation, the sticky bit, flushing) is a SEARCH and predicated writes, which cost
the same on every lane. Semantics are Floating's ftz mode, bit for bit.
"""

from __future__ import annotations

from pimc.synth.floating import Format
from pimc.synth.lanes import LaneLogic
from pimc.synth.netlist import ZERO, Bit, KeyBit, When


class LaneFloat(LaneLogic):
    def __init__(self, net, fmt: Format) -> None:
        super().__init__(net)
        self.fmt = fmt

    def mask(self, lo: int, hi: int) -> Bit:
        return self.net.lane_constant(((1 << hi) - 1) ^ ((1 << lo) - 1))

    def keep(self, x: Bit, lo: int, hi: int) -> Bit:
        """x in lanes lo..hi-1, 0 elsewhere."""
        return self.net.nor(self.not_(x), self.not_(self.mask(lo, hi)))

    def choose_inv(self, flag: KeyBit, if1: Bit, if0: Bit, shift1: int = 0,
                   shift0: int = 0) -> Bit:
        """NOT (flag ? if1 shifted by shift1 : if0 shifted by shift0), by two SEARCHes of
        one bit and predicated NORs (lanes shifted in read as 0)."""
        out = self.net.predicated_nor(((flag,), 1), (if1,), None, shift=shift1)
        return self.net.predicated_nor(((flag,), 0), (if0,), out, shift=shift0)

    def ones(self) -> Bit:
        """A private all-ones word, to clear lanes of by predicated NORs."""
        return self.net.lane_constant((1 << self.fmt.width) - 1, fresh=True)

    def clear_where(self, target: Bit, when: When, lanes: tuple[int, int] | None = None) -> Bit:
        """target with `lanes` (default all) set to 0 in the rows `when` selects."""
        return self.net.predicated_nor(when, (self.mask(0, self.fmt.width),), target,
                                       lanes=lanes)

    def fadd(self, a: Bit, b: Bit) -> Bit:
        """a + b (ftz): order by magnitude, align, add or subtract, normalise, round.

        Significands sit 3 lanes up (hidden bit in lane m+3, a carry in lane m+4) above
        guard, round and sticky lanes. Every shift by a data-dependent amount is a few
        stages, each a SEARCH of one bit of the amount and predicated shifted writes; the
        sticky bit and the leading-zero count come from exact SEARCHes too.
        """
        fmt, net = self.fmt, self.net
        m, e, width = fmt.frac_bits, fmt.exp_bits, fmt.width
        top = m + 4
        stages = (m + 3).bit_length()
        # |a| < |b|: the carry out of NOT |a| + |b| (lanes below the sign).
        lt_word = self.add(self.keep(self.not_(a), 0, width - 1), self.keep(b, 0, width - 1),
                           width)
        lt: KeyBit = (lt_word, width - 1)
        big = self.not_(self.choose_inv(lt, b, a))
        small = self.not_(self.choose_inv(lt, a, b))
        # Exponent difference, in the exponent lanes: NOT (NOT e_big + e_small).
        d = self.keep(self.not_(self.add(self.keep(self.not_(big), m, m + e),
                                         self.keep(small, m, m + e), m + e, lo=m)), m, m + e)
        d_bits = tuple((d, m + k) for k in range(e))

        def significand(x: Bit) -> Bit:
            sig = self.shifted(self.or_(self.keep(x, 0, m), self.mask(m, m + 1)), 3)
            zero_or_subnormal: When = (tuple((x, m + k) for k in range(e)), 0)
            # Read as zero: the complement's cell gets all ones (the NOR of a zero word).
            return self.not_(net.overwrite(zero_or_subnormal, self.not_(sig),
                                           net.lane_constant(0)))

        sb, ss = significand(big), significand(small)
        # Sticky: 1 unless no bit of the small significand falls below lane 0.
        sticky = self.ones()
        sticky = self.clear_where(sticky, (d_bits[2:], 0))  # d < 4
        sticky = self.clear_where(sticky, (tuple((ss, k) for k in range(3, top)), 0))
        for k in range(4, top):
            sticky = self.clear_where(sticky, (d_bits + tuple((ss, j) for j in range(3, k)), k))
        # Align: shift right by d, one stage per bit; d >= 2^stages shifts everything out.
        cur = ss
        for j in range(stages):
            cur = self.not_(self.choose_inv(d_bits[j], cur, cur, shift1=-(1 << j)))
        in_range: When = (d_bits[stages:], 0)
        cur = self.not_(net.predicated_nor(in_range, (cur,)))
        aligned = self.or_(cur, self.keep(sticky, 0, 1))
        # Add, or subtract (x + NOT y + 1): the carry-in is the effective operation.
        op_word = self.xor(a, b)
        op: KeyBit = (op_word, width - 1)
        addend = self.keep(self.not_(self.choose_inv(op, self.not_(aligned), aligned)), 0, top)
        cin = self.keep(self.not_(net.move_lane(self.ones(), op_word, width - 1, 0)), 0, 1)
        total = self.add(sb, addend, top + 1, cin)
        # A carry (additions only): one lane down, the two low lanes kept in the sticky.
        carry_rows: When = (((total, top), op), 1)
        down = self.or_(self.shifted(total, -1), self.keep(total, 0, 1))
        t = self.keep(self.not_(net.overwrite(carry_rows, self.not_(total), down)), 0, top)
        carry = self.keep(self.not_(self.clear_where(self.ones(), carry_rows, (m, m + 1))),
                          m, m + 1)
        # Normalise left, counting the shift into lanes m.. of lz.
        lz_inv = self.ones()
        for j in reversed(range(stages)):
            s = 1 << j
            zero_top: When = (tuple((t, m + 3 - i) for i in range(s)), 0)
            moved = self.clear_where(self.ones(), zero_top)
            t_inv = net.predicated_nor(zero_top, (t,), None, shift=s)
            lz_inv = self.clear_where(lz_inv, zero_top, (m + j, m + j + 1))
            t_inv = net.predicated_nor((((moved, 0),), 1), (t,), t_inv)
            t = self.not_(t_inv)
        lz = self.keep(self.not_(lz_inv), m, m + stages)
        # Exponent, e + 1 bits in lanes m..: e_big + carry - lz.
        s3, c3 = self.full_adder(self.keep(big, m, m + e), carry,
                                 self.keep(self.not_(lz), m, width))
        exponent = self.add(s3, self.shifted(c3, 1), width, self.mask(m, m + 1), lo=m)
        # Round to nearest even: up unless guard = 0, or guard alone with lsb = 0.
        up = self.clear_where(self.ones(), (((t, 2),), 0))
        up = self.clear_where(up, (((t, 0), (t, 1), (t, 2), (t, 3)), 0b0100))
        fraction = self.keep(self.shifted(t, -3), 0, m)
        packed = self.or_(fraction, self.keep(exponent, m, m + e))
        rounded = self.add(packed, self.keep(up, 0, 1), width)
        result = self.or_(self.keep(rounded, 0, width - 1), self.keep(big, width - 1, width))
        # Exact zero: +0 unless both were negative; underflow (exponent <= 0): flushed.
        zero_sign = self.keep(self.and_(a, b), width - 1, width)
        big_sign = self.keep(big, width - 1, width)
        for when in ((((exponent, width - 1),), 1),
                     (tuple((exponent, k) for k in range(m, width)), 0)):
            result = net.overwrite(when, result, self.not_(big_sign))
        low_lanes = tuple((total, k) for k in range(top))
        for exact_zero in (((*low_lanes, (total, top)), 0),  # a sum of zeros
                           ((*low_lanes, op), 1 << top)):  # x - x: the carry lane is 1
            result = net.overwrite(exact_zero, result, self.not_(zero_sign))
        return result

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
        t = self.add(s, self.shifted(c, 1), m + e + 1, lo=m)
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
