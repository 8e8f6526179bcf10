"""`pimc run --verify` for programs compiled from ONNX models: bit for bit against the
order-matched reference (pimc.reference.evaluate on the same IR, matrix products split the
same way), and within tolerance of onnx's own reference evaluator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from pimc.frontend.onnx_import import Imported, import_model, load_model
from pimc.ir import Kernel
from pimc.isa.dtypes import Kind, dequantize, parse_dtype
from pimc.isa.uop import Program
from pimc.lower.splits import recorded
from pimc.passes.pipeline import run_passes
from pimc.reference.evaluate import evaluate

# onnx's backend tests compare float32 at these; float16 and bfloat16 keep 11 and 8
# significant bits, and every add of an accumulation rounds to them.
TOLERANCE = {"f32": (1e-3, 1e-5), "f16": (1e-2, 1e-2), "bf16": (1e-1, 5e-2)}


def tolerance(dtype: str) -> tuple[float, float]:
    """(rtol, atol) for comparing with onnx's float32 evaluator: fixed point is judged
    by its resolution (64 steps of 2^-F: input, weight and product rounding add up)."""
    d = parse_dtype(dtype)
    if d.kind is Kind.FIXED:
        return 5e-2, 64.0 / (1 << d.frac_bits)
    return TOLERANCE.get(dtype, TOLERANCE["f32"])


def lrn_reference() -> type:
    """LRN for onnx's evaluator as the operator's definition reads: its own sums the
    squares for the first N channels only (a loop over the batch axis's length). Sums
    in float32, or float64 for float64 inputs."""
    from onnx.reference.op_run import OpRun

    class LRN(OpRun):
        op_domain = ""

        def _run(self, x, alpha=None, beta=None, bias=None, size=None):
            lo = (size - 1) // 2
            sq = np.pad(x.astype(np.promote_types(x.dtype, np.float32)) ** 2,
                        [(0, 0), (lo, size - 1 - lo)] + [(0, 0)] * (x.ndim - 2))
            total = sum(sq[:, k:k + x.shape[1]] for k in range(size))
            return ((x / (bias + alpha / size * total) ** beta).astype(x.dtype),)

    return LRN


def _softmax_before_13() -> list[type]:
    """Softmax and LogSoftmax of opsets 1-12 as the operators' definitions read: the
    input coerced to 2-D at `axis` (default 1). onnx's evaluator applies opset 13's
    (along the last axis), which turns a (1, 1000, 1, 1) Softmax into ones."""
    from onnx.reference.op_run import OpRun

    def coerced(node, x, log):
        given = [a.i for a in node.attribute if a.name == "axis"]  # the evaluator would
        axis = (given[0] if given else 1) % max(x.ndim, 1)  # fill in opset 13's default
        flat = x.reshape(int(np.prod(x.shape[:axis])), -1).astype(np.float32)
        d = flat - flat.max(axis=1, keepdims=True)
        e = np.exp(d)
        y = d - np.log(e.sum(axis=1, keepdims=True)) if log else e / e.sum(axis=1, keepdims=True)
        return (y.reshape(x.shape).astype(x.dtype),)

    class Softmax(OpRun):
        op_domain = ""

        def _run(self, x, axis=None):
            return coerced(self.onnx_node, x, False)

    class LogSoftmax(OpRun):
        op_domain = ""

        def _run(self, x, axis=None):
            return coerced(self.onnx_node, x, True)

    return [Softmax, LogSoftmax]


def model_path(prog: Program, program: str = "") -> str:
    """The model the program records (its path as given to pimc compile), or, where that
    path does not lead from here, the file of that name beside the program (a training
    step's OUTPUT.train.onnx, when the program is run from another folder)."""
    path = dict(prog.meta)["model"]
    beside = Path(program).parent / Path(path).name
    return str(beside) if program and not Path(path).exists() and beside.exists() else path


def reference(prog: Program, program: str = "") -> tuple[Kernel, onnx.ModelProto, Imported]:
    """The IR the program (file `program`) was lowered from, with its recorded splits
    (the order-matched reference evaluates it), the model, and what its import made of it."""
    meta = dict(prog.meta)
    model = load_model(model_path(prog, program))
    variables = frozenset(entry.split(":")[2] for entry in meta.get("state", "").split())
    imported = import_model(model, meta["model"], dtype=meta.get("dtype", "f32"),
                            variables=variables)
    # the IR the compiler lowered: after the same passes (CSE merges, say, a Softmax's
    # and a LogSoftmax's common reductions, whose split the program records once)
    ran = run_passes(imported.kernel, "", meta.get("mode", "ieee"), skip=("typecheck",))
    assert ran is not None
    return recorded(ran, meta), model, imported


def onnx_reference(model: onnx.ModelProto, imported: Imported, kernel: Kernel, dtype: str,
                   inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """onnx's reference evaluator on the same inputs (dequantised), or None where it is
    not trusted."""
    from onnx.reference import ReferenceEvaluator

    params = {p.name: parse_dtype(p.dtype) for p in kernel.params}
    onnx_inputs = {i.name: dequantize(inputs[i.name], params[i.name]).astype(np.float32)
                   if params[i.name].kind in (Kind.FLOAT, Kind.FIXED) and dtype != "f32"
                   else inputs[i.name] for i in model.graph.input if i.name in inputs}
    if imported.opset < 14 and any(n.op_type == "BatchNormalization" for n in model.graph.node):
        print("verify: onnx's reference evaluator is not trusted on BatchNormalization-9: "
              "no tolerance comparison")
        return None
    ops = [lrn_reference(), *(_softmax_before_13() if imported.opset < 13 else [])]
    with np.errstate(all="ignore"):
        return dict(zip([o.name for o in model.graph.output],
                        ReferenceEvaluator(model, new_ops=ops).run(None, onnx_inputs),
                        strict=True))


def verify_model(prog: Program, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                 name: str) -> int:
    dtype = dict(prog.meta).get("dtype", "f32")
    kernel, model, imported = reference(prog, name)
    want, checkable = evaluate(kernel, inputs, dict(prog.meta).get("mode", "ieee"))
    theirs = onnx_reference(model, imported, kernel, dtype, inputs)
    bad = 0
    for t in prog.outputs:
        dt = parse_dtype(t.dtype)
        got = dt.to_bits(outputs[t.name]).astype(np.uint64)
        mask = checkable[t.name]
        wrong = int(np.count_nonzero((got != want[t.name]) & mask))
        if theirs is None:
            print(f"verify: {t.name}: {got.size - wrong} of {got.size} elements bit-exact "
                  f"against the order-matched reference")
            bad += wrong
            continue
        rtol, atol = tolerance(dtype)
        ours = dequantize(outputs[t.name], dt)
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
