"""What each routine must compute, on raw bit patterns, written the obvious way in Python
integers: the reference the runtime's results are compared with, bit for bit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pimc.isa.dtypes import DType, Kind


def _signed(dt: DType) -> bool:
    return dt.kind in (Kind.SINT, Kind.FIXED)


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
    signed = _signed(dt)
    widths = [dt.bits, dt.bits, 1]
    cols = [[to_int(int(x), widths[k], signed and k < 2) for x in r.reshape(-1)]
            for k, r in enumerate(raws)]
    mask = (1 << out_bits) - 1
    shift = dt.frac_bits if op == "mul" else 0  # a Q(I.F) product drops F fraction bits
    out = [(fn(list(v), dt.bits, signed) >> shift) & mask for v in zip(*cols, strict=True)]
    return np.array(out, dtype=np.uint64).reshape(raws[0].shape)
