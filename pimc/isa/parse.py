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

from pimc.isa import cache as decoded
from pimc.isa.arch import Arch
from pimc.isa.errors import PimError
from pimc.isa.oplines import NUM, Tokens, parse_call, parse_op
from pimc.isa.uop import (
    Item,
    Loop,
    Program,
    Routine,
    Segment,
    TensorIO,
    ViewOp,
)

FORMAT_VERSIONS = (1, 2)  # 2: routines and loops



_LINE = re.compile(r'^(?P<body>[^"#]*?)\s*(?:@(?P<src>"(?:[^"\\]|\\.)*"))?\s*(?:#.*)?$')
_IO = re.compile(
    rf"(?P<name>\S+) (?P<dtype>\S+) \[(?P<shape>(?:{NUM})?(?:, ?{NUM})*)\] (?P<xbs>x\S+) "
    rf"(?P<rows>r\S+) c(?P<col>{NUM})(?: lanes=(?P<lanes>{NUM}))?(?: stride=(?P<stride>{NUM}))?"
    rf"(?: fold=(?P<fold>{NUM}))?(?P<broadcast> broadcast)?(?: view=(?P<view>\S+))?"
    r"(?P<setup> setup)?$"
)


_VIEW_STEP = re.compile(rf"([a-z]+)\(((?:{NUM})?(?:,{NUM})*)\)$")


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
        if not re.fullmatch(NUM, rest.strip()):
            raise PimError(f"{where}: expected a crossbar count, found '{rest.strip()}'")
        fields["crossbars"] = int(rest)
    elif key == "source":
        if rest.strip() or not src:
            raise PimError(f'{where}: expected .source @"FILE"')
        fields["source"] = src
    elif key == "meta":
        if not rest.strip() or " " in rest.strip() or not src:
            raise PimError(f'{where}: expected .meta KEY @"VALUE"')
        fields.setdefault("meta", []).append((rest.strip(), src))
    elif key in ("input", "output"):
        m = _IO.match(" ".join(rest.split()))
        if not m:
            raise PimError(f"{where}: expected '.{key} NAME DTYPE [SHAPE] xA:B rA:B cN "
                           f"[lanes=L] [stride=S] ... [setup]', found '.{key} {rest.strip()}'")
        t = Tokens(where, [m.group("xbs"), m.group("rows")])
        shape = tuple(int(d) for d in m.group("shape").replace(" ", "").split(",") if d)
        io = TensorIO(m.group("name"), m.group("dtype"), shape, t.span("x", "crossbars"),
                      t.span("r", "rows"), int(m.group("col")), int(m.group("lanes") or 1),
                      int(m.group("stride") or 1), int(m.group("fold") or 0),
                      bool(m.group("broadcast")), _view(m.group("view"), where),
                      bool(m.group("setup")))
        fields.setdefault(key + "s", []).append(io)
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


_SEGMENT = re.compile(rf"([A-Za-z_]\w*):({NUM})$", re.ASCII)


def _routine_header(where: str, rest: str, src: str, line: int) -> Routine:
    name, *segs = rest.split() or [""]
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
        self._frame_of: Routine | None = None
        self._frame: dict[str, tuple[int, int]] = {}

    def add(self, item: Item) -> None:
        if self.loops:
            self.loops[-1][3].append(item)
        elif self.routine is not None:
            self.routine_items.append(item)
        else:
            self.top.append(item)

    @property
    def frame(self) -> dict[str, tuple[int, int]] | None:
        if self.routine is None:
            return None
        if self._frame_of is not self.routine:  # one routine's segments, worked out once
            self._frame_of, self._frame = self.routine, self.routine.starts()
        return self._frame


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
        t = Tokens(where, body.split(), blocks.frame)
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
            item = parse_call(t, src, n)
        else:
            item = parse_op(t, src, n)
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
        arch=fields.get("arch", Arch()),
        crossbars=fields["crossbars"],
        ops=tuple(blocks.top),
        inputs=tuple(fields.get("inputs", ())),
        outputs=tuple(fields.get("outputs", ())),
        source=fields.get("source", ""),
        meta=tuple(fields.get("meta", ())),
        lines=tuple(lines),
        version=fields["version"],
        routines=tuple(routines),
    )


def load_program(path: str | Path, *, cache: bool = True) -> Program:
    """Parse a `.uop` file, or (with `cache`) take the decoded program from the cache of
    programs already parsed with this text (pimc.isa.cache), adding it after a parse."""
    path = Path(path)
    try:
        data = path.read_bytes()
        text = data.decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise PimError(f"{path}: cannot read program: {exc}") from None
    if not cache:
        return parse_program(text, str(path))
    key = decoded.key_of(data)
    prog = decoded.load(key)
    if prog is None:
        prog = parse_program(text, str(path))
        decoded.store(key, prog)
    return prog
