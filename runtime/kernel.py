"""The compiled inner loop: NOR and INIT steps of a decoded block run as one numba call.

A block (runtime/block.py) is a table of steps, one row each. The kernel runs a stretch
of them in two passes: first in order, what does not depend on the cells' values (the
strict checks and the flags they read, write counts, energy), then the cells, a tile of
crossbars at a time. It keeps the same checks, flags and counts as the numpy path in
runtime/ops.py, on the same arrays, so the two paths can take turns within one program.
Anything else (SEARCH, SHIFT, TRANSFER, predicated ops) is an "escape": the stretch ends
there and the numpy path executes that step.

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
KIND, X0, NX, XSTEP, MASK, W0, W1, SPAN, OFF, NCOLS, ACC, REPS, RSHIFT, ROWOPS, SET, RESET = (
    range(16))
FIELDS = 16  # SET, RESET: an INIT's cells set and reset (active rows x columns)
NOR, INIT, ESCAPE = 0, 1, 2
# Outcomes, in status[0]: DONE, an escape at status[1], or a strict-check failure at step
# status[1], column index status[2] (k * reps + j for input k, repetition j), crossbar
# index status[3], row status[4].
DONE, ESCAPED, UNWRITTEN, UNARMED = 0, 1, 2, 3
CLEAR, MIXED, FULL, NAMED = 0, 1, 2, 3  # as runtime/flags.py (NAMED + k: span k's rows)
MAX_SPANS = 256 - NAMED
ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
TILE_BYTES = 1 << 20  # a tile's columns: within a core's share of the cache


def _lowest_bit(word: np.uint64) -> int:
    n = 0
    while not (word >> np.uint64(n)) & np.uint64(1):
        n += 1
    return n


def _first_unset(code, fmap, c, x0, nx, xstep, w0, w1, mid, masks, subset):  # type: ignore[no-untyped-def]
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


def _set_flag(code, fmap, c, x0, nx, xstep, w0, w1, mid, masks, subset, value):  # type: ignore[no-untyped-def]
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


def _count(counting, wfull, wspans, sid, c, x0, nx, xstep):  # type: ignore[no-untyped-def]
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


def _nor(bits, out, cmap, cols, first, nins, shift, x0, nx, xstep, w0, w1, mid, masks):  # type: ignore[no-untyped-def]
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


def _wrote(wcode, wmap, acode, amap, c, x0, nx, xstep, w0, w1, mid, masks, subset, armed,  # type: ignore[no-untyped-def]
           strict, counting, wfull, wspans, sid):
    """After a write of column c: written, armed only if it now holds 1s (flags the
    strict checks read, so kept only for them), one more write."""
    if strict:
        _set_flag(wcode, wmap, c, x0, nx, xstep, w0, w1, mid, masks, subset, True)
        _set_flag(acode, amap, c, x0, nx, xstep, w0, w1, mid, masks, subset, armed)
    _count(counting, wfull, wspans, sid, c, x0, nx, xstep)


def _fail(status, kind, i, k, where, words):  # type: ignore[no-untyped-def]
    per = 64 * words
    status[0], status[1], status[2] = kind, i, k
    status[3], status[4] = where // per, where % per


def _extent(steps, start, end):  # type: ignore[no-untyped-def]
    """The crossbars steps start..end-1 touch, as [lo, hi), and their crossbar-steps."""
    lo, hi, work = 1 << 62, 0, 0
    for i in range(start, end):
        x0, nx = steps[i, X0], steps[i, NX]
        lo = min(lo, x0)
        hi = max(hi, x0 + (nx - 1) * steps[i, XSTEP] + 1)
        work += nx
    return lo, max(hi, lo), work


def _width(steps, cols, cmap, start, end, ncols):  # type: ignore[no-untyped-def]
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


def _checks(steps, cols, vals, cmap, start, end, wcode, wmap, acode, amap, masks,  # type: ignore[no-untyped-def]
            subset, counting, wfull, wspans, strict, units, tally, status, words):
    """Everything of steps start..end-1 but their cells, in order: the strict checks and
    the written/armed flags they read (kept only if strict), write counts, energy units
    and tallies. None of it depends on the cells' values, so the cells can be computed
    afterwards, in any order of crossbars. Returns the first failing step, or end."""
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
            units[0] += steps[i, ROWOPS]
            tally[0] += steps[i, ROWOPS]
        else:  # INIT
            for j in range(reps):
                for k in range(ncols):
                    _wrote(wcode, wmap, acode, amap, cmap[cols[off + k]] + j * rshift, x0, nx,
                           xstep, w0, w1, mid, masks, subset, vals[off + k] != 0, strict,
                           counting, wfull, wspans, sid)
            units[1] += steps[i, SET]
            units[2] += steps[i, RESET]
        tally[1 + kind] += 1  # NOR is 0, INIT 1
        if tally[3] == 0:
            tally[3] = 1 + kind
    return end


def _cells(i, steps, cols, vals, cmap, bits, masks, lo, hi):  # type: ignore[no-untyped-def]
    """Step i's writes to the cells of crossbars [lo, hi)."""
    x0, nx, xstep = steps[i, X0], steps[i, NX], steps[i, XSTEP]
    k0 = max(0, -((x0 - lo) // xstep))  # the first and last of its crossbars in [lo, hi)
    k1 = min(nx, -((x0 - hi) // xstep))
    if k1 <= k0:
        return
    x0, nx = x0 + k0 * xstep, k1 - k0
    mid, w0, w1 = steps[i, MASK], steps[i, W0], steps[i, W1]
    off, ncols, reps, rshift = steps[i, OFF], steps[i, NCOLS], steps[i, REPS], steps[i, RSHIFT]
    if steps[i, KIND] == NOR:
        for j in range(reps):
            _nor(bits, cmap[cols[off]] + j * rshift, cmap, cols, off + 1, ncols - 1, j * rshift,
                 x0, nx, xstep, w0, w1, mid, masks)
        return
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


def _tiles(steps, cols, vals, cmap, start, end, bits, masks, tile):  # type: ignore[no-untyped-def]
    """The cells of steps start..end-1, a tile of crossbars at a time (all of the steps
    on one tile, then the next), so a tile's columns stay in cache from step to step
    instead of each step streaming the whole memory; tiles run in parallel. NOR and
    INIT act within a crossbar, so this computes what running the steps in order does."""
    lo, hi, work = _extent(steps, start, end)
    ntiles = (hi - lo + tile - 1) // tile
    if ntiles * (end - start) > work:  # mostly steps on few crossbars each: in order
        for i in range(start, end):
            _cells(i, steps, cols, vals, cmap, bits, masks, lo, hi)
        return
    for t in prange(ntiles):
        a = lo + t * tile
        b = min(hi, a + tile)
        for i in range(start, end):
            _cells(i, steps, cols, vals, cmap, bits, masks, a, b)


def run_block(steps, cols, vals, cmap, start, bits, wcode, wmap, acode, amap,  # type: ignore[no-untyped-def]
              masks, subset, counting, wfull, wspans, strict, units, tally, status,
              tile_bytes=TILE_BYTES):
    """Execute steps from `start` until the end or an escape; see the module docstring.
    units = [NOR row-gates, cells INIT sets, cells INIT resets] (energy events, added to);
    tally = [bit operations, NORs, INITs, which ran first (1 NOR, 2 INIT)]."""
    words = bits.shape[2]
    end = start
    while end < steps.shape[0] and steps[end, KIND] != ESCAPE:
        end += 1
    status[0] = DONE if end == steps.shape[0] else ESCAPED
    status[1] = end
    ok = _checks(steps, cols, vals, cmap, start, end, wcode, wmap, acode, amap, masks, subset,
                 counting, wfull, wspans, strict, units, tally, status, words)
    if ok > start:
        width = _width(steps, cols, cmap, start, ok, bits.shape[0])
        tile = max(1, tile_bytes // (width * words * 8))
        _tiles(steps, cols, vals, cmap, start, ok, bits, masks, tile)


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
              np.zeros((1, 1, 1), dtype=np.int64), True, np.zeros(3, dtype=np.int64),
              np.zeros(4, dtype=np.int64), np.zeros(5, dtype=np.int64))


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
    _cells = njit(cache=True)(_cells)
    _tiles = njit(cache=True, parallel=True)(_tiles)
    run_block = njit(cache=True)(run_block)
