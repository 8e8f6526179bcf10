"""Host views: the numpy steps the host applies to a tensor before placing it (reshape,
transpose, broadcast, pad, and the sliding windows of a convolution or a pooling), so that
shape operators and window gathers of a network's input cost nothing in the crossbar
beyond the cells written, each of which is counted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pimc.isa.errors import PimError

KINDS = ("reshape", "transpose", "broadcast", "pad", "window", "slice")
ZERO, LOWEST = 0, 1  # a window's padding value: zero, or the dtype's lowest (max pooling)


@dataclass(frozen=True)
class ViewOp:
    """One step (numpy semantics): reshape to `dims`, transpose by the permutation `dims`,
    broadcast to `dims`, pad with zeros at the end of each axis up to `dims`, `window`:
    dims = (axis, fill, k.., s.., pad_begin.., pad_end.., dilation..) over r spatial axes
    from `axis` on, which become r output axes followed by r kernel axes (padding filled
    with zero, or with the lowest value when fill is 1), or `slice`: dims = (axis, start,
    stop), the values start..stop-1 along that axis (one pass of a folded stage)."""

    kind: str
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PimError(f"unknown view step '{self.kind}' ({', '.join(KINDS)})")
        if self.kind == "window" and (len(self.dims) < 7 or (len(self.dims) - 2) % 5
                                      or self.dims[1] not in (ZERO, LOWEST)
                                      or min(a[j] for a in self.window()[2] for j in (0, 1, 4))
                                      < 1):
            raise PimError(f"malformed window step {self}: expected axis, fill (0 or 1), then "
                           f"kernels, strides (positive), pads at the beginning and at the end, "
                           f"dilations (positive) per axis")
        if self.kind == "slice" and (len(self.dims) != 3 or min(self.dims) < 0
                                     or self.dims[1] >= self.dims[2]):
            raise PimError(f"malformed slice step {self}: expected axis, start, stop "
                           f"(0 <= start < stop)")

    def window(self) -> tuple[int, int, list[tuple[int, int, int, int, int]]]:
        """(axis, fill, per spatial axis (kernel, stride, pad begin, pad end, dilation))."""
        r = (len(self.dims) - 2) // 5
        cols = [self.dims[2 + i * r: 2 + (i + 1) * r] for i in range(5)]
        return self.dims[0], self.dims[1], list(zip(*cols, strict=True))

    def shape_after(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape this step makes of `shape`; PimError if it does not apply."""
        if self.kind == "reshape" and math.prod(self.dims) == math.prod(shape):
            return self.dims
        if self.kind == "transpose" and sorted(self.dims) == list(range(len(shape))):
            return tuple(shape[d] for d in self.dims)
        if self.kind == "broadcast" and len(self.dims) >= len(shape) and all(
                a in (1, b) for a, b in zip(shape[::-1], self.dims[::-1], strict=False)):
            return self.dims
        if self.kind == "pad" and len(self.dims) == len(shape) and all(
                a <= b for a, b in zip(shape, self.dims, strict=True)):
            return self.dims
        if self.kind == "slice":
            axis, start, stop = self.dims
            if axis < len(shape) and stop <= shape[axis]:
                return (*shape[:axis], stop - start, *shape[axis + 1:])
        if self.kind == "window":
            axis, _, axes = self.window()
            if axis + len(axes) <= len(shape):
                out = [window_size(n, *a) for n, a in zip(shape[axis:], axes, strict=False)]
                if min(out) >= 1:
                    return (*shape[:axis], *out, *(a[0] for a in axes),
                            *shape[axis + len(axes):])
        raise PimError(f"view step {self} does not apply to shape {list(shape)}")

    def __str__(self) -> str:
        return f"{self.kind}({','.join(map(str, self.dims))})"


def window_size(n: int, kernel: int, stride: int, begin: int, end: int, dilation: int) -> int:
    """Windows along an axis of n values (the padded axis, floor division, as ONNX)."""
    return (n + begin + end - (kernel - 1) * dilation - 1) // stride + 1


def lowest(dtype: np.dtype) -> object:
    """The value max pooling pads with: the least integer, or -inf for floats (also
    those numpy does not know as floats, such as bfloat16)."""
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    if dtype.kind == "b":
        return False
    return np.array(-np.inf).astype(dtype)


def windows(values: np.ndarray, step: ViewOp, low: object = None) -> np.ndarray:
    """The window step's gather; `low` overrides the value max pooling pads with (e.g. a
    raw bit pattern)."""
    axis, fill, axes = step.window()
    r = len(axes)
    pad = [(0, 0)] * values.ndim
    for i, (_, _, begin, end, _) in enumerate(axes):
        pad[axis + i] = (begin, end)
    value = 0 if fill == ZERO else (lowest(values.dtype) if low is None else low)
    padded = np.pad(values, pad, constant_values=value)
    spans = [(k - 1) * d + 1 for k, _, _, _, d in axes]
    win = sliding_window_view(padded, spans, axis=tuple(range(axis, axis + r)))
    index: list[slice] = [slice(None)] * win.ndim
    for i, (_, s, _, _, d) in enumerate(axes):
        index[axis + i] = slice(None, None, s)
        index[values.ndim + i] = slice(None, None, d)
    win = win[tuple(index)]  # [..., O.., T..., k..]
    order = [*range(axis + r), *range(values.ndim, values.ndim + r),
             *range(axis + r, values.ndim)]
    return np.ascontiguousarray(win.transpose(order))


def _sliced(step: ViewOp) -> tuple[slice, ...]:
    axis, start, stop = step.dims
    return (*[slice(None)] * axis, slice(start, stop))


def view_shape(shape: tuple[int, ...], view: tuple[ViewOp, ...]) -> tuple[int, ...]:
    for step in view:
        shape = step.shape_after(shape)
    return shape


def apply_view(values: np.ndarray, view: tuple[ViewOp, ...], low: object = None) -> np.ndarray:
    """The tensor as the host places it: the view's numpy steps, in order."""
    for step in view:
        if step.kind == "reshape":
            values = values.reshape(step.dims)
        elif step.kind == "transpose":
            values = values.transpose(step.dims)
        elif step.kind == "pad":
            values = np.pad(values, [(0, b - a) for a, b in zip(values.shape, step.dims,
                                                                 strict=True)])
        elif step.kind == "window":
            values = windows(values, step, low)
        elif step.kind == "slice":
            values = values[_sliced(step)]
        else:
            values = np.broadcast_to(values, step.dims)
    return values


def unview(placed: np.ndarray, shape: tuple[int, ...], view: tuple[ViewOp, ...]) -> np.ndarray:
    """The tensor back from its placement (the view undone step by step; of replicated
    copies the first is read, padding is dropped; values no window or slice covers read 0)."""
    shapes = [tuple(shape)]
    for step in view:
        shapes.append(step.shape_after(shapes[-1]))
    for step, before in zip(reversed(view), reversed(shapes[:-1]), strict=True):
        if step.kind == "reshape":
            placed = placed.reshape(before)
        elif step.kind == "transpose":
            placed = placed.transpose(np.argsort(step.dims))
        elif step.kind == "pad":
            placed = placed[tuple(slice(0, d) for d in before)]
        elif step.kind == "slice":
            out = np.zeros(before, dtype=placed.dtype)
            out[_sliced(step)] = placed
            placed = out
        elif step.kind == "window":
            ids = np.arange(1, math.prod(before) + 1).reshape(before)
            where = windows(ids, ViewOp("window", (step.dims[0], ZERO, *step.dims[2:])))
            out = np.zeros(math.prod(before) + 1, dtype=placed.dtype)
            out[where.reshape(-1)[::-1]] = placed.reshape(-1)[::-1]  # the first copy wins
            placed = out[1:].reshape(before)
        else:
            lead = len(step.dims) - len(before)
            index = tuple(0 if i < lead or before[i - lead] == 1 else slice(None)
                          for i in range(len(step.dims)))
            placed = placed[index].reshape(before)
    return placed
