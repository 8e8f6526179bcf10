"""The .uop text format's parser (pimc.isa.text is its printer; they round-trip).

Every error is a PimError reading `NAME:LINE: what is wrong`. Routines (`.routine` ...
`.end`) sit in the header; a routine's columns are named by segment (`t.5`); `LOOP N` ...
`END` repeats CALLs whose bases carry a stride (`a=c10+64`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from pimc.isa.arch import Arch
from pimc.isa.errors import PimError
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
    Opcode,
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
    ViewOp,
)

FORMAT_VERSIONS = (1, 2)  # 2: routines and loops



_LINE = re.compile(r'^(?P<body>[^"#]*?)\s*(?:@(?P<src>"(?:[^"\\]|\\.)*"))?\s*(?:#.*)?$')
_SPAN = re.compile(r"(\d+)(?::(\d+)(?::(\d+))?)?$")
_IO = re.compile(
    r"(?P<name>\S+) (?P<dtype>\S+) \[(?P<shape>[\d, ]*)\] (?P<xbs>x\S+) (?P<rows>r\S+) "
    r"c(?P<col>\d+)(?: lanes=(?P<lanes>\d+))?(?: stride=(?P<stride>\d+))?"
    r"(?: fold=(?P<fold>\d+))?(?P<broadcast> broadcast)?(?: view=(?P<view>\S+))?$"
)


_VIEW_STEP = re.compile(r"(\w+)\(([\d,]*)\)$")


def _view(text: str | None, where: str) -> tuple[ViewOp, ...]:
    """`reshape(3,1,4).broadcast(3,5,4)` -> view steps."""
    if not text:
        return ()
    steps = []
    for part in text.split(")."):
        m = _VIEW_STEP.match(part if part.endswith(")") else part + ")")
        if not m:
            raise PimError(f"{where}: malformed view step '{part}' (expected e.g. reshape(3,4))")
        steps.append(ViewOp(m.group(1), tuple(int(d) for d in m.group(2).split(",") if d)))
    return tuple(steps)


class _Tokens:
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

    def take_if(self, pred) -> str | None:  # type: ignore[no-untyped-def]
        tok = self.peek()
        if tok is not None and pred(tok):
            self.i += 1
            return tok
        return None

    def span(self, prefix: str, what: str) -> Span:
        tok = self.next(what)
        m = _SPAN.match(tok[1:]) if tok.startswith(prefix) else None
        if not m:
            raise self.fail(f"expected {what} like {prefix}0 or {prefix}0:8, found '{tok}'")
        start = int(m.group(1))
        stop = int(m.group(2)) if m.group(2) else start + 1
        try:
            return Span(start, stop, int(m.group(3) or 1))
        except PimError as exc:
            raise self.fail(str(exc)) from None

    def _column_run(self, part: str) -> range | None:
        """c3 / c0:8, or inside a routine t.3 / a.0:8, as frame or crossbar columns."""
        if self.frame is None:
            m = _SPAN.match(part[1:]) if part.startswith("c") else None
            first = 0
        else:
            seg, dot, rest = part.partition(".")
            m = _SPAN.match(rest) if dot and seg in self.frame else None
        if not m or m.group(3):
            return None
        start = int(m.group(1))
        stop = int(m.group(2)) if m.group(2) else start + 1
        if stop <= start:
            raise self.fail(f"empty column range '{part}'")
        if self.frame is not None:
            first, width = self.frame[seg]
            if stop > width:
                raise self.fail(f"'{part}' is past the end of segment '{seg}' ({width} columns)")
        return range(first + start, first + stop)

    def _example(self) -> str:
        return "c5" if self.frame is None else f"{next(iter(self.frame), 't')}.5"

    def col(self) -> int:
        tok = self.next(f"a column like {self._example()}")
        run = self._column_run(tok) if ":" not in tok else None
        if run is None:
            raise self.fail(f"expected a column like {self._example()}, found '{tok}'")
        return run.start

    def cols(self) -> tuple[int, ...]:
        tok = self.next("columns like c0:8")
        out: list[int] = []
        for part in tok.split(","):
            run = self._column_run(part)
            if run is None:
                raise self.fail(f"expected columns like c3, c0:8 or c1,c4:6 (t.0:8 in a "
                                f"routine), found '{tok}'")
            out.extend(run)
        return tuple(out)

    def is_col(self) -> bool:
        tok = self.peek()
        return tok is not None and ":" not in tok and self._column_run(tok) is not None

    def integer(self, what: str) -> int:
        tok = self.next(what)
        try:
            return int(tok, 0)
        except ValueError:
            raise self.fail(f"expected {what}, found '{tok}'") from None

    def rep(self) -> Rep:
        tok = self.take_if(lambda t: t.startswith("rep="))
        if tok is None:
            return NO_REP
        m = re.fullmatch(r"rep=(\d+)/(\d+)", tok)
        if not m:
            raise self.fail(f"expected rep=COUNT/STEP, found '{tok}'")
        return Rep(int(m.group(1)), int(m.group(2)))

    def done(self) -> None:
        if self.peek() is not None:
            raise self.fail(f"unexpected '{self.peek()}'")


_ARG = re.compile(r"(?P<seg>[A-Za-z_]\w*)=(?P<col>[^+-]+)(?P<stride>[+-]\d+)?$")


def _parse_call(t: _Tokens, src: str, line: int) -> Call:
    name = t.next("a routine name")
    xbs = rows = None
    if t.frame is None:
        xbs = t.span("x", "crossbars")
        rows = t.span("r", "rows") if (t.peek() or "").startswith("r") else None
    args: list[Arg] = []
    while t.peek() is not None:
        tok = t.next("an argument")
        m = _ARG.match(tok)
        run = t._column_run(m.group("col")) if m and ":" not in m.group("col") else None
        if m is None or run is None:
            raise t.fail(f"expected an argument like seg={t._example()} or "
                         f"seg={t._example()}+32, found '{tok}'")
        if any(a.segment == m.group("seg") for a in args):
            raise t.fail(f"segment '{m.group('seg')}' is bound twice")
        args.append(Arg(m.group("seg"), run.start, int(m.group("stride") or 0)))
    return Call(routine=name, args=tuple(args), xbs=xbs, rows=rows, src=src, line=line)


def _parse_op(t: _Tokens, src: str, line: int = 0) -> Op:
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
        op = Init(cols=cols, value=t.integer("a value"), rep=_rep(t), **common)
    elif opcode is Opcode.NOR:
        out = t.col()
        eq = t.next("'=' or '&='")
        if eq not in ("=", "&="):
            raise t.fail(f"expected '=' or '&=' after the output column, found '{eq}'")
        ins = [t.col()]
        while t.is_col():
            ins.append(t.col())
        op = Nor(out=out, ins=tuple(ins), acc=eq == "&=", rep=_rep(t), **common)
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


def _rep(t: _Tokens) -> Rep:
    rep = t.rep()
    if rep != NO_REP and t.frame is not None:
        raise t.fail("partition repetition (rep=) is not available inside a routine")
    return rep


def _parse_header(where: str, key: str, rest: str, src: str, fields: dict[str, object]) -> None:
    if key == "pimc":
        if rest.strip() not in map(str, FORMAT_VERSIONS):
            raise PimError(f"{where}: unsupported format version '{rest.strip()}' "
                           f"(this pimc reads versions 1 and 2)")
        fields["version"] = int(rest)
    elif key == "arch":
        pairs = {}
        for tok in rest.split():
            k, eq, v = tok.partition("=")
            if not eq:
                raise PimError(f"{where}: expected name=value in .arch, found '{tok}'")
            pairs[k] = v
        fields["arch"] = Arch.from_fields(pairs, where=where)
    elif key == "crossbars":
        if not rest.strip().isdigit():
            raise PimError(f"{where}: expected a crossbar count, found '{rest.strip()}'")
        fields["crossbars"] = int(rest)
    elif key == "source":
        if rest.strip() or not src:
            raise PimError(f'{where}: expected .source @"FILE"')
        fields["source"] = src
    elif key == "meta":
        if not rest.strip() or " " in rest.strip() or not src:
            raise PimError(f'{where}: expected .meta KEY @"VALUE"')
        fields.setdefault("meta", []).append((rest.strip(), src))  # type: ignore[union-attr]
    elif key in ("input", "output"):
        m = _IO.match(" ".join(rest.split()))
        if not m:
            raise PimError(f"{where}: expected '.{key} NAME DTYPE [SHAPE] xA:B rA:B cN "
                           f"[lanes=L] [stride=S]', found '.{key} {rest.strip()}'")
        t = _Tokens(where, [m.group("xbs"), m.group("rows")])
        shape = tuple(int(d) for d in m.group("shape").replace(" ", "").split(",") if d)
        io = TensorIO(m.group("name"), m.group("dtype"), shape, t.span("x", "crossbars"),
                      t.span("r", "rows"), int(m.group("col")), int(m.group("lanes") or 1),
                      int(m.group("stride") or 1), int(m.group("fold") or 0),
                      bool(m.group("broadcast")), _view(m.group("view"), where))
        fields.setdefault(key + "s", []).append(io)  # type: ignore[union-attr]
    else:
        raise PimError(f"{where}: unknown directive '.{key}'")


def _json_string(where: str, text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, str):
        raise PimError(f"{where}: expected a quoted string, found {text}")
    return value


def _split(text: str, name: str) -> Iterator[tuple[int, str, str]]:
    for n, raw in enumerate(text.splitlines(), 1):
        m = _LINE.match(raw)
        if not m:
            raise PimError(f"{name}:{n}: malformed line (a '\"' outside a source annotation?)")
        body, src = m.group("body").strip(), m.group("src")
        if body or src:
            yield n, body, _json_string(f"{name}:{n}", src) if src else ""


_SEGMENT = re.compile(r"([A-Za-z_]\w*):(\d+)$")


def _routine_header(where: str, rest: str, src: str, line: int) -> Routine:
    name, *segs = rest.split()
    if not name.isidentifier() or not segs:
        raise PimError(f"{where}: expected '.routine NAME SEG:WIDTH ...'")
    segments: list[Segment] = []
    for tok in segs:
        m = _SEGMENT.match(tok)
        if not m or int(m.group(2)) < 1 or len(m.group(2)) > 7:
            raise PimError(f"{where}: expected a segment like t:32, found '{tok}'")
        if any(s.name == m.group(1) for s in segments):
            raise PimError(f"{where}: segment '{m.group(1)}' is declared twice")
        segments.append(Segment(m.group(1), int(m.group(2))))
    return Routine(name, tuple(segments), (), src, line)


class _Blocks:
    """The open routine and loops while parsing: items go into the innermost."""

    def __init__(self) -> None:
        self.top: list[Item] = []
        self.routine: Routine | None = None
        self.routine_items: list[Item] = []
        self.loops: list[tuple[int, str, int, list[Item]]] = []  # count, src, line, body

    def add(self, item: Item) -> None:
        if self.loops:
            self.loops[-1][3].append(item)
        elif self.routine is not None:
            self.routine_items.append(item)
        else:
            self.top.append(item)

    @property
    def frame(self) -> dict[str, tuple[int, int]] | None:
        return self.routine.starts() if self.routine is not None else None


def parse_program(text: str, name: str = "<uop>") -> Program:
    """Parse .uop text; every error is a PimError reading `name:LINE: what is wrong`."""
    fields: dict[str, object] = {}
    blocks = _Blocks()
    routines: list[Routine] = []
    lines: list[int] = []
    for n, body, src in _split(text, name):
        where = f"{name}:{n}"
        if body.startswith("."):
            key, _, rest = body[1:].partition(" ")
            if key == "end":
                if blocks.routine is None or blocks.loops:
                    raise PimError(f"{where}: '.end' without an open routine (or with an "
                                   "open LOOP)")
                routines.append(Routine(blocks.routine.name, blocks.routine.segments,
                                        tuple(blocks.routine_items), blocks.routine.src,
                                        blocks.routine.line))
                blocks.routine, blocks.routine_items = None, []
                continue
            if blocks.top or blocks.routine is not None or blocks.loops:
                raise PimError(f"{where}: directive after the first micro-op (or inside a "
                               "routine)")
            if key == "routine":
                if "version" not in fields:
                    raise PimError(f"{where}: a program starts with '.pimc 2'")
                blocks.routine = _routine_header(where, rest, src, n)
                if any(r.name == blocks.routine.name for r in routines):
                    raise PimError(f"{where}: routine '{blocks.routine.name}' is defined twice")
                continue
            _parse_header(where, key, rest, src, fields)
            continue
        if "version" not in fields:
            raise PimError(f"{where}: a program starts with '.pimc 1'")
        t = _Tokens(where, body.split(), blocks.frame)
        word = t.peek()
        if word == "LOOP":
            t.next("LOOP")
            count = t.integer("an iteration count")
            t.done()
            if not 1 <= count <= 1 << 40:
                raise t.fail(f"a LOOP runs 1 to 2**40 times, not {count}")
            blocks.loops.append((count, src, n, []))
            continue
        if word == "END":
            t.next("END")
            t.done()
            if not blocks.loops:
                raise t.fail("END without a LOOP")
            count, lsrc, line, items = blocks.loops.pop()
            if not items:
                raise PimError(f"{name}:{line}: an empty LOOP")
            item: Item = Loop(count, tuple(items), lsrc, line)
        elif word == "CALL":
            t.next("CALL")
            item = _parse_call(t, src, n)
        else:
            item = _parse_op(t, src, n)
            if blocks.loops:
                raise t.fail("a LOOP holds CALLs only (its strides move their columns)")
        if not blocks.loops and blocks.routine is None:
            lines.append(n)
        blocks.add(item)
    if blocks.loops:
        raise PimError(f"{name}:{blocks.loops[-1][2]}: LOOP without END")
    if blocks.routine is not None:
        raise PimError(f"{name}:{blocks.routine.line}: routine '{blocks.routine.name}' "
                       "without '.end'")
    if "version" not in fields:
        raise PimError(f"{name}:1: a program starts with '.pimc 1'")
    if "crossbars" not in fields:
        raise PimError(f"{name}: missing '.crossbars N' in the header")
    return Program(
        arch=fields.get("arch", Arch()),  # type: ignore[arg-type]
        crossbars=fields["crossbars"],  # type: ignore[arg-type]
        ops=tuple(blocks.top),
        inputs=tuple(fields.get("inputs", ())),  # type: ignore[arg-type]
        outputs=tuple(fields.get("outputs", ())),  # type: ignore[arg-type]
        source=fields.get("source", ""),  # type: ignore[arg-type]
        meta=tuple(fields.get("meta", ())),  # type: ignore[arg-type]
        lines=tuple(lines),
        version=fields["version"],  # type: ignore[arg-type]
        routines=tuple(routines),
    )


def load_program(path: str | Path) -> Program:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PimError(f"{path}: cannot read program: {exc}") from None
    return parse_program(text, str(path))
