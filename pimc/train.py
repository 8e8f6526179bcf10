"""`pimc run --steps S --data FILE`: a compiled training step run S times on one memory.

The host writes the weights once (set-up) and each step's batch; each step's program ends
by moving the new weights into the placements the next step reads (`pimc/lower/link.py`),
so between steps the host only reads the loss. `--verify` replays the steps on the
order-matched reference (the step's IR evaluated with the hardware's orders, the weights
fed back) bit for bit, and each step on onnx's evaluator (from the same weights) within
tolerance. `--save-model` writes the model that was trained with the final weights."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from pimc.fileio import load_arrays
from pimc.isa.dtypes import dequantize, parse_dtype, quantize
from pimc.isa.errors import PimError
from pimc.isa.uop import Program, TensorIO

if TYPE_CHECKING:
    from pimc.runtime.stats import Stats

PHASES = ("forward", "loss", "backward", "update")


@dataclass(frozen=True)
class Training:
    """What a training program's .meta says about it."""

    state: dict[str, str]  # new weight's output -> the weight's input
    tensors: dict[str, str]  # the weight's input -> its tensor in the model
    loss: str
    labels: str
    source: str  # the model that is trained

    @staticmethod
    def of(prog: Program, name: str) -> Training:
        meta = dict(prog.meta)
        if "state" not in meta:
            raise PimError(f"{name}: --steps needs a training program (pimc compile --train)")
        triples = [entry.split(":") for entry in meta["state"].split()]
        return Training({r: p for r, p, _ in triples}, {p: t for _, p, t in triples},
                        meta.get("loss-output", "loss"), meta.get("labels", "labels"),
                        meta.get("trained-from", ""))


def batch_inputs(prog: Program) -> dict[str, TensorIO]:
    """The inputs written every step (one placement each names its shape)."""
    return {t.name: t for t in prog.inputs if not t.setup}


def load_data(path: str, prog: Program, training: Training) -> tuple[dict[str, np.ndarray], int]:
    """The data file's arrays, one per batch input, samples along the first axis; labels
    as class indices (made one-hot) or as rows of the output's shape. Every problem is
    reported, naming the array, before a step runs. Returns the arrays and the sample count."""
    data = load_arrays(path, "cannot read the data")
    wanted = batch_inputs(prog)
    problems = [f"no array '{n}' (the program's batch inputs: {', '.join(wanted)})"
                for n in wanted if n not in data]
    extra = sorted(set(data) - set(wanted))
    if extra:
        problems.append(f"arrays the program does not read: {', '.join(extra)}")
    out, counts = {}, set()
    for name, t in wanted.items():
        if name not in data:
            continue
        a = data[name]
        per = tuple(t.shape[1:])
        if name == training.labels and a.ndim == 1 and a.dtype.kind in "iu":
            classes = t.shape[-1]
            if a.size and (a.min() < 0 or a.max() >= classes):
                problems.append(f"'{name}': class indices must lie in 0..{classes - 1}")
                continue
            a = np.eye(classes, dtype=np.float32)[a]
        if a.dtype.kind not in "fiu":
            problems.append(f"'{name}': {a.dtype} is not numeric")
        elif a.ndim != len(t.shape) or tuple(a.shape[1:]) != per:
            problems.append(f"'{name}': shape {list(a.shape)}, expected [samples, "
                            f"{', '.join(map(str, per))}]"
                            + (" or class indices [samples]" if name == training.labels else ""))
        elif a.shape[0] < t.shape[0]:
            problems.append(f"'{name}': {a.shape[0]} samples, fewer than a batch of "
                            f"{t.shape[0]}")
        else:
            out[name] = a
            counts.add(a.shape[0])
    if len(counts) > 1:
        problems.append(f"the arrays hold different numbers of samples: {sorted(counts)}")
    if problems:
        raise PimError(f"{path}: " + "; ".join(problems))
    return out, counts.pop()


def batch(data: dict[str, np.ndarray], prog: Program, step: int, samples: int
          ) -> dict[str, np.ndarray]:
    """Step `step`'s batch: the next samples in order, wrapping around."""
    out = {}
    for name, t in batch_inputs(prog).items():
        size = t.shape[0]
        index = (step * size + np.arange(size)) % samples
        out[name] = quantize(data[name][index].astype(np.float64), parse_dtype(t.dtype))
    return out


def phase_of(layer: str) -> str:
    """A report row's phase, from the node names the training graph gives."""
    for phase in ("update", "backward", "loss"):
        if f" {phase}/" in layer or layer.startswith(f"{phase}/"):
            return phase
    return "forward"


def phase_table(layers: list[dict[str, object]]) -> str:
    rows = {p: [0, 0.0, 0] for p in PHASES}
    for r in layers:
        row = rows[phase_of(str(r["layer"]))]
        row[0] += int(r["cycles"])
        row[1] += float(r["energy_fj"])
        row[2] += int(r["movement_cycles"])
    lines = [f"{'phase':<10}{'cycles':>12}{'energy nJ':>12}{'move %':>8}"]
    for p, (c, e, m) in rows.items():
        lines.append(f"{p:<10}{c:>12,}{e / 1e6:>12,.2f}{100 * m / max(c, 1):>8.1f}")
    return "\n".join(lines)


def with_weights(model: onnx.ModelProto, weights: dict[str, np.ndarray], dtype: str
                 ) -> onnx.ModelProto:
    """A copy of `model` with these initializers replaced (as float32)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.name in weights:
            value = dequantize(weights[t.name], parse_dtype(dtype)).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(value.reshape(tuple(t.dims)), t.name))
    return out


def run_steps(prog: Program, inputs: dict[str, np.ndarray], program: str, steps: int,
              data_path: str | None, *, strict: bool, engine: str, verify: bool, seed: int
              ) -> tuple[dict[str, np.ndarray], list[float], int, Stats]:
    """Run `steps` steps; returns the final weights (by the model's tensor names), each
    step's loss, the count of reference mismatches (0 without `verify`) and the
    statistics."""
    from pimc.runtime.hostio import host_values
    from pimc.runtime.machine import Machine

    training = Training.of(prog, program)
    if data_path is None:
        raise PimError(f"{program}: --steps needs --data FILE (arrays of samples for "
                       f"{', '.join(batch_inputs(prog))})")
    data, samples = load_data(data_path, prog, training)
    machine = Machine(prog, program, strict=strict, engine=engine)
    written = machine.host.load({**inputs, **batch(data, prog, 0, samples)}, seed)
    outs = {t.name: t for t in prog.outputs}
    check = _Replay(prog, written, training, program) if verify else None
    losses = []
    for step in range(steps):
        now = {name: host_values(t, values, program) for (name, t), values in zip(
            batch_inputs(prog).items(), batch(data, prog, step, samples).values(),
            strict=True)}
        for t in prog.inputs if step else ():
            if not t.setup:
                machine.host.write(t, now[t.name])
        machine.run()
        loss = machine.host.read(outs[training.loss])
        losses.append(float(dequantize(loss, parse_dtype(outs[training.loss].dtype))))
        if check is not None:
            check.step(step, now, loss)
    final = {w: machine.host.read(outs[new]) for new, w in training.state.items()}
    stats = machine.stats
    from pimc.runtime.count import layer_report

    per_step = {k: Counter({kind: v / steps for kind, v in c.items()})
                for k, c in machine.layer_energy.items()}  # executed over `steps` steps
    stats.layers = layer_report(prog, per_step, machine.walker)
    bad = check.finish(final) if check is not None else 0
    return {training.tensors[w]: v for w, v in final.items()}, losses, bad, stats


class _Replay:
    """The order-matched reference, step by step (its new weights fed back), and onnx's
    evaluator on each step from the same weights."""

    def __init__(self, prog: Program, written: dict[str, np.ndarray], training: Training,
                 program: str) -> None:
        from pimc.reference.onnx_verify import reference

        self.prog, self.training = prog, training
        self.meta = dict(prog.meta)
        self.kernel, self.model, self.imported = reference(prog, program)
        self.values = dict(written)  # what the reference's next step reads
        self.bad = 0
        self.theirs: dict[str, np.ndarray] | None = None
        self.want: dict[str, np.ndarray] = {}

    def step(self, index: int, batch_values: dict[str, np.ndarray], loss: np.ndarray) -> None:
        from pimc.reference.evaluate import evaluate
        from pimc.reference.onnx_verify import onnx_reference, tolerance

        self.values.update(batch_values)
        want, _ = evaluate(self.kernel, self.values, self.meta.get("mode", "ieee"))
        dts = {t.name: parse_dtype(t.dtype) for t in self.prog.outputs}
        name = self.training.loss
        got = dts[name].to_bits(loss).astype(np.uint64).reshape(-1)
        if not np.array_equal(got, want[name].reshape(-1)):
            self.bad += 1
            print(f"verify: step {index}: the loss differs from the order-matched reference")
        dtype = self.meta.get("dtype", "f32")
        weights = {self.training.tensors[w]: self.values[w]
                   for w in self.training.state.values()}
        theirs = onnx_reference(with_weights(self.model, weights, dtype), self.imported,
                                self.kernel, dtype, self.values)
        if theirs is not None:
            rtol, atol = tolerance(dtype)
            ours = float(dequantize(loss, dts[name]))
            if not np.isclose(ours, float(theirs[name]), rtol=rtol, atol=atol):
                self.bad += 1
                print(f"verify: step {index}: loss {ours:.6g}, onnx's evaluator "
                      f"{float(theirs[name]):.6g}")
        self.theirs = theirs
        self.want = want
        for new, w in self.training.state.items():
            self.values[w] = dts[new].from_bits(want[new]).reshape(np.shape(self.values[w]))

    def finish(self, final: dict[str, np.ndarray]) -> int:
        from pimc.reference.onnx_verify import tolerance

        rtol, atol = tolerance(self.meta.get("dtype", "f32"))
        for new, w in self.training.state.items():
            dt = parse_dtype(next(t.dtype for t in self.prog.outputs if t.name == new))
            got = dt.to_bits(final[w]).astype(np.uint64).reshape(-1)
            exact = int(np.count_nonzero(got == self.want[new].reshape(-1)))
            line = (f"verify: {w} after the last step: {exact} of {got.size} elements "
                    "bit-exact against the order-matched reference")
            self.bad += got.size - exact
            if self.theirs is not None:
                close = np.isclose(dequantize(final[w], dt),
                                   np.asarray(self.theirs[new], dtype=np.float64),
                                   rtol=rtol, atol=atol, equal_nan=True)
                line += (f"; {int(close.sum())} of {close.size} within rtol {rtol:g} "
                         f"atol {atol:g} of onnx's evaluator")
                self.bad += int(close.size - close.sum())
            print(line)
        return self.bad
