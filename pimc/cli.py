"""The `pimc` command line: `pimc compile` a kernel, `pimc run` a .uop program on the
bit-level runtime (and `--verify` it against the reference it records)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pimc import __version__
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
    from pimc.frontend.dsl import parse_kernels
    from pimc.passes.evaluate import evaluate
    from pimc.passes.typecheck import typecheck

    meta = dict(prog.meta)
    if "model" in meta:
        from pimc.onnx_verify import verify_model

        return verify_model(prog, inputs, outputs, name)
    if "kernel-source" not in meta:
        raise PimError(f"{name}: the program records no computation to verify against "
                       "(it was not compiled from a kernel)")
    source = meta["kernel-source"]
    kernel = next(k for k in parse_kernels(source, prog.source) if k.name == meta["kernel"])
    want, checkable = evaluate(typecheck(kernel, source), inputs, meta.get("mode", "ieee"),
                                prog.arch.rows)
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


def cmd_show(args: argparse.Namespace) -> int:
    from pimc.isa.check import validate
    from pimc.listing import listing

    prog = load_program(args.program)
    validate(prog, args.program)  # what the listing costs must be a program that can run
    sys.stdout.write(listing(prog, summary_only=args.summary, flat_ops=args.flat))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from pimc.compile import compile_source
    from pimc.isa.text import print_program

    if args.list_passes:
        from pimc.passes.pipeline import describe

        print(describe())
        return 0
    if not args.source or not (args.output or args.stop_after):
        raise PimError("pimc compile SOURCE -o OUTPUT (or --stop-after PASS, or --list-passes)")

    try:
        text = "" if args.source.endswith(".onnx") else Path(args.source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PimError(f"{args.source}: cannot read: {exc}") from None
    arch = Arch.from_toml(args.arch) if args.arch else None
    if args.output:
        check_paths([args.output, _sidecar(args.output)], [args.source, args.arch, args.avoid])
    files: list[tuple[str, Writer]] = []
    if args.source.endswith(".onnx"):
        prog, note = _compile_onnx(args, arch, files)
    elif args.train:
        raise PimError(f"{args.source}: --train is for ONNX models")
    else:
        prog, note = compile_source(text, args.source, kernel=args.kernel, arch=arch,
                                    mode=args.dtype_mode, runs=args.runs,
                                    wear_level=args.wear_level, print_after=args.print_after,
                                    stop_after=args.stop_after), ""
    if prog is None:  # --stop-after: the IR was printed, nothing is written
        return 0
    if args.avoid:
        from pimc.avoid import avoid
        from pimc.isa.faults import load_faults

        prog, placed = avoid(prog, load_faults(args.avoid), args.source)
        note += f"; --avoid: {placed}"
    listing = print_program(prog)
    write_all([*files, (args.output, lambda f: f.write(listing.encode()))])
    columns = dict(prog.meta).get("columns")
    from pimc.isa.cost import item_counts

    routines, memo = {r.name: r for r in prog.routines}, {}
    executed = sum(item_counts(i, routines, prog.arch, memo)[0] for i in prog.ops)
    shape = (f"{len(prog.ops):,} top-level items and {len(prog.routines)} routine(s) "
             f"executing {executed:,} micro-ops" if prog.routines else f"{executed:,} micro-ops")
    print(f"{args.output}: {shape} on {prog.crossbars} crossbar(s)"
          + (f"; columns {columns}" if columns else "") + note)
    return 0


def _sidecar(output: str) -> str:
    """Where an ONNX model's weights go: beside its program."""
    return str(Path(output).parent / (Path(output).name + ".weights.npz"))


def _compile_onnx(args: argparse.Namespace, arch: Arch | None,
                  files: list[tuple[str, Writer]]) -> tuple[Program | None, str]:
    """An ONNX model's program; its weights (OUTPUT.weights.npz) added to `files`, to be
    written with the program."""
    from pimc.compile import compile_model
    from pimc.frontend.onnx_import import load_model

    try:
        dt = parse_dtype(args.dtype)
    except PimError as exc:
        raise PimError(f"--dtype: {exc}") from None
    if dt.kind not in (Kind.FLOAT, Kind.FIXED):
        raise PimError(f"--dtype {args.dtype}: a float (f32, bf16, f16) or a Q format")
    if args.runs != 1 or args.wear_level or args.kernel:
        raise PimError(f"{args.source}: --runs, --wear-level and --kernel are for kernel files")
    model, file, state, trained = load_model(args.source), args.source, None, ()
    if args.train:
        from pimc.frontend.onnx_train import TrainSpec, training_step

        step = training_step(model, TrainSpec(args.loss, args.lr, args.batch, args.label),
                             args.source)
        file = str(Path(args.output).parent / (Path(args.output).name + ".train.onnx"))
        model, state = step.model, step.state
        data = model.SerializeToString()
        files.append((file, lambda f: f.write(data)))
        trained = (("trained-from", args.source), ("loss-output", step.loss),
                   ("labels", args.label), ("loss", args.loss), ("lr", repr(args.lr)))
    elif (args.loss, args.lr, args.batch, args.label) != ("ce", 0.01, None, "labels"):
        raise PimError("--loss, --lr, --batch and --label go with --train")
    prog, imported = compile_model(model, file, arch=arch, mode=args.dtype_mode,
                                   dtype=args.dtype, objective=args.objective,
                                   print_after=args.print_after, stop_after=args.stop_after,
                                   state=state)
    if prog is None:
        return None, ""
    prog = dataclasses.replace(prog, meta=(*prog.meta, *trained))
    if not imported.constants:
        return prog, ""
    weights = Path(_sidecar(args.output)).name
    raw = {k: v.view(f"u{v.itemsize}") if v.dtype.kind == "V" else v  # bfloat16 as its bits
           for k, v in imported.constants.items()}
    files.append((_sidecar(args.output), lambda f: np.savez(f, **raw)))
    meta = (("weights", weights), ("weight-names", ",".join(sorted(raw))))
    return dataclasses.replace(prog, meta=(*prog.meta, *meta)), \
        f"; weights in {weights}"


def cmd_report(args: argparse.Namespace) -> int:
    from pimc.report import draw

    draw(args.program, args.output, args.stats)
    print(f"{args.output}: latency, energy and rows busy per layer of {args.program}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pimc", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pimc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a .uop program bit by bit and report its cost")
    run.add_argument("program", help="the .uop file")
    run.add_argument("--inputs", help="an .npz with one array per declared input "
                     "(missing ones are random, from --seed)")
    run.add_argument("-o", "--output", help="write the outputs to this .npz")
    run.add_argument("--stats", help="write the statistics to this JSON file")
    run.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs (default 0)")
    run.add_argument("--arch", help="a TOML file of architecture parameters to cost with")
    run.add_argument("--no-strict", action="store_true",
                     help="skip the MAGIC initialisation and read-before-write checks")
    run.add_argument("--engine", choices=("auto", "numba", "numpy"), default="auto",
                     help="numba: NOR and INIT run in a compiled kernel (the 'fast' extra); "
                          "numpy: numpy calls only; auto (default): numba when installed, "
                          "numpy with --faults")
    run.add_argument("--workers", type=_positive, metavar="N",
                     help="shard the crossbars over N Dask worker processes (a local cluster "
                          "unless --scheduler is given; the 'cluster' extra)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run on the Dask cluster whose scheduler is at ADDRESS "
                          "(e.g. tcp://host:8786), sharded over its workers")
    run.add_argument("--stream", action="store_true",
                     help="make each shard of crossbars only while its data lives, so a "
                          "memory larger than this computer's runs (chosen by itself when "
                          "one machine for the whole memory would need over half of it)")
    run.add_argument("--count-only", action="store_true",
                     help="count cycles, energy, writes and host traffic from the program's "
                          "structure without executing it (data-dependent energy as bounds)")
    run.add_argument("--steps", type=_positive, metavar="S",
                     help="run a training program (pimc compile --train) S times, the "
                          "weights kept in the crossbars between steps")
    run.add_argument("--data", metavar="FILE",
                     help="with --steps: an .npz of samples for each batch input (labels "
                          "as class indices or one-hot rows), batches taken in order")
    run.add_argument("--save-model", metavar="FILE",
                     help="with --steps: write the trained model (.onnx)")
    run.add_argument("--verify", action="store_true",
                     help="compare the outputs bit for bit with the reference the program "
                          "records (programs compiled from kernels)")
    run.add_argument("--faults", metavar="SPEC",
                     help="inject faults: a fault map file, or comma-separated map=FILE, "
                          "stuck0=RATE, stuck1=RATE, stuck=RATE, transient=P (per gate and "
                          "row), endurance=N|arch (writes before a cell sticks), seed=N; the "
                          "outputs are compared with a fault-free run")
    run.set_defaults(func=cmd_run)
    comp = sub.add_parser("compile", help="compile a kernel file or an ONNX model to a .uop "
                                           "program")
    comp.add_argument("source", nargs="?", help="the kernel file (.pk) or model (.onnx)")
    comp.add_argument("-o", "--output", help="the .uop file to write")
    comp.add_argument("--list-passes", action="store_true", help="print the passes in order")
    comp.add_argument("--print-after", metavar="PASS", help="print the IR after this pass")
    comp.add_argument("--stop-after", metavar="PASS",
                      help="print the IR after this pass and stop (nothing is written)")
    comp.add_argument("--kernel", help="which kernel of the file (needed if several)")
    comp.add_argument("--arch", help="a TOML file of architecture parameters")
    comp.add_argument("--dtype-mode", choices=["ieee", "ftz"], default="ieee",
                      help="float semantics (default ieee)")
    comp.add_argument("--dtype", default="f32",
                      help="ONNX models: compute float32 tensors in this type: f32 (default), "
                           "bf16, f16 or a fixed-point Q format such as q8.8 (quantised by "
                           "the host as it writes them)")
    comp.add_argument("--objective", choices=["latency", "energy"], default="latency",
                      help="ONNX models: split matrix products' inner axes to minimise "
                           "latency (default) or energy, within the architecture's memory")
    comp.add_argument("--train", action="store_true",
                      help="compile one SGD training step of the model: forward, loss, "
                           "backward, weight update (the step graph is written beside the "
                           "program as OUTPUT.train.onnx)")
    comp.add_argument("--loss", choices=("ce", "mse"), default="ce",
                      help="with --train: softmax cross-entropy (default) or mean squared error")
    comp.add_argument("--lr", type=float, default=0.01, help="with --train: the learning rate")
    comp.add_argument("--batch", type=_positive, help="with --train: the batch size (the "
                      "input's first axis; default: the model's)")
    comp.add_argument("--label", default="labels",
                      help="with --train: the name of the labels input (default labels)")
    comp.add_argument("--runs", type=int, default=1,
                      help="repeat the kernel this many times in the program (for endurance "
                           "studies)")
    comp.add_argument("--wear-level", action="store_true",
                      help="rotate the scratch columns between runs (FloatPIM's endurance "
                           "management)")
    comp.add_argument("--avoid", metavar="FAULTMAP",
                      help="place the program clear of the stuck cells, columns and rows "
                           "listed in this fault map (moving it onto spare crossbars, "
                           "columns or rows), or say why it cannot")
    comp.set_defaults(func=cmd_compile)
    show = sub.add_parser("show", help="print a program's micro-code by source line")
    show.add_argument("program", help="the .uop file")
    show.add_argument("--summary", action="store_true", help="only the per-line counts")
    show.add_argument("--flat", action="store_true",
                      help="routines and loops expanded into the micro-ops they execute")
    show.set_defaults(func=cmd_show)
    rep = sub.add_parser("report", help="draw latency, energy and crossbar use per layer "
                                        "(needs the plot extra: matplotlib)")
    rep.add_argument("program", help="the .uop file")
    rep.add_argument("-o", "--output", required=True, help="the picture to write (.png, .svg, .pdf)")
    rep.add_argument("--stats", help="a pimc run --stats JSON (executed numbers); without it "
                                     "the program is counted from its structure")
    rep.set_defaults(func=cmd_report)
    return parser


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= 4096:
        raise argparse.ArgumentTypeError(f"expected a number of workers, 1 to 4096, not '{text}'")
    return int(text)


def _seed(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise argparse.ArgumentTypeError(f"a seed is a non-negative integer, not '{text}'")
    return int(text)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # cleaned up as an interrupt: temporary files removed


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.func(args)
    except PimError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pimc: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
