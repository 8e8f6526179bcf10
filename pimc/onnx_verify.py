"""`pimc run --verify` for programs compiled from ONNX models: bit for bit against the
order-matched reference (pimc.passes.evaluate on the same IR, matrix products split the
same way), and within tolerance of onnx's own reference evaluator."""

from __future__ import annotations

import numpy as np

from pimc.compile import split_matmuls
from pimc.frontend.onnx_import import import_model, load_model
from pimc.isa.dtypes import parse_dtype
from pimc.isa.uop import Program
from pimc.passes.dce import dce
from pimc.passes.evaluate import evaluate

# onnx's backend tests compare float32 at these; bfloat16 and float16 keep fewer bits.
TOLERANCE = {"f32": (1e-3, 1e-5), "f16": (1e-2, 1e-3), "bf16": (5e-2, 1e-2)}


def verify_model(prog: Program, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                 name: str) -> int:
    from onnx.reference import ReferenceEvaluator

    meta = dict(prog.meta)
    model = load_model(meta["model"])
    dtype = meta.get("dtype", "f32")
    imported = import_model(model, meta["model"], dtype=dtype)
    kernel = dce(split_matmuls(imported.kernel, int(meta.get("chunks", "1"))))
    want, checkable = evaluate(kernel, inputs, meta.get("mode", "ieee"))
    onnx_inputs = {i.name: np.asarray(inputs[i.name]).astype(np.float32)
                   if parse_dtype(next(p.dtype for p in kernel.params if p.name == i.name)).name
                   in ("bf16", "f16") and dtype != "f32" else inputs[i.name]
                   for i in model.graph.input if i.name in inputs}
    with np.errstate(all="ignore"):
        theirs = dict(zip([o.name for o in model.graph.output],
                          ReferenceEvaluator(model).run(None, onnx_inputs), strict=True))
    bad = 0
    for t in prog.outputs:
        dt = parse_dtype(t.dtype)
        got = dt.to_bits(outputs[t.name]).astype(np.uint64)
        mask = checkable[t.name]
        wrong = int(np.count_nonzero((got != want[t.name]) & mask))
        rtol, atol = TOLERANCE.get(dtype, TOLERANCE["f32"])
        ours = np.asarray(outputs[t.name]).astype(np.float64)
        ref = np.asarray(theirs[t.name]).astype(np.float64)
        close = np.isclose(ours, ref, rtol=rtol, atol=atol, equal_nan=True)
        with np.errstate(all="ignore"):
            diff = np.abs(ours - ref)
        err = float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0
        print(f"verify: {t.name}: {got.size - wrong} of {got.size} elements bit-exact against "
              f"the order-matched reference; {int(close.sum())} of {close.size} within "
              f"rtol {rtol:g} atol {atol:g} of onnx's reference evaluator (max |error| "
              f"{err:.3g})")
        bad += wrong + int(close.size - close.sum())
    return 1 if bad else 0
