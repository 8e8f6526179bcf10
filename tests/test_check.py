"""Static checks: ranges, operand rules and the legal partition-parallel patterns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimc.isa.arch import Arch
from pimc.isa.check import op_problem, rep_columns, validate
from pimc.isa.errors import PimError
from pimc.isa.uop import Init, Nor, Rep, Search, SearchKind, Shift, Span, TensorIO, Transfer
from tests.strategies import program

P32 = Arch(rows=64, cols=1024, partitions=32)  # PyPIM's model: 32 columns per partition
X = Span(0, 1)


def problem(op, arch=P32, crossbars=2):
    return op_problem(program(arch, crossbars, []), op)


def test_repetition_shifts_every_operand_by_whole_partitions():
    assert rep_columns(P32, (2, 0, 1), Rep(3, 4)) == [(2, 0, 1), (130, 128, 129),
                                                       (258, 256, 257)]


@pytest.mark.parametrize(("gate", "rep", "expected"), [
    ((2, 0, 1), Rep(32, 1), None),  # one gate inside every partition
    ((33, 0, 1), Rep(16, 2), None),  # inputs in partition p, output in p+1, p even
    ((33, 0, 1), Rep(16, 1), "repetitions overlap"),  # spans of two partitions, step 1
    ((33, 0, 1), Rep(17, 2), "the last repetition reaches partition 33"),
    ((64, 0, 32), Rep(10, 3), None),  # spans three partitions, step 3
    ((2, 0, 1), Rep(0, 1), "rep count and step must be positive"),
])
def test_partition_patterns(gate, rep, expected):
    got = problem(Nor(xbs=X, out=gate[0], ins=gate[1:], rep=rep))
    assert got == expected or (expected and expected in got)


def test_rep_needs_partitions():
    got = problem(Init(xbs=X, cols=(1,), value=1, rep=Rep(2, 1)), arch=Arch(rows=64, cols=64))
    assert "more than one partition" in got


@pytest.mark.parametrize(("op", "message"), [
    (Nor(xbs=X, out=1, ins=(1, 2)), "also an input"),
    (Nor(xbs=X, out=1, ins=(2, 3, 4, 5)), "NOR takes 1 to 3 inputs, got 4"),
    (Nor(xbs=X, out=1, ins=(2, 2)), "repeat a column"),
    (Nor(xbs=X, out=1024, ins=(2,)), "column c1024 is out of range"),
    (Nor(xbs=Span(0, 3), out=1, ins=(2,)), "crossbar 2 is out of range"),
    (Nor(xbs=X, rows=Span(60, 65), out=1, ins=(2,)), "row 64 is out of range"),
    (Init(xbs=X, cols=(1, 2), value=4), "value 4 does not fit in 2 columns"),
    (Search(xbs=X, cols=(1, 2), key=7), "key 7 does not fit"),
    (Shift(xbs=X, src_cols=(1,), dst_cols=(2, 3), by=1), "differ in width"),
    (Shift(xbs=X, src_cols=(1,), dst_cols=(2,), by=2000), "exceeds the barrel shifter"),
    (Transfer(xbs=X, dst_xbs=X, src_cols=(1,), dst_cols=(2,)), "overlap"),
    (Transfer(xbs=Span(0, 2), dst_xbs=Span(1, 2), src_cols=(1,), dst_cols=(2,)),
     "2 source crossbars but 1 destinations"),
    (Transfer(xbs=X, dst_xbs=Span(1, 2), src_cols=(1,), dst_cols=(2,), dst_row=3, pred=True),
     "contiguous row range, without ?tag"),
    (Transfer(xbs=X, dst_xbs=Span(1, 2), src_cols=(1, 2), dst_cols=(0,), dst_row=63),
     "exceed 64 rows"),
    (Transfer(xbs=X, dst_xbs=Span(1, 2), src_cols=(1,), dst_cols=(1000,), dst_row=0),
     "exceeds 1024 columns"),
])
def test_op_problems(op, message):
    assert message in problem(op)


def test_valid_ops_have_no_problem():
    for op in (Nor(xbs=X, out=3, ins=(0, 1, 2)), Init(xbs=X, cols=(0, 1), value=3),
               Search(xbs=X, cols=(0, 1), kind=SearchKind.MAX),
               Shift(xbs=X, src_cols=(0, 1), dst_cols=(0, 1), by=-5),
               Transfer(xbs=X, dst_xbs=Span(1, 2), src_cols=(0,), dst_cols=(5,), dst_row=2)):
        assert problem(op) is None


@pytest.mark.parametrize(("io", "message"), [
    (TensorIO("x", "u8", (65,), X, Span(0, 64), 0), "needs 65 rows but its placement holds 64"),
    (TensorIO("x", "u8", (6,), X, Span(0, 64), 0, lanes=4), "lanes=4 must divide its 6"),
    (TensorIO("x", "f32", (4,), X, Span(0, 64), 1000), "needs columns up to c1031"),
    (TensorIO("x y", "u8", (4,), X, Span(0, 64), 0), "holds a space"),
    (TensorIO("x", "u99", (4,), X, Span(0, 64), 0), "unknown dtype"),
])
def test_io_problems(io, message):
    with pytest.raises(PimError, match=message):
        validate(program(P32, 1, [], inputs=(io,)), "p.uop")


def test_too_many_crossbars():
    with pytest.raises(PimError, match="9 crossbars requested, the architecture has 8"):
        validate(program(Arch(rows=64, cols=64, max_crossbars=8), 9, []), "p.uop")


def test_a_predicated_op_needs_a_search_before_it():
    from pathlib import Path

    from pimc.isa.text import parse_program

    text = (Path(__file__).resolve().parent.parent / "samples" / "row_ops.uop").read_text()
    validate(parse_program(text, "t.uop"), "t.uop")  # SEARCH, then ?tag: fine
    lines = text.splitlines()
    search = next(i for i, line in enumerate(lines) if line.startswith("SEARCH"))
    del lines[search]
    pred = next(i for i, line in enumerate(lines) if "?tag" in line) + 1
    with pytest.raises(PimError, match=rf"t\.uop:{pred}: a predicated op .* no SEARCH"):
        validate(parse_program("\n".join(lines) + "\n", "t.uop"), "t.uop")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(1, 5), st.integers(1, 5),
       st.integers(1, 12))
def test_transfer_spans_are_checked_and_costed_without_listing_them(a, b, sa, sb, n):
    """Overlap of a TRANSFER's source and destination crossbars, and its distance, from
    the spans' ends, as listing every crossbar would give."""
    from pimc.isa.check import _runs_meet
    from pimc.isa.cost import transfer_distance

    src, dst = range(a, a + n * sa, sa), range(b, b + n * sb, sb)
    assert _runs_meet(src, dst) == bool(set(src) & set(dst))
    op = Transfer(xbs=Span(a, a + n * sa, sa), dst_xbs=Span(b, b + n * sb, sb), src_cols=(0,),
                  dst_cols=(0,))
    assert transfer_distance(op) == max(abs(d - s) for s, d in zip(src, dst, strict=True))
