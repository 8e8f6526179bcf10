"""Constant folding: a node whose operands are all constants becomes a constant, computed
with the reference semantics (so folding never changes a result's bits)."""

from __future__ import annotations

import dataclasses

import numpy as np

from pimc.ir import Kernel
from pimc.reference.evaluate import evaluate_node


def fold_constants(kernel: Kernel, mode: str = "ieee") -> Kernel:
    k = kernel.copy()
    for n in list(k.nodes_in_order()):
        node, ops = k.node(n), k.operands(n)
        if node.op in ("const", "input") or not ops:
            continue
        if all(k.node(o).op == "const" for o in ops):
            raw = int(np.asarray(evaluate_node(k, n, mode)).reshape(-1)[0])
            k.graph.remove_edges_from(list(k.graph.in_edges(n, keys=True)))
            k.graph.nodes[n]["node"] = dataclasses.replace(node, op="const",
                                                           attrs=(("raw", raw),))
    return k
