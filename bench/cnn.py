"""CNNs with their feature maps kept in the crossbars: the compiler's cost, the counted
cycles and energy, movement against compute, and the pipelined throughput on FloatPIM's
and ConvPIM's memories.

    python bench/cnn.py [--json FILE] [--whole-timeout S] [--execute-blocks]
                        [--execute-whole]

Cases: the small CNN sample (compiled, executed and verified bit for bit), and blocks
cut from the onnx wheel's ImageNet CNNs at full size (224 x 224, seeded random weights,
samples/light.py): each network's first layers, and blocks from the middle and the end
of ResNet-50, VGG-19 and GoogLeNet that hold the rest of their layer kinds (residual
adds, concatenations, global pools, the classifiers), executed and verified with
--execute-blocks; then each whole network, AlexNet and SqueezeNet also executed in full
and verified with --execute-whole (`pimc run --verify`, streamed, with the strict
checks where they fit this computer's memory, some minutes each; see docs/runtime.md). Every compile
runs under the issue's limit of 8 GB of address space (and a timeout); what does not
compile within them is listed with its error.

A case is compiled again within a memory when its fastest splits need more crossbars
than the memory has (the compiler then chooses the stages' splits for the least slowest
stage, and where even the slowest splits do not fit, the compiler's fewest-crossbars,
folds its biggest stages into passes); a whole network also within 1/k of the memory
(k up to 8) where its slowest splits fit that, so that k copies fill it. The program
with the most images/s is reported (counted, not executed).

Throughput follows FloatPIM Sec. 5: every stage (layer) in its own crossbars works on
another image, so a copy of the network delivers one image per interval of its slowest
stage, and the memory holds floor(memory / crossbars) copies:
img/s = copies / (slowest stage's time); img/J = 1 / (energy per image). Cycles, time and
energy are counted from the program's micro-ops (energy: the upper bound, every INIT
bit a SET); ConvPIM's memory is 48 GB of 1024 x 1024 crossbars (393,216), a 3 ns cycle
and 6.4 fJ per gate (the program re-costed with those values). Published numbers are
comparison columns only: ConvPIM's upper bounds (MACs only) and an RTX A6000 (measured
/ peak), images/s.

Records (one per case and memory): model, compile_s, peak_mb, cycles, energy_nJ,
crossbars, movement_share, stages, interval_cycles, slowest_stage (the layer that sets
the interval), img_per_s, img_per_J, memory, verified, note; copies_aimed where the
program was compiled within 1/k of the memory.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from scale import CONVPIM_CROSSBARS, compile_in_child  # noqa: E402

MEMORIES = {
    "FloatPIM": {"max_crossbars": 8192},
    "ConvPIM": {"max_crossbars": CONVPIM_CROSSBARS, "t_nor_ns": 3.0, "t_write_ns": 3.0,
                "t_search_ns": 3.0, "t_shift_ns": 3.0, "t_transfer_ns": 3.0, "e_nor_fj": 6.4},
}
PUBLISHED = {  # images/s: ConvPIM's upper bound, A6000 measured, A6000 peak
    "alexnet": (11_885, 16_315, 53_415), "inception_v1": (6_858, 3_495, 30_823),
    "resnet50": (2_004, 1_360, 9_008),
}
# (light model, the tensor the block ends at (None: the output), the one it starts at):
# together they hold every layer kind of ResNet-50, VGG-19 and GoogLeNet, whose whole
# networks are counted, not executed
BLOCKS = {
    "resnet50 stem + res2a": ("light_resnet50", "r15", None),
    "resnet50 res5c + pool + fc + softmax": ("light_resnet50", None, "r161"),
    "vgg19 conv1_1": ("light_vgg19", "r1", None),
    "vgg19 conv5_4 + pool + fc6-8 + softmax": ("light_vgg19", None, "r33"),
    "alexnet conv1 + LRN + pool": ("light_bvlc_alexnet", "r3", None),
    "squeezenet conv1 + pool + fire2": ("light_squeezenet", "r9", None),
    "inception_v1 conv1 + pool + LRN": ("light_inception_v1", "r3", None),
    "inception_v1 inception 3a": ("light_inception_v1", "r23", "r9"),
    "inception_v1 pool + fc + softmax": ("light_inception_v1", None, "r137"),
}


def _stage_cycles(prog) -> list[tuple[int, str]]:
    """The cycles of each stage's items (its moves and its layers), and the label of the
    layer that spends the most of them."""
    from pimc.isa.cost import item_counts

    meta = dict(prog.meta)
    starts = [int(s) for s in meta.get("stage-starts", "0").split()] + [len(prog.ops)]
    routines = {r.name: r for r in prog.routines}
    memo: dict = {}
    out = []
    for a, b in itertools.pairwise(starts):
        spent: dict[str, int] = {}
        for i in prog.ops[a:b]:
            label = i.src.split(" ", 1)[-1]
            spent[label] = spent.get(label, 0) + item_counts(i, routines, prog.arch, memo)[1]
        out.append((sum(spent.values()), max(spent, key=spent.__getitem__, default="")))
    return out


def _fitted(path: Path, out: Path, compiled: dict, tmp: Path, timeout: float,
            most: int = 1, dtype: str = "f32") -> dict:
    """Per memory: (the program, its compile record, whether it is the one compiled
    without a limit). A network is also compiled within a memory its fastest splits do
    not fit (its biggest stages folded where even the slowest do not: docs/onnx.md),
    and within 1/k of it (k = 2 .. `most`) where its slowest splits would fit (the
    program's fewest-crossbars): the compiler then chooses the splits for the least
    slowest stage, and k copies fill the memory. The program with the most images/s
    is kept."""
    from pimc.isa.text import load_program

    prog = load_program(out)
    fewest = int(dict(prog.meta).get("fewest-crossbars", prog.crossbars))
    fits = {}
    for memory, fields in MEMORIES.items():
        limit = fields["max_crossbars"]
        best = (_rate(prog, limit), 0)
        fits[memory] = (prog, compiled, True)
        for k in range(1, most + 1):
            if not prog.crossbars > limit // k >= (fewest if k > 1 else 0):
                continue  # (within the whole memory even below the fewest: folded)
            arch, again = tmp / f"{memory}{k}.toml", out.with_suffix(f".{memory}{k}.uop")
            arch.write_text(f"max_crossbars = {limit // k}\n")
            rec = _compile(path, again, arch, timeout, dtype)
            if "error" not in rec:
                fitted = load_program(again)
                score = (_rate(fitted, limit), -k)
                if score > best:
                    best, fits[memory] = score, (fitted, {**rec, "copies_aimed": k}, False)
    return fits


MAX_COPIES = 8  # the most copies a network is compiled smaller for


def _rate(prog, limit: int) -> float:
    """Images per cycle of the memory's copies of prog (its slowest stage's interval)."""
    copies = limit // prog.crossbars
    return copies / max(max(_stage_cycles(prog))[0], 1)


def _records(name: str, fits: dict, verified: bool, note: str,
             dtype: str = "f32") -> list[dict]:
    from pimc.runtime.count import count_program

    out = []
    for memory, fields in MEMORIES.items():
        prog, compiled, unlimited = fits[memory]
        cost = {k: v for k, v in fields.items() if k != "max_crossbars"}  # counted as built
        p = dataclasses.replace(prog, arch=dataclasses.replace(prog.arch, **cost))
        stats = count_program(p, wear=False)
        cycles = stats.total_cycles
        moved = sum(r["movement_cycles"] for r in stats.layers)
        energy = stats.energy_bounds[1]
        per_cycle = stats.latency_ns / max(cycles, 1)
        stages = _stage_cycles(p)
        interval, slowest = max(stages)
        copies = fields["max_crossbars"] // prog.crossbars
        out.append({
            "model": name, "dtype": dtype, **compiled, "cycles": cycles, "energy_nJ": energy / 1e6,
            "crossbars": prog.crossbars, "movement_share": moved / max(cycles, 1),
            "stages": len(stages), "interval_cycles": interval, "slowest_stage": slowest,
            "img_per_s": copies / (interval * per_cycle * 1e-9) if copies else 0.0,
            "img_per_J": 1 / (energy * 1e-15) if copies else 0.0, "memory": memory,
            "verified": verified and unlimited,
            "note": (note if unlimited else "compiled within this memory; counted"
                     if compiled.get("copies_aimed", 1) == 1 else
                     f"compiled within 1/{compiled['copies_aimed']} of this memory "
                     f"for {copies} copies; counted")
            if copies else f"{note}; needs {prog.crossbars:,} crossbars (at the fewest "
            f"{dict(prog.meta).get('fewest-crossbars', prog.crossbars)}), the memory has "
            f"{fields['max_crossbars']:,}"})
    return out


def _compile(path: Path, out: Path, arch: Path, timeout: float | None = None,
             dtype: str = "f32") -> dict:
    """compile_s, peak_mb; or an error's first line."""
    try:
        rec = compile_in_child(path, out, ("--arch", str(arch), "--dtype", dtype),
                               timeout=timeout, memory_gb=8.0)  # the limit
    except subprocess.TimeoutExpired:
        return {"error": f"did not compile within {timeout:.0f} s"}
    except RuntimeError as exc:
        lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
        last = lines[-1] if lines else "failed"
        if "MemoryError" in last or "Unable to allocate" in last:
            return {"error": f"needs more than 8 GB to compile ({last[:120]})"}
        return {"error": last.split(": ", 1)[-1][:200]}
    return {"compile_s": rec["compile_s"], "peak_mb": rec["peak_rss_mb"]}


EXECUTED = ("light_bvlc_alexnet", "light_squeezenet")
WHOLE = ("light_resnet50", "light_vgg19", "light_bvlc_alexnet", "light_squeezenet",
         "light_inception_v1")


def _execute(program: Path, timeout: float) -> tuple[bool, str]:
    """Run a program on the simulator (its own process: it streams its memory) and
    verify it: (verified, a note with the time and what the run printed of itself).
    With the strict checks (every read of a written cell, every NOR on an initialised
    one) unless the crossbars alive at once do not fit this computer's memory so."""
    t = time.perf_counter()
    try:
        for strict in (True, False):
            done = subprocess.run([sys.executable, "-m", "pimc", "run", str(program),
                                   "--verify", *([] if strict else ["--no-strict"])],
                                  capture_output=True, text=True, check=False,
                                  timeout=timeout)
            if "--no-strict keeps one bit" not in done.stderr:
                break
    except subprocess.TimeoutExpired:
        return False, f"counted; its run did not finish within {timeout / 60:.0f} min"
    spent = time.perf_counter() - t
    streamed = next((x for x in done.stdout.splitlines() if x.startswith("streamed")), "")
    verdict = [x for x in done.stdout.splitlines() if x.startswith("verify")]
    print(f"{program.name}: exit {done.returncode} in {spent:,.0f} s; {streamed}; "
          + "; ".join(verdict))
    ok = done.returncode == 0
    return ok, (f"executed{' and verified' if ok else ', NOT verified'} in {spent / 60:.1f} "
                f"min ({'strict' if strict else 'streamed, --no-strict'})")


def main() -> None:
    import onnx

    from pimc.cli import main as cli
    from samples.light import load_light
    from samples.make_onnx_samples import small_cnn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--whole-timeout", type=float, default=300.0,
                        help="seconds each compile may take")
    parser.add_argument("--execute-whole", action="store_true",
                        help="run whole AlexNet and SqueezeNet on the simulator and verify them")
    parser.add_argument("--execute-blocks", action="store_true",
                        help="run every block on the simulator and verify it")
    parser.add_argument("--execute-timeout", type=float, default=3600.0,
                        help="seconds each whole run may take")
    parser.add_argument("--skip-blocks", action="store_true",
                        help="count only the whole networks")
    parser.add_argument("--whole-dtypes", default="f32,bf16",
                        help="element types whole networks are counted in "
                        "(comma-separated; empty: none)")
    args = parser.parse_args()
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        big = tmp / "big.toml"  # room to count what does not fit, then judged per memory
        big.write_text("max_crossbars = 4194304\n")
        cases = [] if args.skip_blocks else [("small_cnn (sample)", small_cnn())]
        for name, (light, until, start) in () if args.skip_blocks else BLOCKS.items():
            cases.append((name, load_light(light, until=until, start=start)))
        for name, model in cases:
            path, out = tmp / "m.onnx", tmp / "m.uop"
            onnx.save(model, str(path))
            compiled = _compile(path, out, big, args.whole_timeout)
            if "error" in compiled:
                records.append({"model": name, "note": compiled["error"]})
                _row(records[-1])
                continue
            verified, note = False, "counted"
            if name.startswith("small"):
                t = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    verified = cli(["run", str(out), "--verify"]) == 0
                note = f"executed and verified in {time.perf_counter() - t:.1f} s"
            elif args.execute_blocks:
                verified, note = _execute(out, args.execute_timeout)
            fits = _fitted(path, out, compiled, tmp, args.whole_timeout)
            for r in _records(name, fits, verified, note):
                records.append(r)
                _row(r)
        for dtype, light in itertools.product([d for d in args.whole_dtypes.split(",") if d],
                                              WHOLE):
            path, out = tmp / f"{light}.onnx", tmp / f"{light}.uop"
            onnx.save(load_light(light), str(path))
            name = f"{light} (whole)" if dtype == "f32" else f"{light} (whole, {dtype})"
            compiled = _compile(path, out, big, args.whole_timeout, dtype)
            if "error" in compiled:
                records.append({"model": name, "dtype": dtype, "note": compiled["error"]})
                _row(records[-1])
                continue
            verified, note = False, "counted"
            if args.execute_whole and light in EXECUTED and dtype == "f32":
                verified, note = _execute(out, args.execute_timeout)
            fits = _fitted(path, out, compiled, tmp, args.whole_timeout, MAX_COPIES, dtype)
            for r in _records(name, fits, verified, note, dtype):
                records.append(r)
                _row(r)
    print("\npublished, images/s (comparison only): "
          + "; ".join(f"{k}: ConvPIM bound {a:,}, A6000 {b:,} measured / {c:,} peak"
                      for k, (a, b, c) in PUBLISHED.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")


def _row(r: dict) -> None:
    if not getattr(_row, "done", False):
        print(f"{'model':<42}{'memory':>9}{'compile s':>10}{'peak MB':>8}{'cycles':>15}"
              f"{'xbars':>11}{'move %':>7}{'img/s':>11}{'img/J':>10}  note")
        _row.done = True
    if "cycles" not in r:
        print(f"{r['model']:<42}{'':>9}  not compiled: {r['note']}")
        return
    print(f"{r['model']:<42}{r['memory']:>9}{r['compile_s']:>10.1f} {r['peak_mb']:>7.0f}"
          f" {r['cycles']:>14,} {r['crossbars']:>10,}{100 * r['movement_share']:>7.1f}"
          f"{r['img_per_s']:>11,.0f}{r['img_per_J']:>10,.0f}  {r['note']}; slowest stage "
          f"{r['slowest_stage']} ({r['interval_cycles']:,} cycles)")


if __name__ == "__main__":
    main()
