"""The ONNX operators that slide a window over spatial axes: Conv, MaxPool, AveragePool
and the global pools, expressed with the IR's `window` (the gather of every window's
elements, padding included, as new trailing axes), `reshape`, `transpose`, `matmul` and
reductions. A convolution is the matrix product of the windows (im2col) with the
weights, per group; a max pooling the largest of each window's elements; an average
pooling the window sums divided by the count of elements ONNX's rule counts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx

from pimc.isa.dtypes import Kind, parse_dtype
from pimc.isa.view import LOWEST, ZERO, ViewOp, window_size, windows

Axes = list[tuple[int, int, int, int, int]]  # per spatial axis: kernel, stride, pads, dilation


class Unsupported(Exception):
    """An operator (or attribute value) with no lowering; the import lists every one."""


def spatial_axes(attrs: dict[str, Any], sizes: tuple[int, ...], kernel: tuple[int, ...],
                 ceil: bool = False) -> Axes:
    """Kernel, stride, pads and dilation per spatial axis, auto_pad and ceil_mode applied
    (ceil_mode's extra windows read beyond the end: more end padding)."""
    r = len(sizes)
    strides = list(attrs.get("strides", [1] * r))
    dilations = list(attrs.get("dilations", [1] * r))
    pads = list(attrs.get("pads", [0] * 2 * r))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if len(strides) != r or len(dilations) != r or len(pads) != 2 * r:
        raise Unsupported(f"strides, dilations and pads must give {r} spatial axes "
                       f"(got {strides}, {dilations}, {pads})")
    if min(strides + dilations + list(kernel), default=1) < 1 or min(pads, default=0) < 0:
        raise Unsupported(f"kernel {list(kernel)}, strides {strides}, dilations {dilations} must "
                       f"be positive and pads {pads} not negative")
    out: Axes = []
    for i, n in enumerate(sizes):
        k, s, d = kernel[i], strides[i], dilations[i]
        begin, end = pads[i], pads[r + i]
        if auto == "VALID":
            begin = end = 0
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
            begin = total // 2 if auto == "SAME_UPPER" else total - total // 2
            end = total - begin
        elif auto != "NOTSET":
            raise Unsupported(f"auto_pad '{auto}' is not one of NOTSET, VALID, SAME_UPPER, "
                           "SAME_LOWER")
        if ceil:
            span = n + begin + end - (k - 1) * d - 1
            count = -(-span // s) + 1
            if (count - 1) * s >= n + begin:  # the last window must start inside
                count -= 1
            end += max(0, (count - 1) * s + (k - 1) * d + 1 - (n + begin + end))
        if window_size(n, k, s, begin, end, d) < 1:
            raise Unsupported(f"a window of {k} (dilation {d}) does not fit an axis of {n} "
                           f"padded by {begin}+{end}")
        out.append((k, s, begin, end, d))
    return out


def window_step(first_axis: int, fill: int, axes: Axes) -> tuple[int, ...]:
    return (first_axis, fill, *(a[j] for j in range(5) for a in axes))


class WindowOps:
    """Mixin of the ONNX importer's builder (pimc.frontend.onnx_import) for window ops."""

    def _window(self, x: int, axes: Axes, fill: int) -> int:
        """(N, C, *S) -> (N, C, *O, *k)."""
        shape = self.info(x).shape
        step = window_step(2, fill, axes)
        out = ViewOp("window", step).shape_after(shape)
        return self.node("window", str(self.info(x).dtype), out, (x,), step=step)

    def op_Pad(self, nd, attrs):
        """Constant padding: a window of size 1 over every padded axis (zeros), then the
        value selected outside the tensor if it is not zero."""
        x = self.operand(nd.input[0])
        shape = self.info(x).shape
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if self.opset < 11:
            pads, value = list(attrs.get("pads", [])), float(attrs.get("value", 0.0))
            axes = list(range(len(shape)))
        else:
            pads = [int(p) for p in self._static(nd.input[1], "Pad's pads").reshape(-1)]
            given = len(nd.input) > 2 and nd.input[2]
            value = float(self._static(nd.input[2], "Pad's value").reshape(-1)[0]) if given else 0.0
            axes = [int(a) % len(shape) for a in self._static(nd.input[3], "Pad's axes")
                    .reshape(-1)] if len(nd.input) > 3 and nd.input[3] else list(range(len(shape)))
        if mode != "constant":
            raise Unsupported(f"mode '{mode}' (only constant padding)")
        if len(pads) != 2 * len(axes) or min(pads, default=0) < 0:
            raise Unsupported(f"pads {pads}: two non-negative values per padded axis")
        begin, end = [0] * len(shape), [0] * len(shape)
        for k, a in enumerate(axes):
            begin[a], end[a] = pads[k], pads[k + len(axes)]
        if not any(begin) and not any(end):
            return x
        r = len(shape)
        step = (0, ZERO, *[1] * r, *[1] * r, *begin, *end, *[1] * r)
        out = ViewOp("window", step).shape_after(shape)
        dt = str(self.info(x).dtype)
        y = self.reshape(self.node("window", dt, out, (x,), step=step), out[:r])
        if value == 0.0:
            return y
        # Another value: selected where a host-written mask (the unpadded cells) is false.
        name = f"{nd.output[0]}_pad_mask"
        self.consts[name] = np.pad(np.ones(shape, bool), list(zip(begin, end, strict=True)))
        fill = self._scalar(value, dt)
        return self.node("select", dt, out[:r], (self.value(name), y, fill))

    def slice(self, x: int, axis: int, start: int, stop: int, step: int = 1) -> int:
        """Values start, start + step, ... before stop along `axis` (a view): a slice,
        then a window of one value striding `step`."""
        shape = self.info(x).shape
        dt = str(self.info(x).dtype)
        if (start, stop) != (0, shape[axis]):
            x = self.node("slice", dt, (*shape[:axis], stop - start, *shape[axis + 1:]), (x,),
                          step=(axis, start, stop))
        if step == 1:
            return x
        r = len(shape) - axis
        win = (axis, ZERO, *[1] * r, step, *[1] * (r - 1), *[0] * (2 * r), *[1] * r)
        out = ViewOp("window", win).shape_after(self.info(x).shape)
        return self.reshape(self.node("window", dt, out, (x,), step=win), out[:len(shape)])

    def op_Slice(self, nd, attrs):
        """Constant starts, ends, axes and positive steps (ONNX's clamping rules)."""
        x = self.operand(nd.input[0])
        shape = self.info(x).shape
        if self.opset < 10:
            starts, ends = list(attrs["starts"]), list(attrs["ends"])
            axes = list(attrs.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            given = [len(nd.input) > i and nd.input[i] for i in range(5)]
            starts, ends = (self._static(nd.input[i], f"Slice's {w}").reshape(-1).tolist()
                            for i, w in ((1, "starts"), (2, "ends")))
            axes = (self._static(nd.input[3], "Slice's axes").reshape(-1).tolist()
                    if given[3] else list(range(len(starts))))
            steps = (self._static(nd.input[4], "Slice's steps").reshape(-1).tolist()
                     if given[4] else [1] * len(starts))
        if min(steps, default=1) < 1:
            raise Unsupported(f"steps {steps} (only positive steps)")
        for a, b, e, st in zip(axes, starts, ends, steps, strict=True):
            a, n = int(a) % len(shape), shape[int(a) % len(shape)]
            b = min(max(int(b) + n if b < 0 else int(b), 0), n)
            e = min(max(int(e) + n if e < 0 else int(e), 0), n)
            if e <= b:
                raise Unsupported(f"an empty slice of axis {a} ({b}:{e})")
            x = self.slice(x, a, b, e, int(st))
        return x

    def op_Concat(self, nd, attrs):
        """Along `axis`: each input padded with zeros to the whole length (a window of
        size 1, as Pad), then taken where a host-written mask says the element is its,
        in a chain of selects: exact, no arithmetic touches a value. Over maps other
        stages computed, the padding is placement: the moves put each input's channels
        where they belong."""
        xs = [self.operand(n) for n in nd.input if n]
        shapes = [tuple(self.info(x).shape) for x in xs]
        r = len(shapes[0])
        axis = int(attrs.get("axis", 0))
        if not -r <= axis < r or any(len(s) != r for s in shapes):
            raise Unsupported(f"axis {axis} of inputs of shapes {[list(s) for s in shapes]}")
        axis %= r
        parts = [(x, s) for x, s in zip(xs, shapes, strict=True) if s[axis]]
        total = sum(s[axis] for _, s in parts)
        out = (*shapes[0][:axis], total, *shapes[0][axis + 1:])
        if any(s[:axis] + s[axis + 1:] != out[:axis] + out[axis + 1:] for s in shapes):
            raise Unsupported(f"inputs of shapes {[list(s) for s in shapes]} differ off axis {axis}")
        dt = str(self.info(xs[0]).dtype)
        if len(parts) == 1:
            return parts[0][0]
        padded, at = [], 0
        for x, s in parts:
            begin, end = [0] * r, [0] * r
            begin[axis], end[axis] = at, total - at - s[axis]
            step = (0, ZERO, *[1] * r, *[1] * r, *begin, *end, *[1] * r)
            win = self.node("window", dt, ViewOp("window", step).shape_after(s), (x,), step=step)
            padded.append((self.reshape(win, out), at, s[axis]))
            at += s[axis]
        y = padded[-1][0]
        for k in range(len(padded) - 2, -1, -1):
            v, first, n = padded[k]
            name = f"{nd.output[0]}__concat{k}"
            mask = np.zeros(out, bool)
            mask[(slice(None),) * axis + (slice(first, first + n),)] = True
            self.consts[name] = mask
            y = self.node("select", dt, out, (self.value(name), v, y))
        return y

    def _spatial(self, nd: onnx.NodeProto, attrs: dict[str, Any], kernel: tuple[int, ...] | None,
                 ceil: bool = False) -> tuple[int, tuple[int, ...], Axes]:
        x = self.operand(nd.input[0])
        shape = self.info(x).shape
        if len(shape) < 3:
            raise Unsupported(f"input of shape {list(shape)}: expected (N, C, spatial...)")
        sizes = shape[2:]
        kernel = tuple(attrs.get("kernel_shape", kernel or ()))
        if len(kernel) != len(sizes):
            raise Unsupported(f"kernel_shape {list(kernel)} for {len(sizes)} spatial axes")
        return x, shape, spatial_axes(attrs, sizes, kernel, ceil)

    def op_Conv(self, nd, attrs):
        """Y[n, m] = sum over the group's channels and the window of W[m] * X, + B[m]."""
        w = self.operand(nd.input[1])
        ws = self.info(w).shape
        x, shape, axes = self._spatial(nd, attrs, tuple(ws[2:]))
        n, c, sizes = shape[0], shape[1], shape[2:]
        if len(ws) != len(shape):
            raise Unsupported(f"weights of shape {list(ws)} for an input of shape {list(shape)}")
        g, m = int(attrs.get("group", 1)), ws[0]
        if g < 1 or c % g or m % g or ws[1] != c // g:
            raise Unsupported(f"group {g}: input channels {c} and weights {list(ws)} disagree")
        r = len(sizes)
        win = self._window(x, axes, ZERO)  # (N, C, *O, *k)
        out = self.info(win).shape[2:2 + r]
        p, kg = math.prod(out), c // g * math.prod(ws[2:])
        cols = self.transpose(win, (0, *range(2, 2 + r), 1, *range(2 + r, 2 + 2 * r)))
        cols = self.reshape(cols, (n, p, g, kg))
        cols = self.transpose(cols, (0, 2, 1, 3))  # (N, G, P, Kg)
        wt = self.transpose(self.reshape(w, (g, m // g, kg)), (0, 2, 1))  # (G, Kg, M/G)
        y = self.matmul(cols, wt)  # (N, G, P, M/G)
        y = self.reshape(self.transpose(y, (0, 1, 3, 2)), (n, m, *out))
        if len(nd.input) > 2 and nd.input[2]:
            b = self.operand(nd.input[2])
            y = self.binary("add", y, self.reshape(b, (m, *(1,) * r)))
        return y

    def op_MaxPool(self, nd, attrs):
        if len(nd.output) > 1 and nd.output[1]:
            raise Unsupported("the Indices output (only the pooled values are computed)")
        x, shape, axes = self._spatial(nd, attrs, None, bool(attrs.get("ceil_mode", 0)))
        if whole_map(shape[2:], axes):
            return self._global(nd, "reduce_max")[0]
        win = self._window(x, axes, LOWEST)
        return self._reduce_window(win, len(axes), "reduce_max")

    def _reduce_window(self, win: int, r: int, op: str) -> int:
        shape = self.info(win).shape
        flat = self.reshape(win, (*shape[:-r], math.prod(shape[-r:])))
        out = shape[:-r]
        return self.node(op, str(self.info(win).dtype), out, (flat,), axis=len(out))

    def op_AveragePool(self, nd, attrs):
        x, shape, axes = self._spatial(nd, attrs, None, bool(attrs.get("ceil_mode", 0)))
        total = self._global(nd, "sum")[0] if whole_map(shape[2:], axes) else \
            self._reduce_window(self._window(x, axes, ZERO), len(axes), "sum")
        declared = spatial_axes(attrs, shape[2:], tuple(a[0] for a in axes))  # no ceil_mode
        include = bool(attrs.get("count_include_pad", 0))
        return self._divide(total, pool_counts(shape[2:], axes, declared if include else None))

    def _divide(self, y: int, counts: np.ndarray) -> int:
        """y / counts; in fixed point y * (1 / counts), the reciprocal quantised as the
        host writes constants (there is no fixed-point division routine)."""
        dt = str(self.info(y).dtype)
        op, values = ("div", counts) if parse_dtype(dt).kind is not Kind.FIXED else (
            "mul", 1.0 / counts)
        if np.all(values == values.flat[0]):
            return self.binary(op, y, self._scalar(float(values.flat[0]), dt))
        name = f"{self.info(y).loc.label.split()[0]}__counts"
        self.consts[name] = values.astype(np.float32)
        return self.binary(op, y, self.value(name))

    def _global(self, nd: onnx.NodeProto, op: str) -> tuple[int, int]:
        """(the reduction over all spatial positions as (N, C, 1, ...), their count)."""
        x = self.operand(nd.input[0])
        shape = self.info(x).shape
        lanes = math.prod(shape[2:])
        flat = self.reshape(x, (*shape[:2], lanes))
        y = self.node(op, str(self.info(x).dtype), shape[:2], (flat,), axis=2)
        return self.reshape(y, (*shape[:2], *(1,) * (len(shape) - 2))), lanes

    def op_GlobalAveragePool(self, nd, attrs):
        total, lanes = self._global(nd, "sum")
        return self._divide(total, np.array([lanes]))

    def op_GlobalMaxPool(self, nd, attrs):
        return self._global(nd, "reduce_max")[0]

    def _reduce(self, nd: onnx.NodeProto, attrs: dict[str, Any], op: str) -> int:
        """ReduceMax / ReduceSum: the reduced axes moved last and flattened into one,
        reduced by the pairwise tree; keepdims puts them back as ones."""
        x = self.operand(nd.input[0])
        shape = self.info(x).shape
        if len(nd.input) > 1 and nd.input[1]:  # opset 18 (ReduceSum 13): axes as an input
            axes = [int(a) for a in self._static(nd.input[1], "axes").reshape(-1)]
        else:
            axes = [int(a) for a in attrs.get("axes", [])]
        if not axes and int(attrs.get("noop_with_empty_axes", 0)):
            return x
        axes = sorted({a % len(shape) for a in axes} if axes else set(range(len(shape))))
        rest = [i for i in range(len(shape)) if i not in axes]
        moved = self.transpose(x, (*rest, *axes))
        kept = tuple(shape[i] for i in rest)
        flat = self.reshape(moved, (*kept, math.prod(shape[a] for a in axes)))
        y = self.node(op, str(self.info(x).dtype), kept, (flat,), axis=len(kept))
        if int(attrs.get("keepdims", 1)):
            y = self.reshape(y, tuple(1 if i in axes else n for i, n in enumerate(shape)))
        return y

    def op_ReduceMax(self, nd, attrs):
        return self._reduce(nd, attrs, "reduce_max")

    def op_ReduceSum(self, nd, attrs):
        return self._reduce(nd, attrs, "sum")


def whole_map(sizes: tuple[int, ...], axes: Axes) -> bool:
    """Whether the pool has one window and it holds the whole map (and padding, which
    adds nothing to a sum or a maximum): a global pool (GoogLeNet's 7 x 7 average over
    a 6 x 6 map padded by one at the end), reduced over the map alone, so that it runs
    down the rows where the map lies (lower.rowtree) instead of gathering a window."""
    return all(window_size(n, k, s, b, e, d) == 1 and d == 1 and b + n <= k
               for n, (k, s, b, e, d) in zip(sizes, axes, strict=True))


def pool_counts(sizes: tuple[int, ...], axes: Axes, declared: Axes | None) -> np.ndarray:
    """How many elements each window's average divides by: those inside the input, or
    with `declared` (count_include_pad) also the declared padding, never ceil_mode's
    extension of it."""
    ones = np.ones(sizes, dtype=np.int64)
    if declared is not None:
        ones = np.pad(ones, [(a[2], a[3]) for a in declared], constant_values=1)
        axes = [(k, s, b - db, e - de, d) for (k, s, b, e, d), (_, _, db, de, _)
                in zip(axes, declared, strict=True)]
    counted = windows(ones, ViewOp("window", window_step(0, ZERO, axes)))
    return counted.reshape(*counted.shape[:len(sizes)], -1).sum(axis=-1)
