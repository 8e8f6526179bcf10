"""`pimc show`: a program's micro-code grouped by the source line (or ONNX node) each op
came from, with per-line counts, like `objdump -S`. Routines are listed once, with their
cost per call and how often they are called; `--flat` prints the expanded micro-ops."""

from __future__ import annotations

from collections import Counter
from itertools import groupby

from pimc.isa.cost import item_counts
from pimc.isa.flow import flat
from pimc.isa.text import header_lines, item_lines
from pimc.isa.uop import Call, Item, Loop, Program


def _line_key(item: Item) -> str:
    """file:line of an annotation ("file:line:col what"), or the annotation itself."""
    place = item.src.split(" ", 1)[0]
    parts = place.rsplit(":", 2)
    return ":".join(parts[:2]) if len(parts) == 3 and parts[1].isdigit() else item.src


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


class _Costs:
    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.routines = {r.name: r for r in prog.routines}
        self.memo: dict[str, tuple[int, int]] = {}
        self.calls: Counter[str] = Counter()

    def of(self, items: list[Item]) -> tuple[int, int, Counter[str]]:
        ops = cycles = 0
        kinds: Counter[str] = Counter()
        for item in items:
            o, c = item_counts(item, self.routines, self.prog.arch, self.memo)
            ops, cycles = ops + o, cycles + c
            kinds["CALL" if isinstance(item, Call) else "LOOP" if isinstance(item, Loop)
                  else item.opcode.value] += 1
        return ops, cycles, kinds

    def count_calls(self, items: tuple[Item, ...], times: int = 1) -> None:
        for item in items:
            if isinstance(item, Loop):
                self.count_calls(item.body, times * item.count)
            elif isinstance(item, Call):
                self.calls[item.routine] += times
                self.count_calls(self.routines[item.routine].body, times)

    def text(self, items: list[Item]) -> str:
        ops, cycles, kinds = self.of(items)
        parts = ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()))
        executed = f"{ops:,} micro-ops executed, " if "CALL" in kinds or "LOOP" in kinds else ""
        return f"{parts}; {executed}{cycles:,} cycles"


def listing(prog: Program, *, summary_only: bool = False, flat_ops: bool = False) -> str:
    if flat_ops:
        prog = flat(prog)
    costs = _Costs(prog)
    costs.count_calls(prog.ops)
    out: list[str] = []
    if not summary_only:
        out += header_lines(prog)
        for key, run in groupby(prog.ops, key=_line_key):
            items = list(run)
            text = _source_text(prog, key, items[0].src)
            out.append("")
            out.append(f"# {key or '(no source)'}  {text}  [{costs.text(items)}]".rstrip())
            out += item_lines(tuple(items))
        out.append("")
    if prog.routines:
        out.append("# routines")
        for r in prog.routines:
            ops, cycles = item_counts(Call(r.name, ()), costs.routines, prog.arch, costs.memo)
            n = costs.calls[r.name]
            out.append(f"#   {r.name}: {len(r.body):,} lines, {ops:,} micro-ops, {cycles:,} "
                       f"cycles per call; called {n:,} times ({n * cycles:,} cycles)")
    per_line: dict[str, list[Item]] = {}
    for item in prog.ops:
        per_line.setdefault(_line_key(item), []).append(item)
    out.append("# per source line")
    for key, items in per_line.items():
        text = _source_text(prog, key, items[0].src)
        out.append(f"#   {key or '(no source)'}  {text}  [{costs.text(items)}]".rstrip())
    return "\n".join(out) + "\n"
