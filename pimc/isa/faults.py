"""Fault maps: the cells of a memory known to be stuck, one per line.

    x0 c12 r5 stuck-at-1     one cell
    x0 c12 stuck-at-0        every row of column 12 of crossbar 0 (a bit line)
    x3 r7 stuck-at-1         every column of row 7 of crossbar 3 (a word line)

`#` starts a comment. The runtime injects these faults (`pimc run --faults`) and the
compiler places a program around them (`pimc compile --avoid`); both read this one format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pimc.isa.errors import PimError

_LINE = re.compile(r"x([0-9]{1,9})(?:\s+c([0-9]{1,9}))?(?:\s+r([0-9]{1,9}))?\s+stuck-at-([01])")


@dataclass(frozen=True)
class Fault:
    """A stuck cell, or a whole column (row None) or row (col None) of one crossbar."""

    xb: int
    col: int | None
    row: int | None
    value: int

    def text(self) -> str:
        where = [f"x{self.xb}"] + ([f"c{self.col}"] if self.col is not None else []) + (
            [f"r{self.row}"] if self.row is not None else [])
        return " ".join(where) + f" stuck-at-{self.value}"


def parse_faults(text: str, name: str = "<faults>") -> tuple[Fault, ...]:
    faults = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _LINE.fullmatch(line)
        if m is None or (m[2] is None and m[3] is None):
            raise PimError(f"{name}:{number}: expected 'xN cN rN stuck-at-0|1' (a cell), "
                           f"'xN cN stuck-at-...' (a column) or 'xN rN stuck-at-...' (a row), "
                           f"not '{line[:60]}'")
        faults.append(Fault(int(m[1]), None if m[2] is None else int(m[2]),
                            None if m[3] is None else int(m[3]), int(m[4])))
    return tuple(faults)


def print_faults(faults: tuple[Fault, ...]) -> str:
    return "".join(f.text() + "\n" for f in faults)


def load_faults(path: str | Path) -> tuple[Fault, ...]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PimError(f"{path}: cannot read the fault map: {exc}") from None
    return parse_faults(text, str(path))
