"""The splits a lowering chooses and records in the IR: a matrix product's or a placed
reduction's inner axis in chunks, a maximum found by SEARCH. The reference evaluates the
IR with the same records, so it follows the hardware's order of operations."""

from __future__ import annotations

import dataclasses
import math

from pimc.ir import Kernel
from pimc.isa.uop import ViewOp
from pimc.ops import REDUCTIONS
from pimc.passes.dce import dce


def with_chunks(kernel: Kernel, chunks: dict[int, object], attr: str = "chunks") -> Kernel:
    """The kernel with the recorded split of each node's inner axis (or another recorded
    choice, `attr`: "searched", a maximum found by SEARCH)."""
    k = kernel.copy()
    for n, c in chunks.items():
        node = k.node(n)
        attrs = {**dict(node.attrs), attr: c}
        k.graph.nodes[n]["node"] = dataclasses.replace(node, attrs=tuple(sorted(attrs.items())))
    return k


def split_matmuls(kernel: Kernel, chunks: int) -> Kernel:
    """The kernel with every matrix product's inner axis split in `chunks`, and every
    reduction over the last axis of what the host places (a lowering decision the
    reference must follow, so it is recorded in the IR)."""
    return with_chunks(kernel, {n: chunks for n in kernel.graph
                                if kernel.node(n).op == "matmul"
                                or (chunks > 1 and kernel.node(n).op in REDUCTIONS
                                    and _placed(kernel, n))})


def channel_chunks(k: Kernel, inner: int) -> list[int]:
    """Chunk counts whose chunks each take whole input channels of a convolution's taps,
    or whole kernel rows of one, when `inner` is channels x taps (one window shape in
    the kernel): such chunks are alike but for where their channel lies, so the
    relayout gathers their windows once a class (gather.extracted), where chunks cut
    across channels take moves of their own each. Ascending."""
    shapes = {tuple(a[0] for a in ViewOp("window", tuple(k.node(n).attr("step"))).window()[2])
              for n in k.graph if k.node(n).op == "window"}
    if len(shapes) != 1:
        return []
    (shape,) = shapes
    t = math.prod(shape)
    if t == 1 or inner % t:
        return []
    sizes = {t * d for d in range(1, inner // t + 1) if inner // t % d == 0} | {shape[-1]}
    return sorted(inner // m for m in sizes if inner % m == 0)


def split_lanes(k: Kernel, n: int) -> int:
    """The lanes a node's chunks split: a matrix product's inner axis, a placed
    reduction's axis."""
    node = k.node(n)
    if node.op == "matmul":
        return int(node.attr("inner", 1))
    if node.op in REDUCTIONS and _placed(k, n):
        return int((k.node(k.operands(n)[0]).shape or (1,))[-1])
    return 1


def _placed(k: Kernel, n: int) -> bool:
    """Whether a reduction over the last axis (or of a vector) reads only what the host
    places, through views and elementwise ops: each chunk can compute its own lanes."""
    shape = k.node(k.operands(n)[0]).shape or ()
    axis = k.node(n).attr("axis")
    if axis != len(shape) - 1 and not (axis is None and len(shape) == 1):
        return False
    todo, seen = list(k.operands(n)), set()
    while todo:
        x = todo.pop()
        op = k.node(x).op
        if x in seen or op in ("input", "const"):
            continue
        if op == "matmul" or op in REDUCTIONS:
            return False
        seen.add(x)
        todo += k.operands(x)
    return True


Option = tuple[float, int, int]  # a stage's split: (cost, crossbars, chunks)


def within(options: list[list[Option]], limit: int) -> list[Option] | None:
    """One split a stage, together within `limit` crossbars, whose slowest stage costs
    the least (a pipeline delivers one result per its slowest stage's cycles); then the
    crossbars left over buy the stages, costliest first, their cheapest split that still
    fits. None if even the fewest crossbars do not fit."""
    def fewest(t: float) -> list[Option] | None:
        picks = [min((o for o in opts if o[0] <= t), key=lambda o: (o[1], o[0]), default=None)
                 for opts in options]
        return None if None in picks else picks  # type: ignore[return-value]

    for t in sorted({o[0] for opts in options for o in opts}):
        picks = fewest(t)
        if picks is not None and sum(p[1] for p in picks) <= limit:
            break
    else:
        return None
    left = limit - sum(p[1] for p in picks)
    for i in sorted(range(len(picks)), key=lambda i: -picks[i][0]):
        better = [o for o in options[i] if o[1] - picks[i][1] <= left and o[0] < picks[i][0]]
        if better:
            best = min(better, key=lambda o: (o[0], o[1]))
            left -= best[1] - picks[i][1]
            picks[i] = best
    return picks


def recorded(kernel: Kernel, meta: dict[str, str]) -> Kernel:
    """The IR after the passes with the choices a program records (its splits, its
    maxima found by SEARCH): what the order-matched reference evaluates."""
    if "node-chunks" in meta:  # staged: each stage split its own way
        chunks = dict(map(int, c.split(":")) for c in meta["node-chunks"].split())
        kernel = dce(with_chunks(kernel, chunks))
    else:
        kernel = dce(split_matmuls(kernel, int(meta.get("chunks", "1"))))
    searched = [int(n) for n in meta.get("node-searched", "").split()]
    return with_chunks(kernel, dict.fromkeys(searched, 1), "searched")
