"""The `pimc` command line: `pimc run` executes a .uop program on the bit-level runtime."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import zipfile
from collections.abc import Sequence

import numpy as np

from pimc import __version__
from pimc.fileio import write_atomic
from pimc.isa.arch import Arch
from pimc.isa.dtypes import Kind, parse_dtype
from pimc.isa.errors import PimError
from pimc.isa.text import load_program
from pimc.isa.uop import Program


def _with_arch(prog: Program, path: str) -> Program:
    """Re-cost a program under another architecture file; the geometry must match."""
    arch = Arch.from_toml(path)
    for name in ("rows", "cols", "partitions"):
        if getattr(arch, name) != getattr(prog.arch, name):
            raise PimError(f"{path}: {name}={getattr(arch, name)} but the program was built "
                           f"for {name}={getattr(prog.arch, name)}")
    return dataclasses.replace(prog, arch=arch)


def _load_inputs(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PimError(f"{path}: cannot read inputs: {exc}") from None


def _host_arrays(prog: Program, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """npz cannot hold bfloat16 portably: bf16 tensors are saved as their uint16 bits."""
    out = {}
    for t in prog.outputs:
        dt = parse_dtype(t.dtype)
        value = outputs[t.name]
        out[t.name] = value.view(dt.storage) if dt.kind is Kind.FLOAT and dt.name == "bf16" else value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from runtime import run_program

    prog = load_program(args.program)
    if args.arch:
        prog = _with_arch(prog, args.arch)
    inputs = _load_inputs(args.inputs) if args.inputs else {}
    outputs, stats = run_program(prog, inputs, name=args.program, seed=args.seed,
                                 strict=not args.no_strict)
    print(f"{args.program}: {len(prog.ops):,} micro-ops on {prog.crossbars:,} crossbars "
          f"of {prog.arch.rows}x{prog.arch.cols}")
    print(stats.table())
    if args.output:
        arrays = _host_arrays(prog, outputs)
        write_atomic(args.output, lambda f: np.savez(f, **arrays))
    if args.stats:
        text = json.dumps({"program": args.program, **stats.as_dict()}, indent=2)
        write_atomic(args.stats, lambda f: f.write(text.encode() + b"\n"))
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
    run.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    run.add_argument("--arch", help="a TOML file of architecture parameters to cost with")
    run.add_argument("--no-strict", action="store_true",
                     help="skip the MAGIC initialisation and read-before-write checks")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PimError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
