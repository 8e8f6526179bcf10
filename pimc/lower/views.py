"""Host placement views of tensors (numpy reshape, transpose, broadcast, pad steps):
simplifying them and moving them across a lane axis."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pimc.ir import Param
from pimc.isa.uop import ViewOp

View = tuple[ViewOp, ...]


@dataclass(frozen=True)
class Placement:
    """A parameter as the host writes it: `lanes` values per row from `col` on, through
    `view` (whose last dimension is the lanes)."""

    param: Param
    col: int
    lanes: int
    view: View


def element_ids(shape: tuple[int, ...]) -> np.ndarray:
    """Each element's id, 1 on (0 is what a view's padding holds), in the tensor's shape."""
    size = math.prod(shape)
    return np.arange(1, size + 1, dtype=np.int32 if size < 2**31 - 1 else np.int64
                     ).reshape(shape)


def element_slots(have: np.ndarray, size: int) -> np.ndarray:
    """The slot each element id is in, from the ids a placement holds slot by slot
    (`have`, 0 for padding); index 0 unused."""
    at = np.zeros(size + 1, dtype=np.int64)
    at[have[have > 0]] = np.flatnonzero(have > 0)
    return at


def simplify(shape: tuple[int, ...], view: View) -> View:
    """The same view without steps that change nothing; consecutive reshapes and
    consecutive transposes merged."""
    out: list[tuple[ViewOp, tuple[int, ...]]] = []  # step, the shape it applies to
    for step in view:
        if out and out[-1][0].kind == step.kind and step.kind in ("reshape", "transpose"):
            prev, shape = out.pop()
            if step.kind == "transpose":
                step = ViewOp("transpose", tuple(prev.dims[d] for d in step.dims))
        after = step.shape_after(shape)
        if step.kind == "transpose":
            if tuple(step.dims) == tuple(range(len(shape))):
                continue
        elif after == shape:
            continue
        out.append((step, shape))
        shape = after
    return tuple(step for step, _ in out)


def widen(view: View, k: int) -> View:
    """The view acting on arrays with one more trailing axis of length k."""
    out = []
    for step in view:
        if step.kind in ("window", "slice"):  # act on axes counted from the front
            out.append(step)
        elif step.kind == "transpose":
            out.append(ViewOp("transpose", (*step.dims, len(step.dims))))
        else:
            out.append(ViewOp(step.kind, (*step.dims, k)))
    return tuple(out)


def aligned(shape: tuple[int, ...], target: tuple[int, ...]) -> View:
    """numpy broadcasting of `shape` to `target` as view steps."""
    steps = []
    padded = (1,) * (len(target) - len(shape)) + tuple(shape)
    if padded != tuple(shape):
        steps.append(ViewOp("reshape", padded))
    if padded != tuple(target):
        steps.append(ViewOp("broadcast", tuple(target)))
    return tuple(steps)
