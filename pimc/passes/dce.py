"""Dead-code elimination: drop nodes no result depends on (inputs stay: they are the
kernel's interface)."""

from __future__ import annotations

import networkx as nx

from pimc.ir import Kernel


def dce(kernel: Kernel) -> Kernel:
    k = kernel.copy()
    live = set(k.outputs.values())
    for n in k.outputs.values():
        live |= nx.ancestors(k.graph, n)
    dead = [n for n in k.graph if n not in live and k.node(n).op != "input"]
    k.graph.remove_nodes_from(dead)
    return k
