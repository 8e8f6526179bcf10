"""Run a synthesised routine on the bit-level runtime and compare it with the oracle.

Operands are every pairing of edge cases (zeros, ones, extremes, carry chains, ...) and
then random bit patterns, over all rows of all crossbars of the routine's program.
"""

from __future__ import annotations

import itertools

import numpy as np

from pimc.isa.dtypes import DType, Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.synth.floating import FORMATS
from pimc.synth.oracle import float_reference, int_reference, numpy_nan_rule
from pimc.synth.routines import Routine
from runtime import Stats, run_program


def int_edge_cases(dt: DType) -> list[int]:
    n = dt.bits
    full = (1 << n) - 1
    top = 1 << (n - 1)
    values = {0, 1, 2, full, full - 1, top, top - 1, top + 1, full // 3, (full // 3) << 1}
    return sorted(v & full for v in values)


def float_edge_cases(dt: DType) -> list[int]:
    """Zeros, ones, extremes of the normal and subnormal ranges, infinities, NaNs, and
    values whose sums and products tie or carry."""
    fmt = FORMATS[dt.name]
    m, e = fmt.frac_bits, fmt.exp_bits
    one = fmt.bias << m
    exp_ones = ((1 << e) - 1) << m
    sign = 1 << (m + e)
    magnitudes = [0, one, one + 1, one | ((1 << m) - 1), (fmt.bias - m - 1) << m,
                  (fmt.bias - m) << m, 1 << m, (1 << m) | 1, 1, (1 << m) - 1,
                  exp_ones - 1, exp_ones - (1 << m), exp_ones, exp_ones | 1,
                  exp_ones | 1 << (m - 1), (fmt.bias + 1) << m | 1 << (m - 1)]
    return magnitudes + [v | sign for v in magnitudes]


def in_ftz_domain(routine: Routine, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ftz leaves infinities, NaNs and overflowing results undefined: rows to check."""
    fmt = FORMATS[routine.dtype]
    e_max = (1 << fmt.exp_bits) - 1
    finite = ((a >> np.uint64(fmt.frac_bits)) & np.uint64(e_max)) != e_max
    finite &= ((b >> np.uint64(fmt.frac_bits)) & np.uint64(e_max)) != e_max
    ieee = float_reference(routine.op, a, b, fmt.exp_bits, fmt.frac_bits, "ieee")
    finite &= ((ieee >> np.uint64(fmt.frac_bits)) & np.uint64(e_max)) != e_max
    return finite


def operands(routine: Routine, seed: int) -> dict[str, np.ndarray]:
    """Raw operand bits: edge-case combinations first, random patterns after."""
    prog = routine.program
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    ios = list(prog.inputs)
    is_float = parse_dtype(ios[0].dtype).kind is Kind.FLOAT
    edges = [(float_edge_cases if is_float else int_edge_cases)(parse_dtype(t.dtype))
             for t in ios]
    combos = list(itertools.product(*edges))
    for k, t in enumerate(ios):
        dt = parse_dtype(t.dtype)
        n = int(np.prod(t.shape))
        raw = rng.integers(0, 1 << min(dt.bits, 63), n, dtype=np.uint64)
        if dt.bits == 64:
            raw |= rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63)
        m = min(len(combos), n)
        raw[:m] = [c[k] for c in combos[:m]]
        if is_float and k == 1:
            # A quarter of the rows: b close to a, for cancellation and near ties.
            near = slice(m, m + (n - m) // 4)
            a_raw = out["a"].reshape(-1)[near]
            raw[near] = a_raw ^ rng.integers(0, 1 << 6, len(a_raw), dtype=np.uint64)
        out[t.name] = raw.reshape(t.shape)
    if is_float and routine.mode == "ftz":
        keep = in_ftz_domain(routine, out["a"], out["b"])
        one = np.uint64(FORMATS[routine.dtype].bias << FORMATS[routine.dtype].frac_bits)
        out["a"] = np.where(keep, out["a"], one)
        out["b"] = np.where(keep, out["b"], one)
    return out


def verify(routine: Routine, seed: int = 0) -> tuple[Stats, int]:
    """Execute and compare bit for bit; returns the stats and how many rows were checked."""
    prog = routine.program
    raws = operands(routine, seed)
    values = {t.name: parse_dtype(t.dtype).from_bits(raws[t.name].astype(
        parse_dtype(t.dtype).storage)) for t in prog.inputs}
    outputs, stats = run_program(prog, values, name=f"{routine.op}:{routine.dtype}")
    out_t = prog.outputs[0]
    out_dt = parse_dtype(out_t.dtype)
    got = outputs[out_t.name].view(out_dt.storage).astype(np.uint64)
    got &= np.uint64((1 << out_dt.bits) - 1) if out_dt.bits < 64 else np.uint64(2**64 - 1)
    if out_dt.kind is Kind.FLOAT:
        fmt = FORMATS[routine.dtype]
        want = float_reference(routine.op, raws["a"], raws["b"], fmt.exp_bits, fmt.frac_bits,
                               routine.mode, numpy_nan_rule(routine.dtype, routine.op))
    else:
        want = int_reference(routine.op, parse_dtype(routine.dtype),
                             [raws[t.name] for t in prog.inputs], out_dt.bits)
    bad = np.argwhere(got != want)
    if len(bad):
        i = tuple(bad[0])
        args = ", ".join(f"{t.name}={int(raws[t.name][i]):#x}" for t in prog.inputs)
        raise PimError(f"{routine.op} {routine.dtype}: {len(bad)} of {got.size} rows differ; "
                       f"first at {i}: {args} gave {int(got[i]):#x}, expected {int(want[i]):#x}")
    return stats, got.size
