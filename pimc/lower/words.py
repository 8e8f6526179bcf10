"""A word-level program: values are whole words (a value's bits in adjacent columns of
every row), steps are routine calls, multiply-accumulate loops and moves. Columns are
allocated per word by a linear scan over the steps, then every step is emitted as CALLs,
LOOPs, INITs, SEARCHes, SHIFTs and TRANSFERs: the compiler's work grows with the number
of steps (distinct operations and lanes), never with rows, crossbars or MAC counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.uop import Routine, Span
from pimc.lower.moves import shift_hops
from pimc.lower.trees import tree_levels

Value = int
REUSE = 16  # steps over which a constant's word is shared (then written again)
Rows = tuple[int, ...]  # (start, stop) or (start, stop, step)


@dataclass(frozen=True)
class Step:
    kind: str  # call | mac | fill | rows | xbs | copy
    out: Value
    ins: tuple[Value, ...] = ()
    into: Value | None = None  # out takes over this value's cells (written in place)
    routines: tuple[Routine, ...] = ()  # call: (routine,); mac: (multiply, accumulate)
    count: int = 0  # mac: products; the lanes are `stride` columns apart
    stride: int = 0
    raw: int = 0  # fill: the bits written
    by: int = 0  # rows: rows r take row r + by; xbs: crossbars c take crossbar c + by
    rows: Rows | None = None
    xbs: tuple[int, int] | None = None
    when: tuple[Value, int, int] | None = None  # only rows whose bits from the third on
    # of the value read the key (a SEARCH)
    src: str = ""


@dataclass
class WordNet:
    steps: list[Step] = field(default_factory=list)
    width: dict[Value, int] = field(default_factory=dict)
    inputs: dict[Value, int] = field(default_factory=dict)  # value -> first column
    annotation: str = ""
    rows: Rows | None = None  # steps built now act only in these rows ...
    xbs: tuple[int, int] | None = None  # ... and crossbars
    _consts: dict[tuple[int, int], tuple[Value, int]] = field(default_factory=dict)  # (v, step)

    def new(self, bits: int) -> Value:
        v = len(self.width)
        self.width[v] = bits
        return v

    @contextmanager
    def limited(self, rows: Rows | None = None, xbs: tuple[int, int] | None = None
                ) -> Iterator[None]:
        saved = self.rows, self.xbs
        self.rows = rows if rows is not None else self.rows
        self.xbs = xbs if xbs is not None else self.xbs
        try:
            yield
        finally:
            self.rows, self.xbs = saved

    def _add(self, step: Step) -> Value:
        if step.rows is None and self.rows is not None:
            step = _with(step, rows=self.rows)
        if step.xbs is None and self.xbs is not None:
            step = _with(step, xbs=self.xbs)
        self.steps.append(_with(step, src=self.annotation))
        return step.out

    def input(self, col: int, bits: int) -> Value:
        v = self.new(bits)
        self.inputs[v] = col
        return v

    def call(self, routine: Routine, ins: list[Value], bits: int) -> Value:
        return self._add(Step("call", self.new(bits), tuple(ins), routines=(routine,)))

    def accumulate(self, routine: Routine, acc: Value, ins: list[Value]) -> Value:
        """acc <- routine(acc, ins) in acc's cells (an accumulating routine)."""
        return self._add(Step("call", self.new(self.width[acc]), (acc, *ins), into=acc,
                              routines=(routine,)))

    def mac(self, multiply: Routine, accumulate: Routine, a: Value, b: Value, count: int,
            stride: int, bits: int) -> Value:
        """sum over k < count of a_k * b_k, k-th lanes `k * stride` columns after the
        inputs a and b; the first product starts the sum (the reference's order)."""
        return self._add(Step("mac", self.new(bits), (a, b), routines=(multiply, accumulate),
                              count=count, stride=stride))

    def constant(self, raw: int, bits: int) -> Value:
        """A word holding `raw` in every row: one INIT, shared by the uses that follow
        within REUSE steps, written again after that (an INIT is one cycle; a word
        held across a long computation is columns the values in between lack)."""
        key = (raw, bits)
        if key not in self._consts or len(self.steps) - self._consts[key][1] > REUSE:
            saved, self.rows, self.xbs = (self.rows, self.xbs), None, None
            self._consts[key] = (self.fill(raw, bits, None), len(self.steps))
            self.rows, self.xbs = saved
        return self._consts[key][0]

    def fill(self, raw: int, bits: int, rows: Rows | None, xbs: tuple[int, int] | None = None,
             over: Value | None = None) -> Value:
        """`raw` in `rows` of `xbs` (an INIT); elsewhere `over`'s value (its cells)."""
        return self._add(Step("fill", self.new(bits), (), into=over, raw=raw, rows=rows,
                              xbs=xbs))

    def rows_from(self, x: Value, by: int, rows: Rows, into: Value | None = None,
                  when: tuple[Value, int, int] | None = None) -> Value:
        """Rows r of `rows` take x's row r + by (a SHIFT); other rows keep `into`."""
        ins = (x,) if when is None else (x, when[0])
        return self._add(Step("rows", self.new(self.width[x]), ins, into=into, by=by,
                              rows=rows, when=when))

    def crossbars_from(self, x: Value, by: int, xbs: tuple[int, int], rows: Rows,
                       into: Value | None = None) -> Value:
        """Crossbars c of `xbs` take crossbar c + by's x in `rows` (a TRANSFER)."""
        return self._add(Step("xbs", self.new(self.width[x]), (x,), into=into, by=by,
                              rows=rows, xbs=xbs))

    def copy(self, x: Value) -> Value:
        """A fresh value equal to x (a SHIFT by 0 of every row)."""
        return self._add(Step("copy", self.new(self.width[x]), (x,)))


def word_tree(net: WordNet, acc: Routine, x: Value, identity: int, blocks: int, size: int,
              across: tuple[int, int] | None = None, packed: int = 0) -> Value:
    """Reduce `blocks` blocks of `size` rows into block 0 by the pairwise tree: at each
    level (n, m) block b < n - m takes block b + m (SHIFTs of the word), blocks
    n - m <= b < m take the identity, and the first m blocks accumulate. With `across`,
    blocks of `size` crossbars moved by TRANSFERs of the rows `across`. With `packed`,
    that many blocks of `size` rows in each crossbar (blocks and `packed` powers of two):
    a level moves whole crossbars by TRANSFERs while m >= packed, then SHIFTs inside the
    first crossbar."""
    bits = net.width[x]
    for n, m in tree_levels(blocks):
        lo, hi = (n - m) * size, m * size
        if packed and m >= packed:
            hi = m // packed
            partner = net.crossbars_from(x, hi, (0, hi), (0, packed * size))
            limits: dict[str, tuple[int, int]] = {"rows": (0, packed * size), "xbs": (0, hi)}
        elif packed:
            with net.limited(xbs=(0, 1)):
                partner = net.rows_from(x, hi, (0, hi))
            limits = {"rows": (0, hi), "xbs": (0, 1)}
        elif across is None:
            pad = net.fill(identity, bits, (lo, hi)) if n - m < m else None
            partner = net.rows_from(x, hi, (0, lo), into=pad)
            limits = {"rows": (0, hi)}
        else:
            pad = net.fill(identity, bits, across, (lo, hi)) if n - m < m else None
            partner = net.crossbars_from(x, hi, (0, lo), across, into=pad)
            limits = {"rows": across, "xbs": (0, hi)}
        with net.limited(**limits):
            x = net.accumulate(acc, x, [partner])
    return x


def _with(step: Step, **changes: object) -> Step:
    return Step(**{**step.__dict__, **changes})


@dataclass(frozen=True)
class Placed:
    cell: dict[Value, int]  # value -> first column
    steps: tuple[Step, ...]
    peak: int  # the highest column used + 1
    peak_at: str  # where it is first reached


def allocate_words(net: WordNet, outputs: list[tuple[Value, int]], first: int, last: int,
                   what: str) -> Placed:
    """Columns [first, last) for every value; outputs at their given columns. A value's
    cells are free after the last step that reads it."""
    steps = list(net.steps)
    pinned: dict[Value, int] = {}
    for v, col in outputs:
        if v in net.inputs or v in pinned:
            c = Step("copy", net.new(net.width[v]), (v,))
            steps.append(c)
            v = c.out
        pinned[v] = col
    finals = list(pinned)
    chain = {s.out: s.into for s in steps if s.into is not None}
    for v, col in list(pinned.items()):
        while v in chain:
            v = chain[v]
            pinned[v] = col
    last_use: dict[Value, int] = {}
    for i, s in enumerate(steps):
        for x in (*s.ins, *((s.into,) if s.into is not None else ())):
            last_use[x] = i
    for v in finals:  # read by the host at the end
        last_use[v] = len(steps)
    cell: dict[Value, int] = dict(net.inputs)
    free = [(first, last)]  # sorted disjoint intervals
    peak, peak_at = first, ""
    for i, s in enumerate(steps):
        if s.into is not None:
            if last_use.get(s.into) != i or s.into in net.inputs:
                raise PimError(f"{what}: a step overwrites a value still needed "
                               f"({s.src or s.kind})")
            cell[s.out] = cell[s.into]
        elif s.out in pinned:
            cell[s.out] = pinned[s.out]
        else:
            col = _take(free, net.width[s.out])
            if col is None:
                need = sum(net.width[v] for v in cell if v not in net.inputs)
                raise PimError(f"{what} needs more than its {last - first} columns for "
                               f"values (about {need} live at {s.src or s.kind})")
            cell[s.out] = col
            if col + net.width[s.out] > peak:
                peak, peak_at = col + net.width[s.out], s.src
        for x in set(s.ins):
            if last_use[x] == i and x not in net.inputs and x not in pinned and x != s.into:
                _give(free, cell[x], net.width[x])
    return Placed(cell, tuple(steps), peak, peak_at)


def _take(free: list[tuple[int, int]], width: int) -> int | None:
    """First fit from the bottom for words, from the top for flags (narrower than a
    byte), so that freed flags do not split the holes words need."""
    order = range(len(free)) if width >= 8 else range(len(free) - 1, -1, -1)
    for i in order:
        a, b = free[i]
        if b - a >= width:
            if width >= 8:
                free[i] = (a + width, b)
            else:
                free[i], a = (a, b - width), b - width
            if free[i][0] == free[i][1]:
                del free[i]
            return a
    return None


def _give(free: list[tuple[int, int]], col: int, width: int) -> None:
    free.append((col, col + width))
    free.sort()
    merged: list[tuple[int, int]] = []
    for a, b in free:
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    free[:] = merged


def _span(rows: Rows | None, default: Span | None) -> Span | None:
    return default if rows is None else Span(*rows)


def routines_used(steps: tuple[Step, ...], registry: dict[str, Routine]) -> list[Routine]:
    """Every routine the steps call, and those they call in turn."""
    return routines_called([r for s in steps for r in s.routines], registry)


def routines_called(todo: list[Routine], registry: dict[str, Routine]) -> list[Routine]:
    """These routines and every routine they call, in turn."""
    out: dict[str, Routine] = {}
    while todo:
        r = todo.pop()
        if r.name not in out:
            out[r.name] = r
            todo += [registry[i.routine] for i in r.body if hasattr(i, "routine")]
    return sorted(out.values(), key=lambda r: r.name)


def emit_words(placed: Placed, net: WordNet, b: ProgramBuilder, scratch: int, product: int,
               rows: Span | None) -> None:
    """Append the steps' micro-ops: `scratch` is the first column of the routines' shared
    scratch, `product` a word of scratch for a MAC's product; `rows` the default rows."""
    cell = placed.cell
    for s in placed.steps:
        b.source_note = s.src
        where = dict(xbs=Span(*s.xbs) if s.xbs else None, rows=_span(s.rows, rows))
        cols = list(range(cell[s.out], cell[s.out] + net.width[s.out]))
        if s.kind == "call":
            (r,) = s.routines
            args = {seg.name: cell[v] for seg, v in zip(r.segments, s.ins, strict=False)}
            if s.into is None:
                args["out"] = cell[s.out]
            b.call(r.name, **args, t=scratch, **where)
        elif s.kind == "mac":
            mul, acc = s.routines
            a, x = cell[s.ins[0]], cell[s.ins[1]]
            b.call(mul.name, a=a, b=x, out=cell[s.out], t=scratch, **where)
            if s.count > 1:
                with b.loop(s.count - 1):
                    b.call(mul.name, a=(a + s.stride, s.stride), b=(x + s.stride, s.stride),
                           out=product, t=scratch, **where)
                    b.call(acc.name, a=cell[s.out], b=product, t=scratch, **where)
        elif s.kind == "fill":
            b.init(cols, s.raw, **where)
        elif s.kind in ("rows", "copy"):
            src = list(range(cell[s.ins[0]], cell[s.ins[0]] + net.width[s.out]))
            pred = False
            if s.when is not None:
                v, key, lo = s.when
                b.search(range(cell[v] + lo, cell[v] + net.width[v]), key, xbs=where["xbs"],
                         rows=rows)
                pred = True
            temp = list(range(scratch, scratch + len(cols)))  # free between the calls
            if abs(s.by) > b.arch.max_shift and temp[-1] >= b.arch.cols:
                raise PimError(f"{s.src}: no free columns for a shift of {s.by} rows in hops")
            shift_hops(b, src, cols, -s.by, temp, pred=pred, **where)
        else:
            assert s.xbs is not None
            src = list(range(cell[s.ins[0]], cell[s.ins[0]] + net.width[s.out]))
            b.transfer(Span(s.xbs[0] + s.by, s.xbs[1] + s.by), Span(*s.xbs), src, cols,
                       rows=where["rows"])
    b.source_note = ""
