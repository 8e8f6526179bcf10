"""How the compiler's own cost scales: float32 Gemm chains compiled from ONNX, counted
without executing, and (up to a size) executed and verified bit for bit.

    python bench/scale.py [--json FILE] [--run-max-ops N] [--quick]

Each compile runs in its own process (so its peak memory is its own). Records: case,
compile_s, peak_rss_mb, uop_bytes, micro_ops_executed, count_s, run_s, verified (run_s
and verified are null for programs above --run-max-ops executed micro-ops). Then the
curve of a Gemm 1 x K -> 16 for K = 64 .. 8192: compile time and .uop size.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHAINS = [[64, 32, 10], [784, 128, 10], [784, 256, 128, 10], [2048, 1000]]
CURVE = [64, 256, 1024, 4096, 8192]
# ConvPIM's memory: 48 GB of 1024 x 1024 crossbars
CONVPIM_CROSSBARS = 48 * 2 ** 30 * 8 // (1024 * 1024)

# Peak memory from VmHWM (reset by exec); ru_maxrss would keep the forking parent's.
_CHILD = """
import json, resource, sys, time
from pimc.cli import main
t = time.perf_counter()
rc = main(["compile", sys.argv[1], "-o", sys.argv[2], *sys.argv[3:]])
took = time.perf_counter() - t
try:
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM"))
except OSError:
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rc": rc, "compile_s": took, "peak_rss_mb": hwm / 1024}))
"""


def compile_in_child(model: Path, out: Path, extra: tuple[str, ...] = (),
                     timeout: float | None = None, memory_gb: float | None = None
                     ) -> dict[str, float]:
    """Compile in a child process (at most `timeout` seconds and `memory_gb` of address
    space, if given): rc, compile_s, peak_rss_mb."""
    def limit() -> None:
        if memory_gb is not None:
            import resource

            size = int(memory_gb * 2 ** 30)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    done = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(out), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    lines = done.stdout.strip().splitlines()
    record = json.loads(lines[-1]) if lines else {"rc": done.returncode}
    if record["rc"]:
        raise RuntimeError(f"compile of {model} failed: {done.stderr}")
    return record


def measure(name: str, model: object, tmp: Path, run_max_ops: int,
            extra: tuple[str, ...] = ()) -> dict[str, object]:
    """Compile in a child process (with `extra` compile arguments), count, and run with
    --verify when at most `run_max_ops` micro-ops."""
    import onnx
    from pimc.runtime.count import count_program

    from pimc.cli import main
    from pimc.isa.text import load_program

    path = tmp / f"{name}.onnx"
    onnx.save(model, str(path))
    out = tmp / f"{name}.uop"
    rec: dict[str, object] = {"case": name, **compile_in_child(path, out, extra)}
    del rec["rc"]
    rec["uop_bytes"] = out.stat().st_size
    t = time.perf_counter()
    stats = count_program(load_program(out))
    rec["count_s"] = time.perf_counter() - t
    rec["micro_ops_executed"] = sum(stats.ops.values())
    rec["cycles"] = stats.total_cycles
    rec["crossbars"] = load_program(out).crossbars
    rec["run_s"], rec["verified"] = None, None
    if rec["micro_ops_executed"] <= run_max_ops:
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the run's own tables
            rc = main(["run", str(out), "--verify"])
        rec["run_s"], rec["verified"] = time.perf_counter() - t, rc == 0
    return rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--run-max-ops", type=int, default=0,
                        help="execute and verify programs of at most this many micro-ops")
    parser.add_argument("--quick", action="store_true", help="batch 1 only, shorter curve")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from samples.make_onnx_samples import gemm_chain

    records = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for batch in (1,) if args.quick else (1, 16):
            for sizes in CHAINS:
                name = f"gemm {'-'.join(map(str, sizes))} batch {batch}"
                records.append(measure(name.replace(" ", "_"), gemm_chain(sizes, batch), tmp,
                                       args.run_max_ops))
                print_row(records[-1])
        for k in CURVE[:3] if args.quick else CURVE:
            records.append(measure(f"gemm_1x{k}->16", gemm_chain([k, 16], 1), tmp, 0))
            print_row(records[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")


def print_row(r: dict[str, object]) -> None:
    if not getattr(print_row, "done", False):
        print(f"{'case':<32}{'compile s':>10}{'peak MB':>9}{'.uop KB':>9}{'micro-ops':>12}"
              f"{'cycles':>10}{'crossbars':>10}{'count s':>9}{'run s':>8}  verified")
        print_row.done = True
    run = f"{r['run_s']:>8.1f}" if r["run_s"] is not None else f"{'-':>8}"
    print(f"{r['case']:<32}{r['compile_s']:>10.2f}{r['peak_rss_mb']:>9.0f}"
          f"{r['uop_bytes'] / 1024:>9.0f}{r['micro_ops_executed']:>12,}{r['cycles']:>10,}"
          f"{r['crossbars']:>10,}{r['count_s']:>9.2f}{run}  {r['verified']}", flush=True)


if __name__ == "__main__":
    main()
