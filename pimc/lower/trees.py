"""The pairwise reduction order the lowering builds and the reference follows, and a
reduction's identity (what a missing partner counts as)."""

from __future__ import annotations

import math

from pimc.isa.dtypes import DType, Kind
from pimc.synth.floating import FORMATS


def reduction_identity(op: str, dt: DType) -> int:
    """The raw bits a missing partner counts as: -0.0 or 0 for sums, the lowest value for
    max (so that x op identity = x, bit for bit, for every x but a signalling NaN)."""
    if op == "reduce_max":
        if dt.kind is Kind.FLOAT:
            fmt = FORMATS[dt.name]
            return (1 << (fmt.width - 1)) | (((1 << fmt.exp_bits) - 1) << fmt.frac_bits)
        return 1 << (dt.bits - 1) if dt.signed else 0
    return 1 << (dt.bits - 1) if dt.kind is Kind.FLOAT else 0


def tree_levels(n: int) -> list[tuple[int, int]]:
    """The pairwise reduction order: at each level (n, m), rows r < n - m take row r + m,
    rows n - m <= r < m take the identity, and m rows remain."""
    levels = []
    while n > 1:
        m = (n + 1) // 2
        levels.append((n, m))
        n = m
    return levels


def reduction_axes(shape: tuple[int, ...], axis: object) -> tuple[int, int, int]:
    """(outer, n, inner): the reduced axis of length n between the others, flattened; a
    reduction without an axis reduces everything."""
    if axis is None or len(shape) <= 1:
        return 1, math.prod(shape), 1
    k = int(axis)
    return math.prod(shape[:k]), shape[k], math.prod(shape[k + 1:])
