"""Stages: where a CNN is cut, how a resident map is laid out, and the moves that rebuild
a placement from another (checked by replaying the plan cell by cell, and end to end
on the runtime, bit for bit)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from pimc.runtime import run_program

from pimc.compile import compile_model
from pimc.frontend.onnx_import import import_model
from pimc.isa.uop import Shift, Span, TensorIO, Transfer, ViewOp, apply_view, view_shape
from pimc.isa.view import LOWEST, ZERO
from pimc.lower.factor import factor
from pimc.lower.moves import Move, on_words, row_spans, runs, strided
from pimc.lower.orders import resident_view
from pimc.lower.relayout import PAD_LOWEST, plan
from pimc.lower.stages import split_stages
from pimc.passes.pipeline import run_passes
from pimc.reference.onnx_verify import verify_model
from samples.make_onnx_samples import small_cnn


def _kernel(model: onnx.ModelProto):
    imported = import_model(model, "m.onnx")
    return run_passes(imported.kernel, "", "ieee", skip=("typecheck",))


def test_a_cnn_is_cut_where_a_computed_map_is_windowed_or_pooled():
    k = _kernel(small_cnn())
    stages = split_stages(k, 1024)
    labels = [g.kernel.node(g.kernel.outputs[g.kernel.results[0].name]).loc.label
              for g in stages]
    assert labels == ["relu1 Relu", "pool1 MaxPool", "relu2 Relu", "gap GlobalAveragePool",
                      "fc Gemm"]
    assert [len(g.residents) for g in stages] == [0, 1, 1, 1, 1]
    # each stage reads its resident as an input of the same node id
    for g in stages[1:]:
        (name,) = g.residents
        assert any(g.kernel.node(n).op == "input" and g.kernel.node(n).attr("name") == name
                   for n in g.kernel.graph)
    # the map a stride-2 pooling reads is computed in polyphase order
    assert any(step.kind == "transpose" for step in stages[0].result_view)
    assert not any(step.kind == "transpose" for step in stages[2].result_view)


def test_a_kernel_without_windows_over_computed_maps_is_one_stage():
    from samples.make_onnx_samples import gemm_relu_gemm

    k = _kernel(gemm_relu_gemm())
    (only,) = split_stages(k, 1024)
    assert only.kernel is k and only.residents == ()


@pytest.mark.parametrize("shape,rows,after", [
    ((1, 8, 6, 6), 64, (8, 64)),  # a plane of 36 per crossbar of 64 rows
    ((1, 2, 10, 10), 64, (2, 2, 64)),  # 6 image rows of 10 per crossbar
    ((1, 3, 4, 4), 64, (1, 64)),  # 4 planes of 16
])
def test_resident_maps_fill_crossbars_with_whole_planes_or_image_rows(shape, rows, after):
    from pimc.ir import Kernel, Loc, Node, add_node

    k = Kernel("k", (), ())
    n = add_node(k, Node("relu", Loc("", 1, 1), "f32", shape))
    view = resident_view(k, n, rows)
    assert view_shape(shape, view) == after
    ids = np.arange(1, int(np.prod(shape)) + 1).reshape(shape)
    placed = apply_view(ids, view).reshape(-1, rows)
    assert sorted(placed[placed > 0].tolist()) == ids.ravel().tolist()  # each element once


def _replay(src: TensorIO, dst: TensorIO) -> np.ndarray:
    """What each slot lane of dst holds after the plan's moves, fills and copies, cell
    by cell: element ids, 0 for zero padding, PAD_LOWEST for -inf, -9 for never written."""
    size = int(np.prod(src.shape))
    ids = np.arange(1, size + 1).reshape(src.shape)
    have = apply_view(ids, src.view).reshape(-1)
    held = {}
    for s, v in enumerate(have):
        held[(src.xbs.start + s // len(src.rows), src.rows.start + s % len(src.rows))] = v
    xbs = dst.xbs.stop + 1
    grid = np.full((xbs, dst.rows.stop, dst.lanes), -9)
    home = np.full((xbs + 4 * len(dst.xbs), max(src.rows.stop, dst.rows.stop)), -9)  # copies
    p = plan(src, dst)
    for m in (*p.spread, *p.extract, *p.moves, *p.fills, *p.copies):  # none in a neighbour
        assert dst.xbs.start <= m.xbs.start and m.xbs.stop <= dst.xbs.stop, m
    if p.home_zero is not None:
        xs, rows, word = p.home_zero
        home[[x + word * len(dst.xbs) for x in xs.indices()], rows.as_slice()] = 0
    for m in p.spread:  # word w of a copy over several: as if it ran on past dst's end
        before = home.copy()
        for x in m.xbs.indices():
            for r in m.rows.indices():
                at = x + m.word * len(dst.xbs)
                home[at, r] = (before[at + m.dx, r - m.by] if m.local
                               else held.get((x + m.dx, r - m.by), -7))
                assert home[at, r] != -9, "a copy reads a cell never written (strict runs fail)"
    canon = np.full_like(home, -9)  # each chunk's cells, extracted from the copies (word
    for m in p.extract:  # w of crossbar x named x + w * len(dst.xbs), as the spread's)
        for x, y in zip(m.xbs.indices(), m.sources.indices(), strict=True):
            for r in m.rows.indices():
                canon[x + m.word * len(dst.xbs), r] = (home[y, r - m.by] if m.local
                                                       else held.get((y, r - m.by), -7))
                assert canon[x + m.word * len(dst.xbs), r] != -9, \
                    "an extraction reads a cell never written"
    for m in sorted(p.moves, key=lambda m: not m.early):  # as emit_moves orders them
        assert not m.src_step or not set(m.xbs.indices()) & set(m.sources.indices()), m
        for x, y in zip(m.xbs.indices(), m.sources.indices(), strict=True):
            for r in m.rows.indices():
                read = canon if p.extract else home
                grid[x, r, list(m.lanes)] = (read[y, r - m.by] if m.local
                                             else held.get((y, r - m.by), -7))
    _copies(grid, p.down)
    for f in p.fills:
        for x in f.xbs.indices():
            grid[x, f.rows.as_slice(), list(f.lanes)] = PAD_LOWEST if f.lowest else 0
    _copies(grid, p.copies)
    slots = dst.placed_elements // dst.lanes
    index = np.arange(slots)
    return grid[dst.xbs.start + index // len(dst.rows), dst.rows.start + index % len(dst.rows)]


def _copies(grid, moves):
    for m in moves:
        before = grid.copy()
        for x in m.xbs.indices():
            for r in m.rows.indices():
                grid[x, r, list(m.lanes)] = before[x + m.dx, r - m.by, list(m.lanes)]
                assert (grid[x, r, list(m.lanes)] != -9).all(), "a copy of a cell never written"


def _io(name, shape, view, lanes, xb, rows):
    """A placement in exactly the crossbars its view fills (a stage's neighbours start
    right after it)."""
    xbs = -(-int(np.prod(view_shape(shape, view))) // (lanes * rows))
    return TensorIO(name, "f32", shape, Span(xb, xb + xbs), Span(0, rows), 0, lanes=lanes,
                    view=view)


def _pairs(moves):
    return sorted((m.lanes, m.by, m.rows, x, y) for m in moves
                  for x, y in zip(m.xbs.indices(), m.sources.indices(), strict=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(-30, 30), st.integers(0, 1)),
                max_size=40, unique_by=lambda t: (t[0], t[2])))
def test_strided_moves_cover_the_same_pairs_and_never_meet(pairs):
    """Re-cut into runs of two steps, the moves pair the same crossbars (a TRANSFER's
    source with its destination, per lane and row shift); no two-step run has a crossbar
    among both its sources and its destinations."""
    rows = Span(0, 7)
    moves = [Move((lane,), dx, 0, Span(x, x + 1), rows) for x, dx, lane in pairs if dx and x + dx >= 0]
    got = strided(moves)
    assert _pairs(got) == _pairs(moves)
    for m in got:
        assert not m.src_step or not set(m.xbs.indices()) & set(m.sources.indices())


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(1, 12), st.integers(1, 5), st.integers(-30, 60),
       st.integers(0, 7), st.integers(1, 40))
def test_moves_from_a_copy_over_several_words_cover_their_pairs(x0, n, step, dx, src_step,
                                                                length):
    """A move from a map copied over home words of `length` crossbars, cut into a move
    per word: the same (destination, real source) pairs, no piece empty, and none
    whose run of two steps meets itself (a pair inside one crossbar is a shift of its
    own)."""
    first = 0
    if x0 + dx < first:
        return
    m = Move((0,), dx, 0, Span(x0, x0 + (n - 1) * step + 1, step), Span(0, 4), local=True,
             src_step=src_step if n > 1 else 0)
    real = [first + (v - first) % length for v in m.sources.indices()]
    want = sorted(zip(m.xbs.indices(), real, strict=True))
    pieces = on_words(m, first, length)
    got = sorted((x, y) for p, _ in pieces
                 for x, y in zip(p.xbs.indices(), p.sources.indices(), strict=True))
    assert got == want
    for p, _ in pieces:
        assert len(p.xbs) >= 1
        if p.src_step:  # (one step: the emitter splits a run that meets itself)
            assert not set(p.xbs.indices()) & set(p.sources.indices())


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.integers(2, 12), st.integers(1, 4), st.booleans())
def test_a_weight_computed_in_a_placements_mirror_order_moves_a_transfer_per_lane(k, n, chunks,
                                                                               transposed):
    """A (K, N) weight placed for a product, its inner axis in lanes split in chunks
    (the forward one, or the backward one reading its transpose): computed in
    mirror_view's order, one element a row, it moves into the placement with a few
    TRANSFERs a lane (not a move per element, as from the natural order into a transposed
    placement), and the placement holds what the host would have placed."""
    from pimc.lower.mirror import mirror_view

    rows = 16
    inner, outer = (n, k) if transposed else (k, n)
    per = -(-inner // chunks)
    view = ((ViewOp("transpose", (1, 0)),) if not transposed else ()) + (
        ViewOp("pad", (outer, chunks * per)) if chunks * per != inner else None,
        ViewOp("reshape", (outer, chunks, per)), ViewOp("transpose", (1, 0, 2)))
    view = tuple(v for v in view if v is not None)
    shape = (k, n)
    slots = chunks * outer
    dst = TensorIO("w", "f32", shape, Span(3, 3 + -(-slots // rows)),
                   Span(0, min(rows, slots) if slots < rows else rows), 0, lanes=per, view=view)
    mirror = mirror_view(dst, rows)
    assert mirror is not None
    src = _io("w", shape, mirror, 1, dst.xbs.stop + 2, rows)
    got = _replay(src, dst)
    ids = np.arange(1, k * n + 1).reshape(shape)
    want = apply_view(ids, view).reshape(-1, per)
    assert np.array_equal(got.reshape(want.shape), want)
    p = plan(src, dst)
    assert len(p.moves) + len(p.spread) <= 4 * per  # per lane, not per element
    natural = plan(_io("w", shape, (), 1, dst.xbs.stop + 2, rows), dst)
    if transposed and k > 2 * rows:
        assert len(p.moves) < len(natural.moves)


def test_phase_planes_into_phase_blocks_of_another_size_are_one_transfer():
    """A lane's plane of each of 64 phases, from a map's phase blocks 13 crossbars apart
    into a layer's 4 apart: one TRANSFER (cut where a crossbar would be both a source and
    a destination), not 64."""
    rows = Span(0, 49)
    moves = [Move((0,), 300 + 13 * p - 4 * p, 0, Span(4 * p, 4 * p + 1), rows) for p in range(64)]
    got = strided(moves)
    assert len(got) == 1 and got[0].src_step == 13 and got[0].xbs == Span(0, 253, 4)
    meeting = [Move((0,), 13 * p - 4 * p + 5, 0, Span(4 * p, 4 * p + 1), rows) for p in range(64)]
    assert 1 < len(strided(meeting)) < 8


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=400, unique=True),
       st.lists(st.integers(1, 40), max_size=4))
@example([0, 1, 2, 10, 11, 12, 20, 21, 22], [])  # a pattern repeating every 10
def test_runs_cover_the_crossbars_once_in_no_more_runs_than_greedy(xs, hint):
    """runs() partitions sorted crossbars into evenly spaced runs: every crossbar in
    exactly one, none added, and never more runs than the greedy cut."""
    xs = sorted(xs)
    got = runs(xs, tuple(hint))
    covered = [x for span in got for x in span.indices()]
    assert sorted(covered) == xs
    assert len(got) <= len(row_spans(np.asarray(xs))) or len(xs) > 256


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(3, 9), st.integers(1, 3), st.integers(1, 2),
       st.integers(0, 1), st.sampled_from([ZERO, LOWEST]), st.integers(1, 4),
       st.sampled_from([16, 64]), st.booleans())
@example(3, 3, 2, 1, 0, ZERO, 1, 16, True)  # chunks of one crossbar, the map two: a copy
def test_the_plan_rebuilds_every_window_placement(c, side, k, s, pad, fill, copies, rows,
                                                  whole):
    """Any map layout (natural, polyphase, aligned) into a window placement repeated
    for `copies` output channels (the doubled blocks) and split in chunks of lanes
    (`whole`: each chunk whole crossbars, so the map is first copied into each)."""
    from pimc.ir import Kernel, Loc, Node, add_node

    k = min(k, side)
    shape = (1, c, side, side)
    kern = Kernel("k", (), ())
    n = add_node(kern, Node("relu", Loc("", 1, 1), "f32", shape))
    win = add_node(kern, Node("window", Loc("", 1, 1), "f32", None,
                              (("step", (2, fill, k, k, s, s, pad, pad, pad, pad, 1, 1)),)), (n,))
    assert win
    src_view = resident_view(kern, n, rows) if s == 1 else ()
    step = ViewOp("window", (2, fill, k, k, s, s, pad, pad, pad, pad, 1, 1))
    o = view_shape(shape, (step,))[2]
    lanes = c * k * k
    chunks = 2 if lanes > 2 else 1
    per = -(-lanes // chunks)
    slots = copies * o * o
    room = -(-slots // rows) * rows if whole else slots  # chunks of whole crossbars
    dst_view = (step, ViewOp("transpose", (0, 2, 3, 1, 4, 5)),
                ViewOp("reshape", (1, 1, o * o, lanes)),
                ViewOp("broadcast", (1, copies, o * o, lanes)),
                ViewOp("reshape", (slots, lanes)),
                ViewOp("pad", (room, chunks * per)),
                ViewOp("reshape", (room, chunks, per)),
                ViewOp("transpose", (1, 0, 2)))
    _rebuilds(shape, src_view, dst_view, per, rows)


def _rebuilds(shape, src_view, dst_view, lanes, rows, src_rows=None):
    """The plan from src_view's placement to dst_view's, replayed, fills every slot as
    the host would have."""
    got = _replay(_io("x", shape, src_view, 1, 0, src_rows or rows),
                  _io("x", shape, dst_view, lanes, 70, rows))
    ids = np.arange(1, int(np.prod(shape)) + 1).reshape(shape)
    assert np.array_equal(got, apply_view(ids, dst_view, low=PAD_LOWEST).reshape(got.shape))


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 5), st.integers(1, 3), st.integers(0, 1), st.integers(1, 3),
       st.booleans())
def test_chunks_alike_but_for_their_channel_are_planned_once(c, k, pad, copies, whole):
    """One chunk per input channel (its k x k taps), each channel plane a crossbar of
    its own: the chunks are one class, gathered for one and made in the others; the
    replay still rebuilds every slot."""
    k = min(k, 4)
    shape, dst_view, _ = _per_channel(c, k, pad, copies, ZERO, whole)
    _rebuilds(shape, (ViewOp("reshape", (c, 16)),), dst_view, k * k, 16)


def _per_channel(c, k, pad, copies, fill, whole):
    """A k x k window over a c-channel 4 x 4 map into chunks of one channel's taps each,
    `copies` output channels, in crossbars of 16 rows (each chunk whole crossbars if
    `whole`): the map's shape, the placement's view, a chunk's rows."""
    shape, rows = (1, c, 4, 4), 16
    step = ViewOp("window", (2, fill, k, k, 1, 1, pad, pad, pad, pad, 1, 1))
    o = view_shape(shape, (step,))[2]
    lanes = c * k * k
    slots = copies * o * o
    room = -(-slots // rows) * rows if whole else slots
    return shape, (step, ViewOp("transpose", (0, 2, 3, 1, 4, 5)),
                   ViewOp("reshape", (1, 1, o * o, lanes)),
                   ViewOp("broadcast", (1, copies, o * o, lanes)),
                   ViewOp("reshape", (slots, lanes)), ViewOp("pad", (room, lanes)),
                   ViewOp("reshape", (room, c, k * k)), ViewOp("transpose", (1, 0, 2))), room


@settings(max_examples=15, deadline=None)
@given(st.integers(3, 6), st.integers(2, 3), st.integers(2, 3), st.integers(0, 1),
       st.integers(1, 3), st.sampled_from([ZERO, LOWEST]))
def test_chunks_reading_channels_at_different_rows_gather_from_canonical_copies(
        c, per_xb, k, pad, copies, fill):
    """One chunk per input channel, `per_xb` channel planes a crossbar of the map: each
    chunk reads the same cells but for a crossbar and row offset, so its cells are
    first moved to the same place in its own crossbars, and every gather move then
    serves all chunks at once; the replay still rebuilds every slot."""
    rows = 16
    shape, dst_view, room = _per_channel(c, k, pad, copies, fill, True)
    src_view = (ViewOp("reshape", (c, rows)),)
    p = plan(_io("x", shape, src_view, 1, 0, per_xb * rows), _io("x", shape, dst_view, k * k, 70,
                                                                  rows))
    width = room // rows  # a chunk's crossbars
    assert p.extract and all({(x - 70) // width for x in m.xbs.indices()} == set(range(c))
                             for m in p.moves)  # each gather move in every chunk
    _rebuilds(shape, src_view, dst_view, k * k, rows, per_xb * rows)


def _stem(c, k, copies, chunks, fill, nested, t):
    """A k x k / 2 window over a map of 8t x 8t stored in phases (two levels, the
    reader's phase order t then the stride, or one level of 2t), into a placement in
    phase order t, each (phase block, output channel) a crossbar, lanes in chunks: the
    map's and the placement's views, the lanes a chunk and the rows."""
    from pimc.ir import Kernel, Loc, Node, add_node

    shape, rows, s = (1, c, 8 * t, 8 * t), 64, 2  # a crossbar a phase (c <= 4)
    kern = Kernel("k", (), ())
    n = add_node(kern, Node("copy", Loc("", 1, 1), "f32", shape))
    src_view = resident_view(kern, n, rows, (2, ((t, t), (s, s)) if nested else ((t * s,) * 2,)))
    pad = k // 2
    step = ViewOp("window", (2, fill, k, k, s, s, pad, pad, pad, pad, 1, 1))
    o = view_shape(shape, (step,))[2]
    lanes = c * k * k
    per = -(-lanes // chunks)
    q = o // t
    dst_view = (step, ViewOp("transpose", (0, 2, 3, 1, 4, 5)),
                ViewOp("reshape", (1, o * o, 1, lanes)), ViewOp("transpose", (0, 2, 1, 3)),
                ViewOp("reshape", (1, 1, o * o, 1, lanes)),
                ViewOp("broadcast", (1, 1, o * o, copies, lanes)),
                ViewOp("transpose", (0, 1, 3, 2, 4)),
                ViewOp("reshape", (1, copies, q, t, q, t, lanes)),
                ViewOp("transpose", (3, 5, 0, 1, 2, 4, 6)),
                ViewOp("reshape", (t * t * copies, q * q, lanes)),
                ViewOp("pad", (t * t * copies, rows, chunks * per)),
                ViewOp("reshape", (t * t * copies * rows, chunks, per)),
                ViewOp("transpose", (1, 0, 2)))
    return shape, src_view, dst_view, per, rows


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.sampled_from([3, 5, 7]), st.sampled_from([1, 2, 4]),
       st.integers(1, 3), st.sampled_from([ZERO, LOWEST]), st.booleans(),
       st.sampled_from([2, 4]))
@example(3, 7, 4, 1, ZERO, True, 4)
@example(2, 5, 4, 2, LOWEST, True, 4)
def test_a_strided_stem_into_phase_blocks_rebuilds_every_slot(c, k, copies, chunks, fill,
                                                              nested, t):
    """The moves bridged over the edge blocks, those read from the copy before a
    chunk's own, and the rest rebuild every slot as the host would place it."""
    _rebuilds(*_stem(c, k, copies, chunks, fill, nested, t))


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.sampled_from([3, 5]), st.sampled_from([1, 2]),
       st.integers(1, 300), st.integers(0, 40))
def test_a_plan_moved_by_whole_crossbars_is_the_same_plan_moved(c, k, copies, at, gap):
    """move_ops.placed_plan plans once per placement relative to the source and moves
    that plan: the same moves, fills and copies as planning where they are."""
    from pimc.lower.move_ops import placed_plan

    shape, src_view, dst_view, per, rows = _stem(c, k, copies, 1, ZERO, False, 2)

    def pair(x0):  # the source first, or (a training step's write-back) after
        src = _io("x", shape, src_view, 1, x0, rows)
        dst = _io("y", shape, dst_view, per, src.xbs.stop + gap, rows)
        if k == 5:
            dst, src = _io("y", shape, dst_view, per, x0, rows), \
                _io("x", shape, src_view, 1, x0 + len(dst.xbs) + gap, rows)
        return src, dst

    placed_plan(*pair(0), 1023, 4)  # planned at 0, then reused at `at`
    moved, here = placed_plan(*pair(at), 1023, 4), plan(*pair(at), 1023)
    for field in ("moves", "fills", "copies", "spread", "down", "extract", "home_zero"):
        a, b = getattr(moved, field), getattr(here, field)
        assert (sorted(map(repr, a)) == sorted(map(repr, b))) if isinstance(a, tuple) \
            else a == b, field


def test_a_strided_stems_taps_are_a_few_bridged_moves_each():
    """ResNet-50's stem in small: the map in two levels of phases, a phase block as
    many crossbars as a block of the map's sub-phases: a tap's moves have one distance
    for every block but the edges, so each lane is a run bridged over the edge blocks
    (written first, then overwritten by the edges' moves), not a move per block row."""
    shape, src_view, dst_view, per, rows = _stem(3, 7, 4, 1, ZERO, True, 4)
    p = plan(_io("x", shape, src_view, 1, 0, rows), _io("x", shape, dst_view, per, 70, rows))
    lanes = {m.lanes for m in p.moves if m.early}
    assert len(lanes) > per // 2 and len(p.moves) < 4 * per


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(3, 7), st.integers(1, 3), st.integers(0, 1),
       st.integers(1, 4), st.integers(1, 3))
def test_a_factored_placement_holds_what_the_whole_view_places(c, side, k, pad, copies, chunks):
    """factor(): what each slot holds, from the distinct rows and their repeats, equals
    the view applied to the whole tensor (padding included)."""
    k = min(k, side)
    shape = (1, c, side, side)
    step = ViewOp("window", (2, ZERO, k, k, 1, 1, pad, pad, pad, pad, 1, 1))
    o = view_shape(shape, (step,))[2]
    lanes = c * k * k
    per = -(-lanes // chunks)
    view = (step, ViewOp("transpose", (0, 2, 3, 1, 4, 5)), ViewOp("reshape", (1, o * o, lanes)),
            ViewOp("broadcast", (copies, o * o, lanes)), ViewOp("reshape", (copies * o * o, lanes)),
            ViewOp("pad", (copies * o * o + 3, chunks * per)),
            ViewOp("reshape", (copies * o * o + 3, chunks, per)), ViewOp("transpose", (1, 0, 2)))
    f = factor(shape, view)
    assert f is not None and f.x.shape == (o * o, lanes)  # the windows once, not per copy
    ids = np.arange(1, c * side * side + 1).reshape(shape)
    want = apply_view(ids, view).reshape(-1, per)
    got = f.need(np.arange(len(f.row)))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("copies", [2, 3, 5])
def test_a_map_read_in_every_chunk_is_copied_as_whole_crossbar_blocks(copies):
    """A map an elementwise op reads in each of `copies` chunks: built once, then doubled
    block by block (one move a level), as the replay confirms."""
    from pimc.ir import Kernel, Loc, Node, add_node

    shape = (1, 3, 6, 6)
    kern = Kernel("k", (), ())
    n = add_node(kern, Node("relu", Loc("", 1, 1), "f32", shape))
    home = resident_view(kern, n, 16)
    slots = int(np.prod(view_shape(shape, home)))
    dst_view = (*home, ViewOp("reshape", (1, slots, 1)), ViewOp("broadcast", (copies, slots, 1)))
    p = plan(_io("x", shape, home, 1, 0, 16), _io("x", shape, dst_view, 1, 70, 16))
    assert len(p.copies) == (copies - 1).bit_length()
    _rebuilds(shape, home, dst_view, 1, 16)


@pytest.mark.parametrize(("chunks", "group", "src_rows"),
                         [(8, 4, 16), (9, 5, 16), (17, 6, 16), (8, 4, 20)])
def test_chunks_narrower_than_the_map_share_a_copy_a_group(chunks, group, src_rows):
    """A 4-channel 8 x 8 map (16 crossbars of 16 rows) windowed 3 x 3 into chunks of 4
    crossbars each: a copy of the map in every group of the fewest chunks (4 or more)
    whose copies all fit the stage (doubled, the last block cut at the stage's end), so
    that each lane is gathered from a copy at most a group away, not from one copy at
    the start. The producer may use more rows a crossbar than the stage (20: the map's
    13 crossbars do not fill a group's 16, whose zeros must cover the producer's rows,
    which the doubling copies)."""
    shape, rows = (1, 4, 8, 8), 16
    step = ViewOp("window", (2, ZERO, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1))
    lanes = 36
    per = -(-lanes // chunks)
    dst_view = (step, ViewOp("transpose", (0, 2, 3, 1, 4, 5)), ViewOp("reshape", (64, lanes)),
                ViewOp("pad", (64, chunks * per)), ViewOp("reshape", (64, chunks, per)),
                ViewOp("transpose", (1, 0, 2)))
    src_view = (ViewOp("reshape", (4, 64)),)
    p = plan(_io("x", shape, src_view, 1, 0, src_rows), _io("x", shape, dst_view, per, 70, rows))
    groups = -(-chunks // group)
    assert len(p.spread) == 1 + (groups - 1).bit_length()
    assert all(m.local and abs(m.dx) < 4 * group + 4 for m in p.moves)  # its group's copy
    assert p.home_zero is not None or src_rows == 16  # zeros first where a copy is short
    _rebuilds(shape, src_view, dst_view, per, rows, src_rows)


@pytest.mark.parametrize("src_rows", [8, 6])
def test_a_map_larger_than_its_reader_is_copied_over_several_words(src_rows):
    """A 4-channel 8 x 8 map in crossbars of 8 (or 6) rows (32 or 43) read by a 2 x 2 / 2
    pool whose taps take 16 crossbars of 16 rows: the map is copied into the pool's
    crossbars over 2 (3) home words, each lane gathered from there, not from the
    producer 16 crossbars or more away."""
    shape = (1, 4, 8, 8)
    step = ViewOp("window", (2, LOWEST, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1))
    dst_view = (step, ViewOp("reshape", (64, 4)), ViewOp("transpose", (1, 0)),
                ViewOp("reshape", (256, 1)))
    src_view = (ViewOp("reshape", (4, 64)),)
    p = plan(_io("x", shape, src_view, 1, 0, src_rows), _io("x", shape, dst_view, 1, 70, 16))
    assert len(p.spread) == -(-256 // src_rows // 16) and p.moves
    assert all(m.local for m in p.moves)
    _rebuilds(shape, src_view, dst_view, 1, 16, src_rows)


@given(st.integers(2, 6), st.sampled_from([8, 16]), st.booleans(), st.sampled_from([16, 8]))
@settings(max_examples=16, deadline=None)
@example(3, 16, False, 8)  # each channel's planes in 32 crossbars, its block 16: two words
def test_a_phase_ordered_map_is_copied_channel_by_channel_into_a_natural_one(c, side, wide,
                                                                             src_rows):
    """A map stored in stride-2 phase planes (as a strided pool reads it) into a natural
    placement of a few crossbars a channel (as the backward pass reads it): each
    channel's planes are first copied into its own crossbars (over several home words
    where they take more crossbars than it has), so that the gather is planned once for
    every channel, a move per distinct row shift, not one per element and channel."""
    shape, rows = (1, c, side, side), 16
    h = side // 2
    plane = -(-h * h // src_rows) * src_rows
    src_view = (ViewOp("reshape", (1, c, h, 2, h, 2)), ViewOp("transpose", (3, 5, 0, 1, 2, 4)),
                ViewOp("reshape", (4 * c, h * h)), ViewOp("pad", (4 * c, plane)))
    per = -(-side * side // rows) * rows + (rows if wide else 0)  # a channel's slots
    dst_view = (ViewOp("reshape", (c, side * side)), ViewOp("pad", (c, per)),
                ViewOp("reshape", (c, per // rows, rows, 1)))
    p = plan(_io("x", shape, src_view, 1, 0, src_rows), _io("x", shape, dst_view, 1, 70, rows))
    assert p.extract and len(p.moves) <= side * side
    assert any(m.word for m in p.extract) == (4 * plane // src_rows > per // rows)
    _rebuilds(shape, src_view, dst_view, 1, rows, src_rows)


def _chain() -> onnx.ModelProto:
    """Conv 3x3 (2 -> 4) -> MaxPool 2x2/2 -> Conv 3x3 (4 -> 8) -> MaxPool 2x2/2: the map the
    first pool reads is wanted in the order of both strides downstream."""
    rng = np.random.default_rng(3)
    w = {"w1": rng.normal(0, 0.4, (4, 2, 3, 3)), "w2": rng.normal(0, 0.3, (8, 4, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1] * 4),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 2, 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_maps_are_ordered_by_every_stride_downstream_at_their_readers_pitch():
    """r1 is read by a stride-2 pool whose output a stage in phase order 2 reads through
    stride-1 windows: r1 in phase order 4 (planes of 2 x 2), p1 and r2 in order 2; p1
    (4 channels) is stored at the pitch of the 8-channel convolution that reads it (a
    multiple of the 4 planes of 2 x 2 a crossbar of 16 rows holds, so that each phase
    block is whole crossbars)."""
    k = _kernel(_chain())
    stages = split_stages(k, 16)
    assert [g.kernel.node(g.kernel.outputs[g.kernel.results[0].name]).loc.label.split()[-1]
            for g in stages] == ["Relu", "MaxPool", "Relu", "MaxPool"]
    relu1, pool1, relu2, _ = stages

    def first_row(stage, shape):
        ids = np.arange(int(np.prod(shape))).reshape(shape)
        return apply_view(ids, stage.result_view)[0].tolist()

    # phase (0, 0) of channel 0 of r1: positions (0, 0) (0, 4) (4, 0) (4, 4), then channel 1
    assert first_row(relu1, (1, 4, 8, 8))[:6] == [0, 4, 32, 36, 64, 68]
    assert first_row(relu2, (1, 8, 4, 4))[:6] == [0, 2, 8, 10, 16, 18]  # phase order 2
    assert ViewOp("pad", (2, 2, 1, 8, 2, 2)) in pool1.result_view


def _strided_stem() -> onnx.ModelProto:
    """Conv 3x3 / 2 (2 -> 4) over a 64 x 64 input -> three MaxPool 2x2 / 2: the input's
    copy is read through stride 2 by a stage computed in phase order 8, so it is stored
    in two levels of phases (8, then the stride's 2)."""
    w = np.random.default_rng(4).normal(0, 0.4, (4, 2, 3, 3))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["p0"])]
    nodes += [helper.make_node("MaxPool", [f"p{i}"], [f"p{i + 1}" if i < 2 else "y"],
                               kernel_shape=[2, 2], strides=[2, 2]) for i in range(3)]
    graph = helper.make_graph(
        nodes, "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [numpy_helper.from_array(w.astype(np.float32), "w1")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _residual_model() -> onnx.ModelProto:
    """Conv -> Relu -> Conv (stride 2) -> Relu -> Conv -> Add (residual) -> Relu ->
    AveragePool (padded, count_include_pad) -> Flatten -> Gemm: a residual add of two
    resident maps, a strided convolution and a padded average over computed maps."""
    rng = np.random.default_rng(1)
    w = {"w1": rng.normal(0, 0.4, (4, 2, 3, 3)), "w2": rng.normal(0, 0.3, (4, 4, 3, 3)),
         "w3": rng.normal(0, 0.3, (4, 4, 1, 1)), "b": rng.normal(0, 0.1, 4),
         "wf": rng.normal(0, 0.5, (3, 16))}
    nodes = [helper.make_node("Conv", ["x", "w1", "b"], ["c1"], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1] * 4, strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3"], ["c3"]),
             helper.make_node("Add", ["r2", "c3"], ["s"]),
             helper.make_node("Relu", ["s"], ["r3"]),
             helper.make_node("AveragePool", ["r3"], ["p"], kernel_shape=[3, 3], pads=[1] * 4,
                              strides=[2, 2], count_include_pad=1),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wf"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _fire_model() -> onnx.ModelProto:
    """SqueezeNet's fire module: Conv 1x1 -> Relu -> LRN (AlexNet's, GoogLeNet's), then
    Conv 1x1 and Conv 3x3 of it ->
    Relu each -> Concat (channels) -> MaxPool 3x3/2 (ceil) -> Softmax of the pooled
    channels' global average."""
    rng = np.random.default_rng(2)
    w = {"ws": rng.normal(0, 0.5, (2, 3, 1, 1)), "we1": rng.normal(0, 0.5, (3, 2, 1, 1)),
         "we3": rng.normal(0, 0.3, (2, 2, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "ws"], ["s"]),
             helper.make_node("Relu", ["s"], ["r"]),
             helper.make_node("LRN", ["r"], ["rs"], size=3, alpha=0.5, beta=0.75, bias=2.0),
             helper.make_node("Conv", ["rs", "we1"], ["e1"]),
             helper.make_node("Relu", ["e1"], ["r1"]),
             helper.make_node("Conv", ["rs", "we3"], ["e3"], pads=[1] * 4),
             helper.make_node("Relu", ["e3"], ["r3"]),
             helper.make_node("Concat", ["r1", "r3"], ["c"], axis=1),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                              ceil_mode=1),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Softmax", ["f"], ["y"])]
    graph = helper.make_graph(
        nodes, "fire", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("model,dtype", [(small_cnn(), "f32"), (_residual_model(), "f32"),
                                         (_residual_model(), "bf16"), (_fire_model(), "f32"),
                                         (_chain(), "f32"), (_chain(), "f16"),
                                         (_strided_stem(), "f32"), (_strided_stem(), "bf16"),
                                         (small_cnn(), "q8.8"), (_residual_model(), "q16.16")])
def test_a_cnn_runs_bit_exact_with_its_maps_kept_in_the_crossbars(tmp_path, model, dtype, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    prog, imported = compile_model(model, str(path), dtype=dtype)
    assert prog is not None and dict(prog.meta)["stages"] != "1"
    names = {t.name for t in prog.inputs}
    given = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    assert given <= names and all("concat" in n for n in names - given)  # and masks
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim])
    inputs = {**imported.constants, "x": x.astype(np.float32)}
    if dtype != "f32":  # the values the host writes (fixed point: raw integers)
        from pimc.isa.dtypes import parse_dtype, quantize

        dt = parse_dtype(dtype)
        inputs = {k: (dt.from_bits(dt.to_bits(v)) if dtype == "bf16" else quantize(v, dt))
                  if np.asarray(v).dtype == np.float32 else v for k, v in inputs.items()}
    outputs, stats = run_program(prog, inputs)
    assert verify_model(prog, inputs, outputs, "m") == 0
    assert "bit-exact" in capsys.readouterr().out
    moves = stats.ops["SHIFT"] + stats.ops["TRANSFER"]
    assert moves > 0  # the maps moved inside the memory; the host wrote only x and weights


def _plans(monkeypatch) -> list:
    """Every plan move_ops makes from here on, in order (the last are the emitted ones)."""
    import pimc.lower.move_ops as move_ops

    made = []
    plan_ = move_ops.plan

    def spy(src, dst, max_shift, room):
        made.append(plan_(src, dst, max_shift, room))
        return made[-1]

    monkeypatch.setattr(move_ops, "plan", spy)
    return made


def _saved(tmp_path, nodes, x_shape, y_shape, weights) -> onnx.ModelProto:
    """A float32 model of `nodes` from x to y, saved where the reference reads it."""
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    return model


def test_a_pool_smaller_than_its_map_reads_a_copy_over_two_words(tmp_path, capsys,
                                                                  monkeypatch):
    """A 24-channel 16 x 16 map pooled 2 x 2 / 2 by a stage of fewer crossbars (128
    rows each): the map is copied into the pool's crossbars over two home words and
    each tap gathered from there; the program runs bit-exact."""
    from pimc.isa.arch import Arch

    plans = _plans(monkeypatch)
    w = np.random.default_rng(5).normal(0, 0.3, (24, 2, 3, 3))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    model = _saved(tmp_path, nodes, [1, 2, 16, 16], [1, 24, 8, 8], {"w": w})
    prog, imported = compile_model(model, str(tmp_path / "m.onnx"), arch=Arch(rows=128))
    assert prog is not None and 1 + max(m.word for m in plans[-1].spread) == 2
    x = np.random.default_rng(6).normal(0, 1, (1, 2, 16, 16)).astype(np.float32)
    inputs = {**imported.constants, "x": x}
    outputs, _ = run_program(prog, inputs)
    assert verify_model(prog, inputs, outputs, "m") == 0
    assert "bit-exact" in capsys.readouterr().out


def test_chunks_narrower_than_their_map_each_read_a_copy_over_words(tmp_path, capsys,
                                                                     monkeypatch):
    """An 11 x 11 / 4 convolution (AlexNet's first layer, smaller) whose chunks of whole
    crossbars are narrower than the map they read: the map is copied into every chunk
    over two home words, rather than once every few chunks (AlexNet's conv1: 2.72M ->
    1.44M cycles), when that counts fewer cycles; the program runs bit-exact."""
    from pimc.isa.arch import Arch

    plans = _plans(monkeypatch)
    w = np.random.default_rng(3).normal(0, 0.4, (24, 3, 11, 11))
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["y"], strides=[4, 4])]
    model = _saved(tmp_path, nodes, [1, 3, 67, 67], [1, 24, 15, 15], {"w": w})
    prog, imported = compile_model(model, str(tmp_path / "m.onnx"),
                                   arch=Arch(rows=64, max_crossbars=16384))
    spread = plans[-1].spread
    assert prog is not None and 1 + max(m.word for m in spread) == 2
    assert any(m.local for m in spread)  # doubled into every chunk
    x = np.random.default_rng(6).normal(0, 1, (1, 3, 67, 67)).astype(np.float32)
    inputs = {**imported.constants, "x": x}
    outputs, _ = run_program(prog, inputs)
    assert verify_model(prog, inputs, outputs, "m") == 0
    assert "5400 of 5400 elements bit-exact" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_chunks_of_one_channel_each_gather_from_canonical_copies_bit_exact(
        tmp_path, capsys, monkeypatch, dtype):
    """A 3 x 3 / 2 convolution over a 64-channel map (20 channel planes of 7 x 7 a
    crossbar) on a memory of 128 crossbars, which splits its inner axis in chunks of
    one channel's taps: each chunk's cells are moved into the same place of its own
    crossbars first (gather.extracted), and the program runs bit-exact."""
    from pimc.isa.arch import Arch

    plans = _plans(monkeypatch)
    rng = np.random.default_rng(3)
    w = {"w1": rng.normal(0, 0.4, (64, 2, 3, 3)), "w2": rng.normal(0, 0.3, (8, 64, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1] * 4, strides=[2, 2])]
    model = _saved(tmp_path, nodes, [1, 2, 14, 14], [1, 8, 7, 7], w)
    prog, imported = compile_model(model, str(tmp_path / "m.onnx"), dtype=dtype,
                                   arch=Arch(max_crossbars=128))
    assert prog is not None and any(p.extract for p in plans[-2:])  # (the emitted ones)
    x = np.random.default_rng(6).normal(0, 1, (1, 2, 14, 14)).astype(np.float32)
    if dtype == "bf16":
        from pimc.isa.dtypes import parse_dtype

        x = parse_dtype("bf16").from_bits(parse_dtype("bf16").to_bits(x))
    inputs = {**imported.constants, "x": x}
    outputs, _ = run_program(prog, inputs)
    failed = verify_model(prog, inputs, outputs, "m")  # (bf16: 576 rounded adds an output
    assert "392 of 392 elements bit-exact" in capsys.readouterr().out  # may leave onnx's
    assert dtype == "bf16" or failed == 0  # tolerance; bit-exact is the check there)


def test_hidden_layers_wider_than_a_crossbar_go_through_stages(tmp_path, capsys):
    """A perceptron whose hidden layer straddles crossbars (100 neurons, 64 rows): the
    relayout inside one stage cannot, so each product gets a stage and its input is
    moved; bit-exact."""
    from pimc.isa.arch import Arch
    from samples.make_onnx_samples import gemm_chain

    model = gemm_chain([8, 100, 4])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    prog, imported = compile_model(model, str(path), arch=Arch(rows=64))
    assert prog is not None and dict(prog.meta)["stages"] == "2"
    x = np.random.default_rng(3).normal(0, 1, (1, 8)).astype(np.float32)
    inputs = {**imported.constants, "x": x}
    outputs, _ = run_program(prog, inputs)
    assert verify_model(prog, inputs, outputs, "m") == 0


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_an_opset_9_softmax_over_a_pooled_map_is_verified_by_its_own_definition(
        tmp_path, capsys, op):
    """SqueezeNet ends with an opset-9 Softmax of a (1, C, 1, 1) map: the input coerced
    to 2-D at axis 1, a distribution over C. onnx's evaluator takes opset 13's meaning
    (the last axis: all ones); verification holds to the definition of the opset."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node(op, ["g"], ["y"])]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    prog, _ = compile_model(model, str(path))
    x = np.random.default_rng(4).normal(0, 1, (1, 5, 2, 2)).astype(np.float32)
    outputs, _ = run_program(prog, {"x": x})
    g = x.mean(axis=(2, 3)).ravel()
    e = np.exp(g - g.max())
    want = np.log(e / e.sum()) if op == "LogSoftmax" else e / e.sum()
    assert np.allclose(outputs["y"].ravel(), want, rtol=1e-5, atol=1e-6)
    assert verify_model(prog, {"x": x}, outputs, "m") == 0
    assert "5 of 5 within" in capsys.readouterr().out


def test_the_input_is_written_once_and_its_windows_gathered_with_lowest_padding():
    """MaxPool with 2 of padding straight over a negative input of 3 crossbars: the host
    writes each element once (no window copies), the windows are built by moves, and
    the padding is the lowest value in every lane an INIT fills at once."""
    from onnx.reference import ReferenceEvaluator

    graph = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[2] * 4)], "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 30, 30])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    prog, _ = compile_model(model, "pool.onnx")
    assert prog is not None and dict(prog.meta)["stages"] == "2"
    x = -np.abs(np.random.default_rng(3).normal(size=(1, 3, 28, 28))).astype(np.float32)
    outputs, stats = run_program(prog, {"x": x})
    assert np.array_equal(outputs["y"], ReferenceEvaluator(model).run(None, {"x": x})[0])
    assert stats.host.input.cells == 3 * 1024 * 32  # one element a row, padded crossbars
    assert stats.ops["SHIFT"] > 0


def test_only_a_windowed_network_input_gets_a_copy_stage():
    from pimc.lower.stages import copy_windowed_inputs

    k = _kernel(small_cnn())
    inputs = {str(k.node(n).attr("name")): n for n in k.graph if k.node(n).op == "input"}
    out = copy_windowed_inputs(k, {"x"})
    copies = [n for n in out.graph if out.node(n).op == "copy"]
    assert len(copies) == 1 and out.operands(copies[0]) == [inputs["x"]]
    assert list(out.graph.successors(inputs["x"])) == copies  # every reader goes through it
    assert out.node(copies[0]).loc.label == "x input placement"
    assert len(out.graph) == len(k.graph) + 1
    assert len(split_stages(out, 1024)) == len(split_stages(k, 1024)) + 1
    assert copy_windowed_inputs(k, set()).graph.number_of_nodes() == len(k.graph)  # weights


def _pooled(nodes: list[onnx.NodeProto], pool: str, attrs: dict, channels: int, side: int,
            tmp_path) -> tuple[onnx.ModelProto, object]:
    """x (1, channels, side, side) -> nodes (ending in t) -> the pool -> Flatten -> y,
    saved as pool.onnx."""
    graph = helper.make_graph(
        [*nodes, helper.make_node(pool, ["t"], ["p"], **attrs),
         helper.make_node("Flatten", ["p"], ["y"])], "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "pool.onnx"
    onnx.save(model, str(path))
    return model, path


def _run_pooled(prog, model: onnx.ModelProto, channels: int, side: int, capsys
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run a _pooled model on random x: bit-exact against the order-matched reference,
    within rtol of onnx's evaluator; (the outputs, onnx's y)."""
    from onnx.reference import ReferenceEvaluator

    x = np.random.default_rng(4).normal(size=(1, channels, side, side)).astype(np.float32)
    outputs, _ = run_program(prog, {"x": x})
    assert verify_model(prog, {"x": x}, outputs, "pool") == 0
    assert f"{channels} of {channels} elements bit-exact" in capsys.readouterr().out
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert np.allclose(outputs["y"], want, rtol=1e-6, atol=1e-6)
    return outputs, want


@pytest.mark.parametrize("pool", ["GlobalAveragePool", "GlobalMaxPool", "AveragePool",
                                  "AveragePool padded", "AveragePool padded counted",
                                  "MaxPool padded",
                                  "after a strided MaxPool"])
def test_a_global_pool_runs_down_the_rows_where_its_map_lies(pool, tmp_path, capsys):
    """A global pool over a computed map of 2 crossbars (48 planes of 5 x 5; an
    AveragePool as large as its map is one too, and so is a pool whose one window holds
    the map and padding, as GoogLeNet's last; after a 3 x 3 / 2 MaxPool of 11 x 11
    the planes are padded to 6 x 6 amid the rows): a tree of row SHIFTs and in-place
    CALLs in every plane at once, the map copied in whole blocks, no element gathered
    alone; bit-exact against the reference in the hardware's order, and onnx's within
    rtol."""

    from pimc.lower.rowtree import row_tree

    attrs = {"kernel_shape": [5, 5]} if pool == "AveragePool" else {}
    if "padded" in pool:  # counted: the average divides by the window with its padding
        attrs = {"kernel_shape": [6, 7], "pads": [0, 1, 1, 1],
                 **({"count_include_pad": 1} if pool.endswith("counted") else {})}
        pool = pool.split()[0]
    nodes = [helper.make_node("Neg", ["x"], ["t"])]
    side = 5
    if pool == "after a strided MaxPool":
        nodes.append(helper.make_node("MaxPool", ["t"], ["t2"], kernel_shape=[3, 3],
                                      strides=[2, 2]))
        nodes[0].output[0], nodes[1].input[0], nodes[1].output[0] = "t0", "t0", "t"
        pool, side = "GlobalAveragePool", 11
    model, path = _pooled(nodes, pool, attrs, 48, side, tmp_path)
    prog, _ = compile_model(model, str(path))
    assert prog is not None
    outputs, want = _run_pooled(prog, model, 48, side, capsys)
    if pool == "GlobalMaxPool":
        assert np.array_equal(outputs["y"], want)
    moved = [o for o in prog.ops if isinstance(o, (Shift, Transfer)) and pool in o.src]
    assert 0 < len(moved) < 48 * 25 // 4  # whole blocks (rows of padded planes), not elements
    stages = split_stages(_kernel(model), 1024)
    placed = stages[-2].result_view
    assert row_tree(stages[-1].kernel, placed, prog.arch, "ieee", "pool.onnx") is not None
    phased = (ViewOp("reshape", (1, 48, 25)), ViewOp("transpose", (0, 2, 1)))
    assert row_tree(stages[-1].kernel, phased, prog.arch, "ieee", "pool.onnx") is None


@pytest.mark.parametrize("pool, side, max_shift", [
    ("GlobalAveragePool", 40, 1023), ("GlobalAveragePool", 33, 6), ("GlobalMaxPool", 45, 1023)])
def test_a_pool_over_planes_longer_than_a_crossbar_runs_down_their_crossbars(
        pool, side, max_shift, tmp_path, capsys):
    """Planes of 1,089 to 2,025 positions, each in crossbars of its own: the tree's
    partners a crossbar or more away come over the switches (a TRANSFER per crossbar of
    a plane, every plane at once), the nearer ones by SHIFTs (in hops with FloatPIM's
    shifter); bit-exact in the reference's pairwise order, a few dozen moves where
    gathering the positions into lanes took one an element (12,315 for 6 planes of
    40 x 40, on 1,036 crossbars instead of 24)."""
    import dataclasses

    from pimc.isa.arch import Arch

    model, path = _pooled([helper.make_node("Neg", ["x"], ["t"])], pool, {}, 6, side,
                          tmp_path)
    arch = dataclasses.replace(Arch(), max_shift=max_shift)
    prog, _ = compile_model(model, str(path), arch=arch)
    _run_pooled(prog, model, 6, side, capsys)
    span = -(-side * side // 1024)
    assert prog.crossbars < 6 * span * 4  # (gathered into lanes: 1,036 for 40 x 40)
    moved = [o for o in prog.ops if isinstance(o, (Shift, Transfer)) and pool in o.src]
    assert any(isinstance(o, Transfer) for o in moved) and len(moved) < 60


def test_a_bfloat16_global_pool_runs_down_the_rows_and_casts_there(tmp_path, capsys):
    """In bfloat16 a softmax after the pool computes in float32, so the pool's stage
    ends with a cast after its mean: the cast is called in the planes' first rows too,
    and the pool still runs down the rows (SqueezeNet's last pool: 11.4M cycles of moves
    an element at a time before; here 1,189 moves, now 7); bit-exact against the
    reference."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["t"]), helper.make_node("GlobalAveragePool", ["t"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Softmax", ["f"], ["y"])],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "pool.onnx"
    onnx.save(model, str(path))
    prog, _ = compile_model(model, str(path), dtype="bf16")
    assert prog is not None
    x = np.random.default_rng(4).normal(size=(1, 48, 5, 5)).astype(np.float32)
    outputs, _ = run_program(prog, {"x": x})
    assert verify_model(prog, {"x": x}, outputs, "pool") == 0
    assert "48 of 48 elements bit-exact" in capsys.readouterr().out
    moved = [o for o in prog.ops if isinstance(o, (Shift, Transfer)) and "Global" in o.src]
    assert 0 < len(moved) < 48 * 25 // 4


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(-40, 40), st.integers(1, 12), st.data())
def test_a_shift_wider_than_the_barrel_shifter_goes_in_counted_hops(limit, by, n, data):
    """shift_hops: the word lands where one SHIFT would put it, every SHIFT within
    max_shift, ceil(|by| / max_shift) of them executed (strict checks: the hops read
    only written cells)."""
    from pimc.isa.arch import Arch
    from pimc.isa.builder import ProgramBuilder
    from pimc.lower.moves import shift_hops

    arch = Arch(rows=64, cols=32, max_crossbars=2, max_shift=limit)
    lo = data.draw(st.integers(max(0, by), min(64, 64 + by) - n))
    rows = Span(lo, lo + n)
    b = ProgramBuilder(2, arch=arch)
    b.input("x", "u8", [2, 64], 0)
    shift_hops(b, list(range(8)), list(range(8, 16)), by, list(range(16, 24)), rows=rows)
    b.output("y", "u8", [2, n], 8, rows=rows)
    x = np.random.default_rng(by % 7).integers(0, 256, (2, 64), dtype=np.uint8)
    out, stats = run_program(b.build(), {"x": x})
    assert np.array_equal(out["y"], x[:, lo - by:lo - by + n])
    assert stats.ops["SHIFT"] == max(1, -(-abs(by) // limit))


def test_a_cnn_compiles_for_a_short_barrel_shifter_and_runs_bit_exact(tmp_path, capsys):
    """With FloatPIM's shifter (max_shift 6) every wider row move of the network, in
    its relayouts and its reductions, is re-written in hops: more SHIFTs, same results."""
    from pimc.isa.arch import Arch
    from pimc.isa.flow import expand

    model = small_cnn()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    wide, _ = compile_model(model, str(path))
    prog, imported = compile_model(model, str(path), arch=Arch(max_shift=6))
    assert prog is not None and wide is not None
    shifts = [op for op in expand(prog) if isinstance(op, Shift)]
    assert shifts and max(abs(op.by) for op in shifts) <= 6
    rng = np.random.default_rng(0)
    inputs = {**imported.constants, "x": rng.normal(0, 1, (1, 3, 12, 12)).astype(np.float32)}
    outputs, stats = run_program(prog, inputs)
    assert verify_model(prog, inputs, outputs, "m") == 0
    assert "bit-exact" in capsys.readouterr().out
    _, wide_stats = run_program(wide, inputs)
    assert stats.ops["SHIFT"] > 10 * wide_stats.ops["SHIFT"]


@pytest.mark.parametrize("include", [0, 1])
def test_a_fixed_point_average_pool_multiplies_by_the_reciprocal_counts(include, tmp_path, capsys):
    """There is no fixed-point division: an AveragePool in q8.8 multiplies by 1 / count,
    quantised as the host writes constants (counts that vary at the padded edges too),
    bit-exact against the reference and near onnx's."""
    from pimc.isa.dtypes import parse_dtype, quantize

    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["y"], kernel_shape=[3, 3], pads=[1] * 4,
                              count_include_pad=include)]
    graph = helper.make_graph(
        nodes, "avg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    prog, imported = compile_model(model, str(path), dtype="q8.8")
    assert prog is not None
    x = np.random.default_rng(1).normal(0, 2, (1, 2, 5, 5)).astype(np.float32)
    inputs = {**imported.constants, "x": quantize(x, parse_dtype("q8.8"))}
    outputs, _ = run_program(prog, inputs)
    assert verify_model(prog, inputs, outputs, "m") == 0
    assert "y: 50 of 50 elements bit-exact" in capsys.readouterr().out


def test_hops_in_loops_are_counted_as_executed():
    """A shift in hops runs its middle hops as a LOOP of calls whose iterations are alike,
    which counting takes once, times the count: the counted ops, cycles and writes per
    cell equal the executed ones."""
    from pimc.runtime.count import count_program

    from pimc.isa.arch import Arch
    from pimc.isa.builder import ProgramBuilder
    from pimc.isa.uop import Loop
    from pimc.lower.moves import shift_hops

    b = ProgramBuilder(2, arch=Arch(rows=64, cols=32, max_crossbars=2, max_shift=3))
    b.input("x", "u8", [2, 64], 0)
    shift_hops(b, list(range(8)), list(range(8, 16)), -29, list(range(16, 24)),
               rows=Span(2, 30))
    b.output("y", "u8", [2, 28], 8, rows=Span(2, 30))
    prog = b.build()
    assert any(isinstance(i, Loop) for i in prog.ops)
    x = np.random.default_rng(0).integers(0, 256, (2, 64), dtype=np.uint8)
    _, ran = run_program(prog, {"x": x})
    a, c = ran.as_dict(), count_program(prog).as_dict()
    for key in ("ops", "cycles", "cycles_by_kind", "latency_ns"):
        assert a[key] == pytest.approx(c[key]), key
    assert a["endurance"] == c["endurance"]  # every hop's writes, per cell


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16", "q8.8"])
def test_a_global_max_pool_is_found_by_search_when_that_is_faster(dtype, tmp_path, capsys):
    """FloatPIM's max pooling: a SEARCH for the largest of each plane (by the words'
    order keys), a tree of ORs carrying it to the plane's first row. It is picked when
    its counted latency is lower, the NOR tree when energy is the objective (a search
    charges every searched row and column); both run bit-exact. The search ranks by
    IEEE totalOrder, which the reference follows: +0 over -0, a negative NaN below
    everything, a positive NaN above."""
    from pimc.isa.dtypes import parse_dtype, quantize
    from pimc.isa.uop import Search, SearchKind

    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["t"]), helper.make_node("GlobalMaxPool", ["t"], ["p"]),
         helper.make_node("Flatten", ["p"], ["y"])], "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "pool.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(5).normal(size=(1, 48, 5, 5)).astype(np.float32)
    x[0, 0], x[0, 1] = 0.0, -1.0  # -x: -0 everywhere; +1 everywhere
    x[0, 2], x[0, 2, 1, 1] = 0.0, -0.0  # one +0 among -0s
    x[0, 3, 2, 2], x[0, 4, 3, 3], x[0, 5] = np.nan, -np.nan, np.inf  # -NaN; +NaN; all -inf
    x = x if dtype[0] != "q" else np.nan_to_num(x, posinf=0, neginf=0)
    dt = parse_dtype(dtype)
    host = quantize(x, dt) if dtype[0] == "q" else dt.from_bits(dt.to_bits(x))
    searches = {}
    for objective in ("latency", "energy"):
        prog, _ = compile_model(model, str(path), dtype=dtype, objective=objective)
        assert prog is not None
        searches[objective] = [o for o in prog.ops if isinstance(o, Search)
                               and o.kind is SearchKind.MAX]
        outputs, _ = run_program(prog, {"x": host})
        by_search = objective == "latency" and dtype[0] != "q"
        # onnx's maximum propagates the -NaN that totalOrder ranks lowest (channel 3)
        assert verify_model(prog, {"x": host}, outputs, "pool") == by_search
        assert "48 of 48 elements bit-exact" in capsys.readouterr().out
        if by_search:
            bits = outputs["y"].view(np.uint16 if dt.bits == 16 else np.uint32)[0]
            top = 1 << (dt.bits - 1)
            assert bits[0] == top and bits[2] == 0  # -0 alone; +0 over -0
            assert np.isnan(outputs["y"][0, 4]) and not np.isnan(outputs["y"][0, 3])
            assert np.isneginf(outputs["y"][0, 5]) and outputs["y"][0, 1] == 1
    from pimc.compile import program_cost
    from pimc.lower.rowtree import row_tree

    imported = import_model(model, "pool.onnx", dtype=dtype)
    stages = split_stages(run_passes(imported.kernel, "", "ieee", skip=("typecheck",)), 1024)
    both = {by: row_tree(stages[-1].kernel, stages[-2].result_view, prog.arch, "ieee",
                         "pool.onnx", by) for by in ("tree", "search")}
    for objective, found in searches.items():
        cost = {by: program_cost(p, objective) for by, p in both.items()}
        picked = len(found) == 1024 // 25  # a search per plane slot of a crossbar
        assert picked == (cost["search"] < cost["tree"]) and (picked or found == [])
    assert dtype[0] == "q" or searches["latency"]  # floats: faster by search
    assert searches["energy"] == []


def test_a_product_read_broadcast_is_computed_once_in_its_maps_order(tmp_path, capsys):
    """A grouped convolution's result times a (1, C, H, W, 3) mask (a max pool's taps in
    a training step): the convolution ends a stage of its own, computed once in the
    (channels, positions) order of the map its readers see, not once a tap in the
    product's (groups, positions, channels) order; bit-exact."""
    rng = np.random.default_rng(5)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4, group=2),
         helper.make_node("Reshape", ["c", "s"], ["c5"]),
         helper.make_node("Mul", ["c5", "m"], ["y"])], "bcast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6]),
         helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 4, 6, 6, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6, 3])],
        [numpy_helper.from_array(rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(np.array([1, 4, 6, 6, 1], dtype=np.int64), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    k = _kernel(model)
    first, last = split_stages(k, 1024)
    (product,) = [n for n in first.kernel.graph if first.kernel.node(n).op == "matmul"]
    assert first.kernel.outputs[first.kernel.results[0].name] == product
    assert last.residents == (first.kernel.results[0].name,)
    assert not any(last.kernel.node(n).op == "matmul" for n in last.kernel.graph)
    placed = apply_view(np.arange(1 * 2 * 36 * 2).reshape(k.node(product).shape),
                        first.result_view)
    assert placed.shape == (1, 1024)  # the 4 channels' planes of 36, one after another
    assert np.array_equal(placed[0, :144], np.arange(144).reshape(2, 36, 2).transpose(
        0, 2, 1).reshape(-1))
    path = tmp_path / "bcast.onnx"
    onnx.save(model, str(path))
    prog, imported = compile_model(model, str(path))
    inputs = {**imported.constants, "x": rng.normal(size=(1, 4, 6, 6)).astype(np.float32),
              "m": rng.normal(size=(1, 4, 6, 6, 3)).astype(np.float32)}
    outputs, _ = run_program(prog, inputs)
    assert verify_model(prog, inputs, outputs, "bcast") == 0
    assert "432 of 432 elements bit-exact" in capsys.readouterr().out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(3, 9), st.integers(1, 2), st.integers(1, 3),
       st.integers(1, 2), st.sampled_from([16, 32, 64]), st.booleans())
def test_a_value_placed_down_a_crossbars_rows_is_moved_once_and_doubled(c, side, pad, lanes,
                                                                       chunks, rows, packed):
    """A bias or a weight as a convolution reads it (a channel's values in every row of
    its padded output plane, a few image rows a crossbar, the whole repeated over
    chunks: AlexNet's first layer; or, `packed`, several planes a crossbar: its 12 x 12
    layers), built from the update stage's one element a row: each plane's (or
    crossbar's) word is moved once and doubled down its rows, not moved a row at a
    time; the replay fills every slot as the host would."""
    w = side + pad
    head = (ViewOp("reshape", (1, c, 1, 1, lanes)), ViewOp("broadcast", (1, c, side, side, lanes)),
            ViewOp("pad", (1, c, w, w, lanes)))
    g = rows // (w * w)
    if packed and g >= 2:  # g planes a crossbar
        cg = -(-c // g) * g
        n, blocks = cg // g * rows, cg
        body = (ViewOp("reshape", (c, w * w, lanes)), ViewOp("pad", (cg, w * w, lanes)),
                ViewOp("reshape", (cg // g, g * w * w, lanes)),
                ViewOp("pad", (cg // g, rows, lanes)))
    else:  # q image rows a crossbar
        q = rows // w
        hp = -(-w // q) * q
        n, blocks = c * hp // q * rows, c * hp // q
        body = (ViewOp("reshape", (c, w, w, lanes)), ViewOp("pad", (c, hp, w, lanes)),
                ViewOp("reshape", (c, hp // q, q * w, lanes)),
                ViewOp("pad", (c, hp // q, rows, lanes)))
    dst_view = (*head, *body, ViewOp("reshape", (1, n, lanes)),
                ViewOp("broadcast", (chunks, n, lanes)))
    shape = (c, lanes)
    _rebuilds(shape, (), dst_view, lanes, rows)
    p = plan(_io("x", shape, (), 1, 0, rows), _io("x", shape, dst_view, lanes, 70, rows))
    assert len(p.moves) <= 2 * blocks * lanes + 8  # a move a plane or crossbar, not a row


def test_plans_made_in_parallel_are_the_plans_made_one_by_one(tmp_path, monkeypatch):
    """move_ops.prefetch makes a link's plans in worker processes; the program is the
    same as with PIMC_JOBS=1, and the parent made none of them itself."""
    import pimc.lower.move_ops as move_ops

    model = small_cnn()
    onnx.save(model, str(tmp_path / "m.onnx"))
    made = []
    plan_ = move_ops.plan

    def spy(*args):
        made.append(args)
        return plan_(*args)

    monkeypatch.setattr(move_ops, "plan", spy)
    programs = []
    for jobs in ("1", "2"):
        monkeypatch.setenv("PIMC_JOBS", jobs)
        move_ops._PLANS.clear()
        made.clear()
        programs.append(compile_model(model, str(tmp_path / "m.onnx"))[0])
        if jobs == "1":
            assert len(made) >= 4  # (enough for a pool)
    assert not made  # every plan came from the workers
    assert programs[0].ops == programs[1].ops
