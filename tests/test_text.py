"""The .uop printer and parser: exact round-trip, and located errors on bad input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimc.isa.errors import PimError
from pimc.isa.text import parse_program, print_program
from tests.strategies import programs

HEADER = ".pimc 1\n.crossbars 2\n"


@settings(max_examples=200, deadline=None)
@given(programs())
def test_print_parse_round_trip(prog):
    text = print_program(prog)
    back = parse_program(text)
    assert back == prog
    assert back.lines == prog.lines
    assert print_program(back) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(".pimcNORINT xrc0123:=->&?tag@\"#\n-,")),
               max_size=120))
def test_garbage_raises_only_pim_error(text):
    with contextlib.suppress(PimError):
        parse_program(HEADER + text)


def test_comments_and_blank_lines_are_ignored():
    prog = parse_program(HEADER + "\n# a comment\nINIT x0 c1 = 1   # set\n\nNOR x0 c2 = c1\n")
    assert len(prog.ops) == 2
    assert prog.lines == (5, 7)


@pytest.mark.parametrize(("body", "line", "message"), [
    ("FOO x0 c1 = 1", 3, "unknown opcode 'FOO'"),
    ("NOR x0 c1 c2", 3, "expected '=' or '&='"),
    ("NOR x0 c1 =", 3, "expected a column like c5 at end of line"),
    ("INIT x0 c1:1 = 0", 3, "empty column range"),
    ("INIT c1 = 1", 3, "expected crossbars like x0 or x0:8, found 'c1'"),
    ("NOP\nINIT x0 c1 = 1", 3, "unknown opcode 'NOP'"),
    ("INIT x0 c1 = 1\nSEARCH x0 c0:2 ~ 3", 4, "expected '==', 'max' or 'min'"),
    ("SHIFT x0 c0 -> c1 by two", 3, "expected a row offset, found 'two'"),
    ("TRANSFER x0 c0 -> c1", 3, "expected '->', found 'c0'"),
    ("INIT x0 c1 = 1 extra", 3, "unexpected 'extra'"),
    ("INIT x0 c1 = 1 rep=2", 3, "expected rep=COUNT/STEP"),
    ('INIT x0 c1 = 1 @"unterminated', 3, "malformed line"),
    ("INIT x0 c1 = 1\n.crossbars 3", 4, "directive after the first micro-op"),
])
def test_parse_errors_name_the_line(body, line, message):
    with pytest.raises(PimError) as err:
        parse_program(HEADER + body, "prog.uop")
    assert str(err.value).startswith(f"prog.uop:{line}: ")
    assert message in str(err.value)


@pytest.mark.parametrize(("text", "message"), [
    ("", "prog.uop:1: a program starts with '.pimc 1'"),
    (".pimc 3\n", "prog.uop:1: unsupported format version '3'"),
    (".pimc 1\n", "missing '.crossbars N'"),
    (".pimc 1\n.crossbars 1\n.arch rows=100\n", "prog.uop:3: arch: rows must be a positive multiple of 64"),
    (".pimc 1\n.crossbars 1\n.arch speed=3\n", "prog.uop:3: unknown architecture parameter 'speed'"),
    (".pimc 1\n.crossbars 1\n.input a u8 x0 r0 c0\n", "prog.uop:3: expected '.input NAME"),
    (".pimc 1\n.crossbars 1\n.bogus\n", "prog.uop:3: unknown directive '.bogus'"),
    (".pimc 1\n.crossbars 1\n.source x\n", 'prog.uop:3: expected .source @"FILE"'),
])
def test_header_errors(text, message):
    with pytest.raises(PimError, match=None) as err:
        parse_program(text, "prog.uop")
    assert message in str(err.value)
