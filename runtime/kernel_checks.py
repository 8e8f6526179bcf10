"""The compiled kernel's first pass over a stretch of steps (runtime/kernel.py): what
does not depend on the cells' values, in order: the strict checks and the written and
armed flags they read, write counts, energy units."""

from __future__ import annotations

import numpy as np
from pimc.runtime.jit import AVAILABLE, njit
from pimc.runtime.kernel_table import (
    ACC,
    ALL,
    CLEAR,
    ESCAPE,
    FULL,
    INIT,
    KIND,
    KINDS,
    MASK,
    MAX_SPANS,
    MIXED,
    NAMED,
    NCOLS,
    NOR,
    NX,
    OFF,
    REPS,
    RESET,
    ROWOPS,
    RSHIFT,
    SET,
    SHIFT,
    SPAN,
    U_MOVE,
    U_NOR,
    U_RESET,
    U_SET,
    U_SHIFT,
    UNARMED,
    UNWRITTEN,
    W0,
    W1,
    X0,
    XSTEP,
)


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


def checks(steps, cols, vals, cmap, start, end, wcode, wmap, acode, amap, masks,
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


if AVAILABLE:
    _kind_slot = njit(cache=True, inline="always")(_kind_slot)
    _lowest_bit = njit(cache=True, inline="always")(_lowest_bit)
    _first_unset = njit(cache=True)(_first_unset)
    _set_flag = njit(cache=True)(_set_flag)
    _count = njit(cache=True, inline="always")(_count)
    _wrote = njit(cache=True)(_wrote)
    _fail = njit(cache=True)(_fail)
    checks = njit(cache=True)(checks)
