"""The order each cut value (a stage's resident result) is computed in, chosen for its
readers: through the reshapes and transposes they read it by (viewed), in polyphase
blocks where they read it through strided windows (phases), in planes as large as the
maps beside it (planes), and with a channel pitch that lines up with its reader's
(pitches); resident_view turns the choice into a view (pimc.lower.stages)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pimc.ir import Kernel
from pimc.isa.view import ViewOp, view_shape
from pimc.lower.views import View, simplify
from pimc.ops import REDUCTIONS

if TYPE_CHECKING:
    from pimc.lower.stages import Stage

# From this many phase blocks on, a map of few channels gets a crossbar per phase block
# too: its planes then line up with a reader's, one move a tap instead of one a phase.
MANY_PHASES = 16
# (first spatial axis, the strides of each level, the reader's first), or the natural
# order. One level but for a network input's copy, which a stage computed in phase order
# t reads through stride s (t over 2s): levels t and s, so that each of the reader's
# phase blocks reads one block of s x s planes, the same distance off for every block
# (nested deeper, a tap's offset would carry through the levels and cut its moves)
Phase = tuple[int, tuple[tuple[int, ...], ...]] | None


def _squeezed(kernel: Kernel, n: int) -> tuple[int, ...]:
    return tuple(d for d in kernel.node(n).shape or () if d != 1)


def viewed(kernel: Kernel, n: int, rows: int) -> View:
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


def pitches(kernel: Kernel, roots: list[int], where: dict[int, list[int]],
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
            elif node.op in ("reshape", "transpose", "slice", "bitcast", "matmul", *REDUCTIONS):
                continue
            for r in where.get(u, []):
                if (phase.get(r) == phase[n] and r in pitch and pitch[r] <= 2 * shape[-3]
                        and len(kernel.node(r).shape or ()) == len(shape)):
                    pitch[n] = max(pitch[n], pitch[r])  # at most twice the rows
    return pitch


def planes(kernel: Kernel, roots: list[int], stages: list[Stage], phase: dict[int, Phase]
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


def phases(kernel: Kernel, roots: list[int], where: dict[int, list[int]]
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
        written = kernel.node(n).op == "copy"  # a network input the host writes
        wants = [_want(kernel, u, shape, phase.get(r), written)
                 for u in kernel.graph.successors(n) for r in where.get(u, [])]
        phase[n] = max(wants, key=wants.count) if wants else None
    return phase


def _want(kernel: Kernel, u: int, shape: tuple[int, ...], t: Phase, nested: bool = False
          ) -> Phase:
    """The order node u, computed in order t, wants of its operand (of `shape`), in
    two levels if `nested`."""
    node = kernel.node(u)
    if node.op in ("reshape", "transpose", "slice", "bitcast", "matmul", *REDUCTIONS):
        return None
    if node.op != "window":  # in place
        return t if t is None or _fits(t, shape, tuple(node.shape or ())) else None
    axis, _, axes = ViewOp("window", tuple(node.attr("step"))).window()
    s = tuple(a[1] for a in axes)
    if axis + len(s) != len(shape):  # over other axes (LRN's channels): in place if stride 1
        return t if max(s) == 1 and (t is None or _fits(t, shape, shape)) else None
    levels: tuple[tuple[int, ...], ...] = ()
    if t is not None and axis <= t[0] and t[0] + len(t[1][0]) == len(shape):
        levels = tuple((1,) * (t[0] - axis) + level for level in t[1])
    if nested and len(levels) == 1 and all(a > 2 * b for a, b in zip(levels[0], s, strict=True)
                                           if b > 1):
        levels = (levels[0], s)  # the reader's phase, then the stride (measured: it pays
        # where the reader's phase order is over twice the stride; ResNet-50's conv1, 16
        # and 2: 551k -> 418k cycles; AlexNet's, 8 and 4: 2.48M -> 2.62M; 2 and 4: 0.30M
        # -> 3.48M)
    else:
        levels = (tuple(math.prod(d) for d in zip(*levels, s, strict=True)),)
    levels = tuple(level for level in levels if max(level) > 1)
    while levels and len(levels[0]) > 1 and all(level[0] == 1 for level in levels):
        axis, levels = axis + 1, tuple(level[1:] for level in levels)  # (Concat's padding)
    return (axis, levels) if levels else None


def _fits(t: tuple[int, tuple[tuple[int, ...], ...]], shape: tuple[int, ...],
          other: tuple[int, ...]) -> bool:
    """Whether phase order t applies to both shapes the same way (same spatial axes)."""
    axis = t[0]
    return len(shape) == len(other) == axis + len(t[1][0]) and shape[axis:] == other[axis:]


def resident_view(kernel: Kernel, n: int, rows: int,
                  strides: Phase = None,
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
        elif op in ("reshape", "transpose", "slice", "bitcast", *REDUCTIONS):
            return None
    return strides


def phase_strides(kernel: Kernel, n: int) -> Phase:
    """(first spatial axis, strides) when every window over value n strides that way
    over its trailing axes, some stride above 1."""
    strides = _window_strides(kernel, n)
    if strides is None or len(strides) != 1:
        return None
    ((axis, s),) = strides
    return (axis, (s,)) if max(s) > 1 else None


def phase_view(kernel: Kernel, n: int, strides: Phase) -> View:
    """Value n's elements in polyphase order, (s1, s2, N, C, H/s1, W/s2), for windows
    of these strides over its trailing axes: each window tap then reads one phase plane
    at a constant offset, so the moves that gather a tap are whole shifted blocks, not
    an element at a time. In two levels (a reader in phase order t through stride s),
    (t1, t2, s1, s2, N, C, ...). () without strides."""
    if strides is None:
        return ()
    axis, levels = strides
    shape = tuple(kernel.node(n).shape or ())
    r = len(levels[0])
    total = tuple(math.prod(level[i] for level in levels) for i in range(r))
    if axis + r != len(shape) or max(total) < 2:
        return ()
    outer, sizes = shape[:axis], shape[axis:]
    padded = tuple(-(-m // k) * k for m, k in zip(sizes, total, strict=True))
    split = tuple(d for i, (m, k) in enumerate(zip(padded, total, strict=True))
                  for d in (m // k, *(level[i] for level in levels)))
    per = len(levels) + 1  # an axis's quotient, then its digits
    perm = (*(axis + i * per + 1 + j for j in range(len(levels)) for i in range(r)),
            *range(axis), *(axis + i * per for i in range(r)))
    steps = [ViewOp("pad", (*outer, *padded))] if padded != sizes else []
    return (*steps, ViewOp("reshape", (*outer, *split)), ViewOp("transpose", perm))
