"""The micro-op ISA: one frozen record per operation, and the program that holds them.

These records are the contract between the compiler (which builds them) and the runtime
(which executes them); `pimc.isa.text` prints and parses them, `pimc.isa.check` checks
them against an architecture. docs/isa.md specifies each op, its cycles and its energy.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import ClassVar

from pimc.isa.arch import Arch
from pimc.isa.errors import PimError
from pimc.isa.view import ViewOp as ViewOp
from pimc.isa.view import apply_view as apply_view
from pimc.isa.view import unview as unview
from pimc.isa.view import view_shape as view_shape


class Opcode(enum.Enum):
    INIT = "INIT"
    NOR = "NOR"
    SEARCH = "SEARCH"
    SHIFT = "SHIFT"
    TRANSFER = "TRANSFER"


class SearchKind(enum.Enum):
    EXACT = "=="  # rows whose columns equal a key (content-addressable match)
    MAX = "max"  # rows holding the largest unsigned value among the selected rows
    MIN = "min"  # ... the smallest


@dataclass(frozen=True)
class Span:
    """An arithmetic progression of crossbar or row indices: start:stop:step."""

    start: int
    stop: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.step < 1 or self.start < 0 or self.stop <= self.start:
            raise PimError(f"empty or malformed span {self.start}:{self.stop}:{self.step}")
        n = (self.stop - self.start + self.step - 1) // self.step
        object.__setattr__(self, "stop", self.start + (n - 1) * self.step + 1)
        if n == 1:
            object.__setattr__(self, "step", 1)

    @classmethod
    def one(cls, index: int) -> Span:
        return cls(index, index + 1)

    def __len__(self) -> int:
        return (self.stop - self.start + self.step - 1) // self.step

    @property
    def last(self) -> int:
        return self.stop - 1

    def indices(self) -> range:
        return range(self.start, self.stop, self.step)

    def as_slice(self) -> slice:
        return slice(self.start, self.stop, self.step)


@dataclass(frozen=True)
class Rep:
    """Repeat a gate over `count` partitions, `step` partitions apart, in one cycle."""

    count: int = 1
    step: int = 1


NO_REP = Rep()


@dataclass(frozen=True, kw_only=True)
class Op:
    """Fields every micro-op has: where it acts and where it came from."""

    opcode: ClassVar[Opcode]
    xbs: Span  # crossbars the op acts on, in parallel
    rows: Span | None = None  # selected rows; None means every row
    pred: bool = False  # further limit to the rows of each crossbar's tag
    src: str = ""  # source annotation: a DSL line, an ONNX node
    line: int = field(default=0, compare=False, repr=False)  # where it was parsed from


@dataclass(frozen=True, kw_only=True)
class Init(Op):
    """Row-parallel write of a constant: bit i of `value` goes to `cols[i]`."""

    opcode: ClassVar[Opcode] = Opcode.INIT
    cols: tuple[int, ...]
    value: int
    rep: Rep = NO_REP


@dataclass(frozen=True, kw_only=True)
class Nor(Op):
    """MAGIC NOR: out <- out AND NOR(ins). `acc` marks a deliberate AND-accumulate."""

    opcode: ClassVar[Opcode] = Opcode.NOR
    out: int
    ins: tuple[int, ...]
    acc: bool = False
    rep: Rep = NO_REP


@dataclass(frozen=True, kw_only=True)
class Search(Op):
    """Content-addressable search over `cols`; the matching rows become the tag."""

    opcode: ClassVar[Opcode] = Opcode.SEARCH
    cols: tuple[int, ...]
    kind: SearchKind = SearchKind.EXACT
    key: int = 0


@dataclass(frozen=True, kw_only=True)
class Shift(Op):
    """Barrel shifter: each selected row r gets src_cols of row r - by (0 from outside)."""

    opcode: ClassVar[Opcode] = Opcode.SHIFT
    src_cols: tuple[int, ...]
    dst_cols: tuple[int, ...]
    by: int


@dataclass(frozen=True, kw_only=True)
class Transfer(Op):
    """Copy columns of crossbars `xbs` into crossbars `dst_xbs` over the switches.

    Plain form: the selected rows of `src_cols` land in the same rows of `dst_cols`.
    Transposing form (`dst_row` set): source column k over the selected rows becomes
    destination row dst_row + k, starting at column dst_cols[0] (FloatPIM's rotation).
    """

    opcode: ClassVar[Opcode] = Opcode.TRANSFER
    dst_xbs: Span
    src_cols: tuple[int, ...]
    dst_cols: tuple[int, ...]
    dst_row: int | None = None


@dataclass(frozen=True)
class TensorIO:
    """A host tensor's placement: element e of the flattened tensor sits in lane e % lanes
    of slot e // lanes; slots fill `rows` of the first crossbar of `xbs`, then the next.
    Bit k of a slot (lane l, bit b: k = l*bits + b) is in column col + k*stride: stride 1
    keeps a value's bits adjacent; stride = cols/partitions puts bit b in partition b
    (the bit-sliced layout of partition-parallel code); `fold` wraps a value wider than
    the partitions onto the next column.
    Lane l occupies columns col + l*bits .. col + (l+1)*bits - 1, least significant first.
    With a `view`, "the flattened tensor" is the tensor after those numpy steps: the host
    writes a transposed, reshaped or replicated copy (each written cell counted)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    xbs: Span
    rows: Span
    col: int
    lanes: int = 1
    stride: int = 1
    fold: int = 0  # with fold F, bit k is in column col + (k % F)*stride + k // F
    broadcast: bool = False  # one value (shape ()), written by the host into every slot
    view: tuple[ViewOp, ...] = ()
    setup: bool = False  # written once when the program is loaded (weights), not per run

    @property
    def placed_elements(self) -> int:
        """Elements after the view: slots x lanes."""
        return math.prod(view_shape(self.shape, self.view))

    def columns(self, bits: int) -> list[int]:
        """The columns of one slot, lowest bit first."""
        n = self.lanes * bits
        if self.fold:
            return [self.col + (k % self.fold) * self.stride + k // self.fold for k in range(n)]
        return list(range(self.col, self.col + n * self.stride, self.stride))


@dataclass(frozen=True)
class Segment:
    """A named run of a routine's frame columns (an operand, a result or scratch)."""

    name: str
    width: int


@dataclass(frozen=True)
class Arg:
    """A call's binding of one segment: its first column is `base` (plus `stride` per
    iteration of the enclosing loop). At top level `base` is a crossbar column; inside a
    routine it is a column of the caller's frame."""

    segment: str
    base: int
    stride: int = 0


@dataclass(frozen=True)
class Call:
    """Run a routine's body with its segments bound to columns. At top level the call
    names the crossbars and rows its body acts on; inside a routine it inherits them."""

    routine: str
    args: tuple[Arg, ...]
    xbs: Span | None = None
    rows: Span | None = None
    src: str = ""
    line: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Loop:
    """Repeat `body` `count` times; iteration i binds every Arg at base + i * stride."""

    count: int
    body: tuple[Item, ...]
    src: str = ""
    line: int = field(default=0, compare=False, repr=False)


Item = Op | Call | Loop


@dataclass(frozen=True)
class Routine:
    """A block of micro-ops defined once and called many times (SIMDRAM's muProgram).
    Columns in `body` are frame columns: segment k covers the frame columns after those of
    the segments before it. Body ops act on the caller's crossbars and rows (their own
    `xbs` and `rows` fields are unused: Span(0, 1) and None)."""

    name: str
    segments: tuple[Segment, ...]
    body: tuple[Item, ...]
    src: str = ""
    line: int = field(default=0, compare=False, repr=False)

    @property
    def width(self) -> int:
        return sum(s.width for s in self.segments)

    def starts(self) -> dict[str, tuple[int, int]]:
        """Segment name -> (first frame column, width)."""
        out, col = {}, 0
        for s in self.segments:
            out[s.name] = (col, s.width)
            col += s.width
        return out


HERE = Span(0, 1)  # the crossbar field of an op inside a routine: the caller's


@dataclass(frozen=True)
class Program:
    """A whole micro-op program: header (architecture, I/O placement) and body."""

    arch: Arch
    crossbars: int
    ops: tuple[Item, ...]
    inputs: tuple[TensorIO, ...] = ()
    outputs: tuple[TensorIO, ...] = ()
    source: str = ""
    version: int = 1
    # What the program computes, for whoever verifies it (e.g. the kernel's source text):
    # (key, value) pairs, printed as `.meta KEY @"value"`.
    meta: tuple[tuple[str, str], ...] = ()
    # Line of each op in the text it was parsed from (or would be printed to); not identity.
    lines: tuple[int, ...] = field(default=(), compare=False)
    routines: tuple[Routine, ...] = ()

    def routine(self, name: str) -> Routine:
        for r in self.routines:
            if r.name == name:
                return r
        raise PimError(f"no routine '{name}'")

    def line_of(self, index: int) -> int:
        return self.lines[index] if index < len(self.lines) else index + 1
