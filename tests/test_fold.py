"""Folding: a stage computed in passes over the same crossbars (pimc.lower.fold), the
`slice` view step it places its inputs with, and whole networks folded to fit a memory
smaller than their fewest crossbars, run bit-exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from pimc.runtime import run_program

from pimc.compile import compile_model
from pimc.isa.arch import Arch
from pimc.isa.errors import PimError
from pimc.isa.parse import parse_program
from pimc.isa.text import print_program
from pimc.isa.uop import Span, TensorIO, ViewOp, apply_view, view_shape
from pimc.isa.view import unview
from pimc.lower.fold import Fold, Store
from pimc.lower.moves import Move
from pimc.lower.views import element_ids
from pimc.reference.onnx_verify import verify_model
from tests.test_stages import _saved


def test_a_slice_step_takes_a_range_along_an_axis_and_is_undone():
    a = np.arange(24).reshape(2, 3, 4)
    step = ViewOp("slice", (1, 1, 3))
    assert np.array_equal(apply_view(a, (step,)), a[:, 1:3])
    assert view_shape((2, 3, 4), (step,)) == (2, 2, 4)
    back = unview(apply_view(a, (step,)), (2, 3, 4), (step,))
    assert np.array_equal(back[:, 1:3], a[:, 1:3]) and not back[:, 0].any()
    for dims in [(0, 2, 2), (0, 3), (0, -1, 1)]:
        with pytest.raises(PimError, match="slice"):
            ViewOp("slice", dims)
    with pytest.raises(PimError, match="does not apply"):
        step.shape_after((2, 2, 4))


def test_a_sliced_placement_round_trips_through_the_text_format():
    from pimc.isa.builder import ProgramBuilder

    b = ProgramBuilder(1, arch=Arch(rows=64, cols=64, max_crossbars=1))
    b.inputs.append(TensorIO("x", "f32", (4, 8), Span(0, 1), Span(0, 32), 0, view=(
        ViewOp("reshape", (4, 2, 4)), ViewOp("slice", (1, 1, 2)), ViewOp("reshape", (4, 4)),
        ViewOp("transpose", (1, 0)), ViewOp("reshape", (16,)), ViewOp("pad", (32,)))))
    prog = b.build()
    text = print_program(prog)
    assert "slice(1,1,2)" in text
    assert parse_program(text).inputs == prog.inputs


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_the_bands_of_a_fold_cover_its_space_once_in_order(dims, data):
    """Pass f's band is the elements at f along the axis cut in `parts` (the last band
    padded where the passes do not divide the axis): together the passes place every
    element once, and the unfolded placement is the bands in turn."""
    axis = data.draw(st.integers(0, len(dims) - 1))
    parts = data.draw(st.integers(1, 4))
    short = data.draw(st.integers(0, min(dims[axis], parts) - 1))  # the last band's padding
    space = tuple(d * parts - (short if i == axis else 0) if i == axis else d
                  for i, d in enumerate(dims))
    fold = Fold(space, axis, parts)
    assert fold.width == dims[axis]
    ids = element_ids(space)
    bands = [apply_view(ids, fold.band(f)).reshape(-1) for f in range(parts)]
    placed_ids = np.concatenate(bands)
    assert sorted(placed_ids[placed_ids > 0].tolist()) == list(range(1, ids.size + 1))
    n = fold.width
    along = np.moveaxis(ids.reshape(space), axis, 0)
    for f, band in enumerate(bands):
        mine = np.moveaxis(along[f * n:(f + 1) * n], 0, axis).reshape(-1)
        assert np.array_equal(band[band > 0], mine)
    size = bands[0].size
    rows = data.draw(st.sampled_from([1, 2, 4]))
    per = -(-size // rows) * rows
    out = TensorIO("y", "f32", space, Span(3, 3 + per // rows), Span(0, rows), 0,
                   view=(*fold.band(), ViewOp("reshape", (size,)),
                         *((ViewOp("pad", (per,)),) if per > size else ())))
    whole = fold.unfolded(out, Store(7, per // rows, 32, 32))
    assert whole.xbs == Span(7, 7 + parts * (per // rows))
    placed = apply_view(ids, whole.view).reshape(parts, per)
    for f in range(parts):
        assert np.array_equal(placed[f, :size], bands[f])


def test_a_weight_is_stationary_only_along_an_axis_it_does_not_vary_along():
    """A weight broadcast over positions stays put whichever band of positions a pass
    computes; folded along its channels, each pass would need other weights."""
    w = (ViewOp("reshape", (4, 1, 3)), ViewOp("broadcast", (4, 6, 3)))  # (ch, pos, lanes)
    by_pos, by_ch = Fold((4, 6), 1, 3), Fold((4, 6), 0, 2)
    t = TensorIO("w", "f32", (4, 3), Span(0, 1), Span(0, 8), 0, lanes=3)
    assert by_pos.stationary(_banded(t, w, by_pos))
    assert not by_ch.stationary(_banded(t, w, by_ch))
    with pytest.raises(ValueError, match="slice"):
        by_pos.passed(t, 1)


def _banded(t: TensorIO, view: tuple[ViewOp, ...], fold: Fold) -> TensorIO:
    """t placed as a band program reads it: its view to the space, the band, its lanes."""
    from pimc.lower.views import widen

    return TensorIO(t.name, t.dtype, t.shape, t.xbs, t.rows, t.col, lanes=t.lanes,
                    view=(*view, *widen(fold.band(), 3)))


def test_the_store_keeps_a_word_a_pass_and_a_move_from_the_map_reads_its_pass_word():
    """Pass f's result goes to word f % words of the block f // words of the store; a
    move planned from the unfolded map (pass f's crossbars numbered on past pass
    f - 1's) is cut into moves from the store, each reading its pass's columns."""
    store = Store(first=100, length=3, bits=16, words=2)
    assert store.crossbars(5) == 9
    assert store.at(0) == (Span(100, 103), list(range(16)))
    assert store.at(3) == (Span(103, 106), list(range(16, 32)))
    m = Move((0,), 100 - 10, 0, Span(10, 16), Span(0, 64))  # virtual 100..105: passes 0, 1
    got = store.pieces(m)
    assert [(p.sources, cols[0]) for p, cols in got] == [(Span(100, 103), 0),
                                                          (Span(100, 103), 16)]
    assert [p.xbs for p, _ in got] == [Span(10, 13), Span(13, 16)]
    m = Move((0,), 106 - 10, 0, Span(10, 12), Span(0, 64))  # pass 2: the second block
    assert [(p.sources, cols[0]) for p, cols in store.pieces(m)] == [(Span(103, 105), 0)]


def _two_convs(tmp_path):
    rng = np.random.default_rng(3)
    w = {"w1": rng.normal(0, 0.4, (16, 2, 3, 3)), "w2": rng.normal(0, 0.3, (8, 16, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[1] * 4),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    return _saved(tmp_path, nodes, [1, 2, 16, 16], [1, 8, 8, 8], w)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_a_network_bigger_than_its_memory_is_folded_and_runs_bit_exact(tmp_path, capsys,
                                                                        dtype):
    """Two convolutions whose stages need 656 crossbars at the fewest (64 rows each) on a
    memory of 300: they are computed in passes over part of their crossbars, their weights
    written once, their maps kept a word a pass; their readers read them from there. The
    program runs bit-exact against the order-matched reference."""
    model = _two_convs(tmp_path)
    prog, imported = compile_model(model, str(tmp_path / "m.onnx"), dtype=dtype,
                                   arch=Arch(rows=64, max_crossbars=300))
    assert prog is not None and prog.crossbars <= 300
    meta = dict(prog.meta)
    assert int(meta["fewest-crossbars"]) > 300 and meta["folds"]
    x = np.random.default_rng(6).normal(0, 1, (1, 2, 16, 16)).astype(np.float32)
    if dtype == "bf16":
        from pimc.isa.dtypes import parse_dtype

        x = parse_dtype("bf16").from_bits(parse_dtype("bf16").to_bits(x))
    inputs = {**imported.constants, "x": x}
    outputs, _ = run_program(prog, inputs)
    failed = verify_model(prog, inputs, outputs, "m")
    assert "512 of 512 elements bit-exact" in capsys.readouterr().out
    assert dtype == "bf16" or failed == 0


def test_a_network_that_cannot_fold_small_enough_is_a_clear_error(tmp_path):
    model = _two_convs(tmp_path)
    with pytest.raises(PimError, match="folded where they can be"):
        compile_model(model, str(tmp_path / "m.onnx"), arch=Arch(rows=64, max_crossbars=20))


def test_a_fold_is_offered_only_along_an_axis_whose_bands_hold_the_same_channels():
    """Channels (1..3) down axis 0, seven positions along axis 1 (the last padding): cut
    along positions in two, every band holds the same channels (the second padded on
    to four); along channels, each band its own; cut in three, the last band would
    hold padding alone, which is no fold."""
    from pimc.fit import _alike

    ids = np.repeat(np.arange(1, 4)[:, None], 7, axis=1)
    ids[:, 6] = 0
    assert _alike(ids, 1, 2)
    assert not _alike(ids, 0, 3)
    assert not _alike(ids, 1, 3)


def test_folds_are_offered_a_step_of_the_view_at_a_time_the_latest_first(tmp_path,
                                                                         monkeypatch):
    """Each stage's folds come a step of its result view at a time, the latest first
    (its bands whole crossbars of the map's layout), an earlier step only with more
    passes than the later ones offered; and a fold is chosen only after its gathers are
    counted, every pass's."""
    import pimc.fit as fit

    offered: dict[int, list[list[Fold]]] = {}
    counted: set[int] = set()  # the passes whose gathers were counted
    bands, cycles = fit._bands, fit.move_cycles

    def recorded(st_, i, *args):
        for step in bands(st_, i, *args):
            offered.setdefault(i, []).append([f for _, f in step])
            yield step

    def counting(src, dst, *args):
        counted.update(op.dims[1] for op in dst.view if op.kind == "slice")  # pass f's
        return cycles(src, dst, *args)

    monkeypatch.setattr(fit, "_bands", recorded)
    monkeypatch.setattr(fit, "move_cycles", counting)
    prog, _ = compile_model(_two_convs(tmp_path), str(tmp_path / "m.onnx"),
                            arch=Arch(rows=64, max_crossbars=100))
    assert prog is not None and prog.crossbars <= 100
    chosen = dict(map(int, c.split(":")) for c in dict(prog.meta)["folds"].split())
    assert chosen and set(chosen) <= set(offered)
    for steps in offered.values():
        leads = [{len(f.lead) for f in fs} for fs in steps]
        assert all(len(lead) == 1 for lead in leads)  # a step at a time
        assert [*map(min, leads)] == sorted({*map(min, leads)}, reverse=True)
        for before, after in itertools.pairwise(steps):
            assert min(f.parts for f in after) > max(f.parts for f in before)
    assert counted >= set(range(max(chosen.values())))  # every pass of the folds chosen
