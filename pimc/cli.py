"""The `pimc` command line: `pimc compile` a kernel, `pimc run` a .uop program on the
bit-level runtime (and `--verify` it against the reference it records)."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pimc import __version__
from pimc.cli_run import cmd_run
from pimc.fileio import Writer, check_paths, write_all
from pimc.isa.arch import Arch
from pimc.isa.dtypes import Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.text import load_program
from pimc.isa.uop import Program


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
