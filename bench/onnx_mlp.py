"""Two-layer perceptrons (Gemm -> Relu -> Gemm) compiled from ONNX, executed and verified
by the runtime, beside FloatPIM's fully-connected latency formula.

    python bench/onnx_mlp.py [--json FILE] [--quick]

Every count comes from the micro-ops the runtime executed; each run is checked bit for
bit against the order-matched reference and within tolerance of onnx's evaluator. The
"FloatPIM formula" column is a comparison only: (T_mul + T_add) x K per layer (FloatPIM
Sec. 4.3, its MAC in a row), with T_mul and T_add from its Sec. 6 formulas (NOR and
search cycles), i.e. a truncating datapath with no chunk trees, relayout or INITs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This folder holds runtime.py, named like the `runtime` package: keep it off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from pimc.runtime import run_program  # noqa: E402

from pimc.compile import compile_model  # noqa: E402
from pimc.isa.dtypes import parse_dtype, quantize  # noqa: E402
from pimc.isa.flow import flat  # noqa: E402
from pimc.reference.evaluate import evaluate  # noqa: E402
from samples.make_onnx_samples import gemm_relu_gemm  # noqa: E402

SIZES = [(4, 8, 16, 8), (16, 16, 32, 10), (40, 4, 32, 8), (64, 8, 32, 16)]


def floatpim_mac(dtype: str, k: int) -> float:
    spec = importlib.util.spec_from_file_location("arith_bench", HERE / "arith.py")
    assert spec and spec.loader
    arith = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arith)
    mul, add = arith.floatpim_formula("mul", dtype), arith.floatpim_formula("add", dtype)
    return (mul["nor"] + mul["search"] + add["nor"] + add["search"]) * k


def measure(size: tuple[int, int, int, int], dtype: str) -> dict[str, object]:
    batch, features, hidden, classes = size
    model = gemm_relu_gemm(batch, features, hidden, classes)
    start = time.perf_counter()
    prog, imported = compile_model(model, "mlp.onnx", dtype=dtype)
    compile_s = time.perf_counter() - start
    x = np.random.default_rng(0).normal(size=(batch, features)).astype(np.float32)
    dt = parse_dtype(next(p.dtype for p in imported.kernel.params if p.name == "x"))
    feed = {"x": quantize(x, dt), **imported.constants}
    out, stats = run_program(prog, feed)
    want, _ = evaluate(imported.kernel, feed)
    got = dt.to_bits(out["y"]).astype(np.uint64)
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    ops = flat(prog).ops
    shifts = sum(1 for op in ops if op.opcode.value == "SHIFT" and op.rows is not None
                 and op.rows.step > 1)
    formula = floatpim_mac(dtype, features) + floatpim_mac(dtype, hidden)
    return {"batch": batch, "features": features, "hidden": hidden, "classes": classes,
            "dtype": dtype, "crossbars": prog.crossbars, "chunks": int(dict(prog.meta)["chunks"]),
            "cycles": stats.total_cycles, "energy_nJ": stats.total_energy_fj / 1e6,
            "micro_ops": len(ops), "relayout_shifts": shifts,
            "transfers": stats.ops.get("TRANSFER", 0), "host_cells":
            stats.host.input.cells + stats.host.setup.cells,
            "bit_exact": bool(np.array_equal(got, want["y"])),
            "max_abs_error_vs_onnx": float(np.max(np.abs(out["y"].astype(np.float64) - ref))),
            "floatpim_formula_cycles": formula, "compile_s": round(compile_s, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="the smallest size only")
    args = ap.parse_args()
    rows = [measure(size, dtype) for size in (SIZES[:1] if args.quick else SIZES)
            for dtype in ("f32", "bf16")]
    print("| batch x in -> hidden -> out | dtype | crossbars | chunks | cycles | energy (nJ) "
          "| relayout SHIFTs | TRANSFERs | bit-exact | max err vs onnx | FloatPIM formula "
          "(cycles) | ours / formula |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} x {r['features']} -> {r['hidden']} -> {r['classes']} | "
              f"{r['dtype']} | {r['crossbars']} | {r['chunks']} | {r['cycles']:,} | "
              f"{r['energy_nJ']:,.1f} | {r['relayout_shifts']} | {r['transfers']} | "
              f"{'yes' if r['bit_exact'] else 'NO'} | {r['max_abs_error_vs_onnx']:.2g} | "
              f"{r['floatpim_formula_cycles']:,.0f} | "
              f"{r['cycles'] / r['floatpim_formula_cycles']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
