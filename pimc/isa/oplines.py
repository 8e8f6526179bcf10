"""One line of `.uop` text as tokens, and the micro-op or CALL it spells (the line-level
half of the parser in pimc.isa.parse)."""

from __future__ import annotations

import re

from pimc.isa.errors import PimError
from pimc.isa.uop import (
    HERE,
    NO_REP,
    Arg,
    Call,
    Init,
    Nor,
    Op,
    Opcode,
    Rep,
    Search,
    SearchKind,
    Shift,
    Span,
    Transfer,
)

NUM = r"[0-9]{1,9}"  # ASCII digits only, and few enough for any real machine
SPAN = re.compile(rf"({NUM})(?::({NUM})(?::({NUM}))?)?$")
MAX_RUN = 1 << 20  # columns one range may name (a crossbar has far fewer)


class Tokens:
    """A cursor over one op line's tokens; every failure names the line."""

    def __init__(self, where: str, tokens: list[str],
                 frame: dict[str, tuple[int, int]] | None = None) -> None:
        self.where, self.toks, self.i = where, tokens, 0
        self.frame = frame  # inside a routine: segment -> (first frame column, width)

    def fail(self, msg: str) -> PimError:
        return PimError(f"{self.where}: {msg}")

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self, what: str) -> str:
        tok = self.peek()
        if tok is None:
            raise self.fail(f"expected {what} at end of line")
        self.i += 1
        return tok

    def expect(self, literal: str) -> None:
        tok = self.next(f"'{literal}'")
        if tok != literal:
            raise self.fail(f"expected '{literal}', found '{tok}'")

    def take_if(self, pred) -> str | None:
        tok = self.peek()
        if tok is not None and pred(tok):
            self.i += 1
            return tok
        return None

    def span(self, prefix: str, what: str) -> Span:
        tok = self.next(what)
        m = SPAN.match(tok[1:]) if tok.startswith(prefix) else None
        if not m:
            raise self.fail(f"expected {what} like {prefix}0 or {prefix}0:8, found '{tok}'")
        start = int(m.group(1))
        stop = int(m.group(2)) if m.group(2) else start + 1
        try:
            return Span(start, stop, int(m.group(3) or 1))
        except PimError as exc:
            raise self.fail(str(exc)) from None

    def column_run(self, part: str) -> range | None:
        """c3 / c0:8, or inside a routine t.3 / a.0:8, as frame or crossbar columns."""
        if self.frame is None:
            m = SPAN.match(part[1:]) if part.startswith("c") else None
            first = 0
        else:
            seg, dot, rest = part.partition(".")
            m = SPAN.match(rest) if dot and seg in self.frame else None
        if not m or m.group(3):
            return None
        start = int(m.group(1))
        stop = int(m.group(2)) if m.group(2) else start + 1
        if stop <= start:
            raise self.fail(f"empty column range '{part}'")
        if stop - start > MAX_RUN:
            raise self.fail(f"column range '{part}' is longer than any crossbar")
        if self.frame is not None:
            first, width = self.frame[seg]
            if stop > width:
                raise self.fail(f"'{part}' is past the end of segment '{seg}' ({width} columns)")
        return range(first + start, first + stop)

    def example(self) -> str:
        return "c5" if self.frame is None else f"{next(iter(self.frame), 't')}.5"

    def col(self) -> int:
        tok = self.peek()
        if tok is None:
            raise self.fail(f"expected a column like {self.example()} at end of line")
        self.i += 1
        run = self.column_run(tok) if ":" not in tok else None
        if run is None:
            raise self.fail(f"expected a column like {self.example()}, found '{tok}'")
        return run.start

    def cols(self) -> tuple[int, ...]:
        tok = self.next("columns like c0:8")
        out: list[int] = []
        for part in tok.split(","):
            run = self.column_run(part)
            if run is None:
                raise self.fail(f"expected columns like c3, c0:8 or c1,c4:6 (t.0:8 in a "
                                f"routine), found '{tok}'")
            out.extend(run)
        return tuple(out)

    def is_col(self) -> bool:
        tok = self.peek()
        return tok is not None and ":" not in tok and self.column_run(tok) is not None

    def integer(self, what: str) -> int:
        tok = self.next(what)
        if not tok.isascii() or len(tok) > 1 << 16:
            raise self.fail(f"expected {what}, found '{tok[:40]}'")
        try:
            return int(tok, 0)
        except ValueError:
            raise self.fail(f"expected {what}, found '{tok[:40]}'") from None

    def rep(self) -> Rep:
        tok = self.take_if(lambda t: t.startswith("rep="))
        if tok is None:
            return NO_REP
        m = re.fullmatch(rf"rep=({NUM})/({NUM})", tok)
        if not m:
            raise self.fail(f"expected rep=COUNT/STEP, found '{tok}'")
        return Rep(int(m.group(1)), int(m.group(2)))

    def done(self) -> None:
        if self.peek() is not None:
            raise self.fail(f"unexpected '{self.peek()}'")


_ARG = re.compile(rf"(?P<seg>[A-Za-z_]\w*)=(?P<col>[^+-]+)(?P<stride>[+-]{NUM})?$", re.ASCII)


def parse_call(t: Tokens, src: str, line: int) -> Call:
    name = t.next("a routine name")
    xbs = rows = None
    if t.frame is None:
        xbs = t.span("x", "crossbars")
        rows = t.span("r", "rows") if (t.peek() or "").startswith("r") else None
    args: list[Arg] = []
    while t.peek() is not None:
        tok = t.next("an argument")
        m = _ARG.match(tok)
        run = t.column_run(m.group("col")) if m and ":" not in m.group("col") else None
        if m is None or run is None:
            raise t.fail(f"expected an argument like seg={t.example()} or "
                         f"seg={t.example()}+32, found '{tok}'")
        if any(a.segment == m.group("seg") for a in args):
            raise t.fail(f"segment '{m.group('seg')}' is bound twice")
        args.append(Arg(m.group("seg"), run.start, int(m.group("stride") or 0)))
    return Call(routine=name, args=tuple(args), xbs=xbs, rows=rows, src=src, line=line)


def parse_op(t: Tokens, src: str, line: int = 0) -> Op:
    name = t.next("an opcode")
    try:
        opcode = Opcode(name)
    except ValueError:
        known = ", ".join([o.value for o in Opcode] + ["CALL", "LOOP"])
        raise t.fail(f"unknown opcode '{name}' (expected one of {known})") from None
    if t.frame is None:
        xbs = t.span("x", "crossbars")
        dst_xbs = None
        if opcode is Opcode.TRANSFER:
            t.expect("->")
            dst_xbs = t.span("x", "destination crossbars")
        rows = t.span("r", "rows") if (t.peek() or "").startswith("r") else None
    elif opcode is Opcode.TRANSFER:
        raise t.fail("a TRANSFER names its crossbars: it cannot be part of a routine")
    else:
        xbs, rows = HERE, None
    pred = t.take_if(lambda s: s == "?tag") is not None
    common = dict(xbs=xbs, rows=rows, pred=pred, src=src, line=line)
    op: Op
    if opcode is Opcode.INIT:
        cols = t.cols()
        t.expect("=")
        op = Init(cols=cols, value=t.integer("a value"), rep=parse_rep(t), **common)
    elif opcode is Opcode.NOR:
        out = t.col()
        eq = t.next("'=' or '&='")
        if eq not in ("=", "&="):
            raise t.fail(f"expected '=' or '&=' after the output column, found '{eq}'")
        ins = [t.col()]
        while t.is_col():
            ins.append(t.col())
        op = Nor(out=out, ins=tuple(ins), acc=eq == "&=", rep=parse_rep(t), **common)
    elif opcode is Opcode.SEARCH:
        cols = t.cols()
        kind_tok = t.next("'==', 'max' or 'min'")
        try:
            kind = SearchKind(kind_tok)
        except ValueError:
            raise t.fail(f"expected '==', 'max' or 'min', found '{kind_tok}'") from None
        key = t.integer("a search key") if kind is SearchKind.EXACT else 0
        op = Search(cols=cols, kind=kind, key=key, **common)
    elif opcode is Opcode.SHIFT:
        src_cols = t.cols()
        t.expect("->")
        dst_cols = t.cols()
        t.expect("by")
        op = Shift(src_cols=src_cols, dst_cols=dst_cols, by=t.integer("a row offset"), **common)
    else:
        src_cols = t.cols()
        t.expect("->")
        dst_row = None
        if t.take_if(lambda s: s == "T"):
            dst_row = t.span("r", "destination row").start
            dst_cols: tuple[int, ...] = (t.col(),)
        else:
            dst_cols = t.cols()
        assert dst_xbs is not None
        op = Transfer(dst_xbs=dst_xbs, src_cols=src_cols, dst_cols=dst_cols, dst_row=dst_row,
                      **common)
    t.done()
    return op


def parse_rep(t: Tokens) -> Rep:
    rep = t.rep()
    if rep != NO_REP and t.frame is not None:
        raise t.fail("partition repetition (rep=) is not available inside a routine")
    return rep
