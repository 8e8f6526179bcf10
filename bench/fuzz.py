"""Fuzzing the three languages pimc reads: mutated `.uop` programs, DSL kernels and ONNX
models, run in-process; every input must end in a result or a clean PimError.

    python bench/fuzz.py [--n N] [--seed S] [--json FILE] [--targets uop,dsl,onnx]

Records, one per target: target, inputs, clean_errors, tracebacks, hangs (an input taking
over --hang seconds), examples (the first few inputs that raised something other than
PimError, with the exception). The mutations: a token replaced by a hostile one (huge,
negative, non-ASCII digits, empty, other tokens), lines deleted or duplicated, the text
truncated, and deep nesting for the DSL.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOSTILE = ["0", "-1", "1", "9" * 5000, "99999999999999999999", "²", "\u0661\u0662", "\u216b", "", " ", "é",
           "0x", "1e309", "nan", "-0", "c0:100000000", "r0:99999999", "x0:9999999", "@\"",
           "[", "]", "(", ")", ",", "=", ":", "\t", "\x00", "c1024", "x8192", "r1024",
           "LOOP", "END", ".end", "CALL", "f32[0]", "u8[4,0]", "{", "}", ";"]


class Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def mutate(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    kind = rng.randrange(5)
    if kind == 0 and lines:  # a token replaced
        i = rng.randrange(len(lines))
        tokens = lines[i].split(" ")
        j = rng.randrange(len(tokens))
        pool = HOSTILE + [t for line in rng.sample(lines, min(5, len(lines))) for t in line.split()]
        tokens[j] = rng.choice(pool) if pool else ""
        lines[i] = " ".join(tokens)
    elif kind == 1 and lines:  # a character replaced inside a token
        i = rng.randrange(len(lines))
        if lines[i]:
            k = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:k] + rng.choice(HOSTILE)[:3] + lines[i][k + 1:]
    elif kind == 2 and len(lines) > 1:  # a line deleted or duplicated
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[i]
        else:
            lines.insert(i, lines[rng.randrange(len(lines))])
    elif kind == 3:  # truncated
        return text[: rng.randrange(len(text) + 1)]
    else:  # two mutations
        return mutate(mutate(text, rng), rng)
    return "\n".join(lines)


def uop_target() -> tuple[list[str], Callable[[str], object]]:
    from pimc.runtime.count import count_program

    from pimc.isa.check import validate
    from pimc.isa.text import parse_program
    from pimc.listing import listing

    seeds = [p.read_text() for p in sorted((ROOT / "samples").glob("*.uop"))]

    def run(text: str) -> object:
        prog = parse_program(text, "fuzz.uop")
        validate(prog, "fuzz.uop")  # as pimc run and pimc show do
        listing(prog, summary_only=True, flat_ops=False)
        return count_program(prog)

    return seeds, run


def dsl_target() -> tuple[list[str], Callable[[str], object]]:
    from pimc.compile import compile_source
    from pimc.frontend.dsl import parse_kernels
    from pimc.passes.pipeline import run_passes

    seeds = [p.read_text() for p in sorted((ROOT / "samples").glob("*.pk"))]
    seeds += ["kernel k(x: f32[4]) -> (y: f32[4]) { y = " + "-" * 600 + "x; }",
              "kernel k(x: f32[4]) -> (y: f32[4]) { y = " + " + ".join(["x"] * 600) + "; }",
              "kernel k(x: f32[4]) -> (y: f32[4]) { y = " + "relu(" * 300 + "x" + ")" * 300
              + "; }"]

    count = [0]

    def run(text: str) -> object:
        kernels = [run_passes(k, text, "ieee") for k in parse_kernels(text, "fuzz.pk")]
        count[0] += 1
        if count[0] % 10 == 0:  # every tenth input also lowered to micro-ops
            for k in kernels:
                compile_source(text, "fuzz.pk", kernel=k.name)
        return kernels

    return seeds, run


def onnx_target() -> tuple[list[str], Callable[[str], object]]:
    """ONNX models as the text of their protobuf (mutated in the text form, then parsed)."""
    import onnx
    from google.protobuf import text_format

    from pimc.frontend.onnx_import import import_model
    from pimc.isa.errors import PimError
    from samples.make_onnx_samples import conv_relu, gemm_relu_gemm

    seeds = [text_format.MessageToString(m) for m in (gemm_relu_gemm(), conv_relu())]

    def run(text: str) -> object:
        try:
            model = text_format.Parse(text, onnx.ModelProto())
        except text_format.ParseError as exc:  # not a model at all: the mutation's fault
            raise PimError(f"not a model: {exc}") from None
        return import_model(model, "fuzz.onnx")

    return seeds, run


TARGETS = {"uop": uop_target, "dsl": dsl_target, "onnx": onnx_target}


def fuzz(name: str, n: int, seed: int, hang_s: float) -> dict[str, object]:
    from pimc.isa.errors import PimError

    seeds, run = TARGETS[name]()
    rng = random.Random(seed)
    rec: dict[str, object] = {"target": name, "inputs": 0, "clean_errors": 0,
                              "tracebacks": 0, "hangs": 0, "examples": []}
    examples: list[dict[str, str]] = rec["examples"]
    signal.signal(signal.SIGALRM, _alarm)
    for _ in range(n):
        text = mutate(rng.choice(seeds), rng)
        rec["inputs"] += 1
        signal.setitimer(signal.ITIMER_REAL, hang_s)
        try:
            run(text)
        except PimError:
            rec["clean_errors"] += 1
        except Hang:
            rec["hangs"] += 1
            if len(examples) < 5:
                examples.append({"input": text[:2000], "error": f"over {hang_s} s"})
        except Exception as exc:  # what the fuzzer is looking for
            rec["tracebacks"] += 1
            if len(examples) < 5:
                frames = traceback.extract_tb(exc.__traceback__)
                ours = [f for f in frames if "/pimc/" in f.filename or "/runtime/" in f.filename]
                at = " <- ".join(f"{Path(f.filename).name}:{f.lineno}"
                                 for f in (frames[-1], *ours[-1:]))
                examples.append({"input": text[:2000], "error": f"{type(exc).__name__}: "
                                 f"{str(exc)[:200]} at {at}"})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang", type=float, default=10.0, help="seconds that count as a hang")
    parser.add_argument("--targets", default="uop,dsl,onnx")
    parser.add_argument("--json", help="write the records here")
    args = parser.parse_args()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    records = []
    print(f"{'target':<8}{'inputs':>9}{'clean':>9}{'tracebacks':>12}{'hangs':>7}{'s':>8}")
    for name in args.targets.split(","):
        t = time.perf_counter()
        rec = fuzz(name, args.n, args.seed, args.hang)
        rec["seconds"] = round(time.perf_counter() - t, 1)
        records.append(rec)
        print(f"{name:<8}{rec['inputs']:>9}{rec['clean_errors']:>9}{rec['tracebacks']:>12}"
              f"{rec['hangs']:>7}{rec['seconds']:>8}", flush=True)
        for ex in rec["examples"]:
            print(f"  {ex['error']}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
