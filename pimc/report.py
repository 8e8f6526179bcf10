"""`pimc report`: a picture of a program's cost per layer (source line or ONNX node):
latency and energy (movement apart from compute) and how much of the crossbars each
layer keeps busy. Numbers come from a run's `--stats` JSON, or are counted from the
program's structure. matplotlib is an optional extra: `pip install "pimc[plot]"`."""

from __future__ import annotations

import json
from pathlib import Path

from pimc.fileio import check_paths, write_atomic
from pimc.isa.errors import PimError
from pimc.isa.text import load_program


def layers_of(program: str, stats: str | None) -> tuple[list[dict], int, int, str]:
    """The per-layer records, the program's crossbars and rows, and where they came from."""
    prog = load_program(program)
    if stats:
        try:
            data = json.loads(Path(stats).read_text())
            return data["layers"], prog.crossbars, prog.arch.rows, "executed"
        except (OSError, ValueError, KeyError) as exc:
            raise PimError(f"{stats}: not a stats file of pimc run --stats ({exc})") from None
    from pimc.runtime.count import count_program

    return count_program(prog, program).layers, prog.crossbars, prog.arch.rows, "counted"


def draw(program: str, output: str, stats: str | None = None) -> None:
    check_paths([output], [program, stats])
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PimError('pimc report draws with matplotlib: pip install "pimc[plot]"') from None
    layers, crossbars, rows, how = layers_of(program, stats)
    if not layers:
        raise PimError(f"{program}: no micro-ops to report")
    names = [_short(str(r["layer"])) for r in layers]
    y = range(len(layers))
    fig, axes = plt.subplots(1, 3, figsize=(15, 1.2 + 0.35 * len(layers)), sharey=True)
    compute = [(r["cycles"] - r["movement_cycles"]) * r["time_ns"] / max(r["cycles"], 1) / 1e3
               for r in layers]
    moved = [r["movement_cycles"] * r["time_ns"] / max(r["cycles"], 1) / 1e3 for r in layers]
    axes[0].barh(y, compute, label="compute")
    axes[0].barh(y, moved, left=compute, label="movement (SHIFT, TRANSFER)")
    axes[0].set_xlabel("latency (us)")
    axes[0].legend(fontsize="small")
    e_move = [r["movement_energy_fj"] / 1e6 for r in layers]
    e_comp = [r["energy_fj"] / 1e6 - m for r, m in zip(layers, e_move, strict=True)]
    axes[1].barh(y, e_comp, label="compute")
    axes[1].barh(y, e_move, left=e_comp, label="movement")
    axes[1].set_xlabel(f"energy (nJ, {'as executed' if how == 'executed' else 'upper bound'})")
    axes[1].legend(fontsize="small")
    axes[2].barh(y, [100 * r["crossbars"] * r["rows_per_crossbar"] / (crossbars * rows)
                     for r in layers])
    axes[2].set_xlabel(f"rows busy (% of {crossbars:,} crossbars x {rows} rows)")
    axes[0].set_yticks(list(y), names, fontsize="small")
    axes[0].invert_yaxis()
    fig.suptitle(f"{Path(program).name}: cost per layer ({how})")
    fig.tight_layout()
    write_atomic(output, lambda f: fig.savefig(f, format=Path(output).suffix[1:] or "png",
                                               dpi=110))
    plt.close(fig)


def _short(layer: str) -> str:
    place, _, label = layer.partition(" ")
    return f"{place.rsplit('/', 1)[-1]} {label}".strip()[-45:]
