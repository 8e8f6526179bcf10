"""Floating-point routines, executed by the runtime and compared bit for bit with an exact
oracle, which is itself held to numpy (float32, float16) and ml_dtypes (bfloat16)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from pimc.runtime import run_program

from pimc.compile import compile_source
from pimc.isa.arch import Arch, InitModel
from pimc.isa.cost import program_cycles
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.synth.floating import FORMATS
from pimc.synth.oracle import (
    float_cast_reference,
    float_misc_reference,
    float_reference,
    float_reference_one,
    numpy_nan_rule,
)
from pimc.synth.routines import build_bit_sliced, build_routine
from pimc.synth.verify import float_edge_cases, verify

NUMPY = {"f32": (np.float32, np.uint32), "f16": (np.float16, np.uint16),
         "bf16": (ml_dtypes.bfloat16, np.uint16)}
UFUNC = {"add": np.add, "sub": np.subtract, "mul": np.multiply}


@pytest.mark.parametrize("dtype", sorted(FORMATS))
@pytest.mark.parametrize("op", sorted(UFUNC))
def test_oracle_is_numpy(dtype, op):
    """Random bit patterns (NaNs, infinities, subnormals included): identical bits."""
    fmt = FORMATS[dtype]
    rng = np.random.default_rng(7)
    a = rng.integers(0, 1 << fmt.width, 20000, dtype=np.uint64)
    b = rng.integers(0, 1 << fmt.width, 20000, dtype=np.uint64)
    b[:5000] = a[:5000] ^ rng.integers(0, 256, 5000, dtype=np.uint64)  # cancellations
    e_ones = np.uint64(((1 << fmt.exp_bits) - 1) << fmt.frac_bits)
    a[5000:6000] |= e_ones  # many NaN and infinity operands, some in both
    b[5500:6500] |= e_ones
    rule = numpy_nan_rule(dtype, op)
    want = np.array([float_reference_one(op, int(x), int(y), fmt.exp_bits, fmt.frac_bits,
                                         "ieee", rule) for x, y in zip(a, b, strict=True)],
                    dtype=np.uint64)
    ftype, store = NUMPY[dtype]
    with np.errstate(all="ignore"):
        got = UFUNC[op](a.astype(store).view(ftype), b.astype(store).view(ftype))
    assert np.array_equal(got.view(store).astype(np.uint64), want)


@pytest.mark.parametrize("rule", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("mode", ["ieee", "ftz"])
@pytest.mark.parametrize("dtype", ["bf16", "f16"])
@pytest.mark.parametrize("op", sorted(UFUNC))
def test_16_bit_floats_by_float32_rounded_again_are_the_exact_oracle(op, dtype, mode, rule):
    """float_reference takes float32 operations rounded once more for bfloat16 and
    float16 (rounding twice rounds as once: float32 has more than 2p + 2 bits); they
    agree with the integer oracle on random bit patterns with every edge, products
    near the subnormal boundary among them, in both float modes and NaN rules."""
    fmt = FORMATS[dtype]
    e, m = fmt.exp_bits, fmt.frac_bits
    rng = np.random.default_rng(13)
    n = 12000
    a = rng.integers(0, 1 << 16, n, dtype=np.uint64)
    b = rng.integers(0, 1 << 16, n, dtype=np.uint64)
    b[:2000] = a[:2000] ^ rng.integers(0, 64, 2000, dtype=np.uint64)  # cancellations
    tiny = np.uint64(1 << 15 | (1 << m) - 1)
    a[2000:3000] &= tiny  # subnormals and zeros
    b[2500:3500] &= tiny
    ones = np.uint64(((1 << e) - 1) << m)
    a[3500:4000] |= ones  # NaNs and infinities
    b[3800:4300] |= ones
    bias, lowest = (1 << (e - 1)) - 1, (1 << (e - 1)) - 2 + m  # products near the
    # smallest subnormal's half: exponent fields summing to about 2 * bias - lowest
    ea = rng.integers(0, bias, 3000)
    eb = np.clip(2 * bias - lowest - 1 - ea + rng.integers(-4, 4, 3000), 0, 2 * bias)
    a[5000:8000] = a[5000:8000] & np.uint64(1 << 15 | (1 << m) - 1) | (ea << m).astype(np.uint64)
    b[5000:8000] = b[5000:8000] & np.uint64(1 << 15 | (1 << m) - 1) | (eb << m).astype(np.uint64)
    want = [float_reference_one(op, int(x), int(y), e, m, mode, rule)
            for x, y in zip(a, b, strict=True)]
    assert float_reference(op, a, b, e, m, mode, rule).tolist() == want


@pytest.mark.parametrize("mode", ["ieee", "ftz"])
@pytest.mark.parametrize("op", sorted(UFUNC))
def test_float32_by_numpy_is_the_exact_oracle(op, mode):
    """float_reference takes numpy's float32 operations for whole arrays; they agree with
    the integer oracle, value by value, on random bit patterns with every edge."""
    rng = np.random.default_rng(11)
    a = rng.integers(0, 1 << 32, 6000, dtype=np.uint64)
    b = rng.integers(0, 1 << 32, 6000, dtype=np.uint64)
    b[:1500] = a[:1500] ^ rng.integers(0, 256, 1500, dtype=np.uint64)  # cancellations
    a[1500:2000] &= np.uint64(0x807F_FFFF)  # subnormals and zeros
    b[1800:2300] &= np.uint64(0x807F_FFFF)
    a[2500:3000] |= np.uint64(0x7F80_0000)  # NaNs and infinities
    b[2800:3300] |= np.uint64(0x7F80_0000)
    a[3300:3400], b[3300:3400] = 0x0080_0000, 0x3F00_0000  # the smallest normal, halved
    want = [float_reference_one(op, int(x), int(y), 8, 23, mode) for x, y in zip(a, b, strict=True)]
    assert float_reference(op, a, b, 8, 23, mode).tolist() == want


@pytest.mark.parametrize("mode", ["ieee", "ftz"])
@pytest.mark.parametrize("dtype", sorted(FORMATS))
@pytest.mark.parametrize("op", sorted(UFUNC))
def test_float_routine_is_bit_exact(op, dtype, mode):
    stats, rows = verify(build_routine(op, dtype, mode=mode, crossbars=4, align="nor"), seed=3)
    assert rows == 4096 and stats.ops["NOR"] > 100


@pytest.mark.parametrize("mode", ["ieee", "ftz"])
@pytest.mark.parametrize("dtype", sorted(FORMATS))
def test_search_aligned_add_is_bit_exact(dtype, mode):
    stats, rows = verify(build_routine("add", dtype, mode=mode, crossbars=4, align="search"),
                         seed=5)
    assert rows == 4096
    assert stats.ops["SEARCH"] == FORMATS[dtype].frac_bits + 4  # one per shift amount, +1


def test_auto_alignment_picks_the_cheaper_per_init_model():
    for model in InitModel:
        arch = Arch(init_model=model)
        picked = build_routine("add", "f32", mode="ftz", arch=arch)
        cycles = {a: program_cycles(build_routine("add", "f32", mode="ftz", arch=arch,
                                                  align=a).program.ops, arch)
                  for a in ("nor", "search")}
        assert picked.align == min(cycles, key=cycles.get)


@pytest.mark.parametrize("mode", ["ieee", "ftz"])
@pytest.mark.parametrize("dtype", sorted(FORMATS))
@pytest.mark.parametrize("op", ["div", "sqrt", "neg", "abs", "lt", "le", "eq", "min", "max", "relu",
                                "to_i32", "from_i32", "to_q16.16", "from_q16.16", "to_q4.4",
                                "from_q4.4"])
def test_float_vocabulary_is_bit_exact(op, dtype, mode):
    _, rows = verify(build_routine(op, dtype, mode=mode, crossbars=4), seed=9)
    assert rows == 4096


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_int_to_float_oracle_is_numpy(dtype):
    fmt = FORMATS[dtype]
    ints = np.random.default_rng(2).integers(-2**31, 2**31, 20000).astype(np.int32)
    ints[:6] = [0, 1, -1, 2**31 - 1, -2**31, 2**24 + 1]
    want = float_misc_reference("from_i32", dtype, [ints.view(np.uint32).astype(np.uint64)],
                                fmt.exp_bits, fmt.frac_bits)
    ftype, store = NUMPY[dtype]
    with np.errstate(all="ignore"):
        got = ints.astype(ftype).view(store).astype(np.uint64)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_float_to_int_oracle_is_numpy(dtype):
    fmt = FORMATS[dtype]
    raw = np.random.default_rng(3).integers(0, 1 << fmt.width, 20000, dtype=np.uint64)
    want = float_misc_reference("to_i32", dtype, [raw], fmt.exp_bits, fmt.frac_bits)
    ftype, store = NUMPY[dtype]
    with np.errstate(all="ignore"):  # widened to float32 first (exact): numpy's own cast
        # (ml_dtypes casts bfloat16's NaN and out-of-range values to 0 from 0.7 on)
        got = raw.astype(store).view(ftype).astype(np.float32).astype(np.int32).view(np.uint32)
    assert np.array_equal(got.astype(np.uint64), want)


def test_ftz_flushes_and_ieee_keeps_subnormals():
    fmt = FORMATS["f32"]
    tiny = np.array([1 << fmt.frac_bits], np.uint64)  # the smallest normal
    half = np.array([(fmt.bias - 1) << fmt.frac_bits], np.uint64)  # 0.5
    assert float_reference("mul", tiny, half, 8, 23, "ieee")[0] == 1 << 22  # subnormal
    assert float_reference("mul", tiny, half, 8, 23, "ftz")[0] == 0


def test_verification_catches_a_wrong_program():
    routine = build_routine("add", "bf16", mode="ftz", crossbars=1)
    ops = list(routine.program.ops)
    last_nor = max(i for i, op in enumerate(ops) if op.opcode.value == "NOR")
    victim = ops[last_nor]
    ops[last_nor] = type(victim)(**{**victim.__dict__, "ins": victim.ins[:1]})
    broken = type(routine)(**{**routine.__dict__, "program": type(routine.program)(
        **{**routine.program.__dict__, "ops": tuple(ops)})})
    with pytest.raises(PimError, match="rows differ"):
        verify(broken)


def test_unknown_mode_is_an_error():
    with pytest.raises(PimError, match="mode must be ieee or ftz"):
        build_routine("add", "f32", mode="fast")


def _underflow_boundary(dtype: str, n: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Operands whose product lands around the smallest normal, many with all-ones
    significands (the ones that round up into the normal range)."""
    fmt = FORMATS[dtype]
    m, e, bias = fmt.frac_bits, fmt.exp_bits, fmt.bias
    rng = np.random.default_rng(1)
    e1 = rng.integers(1, 2 * bias, n)
    e2 = np.clip(bias + 1 - e1 + rng.integers(-3, 3, n), 1, 2 * bias)
    f1, f2 = rng.integers(0, 1 << m, n), rng.integers(0, 1 << m, n)
    f1[: n // 4] = (1 << m) - 1
    f2[: n // 8] = (1 << m) - 1
    s1, s2 = rng.integers(0, 2, n), rng.integers(0, 2, n)
    a = (s1 << (m + e) | e1 << m | f1).astype(np.uint64)
    b = (s2 << (m + e) | e2 << m | f2).astype(np.uint64)
    return a, b


@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("sliced", [False, True])
def test_ftz_multiply_at_the_underflow_boundary(dtype, sliced):
    fmt = FORMATS[dtype]
    routine = (build_bit_sliced("mul", dtype, arch=Arch(partitions=32), crossbars=2)
               if sliced else build_routine("mul", dtype, mode="ftz", crossbars=2))
    a, b = _underflow_boundary(dtype)
    dt = parse_dtype(dtype)
    values = {k: dt.from_bits(v.reshape(2, 1024).astype(dt.storage)) for k, v in (("a", a),
                                                                               ("b", b))}
    out, _ = run_program(routine.program, values)
    got = out["y"].view(dt.storage).astype(np.uint64).reshape(-1)
    assert np.array_equal(got, float_reference("mul", a, b, fmt.exp_bits, fmt.frac_bits, "ftz"))


@pytest.mark.parametrize("dtype", ["bf16", "f16", "f32"])
@pytest.mark.parametrize("op", ["add", "mul"])
def test_bit_sliced_float_is_bit_exact(op, dtype):
    routine = build_bit_sliced(op, dtype, arch=Arch(partitions=32), crossbars=8)
    stats, rows = verify(routine, seed=13)
    assert rows == 8192
    # AritPIM's 32-partition counts (PyPIM's: f32 add 1367, f32 mul 1582).
    published = {("add", "f32"): 1359, ("mul", "f32"): 1407, ("add", "bf16"): 1132,
                 ("mul", "bf16"): 721}
    if (op, dtype) in published:
        assert stats.total_cycles < published[(op, dtype)]


CASTS = [("f32", "bf16"), ("f32", "f16"), ("f16", "f32"), ("f16", "bf16"), ("bf16", "f32"),
         ("bf16", "f16")]


def _cast_operands(src: str, dst: str, n: int = 4096) -> np.ndarray:
    """Edge cases, exact ties and near-ties of the destination's rounding, results near its
    underflow and overflow, random patterns."""
    s, d = FORMATS[src], FORMATS[dst]
    rng = np.random.default_rng(11)
    raw = rng.integers(0, 1 << s.width, n, dtype=np.uint64)
    edges = float_edge_cases(parse_dtype(src))
    raw[: len(edges)] = edges
    lo, q = len(edges), n // 4
    # exponents around the destination's whole range, subnormals and overflow included
    exp = rng.integers(max(1, s.bias - d.bias - d.frac_bits - 2),
                       min((1 << s.exp_bits) - 1, s.bias + d.bias + 3), 2 * q, dtype=np.uint64)
    raw[lo:lo + 2 * q] = (raw[lo:lo + 2 * q] & np.uint64((1 << s.frac_bits) - 1)) | (
        exp << np.uint64(s.frac_bits)) | (raw[lo:lo + 2 * q] & np.uint64(1 << (s.width - 1)))
    drop = s.frac_bits - d.frac_bits
    if drop > 0:  # exact ties: the dropped bits are 100...0
        ties = slice(lo, lo + q)
        raw[ties] = (raw[ties] >> np.uint64(drop) << np.uint64(drop)) | np.uint64(1 << (drop - 1))
    return raw


@pytest.mark.parametrize("mode", ["ieee", "ftz"])
@pytest.mark.parametrize(("src", "dst"), CASTS)
def test_float_to_float_casts_are_numpys(src, dst, mode):
    text = f"kernel c(x: {src}[4096]) -> (y: {dst}[4096]) {{ y = {dst}(x); }}"
    raw = _cast_operands(src, dst)
    ftype, store = NUMPY[src]
    x = raw.astype(store).view(ftype)
    out, _ = run_program(compile_source(text, "c.pk", mode=mode), {"x": x})
    got = out["y"].view(NUMPY[dst][1]).astype(np.uint64)
    want = float_cast_reference(raw, src, dst, mode)
    if mode == "ieee":
        with np.errstate(invalid="ignore", over="ignore"):
            numpy_bits = x.astype(NUMPY[dst][0]).view(NUMPY[dst][1]).astype(np.uint64)
        assert np.array_equal(want, numpy_bits)
        assert np.array_equal(got, want)
    else:  # ftz: infinities, NaNs and overflow are outside the domain
        d, s = FORMATS[dst], FORMATS[src]
        ok = ((want >> np.uint64(d.frac_bits)) & np.uint64((1 << d.exp_bits) - 1)) != (
            (1 << d.exp_bits) - 1)
        ok &= ((raw >> np.uint64(s.frac_bits)) & np.uint64((1 << s.exp_bits) - 1)) != (
            (1 << s.exp_bits) - 1)
        assert ok.mean() > 0.5 and np.array_equal(got[ok], want[ok])
