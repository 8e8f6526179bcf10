"""Gradient rules of the operators that slide a window (Conv, the pools, LRN) and of the
channel-wise ones (Concat, BatchNormalization), written as ONNX nodes of a training step
(`pimc/frontend/onnx_train.py`, docs/training.md)."""

from __future__ import annotations

import itertools

import numpy as np
import onnx

from pimc.frontend.train_graph import StepGraph


def conv_grad(node: onnx.NodeProto, dy: str, want: set[int], attrs: dict[str, object], g: StepGraph,
          where: str) -> dict[int, str]:
    """A 2-D convolution's gradients, as convolutions: dW correlates the input with dY
    (strides become dilations), dX convolves dY (strides as zeros between its values)
    with the kernel turned 180 degrees, dB sums dY. With G groups, dW is the correlation
    of every input channel with every output channel, its blocks across groups zeroed
    and summed away; dX a convolution of G groups."""
    x, w = node.input[0], node.input[1]
    shape = g.shapes
    n, c, h, wd = shape[x]
    m, cg, kh, kw = shape[w]
    oh, ow = shape[dy][2:]
    groups = int(attrs.get("group", 1))
    sh, sw = (int(v) for v in attrs.get("strides", [1, 1]))
    pt, pl, pb, pr = (int(v) for v in attrs.get("pads", [0, 0, 0, 0]))
    mg = m // groups
    out: dict[int, str] = {}
    if 2 in want:
        out[2] = g.reduce_sum(dy, [0, 2, 3], False, where, (m,))
    if 1 in want:
        # dW[m, c] = sum over n of X[n, c] correlated with dY[n, m] dilated by the stride;
        # a remainder of the input the windows never reach is met by one zero row of dY
        rh, rw = (h + pt + pb - kh) % sh, (wd + pl + pr - kw) % sw
        eh, ew = int(rh > 0), int(rw > 0)
        grad = dy if not (eh or ew) else g.pad(dy, [0, 0, 0, 0, 0, 0, eh, ew], where,
                                                (n, m, oh + eh, ow + ew))
        xt = g.add("Transpose", [x], where, (c, n, h, wd), perm=[1, 0, 2, 3])
        gt = g.add("Transpose", [grad], where, (m, n, oh + eh, ow + ew), perm=[1, 0, 2, 3])
        pads = [pt, pl, pb + (sh - rh if rh else 0), pr + (sw - rw if rw else 0)]
        cw = g.add("Conv", [xt, gt], where, (c, m, kh, kw), pads=pads, dilations=[sh, sw])
        if groups > 1:  # keep each group's block: (G, C/G, G, M/G, ...) times its diagonal
            blocks = (groups, cg, groups, mg, kh, kw)
            cw = g.add("Reshape", [cw, g.const(np.array(blocks, dtype=np.int64), "shape")],
                       where, blocks)
            diagonal = np.eye(groups, dtype=np.float32).reshape(groups, 1, groups, 1, 1, 1)
            cw = g.add("Mul", [cw, g.const(diagonal, "diagonal")], where, blocks)
            cw = g.reduce_sum(cw, [2], False, where, (groups, cg, mg, kh, kw))
            cw = g.add("Transpose", [cw], where, (groups, mg, cg, kh, kw), perm=[0, 2, 1, 3, 4])
            out[1] = g.add("Reshape", [cw, g.const(np.array((m, cg, kh, kw), dtype=np.int64),
                                                   "shape")], where, (m, cg, kh, kw))
        else:
            out[1] = g.add("Transpose", [cw], where, (m, c, kh, kw), perm=[1, 0, 2, 3])
    if 0 in want:
        # the kernel turned 180 degrees: a product with the reversal of its kh * kw taps
        turned = w
        if kh * kw > 1:
            flip = np.eye(kh * kw, dtype=np.float32)[::-1].copy()
            flat = g.add("Reshape", [w, g.const(np.array([m * cg, kh * kw], dtype=np.int64),
                                                "shape")], where, (m * cg, kh * kw))
            turned = g.add("MatMul", [flat, g.const(flip, "flip")], where, (m * cg, kh * kw))
        # (G, M/G, C/G, k) -> (G, C/G, M/G, k): each group's channels swapped
        split = (groups, mg, cg, kh, kw)
        turned = g.add("Reshape", [turned, g.const(np.array(split, dtype=np.int64), "shape")],
                       where, split)
        turned = g.add("Transpose", [turned], where, (groups, cg, mg, kh, kw),
                       perm=[0, 2, 1, 3, 4])
        wt = g.add("Reshape", [turned, g.const(np.array((c, mg, kh, kw), dtype=np.int64),
                                               "shape")], where, (c, mg, kh, kw))
        out[0] = _transposed(dy, wt, groups, (n, c, h, wd), (kh, kw), (sh, sw), (pt, pl), g,
                             where)
    return out


def _transposed(dy: str, turned: str, group: int, shape: tuple[int, int, int, int],
                kernel: tuple[int, int], strides: tuple[int, int], begin: tuple[int, int],
                g: StepGraph, where: str) -> str:
    """The transpose of a strided convolution (pads `begin` first) applied to dY: dY
    spread by the strides, convolved with the `turned` kernel (already turned 180
    degrees, input and output channels swapped), cropped where a stride skipped the
    input's last rows; `shape` is the input's."""
    n, c, h, w = shape
    _, m, oh, ow = g.shapes[dy]
    (kh, kw), (sh, sw), (pt, pl) = kernel, strides, begin
    up = dy if (sh, sw) == (1, 1) else _spread(dy, (n, m, oh, ow), (sh, sw), g, where)
    pads = [kh - 1 - pt, kw - 1 - pl, h - oh * sh + pt, w - ow * sw + pl]
    over = (max(0, -pads[2]), max(0, -pads[3]))  # spread a row too far: cropped
    pads = [*pads[:2], max(0, pads[2]), max(0, pads[3])]
    full = g.add("Conv", [up, turned], where, (n, c, h + over[0], w + over[1]), pads=pads,
                 group=group)
    return _crop(full, (n, c, h + over[0], w + over[1]), (h, w), g, where)


def _crop(t: str, shape: tuple[int, int, int, int], keep: tuple[int, int], g: StepGraph,
          where: str) -> str:
    """The first `keep` rows and columns of a map: products with a selection matrix (the
    IR has no slice), exact for finite values."""
    n, c, h, w = shape
    if (h, w) == keep:
        return t
    if w != keep[1]:
        pick = g.const(np.eye(w, keep[1], dtype=np.float32), "crop")
        t = g.add("MatMul", [t, pick], where, (n, c, h, keep[1]))
        w = keep[1]
    if h != keep[0]:
        pick = g.const(np.eye(keep[0], h, dtype=np.float32), "crop")
        t = g.add("MatMul", [pick, t], where, (n, c, keep[0], w))
    return t


def batch_norm_grad(node: onnx.NodeProto, dy: str, want: set[int], attrs: dict[str, object],
                g: StepGraph, where: str) -> dict[int, str]:
    """Batch normalisation with its stored statistics (as the forward pass computes it):
    a per-channel affine map, y = scale (x - mean) / sqrt(var + eps) + B, whose scale
    and shift train; the statistics stay as they are."""
    x, scale, mean, var = node.input[0], node.input[1], node.input[3], node.input[4]
    shape = g.shapes[x]
    c = shape[1]
    per = (c, *[1] * (len(shape) - 2))  # broadcast along the channel axis
    axes = [i for i in range(len(shape)) if i != 1]
    eps = float(attrs.get("epsilon", 1e-5))
    root = g.add("Sqrt", [g.add("Add", [var, g.const(eps)], where, (c,))], where, (c,))
    inv = g.add("Div", [g.const(1.0), root], where, (c,))
    as_per = g.const(np.array(per, dtype=np.int64), "shape")
    out: dict[int, str] = {}
    if 0 in want:
        k = g.add("Reshape", [g.add("Mul", [scale, inv], where, (c,)), as_per], where, per)
        out[0] = g.add("Mul", [dy, k], where, shape)
    if 1 in want:
        centred = g.add("Sub", [x, g.add("Reshape", [mean, as_per], where, per)], where, shape)
        xhat = g.add("Mul", [centred, g.add("Reshape", [inv, as_per], where, per)], where, shape)
        out[1] = g.reduce_sum(g.add("Mul", [dy, xhat], where, shape), axes, False, where, (c,))
    if 2 in want:
        out[2] = g.reduce_sum(dy, axes, False, where, (c,))
    return out


def concat_grad(node: onnx.NodeProto, dy: str, want: set[int], attrs: dict[str, object],
            g: StepGraph, where: str) -> dict[int, str]:
    """Each input's part of dY along the channel axis, picked by a 1 x 1 convolution (or
    a product, for 2-D) with a selection matrix: the IR has no slice; exact for finite
    values."""
    full = g.shapes[dy]
    out, start = {}, 0
    for i, x in enumerate(node.input):
        part = g.shapes[x][1]
        if i in want:
            pick = np.zeros((part, full[1]), dtype=np.float32)
            pick[np.arange(part), start + np.arange(part)] = 1
            if len(full) == 2:
                out[i] = g.add("MatMul", [dy, g.const(pick.T.copy(), "pick")], where, g.shapes[x])
            else:
                kernel = pick.reshape(part, full[1], *[1] * (len(full) - 2))
                out[i] = g.add("Conv", [dy, g.const(kernel, "pick")], where, g.shapes[x])
        start += part
    return out


def lrn_grad(node: onnx.NodeProto, dy: str, attrs: dict[str, object], g: StepGraph, where: str
         ) -> str:
    """Local response normalisation, y = x d^-beta with d = bias + alpha / size times
    the sum of x^2 over channels c - lo .. c + hi:
    dx = dy d^-beta - (2 alpha beta / size) x times the sum of dy y / d over the channels
    whose windows hold c (c - hi .. c + lo)."""
    x, y = node.input[0], node.output[0]
    shape = g.shapes[x]
    n, c = shape[:2]
    rest = int(np.prod(shape[2:]))
    size = int(attrs["size"])
    alpha, beta = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75))
    bias = float(attrs.get("bias", 1.0))
    lo = (size - 1) // 2
    flat = (n, 1, c, rest)
    ones = g.const(np.ones((1, 1, size, 1), dtype=np.float32), "window")

    def channel_sum(t: str, before: int) -> str:
        """Sums over `size` channels from c - before on (a convolution along channels)."""
        r = g.add("Reshape", [t, g.const(np.array(flat, dtype=np.int64), "shape")], where, flat)
        r = g.add("Conv", [r, ones], where, flat, pads=[before, 0, size - 1 - before, 0])
        return g.add("Reshape", [r, g.const(np.array(shape, dtype=np.int64), "shape")], where,
                     shape)

    sq = g.add("Mul", [x, x], where, shape)
    d = g.add("Add", [g.add("Mul", [channel_sum(sq, lo), g.const(alpha / size)], where, shape),
                      g.const(bias)], where, shape)
    log = g.add("Log", [d], where, shape)
    scale = g.add("Exp", [g.add("Mul", [log, g.const(-beta)], where, shape)], where, shape)
    back = channel_sum(g.add("Div", [g.add("Mul", [dy, y], where, shape), d], where, shape),
                       size - 1 - lo)
    cross = g.add("Mul", [g.add("Mul", [x, back], where, shape),
                          g.const(2 * alpha * beta / size)], where, shape)
    return g.add("Sub", [g.add("Mul", [dy, scale], where, shape), cross], where, shape)


def _spread(dy: str, shape: tuple[int, int, int, int], strides: tuple[int, int], g: StepGraph,
            where: str) -> str:
    """dY with stride - 1 zeros after each value along both spatial axes."""
    n, m, oh, ow = shape
    sh, sw = strides
    r = g.add("Reshape", [dy, g.const(np.array([n, m, oh, 1, ow, 1], dtype=np.int64),
                                      "shape")], where, (n, m, oh, 1, ow, 1))
    zeros = np.array([0] * 6 + [0, 0, 0, sh - 1, 0, sw - 1], dtype=np.int64)
    r = g.pad(r, [int(v) for v in zeros], where, (n, m, oh, sh, ow, sw))
    return g.add("Reshape", [r, g.const(np.array([n, m, oh * sh, ow * sw], dtype=np.int64),
                                        "shape")], where, (n, m, oh * sh, ow * sw))


def pool_grad(node: onnx.NodeProto, dy: str, attrs: dict[str, object], g: StepGraph, where: str
          ) -> str:
    """A pool's input gradient: spread evenly over a global or a tiling window; for a max
    pool, to the first position that holds its window's maximum."""
    x = node.input[0]
    n, c, h, w = g.shapes[x]
    if node.op_type == "GlobalAveragePool":
        share = g.const(np.full((1, 1, h, w), 1.0 / (h * w), dtype=np.float32), "share")
        return g.add("Mul", [dy, share], where, (n, c, h, w))
    k = [int(v) for v in attrs.get("kernel_shape", [])]
    s = [int(v) for v in attrs.get("strides", k)]
    if s != k or any(int(p) for p in attrs.get("pads", [])) or h % k[0] or w % k[1]:
        return _window_pool(node, dy, attrs, g, where)
    oh, ow = h // k[0], w // k[1]
    back = g.const(np.array([n, c, h, w], dtype=np.int64), "shape")
    if node.op_type == "AveragePool":
        col = g.const(np.array([n, c, oh, 1, ow, 1], dtype=np.int64), "shape")
        share = g.const(np.full((1, 1, 1, k[0], 1, k[1]), 1.0 / (k[0] * k[1]),
                                dtype=np.float32), "share")
        spread = g.add("Mul", [g.add("Reshape", [dy, col], where, (n, c, oh, 1, ow, 1)), share],
                       where, (n, c, oh, k[0], ow, k[1]))
        return g.add("Reshape", [spread, back], where, (n, c, h, w))
    # a max pool: the first position of each window (in row-major order) that holds
    # its maximum takes the gradient, as onnx's Indices and PyTorch choose
    kk = k[0] * k[1]
    big = (n, c, oh, k[0], ow, k[1])
    order = [0, 1, 2, 4, 3, 5]  # (n, c, oh, ow, kh, kw)
    lanes = (n, c, oh, ow, kk)
    xs = g.add("Reshape", [x, g.const(np.array(big, dtype=np.int64), "shape")], where, big)
    xs = g.add("Transpose", [xs], where, (n, c, oh, ow, *k), perm=order)
    xs = g.add("Reshape", [xs, g.const(np.array(lanes, dtype=np.int64), "shape")], where, lanes)
    one = (n, c, oh, ow, 1)
    y = g.add("Reshape", [node.output[0], g.const(np.array(one, dtype=np.int64), "shape")],
              where, one)
    # x < max is a miss (Less has floats in every opset, Equal only from 11)
    hit = g.add("Where", [g.add("Less", [xs, y], where, lanes), g.const(0.0), g.const(1.0)],
                where, lanes)
    earlier = g.add("MatMul", [hit, g.const(np.triu(np.ones((kk, kk), np.float32), 1),
                                             "earlier")], where, lanes)
    first = g.add("Where", [g.add("Greater", [earlier, g.const(0.5)], where, lanes),
                            g.const(0.0), hit], where, lanes)
    grad = g.add("Mul", [first, g.add("Reshape", [dy, g.const(np.array(one, dtype=np.int64),
                                                                "shape")], where, one)],
                 where, lanes)
    grad = g.add("Reshape", [grad, g.const(np.array((n, c, oh, ow, *k), dtype=np.int64),
                                           "shape")], where, (n, c, oh, ow, *k))
    grad = g.add("Transpose", [grad], where, big, perm=order)
    return g.add("Reshape", [grad, back], where, (n, c, h, w))


def _window_pool(node: onnx.NodeProto, dy: str, attrs: dict[str, object], g: StepGraph,
                 where: str) -> str:
    """A pool whose windows overlap or reach into padding, tap by tap (row-major): a
    tap's elements of the input (_tap) take the gradient of the windows where the tap
    is the first maximum (or its share of the average); each tap's gradient is spread
    back to the positions it read (zeros between, by the strides) and added to the
    taps' before it. Every step is elementwise or a view: nothing is multiplied by a
    one-hot kernel, and no map is gathered an element at a time."""
    x = node.input[0]
    n, c, h, w = g.shapes[x]
    oh, ow = g.shapes[dy][2:]
    (kh, kw) = [int(v) for v in attrs["kernel_shape"]]
    sh, sw = [int(v) for v in attrs.get("strides", [1, 1])]
    pt, pl, _, _ = [int(v) for v in attrs.get("pads", [0] * 4)]
    full = (kh - 1 + sh * oh, kw - 1 + sw * ow)  # every tap's rows and columns, padded
    big = (n, c, max(full[0], pt + h), max(full[1], pl + w))
    rows = np.arange(oh)[:, None] * sh + np.arange(kh)[None, :] - pt  # (oh, kh)
    cols = np.arange(ow)[:, None] * sw + np.arange(kw)[None, :] - pl  # (ow, kw)
    one = (n, c, oh, ow)
    total, seen = None, None
    for i, j in itertools.product(range(kh), range(kw)):
        inside = (((rows[:, i] >= 0) & (rows[:, i] < h))[:, None]
                  & ((cols[:, j] >= 0) & (cols[:, j] < w))[None, :])
        if node.op_type == "MaxPool":
            tap = _tap(x, (i - pt, j - pl), (sh, sw), (oh, ow), g, where)
            hit = g.add("Where", [g.add("Less", [tap, node.output[0]], where, one),
                                  g.const(0.0), g.const(inside[None, None].astype(np.float32),
                                                        "inside")], where, one)
            first = hit if seen is None else g.add(
                "Where", [g.add("Greater", [seen, g.const(0.5)], where, one), g.const(0.0), hit],
                where, one)
            seen = hit if seen is None else g.add("Max", [seen, hit], where, one)
            share = first
        else:
            counted = kh * kw if int(attrs.get("count_include_pad", 0)) else \
                ((((rows >= 0) & (rows < h)).sum(axis=1))[:, None]
                 * (((cols >= 0) & (cols < w)).sum(axis=1))[None, :])
            share = g.const((inside / counted)[None, None].astype(np.float32), "share")
        grad = g.add("Mul", [share, dy], where, one)
        spread = g.pad(_spread(grad, one, (sh, sw), g, where),
                       [0, 0, i, j, 0, 0, big[2] - i - sh * oh, big[3] - j - sw * ow], where, big)
        total = spread if total is None else g.add("Add", [total, spread], where, big)
    return g.slice(total, [pt, pl], [pt + h, pl + w], [2, 3], where, (n, c, h, w))


def _tap(x: str, at: tuple[int, int], strides: tuple[int, int], out: tuple[int, int],
         g: StepGraph, where: str) -> str:
    """x[..., s * o + a, s * p + b] for o, p < out (padding reads the lowest value): a 1 x 1
    max pool of strides s, padded so that its windows start at a tap's offset, then the
    leading windows before it dropped. The map is read through a strided window, as the
    pool itself reads it, so it stays in the pool's phase order."""
    n, c, h, w = g.shapes[x]
    skip = [max(0, -(-a // s)) for a, s in zip(at, strides, strict=True)]  # windows dropped
    begin = [s * q - a for a, s, q in zip(at, strides, skip, strict=True)]
    end = [max(0, s * (q + o - 1) + 1 - size - b) for s, q, o, size, b in
           zip(strides, skip, out, (h, w), begin, strict=True)]
    made = [(size + b + e - 1) // s + 1 for size, b, e, s in
            zip((h, w), begin, end, strides, strict=True)]
    pooled = g.add("MaxPool", [x], where, (n, c, *made), kernel_shape=[1, 1],
                   strides=list(strides), pads=[*begin, *end])
    if skip == [0, 0] and made == list(out):
        return pooled
    return g.slice(pooled, skip, [q + o for q, o in zip(skip, out, strict=True)], [2, 3], where,
                   (n, c, *out))
