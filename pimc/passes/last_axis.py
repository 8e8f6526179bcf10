"""Reductions along their last axis: a reduction of another axis reads its operand
through a transpose that moves that axis last, and a whole-tensor reduction of more than
one axis reads it flattened. The lowering places a reduced axis along a row's lanes (or
split in chunks over rows), which is the last axis; the ONNX front end already builds
its reductions this way. The values reduced and their order along the axis are the
same, so the result is bit for bit the one before."""

from __future__ import annotations

import dataclasses
import math

from pimc.ir import Kernel, Node, add_node
from pimc.ops import REDUCTIONS


def last_axis(kernel: Kernel) -> Kernel:
    k = kernel.copy()
    for n in list(k.nodes_in_order()):
        node = k.node(n)
        if node.op not in REDUCTIONS or node.op == "dot":
            continue
        (x,) = k.operands(n)
        src = k.node(x)
        shape = tuple(src.shape or ())
        axis = node.attr("axis")
        if axis is None and len(shape) > 1:
            view = Node("reshape", node.loc, src.dtype, (math.prod(shape),))
        elif axis is not None and axis != len(shape) - 1:
            perm = (*(a for a in range(len(shape)) if a != axis), axis)
            view = Node("transpose", node.loc, src.dtype, tuple(shape[p] for p in perm),
                        (("perm", perm),))
            attrs = {**dict(node.attrs), "axis": len(shape) - 1}
            k.graph.nodes[n]["node"] = dataclasses.replace(node, attrs=tuple(sorted(attrs.items())))
        else:
            continue
        v = add_node(k, view, (x,))
        k.graph.remove_edge(x, n)
        k.graph.add_edge(v, n, index=0)
    return k
