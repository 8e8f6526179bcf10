"""`pimc show`: a program's micro-code grouped by the source line each op came from, with
per-line counts, like `objdump -S`."""

from __future__ import annotations

from collections import Counter
from itertools import groupby

from pimc.isa.cost import timing
from pimc.isa.text import format_op, header_lines
from pimc.isa.uop import Op, Program


def _line_key(op: Op) -> str:
    """file:line of an op's annotation ("file:line:col what"), or the annotation itself."""
    place = op.src.split(" ", 1)[0]
    parts = place.rsplit(":", 2)
    return ":".join(parts[:2]) if len(parts) == 3 and parts[1].isdigit() else op.src


def _source_text(prog: Program, key: str, src: str) -> str:
    """The kernel's source line, or what the annotation says after the place (an ONNX
    node's name and type)."""
    meta = dict(prog.meta)
    file, _, line = key.rpartition(":")
    if "kernel-source" in meta and line.isdigit() and file == prog.source:
        lines = meta["kernel-source"].splitlines()
        if 0 < int(line) <= len(lines):
            return lines[int(line) - 1].strip()
    return src.split(" ", 1)[1] if " " in src and key != src else ""


def _counts(ops: list[Op], prog: Program) -> str:
    kinds = Counter(op.opcode.value for op in ops)
    cycles = sum(timing(op, prog.arch).cycles(prog.arch.init_model) for op in ops)
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()))
    return f"{parts}; {cycles:,} cycles"


def listing(prog: Program, *, summary_only: bool = False) -> str:
    out: list[str] = []
    if not summary_only:
        out += header_lines(prog)
        for key, run in groupby(prog.ops, key=_line_key):
            ops = list(run)
            text = _source_text(prog, key, ops[0].src)
            out.append("")
            out.append(f"# {key or '(no source)'}  {text}  [{_counts(ops, prog)}]".rstrip())
            out += [format_op(op) for op in ops]
        out.append("")
    per_line: dict[str, list[Op]] = {}
    for op in prog.ops:
        per_line.setdefault(_line_key(op), []).append(op)
    out.append("# per source line")
    for key, ops in per_line.items():
        text = _source_text(prog, key, ops[0].src)
        out.append(f"#   {key or '(no source)'}  {text}  [{_counts(ops, prog)}]".rstrip())
    return "\n".join(out) + "\n"
