"""What a run gives, in a form two runs can be compared by: the outputs' bytes and the
whole statistics, or the error's message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.uop import Program, Span
from tests.strategies import SMALL


def outcomes(*runs: Callable[[], tuple[Any, ...]]) -> list[Any]:
    """Each run as (outputs as bytes, stats dict), or its error's message."""
    out = []
    for run in runs:
        try:
            values, stats = run()[:2]
            out.append(({k: v.tobytes() for k, v in values.items()}, stats.as_dict()))
        except PimError as exc:
            out.append(str(exc))
    return out


def early_failure_in_the_second_half() -> Program:
    """A program on 4 crossbars whose crossbars 2 and 3 fail a check at an earlier op
    than crossbars 0 and 1 do: cut in two, the second half's error is the one to report."""
    b = ProgramBuilder(4, arch=SMALL)
    b.input("x", "u8", [4, SMALL.rows], 0)
    b.init(10, 1, xbs=Span(0, 4))
    b.nor(10, 0, xbs=Span(0, 4))
    b.nor(11, 9 + 3, xbs=Span(2, 4))  # c12 never written: fails on crossbars 2, 3
    b.nor(12, 13, xbs=Span(0, 2))  # would fail on crossbars 0, 1, later
    return b.build()
