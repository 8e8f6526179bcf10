"""What each routine must compute, on raw bit patterns, written the obvious way in Python
integers: the reference the runtime's results are compared with, bit for bit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pimc.isa.dtypes import DType


def to_int(raw: int, bits: int, signed: bool) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if signed and raw >> (bits - 1) else raw


IntFn = Callable[[list[int], int, bool], int]

INT_REFERENCE: dict[str, IntFn] = {
    "add": lambda v, n, s: v[0] + v[1],
    "sub": lambda v, n, s: v[0] - v[1],
    "neg": lambda v, n, s: -v[0],
    "abs": lambda v, n, s: abs(v[0]),
    "mul": lambda v, n, s: v[0] * v[1],
    "mul_wide": lambda v, n, s: v[0] * v[1],
    "lt": lambda v, n, s: int(v[0] < v[1]),
    "le": lambda v, n, s: int(v[0] <= v[1]),
    "eq": lambda v, n, s: int(v[0] == v[1]),
    "min": lambda v, n, s: min(v[0], v[1]),
    "max": lambda v, n, s: max(v[0], v[1]),
    "relu": lambda v, n, s: max(v[0], 0),
    "select": lambda v, n, s: v[0] if v[2] else v[1],
    "shl3": lambda v, n, s: v[0] << 3,
    "shr3": lambda v, n, s: v[0] >> 3,
}


def int_reference(op: str, dt: DType, raws: list[np.ndarray], out_bits: int) -> np.ndarray:
    """Raw result bits of `op` for raw operand bits (the third operand of select is 1 bit)."""
    fn = INT_REFERENCE[op]
    signed = dt.signed
    widths = [dt.bits, dt.bits, 1]
    cols = [[to_int(int(x), widths[k], signed and k < 2) for x in r.reshape(-1)]
            for k, r in enumerate(raws)]
    mask = (1 << out_bits) - 1
    shift = dt.frac_bits if op == "mul" else 0  # a Q(I.F) product drops F fraction bits
    out = [(fn(list(v), dt.bits, signed) >> shift) & mask for v in zip(*cols, strict=True)]
    wide = out_bits > 64  # kept as Python integers
    return np.array(out, dtype=object if wide else np.uint64).reshape(raws[0].shape)


# --------------------------------------------------------------------------- floats


def _decode(bits: int, e_bits: int, m_bits: int) -> tuple[int, int, int, str]:
    """(sign, significand, exponent, kind): value = significand * 2**exponent."""
    sign = bits >> (e_bits + m_bits) & 1
    exp = bits >> m_bits & ((1 << e_bits) - 1)
    frac = bits & ((1 << m_bits) - 1)
    bias = (1 << (e_bits - 1)) - 1
    if exp == (1 << e_bits) - 1:
        return sign, 0, 0, "nan" if frac else "inf"
    if exp == 0:
        return sign, frac, 1 - bias - m_bits, "finite"
    return sign, frac | 1 << m_bits, exp - bias - m_bits, "finite"


def round_to_format(sign: int, n: int, e: int, e_bits: int, m_bits: int) -> int:
    """The bits of sign * n * 2**e rounded to nearest even (subnormals, overflow to inf)."""
    bias = (1 << (e_bits - 1)) - 1
    top = sign << (e_bits + m_bits)
    if n == 0:
        return top
    lead = e + n.bit_length() - 1
    q = max(lead - m_bits, 1 - bias - m_bits)  # exponent of the result's last place
    shift = q - e
    if shift > 0:
        kept, rem = n >> shift, n & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and kept & 1):
            kept += 1
    else:
        kept = n << -shift
    if kept >> (m_bits + 1):
        kept, q = kept >> 1, q + 1
    field = q + m_bits + bias if kept >> m_bits else 0
    if field >= (1 << e_bits) - 1:
        return top | ((1 << e_bits) - 1) << m_bits
    return top | field << m_bits | (kept & ((1 << m_bits) - 1))


def _is_subnormal(bits: int, e_bits: int, m_bits: int) -> bool:
    return (bits >> m_bits & ((1 << e_bits) - 1)) == 0


def numpy_nan_rule(dtype: str, op: str) -> tuple[bool, bool]:
    """(b's NaN wins over a's, NaN payload canonical): what numpy does, measured.

    float32 follows x86: the first NaN operand, quieted. numpy's float16 and ml_dtypes'
    bfloat16 evaluate add and mul as b op a, so b's NaN wins; bfloat16 also drops the
    payload (a quiet NaN of the same sign).
    """
    b_first = dtype in ("f16", "bf16") and op in ("add", "mul")
    return b_first, dtype == "bf16"


def float_reference_one(op: str, a: int, b: int, e_bits: int, m_bits: int, mode: str,
                        nan_rule: tuple[bool, bool] = (False, False)) -> int:
    """One result of add, sub or mul, bit for bit as numpy gives it."""
    width = 1 + e_bits + m_bits
    quiet = 1 << (m_bits - 1)
    default_nan = ((1 << (e_bits + 1)) - 1) << m_bits | quiet
    if mode == "ftz":  # subnormal operands read as zeros of their sign
        a = a & (1 << (width - 1)) if _is_subnormal(a, e_bits, m_bits) else a
        b = b & (1 << (width - 1)) if _is_subnormal(b, e_bits, m_bits) else b
    sa, na, ea, ka = _decode(a, e_bits, m_bits)
    b_eff = b ^ (1 << (width - 1)) if op == "sub" else b
    sb, nb, eb, kb = _decode(b_eff, e_bits, m_bits)
    inf = ((1 << e_bits) - 1) << m_bits
    if "nan" in (ka, kb):
        order = (b, a) if nan_rule[0] else (a, b)
        nan = next(v for v in order if _decode(v, e_bits, m_bits)[3] == "nan") | quiet
        if nan_rule[1]:
            nan = nan & (1 << (width - 1)) | inf | quiet
        return nan
    if op in ("add", "sub"):
        if ka == "inf" or kb == "inf":
            if ka == kb == "inf" and sa != sb:
                return default_nan
            return (sa if ka == "inf" else sb) << (width - 1) | inf
        e = min(ea, eb)
        total = (-1) ** sa * (na << (ea - e)) + (-1) ** sb * (nb << (eb - e))
        if total == 0:
            result = (sa & sb) << (width - 1)
        else:
            result = round_to_format(int(total < 0), abs(total), e, e_bits, m_bits)
    elif op == "mul":
        sign = sa ^ sb
        if ka == "inf" or kb == "inf":
            if (ka == "finite" and na == 0) or (kb == "finite" and nb == 0):
                return default_nan
            return sign << (width - 1) | inf
        result = round_to_format(sign, na * nb, ea + eb, e_bits, m_bits)
    else:
        raise ValueError(op)
    if mode == "ftz" and _is_subnormal(result, e_bits, m_bits):
        result &= 1 << (width - 1)
    return result


def _float32(op: str, a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    """float_reference for float32 by numpy's own float32 operations, which round to
    nearest even once per operation (and quiet the first NaN, as the x86 rule says):
    whole layers of a network are checked in seconds, not hours."""
    def flush(x: np.ndarray) -> np.ndarray:  # subnormals to the zero of their sign
        return np.where((x & 0x7F80_0000) == 0, x & 0x8000_0000, x)

    x, y = (np.asarray(v, dtype=np.uint64).astype(np.uint32) for v in (a, b))
    if mode == "ftz":
        x, y = flush(x), flush(y)
    fx, fy = x.view(np.float32), y.view(np.float32)
    with np.errstate(all="ignore"):
        r = fx * fy if op == "mul" else fx - fy if op == "sub" else fx + fy
    out = r.view(np.uint32)
    return (flush(out) if mode == "ftz" else out).astype(np.uint64)


def _narrow(op: str, a: np.ndarray, b: np.ndarray, e_bits: int, m_bits: int, mode: str,
            nan_rule: tuple[bool, bool]) -> np.ndarray:
    """float_reference for bfloat16 and float16 by float32 operations rounded once more
    to the format, to nearest even. Rounding twice rounds as once here: float32 carries
    at least 2p + 2 bits of a p-bit format's sums and products (and bfloat16's
    subnormal sums are exact in float32, its subnormal products too where they come
    near a rounding boundary). The NaNs follow `nan_rule`, as the integer oracle does;
    the test compares the two on every edge. A bfloat16 network's reference took 22M
    calls of the integer oracle, minutes, before."""
    width = 1 + e_bits + m_bits
    sign, quiet = np.uint32(1 << (width - 1)), np.uint32(1 << (m_bits - 1))
    ones = np.uint32(((1 << e_bits) - 1) << m_bits)  # the exponent field, all ones
    frac = np.uint32((1 << m_bits) - 1)
    x, y = (np.asarray(v, dtype=np.uint64).astype(np.uint32) for v in (a, b))
    if mode == "ftz":  # subnormal operands read as zeros of their sign
        x, y = (np.where(v & ones, v, v & sign) for v in (x, y))

    def wide(v: np.ndarray) -> np.ndarray:  # exactly, to float32
        if e_bits == 8:
            return (v << np.uint32(16)).view(np.float32)
        return v.astype(np.uint16).view(np.float16).astype(np.float32)

    fx, fy = wide(x), wide(y)
    with np.errstate(all="ignore"):
        r = fx * fy if op == "mul" else fx - fy if op == "sub" else fx + fy
        if e_bits == 8:
            bits = r.view(np.uint32)
            out = (bits + np.uint32(0x7FFF) + (bits >> np.uint32(16) & np.uint32(1))) \
                >> np.uint32(16)
        else:
            out = r.astype(np.float16).view(np.uint16).astype(np.uint32)
    out = np.where(np.isnan(r), sign | ones | quiet, out)  # inf - inf, 0 * inf
    nan_x, nan_y = (((v & ones) == ones) & ((v & frac) != 0) for v in (x, y))
    first, second, nan_first = (y, x, nan_y) if nan_rule[0] else (x, y, nan_x)
    nan = np.where(nan_first, first, second) | quiet
    if nan_rule[1]:  # the payload dropped
        nan = nan & sign | ones | quiet
    out = np.where(nan_x | nan_y, nan, out)
    if mode == "ftz":
        out = np.where(out & ones, out, out & sign)
    return out.astype(np.uint64)


def float_reference(op: str, a: np.ndarray, b: np.ndarray, e_bits: int, m_bits: int,
                    mode: str, nan_rule: tuple[bool, bool] = (False, False)) -> np.ndarray:
    if op in ("add", "sub", "mul"):  # whole arrays by numpy where it is exact
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
        if (e_bits, m_bits) == (8, 23) and nan_rule == (False, False):
            return _float32(op, a, b, mode)
        if (e_bits, m_bits) in ((8, 7), (5, 10)):
            return _narrow(op, a, b, e_bits, m_bits, mode, nan_rule)
    out = [float_reference_one(op, int(x), int(y), e_bits, m_bits, mode, nan_rule)
           for x, y in zip(a.reshape(-1), b.reshape(-1), strict=True)]
    return np.array(out, dtype=np.uint64).reshape(a.shape)


def numpy_float(dtype: str) -> tuple[type, type]:
    """The numpy scalar type of a float dtype name, and the unsigned type of its bits."""
    import ml_dtypes

    return {"f32": (np.float32, np.uint32), "f16": (np.float16, np.uint16),
            "bf16": (ml_dtypes.bfloat16, np.uint16)}[dtype]


def float_misc_reference(op: str, dtype: str, raws: list[np.ndarray], e_bits: int,
                         m_bits: int, mode: str = "ieee") -> np.ndarray:
    """Results of the exact float ops (sign, compare, min/max, relu, conversions) as numpy
    gives them, as raw bits. int -> float is rounded here, exactly (bfloat16's conversion
    in ml_dtypes goes through float32, which can round twice)."""
    ftype, store = numpy_float(dtype)
    if op.startswith(("to_", "from_")):
        return conversion(op, raws[0], e_bits, m_bits, mode)
    vals = [r.astype(store).view(ftype) for r in raws]
    with np.errstate(all="ignore"):
        if op in ("lt", "le", "eq"):
            cmp = {"lt": np.less, "le": np.less_equal, "eq": np.equal}[op]
            return cmp(vals[0], vals[1]).astype(np.uint64)
        result = {
            "neg": lambda: np.negative(vals[0]),
            "abs": lambda: np.abs(vals[0]),
            "min": lambda: np.minimum(vals[0], vals[1]),
            "max": lambda: np.maximum(vals[0], vals[1]),
            "relu": lambda: np.maximum(vals[0], np.zeros_like(vals[0])),
            "div": lambda: np.divide(vals[0], vals[1]),
            "sqrt": lambda: np.sqrt(vals[0]),
        }[op]()
    bits = np.asarray(result).view(store)
    if mode == "ftz" and op in ("div", "sqrt"):  # results below the normal range flush
        bits = _flush(bits, 1 + e_bits + m_bits, e_bits)
    return bits.astype(np.uint64)


def conversion(op: str, raw: np.ndarray, e_bits: int, m_bits: int, mode: str) -> np.ndarray:
    """Float <-> integer or Q(I.F): to truncates x * 2^F toward zero (NaN, infinities and
    values out of range give the most negative integer, as numpy's int32 cast on x86);
    from rounds the integer / 2^F to nearest even. Exact, in Python integers."""
    from pimc.isa.dtypes import parse_dtype

    direction, name = op.split("_", 1)
    fixed = parse_dtype(name)
    width, frac = fixed.bits, fixed.frac_bits
    out = []
    for bits in raw.reshape(-1).tolist():
        if direction == "from":
            v = to_int(bits, width, True)
            result = round_to_format(int(v < 0), abs(v), -frac, e_bits, m_bits)
            if mode == "ftz" and _is_subnormal(result, e_bits, m_bits):
                result &= 1 << (e_bits + m_bits)
            out.append(result)
            continue
        sign, n, e, kind = _decode(bits, e_bits, m_bits)
        shift = e + frac
        magnitude = n << shift if shift >= 0 else n >> -shift
        value = -magnitude if sign else magnitude
        if kind != "finite" or not -(1 << (width - 1)) <= value < 1 << (width - 1):
            value = -(1 << (width - 1))
        out.append(value & ((1 << width) - 1))
    return np.array(out, dtype=np.uint64).reshape(raw.shape)


def cast_nan_canonical(src: str, dst: str) -> bool:
    """Whether numpy / ml_dtypes turn a NaN cast from src to dst into the canonical quiet
    NaN (measured: any NaN into bfloat16, and bfloat16 into float16); otherwise the sign
    and the top of the payload survive, not quieted, made non-zero if truncated to 0."""
    return dst == "bf16" or (src, dst) == ("bf16", "f16")


def float_cast_reference(raw: np.ndarray, src: str, dst: str, mode: str) -> np.ndarray:
    """A float-to-float cast: numpy's (ml_dtypes' for bfloat16) own astype, round to
    nearest even; ftz reads subnormal inputs as zeros and flushes subnormal results."""
    (s_host, s_store), (d_host, d_store) = numpy_float(src), numpy_float(dst)
    s_bits, d_bits = np.dtype(s_store).itemsize * 8, np.dtype(d_store).itemsize * 8
    exp_bits = {"f32": 8, "bf16": 8, "f16": 5}
    s_exp, d_exp = exp_bits[src], exp_bits[dst]
    x = np.asarray(raw, dtype=np.uint64).astype(s_store)
    if mode == "ftz":
        x = _flush(x, s_bits, s_exp)
    with np.errstate(invalid="ignore", over="ignore"):
        y = x.view(s_host).astype(d_host).view(d_store)
    if mode == "ftz":
        y = _flush(y, d_bits, d_exp)
    return y.astype(np.uint64)


def _flush(x: np.ndarray, bits: int, e_bits: int) -> np.ndarray:
    """Subnormals to zeros of their sign."""
    m_bits = bits - 1 - e_bits
    exp_zero = (x >> m_bits & ((1 << e_bits) - 1)) == 0
    return np.where(exp_zero, x & (1 << (bits - 1)), x).astype(x.dtype)
