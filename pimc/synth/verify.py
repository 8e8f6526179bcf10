"""Run a synthesised routine on the bit-level runtime and compare it with the oracle.

Operands are every pairing of edge cases (zeros, ones, extremes, carry chains, ...) and
then random bit patterns, over all rows of all crossbars of the routine's program.
"""

from __future__ import annotations

import itertools

import numpy as np

from pimc.isa.dtypes import DType, parse_dtype
from pimc.isa.errors import PimError
from pimc.synth.oracle import int_reference
from pimc.synth.routines import Routine
from runtime import Stats, run_program


def int_edge_cases(dt: DType) -> list[int]:
    n = dt.bits
    full = (1 << n) - 1
    top = 1 << (n - 1)
    values = {0, 1, 2, full, full - 1, top, top - 1, top + 1, full // 3, (full // 3) << 1}
    return sorted(v & full for v in values)


def operands(routine: Routine, seed: int) -> dict[str, np.ndarray]:
    """Raw operand bits: edge-case combinations first, random patterns after."""
    prog = routine.program
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    ios = list(prog.inputs)
    edges = [int_edge_cases(parse_dtype(t.dtype)) for t in ios]
    combos = list(itertools.product(*edges))
    for k, t in enumerate(ios):
        dt = parse_dtype(t.dtype)
        n = int(np.prod(t.shape))
        raw = rng.integers(0, 1 << min(dt.bits, 63), n, dtype=np.uint64)
        if dt.bits == 64:
            raw |= rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63)
        m = min(len(combos), n)
        raw[:m] = [c[k] for c in combos[:m]]
        out[t.name] = raw.reshape(t.shape)
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
    want = int_reference(routine.op, parse_dtype(routine.dtype),
                         [raws[t.name] for t in prog.inputs], out_dt.bits)
    bad = np.argwhere(got != want)
    if len(bad):
        i = tuple(bad[0])
        args = ", ".join(f"{t.name}={int(raws[t.name][i]):#x}" for t in prog.inputs)
        raise PimError(f"{routine.op} {routine.dtype}: {len(bad)} of {got.size} rows differ; "
                       f"first at {i}: {args} gave {int(got[i]):#x}, expected {int(want[i]):#x}")
    return stats, got.size
