"""A small Python API to emit micro-op programs (used by tests, samples and later passes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pimc.isa.arch import Arch
from pimc.isa.check import validate
from pimc.isa.errors import PimError
from pimc.isa.text import op_lines
from pimc.isa.uop import (
    HERE,
    NO_REP,
    Arg,
    Call,
    Init,
    Item,
    Loop,
    Nor,
    Op,
    Program,
    Rep,
    Routine,
    Search,
    SearchKind,
    Segment,
    Shift,
    Span,
    TensorIO,
    Transfer,
)

Where = Span | int | None


def as_span(value: Span | int) -> Span:
    return Span.one(value) if isinstance(value, int) else value


class ProgramBuilder:
    """Collects ops; every op acts on `xbs` (default: all crossbars) and `rows` (default: all)."""

    def __init__(self, crossbars: int = 1, arch: Arch | None = None, source: str = "",
                 meta: tuple[tuple[str, str], ...] = ()) -> None:
        self.arch = arch or Arch()
        self.crossbars = crossbars
        self.source = source
        self.meta = meta
        self.ops: list[Item] = []
        self.inputs: list[TensorIO] = []
        self.outputs: list[TensorIO] = []
        self.source_note = ""  # attached to every op emitted (see annotate)
        self.routines: list[Routine] = []
        self._frame: tuple[str, tuple[Segment, ...], list[Item]] | None = None
        self._loops: list[list[Item]] = []

    @contextmanager
    def annotate(self, src: str) -> Iterator[None]:
        """Attach `src` to every op emitted inside the block."""
        saved, self.source_note = self.source_note, src
        try:
            yield
        finally:
            self.source_note = saved

    def _common(self, xbs: Where, rows: Where, pred: bool) -> dict[str, object]:
        if self._frame is not None:  # a routine's ops act on the call's crossbars and rows
            return dict(xbs=HERE, rows=None, pred=pred, src=self.source_note)
        return dict(
            xbs=as_span(xbs) if xbs is not None else Span(0, self.crossbars),
            rows=as_span(rows) if rows is not None else None,
            pred=pred,
            src=self.source_note,
        )

    def _emit(self, op: Op) -> Op:
        self._items().append(op)
        return op

    def _items(self) -> list[Item]:
        if self._loops:
            return self._loops[-1]
        return self._frame[2] if self._frame is not None else self.ops

    @contextmanager
    def routine(self, name: str, **widths: int) -> Iterator[dict[str, int]]:
        """Ops emitted inside form routine `name`; yields each segment's first frame
        column (segments in the order given)."""
        if self._frame is not None:
            raise PimError("routines are defined one at a time, at top level")
        segments = tuple(Segment(k, w) for k, w in widths.items())
        self._frame = (name, segments, [])
        first, col = {}, 0
        for seg in segments:
            first[seg.name], col = col, col + seg.width
        try:
            yield first
            self.routines.append(Routine(name, segments, tuple(self._frame[2]),
                                         self.source_note))
        finally:
            self._frame = None

    @contextmanager
    def loop(self, count: int) -> Iterator[None]:
        """Calls made inside repeat `count` times (their args' strides apply)."""
        self._loops.append([])
        try:
            yield
        finally:
            body = self._loops.pop()
        self._items().append(Loop(count, tuple(body), self.source_note))

    def call(self, name: str, *, xbs: Where = None, rows: Where = None,
             **args: int | tuple[int, int]) -> Call:
        """CALL a routine: each segment's base column, or (base, stride) inside a loop."""
        bound = tuple(Arg(k, *((v, 0) if isinstance(v, int) else v)) for k, v in args.items())
        if self._frame is not None:
            call = Call(name, bound, src=self.source_note)
        else:
            call = Call(name, bound, as_span(xbs) if xbs is not None else Span(0, self.crossbars),
                        as_span(rows) if rows is not None else None, self.source_note)
        self._items().append(call)
        return call

    def init(self, cols: int | Sequence[int], value: int, *, xbs: Where = None,
             rows: Where = None, pred: bool = False, rep: Rep = NO_REP) -> Op:
        cols_t = (cols,) if isinstance(cols, int) else tuple(cols)
        return self._emit(Init(cols=cols_t, value=value, rep=rep, **self._common(xbs, rows, pred)))

    def nor(self, out: int, *ins: int, acc: bool = False, xbs: Where = None, rows: Where = None,
            pred: bool = False, rep: Rep = NO_REP) -> Op:
        return self._emit(Nor(out=out, ins=ins, acc=acc, rep=rep, **self._common(xbs, rows, pred)))

    def search(self, cols: Sequence[int], key: int = 0, kind: SearchKind = SearchKind.EXACT, *,
               xbs: Where = None, rows: Where = None, pred: bool = False) -> Op:
        return self._emit(Search(cols=tuple(cols), kind=kind, key=key,
                                 **self._common(xbs, rows, pred)))

    def shift(self, src_cols: Sequence[int], dst_cols: Sequence[int], by: int, *,
              xbs: Where = None, rows: Where = None, pred: bool = False) -> Op:
        return self._emit(Shift(src_cols=tuple(src_cols), dst_cols=tuple(dst_cols), by=by,
                                **self._common(xbs, rows, pred)))

    def transfer(self, src_xbs: Span | int, dst_xbs: Span | int, src_cols: Sequence[int],
                 dst_cols: Sequence[int] | int, *, dst_row: int | None = None,
                 rows: Where = None, pred: bool = False) -> Op:
        dst = (dst_cols,) if isinstance(dst_cols, int) else tuple(dst_cols)
        return self._emit(Transfer(dst_xbs=as_span(dst_xbs), src_cols=tuple(src_cols),
                                   dst_cols=dst, dst_row=dst_row,
                                   **self._common(src_xbs, rows, pred)))

    def _io(self, name: str, dtype: str, shape: Sequence[int], col: int, xbs: Where,
            rows: Where, lanes: int, stride: int, fold: int = 0,
            broadcast: bool = False) -> TensorIO:
        return TensorIO(name, dtype, tuple(shape),
                        as_span(xbs) if xbs is not None else Span(0, self.crossbars),
                        as_span(rows) if rows is not None else Span(0, self.arch.rows),
                        col, lanes, stride, fold, broadcast)

    def input(self, name: str, dtype: str, shape: Sequence[int], col: int, *, xbs: Where = None,
              rows: Where = None, lanes: int = 1, stride: int = 1,
              broadcast: bool = False) -> TensorIO:
        """`broadcast`: a scalar the host writes into every row of the placement."""
        self.inputs.append(self._io(name, dtype, shape, col, xbs, rows, lanes, stride,
                                    broadcast=broadcast))
        return self.inputs[-1]

    def output(self, name: str, dtype: str, shape: Sequence[int], col: int, *, xbs: Where = None,
               rows: Where = None, lanes: int = 1, stride: int = 1, fold: int = 0) -> TensorIO:
        self.outputs.append(self._io(name, dtype, shape, col, xbs, rows, lanes, stride, fold))
        return self.outputs[-1]

    def build(self) -> Program:
        """The program, checked statically, with ops numbered as print_program would."""
        prog = Program(arch=self.arch, crossbars=self.crossbars, ops=tuple(self.ops),
                       inputs=tuple(self.inputs), outputs=tuple(self.outputs),
                       source=self.source, meta=self.meta, routines=tuple(self.routines),
                       version=2 if self.routines else 1)
        prog = Program(**{**prog.__dict__, "lines": op_lines(prog)})
        validate(prog, self.source or "<builder>")  # errors name the file compiled
        return prog
