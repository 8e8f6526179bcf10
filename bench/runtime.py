"""Runtime throughput: executed bit-operations per second, ours vs the design's limit and a
numpy-bool simulator, measured in the same run.

    python bench/runtime.py [--json FILE] [--adders N] [--program prog.uop]

A bit-operation is one NOR gate in one row of one crossbar. The workloads are a chain of
9-NOR full adders (a bulk INIT before each) over every row ("whole-column") or over rows
0:512 ("row-span") of 1, 64 and 1024 crossbars, with strict checks and per-cell write
counting on. The limit is the same NORs and INITs as bare numpy calls on the same
bit-packed words; "numpy eng" is the machine's numpy engine (no compiled kernel); the
baseline is runtime.reference (numpy bool per cell, the way published Python PIM
simulators hold a crossbar) on the same program, with the same checks and counting;
"bare bool" is the same NORs on bool arrays with no checks at all. Then the load of a
compiled program (parse, the decoded-program cache, machine set-up) and host I/O at 1M
rows; last, one process against 2 Dask workers on a 1024-crossbar program.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the `runtime` package; keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

import numpy as np  # noqa: E402
from pimc.runtime import Machine  # noqa: E402
from pimc.runtime.reference import ReferenceMachine  # noqa: E402

from pimc.isa.arch import Arch  # noqa: E402
from pimc.isa.builder import ProgramBuilder  # noqa: E402
from pimc.isa.uop import Nor, Program, Span  # noqa: E402

ARCH = Arch(rows=1024, cols=64)
SCRATCH = list(range(16, 25))


WORKLOADS = {"whole-column": None, "row-span": Span(0, 512)}


def adder_chain(crossbars: int, adders: int, rows: Span | None = None) -> Program:
    """`adders` full adders in a row, each summing three input columns into scratch, on
    every row (rows=None) or on a row span."""
    b = ProgramBuilder(crossbars, arch=ARCH)
    b.input("x", "u16", [crossbars, ARCH.rows], 0)
    for i in range(adders):
        a, bb, c = i % 14, (i + 1) % 14, (i + 2) % 14
        t1, t2, t3, xn, t4, t5, t6, s, co = SCRATCH
        b.init(SCRATCH, (1 << 9) - 1, rows=rows)
        for out, ins in ((t1, (a, bb)), (t2, (a, t1)), (t3, (bb, t1)), (xn, (t2, t3)),
                         (t4, (xn, c)), (t5, (xn, t4)), (t6, (c, t4)), (s, (t5, t6)),
                         (co, (t1, t4))):
            b.nor(out, *ins, rows=rows)
    return b.build()


def active_rows(prog: Program) -> int:
    rows = prog.ops[0].rows
    return len(rows) if rows is not None else prog.arch.rows


def nor_rows(prog: Program) -> int:
    gates = sum(isinstance(op, Nor) for op in prog.ops)
    return gates * prog.crossbars * active_rows(prog)


def time_ours(prog: Program, engine: str = "auto") -> float:
    m = Machine(prog, engine=engine)
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
    """The same NORs and INITs as bare numpy calls on the same packed words (the row
    span's words only), nothing else: no checks, no counting."""
    words = np.random.default_rng(0).integers(0, 2**63, (ARCH.cols, prog.crossbars, 16),
                                              dtype=np.uint64)
    span = slice(0, -(-active_rows(prog) // 64))
    tmp = np.empty_like(words[0, :, span])
    ops = [(op.out, op.ins) if isinstance(op, Nor) else (slice(op.cols[0], op.cols[-1] + 1), ())
           for op in prog.ops]
    ones = np.uint64(2**64 - 1)
    start = time.perf_counter()
    for out, ins in ops:
        if ins:
            np.bitwise_or(words[ins[0], :, span], words[ins[1], :, span], out=tmp)
            np.invert(tmp, out=words[out, :, span])
        else:
            words[out, :, span] = ones
    return time.perf_counter() - start


def time_bare_bool(prog: Program) -> float:
    """The same NORs on a bool-per-cell array with no checks or counting at all."""
    cells = np.zeros((prog.crossbars, ARCH.rows, ARCH.cols), dtype=bool)
    rows = slice(0, active_rows(prog))
    gates = [(op.out, op.ins) for op in prog.ops if isinstance(op, Nor)]
    start = time.perf_counter()
    for out, (a, b) in gates:
        cells[:, rows, out] = ~(cells[:, rows, a] | cells[:, rows, b])
    return time.perf_counter() - start


def numpy_call_seconds(crossbars: int) -> float:
    a = np.zeros((crossbars, 16), dtype=np.uint64)
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        np.bitwise_or(a, a, out=a)
    return (time.perf_counter() - start) / n


def measure(workload: str, crossbars: int, adders: int) -> dict[str, float | int | str]:
    rows = WORKLOADS[workload]
    prog = adder_chain(crossbars, adders, rows)
    # The slow simulators run a shorter chain of the same shape.
    short = adder_chain(crossbars, max(2, adders // (1 if crossbars == 1 else 8)), rows)
    ours, limit, ref = time_ours(prog), time_limit(prog), time_reference(short)
    numpy_path = time_ours(short, "numpy")
    bare = time_bare_bool(short)
    bitops = nor_rows(prog)
    ours_rate, limit_rate = bitops / ours, bitops / limit
    base_rate = nor_rows(short) / ref
    call = numpy_call_seconds(crossbars)
    uops_per_s = len(prog.ops) / ours
    return {
        "workload": workload,
        "crossbars": crossbars,
        "micro_ops": len(prog.ops),
        "bitops_per_s": ours_rate,
        "limit_bitops_per_s": limit_rate,
        "baseline_bitops_per_s": base_rate,
        "numpy_engine_bitops_per_s": nor_rows(short) / numpy_path,
        "ratio": ours_rate / base_rate,
        "bare_bool_bitops_per_s": nor_rows(short) / bare,
        "ratio_to_bare_bool": ours_rate * bare / nor_rows(short),
        "fraction_of_limit": ours_rate / limit_rate,
        "uops_per_s": uops_per_s,
        "numpy_call_us": call * 1e6,
        "numpy_calls_per_uop": 1 / (uops_per_s * call),
    }


def load_and_io(path: Path) -> dict[str, float | int | str]:
    """Parsing and machine set-up of a compiled program, and host I/O at 1M rows."""
    from pimc.isa.parse import load_program, parse_program

    text = path.read_text()
    start = time.perf_counter()
    prog = parse_program(text, str(path))
    parse_s = time.perf_counter() - start
    start = time.perf_counter()
    Machine(prog)
    setup_s = time.perf_counter() - start
    load_program(path)  # caches the decoded program (if it was not)
    start = time.perf_counter()
    load_program(path)  # reads it
    cached_s = time.perf_counter() - start
    big = adder_chain(1024, 1)
    m = Machine(big)
    x = np.random.default_rng(0).integers(0, 2**16, (1024, ARCH.rows), dtype=np.uint16)
    start = time.perf_counter()
    m.host.load({"x": x}, 0)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    m.host.read(big.inputs[0])
    read_s = time.perf_counter() - start
    return {"workload": "load", "program": path.name, "lines": text.count("\n"),
            "parse_s": parse_s, "cached_load_s": cached_s, "setup_s": setup_s,
            "host_write_1m_rows_s": write_s, "host_read_1m_rows_s": read_s}


def workers(adders: int, crossbars: int = 1024, rows: Span | None = None
            ) -> dict[str, float | int | str]:
    """One process against 2 Dask workers (a local cluster) on the same program: run
    time only (cluster start, shard set-up and input writes are reported apart)."""
    import logging

    from distributed import LocalCluster
    from pimc.runtime import run_program
    from pimc.runtime.cluster import run_sharded

    prog = adder_chain(crossbars, adders, rows)
    ones, twos, same = [], [], True
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        for _ in range(3):  # the best of three of each, interleaved
            m = Machine(prog)
            m.host.load({}, 0)
            start = time.perf_counter()
            m.run()
            ones.append(time.perf_counter() - start)
            single, _ = run_program(prog)
            sharded, _, report = run_sharded(prog, scheduler=cluster.scheduler_address)
            twos.append(report.run_s)
            busy = report.worker_busy_s
            same = same and all(np.array_equal(single[k], sharded[k]) for k in single)
    return {"workload": "workers", "rows": "all" if rows is None else f"{rows.start}:{rows.stop}",
            "crossbars": crossbars, "micro_ops": len(prog.ops),
            "one_process_run_s": min(ones), "two_workers_run_s": min(twos),
            "speedup": min(ones) / min(twos), "two_workers_setup_s": report.setup_s,
            "worker_busy_s": busy,
            "identical_outputs": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records to this file")
    parser.add_argument("--adders", type=int, default=200, help="full adders per program")
    parser.add_argument("--program", help="a compiled program to time loading (default: "
                        "the compiled samples/gemm_relu_gemm.onnx)")
    args = parser.parse_args()
    time_ours(adder_chain(1, 2))  # load the compiled kernel before timing
    rows = [measure(w, n, args.adders) for w in WORKLOADS for n in (1, 64, 1024)]
    print(f"{'workload':>12} {'crossbars':>9} {'ours bitop/s':>13} {'limit':>9} "
          f"{'numpy eng':>9} {'numpy-bool':>10} {'ours/limit':>10} {'ours/bool':>9} "
          f"{'uop/s':>9}")
    for r in rows:
        print(f"{r['workload']:>12} {r['crossbars']:>9} {r['bitops_per_s']:>13.3e} "
              f"{r['limit_bitops_per_s']:>9.2e} {r['numpy_engine_bitops_per_s']:>9.2e} "
              f"{r['baseline_bitops_per_s']:>10.2e} {r['fraction_of_limit']:>10.1%} "
              f"{r['ratio']:>8.1f}x {r['uops_per_s']:>9,.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(args.program or Path(tmp) / "gemm.uop")
        if not args.program:
            sample = Path(__file__).resolve().parent.parent / "samples" / "gemm_relu_gemm.onnx"
            subprocess.run([sys.executable, "-m", "pimc", "compile", str(sample), "-o",
                            str(program)], check=True, capture_output=True)
        io = load_and_io(program)
    print(f"\nload {io['program']} ({io['lines']:,} lines): parse {io['parse_s']:.3f} s, "
          f"from the cache {io['cached_load_s']:.3f} s, machine set-up {io['setup_s']:.3f} s; "
          f"host write of 1M rows {io['host_write_1m_rows_s']:.3f} s, "
          f"read {io['host_read_1m_rows_s']:.3f} s")
    rows.append(io)
    print()
    for span in (Span(0, 64), None):
        w = workers(args.adders * 40, rows=span)
        print(f"{w['crossbars']} crossbars, rows {w['rows']}, {w['micro_ops']:,} micro-ops: one "
              f"process {w['one_process_run_s']:.2f} s, 2 workers {w['two_workers_run_s']:.2f} s "
              f"({w['speedup']:.2f}x; set-up {w['two_workers_setup_s']:.1f} s apart; outputs "
              f"{'identical' if w['identical_outputs'] else 'DIFFERENT'})")
        rows.append(w)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":  # (worker processes import this file: keep the guard)
    main()
