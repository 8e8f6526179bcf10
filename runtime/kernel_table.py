"""The compiled kernel's step table (runtime/kernel.py, runtime/block.py): its columns,
step kinds, outcomes and energy units."""

from __future__ import annotations

import numpy as np

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
