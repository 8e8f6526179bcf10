"""Exp, Log, Sigmoid and Tanh from the IR's float32 arithmetic (each op IEEE, round to
nearest even), so that the micro-code and the order-matched reference agree bit for bit
by construction; bfloat16 and float16 compute in float32 and round once at the end.

Every float32 result is faithful (below 1 ulp): each is arranged so that one addition
rounds last, the parts before it carried exactly or at a much smaller size.

exp(x): k = round(x / ln 2) by adding and subtracting 1.5 * 2^23; r = x - k ln 2 in two
parts (Cody and Waite: ln 2's high part has 16 significant bits, so x - k * LN2_HI is
exact); exp(r) = 1 + r_hi + (r^2 P(r) + r_lo) on [-ln2/2, ln2/2], P Taylor's to r^8, the
1 + r_hi split exactly (Fast2Sum); then the scaling by 2^k as two multiplications by
powers of two built from integer bits (k split in halves, so each factor is a normal
float and only the last product rounds: subnormal results and overflow to infinity come
out right). x is first clamped to [-104, 89], beyond which the result is 0 or infinity
anyway; NaN passes through. sigmoid(x) = e / (1 + e) below 0 and 1 - e / (1 + e) from
0, e = exp(-|x|); tanh(x) = sign(x) (1 - 2 / (1 + exp(2|x|))) for |x| >= 0.5625 and an
odd polynomial below, where 1 - ... would cancel; both divide exp's two parts with the
quotient's remainder carried. log(x) = e ln 2 + log(m) with m in [sqrt(1/2), sqrt(2)):
the exponent field (an AND of the bits) converted to float, the significand given
exponent 0; log(1 + f) = f - (f^2/2 - s (f^2/2 + z Q(z))), s = f / (2 + f), z = s^2 (f
exact; fdlibm's arrangement); zero, negatives, infinity and NaN by selects.
"""

from __future__ import annotations

import math

import numpy as np

from pimc.frontend.onnx_windows import Unsupported
from pimc.isa.view import ZERO, ViewOp
from pimc.synth.floating import FORMATS

MAGIC = 12582912.0  # 1.5 * 2^23: x + MAGIC - MAGIC rounds x to an integer (|x| < 2^22)
MAGIC_BITS = 0x4B400000
LOG2E = float(np.float32(1.4426950408889634))
LN2_HI = 0.693145751953125  # 0x3f317200
LN2_LO = float(np.float32(1.4286068203094172e-06))
# exp(r) = 1 + r + r^2 P(r): P's Taylor coefficients, highest first (to r^8: truncation
# below 0.01 ulp on |r| <= ln2 / 2)
EXP_P = [1 / 40320, 1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2]
# tanh(x) = x + x^3 * q(x^2) on [0, 0.5625]: q's coefficients (highest first), a least-
# squares fit of (tanh(x) - x) / x^3 on 2,000 Chebyshev nodes weighted for relative error,
# rounded to float32 (0.78 ulp at most over the interval, evaluated in float32).
TANH_Q = [float(np.float32(c)) for c in (
    -6.1933915131e-03, 2.1018454805e-02, -5.3840547800e-02, 1.3332487643e-01,
    -3.3333316445e-01)]
TANH_SMALL = 0.5625
SQRT2 = float(np.float32(1.4142135))
# log(1 + f) = 2 atanh(s) = 2s + s z Q(z), s = f / (2 + f), z = s^2 <= 0.0295: Q's Taylor
# coefficients 2/3, 2/5, 2/7, 2/9, 2/11 (highest first; truncation below 0.02 ulp); 2s is
# rewritten as f - f^2/2 + s f^2/2 (fdlibm's form) so that the exact f comes last.
LOG_Q = [2 / 11, 2 / 9, 2 / 7, 2 / 5, 2 / 3]


# significant bits of the float types narrower than float32 (bf16 8, f16 11)
SHORT = {name: f.frac_bits + 1 for name, f in FORMATS.items()
         if f.frac_bits < FORMATS["f32"].frac_bits}


def exp_degree(bits: int) -> int:
    """The least degree of exp's Taylor polynomial on |r| <= ln2 / 2 whose truncation
    (the next term, times e^|r| < 1.5) is below 1/8 of half an ulp of a `bits`-bit
    result."""
    d = 1
    while (math.log(2) / 2) ** (d + 1) / math.factorial(d + 1) * 1.5 > 2.0 ** -(bits + 4):
        d += 1
    return d


class TranscendentalOps:
    """A mixin of the ONNX importer (pimc.frontend.onnx_import._Builder)."""

    def _f32(self, x: int) -> tuple[int, str]:
        """x in float32 (and its own type, to round back to at the end)."""
        dt = str(self.info(x).dtype)
        if dt not in ("f32", "bf16", "f16"):
            raise Unsupported(f"needs a float type, not {dt} (compile with --dtype f32, "
                              "bf16 or f16)")
        return self._cast(x, "f32"), dt

    def _c(self, value: float) -> int:
        return self._scalar(value, "f32")

    def _f(self, op: str, a: int, b: int | float) -> int:
        """A float32 binary op; a Python number is a constant."""
        return self.binary(op, a, self._c(b) if isinstance(b, float) else b)

    def _i(self, op: str, a: int, b: int) -> int:
        """An int32 binary op with a constant."""
        const = self._scalar(b, "i32")
        return self.binary(op, a, const)

    def _bitcast(self, x: int, dt: str) -> int:
        return self.node("bitcast", dt, self.info(x).shape, (x,))

    def _round_int(self, x: int) -> tuple[int, int]:
        """(x rounded to an integer, as float32; the same as int32 bits)."""
        u = self._f("add", x, MAGIC)
        return self._f("sub", u, MAGIC), self._i("sub", self._bitcast(u, "i32"), MAGIC_BITS)

    def _power_of_two(self, k: int) -> int:
        """2^k as float32 for an int32 k in -126..127: (k + 127) << 23 as bits."""
        biased = self._i("add", k, 127)
        return self._bitcast(self._i("mul", biased, 1 << 23), "f32")

    def exp32(self, x: int) -> int:
        return self.exp_parts(x)[0]

    def exp_parts(self, x: int, low: bool = False, x_lo: int | None = None
                  ) -> tuple[int, int | None]:
        """exp(x + x_lo) rounded once to float32, and with `low` the rest (exp = hi + lo
        within 0.2 ulp of hi), from which sigmoid and tanh divide without a second
        rounding. r = x - k ln2 is kept in two parts (the first exact), and 1 + r in
        two (Fast2Sum), so that only the last addition rounds: 0.76 ulp at most."""
        x = self._f("min", self._f("max", x, -104.0), 89.0)
        kf, _ = self._round_int(self._f("mul", x, LOG2E))
        r_hi = self._f("sub", x, self._f("mul", kf, LN2_HI))  # exact
        r_lo = self._f("mul", kf, -LN2_LO)
        if x_lo is not None:  # the argument's own low part
            r_lo = self._f("add", r_lo, x_lo)
        r = self._f("add", r_hi, r_lo)
        p = self._c(EXP_P[0])
        for c in EXP_P[1:]:
            p = self._f("add", self._f("mul", p, r), c)
        q = self._f("add", self._f("mul", self._f("mul", r, r), p), r_lo)  # r^2 P(r) + r_lo
        one_r, err = self._fast2sum(self._c(1.0), r_hi)
        rest = self._f("add", err, q)
        y = self._f("add", one_r, rest)
        a, b = self._scales(kf)
        lo = self._f("add", self._f("sub", one_r, y), rest) if low else None
        return (self._f("mul", self._f("mul", y, a), b),
                None if lo is None else self._f("mul", self._f("mul", lo, a), b))

    def _scales(self, kf: int) -> tuple[int, int]:
        """2^k as two normal float32 factors (k split in halves), so that only the last
        product of a scaling rounds: subnormal results and overflow come out right."""
        half, k1 = self._round_int(self._f("mul", kf, 0.5))
        _, k2 = self._round_int(self._f("sub", kf, half))
        return self._power_of_two(k1), self._power_of_two(k2)

    def exp_short(self, x: int, bits: int) -> int:
        """exp(x) in float32 for a result of `bits` significant bits (bfloat16 8, float16
        11), where being far below half its ulp is enough for the one rounding to it to
        be faithful: r = x - k ln 2 rounded once, Taylor's polynomial of the least degree
        whose truncation is below 1/8 of that (4 for bfloat16, 5 for float16), the
        scaling by 2^k as exp32's. About half exp32's multiplications."""
        x = self._f("min", self._f("max", x, -104.0), 89.0)
        kf, _ = self._round_int(self._f("mul", x, LOG2E))
        r = self._f("add", self._f("sub", x, self._f("mul", kf, LN2_HI)),
                    self._f("mul", kf, -LN2_LO))
        degree = exp_degree(bits)
        p = self._c(1 / math.factorial(degree))
        for n in range(degree - 1, -1, -1):
            p = self._f("add", self._f("mul", p, r), 1 / math.factorial(n))
        a, b = self._scales(kf)
        return self._f("mul", self._f("mul", p, a), b)

    def _fast2sum(self, big: int, small: int, op: str = "add") -> tuple[int, int]:
        """big op small rounded, and its rounding error exactly (Fast2Sum: |big| >=
        |small|; op add or sub)."""
        s = self._f(op, big, small)
        return s, self._f(op, self._f("sub", big, s), small)

    def _one_plus(self, hi: int, lo: int, hi_larger: bool) -> tuple[int, int]:
        """1 + hi + lo as s + t, s = 1 + hi rounded; t exact but for lo's addition."""
        s, err = self._fast2sum(*((hi, self._c(1.0)) if hi_larger else (self._c(1.0), hi)))
        return s, self._f("add", err, lo)

    def _one_minus(self, d: int, c: int) -> int:
        """1 - (d + c) rounded once: 1 - d = u + ulo exactly (d <= 1), then u + (ulo - c)."""
        u, ulo = self._fast2sum(self._c(1.0), d, "sub")
        return self._f("add", u, self._f("sub", ulo, c))

    def op_Exp(self, nd, attrs):
        x, dt = self._f32(self.operand(nd.input[0]))
        return self._cast(self.exp32(x), dt)

    def op_Sigmoid(self, nd, attrs):
        """e / (1 + e) below 0 and 1 - e / (1 + e) from 0, e = exp(-|x|) in two parts:
        the quotient y0 plus its remainder's share ((e - y0) is exact, y0 (s - 1) rounds
        at the size of y0 e), so that the result rounds once: 0.81 ulp at most."""
        x, dt = self._f32(self.operand(nd.input[0]))
        e, e_lo = self.exp_parts(self.unary("neg", self.unary("abs", x)), low=True)
        s, t = self._one_plus(e, e_lo, hi_larger=False)
        y0 = self.binary("div", e, s)
        rem = self._f("sub", self._f("sub", e, y0), self._f("mul", y0, self._f("sub", s, 1.0)))
        c = self.binary("div", self._f("add", rem, self._f(
            "sub", e_lo, self._f("mul", y0, t))), s)  # e / (1 + e) = y0 + c
        y = self._select(self._f("ge", x, 0.0), self._one_minus(y0, c), self._f("add", y0, c))
        return self._cast(y, dt)

    def op_Tanh(self, nd, attrs):
        """1 - 2 / (1 + E), E = exp(2|x|) in two parts (|x| clamped at 10, where tanh
        rounds to 1), rounded once; below 0.5625 an odd polynomial. 0.78 ulp at most."""
        x, dt = self._f32(self.operand(nd.input[0]))
        a = self._f("min", self.unary("abs", x), 10.0)
        e, e_lo = self.exp_parts(self._f("add", a, a), low=True)
        s, t = self._one_plus(e, e_lo, hi_larger=True)
        d0 = self.binary("div", self._c(2.0), s)
        c = self.binary("div", self.unary("neg", self._f("mul", d0, t)), s)
        big = self._one_minus(d0, c)
        big = self._select(self._f("lt", x, 0.0), self.unary("neg", big), big)
        s2 = self._f("mul", x, x)
        q = self._c(TANH_Q[0])
        for k in TANH_Q[1:]:
            q = self._f("add", self._f("mul", q, s2), k)
        small = self._f("add", x, self._f("mul", self._f("mul", x, s2), q))  # keeps -0's sign
        y = self._select(self._f("lt", a, TANH_SMALL), small, big)
        y = self._select(self._f("eq", x, 0.0), x, y)  # tanh(-0) = -0
        return self._cast(y, dt)

    def log32(self, x: int) -> int:
        return self.log_parts(x)[0]

    def log_parts(self, x: int, low: bool = False) -> tuple[int, int | None]:
        """log(x) rounded once (0.80 ulp at most), and with `low` its rest: log(x) =
        hi + lo to about 2^-10 ulp of hi (the exact f, the exact e * LN2_HI and the
        small rest summed by Fast2Sum), for a power's exp(beta log(x)), whose error is
        the log's absolute error."""
        tiny = self._f("lt", x, 2.0 ** -126)  # subnormals: scaled up by 2^23 first
        x = self._select(tiny, self._f("mul", x, 2.0 ** 23), x)
        bits = self._bitcast(x, "i32")
        field = self._i("and", bits, 0x7F800000)  # the exponent field, E << 23
        ef = self._f("sub", self._f("mul", self.node(
            "cast", "f32", self.info(field).shape, (field,)), 2.0 ** -23), 127.0)
        ef = self._f("sub", ef, self._select(tiny, self._c(23.0), self._c(0.0)))
        m = self._bitcast(self._i("add", self._i("and", bits, 0x007FFFFF), 0x3F800000), "f32")
        big = self._f("gt", m, SQRT2)  # m in [sqrt(1/2), sqrt(2)): |log m| < ln2 / 2
        m = self._select(big, self._f("mul", m, 0.5), m)
        ef = self._f("add", ef, self._select(big, self._c(1.0), self._c(0.0)))
        f = self._f("sub", m, 1.0)  # exact
        s = self.binary("div", f, self._f("add", f, 2.0))
        z = self._f("mul", s, s)
        q = self._c(LOG_Q[0])
        for c in LOG_Q[1:]:
            q = self._f("add", self._f("mul", q, z), c)
        # log(1 + f) = f - (f^2/2 - s (f^2/2 + z Q)): f exact, the rest small (fdlibm's form)
        hfsq = self._f("mul", self._f("mul", f, f), 0.5)
        small = self._f("add", self._f("mul", s, self._f("add", hfsq, self._f("mul", z, q))),
                        self._f("mul", ef, LN2_LO))
        whole = self._f("mul", ef, LN2_HI)  # exact
        lo = None
        if low:  # f + (small - f^2/2), then whole + that, each split by Fast2Sum
            b_hi, b_lo = self._fast2sum(f, self._f("sub", small, hfsq))
            y, err = self._fast2sum(whole, b_hi)
            lo = self._f("add", err, b_lo)
        else:
            y = self._f("sub", whole, self._f("sub", self._f("sub", hfsq, small), f))
        y = self._select(self._f("eq", x, float("inf")), x, y)
        y = self._select(self._f("eq", x, 0.0), self._c(float("-inf")), y)
        y = self._select(self._f("lt", x, 0.0), self._c(float("nan")), y)
        y = self._select(self._f("ne", x, x), x, y)  # NaN in, NaN out
        if lo is not None:  # no rest beside an infinite or NaN log
            lo = self._select(self._f("lt", self.unary("abs", y), 1e30), lo, self._c(0.0))
        return y, lo

    def _split(self, a: int) -> tuple[int, int]:
        """Veltkamp's split of a float32 into two halves of 12 significant bits, whose
        products are exact (|a| < 2^115)."""
        c = self._f("mul", a, 4097.0)
        h = self._f("sub", c, self._f("sub", c, a))
        return h, self._f("sub", a, h)

    def _two_prod(self, a: int, b: int | float) -> tuple[int, int]:
        """a * b rounded, and its rounding error exactly (Dekker's product; a constant b
        split on the host)."""
        p = self._f("mul", a, b)
        ah, al = self._split(a)
        if isinstance(b, float):  # Veltkamp's split, as _split does it
            b32 = np.float32(b)
            c = np.float32(4097) * b32
            high = c - (c - b32)
            bh, bl = self._c(float(high)), self._c(float(b32 - high))
        else:
            bh, bl = self._split(b)
        err = self._f("add", self._f("add", self._f("add", self._f(
            "sub", self._f("mul", ah, bh), p), self._f("mul", ah, bl)), self._f("mul", al, bh)),
            self._f("mul", al, bl))
        return p, err

    def op_Log(self, nd, attrs):
        x, dt = self._f32(self.operand(nd.input[0]))
        return self._cast(self.log32(x), dt)

    def _softmax(self, nd, attrs):
        """(x - max, exp of it, their sum, the type to round back to, the way back to
        x's shape), over `axis` (before opset 13: the axes from `axis` on, flattened)."""
        x = self.operand(nd.input[0])
        shape = self.info(x).shape
        r = max(len(shape), 1)
        axis = int(attrs.get("axis", -1 if self.opset >= 13 else 1))
        if not -r <= axis < r:
            raise Unsupported(f"axis {axis} of a rank-{len(shape)} input")
        axis %= r
        if self.opset < 13:
            flat = self.reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])))
            back = lambda y: self.reshape(y, shape)  # noqa: E731
        else:  # the axis last, and back
            perm = (*[i for i in range(len(shape)) if i != axis], axis)
            flat = self.transpose(x, perm)
            inv = tuple(int(i) for i in np.argsort(perm))
            back = lambda y: self.transpose(y, inv)  # noqa: E731
        xf, dt = self._f32(flat)
        s = self.info(xf).shape
        keep = (*s[:-1], 1)
        top = self.reshape(self.node("reduce_max", "f32", s[:-1], (xf,), axis=len(s) - 1), keep)
        d = self._f("sub", xf, top)
        e = self.exp_short(d, SHORT[dt]) if dt in SHORT else self.exp32(d)
        total = self.reshape(self.node("sum", "f32", s[:-1], (e,), axis=len(s) - 1), keep)
        return d, e, total, dt, back

    def op_Softmax(self, nd, attrs):
        """exp(x - max) / their sum: the max and the sum are reductions over computed
        values, so the graph is cut there (pimc.lower.stages)."""
        _, e, total, dt, back = self._softmax(nd, attrs)
        return back(self._cast(self.binary("div", e, total), dt))

    def op_LogSoftmax(self, nd, attrs):
        d, _, total, dt, back = self._softmax(nd, attrs)
        return back(self._cast(self._f("sub", d, self.log32(total)), dt))

    def op_LRN(self, nd, attrs):
        """x / (bias + alpha / size * the sum of x^2 over `size` neighbouring channels)
        ^ beta: the sum a window over the channel axis of the computed squares (a stage
        of its own), the power exp(beta * log(.)) from the same exp and log."""
        x, dt = self._f32(self.operand(nd.input[0]))
        shape = self.info(x).shape
        size = int(attrs.get("size", 0))
        if size < 1 or len(shape) < 2:
            raise Unsupported(f"size {size} over an input of shape {list(shape)}")
        alpha, beta = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75))
        bias = float(attrs.get("bias", 1.0))
        lo = (size - 1) // 2
        step = (1, ZERO, size, 1, lo, size - 1 - lo, 1)
        sq = self._f("mul", x, x)
        win = self.node("window", "f32", ViewOp("window", step).shape_after(shape), (sq,),
                        step=step)  # (N, C, size, ...)
        r = len(shape)
        lanes = self.transpose(win, (0, 1, *range(3, r + 1), 2))
        total = self.node("sum", "f32", shape, (lanes,), axis=r)
        base = self._f("add", self._f("mul", total, float(np.float32(alpha / size))), bias)
        if dt in SHORT:
            return self._cast(self._times_power(x, base, -beta, SHORT[dt]), dt)
        return self._cast(self._over_power(x, base, beta), dt)

    def _times_power(self, x: int, base: int, power: float, bits: int) -> int:
        """x * base^power for a result of `bits` significant bits: exp_short of float32's
        log times the power. Its relative error (log's 0.8 ulp of |log base| <= 89, the
        product's rounding, exp_short's truncation) stays far below half an ulp of the
        short result, so the rounding to it is faithful. An infinite base (a square
        beyond float32) gives 0, as x / inf does."""
        y = self._f("mul", x, self.exp_short(self._f("mul", self.log32(base), power), bits))
        return self._select(self._f("eq", base, float("inf")), self._f("mul", x, 0.0), y)

    def _over_power(self, x: int, base: int, beta: float) -> int:
        """x / base^beta, faithful for the float32 base: the power exp(beta log(base))
        from log's two parts, their product with beta split exactly (Dekker), into exp
        with the low part; the quotient's remainder exact (x - y0 p by Sterbenz, y0 p's
        error by Dekker), so that one addition rounds last."""
        l_hi, l_lo = self.log_parts(base, low=True)
        u_hi, u_err = self._two_prod(l_hi, beta)
        u_lo = self._f("add", u_err, self._f("mul", l_lo, beta))
        p_hi, p_lo = self.exp_parts(u_hi, low=True, x_lo=u_lo)
        y0 = self.binary("div", x, p_hi)
        prod, err = self._two_prod(y0, p_hi)
        rem = self._f("sub", self._f("sub", x, prod), err)
        y = self._f("add", y0, self.binary("div", self._f(
            "sub", rem, self._f("mul", y0, p_lo)), p_hi))
        # the split's range: y0 zero (x zero, the power infinite) or huge keeps y0
        ok = self._f("lt", self.unary("abs", y0), 2.0 ** 100)
        return self._select(self._f("eq", y0, 0.0), y0, self._select(ok, y, y0))

    def _select(self, c: int, a: int, b: int) -> int:
        shape = np.broadcast_shapes(*(self.info(v).shape for v in (c, a, b)))
        return self.node("select", "f32", shape, (c, a, b))
