"""Arithmetic cost: cycles and energy of every synthesised routine, executed and verified
by the runtime, beside the published counts.

    python bench/arith.py [--json FILE] [--quick]

Each record is one op on one dtype under one cost model (bulk or per-cell INIT; 1 or 32
partitions). Every count comes from the micro-ops the runtime executed on 4096 rows
(4 crossbars) whose results were compared bit for bit with the oracle. The published
figures are comparison columns only (see docs/arithmetic.md for how each is defined).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# bench/runtime.py is named like the `runtime` package; keep this folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from pimc.isa.arch import Arch, InitModel  # noqa: E402
from pimc.synth.floating import FORMATS  # noqa: E402
from pimc.synth.routines import (  # noqa: E402
    BIT_SLICED_FLOAT_OPS,
    BIT_SLICED_OPS,
    FLOAT_OPS,
    INT_OPS,
    build_bit_sliced,
    build_routine,
)
from pimc.synth.verify import verify  # noqa: E402

# Cycles published for 32-bit fixed point and IEEE floats (FTZ, round to nearest even, no
# inf/NaN): AritPIM serial (one partition, one cycle per initialised cell), AritPIM and
# PyPIM with 32 partitions.
PUBLISHED = {
    ("add", "i32"): {"aritpim_serial": 577, "aritpim_parallel": 95, "pypim_parallel": 95},
    ("mul_wide", "i32"): {"aritpim_serial": 18123, "aritpim_parallel": 1251,
                          "pypim_parallel": 1156},
    ("add", "f32"): {"aritpim_serial": 3997, "aritpim_parallel": 1359, "pypim_parallel": 1367},
    ("mul", "f32"): {"aritpim_serial": 11586, "aritpim_parallel": 1407, "pypim_parallel": 1582},
    ("add", "bf16"): {"aritpim_serial": 1849, "aritpim_parallel": 1132},
    ("mul", "bf16"): {"aritpim_serial": 1742, "aritpim_parallel": 721},
}
NOTES = {("mul_wide", "i32"): "PyPIM's parallel figure is for a 32-bit product"}


def floatpim_formula(op: str, dtype: str) -> dict[str, float] | None:
    """FloatPIM Sec. 6 latency formulas: NOR cycles and search cycles."""
    if dtype not in FORMATS or op not in ("add", "mul"):
        return None
    ne, nm = FORMATS[dtype].exp_bits, FORMATS[dtype].frac_bits
    if op == "add":
        return {"nor": 3 + 16 * ne + 19 * nm + nm * nm, "search": 2 * nm + 1}
    return {"nor": 12 * ne + 6.5 * nm * nm - 7.5 * nm - 2, "search": 0}


def cases(quick: bool) -> list[tuple[str, str, str]]:
    ints = ["add", "mul_wide"] if quick else sorted(INT_OPS)
    out = [(op, "i32", "int") for op in ints]
    if not quick:
        out += [(op, "i16", "int") for op in ("add", "mul", "mul_wide")]
    floats = ["f32", "bf16"] if quick else ["f32", "bf16", "f16"]
    float_ops = ("add", "mul") if quick else sorted(FLOAT_OPS)
    for dtype in floats:
        for op in float_ops:
            out += [(op, dtype, mode) for mode in ("ftz", "ieee")]
    return out


def measure(op: str, dtype: str, mode: str, partitions: int, init: InitModel) -> dict:
    arch = Arch(partitions=partitions, init_model=init)
    sliced = partitions > 1 and ((mode == "int" and op in BIT_SLICED_OPS) or (
        mode == "ftz" and op in BIT_SLICED_FLOAT_OPS))
    if sliced:
        routine = build_bit_sliced(op, dtype, arch=arch, crossbars=4)
    else:
        routine = build_routine(op, dtype, arch=arch, crossbars=4,
                                mode=None if mode == "int" else mode)
    stats, rows = verify(routine, seed=11)
    record = {
        "op": op, "dtype": dtype, "mode": mode, "partitions": partitions,
        "init": init.value, "cycles": stats.total_cycles,
        "nor": stats.ops.get("NOR", 0), "inits": stats.ops.get("INIT", 0),
        "searches": stats.ops.get("SEARCH", 0),
        "energy_per_row_fJ": stats.total_energy_fj / rows,
        "latency_ns": stats.latency_ns, "peak_cells": routine.peak_scratch,
        "verified_rows": rows, "align": routine.align if dtype in FORMATS else None,
        "partition_parallel": sliced,
    }
    published = PUBLISHED.get((op, dtype), {}) if mode in ("int", "ftz") else {}
    if partitions == 1 and init is InitModel.PER_CELL and "aritpim_serial" in published:
        record["published"] = {"aritpim_serial": published["aritpim_serial"]}
    if partitions == 32 and published:
        record["published"] = {k: v for k, v in published.items() if k.endswith("parallel")}
    formula = floatpim_formula(op, dtype)
    if formula and partitions == 1 and init is InitModel.BULK:
        record["floatpim_formula"] = formula
    if (op, dtype) in NOTES and "published" in record:
        record["note"] = NOTES[(op, dtype)]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records to this file")
    parser.add_argument("--quick", action="store_true", help="only the published table's rows")
    args = parser.parse_args()
    records = [measure(op, dtype, mode, p, init)
               for op, dtype, mode in cases(args.quick)
               for p in (1, 32) for init in InitModel]
    head = (f"{'op':<9}{'dtype':<6}{'mode':<5}{'P':>3} {'init':<9}{'cycles':>8}{'NOR':>7}"
            f"{'INIT':>6}{'SRCH':>5}{'fJ/row':>10}{'peak':>5}  published (ours/theirs)")
    print(head)
    for r in records:
        pub = r.get("published", {})
        cmp_ = "  ".join(f"{k} {v} ({r['cycles'] / v:.2f})" for k, v in pub.items())
        if "floatpim_formula" in r:
            f = r["floatpim_formula"]
            cmp_ += f"floatpim {f['nor']:.0f} NOR + {f['search']} search " \
                    f"({r['cycles'] / (f['nor'] + f['search']):.2f})"
        print(f"{r['op']:<9}{r['dtype']:<6}{r['mode']:<5}{r['partitions']:>3} {r['init']:<9}"
              f"{r['cycles']:>8}{r['nor']:>7}{r['inits']:>6}{r['searches']:>5}"
              f"{r['energy_per_row_fJ']:>10.0f}{r['peak_cells']:>5}  {cmp_}")
    by_key = {(r["op"], r["dtype"], r["mode"], r["partitions"], r["init"]): r for r in records}
    print("\nieee over ftz (cycles):")
    for (op, dtype, mode, p, init), r in sorted(by_key.items()):
        if mode == "ieee" and p == 1:
            ftz = by_key[(op, dtype, "ftz", p, init)]
            print(f"  {op} {dtype} {init}: {r['cycles'] / ftz['cycles']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
