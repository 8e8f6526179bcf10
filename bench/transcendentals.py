"""Accuracy and cost of Exp, Log, Sigmoid and Tanh (pimc.frontend.onnx_transcendental), beside
FloatPIM's three-term Taylor sigmoid (1/2 + x/4 - x^3/48), and of LRN's power (AlexNet's
parameters).

    python bench/transcendentals.py [--json FILE] [--f32 N] [--run N]

Errors are in units in the last place of the correctly rounded result (float64 numpy
reference, rounded to the type), over every finite bfloat16 and float16 input and over
N float32 inputs (default 1e6: uniform bit patterns, uniform values in the interesting
range, and the edges). They are measured on the order-matched reference evaluator, which
computes what the micro-code computes bit for bit; --run N of the inputs per case are
also executed on the runtime and compared bit for bit with it. Cycles and energy per
element are counted from each compiled program. LRN's error is measured against
x / base^beta for the float32 base the layer sums (the power's accuracy), and also
against the exact LRN (max_ulp_exact_base). Records: function, dtype, inputs,
max_ulp, worst_input, faithful (max_ulp < 1), max_abs_error_within_2 (over |x| <= 2,
where a Taylor sigmoid is meant to be used), cycles, energy_pj_per_element (an upper
bound: data-dependent writes counted as the costlier value), runtime_checked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pimc.runtime import run_program  # noqa: E402
from pimc.runtime.count import count_program  # noqa: E402

from pimc.compile import compile_model  # noqa: E402
from pimc.isa.dtypes import parse_dtype  # noqa: E402
from pimc.reference.evaluate import evaluate  # noqa: E402


def _sigmoid(v: np.ndarray) -> np.ndarray:
    """In float64, without cancellation on either side."""
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1 / (1 + e), e / (1 + e))


def _lrn(v: np.ndarray) -> np.ndarray:
    """AlexNet's LRN of one channel (size 1, alpha 1e-4, beta 0.75, bias 1): the base
    1 + alpha x^2 as the layer computes it (float32, each op rounded), then the power
    and the quotient in float64, which the power's accuracy is about."""
    x = v.astype(np.float32)
    base = (x * x) * np.float32(1e-4) + np.float32(1)
    return v / base.astype(np.float64) ** 0.75


def _lrn_exact(v: np.ndarray) -> np.ndarray:
    return v / (1 + 1e-4 * v * v) ** 0.75


TRUE = {"Exp": np.exp, "Log": np.log, "Sigmoid": _sigmoid, "Tanh": np.tanh, "TaylorSigmoid": _sigmoid,
        "LRN": _lrn}


def model(function: str, n: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])
    if function == "LRN":  # over (1, 1, n): the power exp(beta log(1 + alpha x^2))
        nodes = [helper.make_node("Reshape", ["x", "shape3"], ["x3"]),
                 helper.make_node("LRN", ["x3"], ["y3"], size=1, alpha=1e-4, beta=0.75),
                 helper.make_node("Reshape", ["y3", "shape1"], ["y"])]
        inits = [helper.make_tensor("shape3", TensorProto.INT64, [3], [1, 1, n]),
                 helper.make_tensor("shape1", TensorProto.INT64, [1], [n])]
    elif function != "TaylorSigmoid":
        nodes = [helper.make_node(function, ["x"], ["y"], name=function.lower())]
        inits = []
    else:  # 1/2 + x * (1/4 - x*x / 48), FloatPIM's three terms
        c = {k: helper.make_tensor(k, TensorProto.FLOAT, [], [v]) for k, v in
             (("half", 0.5), ("quarter", 0.25), ("c48", -1 / 48))}
        inits = list(c.values())
        nodes = [helper.make_node("Mul", ["x", "x"], ["x2"], name="x2"),
                 helper.make_node("Mul", ["x2", "c48"], ["t3"], name="t3"),
                 helper.make_node("Add", ["t3", "quarter"], ["t2"], name="t2"),
                 helper.make_node("Mul", ["x", "t2"], ["t1"], name="t1"),
                 helper.make_node("Add", ["t1", "half"], ["y"], name="y")]
    g = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def inputs(dtype: str, n32: int, function: str = "") -> np.ndarray:
    """Every finite value of a 16-bit type; for float32 a mix of bit patterns and values
    (for LRN, values of a layer's scale: N(0, 1) and N(0, 300^2))."""
    dt = parse_dtype(dtype)
    if function == "LRN" and dt.bits == 32:
        rng = np.random.default_rng(0)
        return np.concatenate([rng.normal(0, 1, n32 // 2),
                               rng.normal(0, 300, n32 - n32 // 2)]).astype(np.float32)
    if dt.bits == 16:
        values = dt.from_bits(np.arange(1 << 16, dtype=np.uint16))
        return values[np.isfinite(values.astype(np.float64))]
    rng = np.random.default_rng(0)
    third = n32 // 3
    bits = rng.integers(0, 1 << 32, third * 2, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = bits[np.isfinite(bits)][:third]  # n32 finite values in all
    edges = np.array([0, -0.0, 1e-45, -1e-45, 1.17549435e-38, 88.72283, 88.72284, -87.33655,
                      -103.27893, -103.97208, 0.5625, -0.5625, 0.5624999, 1e-20, -1e-20, 9.0,
                      -9.0, 3.4028235e38, -3.4028235e38], dtype=np.float32)
    wide = rng.uniform(-110, 110, third).astype(np.float32)
    near = rng.uniform(-2, 2, n32 - 2 * third - len(edges)).astype(np.float32)
    return np.concatenate([edges, bits, wide, near])


def ulp_error(got: np.ndarray, want: np.ndarray, dtype: str) -> np.ndarray:
    """|got - want| in ulps of the correctly rounded result (float64 want)."""
    dt = parse_dtype(dtype)
    rounded = want.astype(dt.host)
    spacing = np.spacing(np.abs(rounded).astype(dt.host)).astype(np.float64)
    g = got.astype(np.float64)
    same = (g == want) | (np.isinf(g) & (g == rounded.astype(np.float64)))
    err = np.where(same, 0.0, np.abs(g - want) / spacing)
    return np.where(np.isnan(g) & np.isnan(want), 0.0, err)


def measure(function: str, dtype: str, n32: int, run: int) -> dict[str, object]:
    x = inputs(dtype, n32, function)
    prog, imported = compile_model(model(function, len(x)), f"{function}.onnx", dtype=dtype)
    dt = parse_dtype(dtype)
    raw, _ = evaluate(imported.kernel, {"x": x.astype(dt.host), **imported.constants})
    got = dt.from_bits(raw["y"].astype(dt.storage)).astype(np.float64)
    want = TRUE[function](x.astype(np.float64))
    err = ulp_error(got, want, dtype)
    near = (np.abs(x.astype(np.float64)) <= 2) & np.isfinite(want)
    checked = 0
    if run:  # the same computation on the runtime, on a few of the inputs
        small, imp_small = compile_model(model(function, run), "t.onnx", dtype=dtype)
        pick = np.random.default_rng(1).choice(len(x), run, replace=False)
        xs = x[pick].astype(dt.host)
        out, _ = run_program(small, {"x": xs, **imp_small.constants}, strict=False)
        expect, _ = evaluate(imp_small.kernel, {"x": xs, **imp_small.constants})
        assert (dt.to_bits(out["y"]).astype(np.uint64) == expect["y"]).all(), function
        checked = run
    stats = count_program(prog)
    worst = int(np.argmax(err))
    exact = {"max_ulp_exact_base": float(ulp_error(got, _lrn_exact(x.astype(np.float64)),
                                                   dtype).max())} if function == "LRN" else {}
    return {"function": function, "dtype": dtype, "inputs": len(x),
            "max_ulp": float(err.max()), "worst_input": float(x[worst]),
            "faithful": bool(err.max() < 1),
            "max_abs_error_within_2": float(np.nanmax(np.abs(got[near] - want[near]))),
            "cycles": stats.total_cycles,
            "energy_pj_per_element": (stats.energy_bounds or (stats.energy_fj,))[-1]
            / 1e3 / len(x), "runtime_checked": checked, **exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--f32", type=int, default=1_000_000, help="float32 inputs")
    parser.add_argument("--run", type=int, default=256,
                        help="inputs per case also executed on the runtime")
    args = parser.parse_args()
    np.seterr(all="ignore")
    records = []
    print(f"{'function':<14} {'dtype':<5} {'inputs':>9} {'max ulp':>9} {'faithful':>8} "
          f"{'abs err |x|<=2':>14} {'cycles':>8} {'pJ/elem':>8}")
    for function in ("Exp", "Log", "Sigmoid", "Tanh", "TaylorSigmoid", "LRN"):
        for dtype in ("bf16", "f16", "f32"):
            r = measure(function, dtype, args.f32, args.run)
            records.append(r)
            print(f"{function:<14} {dtype:<5} {r['inputs']:>9,} {r['max_ulp']:>9.3g} "
                  f"{r['faithful']!s:>8} {r['max_abs_error_within_2']:>14.2e} "
                  f"{r['cycles']:>8,} {r['energy_pj_per_element']:>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
