"""A micro-op prepared for execution: what does not depend on data, worked out once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from pimc.isa.arch import Arch
from pimc.isa.check import rep_columns
from pimc.isa.cost import OpTiming
from pimc.isa.flow import COLUMN_FIELDS
from pimc.isa.uop import Init, Op


@dataclass(frozen=True)
class Step:
    """An op with everything that does not depend on data worked out once."""

    op: Op
    line: int
    xs: slice
    nx: int
    rows: range | None  # None: every row
    static_mask: np.ndarray | None  # the rows' mask, None for every row
    timing: OpTiming
    reps: int
    aux: tuple = ()  # per-kind precomputation (INIT: the columns set and reset)



def init_columns(arch: Arch, op: Init) -> tuple[np.ndarray, np.ndarray]:
    """The columns an INIT sets to 1 and resets to 0, over all its repetitions."""
    cols = [(c, op.value >> i & 1) for r in rep_columns(arch, op.cols, op.rep)
            for i, c in enumerate(r)]
    return (np.array([c for c, v in cols if v], dtype=np.intp),
            np.array([c for c, v in cols if not v], dtype=np.intp))


def as_index(cols: np.ndarray) -> np.ndarray | slice:
    """A run of adjacent columns as a slice: numpy writes a slice faster than a list."""
    if len(cols) > 1 and cols[-1] - cols[0] == len(cols) - 1 and (np.diff(cols) == 1).all():
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return cols


def bound(step: Step, cmap: np.ndarray) -> Step:
    """A routine body's step with its frame columns mapped to crossbar columns."""
    op = step.op
    fields = dict(op.__dict__)
    for name in COLUMN_FIELDS[type(op)]:
        value = fields[name]
        fields[name] = int(cmap[value]) if isinstance(value, int) else tuple(
            cmap[list(value)].tolist())
    new = object.__new__(type(op))
    new.__dict__.update(fields)
    step = dataclasses.replace(step, op=new)
    if isinstance(op, Init):
        object.__setattr__(step, "aux", tuple(cmap[a] for a in step.aux))
    return step
