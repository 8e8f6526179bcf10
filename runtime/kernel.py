"""The compiled inner loop: the NOR, INIT, SHIFT and TRANSFER steps of a decoded block
run as one numba call.

A block (runtime/block.py) is a table of steps, one row each. The kernel runs a stretch
of them in two passes: first in order, what does not depend on the cells' values (the
strict checks and the flags they read, write counts, energy), then the cells, a tile of
crossbars at a time. It keeps the same checks, flags and counts as the numpy path in
runtime/ops.py, on the same arrays, so the two paths can take turns within one program.
The ops it does not run (SEARCH, predicated ops, transposing TRANSFERs, and SHIFT and
TRANSFER in checked or counted runs) are "escapes": the stretch ends there and the numpy
path executes that step. A TRANSFER it runs is a step of its own, not tiled.

numba is optional (the `fast` extra): without it `AVAILABLE` is False and the machine
uses the numpy path throughout.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised where numba is not installed
    AVAILABLE = False
    prange = range

# Columns of a block's step table.
(KIND, X0, NX, XSTEP, MASK, W0, W1, SPAN, OFF, NCOLS, ACC, REPS, RSHIFT, ROWOPS, SET, RESET,
 BY, DX0, DXSTEP) = range(19)
FIELDS = 19  # SET, RESET: an INIT's cells set and reset (active rows x columns)
# ROWOPS: a NOR's row-gates; a SHIFT's or TRANSFER's cells written. BY: a SHIFT's rows
# (ACC: its source and destination columns are apart);
# DX0, DXSTEP: a TRANSFER's destination crossbars. A copy's columns: sources, then
# destinations.
NOR, INIT, ESCAPE, SHIFT, MOVE = 0, 1, 2, 3, 4
KINDS = 4  # NOR, INIT, SHIFT, MOVE (TRANSFER): tally and units are kept per kind
# Outcomes, in status[0]: DONE, an escape at status[1], or a strict-check failure at step
# status[1], column index status[2] (k * reps + j for input k, repetition j), crossbar
# index status[3], row status[4].
DONE, ESCAPED, UNWRITTEN, UNARMED = 0, 1, 2, 3
CLEAR, MIXED, FULL, NAMED = 0, 1, 2, 3  # as runtime/flags.py (NAMED + k: span k's rows)
MAX_SPANS = 256 - NAMED
ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
TILE_BYTES = 1 << 20  # a tile's columns: within a core's share of the cache
# units (energy events): NOR row-gates, INIT cells set, reset, SHIFT cells written, 1s
# among them, TRANSFER cells written, 1s among them. tally: bit operations, then per kind
# the ops run and the order it was first met in (1, 2, ...; 0: not met).
U_NOR, U_SET, U_RESET, U_SHIFT, U_SHIFT_ONES, U_MOVE, U_MOVE_ONES = range(7)


def _kind_slot(kind):
    """The index of a kind in the per-kind tallies (escapes never reach them)."""
    return kind if kind < ESCAPE else kind - 1


def _lowest_bit(word: np.uint64) -> int:
    n = 0
    while not (word >> np.uint64(n)) & np.uint64(1):
        n += 1
    return n


def _first_unset(code, fmap, c, x0, nx, xstep, w0, w1, mid, masks, subset):
    """-1, or (crossbar index * 64 * words + row) of the first selected row not set."""
    words = fmap.shape[2]
    cm, fm, m = code[c], fmap[c], masks[max(mid, 0)]
    for xi in range(nx):
        x = x0 + xi * xstep
        cd = cm[x]
        if cd == FULL or (cd >= NAMED and mid >= 0 and subset[cd - NAMED, mid]):
            continue
        for w in range(w0, w1):
            want = ALL if mid < 0 else m[w]
            if cd == CLEAR:
                have = np.uint64(0)
            elif cd == MIXED:
                have = fm[x, w]
            else:
                have = masks[cd - NAMED, w]
            bad = want & ~have
            if bad:
                return xi * 64 * words + w * 64 + _lowest_bit(bad)
    return -1


def _set_flag(code, fmap, c, x0, nx, xstep, w0, w1, mid, masks, subset, value):
    """Set (value) or clear the flag in the selected rows. A row-span write leaves the
    code naming the span where the result is exactly that span's rows (NAMED + mid); a
    partial write otherwise leaves it MIXED without re-summarising (the map is exact,
    and a whole-column write makes the code FULL or CLEAR again). Either way a row-span
    write costs little more per crossbar than a whole-column one."""
    cm = code[c]
    if mid < 0 and xstep == 1:
        cm[x0:x0 + nx] = FULL if value else CLEAR
        return
    if mid < 0:
        for xi in range(nx):
            cm[x0 + xi * xstep] = FULL if value else CLEAR
        return
    fm, m = fmap[c], masks[mid]
    named = mid < MAX_SPANS
    for xi in range(nx):
        x = x0 + xi * xstep
        cd = cm[x]
        if value:
            if cd == FULL:
                continue
            if cd == CLEAR and named:
                cm[x] = NAMED + mid
                continue
        elif cd == CLEAR:
            continue
        if cd >= NAMED:
            k = cd - NAMED
            if value and subset[k, mid]:
                continue  # already set in these rows
            if named and subset[mid, k]:
                cm[x] = NAMED + mid if value else CLEAR  # this span covers the old one
                continue
            fm[x, :] = masks[k]
        elif cd != MIXED:
            fm[x, :] = ALL if cd == FULL else np.uint64(0)
        cm[x] = MIXED
        if value:
            for w in range(w0, w1):
                fm[x, w] |= m[w]
        else:
            for w in range(w0, w1):
                fm[x, w] &= ~m[w]


def _count(counting, wfull, wspans, sid, c, x0, nx, xstep):
    if not counting:
        return
    if xstep == 1:
        if sid < 0:
            wfull[c, x0:x0 + nx] += 1
        else:
            wspans[sid, c, x0:x0 + nx] += 1
        return
    for xi in range(nx):
        x = x0 + xi * xstep
        if sid < 0:
            wfull[c, x] += 1
        else:
            wspans[sid, c, x] += 1


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


def _wrote(wcode, wmap, acode, amap, c, x0, nx, xstep, w0, w1, mid, masks, subset, armed,
           strict, counting, wfull, wspans, sid):
    """After a write of column c: written, armed only if it now holds 1s (flags the
    strict checks read, so kept only for them), one more write."""
    if strict:
        _set_flag(wcode, wmap, c, x0, nx, xstep, w0, w1, mid, masks, subset, True)
        _set_flag(acode, amap, c, x0, nx, xstep, w0, w1, mid, masks, subset, armed)
    _count(counting, wfull, wspans, sid, c, x0, nx, xstep)


def _fail(status, kind, i, k, where, words):
    per = 64 * words
    status[0], status[1], status[2] = kind, i, k
    status[3], status[4] = where // per, where % per


def _extent(steps, start, end):
    """The crossbars steps start..end-1 touch, as [lo, hi), and their crossbar-steps."""
    lo, hi, work = 1 << 62, 0, 0
    for i in range(start, end):
        x0, nx = steps[i, X0], steps[i, NX]
        lo = min(lo, x0)
        hi = max(hi, x0 + (nx - 1) * steps[i, XSTEP] + 1)
        work += nx
    return lo, max(hi, lo), work


def _width(steps, cols, cmap, start, end, ncols):
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


def _checks(steps, cols, vals, cmap, start, end, wcode, wmap, acode, amap, masks,
            subset, counting, wfull, wspans, strict, units, tally, status, words):
    """Everything of steps start..end-1 but their cells, in order: the strict checks and
    the written/armed flags they read (kept only if strict), write counts, energy units
    and tallies. None of it depends on the cells' values, so the cells can be computed
    afterwards, in any order of crossbars. (SHIFT and TRANSFER come here only in runs
    without checks or write counts.) Returns the first failing step, or end."""
    for i in range(start, end):
        kind = steps[i, KIND]
        x0, nx, xstep = steps[i, X0], steps[i, NX], steps[i, XSTEP]
        mid, w0, w1, sid = steps[i, MASK], steps[i, W0], steps[i, W1], steps[i, SPAN]
        off, ncols, reps, rshift = steps[i, OFF], steps[i, NCOLS], steps[i, REPS], steps[i, RSHIFT]
        if kind == NOR:
            if strict:
                for k in range(1, ncols):
                    for j in range(reps):
                        c = cmap[cols[off + k]] + j * rshift
                        bad = _first_unset(wcode, wmap, c, x0, nx, xstep, w0, w1, mid, masks, subset)
                        if bad >= 0:
                            _fail(status, UNWRITTEN, i, (k - 1) * reps + j, bad, words)
                            return i
                if not steps[i, ACC]:
                    for j in range(reps):
                        c = cmap[cols[off]] + j * rshift
                        bad = _first_unset(acode, amap, c, x0, nx, xstep, w0, w1, mid, masks, subset)
                        if bad >= 0:
                            _fail(status, UNARMED, i, j, bad, words)
                            return i
            for j in range(reps):
                _wrote(wcode, wmap, acode, amap, cmap[cols[off]] + j * rshift, x0, nx, xstep,
                       w0, w1, mid, masks, subset, False, strict, counting, wfull, wspans, sid)
            units[U_NOR] += steps[i, ROWOPS]
            tally[0] += steps[i, ROWOPS]
        elif kind == INIT:
            for j in range(reps):
                for k in range(ncols):
                    _wrote(wcode, wmap, acode, amap, cmap[cols[off + k]] + j * rshift, x0, nx,
                           xstep, w0, w1, mid, masks, subset, vals[off + k] != 0, strict,
                           counting, wfull, wspans, sid)
            units[U_SET] += steps[i, SET]
            units[U_RESET] += steps[i, RESET]
        else:
            units[U_SHIFT if kind == SHIFT else U_MOVE] += steps[i, ROWOPS]
        slot = _kind_slot(kind)
        tally[1 + slot] += 1
        if tally[1 + KINDS + slot] == 0:
            tally[1 + 2 * KINDS] += 1
            tally[1 + KINDS + slot] = tally[1 + 2 * KINDS]
    return end


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


def _tiles(steps, cols, vals, cmap, start, end, bits, masks, tile):
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


def _move(i, steps, cols, cmap, bits, masks):
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


def _tileable(kind, copies):
    return kind <= INIT or (kind == SHIFT and copies)  # NOR, INIT, or a SHIFT


def run_block(steps, cols, vals, cmap, start, bits, wcode, wmap, acode, amap,
              masks, subset, counting, wfull, wspans, strict, units, tally, status,
              tile_bytes=TILE_BYTES):
    """Execute steps from `start` until the end or an escape; see the module docstring.
    SHIFT and TRANSFER run here only without the strict checks and write counts (those
    of the numpy path keep per-row flags and span tables the moves would multiply).
    units and tally: see U_NOR; added to."""
    words, n = bits.shape[2], steps.shape[0]
    copies = not strict and not counting
    i = start
    while i < n:
        kind = steps[i, KIND]
        if kind == ESCAPE or (kind >= SHIFT and not copies):
            status[0], status[1] = ESCAPED, i
            return
        if kind == MOVE:
            _checks(steps, cols, vals, cmap, i, i + 1, wcode, wmap, acode, amap, masks, subset,
                    counting, wfull, wspans, strict, units, tally, status, words)
            units[U_MOVE_ONES] += _move(i, steps, cols, cmap, bits, masks)
            i += 1
            continue
        end = i
        while end < n and _tileable(steps[end, KIND], copies):
            end += 1
        ok = _checks(steps, cols, vals, cmap, i, end, wcode, wmap, acode, amap, masks, subset,
                     counting, wfull, wspans, strict, units, tally, status, words)
        if ok > i:
            width = _width(steps, cols, cmap, i, ok, bits.shape[0])
            tile = max(1, tile_bytes // (width * words * 8))
            units[U_SHIFT_ONES] += _tiles(steps, cols, vals, cmap, i, ok, bits, masks, tile)
        if ok < end:
            return  # a failed check: status says which
        i = end
    status[0] = DONE


def warm() -> None:
    """Load (or compile) the kernel now, so the first block does not pay for it."""
    if not AVAILABLE:
        return
    steps = np.zeros((0, FIELDS), dtype=np.int64)
    z1, z2 = np.zeros(1, dtype=np.int64), np.zeros((1, 1), dtype=np.int64)
    run_block(steps, z1, np.zeros(1, dtype=np.uint8), z1, 0, np.zeros((1, 1, 1), dtype=np.uint64),
              np.zeros((1, 1), dtype=np.uint8), np.zeros((1, 1, 1), dtype=np.uint64),
              np.zeros((1, 1), dtype=np.uint8), np.zeros((1, 1, 1), dtype=np.uint64),
              np.zeros((1, 1), dtype=np.uint64), np.zeros((1, 1), dtype=np.bool_), True, z2,
              np.zeros((1, 1, 1), dtype=np.int64), True, np.zeros(7, dtype=np.int64),
              np.zeros(2 + 2 * KINDS, dtype=np.int64), np.zeros(5, dtype=np.int64), TILE_BYTES)


if AVAILABLE:
    _lowest_bit = njit(cache=True, inline="always")(_lowest_bit)
    _first_unset = njit(cache=True)(_first_unset)
    _set_flag = njit(cache=True)(_set_flag)
    _count = njit(cache=True, inline="always")(_count)
    _fail = njit(cache=True)(_fail)
    _nor = njit(cache=True)(_nor)
    _wrote = njit(cache=True)(_wrote)
    _extent = njit(cache=True)(_extent)
    _width = njit(cache=True)(_width)
    _checks = njit(cache=True)(_checks)
    _kind_slot = njit(cache=True, inline="always")(_kind_slot)
    _popcount = njit(cache=True, inline="always")(_popcount)
    _shifted = njit(cache=True, inline="always")(_shifted)
    _put = njit(cache=True, inline="always")(_put)
    _shift_column = njit(cache=True)(_shift_column)
    _shift_columns = njit(cache=True, parallel=True)(_shift_columns)
    _cells = njit(cache=True)(_cells)
    _move = njit(cache=True, parallel=True)(_move)
    _tileable = njit(cache=True, inline="always")(_tileable)
    _tiles = njit(cache=True, parallel=True)(_tiles)
    run_block = njit(cache=True)(run_block)
