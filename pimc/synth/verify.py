"""Run a synthesised routine on the bit-level runtime and compare it with the oracle.

Operands are every pairing of edge cases (zeros, ones, extremes, carry chains, ...) and
then random bit patterns, over all rows of all crossbars of the routine's program.
"""

from __future__ import annotations

import itertools

import numpy as np

from pimc.isa.dtypes import DType, Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import TensorIO
from pimc.runtime import Stats, run_program
from pimc.synth.floating import FORMATS
from pimc.synth.oracle import (
    float_misc_reference,
    float_reference,
    int_reference,
    numpy_nan_rule,
)
from pimc.synth.routines import Routine


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


def in_ftz_domain(routine: Routine, raws: dict[str, np.ndarray]) -> np.ndarray:
    """ftz leaves infinities, NaNs and overflowing results undefined, and reads subnormals
    as zeros (which only the arithmetic ops define): the rows to check."""
    fmt = FORMATS[routine.dtype]
    e_max = (1 << fmt.exp_bits) - 1
    keep = np.ones(next(iter(raws.values())).shape, dtype=bool)
    floats = [raws[t.name] for t in routine.program.inputs if t.dtype in FORMATS]
    for x in floats:
        field = (x >> np.uint64(fmt.frac_bits)) & np.uint64(e_max)
        keep &= field != e_max
        if routine.op not in ("add", "sub", "mul"):
            keep &= (field != 0) | ((x & np.uint64((1 << fmt.frac_bits) - 1)) == 0)
    out_t = routine.program.outputs[0]
    if out_t.dtype in FORMATS:
        ieee = reference(routine, raws, "ieee")
        keep &= ((ieee >> np.uint64(fmt.frac_bits)) & np.uint64(e_max)) != e_max
    return keep


def reference(routine: Routine, raws: dict[str, np.ndarray], mode: str | None = None
              ) -> np.ndarray:
    """The expected raw result bits of a routine, for its operands' raw bits."""
    prog = routine.program
    ins = [raws[t.name] for t in prog.inputs]
    dt = parse_dtype(routine.dtype)
    if dt.kind is not Kind.FLOAT:
        out = prog.outputs[0]
        return int_reference(routine.op, dt, ins, parse_dtype(out.dtype).bits * out.lanes)
    fmt = FORMATS[routine.dtype]
    if routine.op in ("add", "sub", "mul"):
        return float_reference(routine.op, ins[0], ins[1], fmt.exp_bits, fmt.frac_bits,
                               mode or routine.mode, numpy_nan_rule(routine.dtype, routine.op))
    return float_misc_reference(routine.op, routine.dtype, ins, fmt.exp_bits, fmt.frac_bits,
                                mode or routine.mode)


def operands(routine: Routine, seed: int) -> dict[str, np.ndarray]:
    """Raw operand bits: edge-case combinations first, random patterns after."""
    prog = routine.program
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    ios = list(prog.inputs)
    is_float = parse_dtype(routine.dtype).kind is Kind.FLOAT
    edges = [(float_edge_cases if t.dtype in FORMATS else int_edge_cases)(parse_dtype(t.dtype))
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
        if is_float and k == 1 and ios[0].dtype in FORMATS:
            # A quarter of the rows: b close to a, for cancellation and near ties.
            near = slice(m, m + (n - m) // 4)
            a_raw = out["a"].reshape(-1)[near]
            raw[near] = a_raw ^ rng.integers(0, 1 << 6, len(a_raw), dtype=np.uint64)
        out[t.name] = raw.reshape(t.shape)
    if is_float and routine.mode == "ftz":
        keep = in_ftz_domain(routine, out)
        one = np.uint64(FORMATS[routine.dtype].bias << FORMATS[routine.dtype].frac_bits)
        for t in ios:
            out[t.name] = np.where(keep, out[t.name], one if t.dtype in FORMATS else 1)
    return out


def result_bits(t: TensorIO, values: np.ndarray) -> np.ndarray:
    """Raw result bits per row; a result in lanes (halves of a wide product) joined into
    Python integers."""
    dt = parse_dtype(t.dtype)
    raw = values.view(dt.storage).astype(np.uint64) & np.uint64((1 << dt.bits) - 1)
    if t.lanes == 1:
        return raw
    joined = np.zeros(raw.shape[:-1], dtype=object)
    for lane in range(t.lanes):
        joined += raw[..., lane].astype(object) * (1 << (lane * dt.bits))
    return joined


def verify(routine: Routine, seed: int = 0) -> tuple[Stats, int]:
    """Execute and compare bit for bit; returns the stats and how many rows were checked."""
    prog = routine.program
    raws = operands(routine, seed)
    values = {t.name: parse_dtype(t.dtype).from_bits(raws[t.name].astype(
        parse_dtype(t.dtype).storage)) for t in prog.inputs}
    outputs, stats = run_program(prog, values, name=f"{routine.op}:{routine.dtype}")
    got = result_bits(prog.outputs[0], outputs[prog.outputs[0].name])
    want = reference(routine, raws)
    bad = np.argwhere(got != want)
    if len(bad):
        i = tuple(bad[0])
        args = ", ".join(f"{t.name}={int(raws[t.name][i]):#x}" for t in prog.inputs)
        raise PimError(f"{routine.op} {routine.dtype}: {len(bad)} of {got.size} rows differ; "
                       f"first at {i}: {args} gave {int(got[i]):#x}, expected {int(want[i]):#x}")
    return stats, got.size
