"""The compiled kernel's second pass (runtime/kernel.py): the cells of NOR, INIT and
SHIFT steps, a tile of crossbars at a time, and a TRANSFER's."""

from __future__ import annotations

import numpy as np
from pimc.runtime.jit import AVAILABLE, njit, prange
from pimc.runtime.kernel_table import (
    ACC,
    ALL,
    BY,
    DX0,
    DXSTEP,
    KIND,
    MASK,
    NCOLS,
    NOR,
    NX,
    OFF,
    REPS,
    RSHIFT,
    SHIFT,
    W0,
    W1,
    X0,
    XSTEP,
)


def _nor(bits, out, cmap, cols, first, nins, shift, x0, nx, xstep, w0, w1, mid, masks):
    """bits[out] &= ~(OR of the inputs) in the selected rows; the common shapes (one to
    three inputs, every row) get loops simple enough for the compiler to vectorise."""
    a = cmap[cols[first]] + shift
    b = cmap[cols[first + 1]] + shift if nins > 1 else a
    c = cmap[cols[first + 2]] + shift if nins > 2 else b
    if nins <= 3 and mid < 0 and xstep == 1:  # one contiguous run of words
        o = bits[out, x0:x0 + nx].reshape(-1)
        pa, pb = bits[a, x0:x0 + nx].reshape(-1), bits[b, x0:x0 + nx].reshape(-1)
        pc = bits[c, x0:x0 + nx].reshape(-1)
        for w in range(o.size):
            o[w] &= ~(pa[w] | pb[w] | pc[w])
        return
    o, pa, pb, pc = bits[out], bits[a], bits[b], bits[c]
    if nins <= 3 and mid < 0:
        for xi in range(nx):
            x = x0 + xi * xstep
            for w in range(w0, w1):
                o[x, w] &= ~(pa[x, w] | pb[x, w] | pc[x, w])
        return
    if nins <= 3:
        m = masks[mid]
        for xi in range(nx):
            x = x0 + xi * xstep
            for w in range(w0, w1):
                o[x, w] &= ~((pa[x, w] | pb[x, w] | pc[x, w]) & m[w])
        return
    for xi in range(nx):
        x = x0 + xi * xstep
        for w in range(w0, w1):
            acc = pa[x, w] | pb[x, w] | pc[x, w]
            for k in range(3, nins):
                acc |= bits[cmap[cols[first + k]] + shift, x, w]
            if mid >= 0:
                acc &= masks[mid, w]
            o[x, w] &= ~acc


def _extent(steps, start, end):
    """The crossbars steps start..end-1 touch, as [lo, hi), and their crossbar-steps."""
    lo, hi, work = 1 << 62, 0, 0
    for i in range(start, end):
        x0, nx = steps[i, X0], steps[i, NX]
        lo = min(lo, x0)
        hi = max(hi, x0 + (nx - 1) * steps[i, XSTEP] + 1)
        work += nx
    return lo, max(hi, lo), work


def tile_width(steps, cols, cmap, start, end, ncols):
    """How many distinct columns steps start..end-1 touch."""
    seen = np.zeros(ncols, dtype=np.bool_)
    for i in range(start, end):
        off, reps, rshift = steps[i, OFF], steps[i, REPS], steps[i, RSHIFT]
        for k in range(steps[i, NCOLS]):
            for j in range(reps):
                c = cmap[cols[off + k]] + j * rshift
                if 0 <= c < ncols:
                    seen[c] = True
    return max(1, int(seen.sum()))


def _popcount(v):
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555_5555_5555_5555))
    v = (v & np.uint64(0x3333_3333_3333_3333)) + ((v >> np.uint64(2)) & np.uint64(0x3333_3333_3333_3333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F_0F0F_0F0F_0F0F)
    return int((v * np.uint64(0x0101_0101_0101_0101)) >> np.uint64(56))


def _shifted(col, by, out, w0, w1):
    """out[w0:w1] = those words of a crossbar's column with row r taking row r - by (0
    from outside), as runtime/bitops.shift_rows."""
    n = col.shape[0]
    q, r = abs(by) // 64, abs(by) % 64
    for w in range(w0, w1):
        src = w - q if by >= 0 else w + q
        v = np.uint64(0)
        if 0 <= src < n:
            v = col[src] << np.uint64(r) if by >= 0 else col[src] >> np.uint64(r)
        nb = src - 1 if by >= 0 else src + 1
        if r and 0 <= nb < n:
            v |= col[nb] >> np.uint64(64 - r) if by >= 0 else col[nb] << np.uint64(64 - r)
        out[w] = v


def _put(dst, words, w0, w1, mid, masks):
    """A copy's words w0..w1 into a crossbar's column under the row mask (every row if
    mid < 0); returns the 1s written."""
    ones = 0
    for w in range(w0, w1):
        v = words[w]
        if mid >= 0:
            v &= masks[mid, w]
            dst[w] = (dst[w] & ~masks[mid, w]) | v
        else:
            dst[w] = v
        ones += _popcount(v)
    return ones


def _shift_column(i, p, steps, cols, cmap, bits, masks, x0, nx, buf):
    """Pair p of SHIFT i (its columns apart) over nx of its crossbars from x0, a column
    at a time (its crossbars' words lie near each other). Returns the 1s written."""
    xstep, mid, w0, w1 = steps[i, XSTEP], steps[i, MASK], steps[i, W0], steps[i, W1]
    off, pairs, by = steps[i, OFF], steps[i, NCOLS] // 2, steps[i, BY]
    src, dst = bits[cmap[cols[off + p]]], bits[cmap[cols[off + pairs + p]]]
    ones = 0
    for xi in range(nx):
        x = x0 + xi * xstep
        _shifted(src[x], by, buf, w0, w1)
        ones += _put(dst[x], buf, w0, w1, mid, masks)
    return ones


def _shift_columns(i, steps, cols, cmap, bits, masks):
    """A whole SHIFT with its columns apart, pairs in parallel."""
    ones = 0
    for p in prange(steps[i, NCOLS] // 2):
        buf = np.empty(bits.shape[2], dtype=np.uint64)
        ones += _shift_column(i, p, steps, cols, cmap, bits, masks, steps[i, X0], steps[i, NX], buf)
    return ones


def _cells(i, steps, cols, vals, cmap, bits, masks, lo, hi, scratch):
    """Step i's writes to the cells of crossbars [lo, hi); a SHIFT's 1s written."""
    x0, nx, xstep = steps[i, X0], steps[i, NX], steps[i, XSTEP]
    k0 = max(0, -((x0 - lo) // xstep))  # the first and last of its crossbars in [lo, hi)
    k1 = min(nx, -((x0 - hi) // xstep))
    if k1 <= k0:
        return 0
    x0, nx = x0 + k0 * xstep, k1 - k0
    mid, w0, w1 = steps[i, MASK], steps[i, W0], steps[i, W1]
    off, ncols, reps, rshift = steps[i, OFF], steps[i, NCOLS], steps[i, REPS], steps[i, RSHIFT]
    kind = steps[i, KIND]
    if kind == NOR:
        for j in range(reps):
            _nor(bits, cmap[cols[off]] + j * rshift, cmap, cols, off + 1, ncols - 1, j * rshift,
                 x0, nx, xstep, w0, w1, mid, masks)
        return 0
    if kind == SHIFT and steps[i, ACC]:  # sources and destinations apart
        ones = 0
        for p in range(ncols // 2):
            ones += _shift_column(i, p, steps, cols, cmap, bits, masks, x0, nx, scratch[0])
        return ones
    if kind == SHIFT:  # all sources read before any destination is written
        pairs, ones, by = ncols // 2, 0, steps[i, BY]
        for xi in range(nx):
            x = x0 + xi * xstep
            for p in range(pairs):
                _shifted(bits[cmap[cols[off + p]], x], by, scratch[p], w0, w1)
            for p in range(pairs):
                ones += _put(bits[cmap[cols[off + pairs + p]], x], scratch[p], w0, w1, mid, masks)
        return ones
    for j in range(reps):
        for k in range(ncols):
            c = cmap[cols[off + k]] + j * rshift
            fill = ALL if vals[off + k] != 0 else np.uint64(0)
            if mid < 0 and xstep == 1:
                bits[c, x0:x0 + nx] = fill
            elif mid < 0:
                for xi in range(nx):
                    bits[c, x0 + xi * xstep] = fill
            else:
                m, col = masks[mid], bits[c]
                for xi in range(nx):
                    x = x0 + xi * xstep
                    for w in range(w0, w1):
                        col[x, w] = (col[x, w] & ~m[w]) | (fill & m[w])
    return 0


def tiles(steps, cols, vals, cmap, start, end, bits, masks, tile):
    """The cells of steps start..end-1, a tile of crossbars at a time (all of the steps
    on one tile, then the next), so a tile's columns stay in cache from step to step
    instead of each step streaming the whole memory; tiles run in parallel. NOR, INIT
    and SHIFT act within a crossbar, so this computes what running the steps in order
    does. Returns the 1s the SHIFTs wrote."""
    lo, hi, work = _extent(steps, start, end)
    pairs = 1
    for i in range(start, end):
        pairs = max(pairs, steps[i, NCOLS] // 2 if steps[i, KIND] == SHIFT else 1)
    ntiles = (hi - lo + tile - 1) // tile
    ones = 0
    if ntiles * (end - start) > work:  # mostly steps on few crossbars each: in order
        scratch = np.empty((pairs, bits.shape[2]), dtype=np.uint64)
        for i in range(start, end):
            if steps[i, KIND] == SHIFT and steps[i, ACC]:
                ones += _shift_columns(i, steps, cols, cmap, bits, masks)
            else:
                ones += _cells(i, steps, cols, vals, cmap, bits, masks, lo, hi, scratch)
        return ones
    for t in prange(ntiles):
        a = lo + t * tile
        b = min(hi, a + tile)
        scratch = np.empty((pairs, bits.shape[2]), dtype=np.uint64)
        for i in range(start, end):
            ones += _cells(i, steps, cols, vals, cmap, bits, masks, a, b, scratch)
    return ones


def move(i, steps, cols, cmap, bits, masks):
    """A TRANSFER (plain, its source and destination crossbars apart): crossbar k of the
    source span copies its columns' selected rows into crossbar k of the destination
    span, columns in parallel. Returns the 1s written."""
    x0, nx, xstep = steps[i, X0], steps[i, NX], steps[i, XSTEP]
    d0, dstep = steps[i, DX0], steps[i, DXSTEP]
    mid, w0, w1 = steps[i, MASK], steps[i, W0], steps[i, W1]
    off, pairs = steps[i, OFF], steps[i, NCOLS] // 2
    ones = 0
    for p in prange(pairs):  # a column at a time: its crossbars' words are near each other
        src, dst = bits[cmap[cols[off + p]]], bits[cmap[cols[off + pairs + p]]]
        for k in range(nx):
            ones += _put(dst[d0 + k * dstep], src[x0 + k * xstep], w0, w1, mid, masks)
    return ones


if AVAILABLE:
    _nor = njit(cache=True)(_nor)
    _extent = njit(cache=True)(_extent)
    tile_width = njit(cache=True)(tile_width)
    _popcount = njit(cache=True, inline="always")(_popcount)
    _shifted = njit(cache=True, inline="always")(_shifted)
    _put = njit(cache=True, inline="always")(_put)
    _shift_column = njit(cache=True)(_shift_column)
    _shift_columns = njit(cache=True, parallel=True)(_shift_columns)
    _cells = njit(cache=True)(_cells)
    tiles = njit(cache=True, parallel=True)(tiles)
    move = njit(cache=True, parallel=True)(move)
