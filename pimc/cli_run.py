"""`pimc run`: a program executed on the bit-level runtime (or counted without executing,
or run S times as training steps), its report, and `--verify` against the reference the
program records."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pimc.fileio import Writer, check_paths, load_arrays, write_all
from pimc.isa.arch import Arch
from pimc.isa.dtypes import Kind, parse_dtype, quantize
from pimc.isa.errors import PimError
from pimc.isa.text import load_program
from pimc.isa.uop import Program

if TYPE_CHECKING:
    from pimc.runtime.stats import Stats

def _ram() -> float:
    """This computer's memory, in bytes."""
    return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _with_arch(prog: Program, path: str) -> Program:
    """Re-cost a program under another architecture file; the geometry must match."""
    arch = Arch.from_toml(path)
    for name in ("rows", "cols", "partitions"):
        if getattr(arch, name) != getattr(prog.arch, name):
            raise PimError(f"{path}: {name}={getattr(arch, name)} but the program was built "
                           f"for {name}={getattr(prog.arch, name)}")
    return dataclasses.replace(prog, arch=arch)


def _host_arrays(prog: Program, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """npz cannot hold bfloat16 portably: bf16 tensors are saved as their uint16 bits."""
    out = {}
    for t in prog.outputs:
        dt = parse_dtype(t.dtype)
        value = outputs[t.name]
        out[t.name] = value.view(dt.storage) if dt.kind is Kind.FLOAT and dt.name == "bf16" else value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from pimc.runtime import run_program
    from pimc.runtime.hostio import complete_inputs, host_values

    check_paths([args.output, args.stats], [args.program, args.inputs, args.arch])
    prog = load_program(args.program)
    if args.arch:
        prog = _with_arch(prog, args.arch)
    inputs = load_arrays(args.inputs) if args.inputs else {}
    weight_names = [k for k in dict(prog.meta).get("weight-names", "").split(",") if k]
    if args.inputs:  # say which inputs the file leaves to chance (weights come later)
        drawn = sorted({t.name for t in prog.inputs} - set(inputs) - set(weight_names))
        if drawn:
            print(f"{args.inputs}: no {', '.join(drawn)}; drawn at random (--seed "
                  f"{args.seed})", file=sys.stderr)
    weights = dict(prog.meta).get("weights")
    if weights:  # the model's weights, written beside the program by pimc compile
        sidecar = str(Path(args.program).parent / weights)
        check_paths([args.output, args.stats], [sidecar])
        stored = load_arrays(sidecar)
        missing = [k for k in weight_names if k not in stored]
        if missing:
            raise PimError(f"{sidecar}: the weights file lacks {', '.join(missing)}, which "
                           f"{args.program} needs (compile the model again)")
        inputs = {**stored, **inputs}
    if "model" in dict(prog.meta):  # a model's inputs: standard normal values, not bit noise
        rng = np.random.default_rng(args.seed)
        real = dict(prog.meta).get("dtype", "f32")[0] in "fbq"
        for t in prog.inputs:
            dt = parse_dtype(t.dtype)
            if t.name not in inputs:
                inputs[t.name] = (rng.normal(size=t.shape) if real and dt.kind in (
                    Kind.FLOAT, Kind.FIXED) else rng.integers(-4, 5, size=t.shape))
            inputs[t.name] = quantize(inputs[t.name], dt)  # fixed point: rounded by the host
    if args.steps is not None:
        return _cmd_steps(args, prog, inputs)
    if args.data or args.save_model:
        raise PimError("--data and --save-model go with --steps")
    if args.count_only:
        if args.verify or args.output or args.faults:
            raise PimError("--count-only executes nothing: it cannot --verify, inject "
                           "--faults or write -o")
        from pimc.runtime.count import count_program

        stats = count_program(prog, args.program)
        print(f"{args.program}: {sum(stats.ops.values()):,} micro-ops (counted, not "
              f"executed) on {prog.crossbars:,} crossbars of {prog.arch.rows}x{prog.arch.cols}")
        print(stats.table())
        _wear_note(prog, stats)
        if "state" in dict(prog.meta):  # a training step: its phases
            from pimc.train import phase_table

            print("\nper phase (energy upper bounds)")
            print(phase_table(stats.layers))
        _print_layers(stats)
        write_all(_stats_file(args, stats))
        return 0
    if args.verify or args.faults:  # the reference sees the values the host writes
        inputs = complete_inputs(prog.inputs, inputs, args.seed)
        inputs = {t.name: host_values(t, inputs[t.name], args.program) for t in prog.inputs}
    model = _fault_model(args.faults, prog) if args.faults else None
    sharded = args.workers is not None or args.scheduler is not None
    if sharded and model is not None:
        raise PimError("--faults runs in one process: it cannot be combined with --workers "
                       "or --scheduler")
    if sharded and args.stream:
        raise PimError("--stream runs in one process: it cannot be combined with --workers "
                       "or --scheduler")
    from pimc.runtime.stream import needs_streaming, run_streamed

    streaming = args.stream or (not sharded and model is None and needs_streaming(
        prog, _ram() / 2, not args.no_strict))
    if streaming:
        if model is not None:
            raise PimError("--faults needs the whole memory at once: it cannot --stream")
        outputs, stats, streamed = run_streamed(
            prog, inputs, name=args.program, seed=args.seed, strict=not args.no_strict,
            engine=args.engine, memory_bytes=_ram())
        for line in streamed.lines():
            print(line)
    elif sharded:
        from pimc.runtime.cluster import run_sharded

        outputs, stats, report = run_sharded(
            prog, inputs, workers=args.workers, scheduler=args.scheduler,
            name=args.program, seed=args.seed, strict=not args.no_strict, engine=args.engine)
        for line in report.lines():
            print(line)
    else:
        outputs, stats = run_program(prog, inputs, name=args.program, seed=args.seed,
                                     strict=not args.no_strict, faults=model,
                                     engine=args.engine)
    print(f"{args.program}: {sum(stats.ops.values()):,} micro-ops executed on "
          f"{prog.crossbars:,} crossbars of {prog.arch.rows}x{prog.arch.cols}")
    print(stats.table())
    _wear_note(prog, stats)
    _print_layers(stats)
    if model is not None:
        clean, _ = run_program(prog, inputs, name=args.program, seed=args.seed,
                               strict=not args.no_strict, count_writes=False,
                               engine=args.engine)
        _report_faults(model, stats, outputs, clean)
    status = verify_outputs(prog, inputs, outputs, args.program) if args.verify else 0
    files = _stats_file(args, stats)
    if args.output:
        arrays = _host_arrays(prog, outputs)
        files.append((args.output, lambda f: np.savez(f, **arrays)))
    write_all(files)  # the outputs and the statistics together, or neither
    return status


def _cmd_steps(args: argparse.Namespace, prog: Program, inputs: dict[str, np.ndarray]) -> int:
    """`--steps S`: the training program run S times, weights kept in the crossbars."""
    from pimc.frontend.onnx_import import load_model
    from pimc.train import Training, phase_table, run_steps, with_weights

    if args.count_only or args.faults or args.workers or args.scheduler or args.stream:
        raise PimError("--steps runs in one process on the whole memory: it cannot be "
                       "combined with --count-only, --faults, --workers, --scheduler or --stream")
    check_paths([args.output, args.stats, args.save_model], [args.data])
    final, losses, bad, stats = run_steps(
        prog, inputs, args.program, args.steps, args.data, strict=not args.no_strict,
        engine=args.engine, verify=args.verify, seed=args.seed)
    n = len(losses)
    shown = sorted({0, n - 1, *range(0, n, max(1, n // 10))})
    print(f"{args.program}: {n} training steps on {prog.crossbars:,} crossbars; loss "
          + ", ".join(f"step {i}: {losses[i]:.6g}" for i in shown))
    energy = stats.total_energy_fj / n
    print(f"per step: {stats.total_cycles:,} cycles, {stats.latency_ns / 1e3:,.1f} us, "
          f"{energy / 1e6:,.2f} nJ (energy as executed, over {n} steps)")
    print(f"all {n} steps:")
    print(stats.table())
    if stats.endurance is not None and stats.endurance.max_writes_per_cell:
        e = stats.endurance
        worst = e.max_writes_per_cell / n  # the host's set-up writes spread over the steps
        levelled = e.cell_writes / n / max(e.cells_written, 1)
        limit = prog.arch.endurance_writes
        print(f"wear: at most {worst:,.1f} writes a cell per step: {limit / worst:,.0f} steps "
              f"to the endurance of {limit:,}; levelled evenly over the {e.cells_written:,} "
              f"cells written, {limit / levelled:,.0f} steps")
    _wear_note(prog, stats)
    print()
    print("per phase (per step; energy as executed, averaged over the steps)")
    print(phase_table(stats.layers))
    _print_layers(stats, "as executed, averaged over the steps")
    files = _stats_file(args, stats)
    if args.output:
        arrays = {**final, "loss": np.array(losses)}
        files.append((args.output, lambda f: np.savez(f, **arrays)))
    if args.save_model:
        training = Training.of(prog, args.program)
        model = with_weights(load_model(training.source), final,
                             dict(prog.meta).get("dtype", "f32"))
        files.append((args.save_model, lambda f: f.write(model.SerializeToString())))
    write_all(files)
    return 1 if bad else 0


def _wear_note(prog: Program, stats: Stats) -> None:
    from pimc.runtime.endurance import wear_fits, wear_not_counted

    if stats.endurance is None and not wear_fits(prog.crossbars):
        print(wear_not_counted(prog.crossbars))


def _fault_model(spec: str, prog: Program):
    from pimc.runtime.faults import FaultModel, fault_spec

    return FaultModel(fault_spec(spec, prog.arch), prog.arch, prog.crossbars)


def _report_faults(model, stats: Stats, outputs: dict[str, np.ndarray],
                   clean: dict[str, np.ndarray]) -> None:
    """What the faults did, and which outputs differ from a fault-free run."""
    print()
    for line in model.report.lines():
        print(line)
    changed: dict[str, int] = {}
    for name, want in clean.items():
        got = outputs[name]
        differ = got.view(f"u{got.itemsize}") != want.view(f"u{want.itemsize}")
        changed[name] = int(np.count_nonzero(differ))
        first = (f"; first at {[int(i) for i in np.argwhere(differ)[0]]}"
                 if changed[name] else "")
        print(f"faults: output {name}: {changed[name]:,} of {got.size:,} elements differ from "
              f"a fault-free run{first}")
    assert stats.faults is not None
    stats.faults["outputs_changed"] = changed


def _print_layers(stats: Stats, how: str = "") -> None:
    from pimc.runtime.count import layer_table

    if stats.layers:
        print()
        print("per layer (source line or ONNX node; energy "
              + (how or ("upper bounds" if stats.counted else "as executed")) + ")")
        print(layer_table(stats.layers))


def _stats_file(args: argparse.Namespace, stats: Stats) -> list[tuple[str, Writer]]:
    if not args.stats:
        return []
    text = json.dumps({"program": args.program, **stats.as_dict()}, indent=2)
    return [(args.stats, lambda f: f.write(text.encode() + b"\n"))]


def verify_outputs(prog: Program, inputs: dict[str, np.ndarray],
                   outputs: dict[str, np.ndarray], name: str) -> int:
    """Rebuild the reference from the program's .meta records; 0 if every bit agrees."""
    meta = dict(prog.meta)
    if "model" in meta:
        from pimc.reference.onnx_verify import verify_model

        return verify_model(prog, inputs, outputs, name)
    from pimc.reference.evaluate import evaluate
    from pimc.reference.kernel_verify import reference

    want, checkable = evaluate(reference(prog, name), inputs, meta.get("mode", "ieee"))
    bad_total = 0
    for t in prog.outputs:
        dt = parse_dtype(t.dtype)
        got = dt.to_bits(outputs[t.name]).astype(np.uint64)
        mask = checkable[t.name]
        bad = np.argwhere((got != want[t.name]) & mask)
        unchecked = int(np.size(mask) - np.count_nonzero(mask))
        note = f", {unchecked} outside the ftz domain not compared" if unchecked else ""
        if len(bad):
            i = tuple(int(v) for v in bad[0])
            print(f"verify: {t.name}: {len(bad)} of {got.size} elements differ; first at "
                  f"{list(i)}: got {int(got[i]):#x}, expected {int(want[t.name][i]):#x}{note}")
            bad_total += len(bad)
        else:
            print(f"verify: {t.name}: {got.size - unchecked} of {got.size} elements "
                  f"bit-exact{note}")
    return 1 if bad_total else 0
