"""IEEE-754 binary floating point (any exponent and fraction width) over NOR netlists.

Two modes: `ieee` handles subnormal inputs and outputs, signed zeros, overflow to
infinity, infinities and NaN (propagated as x86/numpy does for float32: the first NaN
operand, quieted; invalid operations give the negative default NaN); `ftz` is the
subset the published PIM designs implement: subnormal inputs read as zero, results
below the normal range flush to zero, and operands or results outside the finite
range are undefined. Both round to nearest, ties to even. Algorithms and costs are in
docs/arithmetic.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pimc.synth.fixed import Fixed
from pimc.synth.logic import Word
from pimc.synth.netlist import ONE, ZERO, Bit


@dataclass(frozen=True)
class Format:
    exp_bits: int
    frac_bits: int

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def width(self) -> int:
        return 1 + self.exp_bits + self.frac_bits


FORMATS = {"f32": Format(8, 23), "bf16": Format(8, 7), "f16": Format(5, 10)}


@dataclass(frozen=True)
class Unpacked:
    sign: Bit
    exp: Word  # effective biased exponent (1 for subnormals in ieee mode)
    sig: Word  # significand with the hidden bit on top, frac_bits + 1 bits
    raw_mag: Word  # exponent and fraction fields: orders magnitudes as an integer
    is_nan: Bit
    is_inf: Bit
    is_zero: Bit


def constant_word(value: int, width: int) -> Word:
    return [ONE if value >> i & 1 else ZERO for i in range(width)]


class Floating(Fixed):
    def __init__(self, net, fmt: Format, mode: str,
                 nan_rule: tuple[bool, bool] = (False, False), align: str = "nor") -> None:
        super().__init__(net)
        if mode not in ("ieee", "ftz") or align not in ("nor", "search"):
            raise ValueError((mode, align))
        self.align = align
        self.fmt, self.ieee = fmt, mode == "ieee"
        self.b_nan_first, self.canonical_nan = nan_rule

    # ------------------------------------------------------------------ fields

    def unpack(self, x: Sequence[Bit], mask_subnormal: bool = True) -> Unpacked:
        """Fields of x. ftz reads subnormals as zero; `mask_subnormal=False` leaves their
        fraction bits in the significand for callers that zero such results anyway."""
        m, e_bits = self.fmt.frac_bits, self.fmt.exp_bits
        frac, exp, sign = list(x[:m]), list(x[m:m + e_bits]), x[m + e_bits]
        e_zero = self.none(exp)
        hidden = self.not_(e_zero)
        f_zero = self.none(frac)
        if self.ieee:
            exp_eff = [self.or_(exp[0], e_zero), *exp[1:]]
            sig = [*frac, hidden]
            e_ones = self.net.nor(*self.invert(exp))
            is_nan = self.net.nor(self.not_(e_ones), f_zero)
            is_inf = self.net.nor(self.not_(e_ones), self.not_(f_zero))
            is_zero = self.and_(e_zero, f_zero)
        else:  # subnormal inputs read as zero
            exp_eff = exp
            sig = [self.net.nor(self.not_(f), e_zero) for f in frac] if mask_subnormal else frac
            sig = [*sig, hidden]
            is_nan = is_inf = ZERO
            is_zero = e_zero
        return Unpacked(sign, exp_eff, sig, frac + exp, is_nan, is_inf, is_zero)

    def quiet(self, x: Sequence[Bit]) -> Word:
        """x with the quiet bit (the fraction's top bit) set."""
        out = list(x)
        out[self.fmt.frac_bits - 1] = ONE
        return out

    def default_nan(self) -> Word:
        return self.quiet(constant_word(((1 << (self.fmt.exp_bits + 1)) - 1) << self.fmt.frac_bits,
                                    self.fmt.width))

    def nan_result(self, a: Sequence[Bit], b: Sequence[Bit], ua: Unpacked, ub: Unpacked) -> Word:
        """The NaN numpy returns: a NaN operand, quieted (which one, and whether its payload
        survives, depends on the dtype: oracle.numpy_nan_rule); else the default NaN."""
        if self.b_nan_first:
            chosen = self.select(ub.is_nan, self.quiet(b), self.quiet(a))
        else:
            chosen = self.select(ua.is_nan, self.quiet(a), self.quiet(b))
        if self.canonical_nan:
            chosen = [*self.default_nan()[:-1], chosen[-1]]
        return self.select(self.or_(ua.is_nan, ub.is_nan), chosen, self.default_nan())

    # ------------------------------------------------------------------ shifting

    def shift_right_sticky(self, x: Word, amount: Word, sticky: Bit) -> tuple[Word, Bit]:
        """x >> amount (zeros in) and sticky |= every bit shifted out."""
        stages = max(1, len(x).bit_length())
        for j in range(min(stages, len(amount))):
            k = 1 << j
            sticky = self.or_(sticky, self.and_(amount[j], self.any_(x[:k])))
            shifted = x[k:] + [ZERO] * k if k < len(x) else [ZERO] * len(x)
            x = self.select(amount[j], shifted, x)
        high = amount[stages:]
        if high:
            big = self.any_(high)
            sticky = self.or_(sticky, self.and_(big, self.any_(x)))
            x = [self.and_(v, self.not_(big)) for v in x]
        return x, sticky

    def align_by_search(self, x: Word, amount: Word) -> tuple[Word, Bit]:
        """shift_right_sticky by FloatPIM's method: one exact SEARCH per shift amount k, and
        in its rows, predicated NORs write the shifted bits. The result is built complemented
        (cells start at 1, and a NOR writes the complement), so bits shifted in from above,
        which are 0, need no write at all; nor do the rows of amounts >= len(x)."""
        n = len(x)
        inverted: list[Bit | None] = [None] * n
        # Prefix ORs of x, for the sticky bit of each amount.
        prefix: list[Bit] = [ZERO]
        for v in x:
            prefix.append(self.or_(prefix[-1], v))
        no_sticky: Bit | None = None
        limit = min(n, 1 << len(amount))
        for k in range(limit):
            when = (tuple(amount), k)
            for i in range(n - k):
                inverted[i] = self.net.predicated_nor(when, (x[i + k],), inverted[i])
            if prefix[k] != ZERO:
                no_sticky = self.net.predicated_nor(when, (prefix[k],), no_sticky)
        # Amounts of n or more: every bit is shifted out into the sticky bit.
        big = self.not_(self.less_than(amount, constant_word(n, len(amount)), signed=False))
        if limit < (1 << len(amount)) and prefix[n] != ZERO:
            no_sticky = self.net.predicated_nor(((big,), 1), (prefix[n],), no_sticky)
        aligned = [self.not_(v) if v is not None else ZERO for v in inverted]
        return aligned, self.not_(no_sticky) if no_sticky is not None else ZERO

    def normalize_left(self, x: Word, budget: Word | None) -> tuple[Word, Word]:
        """Shift x left until its top bit is 1; with a budget, by at most `budget` places.

        Returns the shifted word and the shift (binary, least significant bit first). The
        shift is min(leading zeros, budget), decided from the most significant stage down:
        while the stages taken so far equal the budget's high bits ("tight"), a stage may
        only be taken where the budget has a 1.
        """
        n = len(x)
        stages = max(1, (n - 1).bit_length())
        shift: Word = [ZERO] * stages
        cap: Word = []
        tight = ONE
        if budget is not None:
            high = self.any_(budget[stages:]) if len(budget) > stages else ZERO
            cap = [self.or_(budget[j], high) if j < len(budget) else high
                   for j in range(stages)]
        for j in reversed(range(stages)):
            k = 1 << j
            go = self.none(x[n - k:])
            if budget is not None:
                go = self.and_(go, self.or_(self.not_(tight), cap[j]))
                tight = self.and_(tight, self.or_(self.not_(cap[j]), go))
            x = self.select(go, [ZERO] * k + x[: n - k], x)
            shift[j] = go
        return x, shift

    # ------------------------------------------------------------------ rounding and packing

    def round_pack(self, sign: Bit, exp_base: Word, sig: Word, guard: Bit, rest: Bit,
                   special: tuple[Bit, Word] | None = None) -> Word:
        """Round sig (hidden bit on top) to nearest even and pack.

        exp_base is the biased exponent for when the hidden bit is set (>= 1). Rounding
        increments the exponent and fraction fields as one integer, so a carry out of the
        fraction bumps the exponent, and a subnormal that rounds up becomes normal. ftz
        flushes a result whose exponent field is still 0 after rounding.
        """
        fmt = self.fmt
        m, e = fmt.frac_bits, fmt.exp_bits
        hidden = sig[-1]
        field = [self.and_(x, hidden) for x in exp_base[:e]]
        up = self.and_(guard, self.or_(rest, sig[0]))
        body, _ = self.increment(sig[:m] + field, up)
        zero = [ZERO] * (fmt.width - 1) + [sign]
        if self.ieee:
            high = self.any_(exp_base[e:]) if len(exp_base) > e else ZERO
            overflow = self.and_(hidden, self.or_(high, self.and_(*exp_base[:e])))
            body = self.select(overflow, constant_word(((1 << e) - 1) << m, fmt.width - 1), body)
        else:
            special = self.either(special, (self.none(body[m:]), zero))
        packed = [*body, sign]
        if special is not None:
            packed = self.select(special[0], special[1], packed)
        return packed

    def either(self, first: tuple[Bit, Word] | None,
               second: tuple[Bit, Word]) -> tuple[Bit, Word]:
        """Combine two (condition, value) overrides; the first wins where both apply."""
        if first is None:
            return second
        if first[1] == second[1]:
            return self.or_(first[0], second[0]), first[1]
        return self.or_(first[0], second[0]), self.select(first[0], first[1], second[1])

    # ------------------------------------------------------------------ operations

    def fadd(self, a: Sequence[Bit], b_in: Sequence[Bit], negate_b: bool = False) -> Word:
        """a + b (or a - b): align, add or subtract, normalise, round."""
        fmt = self.fmt
        b = list(b_in)
        if negate_b:
            b[-1] = self.not_(b[-1])
        ua, ub = self.unpack(a), self.unpack(b)
        swap = self.less_than(ua.raw_mag, ub.raw_mag, signed=False)
        big_s = self.mux(swap, ub.sign, ua.sign)
        big_e = self.select(swap, ub.exp, ua.exp)
        small_e = self.select(swap, ua.exp, ub.exp)
        big_m = self.select(swap, ub.sig, ua.sig)
        small_m = self.select(swap, ua.sig, ub.sig)
        diff, _ = self.sub(big_e, small_e)
        # Aligned small significand with guard and round positions below it.
        shifter = self.align_by_search if self.align == "search" else (
            lambda x, d: self.shift_right_sticky(x, d, ZERO))
        aligned, sticky = shifter([ZERO, ZERO, *small_m], diff)
        op = self.xor(ua.sign, ub.sign)  # effective subtraction
        wide_b = [sticky, *aligned]
        wide_a = [ZERO, ZERO, ZERO, *big_m]
        addend = [self.xor(v, op) for v in wide_b]
        total, carry = self.add(wide_a, addend, op)
        carry = self.and_(carry, self.not_(op))  # a subtraction's carry is the borrow-free 1
        # Carry: shift right once (the sticky keeps what falls out).
        shifted = [self.or_(total[0], total[1]), *total[2:], ONE]
        t = self.select(carry, shifted, total)
        exp_base, _ = self.increment([*big_e, ZERO], carry)
        # Normalise left. ieee: by at most exponent - 1 places, so that a result below the
        # normal range comes out subnormal. ftz: all the way, then flush if that underflows.
        budget = self.sub(exp_base, constant_word(1, len(exp_base)))[0] if self.ieee else None
        t, shift = self.normalize_left(t, budget)
        exp_base, no_borrow = self.sub(exp_base, shift + [ZERO] * (len(exp_base) - len(shift)))
        underflow = ZERO if self.ieee else self.or_(self.not_(no_borrow), self.none(exp_base))
        sig, guard, rest = t[3:], t[2], self.or_(t[1], t[0])
        exact_zero = self.none([*total, carry])
        sign = self.mux(exact_zero, self.and_(ua.sign, ub.sign), big_s)
        special = None
        if self.ieee:
            invalid = self.and_(ua.is_inf, ub.is_inf, op)
            nan = self.or_(ua.is_nan, ub.is_nan, invalid)
            inf_sign = self.mux(ua.is_inf, ua.sign, ub.sign)
            inf = constant_word(((1 << fmt.exp_bits) - 1) << fmt.frac_bits, fmt.width - 1)
            special_value = self.select(nan, self.nan_result(a, b_in, ua, ub), [*inf, inf_sign])
            special = (self.or_(nan, ua.is_inf, ub.is_inf), special_value)
        if underflow != ZERO:
            special = self.either(special, (underflow, [ZERO] * (fmt.width - 1) + [sign]))
        return self.round_pack(sign, exp_base, sig, guard, rest, special)

    def fsub(self, a: Sequence[Bit], b: Sequence[Bit]) -> Word:
        return self.fadd(a, b, negate_b=True)

    def fmul(self, a: Sequence[Bit], b: Sequence[Bit]) -> Word:
        """a * b: significand product, exponent sum, normalise, round."""
        fmt = self.fmt
        p = fmt.frac_bits + 1
        ew = fmt.exp_bits + 2  # signed exponent arithmetic
        minus_bias = constant_word(-fmt.bias & ((1 << ew) - 1), ew)
        # ftz: a zero or subnormal operand makes the result zero below, whatever the product.
        ua, ub = self.unpack(a, mask_subnormal=False), self.unpack(b, mask_subnormal=False)
        sign = self.xor(ua.sign, ub.sign)
        prod = self.multiply(ua.sig, ub.sig, signed=False)  # 2p bits, value in [0, 4)
        is_zero_in = self.or_(ua.is_zero, ub.is_zero)
        if not self.ieee:
            return self._fmul_ftz(ua, ub, sign, prod, minus_bias, is_zero_in)
        # Exponent if the product's top bit (2p-1) is the hidden bit: ea + eb - bias + 1.
        e_sum, _ = self.add([*ua.exp, ZERO, ZERO], [*ub.exp, ZERO, ZERO], ONE)
        e_top, _ = self.add(e_sum, minus_bias)
        # Normalise left (subnormal inputs: by many places), keeping the exponent >= 1.
        budget, _ = self.sub(e_top, constant_word(1, ew))
        valid = self.not_(budget[-1])
        budget = [self.and_(v, valid) for v in budget]
        t, shift = self.normalize_left(prod, budget)
        e_top = self.sub(e_top, shift + [ZERO] * (ew - len(shift)))[0]
        # Tiny results: shift right until the exponent is 1.
        right, _ = self.sub(constant_word(1, ew), e_top)  # 1 - e, meaningful when e < 1
        tiny = self.and_(self.not_(right[-1]), self.any_(right))
        t, sticky = self.shift_right_sticky(t, [self.and_(v, tiny) for v in right[:-1]], ZERO)
        exp_base = self.select(tiny, constant_word(1, ew), e_top)[: fmt.exp_bits + 1]
        width = len(t)
        sig, guard = t[width - p:], t[width - p - 1]
        rest = self.or_(sticky, self.any_(t[: width - p - 1]))
        overflow_in = self.and_(self.not_(e_top[-1]), self.any_(e_top[fmt.exp_bits:]))
        invalid = self.or_(self.and_(ua.is_inf, ub.is_zero), self.and_(ub.is_inf, ua.is_zero))
        nan = self.or_(ua.is_nan, ub.is_nan, invalid)
        inf = constant_word(((1 << fmt.exp_bits) - 1) << fmt.frac_bits, fmt.width - 1)
        zero = [ZERO] * (fmt.width - 1)
        special_value = self.select(nan, self.nan_result(a, b, ua, ub),
                                    [*self.select(is_zero_in, zero, inf), sign])
        special = (self.or_(nan, ua.is_inf, ub.is_inf, overflow_in, is_zero_in), special_value)
        return self.round_pack(sign, exp_base, sig, guard, rest, special)

    def _fmul_ftz(self, ua: Unpacked, ub: Unpacked, sign: Bit, prod: Word, minus_bias: Word,
                  is_zero_in: Bit) -> Word:
        """Normal significands: the product is in [1, 4), so the hidden bit is one of the top
        two bits, and a result can reach the normal range only from exponent field 0, by one
        place right and a rounding carry. Only the significand and guard are selected; the
        bits below fold into the sticky bit."""
        fmt = self.fmt
        p = fmt.frac_bits + 1
        top = prod[-1]
        e_sum, _ = self.add([*ua.exp, ZERO, ZERO], [*ub.exp, ZERO, ZERO], top)
        field, _ = self.add(e_sum, minus_bias)  # ea + eb + top - bias
        low = self.any_(prod[: p - 2])
        window = self.select(top, prod[p - 1:], prod[p - 2:-1])  # guard, then significand
        sticky = self.or_(low, self.and_(top, prod[p - 2]))
        edge = self.none(field)  # field 0: one place right, exponent 1
        shifted = [*window[1:], ZERO]
        sticky = self.or_(sticky, self.and_(edge, window[0]))
        window = self.select(edge, shifted, window)
        exp_base = [self.or_(field[0], edge), *field[1: fmt.exp_bits + 1]]
        special = (self.or_(is_zero_in, field[-1]), [ZERO] * (fmt.width - 1) + [sign])
        return self.round_pack(sign, exp_base, window[1:], window[0], sticky, special)
