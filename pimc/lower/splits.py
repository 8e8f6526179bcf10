"""The splits a lowering chooses and records in the IR: a matrix product's or a placed
reduction's inner axis in chunks, a maximum found by SEARCH. The reference evaluates the
IR with the same records, so it follows the hardware's order of operations."""

from __future__ import annotations

import dataclasses

from pimc.ir import Kernel
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
