"""Writes the hand-written sample programs of samples/ with the builder API.

Run `python samples/make_samples.py` after changing the ISA's printer; the tests check
that the shipped .uop files are exactly what this script prints, and what they compute.
"""

from __future__ import annotations

from pathlib import Path

from pimc.isa.builder import ProgramBuilder
from pimc.isa.text import print_program
from pimc.isa.uop import Program, SearchKind, Span

HERE = Path(__file__).resolve().parent


def emit_full_adder(b: ProgramBuilder, a: int, bb: int, c: int, s: int, co: int,
                    scratch: list[int]) -> None:
    """s, co <- a + bb + c in 9 NORs: two XNOR stages (4 NORs each) and a carry NOR."""
    t1, t2, t3, xn, t4, t5, t6 = scratch
    b.init([*scratch, s, co], (1 << 9) - 1)
    b.nor(t1, a, bb)  # not a and not b
    b.nor(t2, a, t1)  # b and not a
    b.nor(t3, bb, t1)  # a and not b
    b.nor(xn, t2, t3)  # xnor(a, b)
    b.nor(t4, xn, c)  # xor(a, b) and not c
    b.nor(t5, xn, t4)
    b.nor(t6, c, t4)
    b.nor(s, t5, t6)  # xnor(xnor(a, b), c) = a xor b xor c
    b.nor(co, t1, t4)  # majority(a, b, c)


def emit_half_adder(b: ProgramBuilder, a: int, bb: int, s: int, co: int,
                    scratch: list[int]) -> None:
    """s, co <- a + bb in 6 NORs."""
    t1, t2, t3, xn = scratch[:4]
    b.init([t1, t2, t3, xn, s, co], (1 << 6) - 1)
    b.nor(t1, a, bb)
    b.nor(t2, a, t1)
    b.nor(t3, bb, t1)
    b.nor(xn, t2, t3)
    b.nor(s, t1, xn)  # (a or b) and not xnor(a, b) = a xor b
    b.nor(co, t1, t2, t3)  # a and b


def full_adder() -> Program:
    b = ProgramBuilder(1, source="samples/make_samples.py:full_adder")
    for i, name in enumerate("abc"):
        b.input(name, "u1", [1024], i)
    with b.annotate("s, co = a + b + c"):
        emit_full_adder(b, 0, 1, 2, 3, 4, list(range(5, 12)))
    b.output("s", "u1", [1024], 3)
    b.output("co", "u1", [1024], 4)
    return b.build()


def ripple_add8() -> Program:
    """s = a + b (mod 256) and the carry out, for 1024 pairs of u8 at once."""
    b = ProgramBuilder(1, source="samples/make_samples.py:ripple_add8")
    b.input("a", "u8", [1024], 0)
    b.input("b", "u8", [1024], 8)
    s, carry, scratch = 16, list(range(24, 32)), list(range(32, 39))
    with b.annotate("bit 0"):
        emit_half_adder(b, 0, 8, s, carry[0], scratch)
    for i in range(1, 8):
        with b.annotate(f"bit {i}"):
            emit_full_adder(b, i, 8 + i, carry[i - 1], s + i, carry[i], scratch)
    b.output("s", "u8", [1024], s)
    b.output("carry", "u1", [1024], carry[7])
    return b.build()


def ripple_add8_loop() -> Program:
    """ripple_add8 with its full adder as a routine, called by a LOOP over bits 1..7: the
    program text stays the same size for any width."""
    b = ProgramBuilder(1, source="samples/make_samples.py:ripple_add8_loop")
    b.input("a", "u8", [1024], 0)
    b.input("b", "u8", [1024], 8)
    s, carry, scratch = 16, 24, 32
    with b.annotate("full adder"), b.routine("full_add", a=1, b=1, cin=1, s=1, cout=1,
                                             t=7) as f:
        emit_full_adder(b, f["a"], f["b"], f["cin"], f["s"], f["cout"],
                        list(range(f["t"], f["t"] + 7)))
    with b.annotate("bit 0"):
        emit_half_adder(b, 0, 8, s, carry, list(range(scratch, scratch + 7)))
    with b.annotate("bits 1..7"), b.loop(7):
        b.call("full_add", a=(1, 1), b=(9, 1), cin=(carry, 1), s=(s + 1, 1),
               cout=(carry + 1, 1), t=scratch)
    b.output("s", "u8", [1024], s)
    b.output("carry", "u1", [1024], carry + 7)
    return b.build()


def row_ops() -> Program:
    """SEARCH, SHIFT and both TRANSFER forms on two crossbars of u8 values."""
    b = ProgramBuilder(2, source="samples/make_samples.py:row_ops")
    x = list(range(8))
    b.input("x", "u8", [2, 1024], 0)
    with b.annotate("ismax = x == max(x) per crossbar"):
        b.search(x, kind=SearchKind.MAX)
        b.init(8, 0)
        b.init(8, 1, pred=True)
    with b.annotate("prev[r] = x[r - 1]"):
        b.shift(x, range(16, 24), +1)
    with b.annotate("moved = prev of crossbar 0, in crossbar 1"):
        b.transfer(0, 1, range(16, 24), range(24, 32))
    with b.annotate("bits[k, i] = bit k of x[0, i], i < 8 (FloatPIM's rotation)"):
        b.transfer(0, 1, x, 32, dst_row=0, rows=Span(0, 8))
    b.output("ismax", "u1", [2, 1024], 8)
    b.output("prev", "u8", [2, 1024], 16)
    b.output("moved", "u8", [1024], 24, xbs=1)
    b.output("bits", "u1", [8, 8], 32, xbs=1, rows=Span(0, 8), lanes=8)
    return b.build()


SAMPLES = {"full_adder.uop": full_adder, "ripple_add8.uop": ripple_add8,
           "ripple_add8_loop.uop": ripple_add8_loop, "row_ops.uop": row_ops}


def main() -> None:
    for name, make in SAMPLES.items():
        (HERE / name).write_text(print_program(make()))


if __name__ == "__main__":
    main()
