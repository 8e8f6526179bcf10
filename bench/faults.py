"""Fault studies: what stuck cells and gate errors do to a network's output, and how
long a program runs before worn-out cells break it, with and without wear levelling.

    python bench/faults.py [--json FILE] [--seeds N] [--quick]

1. Output error against fault rate, for the sample perceptron (gemm_relu_gemm.onnx) and
   the sample convolution (conv_relu.onnx): random stuck-at-0/1 cells (half each) and
   transient NOR errors, each rate over several seeds. Each faulty run is compared with
   a fault-free run of the same inputs. Records: study="rate", model, kind, rate, seed,
   changed (fraction of output elements that differ), nonfinite (fraction NaN or inf),
   median_rel_error, within_tol (fraction within rtol 1e-3, atol 1e-5 of the clean
   value), argmax_agree (the perceptron: rows whose largest output is unchanged),
   cells_hit, transient_flips.
2. Runs until first failure at an endurance limit, for the float32 axpy sample compiled
   as 8 runs with and without wear levelling: each run (one rotation of the scratch
   columns with levelling) executes on one aging memory until its output differs from a
   fault-free run. The limit is scaled down (--endurance, default 2000 writes) so that it
   can be simulated; the projection to the architecture's 1e9 uses the measured
   per-run writes. Records: study="endurance", levelled, endurance, max_writes_per_run,
   first_worn_run, first_failed_run, projected_runs_at_arch_endurance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pimc.runtime import run_program  # noqa: E402
from pimc.runtime.faults import FaultModel, FaultSpec  # noqa: E402

from pimc.compile import compile_model, compile_source  # noqa: E402
from pimc.frontend.onnx_import import load_model  # noqa: E402
from pimc.isa.uop import Program  # noqa: E402

SAMPLES = HERE.parent / "samples"
RATES = (1e-6, 1e-5, 1e-4, 1e-3)


def _model(name: str) -> tuple[Program, dict[str, np.ndarray]]:
    prog, imported = compile_model(load_model(SAMPLES / name), name)
    rng = np.random.default_rng(0)
    inputs = {k: v.view(f"u{v.itemsize}") if v.dtype.kind == "V" else v
              for k, v in imported.constants.items()}
    for t in prog.inputs:
        inputs.setdefault(t.name, rng.normal(size=t.shape).astype(np.float32))
    return prog, inputs


def rate_study(seeds: int, rates: tuple[float, ...]) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for name in ("gemm_relu_gemm.onnx", "conv_relu.onnx"):
        prog, inputs = _model(name)
        clean, _ = run_program(prog, inputs, count_writes=False)
        (out,) = (t.name for t in prog.outputs)
        want = clean[out].astype(np.float64)
        for kind in ("stuck", "transient"):
            for rate in rates:
                for seed in range(seeds):
                    spec = FaultSpec(stuck0=rate / 2, stuck1=rate / 2, seed=seed) \
                        if kind == "stuck" else FaultSpec(transient=rate, seed=seed)
                    model = FaultModel(spec, prog.arch, prog.crossbars)
                    got_all, stats = run_program(prog, inputs, count_writes=False, faults=model)
                    got = got_all[out].astype(np.float64)
                    bad = ~np.isfinite(got)
                    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-6)
                    close = np.isclose(got, want, rtol=1e-3, atol=1e-5)
                    assert stats.faults is not None
                    records.append({
                        "study": "rate", "model": name, "kind": kind, "rate": rate,
                        "seed": seed,
                        "changed": float(np.mean(got_all[out] != clean[out])),
                        "nonfinite": float(np.mean(bad)),
                        "median_rel_error": float(np.median(np.where(bad, np.inf, rel))),
                        "within_tol": float(np.mean(close)),
                        "argmax_agree": float(np.mean(want.argmax(1) == np.where(
                            bad, -np.inf, got).argmax(1))) if want.ndim == 2 else None,
                        "cells_hit": stats.faults["cells_hit"],
                        "transient_flips": stats.faults["transient_flips"]})
    return records


def _runs(levelled: bool, copies: int) -> tuple[Program, int]:
    """The axpy kernel as `copies` runs (scratch rotated if `levelled`) and one run's length."""
    text = (SAMPLES / "axpy.pk").read_text()
    one = compile_source(text, "axpy.pk")
    many = compile_source(text, "axpy.pk", runs=copies, wear_level=levelled)
    assert one is not None and many is not None
    return many, len(one.ops)


def endurance_study(endurance: int, copies: int, max_runs: int) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for levelled in (False, True):
        many, length = _runs(levelled, copies)
        runs = [dataclasses.replace(many, ops=many.ops[r * length:(r + 1) * length])
                for r in range(copies)]
        rng = np.random.default_rng(0)
        inputs = {t.name: rng.normal(size=t.shape).astype(np.float32) for t in many.inputs}
        # Writes per cell over one whole rotation, per run: what wears the memory.
        _, stats = run_program(many, inputs)
        assert stats.endurance is not None
        per_run = stats.endurance.max_writes_per_cell / copies
        model = FaultModel(FaultSpec(endurance=endurance), many.arch, many.crossbars)
        first_worn = first_failed = None
        for r in range(max_runs):
            prog = runs[r % copies]
            clean, _ = run_program(prog, inputs, count_writes=False)
            got, _ = run_program(prog, inputs, count_writes=False, faults=model)
            if first_worn is None and model.report.worn_cells:
                first_worn = r + 1
            if any((got[k] != clean[k]).any() for k in got):
                first_failed = r + 1
                break
        records.append({
            "study": "endurance", "levelled": levelled, "endurance": endurance,
            "max_writes_per_run": per_run, "first_worn_run": first_worn,
            "first_failed_run": first_failed,
            "projected_runs_at_arch_endurance": int(many.arch.endurance_writes // per_run)})
    return records


def main() -> None:
    np.seterr(invalid="ignore")  # NaN outputs of faulty runs are part of the study
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--endurance", type=int, default=2000,
                        help="writes per cell for the simulated wear-out (default 2000)")
    parser.add_argument("--quick", action="store_true", help="one seed, two rates")
    args = parser.parse_args()
    t = time.perf_counter()
    seeds, rates = (1, (1e-5, 1e-3)) if args.quick else (args.seeds, RATES)
    records = rate_study(seeds, rates)
    print(f"{'model':<22} {'kind':<10} {'rate':>7} {'changed':>8} {'non-finite':>10} "
          f"{'median rel err':>14} {'within tol':>10}")
    for model in ("gemm_relu_gemm.onnx", "conv_relu.onnx"):
        for kind in ("stuck", "transient"):
            for rate in rates:
                rs = [r for r in records if (r["model"], r["kind"], r["rate"]) == (model, kind, rate)]
                mean = {k: float(np.mean([r[k] for r in rs]))
                        for k in ("changed", "nonfinite", "median_rel_error", "within_tol")}
                print(f"{model:<22} {kind:<10} {rate:>7.0e} {mean['changed']:>8.3f} "
                      f"{mean['nonfinite']:>10.3f} {mean['median_rel_error']:>14.2e} "
                      f"{mean['within_tol']:>10.3f}")
    wear = endurance_study(args.endurance, 8, 200)
    records += wear
    print()
    print(f"{'wear levelling':<15} {'writes/run':>10} {'first worn':>10} {'first failed':>12} "
          f"{'runs at 1e9':>12}")
    for r in wear:
        print(f"{'on' if r['levelled'] else 'off':<15} {r['max_writes_per_run']:>10.1f} "
              f"{r['first_worn_run']!s:>10} {r['first_failed_run']!s:>12} "
              f"{r['projected_runs_at_arch_endurance']:>12,}")
    print(f"({time.perf_counter() - t:.0f} s)")
    if args.json:
        with tempfile.NamedTemporaryFile("w", dir=Path(args.json).parent or ".",
                                         delete=False) as f:
            json.dump(records, f, indent=2)
        Path(f.name).replace(args.json)


if __name__ == "__main__":
    main()
