"""A placement factored into rows and lanes. A convolution reads its input windows once
per output channel: the view broadcasts a matrix X (one row per output position, one
column per tap of the inner axis) over the channels, then lays the rows out and splits
the columns in chunks of lanes. Every step after the broadcast moves whole rows or whole
columns, so what slot row r, lane k of chunk c holds is X[row[r], col[c * per + k]].
A move plan can then gather X's rows once and copy them to their repeats, at a cost
that grows with X (the distinct windows), not with the slots (the MACs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pimc.isa.view import ViewOp, apply_view


@dataclass(frozen=True)
class Factored:
    x: np.ndarray  # (M, L): the element ids (0 for zero padding) of each row's lanes
    row: np.ndarray  # (P,): each slot row of a chunk, its row of x (-1 for padding)
    col: np.ndarray  # (chunks * per,): each lane of each chunk, its column of x (-1: padding)
    chunks: int
    per: int  # lanes a chunk

    def need(self, rows: np.ndarray) -> np.ndarray:
        """(chunks * len(rows), per): the ids the slots of these rows hold, chunk-major."""
        got = self.x[np.maximum(self.row[rows], 0)][:, np.maximum(self.col, 0)]
        got[self.row[rows] < 0] = 0
        got[:, self.col < 0] = 0
        return got.reshape(len(rows), self.chunks, self.per).transpose(1, 0, 2).reshape(
            -1, self.per)


def _by_rows(op: ViewOp, shape: tuple[int, ...]) -> bool:
    """Whether a step moves whole rows of lanes (the last axis) or pads them."""
    if not shape:
        return False
    if op.kind in ("reshape", "broadcast"):
        return bool(op.dims) and op.dims[-1] == shape[-1]
    if op.kind == "transpose":
        return op.dims[-1] == len(shape) - 1
    if op.kind == "slice":
        return op.dims[0] < len(shape) - 1
    return op.kind == "pad"


def factor(shape: tuple[int, ...], view: tuple[ViewOp, ...], low: object = None
           ) -> Factored | None:
    """The view factored after its broadcast; None when no broadcast is followed by
    row-wise steps only (then the placement has no repeated rows to find this way)."""
    shapes = [shape]
    for op in view:
        shapes.append(op.shape_after(shapes[-1]))
    end, chunks, per, rows_to = len(view), 1, 0, 0
    if end >= 1 and view[-1].kind == "pad" and len(view[-1].dims) == 3:
        end, rows_to = end - 1, view[-1].dims[1]  # a chunk's slots past the space
    if (end >= 2 and view[end - 1] == ViewOp("transpose", (1, 0, 2))
            and view[end - 2].kind == "reshape" and len(view[end - 2].dims) == 3):
        _, chunks, per = view[end - 2].dims  # (slots, chunks, per) -> (chunks, slots, per)
        end -= 2
    elif rows_to:
        end, rows_to = end + 1, 0
    start = end
    while start and _by_rows(view[start - 1], shapes[start - 1]):
        start -= 1
    if not any(op.kind == "broadcast" for op in view[start:end]):
        return None
    ids = np.arange(1, math.prod(shape) + 1, dtype=np.int64).reshape(shape)
    x = apply_view(ids, view[:start], low)
    lead = shapes[start][:-1]
    row = np.arange(1, math.prod(lead) + 1, dtype=np.int64).reshape(lead)
    col = np.arange(1, shapes[start][-1] + 1, dtype=np.int64)
    for op in view[start:end]:
        if op.kind == "reshape":
            row = row.reshape(op.dims[:-1])
        elif op.kind == "transpose":
            row = row.transpose(op.dims[:-1])
        elif op.kind == "broadcast":
            row = np.broadcast_to(row, op.dims[:-1])
        elif op.kind == "slice":
            row = apply_view(row, (op,))
        else:
            row = np.pad(row, [(0, b - a) for a, b in zip(row.shape, op.dims[:-1], strict=True)])
            col = np.pad(col, (0, op.dims[-1] - len(col)))
    row = row.reshape(-1) - 1
    if chunks == 1:
        per = len(col)
    if rows_to:
        row = np.pad(row, (0, rows_to - len(row)), constant_values=-1)
    return Factored(np.ascontiguousarray(x.reshape(-1, shapes[start][-1])), row, col - 1,
                    chunks, per)
