"""The named IR-to-IR passes, in the order `pimc compile` runs them, and the IR's text
form: `pimc compile --list-passes` prints the list, `--print-after PASS` the IR after a
pass, `--stop-after PASS` stops there (nothing is written)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pimc.ir import Kernel
from pimc.isa.errors import PimError
from pimc.passes.cse import cse
from pimc.passes.dce import dce
from pimc.passes.fold import fold_constants
from pimc.passes.last_axis import last_axis
from pimc.passes.typecheck import typecheck


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Kernel, str, str], Kernel]  # kernel, source text, float mode
    what: str


PASSES = (
    Pass("typecheck", lambda k, text, mode: typecheck(k, text), "dtypes and shapes of every node"),
    Pass("fold", lambda k, text, mode: fold_constants(k, mode),
         "constant operands folded with the reference's bits"),
    Pass("last-axis", lambda k, text, mode: last_axis(k),
         "every reduction along its operand's last axis (a transpose or flattening before)"),
    Pass("cse", lambda k, text, mode: cse(k), "common subexpressions shared"),
    Pass("dce", lambda k, text, mode: dce(k), "nodes no result needs removed"),
)
LOWERING = "lower"  # after the passes: the kernel becomes micro-code (no IR to print)


def pass_names() -> list[str]:
    return [p.name for p in PASSES] + [LOWERING]


def describe() -> str:
    lines = [f"{i + 1}. {p.name:<10} {p.what}" for i, p in enumerate(PASSES)]
    lines.append(f"{len(PASSES) + 1}. {LOWERING:<10} stages of words (routine calls, loops, "
                 "moves), then columns and micro-ops, linked")
    return "\n".join(lines)


def run_passes(kernel: Kernel, text: str, mode: str, *, skip: tuple[str, ...] = (),
               print_after: str | None = None, stop_after: str | None = None,
               out: Callable[[str], None] = print) -> Kernel | None:
    """Run the passes in order (those in `skip` left out); print the IR after
    `print_after`; return None if stopped after `stop_after`."""
    for name in (print_after, stop_after):
        if name is not None and name not in pass_names():
            raise PimError(f"no pass '{name}' (the passes: {', '.join(pass_names())})")
    for p in PASSES:
        if p.name in skip:
            continue
        kernel = p.run(kernel, text, mode)
        if p.name in (print_after, stop_after):
            out(f"# IR after {p.name}\n{format_kernel(kernel)}")
        if p.name == stop_after:
            return None
    return kernel


def format_kernel(k: Kernel) -> str:
    """The IR as text, one node a line in the order the lowering visits them:
    `%3 = add %1, %2 : f32[4]  # k.pk:2:7` (attributes in braces)."""
    params = ", ".join(f"{p.name}: {p.dtype}{list(p.shape) if p.shape else ''}"
                       for p in k.params)
    results = ", ".join(f"{r.name}: {r.dtype}{list(r.shape) if r.shape else ''}"
                        for r in k.results)
    lines = [f"kernel {k.name}({params}) -> ({results}) {{"]
    for n in k.nodes_in_order():
        node = k.node(n)
        ops = ", ".join(f"%{o}" for o in k.operands(n))
        attrs = ", ".join(f"{a}={v!r}" for a, v in node.attrs)
        typ = "?" if node.dtype is None else node.dtype + (
            str(list(node.shape)) if node.shape else "")
        text = f"  %{n} = {node.op}{' ' + ops if ops else ''}"
        text += f" {{{attrs}}}" if attrs else ""
        lines.append(f"{text} : {typ}  # {node.loc}{' ' + node.loc.label if node.loc.label else ''}")
    for name, n in k.outputs.items():
        lines.append(f"  {name} = %{n}")
    lines.append("}")
    return "\n".join(lines)
