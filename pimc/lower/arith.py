"""Arithmetic routines: one IR op on one dtype, synthesised from NOR once and reused.

A routine's frame is its operands (a, b, c), its result (out) and its scratch (t). An
accumulating routine (`inplace`) has no `out`: the result replaces operand a, which the
synthesis allows only when every read of a comes before the first write of its columns
(checked on the allocated gates; a copy through scratch otherwise). Routines are cached
per process: compiling a model synthesises each distinct op once.
"""

from __future__ import annotations

import functools
import re

from pimc.ir import Loc, Node
from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.uop import Routine
from pimc.synth.alloc import Allocation, allocate
from pimc.synth.emit import emit
from pimc.synth.netlist import Netlist
from pimc.synth.node import lower_node

OPERANDS = "abc"
REGISTRY: dict[str, Routine] = {}  # every routine made, by name (a program needs its callees)


def routine_name(op: str, in_dtypes: tuple[str, ...], out_dtype: str, inplace: bool) -> str:
    types = "_".join(dict.fromkeys((*in_dtypes, out_dtype)))
    return re.sub(r"\W", "_", f"{op}_{types}{'_acc' if inplace else ''}")


def _reads_after_write(alloc: Allocation, net: Netlist, col: int) -> bool:
    """Whether some gate reads the input living in `col` after a gate wrote `col`."""
    inputs = {v for v, c in net.inputs.items() if c == col}
    written = False
    for g in alloc.gates:
        if written and inputs.intersection(g.reads()):
            return True
        if alloc.cell.get(g.out) == col:
            written = True
    return False


@functools.cache
def arith_routine(op: str, in_dtypes: tuple[str, ...], out_dtype: str, mode: str,
                  arch: Arch, inplace: bool = False) -> Routine:
    """The routine computing `op` (an IR op name) on operands of `in_dtypes` into
    `out_dtype`, in `mode` (ieee or ftz), for `arch`'s NOR fan-in."""
    net = Netlist(max_fanin=arch.max_nor_inputs)
    widths = [parse_dtype(d).bits for d in in_dtypes]
    out_bits = parse_dtype(out_dtype).bits
    col, words = 0, []
    for w in widths:
        words.append(net.word_input(col, w))
        col += w
    node = Node(op, Loc("", 0, 0), out_dtype, ())
    result = lower_node(net, node, words, list(in_dtypes), mode, {})
    if len(result) != out_bits:
        raise PimError(f"{op}: {len(result)} result bits for {out_dtype}")
    name = routine_name(op, in_dtypes, out_dtype, inplace)
    if inplace:
        if widths[0] != out_bits:
            raise PimError(f"{name}: an accumulating routine keeps its first operand's type")
        out_col = 0
    else:
        out_col, col = col, col + out_bits
    outputs = [(bit, out_col + i) for i, bit in enumerate(result)]
    alloc = allocate(net, outputs, range(col, col + arch.cols), what=name)
    if inplace and any(_reads_after_write(alloc, net, c) for c in range(out_bits)):
        return _accumulating_by_copy(op, in_dtypes, out_dtype, mode, arch, name)
    segments = {s: w for s, w in zip(OPERANDS, widths, strict=False)}
    if not inplace:
        segments["out"] = out_bits
    segments["t"] = max(1, alloc.peak_scratch)
    b = ProgramBuilder(1, arch=arch)
    with b.annotate(name), b.routine(name, **segments):
        emit(alloc, b)
    REGISTRY[name] = b.routines[0]
    return b.routines[0]


def _accumulating_by_copy(op: str, in_dtypes: tuple[str, ...], out_dtype: str, mode: str,
                          arch: Arch, name: str) -> Routine:
    """a <- op(a, ...) as the plain routine into scratch, then a SHIFT by 0 back into a."""
    plain = arith_routine(op, in_dtypes, out_dtype, mode, arch)
    starts = plain.starts()
    width = parse_dtype(out_dtype).bits
    segments = {s: w for s, w in zip(OPERANDS, [parse_dtype(d).bits for d in in_dtypes],
                                     strict=False)}
    segments["t"] = width + starts["t"][1]
    b = ProgramBuilder(1, arch=arch)
    with b.annotate(name), b.routine(name, **segments) as f:
        args = {s: f[s] for s in segments if s != "t"}
        b.call(plain.name, **args, out=f["t"], t=f["t"] + width)
        b.shift(range(f["t"], f["t"] + width), range(f["a"], f["a"] + width), 0)
    REGISTRY[name] = b.routines[0]
    return b.routines[0]
