"""What each shipped kernel costs: compiled, executed on the runtime and verified bit for
bit, then compiled again as K runs in one program with and without wear levelling.

    python bench/kernels.py [--runs K] [--json FILE] [--mode ieee|ftz]

Every number is counted by the runtime over the micro-ops it executed: cycles (under the
architecture's INIT model), energy, the columns used and the most writes any one cell
took. A kernel that does not verify is reported as such and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

# This file's folder holds runtime.py, named like the `runtime` package: keep it off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from pimc.runtime import run_program  # noqa: E402
from pimc.runtime.hostio import complete_inputs  # noqa: E402

from pimc.cli_run import verify_outputs  # noqa: E402
from pimc.compile import compile_source  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def measure(path: Path, runs: int, mode: str) -> dict[str, object]:
    text = path.read_text()
    prog = compile_source(text, path.name, mode=mode)
    inputs = complete_inputs(prog.inputs, {}, seed=0)
    outputs, stats = run_program(prog, inputs, name=path.name)
    with contextlib.redirect_stdout(io.StringIO()):
        status = verify_outputs(prog, inputs, outputs, path.name)
    wear = {}
    for level in (False, True):
        many = compile_source(text, path.name, mode=mode, runs=runs, wear_level=level)
        _, s = run_program(many, complete_inputs(many.inputs, {}, seed=0), name=path.name)
        assert s.endurance is not None
        wear[level] = s.endurance.max_writes_per_cell
    assert stats.endurance is not None
    return {"kernel": path.name, "mode": mode, "verified": status == 0,
            "ops": sum(stats.ops.values()), "cycles": stats.total_cycles,
            "latency_ns": stats.latency_ns, "energy_pJ": stats.total_energy_fj / 1000,
            "columns_used": stats.columns_used, "crossbars_used": stats.crossbars_used,
            "max_writes_per_cell": stats.endurance.max_writes_per_cell, "runs": runs,
            f"max_writes_{runs}_runs": wear[False], f"max_writes_{runs}_runs_wear_levelled":
            wear[True]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--mode", choices=["ieee", "ftz"], default="ieee")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [measure(p, args.runs, args.mode) for p in sorted(SAMPLES.glob("*.pk"))]
    k = args.runs
    print(f"| kernel | verified | cycles | energy (pJ) | columns | crossbars | max writes/cell "
          f"(1 run) | {k} runs | {k} runs, wear-levelled |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kernel']} | {'yes' if r['verified'] else 'NO'} | {r['cycles']:,} | "
              f"{r['energy_pJ']:,.0f} | {r['columns_used']} | {r['crossbars_used']} | "
              f"{r['max_writes_per_cell']} | {r[f'max_writes_{k}_runs']:,} | "
              f"{r[f'max_writes_{k}_runs_wear_levelled']:,} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["verified"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
