"""Runtime throughput: executed bit-operations per second, ours vs the design's limit and a
numpy-bool simulator, measured in the same run.

    python bench/runtime.py [--json FILE] [--gates N]

A bit-operation is one NOR gate in one row of one crossbar. The workload is a chain of
9-NOR full adders (a bulk INIT before each), over every row of 1, 64 and 1024 crossbars,
with strict checks and per-cell write counting on. The limit is a bare numpy NOR over
the same bit-packed words; the baseline is runtime.reference (numpy bool per cell, the
way published Python PIM simulators hold a crossbar) on the same program, with the same
checks and counting; "bare bool" is the same NORs on bool arrays with no checks at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# This file is named like the `runtime` package; keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

import numpy as np  # noqa: E402
from pimc.runtime import Machine  # noqa: E402
from pimc.runtime.reference import ReferenceMachine  # noqa: E402

from pimc.isa.arch import Arch  # noqa: E402
from pimc.isa.builder import ProgramBuilder  # noqa: E402
from pimc.isa.uop import Nor, Program  # noqa: E402

ARCH = Arch(rows=1024, cols=64)
SCRATCH = list(range(16, 25))


def adder_chain(crossbars: int, adders: int) -> Program:
    """`adders` full adders in a row, each summing three input columns into scratch."""
    b = ProgramBuilder(crossbars, arch=ARCH)
    b.input("x", "u16", [crossbars, ARCH.rows], 0)
    for i in range(adders):
        a, bb, c = i % 14, (i + 1) % 14, (i + 2) % 14
        t1, t2, t3, xn, t4, t5, t6, s, co = SCRATCH
        b.init(SCRATCH, (1 << 9) - 1)
        for out, ins in ((t1, (a, bb)), (t2, (a, t1)), (t3, (bb, t1)), (xn, (t2, t3)),
                         (t4, (xn, c)), (t5, (xn, t4)), (t6, (c, t4)), (s, (t5, t6)),
                         (co, (t1, t4))):
            b.nor(out, *ins)
    return b.build()


def nor_rows(prog: Program) -> int:
    gates = sum(isinstance(op, Nor) for op in prog.ops)
    return gates * prog.crossbars * prog.arch.rows


def time_ours(prog: Program) -> float:
    m = Machine(prog)
    m.host.load({}, 0)
    start = time.perf_counter()
    m.run()
    return time.perf_counter() - start


def time_reference(prog: Program) -> float:
    m = ReferenceMachine(prog)
    x = np.zeros(prog.inputs[0].shape, dtype=np.uint16)
    m.load("x", x)
    start = time.perf_counter()
    m.run()
    return time.perf_counter() - start


def time_limit(prog: Program) -> float:
    """The same NORs as bare numpy calls on the same packed words, nothing else."""
    words = np.random.default_rng(0).integers(0, 2**63, (ARCH.cols, prog.crossbars, 16),
                                              dtype=np.uint64)
    tmp = np.empty_like(words[0])
    gates = [(op.out, op.ins) for op in prog.ops if isinstance(op, Nor)]
    start = time.perf_counter()
    for out, (a, b) in gates:
        np.bitwise_or(words[a], words[b], out=tmp)
        np.invert(tmp, out=words[out])
    return time.perf_counter() - start


def time_bare_bool(prog: Program) -> float:
    """The same NORs on a bool-per-cell array with no checks or counting at all."""
    cells = np.zeros((prog.crossbars, ARCH.rows, ARCH.cols), dtype=bool)
    gates = [(op.out, op.ins) for op in prog.ops if isinstance(op, Nor)]
    start = time.perf_counter()
    for out, (a, b) in gates:
        cells[:, :, out] = ~(cells[:, :, a] | cells[:, :, b])
    return time.perf_counter() - start


def numpy_call_seconds(crossbars: int) -> float:
    a = np.zeros((crossbars, 16), dtype=np.uint64)
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        np.bitwise_or(a, a, out=a)
    return (time.perf_counter() - start) / n


def measure(crossbars: int, adders: int) -> dict[str, float | int]:
    prog = adder_chain(crossbars, adders)
    # The reference is slow at scale: time it on a shorter chain of the same shape.
    ref_prog = adder_chain(crossbars, max(2, adders // (1 if crossbars == 1 else 8)))
    ours, limit, ref = time_ours(prog), time_limit(prog), time_reference(ref_prog)
    bare = time_bare_bool(ref_prog)
    bitops = nor_rows(prog)
    ours_rate, limit_rate = bitops / ours, bitops / limit
    base_rate = nor_rows(ref_prog) / ref
    call = numpy_call_seconds(crossbars)
    uops_per_s = len(prog.ops) / ours
    return {
        "crossbars": crossbars,
        "micro_ops": len(prog.ops),
        "bitops_per_s": ours_rate,
        "limit_bitops_per_s": limit_rate,
        "baseline_bitops_per_s": base_rate,
        "ratio": ours_rate / base_rate,
        "bare_bool_bitops_per_s": nor_rows(ref_prog) / bare,
        "ratio_to_bare_bool": ours_rate * bare / nor_rows(ref_prog),
        "fraction_of_limit": ours_rate / limit_rate,
        "uops_per_s": uops_per_s,
        "numpy_call_us": call * 1e6,
        "numpy_calls_per_uop": 1 / (uops_per_s * call),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records to this file")
    parser.add_argument("--adders", type=int, default=200, help="full adders per program")
    args = parser.parse_args()
    rows = [measure(n, args.adders) for n in (1, 64, 1024)]
    print(f"{'crossbars':>9} {'ours bitop/s':>13} {'limit':>9} {'numpy-bool':>10} "
          f"{'bare bool':>9} {'ours/limit':>10} {'ours/bool':>9} {'ours/bare':>9} "
          f"{'uop/s':>8} {'np calls/uop':>12}")
    for r in rows:
        print(f"{r['crossbars']:>9} {r['bitops_per_s']:>13.3e} {r['limit_bitops_per_s']:>9.2e} "
              f"{r['baseline_bitops_per_s']:>10.2e} {r['bare_bool_bitops_per_s']:>9.2e} "
              f"{r['fraction_of_limit']:>10.1%} {r['ratio']:>8.1f}x "
              f"{r['ratio_to_bare_bool']:>8.1f}x {r['uops_per_s']:>8,.0f} "
              f"{r['numpy_calls_per_uop']:>12.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
