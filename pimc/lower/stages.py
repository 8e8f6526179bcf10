"""Stages: a tensor graph cut where a computed feature map is read through a window or a
reduction (a convolution, a pooling, a global pool after a layer), so that each stage
has its own iteration space (FloatPIM: a layer per group of memory blocks).

A cut value stays in the crossbars of the stage that computes it (a *resident*); each
stage that reads it gets it as an input, which the linker builds with moves
(pimc.lower.relayout) instead of host writes. Node ids are kept, so what the lowering
records per node (the chunks of a split inner axis) carries back to the whole kernel,
which the reference evaluates.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import networkx as nx

from pimc.ir import Kernel, Node, Param, add_node
from pimc.lower.orders import phases, pitches, planes, resident_view, viewed
from pimc.lower.views import View
from pimc.ops import REDUCTIONS, VIEWS

KEPT = ("input", "const", *VIEWS)  # what never is a resident: placed or free


@dataclass(frozen=True)
class Stage:
    kernel: Kernel
    residents: tuple[str, ...]  # its inputs that earlier stages compute
    result_view: View = ()  # the order its (resident) result is computed in


def resident_name(n: int) -> str:
    return f"fmap{n}"


def copy_windowed_inputs(kernel: Kernel, per_run: set[str]) -> Kernel:
    """Each input in `per_run` (a network's input, not its weights) that a window reads
    gets a copy, which becomes a stage of its own: the host writes the input once, one
    element a row, and the windows are gathered from it by moves (FloatPIM's shifted
    input windows), not written by the host once per window and output channel."""
    out = kernel.copy()
    for n in list(kernel.graph):
        node = kernel.node(n)
        if node.op != "input" or str(node.attr("name")) not in per_run:
            continue
        users = list(kernel.graph.successors(n))
        todo, windowed = list(users), False
        while todo and not windowed:
            u = todo.pop()
            windowed = kernel.node(u).op == "window"
            if kernel.node(u).op in VIEWS:
                todo += kernel.graph.successors(u)
        if not windowed:
            continue
        loc = dataclasses.replace(node.loc, label=f"{node.attr('name')} input placement")
        c = add_node(out, dataclasses.replace(node, op="copy", loc=loc, attrs=()), (n,))
        for u in set(users):
            for key, data in list(out.graph.get_edge_data(n, u).items()):
                out.graph.remove_edge(n, u, key)
                out.graph.add_edge(c, u, **data)
    return out


def cuts(kernel: Kernel, products: bool = False) -> list[int]:
    """Computed values read through a view by a window or a reduction, and reductions
    a matrix product reads (a pooled map into a classifier), in order; with `products`
    also every computed operand of a matrix product (a classifier's hidden layers too
    wide for the relayout inside one stage)."""
    out = set()
    for n in kernel.graph:
        op = kernel.node(n).op
        if products and op == "matmul":
            for x in kernel.operands(n):
                while kernel.node(x).op in VIEWS:
                    (x,) = kernel.operands(x)
                if kernel.node(x).op not in KEPT:
                    out.add(x)
        if op in REDUCTIONS and any(kernel.node(d).op == "matmul"
                                    for d in nx.descendants(kernel.graph, n)):
            out.add(n)
        if op == "matmul" and _broadcast(kernel, n):
            out.add(n)
        if op != "window" and op not in REDUCTIONS:
            continue
        for x in kernel.operands(n):
            viewed = op == "window"
            while kernel.node(x).op in VIEWS:
                viewed = True
                (x,) = kernel.operands(x)
            if kernel.node(x).op not in KEPT and (viewed or not _by_lanes(kernel, x)):
                out.add(x)
    return [n for n in kernel.nodes_in_order() if n in out]


def _broadcast(kernel: Kernel, n: int) -> bool:
    """Whether an elementwise op reads node n broadcast over more elements than it has
    (a convolution's input gradient times a max pool's taps): computed in the reader's
    stage, the product would be computed, and its operands gathered, once a copy."""
    size = math.prod(kernel.node(n).shape or ())
    return any(kernel.node(u).op not in (*REDUCTIONS, "matmul")
               and math.prod(kernel.node(u).shape or ()) > size for u in _users(kernel, n))


def _by_lanes(kernel: Kernel, n: int) -> bool:
    """Whether a reduction can compute node n lane by lane where it needs it: an
    elementwise op of placed values (sum(a * b) over inputs)."""
    for x in kernel.operands(n):
        while kernel.node(x).op in VIEWS:
            (x,) = kernel.operands(x)
        if kernel.node(x).op not in ("input", "const"):
            return False
    return kernel.node(n).op not in (*REDUCTIONS, "matmul")


def split_stages(kernel: Kernel, rows: int, products: bool = False) -> list[Stage]:
    """One stage per cut value, in order, then the stage of the kernel's results; a
    kernel without cuts is one stage, itself. `rows`: a crossbar's. A value two stages
    would both compute becomes a cut too (computed once, kept, moved to both)."""
    cut = cuts(kernel, products)
    if not cut and len(_result_groups(kernel)) == 1:
        return [Stage(kernel, ())]
    while True:
        stages = _stages(kernel, cut, rows)
        owner: dict[int, int] = {}
        shared = set()
        for i, st in enumerate(stages):
            for n in st.kernel.graph:
                if st.kernel.node(n).op not in KEPT and owner.setdefault(n, i) != i:
                    shared.add(n)
        # the last shared value of each chain (a layer's output, not its matmul)
        shared = {n for n in shared if any(u not in shared for u in _users(kernel, n))}
        if not shared - set(cut):
            return stages
        cut = [n for n in kernel.nodes_in_order() if n in shared or n in cut]


def _result_groups(kernel: Kernel) -> list[tuple[Param, ...]]:
    """Results of one shape share the last stage; results of several shapes (a training
    step's loss and new weights) each end a stage of their own, since one iteration
    space computes one shape (and a weight's update is its own chain)."""
    if len({tuple(p.shape) for p in kernel.results}) <= 1:
        return [kernel.results]
    return [(p,) for p in kernel.results]


def _users(kernel: Kernel, n: int) -> set[int]:
    """The nodes that read n, through views."""
    out, todo = set(), list(kernel.graph.successors(n))
    while todo:
        u = todo.pop()
        if kernel.node(u).op in VIEWS:
            todo += kernel.graph.successors(u)
        else:
            out.add(u)
    return out


def _stages(kernel: Kernel, cut: list[int], rows: int) -> list[Stage]:
    stages = []
    for n in cut:
        node = kernel.node(n)
        name = resident_name(n)
        result = Param(name, str(node.dtype), tuple(node.shape or ()), node.loc)
        stages.append(_stage(kernel, f"{kernel.name}.{name}", {name: n}, (result,), set(cut)))
    groups = _result_groups(kernel)
    for g in groups:
        name = kernel.name if len(groups) == 1 else f"{kernel.name}.{g[0].name}"
        stages.append(_stage(kernel, name, {p.name: kernel.outputs[p.name] for p in g},
                             g, set(cut), own=False))
    roots = [*cut, kernel.outputs[kernel.results[0].name]] if len(kernel.results) == 1 else cut
    where: dict[int, list[int]] = {}  # node -> the roots of the stages computing it
    for st, n in zip(stages, roots, strict=False):
        for m in st.kernel.graph:
            if st.kernel.node(m).op != "input":
                where.setdefault(m, []).append(n)
    phase = phases(kernel, roots, where)
    plane = planes(kernel, roots, stages, phase)
    pitch = pitches(kernel, roots, where, phase)
    return [dataclasses.replace(st, result_view=viewed(kernel, n, rows) or resident_view(
                kernel, n, rows, phase[n], plane[n], pitch[n]))
            for st, n in zip(stages, roots, strict=False)] + stages[len(roots):]


def _stage(kernel: Kernel, name: str, outputs: dict[str, int], results: tuple[Param, ...],
           cut: set[int], own: bool = True) -> Stage:
    """The stage computing `outputs` from the cut values other stages compute (its
    residents) and the inputs; unless it is the stage of its `own` cut values, a result
    that is a cut value is copied from its resident."""
    keep: set[int] = set()
    residents: dict[int, str] = {}
    todo = list(outputs.values())
    roots = set(todo) if own else set()
    while todo:
        n = todo.pop()
        if n in keep:
            continue
        keep.add(n)
        if n in cut and n not in roots:
            residents[n] = resident_name(n)
            continue
        todo += kernel.operands(n)
    graph = nx.MultiDiGraph(kernel.graph.subgraph(keep))
    params = [p for p in kernel.params
              if any(kernel.node(n).op == "input" and kernel.node(n).attr("name") == p.name
                     for n in keep)]
    for n, rname in residents.items():
        node = kernel.node(n)
        graph.remove_edges_from(list(graph.in_edges(n, keys=True)))
        graph.nodes[n]["node"] = Node("input", node.loc, node.dtype, node.shape,
                                      (("name", rname),))
        params.append(Param(rname, str(node.dtype), tuple(node.shape or ()), node.loc))
    sub = Kernel(name, tuple(params), tuple(results), graph, dict(outputs), kernel.source,
                 {r.name: kernel.result_locs.get(r.name, r.loc) for r in results})
    return Stage(sub, tuple(residents.values()))
