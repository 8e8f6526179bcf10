"""The rest of the float vocabulary: sign operations, comparisons, min/max, relu, and
conversions between floats and 32-bit integers. Semantics are numpy's, measured: see
oracle.py and docs/arithmetic.md."""

from __future__ import annotations

from collections.abc import Sequence

from pimc.isa.errors import PimError
from pimc.synth.floating import Floating, Format, Unpacked, constant_word
from pimc.synth.logic import Word
from pimc.synth.netlist import ONE, ZERO, Bit


class FloatOps(Floating):
    def fneg(self, a: Sequence[Bit]) -> Word:
        """Flip the sign bit, NaN included (as numpy's negative does)."""
        return [*a[:-1], self.not_(a[-1])]

    def fabs(self, a: Sequence[Bit]) -> Word:
        return [*a[:-1], ZERO]

    def _ordered(self, a: Sequence[Bit], b: Sequence[Bit]) -> tuple[Unpacked, Unpacked, Bit, Bit]:
        """(ua, ub, a < b, a == b) for non-NaN operands, zeros of both signs equal."""
        ua, ub = self.unpack(a), self.unpack(b)
        mag_a, mag_b = self._magnitude(ua, a), self._magnitude(ub, b)
        a_lt_mag = self.less_than(mag_a, mag_b, signed=False)
        b_lt_mag = self.less_than(mag_b, mag_a, signed=False)
        both_zero = self.and_(ua.is_zero, ub.is_zero)
        sa, sb = ua.sign, ub.sign
        # Signs differ: the negative one is smaller, unless both are zeros.
        differ = self.xor(sa, sb)
        lt_differ = self.and_(sa, self.not_(both_zero))
        lt_same = self.mux(sa, b_lt_mag, a_lt_mag)  # both negative: larger magnitude is less
        lt = self.mux(differ, lt_differ, lt_same)
        eq_mag = self.net.nor(a_lt_mag, b_lt_mag)
        eq = self.or_(both_zero, self.and_(self.not_(differ), eq_mag))
        return ua, ub, lt, eq

    def _magnitude(self, u: Unpacked, x: Sequence[Bit]) -> Word:
        """Exponent and fraction fields as an integer; ftz reads subnormals as zero."""
        if self.ieee:
            return list(x[:-1])
        return [self.and_(v, self.not_(u.is_zero)) for v in x[: self.fmt.frac_bits]] + list(
            x[self.fmt.frac_bits:-1])

    def flt(self, a: Sequence[Bit], b: Sequence[Bit]) -> Word:
        ua, ub, lt, _ = self._ordered(a, b)
        return [self.and_(lt, self.not_(self.or_(ua.is_nan, ub.is_nan)))]

    def fle(self, a: Sequence[Bit], b: Sequence[Bit]) -> Word:
        ua, ub, lt, eq = self._ordered(a, b)
        return [self.and_(self.or_(lt, eq), self.not_(self.or_(ua.is_nan, ub.is_nan)))]

    def feq(self, a: Sequence[Bit], b: Sequence[Bit]) -> Word:
        ua, ub, _, eq = self._ordered(a, b)
        return [self.and_(eq, self.not_(self.or_(ua.is_nan, ub.is_nan)))]

    def fminmax(self, a: Sequence[Bit], b: Sequence[Bit], want_max: bool,
                ties_to_a: bool) -> Word:
        """numpy's minimum / maximum: a NaN operand is returned as it is (a's first);
        otherwise the smaller (larger), and on a tie (zeros of both signs included) b,
        or a for float16, whose numpy loop compares the other way round."""
        ua, ub, lt, eq = self._ordered(a, b)
        pick_a = self.not_(self.or_(lt, eq)) if want_max else lt
        if ties_to_a:
            pick_a = self.or_(pick_a, eq)
        if self.ieee:
            pick_a = self.or_(ua.is_nan, self.and_(pick_a, self.not_(ub.is_nan)))
        return self.select(pick_a, list(a), list(b))

    def frelu(self, a: Sequence[Bit], ties_to_a: bool) -> Word:
        """maximum(a, +0)."""
        return self.fminmax(a, [ZERO] * len(a), want_max=True, ties_to_a=ties_to_a)

    # ------------------------------------------------------------------ conversions

    def to_int(self, a: Sequence[Bit], width: int = 32, frac_bits: int = 0) -> Word:
        """Truncate a * 2^frac_bits toward zero to a signed integer (a Q(I.F) number with
        F = frac_bits); NaN, infinities and values out of range give the most negative
        integer (x86's "integer indefinite", numpy's result for int32)."""
        fmt = self.fmt
        m, e_bits = fmt.frac_bits, fmt.exp_bits
        ua = self.unpack(a)
        # k = e - bias + F; the integer is sig << k >> m, for 0 <= k < width.
        kw = e_bits + 2
        k, _ = self.add([*ua.exp, ZERO, ZERO], constant_word((frac_bits - fmt.bias) % (1 << kw), kw))
        negative_k = k[-1]
        shift_bits = max(1, (width - 1).bit_length())
        big = self.any_(k[shift_bits:]) if len(k) > shift_bits else ZERO
        window = list(ua.sig) + [ZERO] * (width - 1)
        shifted = window
        for j in range(shift_bits):
            step = 1 << j
            shifted = self.select(k[j], [ZERO] * step + shifted[: len(shifted) - step], shifted)
        magnitude = shifted[m: m + width]
        magnitude = [self.and_(v, self.not_(negative_k)) for v in magnitude]
        value = self.conditional_negate(magnitude, ua.sign)
        # In range: k < width - 1, or the single value -2^(width-1).
        too_big = self.or_(big, self.and_(*k[:shift_bits]) if width - 1 == (1 << shift_bits) - 1
                           else self.not_(self.less_than(k[:shift_bits],
                                                         constant_word(width - 1, shift_bits),
                                                         signed=False)))
        invalid = self.and_(self.not_(negative_k), too_big)
        if self.ieee:
            invalid = self.or_(invalid, ua.is_nan, ua.is_inf)
        indefinite = [ZERO] * (width - 1) + [ONE]
        return self.select(invalid, indefinite, value)

    def from_int(self, x: Sequence[Bit], frac_bits: int = 0) -> Word:
        """A signed integer, or Q(I.F) number with F = frac_bits, rounded to the nearest
        float, ties to even."""
        fmt = self.fmt
        width = len(x)
        sign = x[-1]
        magnitude = self.conditional_negate(list(x), sign)
        p = fmt.frac_bits + 1
        # The top bit of magnitude has weight 2^(width-1-frac_bits): its exponent field
        # would be top. Normalising left by at most top - 1 places leaves a result below
        # the normal range subnormal (ftz: flushed when packed).
        top = fmt.bias + width - 1 - frac_bits
        if top < 1:
            raise PimError(f"Q format with {frac_bits} fraction bits is below {fmt} range")
        t, shift = self.normalize_left(magnitude, constant_word(top - 1, (top - 1).bit_length() or 1))
        exp_top = constant_word(top, fmt.exp_bits + 2)
        exp_base, _ = self.sub(exp_top, shift + [ZERO] * (len(exp_top) - len(shift)))
        if width > p:
            sig, guard = t[width - p:], t[width - p - 1]
            rest = self.any_(t[: width - p - 1]) if width - p - 1 > 0 else ZERO
        else:
            sig, guard, rest = [ZERO] * (p - width) + t, ZERO, ZERO
        zero = self.none(list(x))
        special = (zero, [ZERO] * fmt.width)
        return self.round_pack(sign, exp_base, sig, guard, rest, special)

    def from_float(self, a: Sequence[Bit], src: Format, canonical_nan: bool) -> Word:
        """a, a float of format `src`, rounded to this format, ties to even (exact when
        this format is wider). A NaN keeps its sign and the top of its payload, made
        non-zero (numpy's float16 rule), or becomes the canonical quiet NaN."""
        dst = self.fmt
        ua = FloatOps(self.net, src, "ieee" if self.ieee else "ftz").unpack(a)
        ew = max(src.exp_bits, dst.exp_bits) + 2  # signed exponent arithmetic
        rebias = constant_word((dst.bias - src.bias) & ((1 << ew) - 1), ew)
        e_top, _ = self.add([*ua.exp, *[ZERO] * (ew - src.exp_bits)], rebias)
        t = list(ua.sig)
        if self.ieee:  # a subnormal source: normalise left, keeping the exponent >= 1
            budget, _ = self.sub(e_top, constant_word(1, ew))
            valid = self.not_(budget[-1])
            t, shift = self.normalize_left(t, [self.and_(v, valid) for v in budget])
            e_top = self.sub(e_top, shift + [ZERO] * (ew - len(shift)))[0]
        right, _ = self.sub(constant_word(1, ew), e_top)  # 1 - e: places right when e < 1
        tiny = self.and_(self.not_(right[-1]), self.any_(right))
        p = dst.frac_bits + 1
        t = [ZERO] * max(0, p + 1 - len(t)) + t  # room for the significand and guard
        t, sticky = self.shift_right_sticky(t, [self.and_(v, tiny) for v in right[:-1]], ZERO)
        exp_base = self.select(tiny, constant_word(1, ew), e_top)[: dst.exp_bits + 1]
        sig, guard = t[len(t) - p:], t[len(t) - p - 1]
        rest = self.or_(sticky, self.any_(t[: len(t) - p - 1]))
        overflow = self.and_(self.not_(e_top[-1]), self.any_(e_top[dst.exp_bits:]))
        inf = constant_word(((1 << dst.exp_bits) - 1) << dst.frac_bits, dst.width - 1)
        value = self.select(ua.is_zero, [ZERO] * (dst.width - 1), inf)
        if self.ieee:
            value = self.select(ua.is_nan, self._converted_nan(a, src, canonical_nan), value)
        special = (self.or_(ua.is_zero, ua.is_inf, ua.is_nan, overflow), [*value, ua.sign])
        return self.round_pack(ua.sign, exp_base, sig, guard, rest, special)

    def _converted_nan(self, a: Sequence[Bit], src: Format, canonical: bool) -> Word:
        """The NaN's exponent and fraction fields in this format (sign excluded)."""
        dst = self.fmt
        if canonical:
            return self.default_nan()[:-1]
        payload = list(a[: src.frac_bits])
        if dst.frac_bits >= src.frac_bits:
            frac = [ZERO] * (dst.frac_bits - src.frac_bits) + payload
        else:
            frac = payload[src.frac_bits - dst.frac_bits:]
            frac[0] = self.or_(frac[0], self.none(frac))  # never an infinity
        return [*frac, *[ONE] * dst.exp_bits]

    # ------------------------------------------------------------------ division, square root

    def _normalised(self, u: Unpacked) -> tuple[Word, Word]:
        """(significand with its top bit set, signed exponent) of a finite non-zero value:
        ieee subnormals are shifted up and their exponent lowered."""
        ew = self.fmt.exp_bits + 3
        exp = [*u.exp, *[ZERO] * (ew - len(u.exp))]
        if not self.ieee:
            return list(u.sig), exp
        sig, shift = self.normalize_left(list(u.sig), None)
        return sig, self.sub(exp, [*shift, *[ZERO] * (ew - len(shift))])[0]

    def _round_tiny(self, sign: Bit, e: Word, t: Word, sticky: Bit,
                    special: tuple[Bit, Word]) -> Word:
        """Round and pack t (top bit = the hidden bit, then guard and more) with biased,
        signed exponent e: below the normal range, shifted right first (subnormal)."""
        fmt, ew = self.fmt, len(e)
        p = fmt.frac_bits + 1
        right, _ = self.sub(constant_word(1, ew), e)  # 1 - e, meaningful when e < 1
        tiny = self.and_(self.not_(right[-1]), self.any_(right))
        t, sticky = self.shift_right_sticky(t, [self.and_(v, tiny) for v in right[:-1]], sticky)
        exp_base = self.select(tiny, constant_word(1, ew), e)[: fmt.exp_bits + 1]
        sig, guard = t[len(t) - p:], t[len(t) - p - 1]
        rest = self.or_(sticky, self.any_(t[: len(t) - p - 1]))
        overflow = self.and_(self.not_(e[-1]), self.any_(e[fmt.exp_bits:]))
        inf = [*constant_word(((1 << fmt.exp_bits) - 1) << fmt.frac_bits, fmt.width - 1), sign]
        return self.round_pack(sign, exp_base, sig, guard, rest,
                               self.either(special, (overflow, inf)))

    def fdiv(self, a: Sequence[Bit], b: Sequence[Bit]) -> Word:
        """a / b, correctly rounded: restoring division of the significands, one quotient
        bit per step (p + 2 of them), the remainder's non-zero-ness as the sticky bit."""
        fmt = self.fmt
        p = fmt.frac_bits + 1
        ua, ub = self.unpack(a), self.unpack(b)
        sign = self.xor(ua.sign, ub.sign)
        sa, ea = self._normalised(ua)
        sb, eb = self._normalised(ub)
        r = [*sa, ZERO]  # p + 1 bits: the partial remainder stays below 2 * sb
        divisor = [*sb, ZERO]
        quotient: list[Bit] = []  # most significant first
        for _ in range(p + 2):
            diff, no_borrow = self.sub(r, divisor)
            quotient.append(no_borrow)
            r = self.select(no_borrow, diff, r)
            r = [ZERO, *r[:-1]]  # times two
        ew = len(ea)
        e, _ = self.sub(ea, eb)
        e, _ = self.add(e, constant_word(fmt.bias, ew))
        top = quotient[0]  # the quotient is in (1/2, 2): its top bit may be 0
        t = self.select(top, quotient[::-1], [ZERO, *quotient[:0:-1]])
        e = self.sub(e, [self.not_(top), *[ZERO] * (ew - 1)])[0]
        sticky = self.any_(r)
        zero = [ZERO] * (fmt.width - 1)
        inf = constant_word(((1 << fmt.exp_bits) - 1) << fmt.frac_bits, fmt.width - 1)
        if self.ieee:
            invalid = self.or_(self.and_(ua.is_zero, ub.is_zero), self.and_(ua.is_inf, ub.is_inf))
            nan = self.or_(ua.is_nan, ub.is_nan, invalid)
            to_inf = self.or_(ua.is_inf, ub.is_zero)
            value = self.select(nan, self.nan_result(a, b, ua, ub),
                                [*self.select(to_inf, inf, zero), sign])
            special = (self.or_(nan, to_inf, ua.is_zero, ub.is_inf), value)
        else:  # a zero divisor is outside the mode's domain; a zero dividend gives zero
            special = (ua.is_zero, [*zero, sign])
        return self._round_tiny(sign, e, t, sticky, special)

    def fsqrt(self, a: Sequence[Bit]) -> Word:
        """sqrt(a), correctly rounded: the restoring (digit by digit) square root of the
        significand, p + 2 root bits, the remainder's non-zero-ness as the sticky bit."""
        fmt = self.fmt
        p = fmt.frac_bits + 1
        u = self.unpack(a)
        sig, e = self._normalised(u)
        ew = len(e)
        t, _ = self.sub(e, constant_word(fmt.bias, ew))  # unbiased, signed
        odd = t[0]
        half = [*t[1:], t[-1]]  # floor(t / 2)
        e_root, _ = self.add(half, constant_word(fmt.bias, ew))
        # v = sig (odd exponent: 2 sig) as an integer with p - 1 fraction bits, p + 1 bits.
        v = self.select(odd, [ZERO, *sig], [*sig, ZERO])
        n = p + 2
        radicand = [*[ZERO] * (2 * n - len(v)), *v]  # v * 2^(p + 3): 2n bits
        rem: Word = [ZERO] * (n + 2)
        root: Word = []  # least significant first
        for i in reversed(range(n)):
            rem = [radicand[2 * i], radicand[2 * i + 1], *rem[:-2]]
            trial = [ONE, ZERO, *root, *[ZERO] * (n - len(root))][: n + 2]
            diff, no_borrow = self.sub(rem, trial)
            rem = self.select(no_borrow, diff, rem)
            root = [no_borrow, *root]
        sticky = self.any_(rem)
        negative = self.and_(u.sign, self.not_(u.is_zero))
        zero = [ZERO] * (fmt.width - 1)
        if self.ieee:
            nan = self.or_(u.is_nan, negative)
            kept = [*self.default_nan()[:-1], a[-1]] if self.canonical_nan else self.quiet(a)
            quiet = self.select(u.is_nan, kept, self.default_nan())
            value = self.select(nan, quiet, [*self.select(u.is_inf, constant_word(
                ((1 << fmt.exp_bits) - 1) << fmt.frac_bits, fmt.width - 1), zero), u.sign])
            special = (self.or_(nan, u.is_inf, u.is_zero), value)
        else:  # negative numbers are outside the mode's domain
            special = (u.is_zero, [*zero, u.sign])
        return self._round_tiny(ZERO, e_root, root, sticky, special)
