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
from pimc.isa.view import ViewOp, view_shape
from pimc.lower.views import View, simplify
from pimc.ops import REDUCTIONS, VIEWS

KEPT = ("input", "const", *VIEWS)  # what never is a resident: placed or free
# From this many phase blocks on, a map of few channels gets a crossbar per phase block
# too: its planes then line up with a reader's, one move a tap instead of one a phase.
MANY_PHASES = 16


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


def _squeezed(kernel: Kernel, n: int) -> tuple[int, ...]:
    return tuple(d for d in kernel.node(n).shape or () if d != 1)


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
    phase = _phases(kernel, roots, where)
    planes = _planes(kernel, roots, stages, phase)
    pitch = _pitches(kernel, roots, where, phase)
    return [dataclasses.replace(st, result_view=_viewed(kernel, n, rows) or resident_view(
                kernel, n, rows, phase[n], planes[n], pitch[n]))
            for st, n in zip(stages, roots, strict=False)] + stages[len(roots):]


def _viewed(kernel: Kernel, n: int, rows: int) -> View:
    """For a product its readers see through one chain of reshapes and transposes (a
    grouped convolution's (groups, positions, channels) as a map's (channels, positions)):
    its result computed in that map's order, so that readers gather it as a map, a
    shifted block a window tap, not in the product's own order, an element at a time.
    () otherwise."""
    if kernel.node(n).op != "matmul":
        return ()
    steps: list[ViewOp] = []
    v = n
    while len(users := list(kernel.graph.successors(v))) == 1 and kernel.node(
            users[0]).op in ("reshape", "transpose") and _squeezed(kernel, users[0]) != (
            _squeezed(kernel, v)):  # not a reader's unit axes for broadcasting
        v = users[0]
        node = kernel.node(v)
        steps.append(ViewOp("transpose", tuple(node.attr("perm"))) if node.op == "transpose"
                     else ViewOp("reshape", tuple(node.shape or ())))
    if v == n or len(kernel.node(v).shape or ()) < 3:
        return ()
    return simplify(tuple(kernel.node(n).shape or ()), (*steps, *resident_view(kernel, v, rows)))


def _pitches(kernel: Kernel, roots: list[int], where: dict[int, list[int]],
             phase: dict[int, Phase]) -> dict[int, int]:
    """The planes each map's channels take in a phase block (its channels, or more),
    from the last stage back: a stage that reads a map in its own phase order, in place
    or through stride-1 windows (a convolution), wants it at its own result's pitch, so
    that a tap's source planes are as far apart as the destination's for every phase (a
    64-channel map read by a 128-channel convolution: a move for all phases of a tap,
    not one a phase), unless that would more than double the map's rows."""
    pitch: dict[int, int] = {}
    for n in reversed(roots):
        shape = tuple(kernel.node(n).shape or ())
        pitch[n] = shape[-3] if len(shape) >= 3 else 0
        if not pitch[n]:
            continue
        for u in kernel.graph.successors(n):
            node = kernel.node(u)
            if node.op == "window":
                axis, _, axes = ViewOp("window", tuple(node.attr("step"))).window()
                if axis + len(axes) != len(shape) or max(a[1] for a in axes) > 1:
                    continue
            elif node.op in ("reshape", "transpose", "bitcast", "matmul", *REDUCTIONS):
                continue
            for r in where.get(u, []):
                if (phase.get(r) == phase[n] and r in pitch and pitch[r] <= 2 * shape[-3]
                        and len(kernel.node(r).shape or ()) == len(shape)):
                    pitch[n] = max(pitch[n], pitch[r])  # at most twice the rows
    return pitch


def _planes(kernel: Kernel, roots: list[int], stages: list[Stage], phase: dict[int, Phase]
            ) -> dict[int, tuple[int, ...]]:
    """The (phase) plane each map is stored in: its own, or larger where a map its stage
    reads, in the order it wants, has larger planes (a pooling's 6 x 6 output stored as
    its 7 x 7 input is): with the same rows a plane and a plane row, a window tap or an
    in-place read is one shifted block for every channel, not a move per channel."""
    out: dict[int, tuple[int, ...]] = {}
    for st, n in zip(stages, roots, strict=False):
        shape = view_shape(tuple(kernel.node(n).shape or ()), phase_view(kernel, n, phase[n]))
        plane = shape[-2:] if len(shape) >= 3 else ()
        for name in st.residents:
            m = int(name.removeprefix("fmap"))
            other = out.get(m, ())
            mine = tuple(kernel.node(m).shape or ())
            if (plane and len(other) == len(plane) and len(mine) == len(kernel.node(n).shape or ())
                    and all(b <= 2 * a for a, b in zip(plane, other, strict=True))
                    and all(_want(kernel, u, mine, phase[n]) == phase[m]
                            for u in kernel.graph.successors(m) if u in st.kernel.graph)):
                plane = tuple(max(a, b) for a, b in zip(plane, other, strict=True))
        out[n] = plane
    return out


Phase = tuple[int, tuple[int, ...]] | None  # (first spatial axis, strides), or natural order


def _phases(kernel: Kernel, roots: list[int], where: dict[int, list[int]]
            ) -> dict[int, Phase]:
    """The polyphase order each stage computes its result in, from the last stage back:
    what the readers want, so that every window tap they gather is whole phase planes
    shifted. A stage computed in phase order t that reads the map through windows of
    strides s wants s * t (a tap of output position t*i + a reads s*t*i + s*a + k); an
    in-place reader (elementwise, a window over the channels) wants t; a reader through
    another view or a reduction the natural order. Where readers disagree, the most
    common want. `where`: the roots of the stages computing each node."""
    phase: dict[int, Phase] = {}
    for n in reversed(roots):
        shape = tuple(kernel.node(n).shape or ())
        wants = [_want(kernel, u, shape, phase.get(r))
                 for u in kernel.graph.successors(n) for r in where.get(u, [])]
        phase[n] = max(wants, key=wants.count) if wants else None
    return phase


def _want(kernel: Kernel, u: int, shape: tuple[int, ...], t: Phase) -> Phase:
    """The order node u, computed in order t, wants of its operand (of `shape`)."""
    node = kernel.node(u)
    if node.op in ("reshape", "transpose", "bitcast", "matmul", *REDUCTIONS):
        return None
    if node.op != "window":  # in place
        return t if t is None or _fits(t, shape, tuple(node.shape or ())) else None
    axis, _, axes = ViewOp("window", tuple(node.attr("step"))).window()
    s = tuple(a[1] for a in axes)
    if axis + len(s) != len(shape):  # over other axes (LRN's channels): in place if stride 1
        return t if max(s) == 1 and (t is None or _fits(t, shape, shape)) else None
    if t is not None and axis <= t[0] and t[0] + len(t[1]) == len(shape):
        s = (*s[:t[0] - axis], *(a * b for a, b in zip(s[t[0] - axis:], t[1], strict=True)))
    while len(s) > 1 and s[0] == 1:  # a window over the channels too (Concat's padding)
        axis, s = axis + 1, s[1:]
    return (axis, s) if max(s) > 1 else None


def _fits(t: tuple[int, tuple[int, ...]], shape: tuple[int, ...], other: tuple[int, ...]) -> bool:
    """Whether phase order t applies to both shapes the same way (same spatial axes)."""
    axis = t[0]
    return len(shape) == len(other) == axis + len(t[1]) and shape[axis:] == other[axis:]


def resident_view(kernel: Kernel, n: int, rows: int,
                  strides: tuple[int, tuple[int, ...]] | None = None,
                  plane: tuple[int, ...] = (), pitch: int = 0) -> View:
    """The order a resident map is computed in: polyphase for strided readers (or the
    `strides` given), each (phase) plane padded to `plane` and the channels to `pitch`
    if given, then each crossbar of `rows` rows holding whole planes (or whole image
    rows), so that every crossbar has the same pattern and one move serves them all."""
    steps = phase_view(kernel, n, strides or phase_strides(kernel, n))
    shape = view_shape(tuple(kernel.node(n).shape or ()), steps)
    if len(shape) < 3:
        return steps
    plane = plane or shape[-2:]
    pitch = max(pitch, shape[-3])
    g = rows // math.prod(plane)
    phases = math.prod(shape[:-3])
    if g and (phases >= MANY_PHASES or (phases > 1 and pitch >= g)):
        pitch = -(-pitch // g) * g  # each phase block whole crossbars
    wider = (*shape[:-3], pitch, *plane)
    if wider != shape:
        shape = wider
        steps = (*steps, ViewOp("pad", shape))
    plane, outer = shape[-2] * shape[-1], math.prod(shape[:-2])
    if plane <= rows:
        g = rows // plane
        padded = -(-outer // g) * g
        more = (ViewOp("reshape", (outer, plane)), ViewOp("pad", (padded, plane)),
                ViewOp("reshape", (padded // g, g * plane)), ViewOp("pad", (padded // g, rows)))
    elif shape[-1] <= rows:
        g, h, w = rows // shape[-1], shape[-2], shape[-1]
        hp = -(-h // g) * g
        more = (ViewOp("reshape", (outer, h, w)), ViewOp("pad", (outer, hp, w)),
                ViewOp("reshape", (outer, hp // g, g * w)), ViewOp("pad", (outer, hp // g, rows)))
    else:
        return steps
    return simplify(tuple(kernel.node(n).shape or ()), (*steps, *more))


def _window_strides(kernel: Kernel, n: int) -> set[tuple[int, tuple[int, ...]]] | None:
    """(first axis, strides) of the windows over value n that matter to its order
    (those over its trailing axes, or strided); None when something reads it through
    another view or reduces it (its natural order is then kept)."""
    strides = set()
    for u in kernel.graph.successors(n):
        op = kernel.node(u).op
        if op == "window":
            axis, _, axes = ViewOp("window", tuple(kernel.node(u).attr("step"))).window()
            s = tuple(a[1] for a in axes)
            if axis + len(axes) == len(kernel.node(n).shape or ()) or max(s) > 1:
                strides.add((axis, s))
        elif op in ("reshape", "transpose", "bitcast", *REDUCTIONS):
            return None
    return strides


def phase_strides(kernel: Kernel, n: int) -> tuple[int, tuple[int, ...]] | None:
    """(first spatial axis, strides) when every window over value n strides that way
    over its trailing axes, some stride above 1."""
    strides = _window_strides(kernel, n)
    if strides is None or len(strides) != 1:
        return None
    ((axis, s),) = strides
    return (axis, s) if max(s) > 1 else None


def phase_view(kernel: Kernel, n: int, strides: tuple[int, tuple[int, ...]] | None) -> View:
    """Value n's elements in polyphase order, (s1, s2, N, C, H/s1, W/s2), for windows
    of these strides over its trailing axes: each window tap then reads one phase plane
    at a constant offset, so the moves that gather a tap are whole shifted blocks, not
    an element at a time. () without strides."""
    if strides is None:
        return ()
    axis, s = strides
    shape = tuple(kernel.node(n).shape or ())
    if axis + len(s) != len(shape) or max(s) < 2:
        return ()
    outer, sizes = shape[:axis], shape[axis:]
    padded = tuple(-(-m // k) * k for m, k in zip(sizes, s, strict=True))
    split = tuple(d for m, k in zip(padded, s, strict=True) for d in (m // k, k))
    r = len(s)
    perm = (*(axis + 2 * i + 1 for i in range(r)), *range(axis), *(axis + 2 * i for i in range(r)))
    steps = [ViewOp("pad", (*outer, *padded))] if padded != sizes else []
    return (*steps, ViewOp("reshape", (*outer, *split)), ViewOp("transpose", perm))


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
