"""A NOR netlist in SSA form: every value is one bit of every row, defined once.

Values are ints. ZERO and ONE are constants folded away at construction; inputs are
bound to caller columns. `nor` simplifies locally (constants, double negation, merging a
NOR of an OR into one wider gate, hash-consing), so arithmetic can be written plainly and
still cost what a careful hand-written sequence costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

ZERO, ONE = -1, -2
Bit = int


@dataclass(frozen=True)
class Gate:
    """out <- NOR(ins); with `acc_from`, out takes over that value's cell: out <- acc AND NOR.

    With `when` = (bits, key), the gate acts only in rows whose `bits` read `key` (a SEARCH
    sets the tag first); rows it skips keep the cell's value, which is 1 after the INIT of
    a chain's first gate.
    """

    out: Bit
    ins: tuple[Bit, ...]
    acc_from: Bit | None = None
    when: When | None = None
    shift: int = 0  # bit-sliced code: out lane i <- NOR(in lane i - shift); see lanes.py
    lanes: tuple[int, int] | None = None  # bit-sliced code: write only these lanes
    rows: tuple[int, int] | None = None  # act only in these rows (reductions)
    xbs: tuple[int, int] | None = None  # act only in these crossbars (reductions)
    xb_shift: int | None = None  # no NOR: copy ins[0] from crossbar c + xb_shift (TRANSFER)
    row_shift: int | None = None  # no NOR: copy ins[0] from `row_shift` rows down (SHIFT)
    fill: int | None = None  # no NOR: write this bit (an INIT)
    pattern: int | None = None  # bit-sliced code: no NOR, INIT lane i to bit i of pattern
    refill: bool = False  # no NOR: set acc_from's cell to 1 in the `when` rows

    def reads(self) -> tuple[Bit, ...]:
        extra = (self.acc_from,) if self.acc_from is not None else ()
        return (*self.ins, *extra, *when_values(self.when))


# A SEARCH key: bits (a value, or a value's bit in one lane of bit-sliced code) and the key.
KeyBit = Bit | tuple[Bit, int]
When = tuple[tuple[KeyBit, ...], int]


def when_values(when: When | None) -> tuple[Bit, ...]:
    if when is None:
        return ()
    return tuple(b if isinstance(b, int) else b[0] for b in when[0])


@dataclass
class Netlist:
    max_fanin: int = 3
    gates: list[Gate] = field(default_factory=list)
    inputs: dict[Bit, int] = field(default_factory=dict)  # value -> input column
    _next: int = 0
    _cons: dict[tuple[Bit, ...], Bit] = field(default_factory=dict)
    _def: dict[Bit, tuple[Bit, ...]] = field(default_factory=dict)  # value -> its NOR's inputs
    _consumed: set[Bit] = field(default_factory=set)  # taken over by an accumulate
    annotation: str = ""  # the source the gates built now come from (a DSL line, ...)
    rows: tuple[int, int] | None = None  # gates built now act only in these rows
    xbs: tuple[int, int] | None = None  # ... and only in these crossbars
    src: dict[Bit, str] = field(default_factory=dict)  # value -> annotation when built

    def _add(self, gate: Gate) -> None:
        if self.rows is not None and gate.rows is None:
            gate = dataclasses.replace(gate, rows=self.rows)
        if self.xbs is not None and gate.xbs is None:
            gate = dataclasses.replace(gate, xbs=self.xbs)
        self.gates.append(gate)
        if self.annotation:
            self.src[gate.out] = self.annotation

    @contextmanager
    def limited(self, rows: tuple[int, ...] | None = None,
                xbs: tuple[int, int] | None = None) -> Iterator[None]:
        """Gates built inside act only in these rows and/or crossbars (the others unset
        keep the current limits)."""
        saved = self.rows, self.xbs
        self.rows = rows if rows is not None else self.rows
        self.xbs = xbs if xbs is not None else self.xbs
        try:
            yield
        finally:
            self.rows, self.xbs = saved

    def _where(self) -> tuple[object, object] | None:
        """The rows and crossbars gates built now are limited to (None: everywhere)."""
        return None if self.rows is None and self.xbs is None else (self.rows, self.xbs)

    @property
    def next_value(self) -> Bit:
        return self._next

    def private(self, x: Bit) -> bool:
        """Withdraw x from hash-consing, so no later gate can share it; True if that worked."""
        key = self._def.get(x)
        if key is None or self._cons.get(key) != x:
            return False
        del self._cons[key]
        return True

    def new_value(self) -> Bit:
        self._next += 1
        return self._next - 1

    def input(self, col: int) -> Bit:
        v = self.new_value()
        self.inputs[v] = col
        return v

    def word_input(self, first_col: int, width: int) -> list[Bit]:
        return [self.input(first_col + i) for i in range(width)]

    def _inverse(self, x: Bit) -> Bit | None:
        """y when x = NOR(y), so NOR(x) = y; None otherwise."""
        ins = self._def.get(x)
        if ins is None or len(ins) != 1 or ins[0] in self._consumed:
            return None
        return ins[0]

    def nor(self, *ins: Bit) -> Bit:
        """NOR of any number of values, simplified and wider than max_fanin if needed."""
        if ONE in ins:
            return ZERO
        args = sorted({x for x in ins if x != ZERO})
        if not args:
            return ONE
        if len(args) == 1:
            inv = self._inverse(args[0])
            if inv is not None:
                return inv
        # NOR(OR(S), rest) = NOR(S, rest): an OR is NOR(NOR(S)).
        flat = set(args)
        for x in args:
            inner = self._inverse(x)
            s = self._def.get(inner) if inner is not None else None
            if (s is not None and len(s) > 1 and len((flat - {x}) | set(s)) <= self.max_fanin
                    and not self._consumed.intersection(s)):
                flat = (flat - {x}) | set(s)
        if any(self._inverse(x) in flat for x in flat):
            return ZERO  # x and not x
        key = tuple(sorted(flat))
        hit = self._cons.get(key)  # valid in every row, so in any rows
        if hit is None and self._where() is not None:
            hit = self._cons.get((self._where(), key))
        if hit is not None:
            return hit
        out = self.new_value()
        self._add(Gate(out, key[: self.max_fanin]))
        for i in range(self.max_fanin, len(key), self.max_fanin):
            nxt = self.new_value()
            self._add(Gate(nxt, key[i:i + self.max_fanin], acc_from=out))
            out = nxt
        where = self._where()
        self._cons[key if where is None else (where, key)] = out
        self._def[out] = key
        return out

    def acc(self, target: Bit, *ins: Bit) -> Bit:
        """target AND NOR(ins), computed in target's cell: target must not be used later."""
        args = tuple(sorted({x for x in ins if x != ZERO}))
        if ONE in ins:
            return ZERO
        if not args or target == ZERO:
            return target
        if target == ONE:
            return self.nor(*args)
        out = self.new_value()
        self._add(Gate(out, args, acc_from=target))
        self._consumed.add(target)
        return out

    def move_lane(self, target: Bit, x: Bit, src: int, dst: int) -> Bit:
        """Bit-sliced: lane dst of target's cell <- NOT (lane src of x); other lanes kept."""
        return self.lane_nor(target, (x,), src, dst)

    def lane_nor(self, target: Bit, ins: tuple[Bit, ...], src: int, dst: int) -> Bit:
        """Bit-sliced: lane dst of target's cell <- its value AND NOR(lane src of ins);
        other lanes kept (target's cell must hold 1 there, as after its INIT)."""
        out = self.new_value()
        self._add(Gate(out, tuple(ins), acc_from=target, shift=dst - src,
                               lanes=(dst, dst + 1)))
        self._consumed.add(target)
        return out

    def lane_constant(self, pattern: int, fresh: bool = False) -> Bit:
        """Bit-sliced: a word whose lane i holds bit i of `pattern` in every row (an INIT).
        `fresh` gives a private one, for code that writes into it."""
        key = ("lanes", pattern)
        hit = None if fresh else self._cons.get(key)
        if hit is not None:
            return hit
        out = self.new_value()
        self._add(Gate(out, (), pattern=pattern))
        if not fresh:
            self._cons[key] = out
        return out

    def overwrite(self, when: When, target: Bit, value_inv: Bit) -> Bit:
        """In the rows `when` selects, target's cell becomes NOT value_inv (an INIT of those
        rows, then a NOR); other rows keep target. Target must not be read afterwards."""
        refill = self.new_value()
        self._add(Gate(refill, (), acc_from=target, when=when, refill=True))
        self._consumed.add(target)
        return self.predicated_nor(when, (value_inv,), refill)

    def predicated_nor(self, when: When, ins: tuple[Bit, ...], into: Bit | None = None,
                       shift: int = 0, lanes: tuple[int, int] | None = None) -> Bit:
        """NOR(ins) in the rows where `when` matches; other rows keep `into`'s value (or 1
        for a new value). Not simplified or shared: each is a real write. Bit-sliced code
        may shift the input by lanes and write only some lanes, as for a plain gate."""
        args = tuple(x for x in ins if x != ZERO)
        if ONE in args:
            raise ValueError("a predicated NOR of a constant 1 has no cell to read")
        if into == ONE:
            into = None
        if not args:  # NOR() = 1: the rows keep the 1 they hold
            return ONE if into is None else into
        out = self.new_value()
        self._add(Gate(out, args, acc_from=into, when=when, shift=shift, lanes=lanes))
        if into is not None:
            self._consumed.add(into)
        return out

    def shift_not(self, x: Bit, lanes: int) -> Bit:
        """Bit-sliced values only: lane i of the result is NOT (lane i - lanes of x); lanes
        shifted in from outside read 1 (the complement of the zeros shifted in)."""
        if lanes == 0:
            return self.nor(x)
        key = ("shift", x, lanes)
        hit = self._cons.get(key)
        if hit is not None:
            return hit
        out = self.new_value()
        self._add(Gate(out, (x,), shift=lanes))
        self._cons[key] = out
        return out

    def zero_from(self, x: Bit) -> Bit:
        """A fresh value that is 0 everywhere, NOR(x, NOT x), for code that needs a real cell
        holding zeros (an accumulator updated in place)."""
        nx = self.nor(x)
        out = self.new_value()
        self._add(Gate(out, tuple(sorted((x, nx)))))
        return out

    def rows_from(self, x: Bit, by: int, rows: tuple[int, ...], into: Bit | None = None,
                  when: When | None = None) -> Bit:
        """A value holding x's rows r + by in rows r of `rows` (a SHIFT of one column; with
        `when`, only in the rows a SEARCH tags); other rows keep `into`'s value (or are not
        written). x may be `into` itself: the SHIFT reads before it writes."""
        if x in (ZERO, ONE):  # a constant moved is the constant
            return self.filled(int(x == ONE), rows, over=into)
        out = self.new_value()
        self._add(Gate(out, (x,), acc_from=into, rows=rows, row_shift=by, when=when))
        if into is not None:
            self._consumed.add(into)
        return out

    def crossbars_from(self, x: Bit, by: int, xbs: tuple[int, int], rows: tuple[int, int],
                       into: Bit | None = None) -> Bit:
        """A value holding, in crossbars c of `xbs`, crossbar c + by's x in `rows` (a
        TRANSFER of one column); other crossbars keep `into`'s value (or are not written)."""
        if x in (ZERO, ONE):
            return self.filled(int(x == ONE), rows, xbs, over=into)
        out = self.new_value()
        self._add(Gate(out, (x,), acc_from=into, rows=rows, xbs=xbs, xb_shift=by))
        if into is not None:
            self._consumed.add(into)
        return out

    def filled(self, bit: int, rows: tuple[int, ...] | None,
               xbs: tuple[int, int] | None = None, over: Bit | None = None) -> Bit:
        """A value that is `bit` in `rows` of `xbs` (an INIT); elsewhere it is `over`'s value
        (taking over its cell) or unwritten."""
        out = self.new_value()
        self._add(Gate(out, (), acc_from=over, rows=rows, xbs=xbs, fill=bit))
        if over is not None:
            self._consumed.add(over)
        return out

    def copy(self, x: Bit) -> Bit:
        """A fresh value equal to x (two NOTs that hash-consing must not fold away)."""
        inv, out = self.new_value(), self.new_value()
        self._add(Gate(inv, (x,)))
        self._add(Gate(out, (inv,)))
        return out


def live_gates(net: Netlist, outputs: list[Bit]) -> list[Gate]:
    """The gates some output depends on, in order (dead-code elimination)."""
    need = set(outputs)
    kept: list[Gate] = []
    for g in reversed(net.gates):
        if g.out in need:
            kept.append(g)
            need.update(g.reads())
    kept.reverse()
    return kept
