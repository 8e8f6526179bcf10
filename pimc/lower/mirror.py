"""A trained weight updated in the layout of each product that reads it (FloatPIM Sec. 4.3:
"the result will be rewritten in the same column as the new weight matrix").

A training step computes W - lr * dW once, one element a row, and then moves it into every
placement of W. A fully-connected layer's placements hold W's rows in lanes (the forward
product) and its columns in lanes (the backward one): one of them is always a transpose of
the natural order, and moving into it costs a move per element (a 1024 x 10 layer's
write-back took half of its step). Instead, the update is computed again in the order of
such a placement, each lane of it a plane of crossbars of its own: the write-back is then a
TRANSFER per lane. The update is elementwise, so every copy computes the same bits.
"""

from __future__ import annotations

import math

import numpy as np

from pimc.isa.uop import TensorIO, ViewOp, apply_view, view_shape
from pimc.lower.views import View, element_ids

# Above this many elements a scattered placement is mirrored without planning the
# write-back it replaces (that plan is itself a move per element to build).
UNPLANNED = 1 << 20


def scattered(t: TensorIO, rows: int) -> bool:
    """Whether the one-element-a-row order leaves the elements of t's first crossbar
    (lane 0) at many distances from their slots: a move each, or nearly."""
    ids = apply_view(element_ids(t.shape), t.view).reshape(-1, t.lanes)[:len(t.rows), 0]
    at = np.flatnonzero(ids > 0)
    natural = ids[at].astype(np.int64) - 1
    distances = {(int(x), int(r)) for x, r in zip(natural // rows, natural % rows - at,
                                                   strict=True)}
    return len(distances) > max(2, len(at) // 4)


def mirror_view(t: TensorIO, rows: int) -> View | None:
    """The order that computes a value, one element a row, with lane l of placement t's
    slot in crossbar x, row r at crossbar l * X + x, row r (X: t's crossbars); None where
    that does not pay: a placement that repeats elements (a convolution's weights, every
    output position's copy: the planner already gathers them once and doubles them) or
    is laid out one element a row already."""
    if not t.view or t.broadcast or t.rows.step != 1 or t.rows.start or t.xbs.step != 1:
        return None
    if any(op.kind in ("broadcast", "window") for op in t.view):
        return None
    shape = view_shape(t.shape, t.view)
    lanes, slots = shape[-1], math.prod(shape[:-1])
    per_xb = len(t.rows)
    xbs = -(-slots // per_xb)
    if lanes != t.lanes or xbs != len(t.xbs):
        return None
    return (*t.view, ViewOp("reshape", (slots, lanes)), ViewOp("pad", (xbs * per_xb, lanes)),
            ViewOp("reshape", (xbs, per_xb, lanes)), ViewOp("pad", (xbs, rows, lanes)),
            ViewOp("transpose", (2, 0, 1)))
