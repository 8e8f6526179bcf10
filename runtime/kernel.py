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
from pimc.runtime.jit import AVAILABLE, njit
from pimc.runtime.kernel_cells import move, tile_width, tiles
from pimc.runtime.kernel_checks import checks
from pimc.runtime.kernel_table import (
    DONE,
    ESCAPE,
    ESCAPED,
    FIELDS,
    INIT,
    KIND,
    KINDS,
    MOVE,
    SHIFT,
    TILE_BYTES,
    U_MOVE_ONES,
    U_SHIFT_ONES,
)


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
            checks(steps, cols, vals, cmap, i, i + 1, wcode, wmap, acode, amap, masks, subset,
                    counting, wfull, wspans, strict, units, tally, status, words)
            units[U_MOVE_ONES] += move(i, steps, cols, cmap, bits, masks)
            i += 1
            continue
        end = i
        while end < n and _tileable(steps[end, KIND], copies):
            end += 1
        ok = checks(steps, cols, vals, cmap, i, end, wcode, wmap, acode, amap, masks, subset,
                     counting, wfull, wspans, strict, units, tally, status, words)
        if ok > i:
            width = tile_width(steps, cols, cmap, i, ok, bits.shape[0])
            tile = max(1, tile_bytes // (width * words * 8))
            units[U_SHIFT_ONES] += tiles(steps, cols, vals, cmap, i, ok, bits, masks, tile)
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
    _tileable = njit(cache=True, inline="always")(_tileable)
    run_block = njit(cache=True)(run_block)
