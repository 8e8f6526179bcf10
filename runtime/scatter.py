"""Host values scattered straight into bit-packed cells, compiled when numba is there.

An input's values go bit by bit to (column, crossbar, row) cells. The numpy path in
runtime/hostio.py makes a byte per bit and packs it; for a layer's weights replicated
over every output pixel (billions of cells) that costs most of a run's set-up time and
a byte of memory per cell. This loop ORs each bit into its packed word directly,
crossbars in parallel (slots fill a crossbar's rows, then the next crossbar's, so no two
threads write one word).
"""

from __future__ import annotations

import numpy as np
from pimc.runtime.jit import AVAILABLE, njit, prange


def scatter(raw, nbits, lanes, broadcast, first, count, per, xstart, xstep,
            rstart, rstep, lo, nxb, words):
    """(data uint64[lanes * nbits, nxb, words], placed uint64[nxb, words]) for slots
    first..first+count-1 of a tensor: slot s lies in crossbar xstart + (s // per) * xstep
    (less lo), row rstart + (s % per) * rstep; its lane l is raw[(s - first) * lanes + l]
    (raw[l] for every slot if broadcast), bit b of it in column l * nbits + b."""
    data = np.zeros((lanes * nbits, nxb, words), dtype=np.uint64)
    placed = np.zeros((nxb, words), dtype=np.uint64)
    g0, g1 = first // per, (first + count - 1) // per + 1  # groups of slots: one crossbar each
    for g in prange(g1 - g0):
        x = xstart + (g0 + g) * xstep - lo
        s0, s1 = max(first, (g0 + g) * per), min(first + count, (g0 + g + 1) * per)
        for s in range(s0, s1):
            row = rstart + (s % per) * rstep
            placed[x, row >> 6] |= np.uint64(1) << np.uint64(row & 63)
        # a column at a time: its words of this crossbar stay in cache while its rows fill
        for lane in range(lanes):
            for b in range(nbits):
                col, sh = data[lane * nbits + b, x], np.uint64(b)
                for s in range(s0, s1):
                    v = np.uint64(raw[(0 if broadcast else (s - first) * lanes) + lane])
                    row = rstart + (s % per) * rstep
                    col[row >> 6] |= ((v >> sh) & np.uint64(1)) << np.uint64(row & 63)
    return data, placed


if AVAILABLE:
    scatter = njit(cache=True, parallel=True)(scatter)
