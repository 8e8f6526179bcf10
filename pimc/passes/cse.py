"""Common-subexpression elimination: nodes with the same op, type, attributes and operands
(in any order, for commutative ops) become one."""

from __future__ import annotations

from pimc.ir import Kernel
from pimc.ops import COMMUTATIVE


def cse(kernel: Kernel) -> Kernel:
    k = kernel.copy()
    seen: dict[tuple, int] = {}
    replace: dict[int, int] = {}
    for n in list(k.nodes_in_order()):
        node = k.node(n)
        ops = [replace.get(o, o) for o in k.operands(n)]
        if node.op == "input":
            continue
        key_ops = tuple(sorted(ops)) if node.op in COMMUTATIVE else tuple(ops)
        key = (node.op, node.dtype, node.shape, node.attrs, key_ops)
        if key in seen:
            replace[n] = seen[key]
        else:
            seen[key] = n
    for old, new in replace.items():
        for _, user, data in list(k.graph.out_edges(old, data=True)):
            k.graph.add_edge(new, user, index=data["index"])
        k.graph.remove_node(old)
    k.outputs = {name: replace.get(n, n) for name, n in k.outputs.items()}
    return k
