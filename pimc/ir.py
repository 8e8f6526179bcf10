"""The dataflow IR: one networkx multigraph per kernel, a frozen record per node.

Edges run from operand to user and carry the operand's position (`index`). Passes are
plain functions from Kernel to Kernel; they copy the graph rather than mutate the one
they are given, so a pass can be tested on its own and compared before and after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import networkx as nx


@dataclass(frozen=True)
class Loc:
    """Where a node came from: file, line and column (1-based)."""

    file: str
    line: int
    column: int
    label: str = ""  # what a listing calls it besides the op (an ONNX node's name and type)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Node:
    """op: "input", "const", "add", "sub", "mul", "neg", "lt", ..., "select", "relu", "min",
    "max", "abs", "cast", "sum", "dot", "reduce_max". dtype and shape are None until the
    type-checking pass fills them in."""

    op: str
    loc: Loc
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    attrs: tuple[tuple[str, object], ...] = ()

    def attr(self, name: str, default: object = None) -> object:
        return dict(self.attrs).get(name, default)

    def with_type(self, dtype: str, shape: tuple[int, ...]) -> Node:
        return dataclasses.replace(self, dtype=dtype, shape=shape)


@dataclass(frozen=True)
class Param:
    name: str
    dtype: str
    shape: tuple[int, ...]
    loc: Loc


@dataclass
class Kernel:
    name: str
    params: tuple[Param, ...]
    results: tuple[Param, ...]
    graph: nx.MultiDiGraph = field(default_factory=nx.MultiDiGraph)
    outputs: dict[str, int] = field(default_factory=dict)  # result name -> node id
    source: str = ""
    result_locs: dict[str, Loc] = field(default_factory=dict)  # where each is assigned

    def node(self, n: int) -> Node:
        return self.graph.nodes[n]["node"]

    def operands(self, n: int) -> list[int]:
        """A node's operands in order."""
        preds = self.graph.in_edges(n, data="index")
        return [src for src, _, _ in sorted(preds, key=lambda e: e[2])]

    def nodes_in_order(self) -> Iterator[int]:
        """Operands before users; among equals, the order they were built in."""
        return iter(nx.lexicographical_topological_sort(self.graph))

    def copy(self) -> Kernel:
        return dataclasses.replace(self, graph=self.graph.copy(), outputs=dict(self.outputs),
                                   result_locs=dict(self.result_locs))


def add_node(kernel: Kernel, node: Node, operands: tuple[int, ...] = ()) -> int:
    n = kernel.graph.number_of_nodes()
    while n in kernel.graph:
        n += 1
    kernel.graph.add_node(n, node=node)
    for i, src in enumerate(operands):
        kernel.graph.add_edge(src, n, index=i)
    return n
