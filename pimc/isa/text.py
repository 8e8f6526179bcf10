"""The .uop text format's printer (pimc.isa.parse is its parser; they round-trip).

A program is a header of `.directive` lines (routines among them) followed by one micro-op,
CALL or LOOP per line; `#` starts a comment and `@"..."` attaches a source annotation.
The grammar is in docs/isa.md.
"""

from __future__ import annotations

import json

from pimc.isa.uop import (
    NO_REP,
    Call,
    Init,
    Item,
    Loop,
    Nor,
    Op,
    Program,
    Routine,
    Search,
    SearchKind,
    Shift,
    Span,
    TensorIO,
    Transfer,
)

# --------------------------------------------------------------------------- printing


def format_span(prefix: str, span: Span) -> str:
    if len(span) == 1:
        return f"{prefix}{span.start}"
    tail = f":{span.step}" if span.step != 1 else ""
    return f"{prefix}{span.start}:{span.stop}{tail}"


Frame = Routine | None  # columns of a routine body are named by segment: t.5, a.0:8


def _named(col: int, frame: Frame) -> tuple[str, int]:
    """(prefix, number) of a column: ("c", col), or inside a routine ("seg.", offset)."""
    if frame is None:
        return "c", col
    for name, (start, width) in frame.starts().items():
        if start <= col < start + width:
            return f"{name}.", col - start
    raise ValueError(f"frame column {col} is outside routine '{frame.name}'")


def format_col(col: int, frame: Frame = None) -> str:
    prefix, n = _named(col, frame)
    return f"{prefix}{n}"


def _runs(cols: tuple[int, ...]) -> list[tuple[int, int]]:
    """(first, last) of each ascending run of consecutive columns."""
    if cols and cols[-1] - cols[0] == len(cols) - 1 and cols == tuple(range(cols[0], cols[-1] + 1)):
        return [(cols[0], cols[-1])]  # most column lists are one run: checked at C speed
    out: list[tuple[int, int]] = []
    for c in cols:
        if out and c == out[-1][1] + 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def format_cols(cols: tuple[int, ...], frame: Frame = None) -> str:
    """Columns as comma-separated ascending runs: c3, c0:8, c1,c4:6 (t.0:8 in a routine)."""
    if frame is None:
        return ",".join(f"c{a}" if a == b else f"c{a}:{b + 1}" for a, b in _runs(cols))
    parts: list[str] = []
    i = 0
    while i < len(cols):
        prefix, first = _named(cols[i], frame)
        j = i
        while (j + 1 < len(cols) and cols[j + 1] == cols[j] + 1
               and _named(cols[j + 1], frame)[0] == prefix):
            j += 1
        n = first + (j - i)
        parts.append(f"{prefix}{first}" if i == j else f"{prefix}{first}:{n + 1}")
        i = j + 1
    return ",".join(parts)


def _where(op: Op, frame: Frame) -> str:
    if frame is not None:  # a routine's ops act where the call does
        return "?tag" if op.pred else ""
    parts = [format_span("x", op.xbs)]
    if isinstance(op, Transfer):
        parts += ["->", format_span("x", op.dst_xbs)]
    if op.rows is not None:
        parts.append(format_span("r", op.rows))
    if op.pred:
        parts.append("?tag")
    return " ".join(parts)


def _body(op: Op, frame: Frame) -> str:
    if isinstance(op, Init):
        value = str(op.value) if len(op.cols) == 1 else hex(op.value)
        text = f"{format_cols(op.cols, frame)} = {value}"
    elif isinstance(op, Nor):
        ins = " ".join(format_col(c, frame) for c in op.ins)
        text = f"{format_col(op.out, frame)} {'&=' if op.acc else '='} {ins}"
    elif isinstance(op, Search):
        key = f"== {hex(op.key)}" if op.kind is SearchKind.EXACT else op.kind.value
        text = f"{format_cols(op.cols, frame)} {key}"
    elif isinstance(op, Shift):
        text = (f"{format_cols(op.src_cols, frame)} -> {format_cols(op.dst_cols, frame)} "
                f"by {op.by:+d}")
    elif isinstance(op, Transfer):
        dst = format_cols(op.dst_cols) if op.dst_row is None else f"T r{op.dst_row} c{op.dst_cols[0]}"
        text = f"{format_cols(op.src_cols)} -> {dst}"
    else:
        raise TypeError(f"not a micro-op: {op!r}")
    rep = getattr(op, "rep", NO_REP)
    if rep != NO_REP:
        text += f" rep={rep.count}/{rep.step}"
    return text


def _annotated(text: str, src: str) -> str:
    return f"{text} @{json.dumps(src)}" if src else text


def format_op(op: Op, frame: Frame = None) -> str:
    where = _where(op, frame)
    return _annotated(f"{op.opcode.value:<8} {where + ' ' if where else ''}{_body(op, frame)}",
                      op.src)


def format_call(call: Call, frame: Frame = None) -> str:
    parts = [f"{'CALL':<8} {call.routine}"]
    if call.xbs is not None:
        parts.append(format_span("x", call.xbs))
    if call.rows is not None:
        parts.append(format_span("r", call.rows))
    for a in call.args:
        stride = f"{a.stride:+d}" if a.stride else ""
        parts.append(f"{a.segment}={format_col(a.base, frame)}{stride}")
    return _annotated(" ".join(parts), call.src)


def item_lines(items: tuple[Item, ...], frame: Frame = None, indent: str = "") -> list[str]:
    """Ops, calls and loops as text lines (a loop's body indented, closed by END)."""
    out: list[str] = []
    for item in items:
        if isinstance(item, Loop):
            out.append(_annotated(f"{indent}LOOP {item.count}", item.src))
            out += item_lines(item.body, frame, indent + "  ")
            out.append(f"{indent}END")
        elif isinstance(item, Call):
            out.append(indent + format_call(item, frame))
        else:
            out.append(indent + format_op(item, frame))
    return out


def routine_lines(r: Routine) -> list[str]:
    segs = " ".join(f"{s.name}:{s.width}" for s in r.segments)
    return [_annotated(f".routine {r.name} {segs}", r.src), *item_lines(r.body, r, "  "),
            ".end"]


def format_io(kind: str, t: TensorIO) -> str:
    shape = ",".join(str(d) for d in t.shape)
    lanes = f" lanes={t.lanes}" if t.lanes != 1 else ""
    stride = f" stride={t.stride}" if t.stride != 1 else ""
    stride += f" fold={t.fold}" if t.fold else ""
    stride += " broadcast" if t.broadcast else ""
    stride += f" view={'.'.join(map(str, t.view))}" if t.view else ""
    stride += " setup" if t.setup else ""
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
    for r in prog.routines:
        lines += routine_lines(r)
    return lines


def print_program(prog: Program) -> str:
    return "\n".join(header_lines(prog) + item_lines(prog.ops)) + "\n"


def _size(item: Item) -> int:
    return 2 + sum(map(_size, item.body)) if isinstance(item, Loop) else 1


def op_lines(prog: Program) -> tuple[int, ...]:
    """The line each top-level item has in print_program's output (for programs built
    in Python)."""
    line = 4 + bool(prog.source) + len(prog.meta) + len(prog.inputs) + len(prog.outputs)
    line += sum(2 + sum(map(_size, r.body)) for r in prog.routines)
    out = []
    for item in prog.ops:
        out.append(line)
        line += _size(item)
    return tuple(out)


from pimc.isa.parse import load_program, parse_program  # noqa: E402  (the other half)

__all__ = ["format_op", "header_lines", "item_lines", "load_program", "op_lines",
           "parse_program", "print_program"]


