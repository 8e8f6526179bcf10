"""The .uop text format: one printer and one parser, which round-trip exactly.

A program is a header of `.directive` lines followed by one micro-op per line; `#` starts
a comment and `@"..."` attaches a source annotation. The grammar is in docs/isa.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from pimc.isa.arch import Arch
from pimc.isa.errors import PimError
from pimc.isa.uop import (
    NO_REP,
    Init,
    Nor,
    Op,
    Opcode,
    Program,
    Rep,
    Search,
    SearchKind,
    Shift,
    Span,
    TensorIO,
    Transfer,
    ViewOp,
)

FORMAT_VERSION = 1

# --------------------------------------------------------------------------- printing


def format_span(prefix: str, span: Span) -> str:
    if len(span) == 1:
        return f"{prefix}{span.start}"
    tail = f":{span.step}" if span.step != 1 else ""
    return f"{prefix}{span.start}:{span.stop}{tail}"


def format_cols(cols: tuple[int, ...]) -> str:
    """Columns as comma-separated ascending runs: c3, c0:8, c1,c4:6."""
    parts: list[str] = []
    i = 0
    while i < len(cols):
        j = i
        while j + 1 < len(cols) and cols[j + 1] == cols[j] + 1:
            j += 1
        parts.append(f"c{cols[i]}" if i == j else f"c{cols[i]}:{cols[j] + 1}")
        i = j + 1
    return ",".join(parts)


def _where(op: Op) -> str:
    parts = [format_span("x", op.xbs)]
    if isinstance(op, Transfer):
        parts += ["->", format_span("x", op.dst_xbs)]
    if op.rows is not None:
        parts.append(format_span("r", op.rows))
    if op.pred:
        parts.append("?tag")
    return " ".join(parts)


def _body(op: Op) -> str:
    if isinstance(op, Init):
        value = str(op.value) if len(op.cols) == 1 else hex(op.value)
        text = f"{format_cols(op.cols)} = {value}"
    elif isinstance(op, Nor):
        ins = " ".join(f"c{c}" for c in op.ins)
        text = f"c{op.out} {'&=' if op.acc else '='} {ins}"
    elif isinstance(op, Search):
        key = f"== {hex(op.key)}" if op.kind is SearchKind.EXACT else op.kind.value
        text = f"{format_cols(op.cols)} {key}"
    elif isinstance(op, Shift):
        text = f"{format_cols(op.src_cols)} -> {format_cols(op.dst_cols)} by {op.by:+d}"
    elif isinstance(op, Transfer):
        dst = format_cols(op.dst_cols) if op.dst_row is None else f"T r{op.dst_row} c{op.dst_cols[0]}"
        text = f"{format_cols(op.src_cols)} -> {dst}"
    else:
        raise TypeError(f"not a micro-op: {op!r}")
    rep = getattr(op, "rep", NO_REP)
    if rep != NO_REP:
        text += f" rep={rep.count}/{rep.step}"
    return text


def format_op(op: Op) -> str:
    line = f"{op.opcode.value:<8} {_where(op)} {_body(op)}"
    if op.src:
        line += f" @{json.dumps(op.src)}"
    return line


def format_io(kind: str, t: TensorIO) -> str:
    shape = ",".join(str(d) for d in t.shape)
    lanes = f" lanes={t.lanes}" if t.lanes != 1 else ""
    stride = f" stride={t.stride}" if t.stride != 1 else ""
    stride += f" fold={t.fold}" if t.fold else ""
    stride += " broadcast" if t.broadcast else ""
    stride += f" view={'.'.join(map(str, t.view))}" if t.view else ""
    where = f"{format_span('x', t.xbs)} {format_span('r', t.rows)} c{t.col}"
    return f".{kind} {t.name} {t.dtype} [{shape}] {where}{lanes}{stride}"


def header_lines(prog: Program) -> list[str]:
    arch = " ".join(f"{k}={v}" for k, v in prog.arch.fields().items())
    lines = [f".pimc {prog.version}", f".arch {arch}", f".crossbars {prog.crossbars}"]
    if prog.source:
        lines.append(f".source @{json.dumps(prog.source)}")
    lines += [f".meta {key} @{json.dumps(value)}" for key, value in prog.meta]
    lines += [format_io("input", t) for t in prog.inputs]
    lines += [format_io("output", t) for t in prog.outputs]
    return lines


def print_program(prog: Program) -> str:
    return "\n".join(header_lines(prog) + [format_op(op) for op in prog.ops]) + "\n"


def op_lines(prog: Program) -> tuple[int, ...]:
    """The line each op has in print_program's output (for programs built in Python)."""
    first = len(header_lines(prog)) + 1
    return tuple(range(first, first + len(prog.ops)))


# --------------------------------------------------------------------------- parsing

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

    def __init__(self, where: str, tokens: list[str]) -> None:
        self.where, self.toks, self.i = where, tokens, 0

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

    def col(self) -> int:
        tok = self.next("a column like c5")
        if not (tok.startswith("c") and tok[1:].isdigit()):
            raise self.fail(f"expected a column like c5, found '{tok}'")
        return int(tok[1:])

    def cols(self) -> tuple[int, ...]:
        tok = self.next("columns like c0:8")
        out: list[int] = []
        for part in tok.split(","):
            m = _SPAN.match(part[1:]) if part.startswith("c") else None
            if not m or m.group(3):
                raise self.fail(f"expected columns like c3, c0:8 or c1,c4:6, found '{tok}'")
            start = int(m.group(1))
            stop = int(m.group(2)) if m.group(2) else start + 1
            if stop <= start:
                raise self.fail(f"empty column range '{part}'")
            out.extend(range(start, stop))
        return tuple(out)

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


def _parse_op(t: _Tokens, src: str) -> Op:
    name = t.next("an opcode")
    try:
        opcode = Opcode(name)
    except ValueError:
        known = ", ".join(o.value for o in Opcode)
        raise t.fail(f"unknown opcode '{name}' (expected one of {known})") from None
    xbs = t.span("x", "crossbars")
    dst_xbs = None
    if opcode is Opcode.TRANSFER:
        t.expect("->")
        dst_xbs = t.span("x", "destination crossbars")
    rows = t.span("r", "rows") if (t.peek() or "").startswith("r") else None
    pred = t.take_if(lambda s: s == "?tag") is not None
    common = dict(xbs=xbs, rows=rows, pred=pred, src=src)
    op: Op
    if opcode is Opcode.INIT:
        cols = t.cols()
        t.expect("=")
        op = Init(cols=cols, value=t.integer("a value"), rep=t.rep(), **common)
    elif opcode is Opcode.NOR:
        out = t.col()
        eq = t.next("'=' or '&='")
        if eq not in ("=", "&="):
            raise t.fail(f"expected '=' or '&=' after the output column, found '{eq}'")
        ins = [t.col()]
        while (t.peek() or "").startswith("c"):
            ins.append(t.col())
        op = Nor(out=out, ins=tuple(ins), acc=eq == "&=", rep=t.rep(), **common)
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


def _parse_header(where: str, key: str, rest: str, src: str, fields: dict[str, object]) -> None:
    if key == "pimc":
        if rest.strip() != str(FORMAT_VERSION):
            raise PimError(f"{where}: unsupported format version '{rest.strip()}' "
                           f"(this pimc reads version {FORMAT_VERSION})")
        fields["version"] = FORMAT_VERSION
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


def parse_program(text: str, name: str = "<uop>") -> Program:
    """Parse .uop text; every error is a PimError reading `name:LINE: what is wrong`."""
    fields: dict[str, object] = {}
    ops: list[Op] = []
    lines: list[int] = []
    for n, body, src in _split(text, name):
        where = f"{name}:{n}"
        if body.startswith("."):
            if ops:
                raise PimError(f"{where}: directive after the first micro-op")
            key, _, rest = body[1:].partition(" ")
            _parse_header(where, key, rest, src, fields)
            continue
        if "version" not in fields:
            raise PimError(f"{where}: a program starts with '.pimc {FORMAT_VERSION}'")
        ops.append(_parse_op(_Tokens(where, body.split()), src))
        lines.append(n)
    if "version" not in fields:
        raise PimError(f"{name}:1: a program starts with '.pimc {FORMAT_VERSION}'")
    if "crossbars" not in fields:
        raise PimError(f"{name}: missing '.crossbars N' in the header")
    return Program(
        arch=fields.get("arch", Arch()),  # type: ignore[arg-type]
        crossbars=fields["crossbars"],  # type: ignore[arg-type]
        ops=tuple(ops),
        inputs=tuple(fields.get("inputs", ())),  # type: ignore[arg-type]
        outputs=tuple(fields.get("outputs", ())),  # type: ignore[arg-type]
        source=fields.get("source", ""),  # type: ignore[arg-type]
        meta=tuple(fields.get("meta", ())),  # type: ignore[arg-type]
        lines=tuple(lines),
    )


def load_program(path: str | Path) -> Program:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PimError(f"{path}: cannot read program: {exc}") from None
    return parse_program(text, str(path))
