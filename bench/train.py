"""Training steps compiled to micro-ops, run on the simulator and verified, and the
training step of whole ImageNet networks counted and projected.

    python bench/train.py [--json FILE] [--whole-timeout S] [--whole-dtype D]
                          [--whole-memory-gb G] [--no-whole | --only-whole]

Executed cases (`pimc compile --train`, `pimc run --steps S --verify`): the shipped
perceptron on its blobs and a small CNN on checkerboards, in float32 and bfloat16; every
step bit-exact against the order-matched reference and within tolerance of onnx's
evaluator. Every count comes from the program. The "FloatPIM formula" column is a
comparison only: per fully-connected layer of K inputs and J outputs, feed-forward
(T_mul + T_add) K, error backward (T_mul + T_add) J + T_mul, weight update J T_mul + T_add
(FloatPIM Sec. 4.3, with its Sec. 6 T_mul and T_add), no loss, moves or INITs.

Whole networks (the onnx wheel's AlexNet, ResNet-50, VGG-19 with seeded random weights):
the training step is built, compiled (bfloat16 by default) within a memory cap (16 GB
by default) and a time limit and counted; training
images/s (batch 1: one image a step, copies of the step filling the memory, no
pipelining across steps, whose weights depend on the step before) on FloatPIM's memory
(8,192 crossbars) and ConvPIM's (393,216; 3 ns a cycle). A network the training path
cannot differentiate is listed with the nodes that stop it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from pimc.cli import main as cli  # noqa: E402
from pimc.isa.errors import PimError  # noqa: E402
from samples.make_onnx_samples import blobs, checkerboards, gemm_relu_gemm, training_cnn  # noqa: E402

MEMORIES = {"FloatPIM": (8192, 1.1e-9), "ConvPIM": (393216, 3e-9)}  # crossbars, cycle
CASES = [  # name, model, data, steps, lr, batch
    ("perceptron 8-16-8 (sample)", gemm_relu_gemm, blobs, 20, 0.1, None),
    ("small CNN", training_cnn, lambda: checkerboards(40), 10, 0.5, 4),
]


def floatpim_step(model: onnx.ModelProto, dtype: str) -> float | None:
    """FloatPIM's formula for a step of a model of Gemm layers (None for others)."""
    spec = importlib.util.spec_from_file_location("arith_bench", HERE / "arith.py")
    assert spec and spec.loader
    arith = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arith)
    mul, add = arith.floatpim_formula("mul", dtype), arith.floatpim_formula("add", dtype)
    tm, ta = mul["nor"] + mul["search"], add["nor"] + add["search"]
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    layers = [n for n in model.graph.node if n.op_type in ("Gemm", "Conv", "MatMul")]
    if any(n.op_type != "Gemm" for n in layers):
        return None
    total = 0.0
    for i, n in enumerate(layers):
        trans = any(a.name == "transB" and a.i for a in n.attribute)
        j, k = inits[n.input[1]] if trans else inits[n.input[1]][::-1]
        total += (tm + ta) * k + j * tm + ta  # feed-forward, weight update
        if i:  # error backward into the layer before
            total += (tm + ta) * j + tm
    return total


def executed(tmp: Path, name: str, make, data, steps: int, lr: float,
             batch: int | None, dtype: str) -> dict[str, object]:
    model, src, prog = make(), tmp / "m.onnx", tmp / "m.uop"
    onnx.save(model, str(src))
    np.savez(tmp / "data.npz", **data())
    flags = ["--train", "--lr", str(lr), "--dtype", dtype, *(["--batch", str(batch)] if batch else [])]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["compile", str(src), "-o", str(prog), *flags]) == 0
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = cli(["run", str(prog), "--steps", str(steps), "--data", str(tmp / "data.npz"),
                    "--verify", "-o", str(tmp / "out.npz"), "--stats", str(tmp / "s.json")])
    run_s = time.perf_counter() - start
    stats = json.loads((tmp / "s.json").read_text())
    loss = np.load(tmp / "out.npz")["loss"]
    wear = next((line for line in text.getvalue().splitlines() if line.startswith("wear:")), "")
    formula = floatpim_step(model, dtype)
    return {"model": name, "dtype": dtype, "steps": steps, "loss_first": float(loss[0]),
            "loss_last": float(loss[-1]), "loss_last4_mean": float(loss[-4:].mean()),
            "verified": code == 0, "cycles_per_step": stats["cycles"],
            "energy_per_step_nJ": stats["energy_fj"] / steps / 1e6,
            "crossbars": stats["crossbars_used"], "compile_s": compile_s, "run_s": run_s,
            "wear": wear, "floatpim_formula_cycles": formula}


def whole(tmp: Path, light: str, timeout: float, dtype: str, memory_gb: int
          ) -> list[dict[str, object]]:
    """A whole network's training step: built, compiled (in a child process with a
    memory and time limit), counted, projected."""
    import subprocess

    from pimc.frontend.onnx_train import TrainSpec, training_step
    from samples.light import load_light

    base = {"model": f"{light} (training step, batch 1)", "dtype": dtype, "steps": 1,
            "verified": False}
    try:
        step = training_step(load_light(light), TrainSpec(batch=1), light)
    except PimError as exc:
        return [{**base, "note": f"refused: {exc}"}]
    src, prog = tmp / f"{light}.onnx", tmp / f"{light}.uop"
    onnx.save(load_light(light), str(src))
    big = tmp / "big.toml"
    big.write_text("max_crossbars = 33554432\n")  # room to count; judged per memory
    code = ("import resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({memory_gb} << 30, {memory_gb} << 30))\n"
            "from pimc.cli import main\n"
            f"sys.exit(main(['compile', {str(src)!r}, '-o', {str(prog)!r}, '--train', "
            f"'--batch', '1', '--dtype', {dtype!r}, '--arch', {str(big)!r}]))\n")
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return [{**base, "note": f"compile did not finish in {timeout:.0f} s "
                 f"({len(step.model.graph.node)} nodes in the step graph)"}]
    compile_s = time.perf_counter() - start
    if done.returncode:
        return [{**base, "note": "compile failed: " + (done.stderr.strip().splitlines() or
                                                       ["out of memory"])[-1][:300]}]
    with contextlib.redirect_stdout(io.StringIO()):
        cli(["run", str(prog), "--count-only", "--stats", str(tmp / "w.json")])
    stats = json.loads((tmp / "w.json").read_text())
    cycles, crossbars = stats["cycles"], stats["crossbars_used"]
    out = []
    for memory, (size, cycle) in MEMORIES.items():
        copies = size // crossbars
        out.append({**base, "memory": memory, "compile_s": compile_s, "cycles_per_step": cycles,
                    "energy_per_step_nJ": stats["energy_fj"] / 1e6,
                    "crossbars": crossbars, "img_per_s": copies / (cycles * cycle)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--whole-timeout", type=float, default=2400.0,
                        help="seconds each whole network's compile may take")
    parser.add_argument("--whole-dtype", default="bf16", help="the whole networks' dtype")
    parser.add_argument("--whole-memory-gb", type=int, default=16,
                        help="address space each whole network's compile may take")
    parser.add_argument("--no-whole", action="store_true", help="only the executed cases")
    parser.add_argument("--only-whole", action="store_true", help="only the whole networks")
    args = parser.parse_args()
    records: list[dict[str, object]] = []
    print(f"{'model':<34}{'dtype':>6}{'steps':>6}{'loss first -> last 4':>24}{'verified':>9}"
          f"{'cycles/step':>13}{'nJ/step':>10}{'FloatPIM formula':>18}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, make, data, steps, lr, batch in [] if args.only_whole else CASES:
            for dtype in ("f32", "bf16"):
                r = executed(tmp, name, make, data, steps, lr, batch, dtype)
                records.append(r)
                formula = r["floatpim_formula_cycles"]
                print(f"{name:<34}{dtype:>6}{steps:>6}"
                      f"{r['loss_first']:>12.4f} -> {r['loss_last4_mean']:<8.4f}"
                      f"{'yes' if r['verified'] else 'NO':>9}{r['cycles_per_step']:>13,}"
                      f"{r['energy_per_step_nJ']:>10,.1f}"
                      f"{f'{formula:,.0f}' if formula else '-':>18}")
        if not args.no_whole:
            print(f"\n{'network':<44}{'memory':>9}{'cycles/step':>14}{'crossbars':>12}"
                  f"{'train img/s':>13}")
            for light in ("light_bvlc_alexnet", "light_resnet50", "light_vgg19"):
                for r in whole(tmp, light, args.whole_timeout, args.whole_dtype,
                               args.whole_memory_gb):
                    records.append(r)
                    if "note" in r:
                        print(f"{r['model']:<44}  {r['note'][:160]}")
                    else:
                        print(f"{r['model']:<44}{r['memory']:>9}{r['cycles_per_step']:>14,}"
                              f"{r['crossbars']:>12,}{r['img_per_s']:>13,.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory of this process {peak:,.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
