"""The word-level lowering (pimc.lower): routines synthesised once, MAC loops, the chunk
choice by counted cost, and the per-layer report of what it emits."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from pimc.runtime import run_program
from pimc.runtime.hostio import complete_inputs

from pimc.cli import main
from pimc.compile import compile_model, program_cost
from pimc.isa.arch import Arch
from pimc.isa.flow import flat
from pimc.isa.text import parse_program, print_program
from pimc.isa.uop import Loop
from pimc.lower.arith import arith_routine
from samples.make_onnx_samples import gemm_chain

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "gemm_relu_gemm.onnx"


def test_arith_routines_are_synthesised_once_and_accumulate_in_place():
    a = arith_routine("add", ("f32", "f32"), "f32", "ieee", Arch(), True)
    assert arith_routine("add", ("f32", "f32"), "f32", "ieee", Arch(), True) is a
    assert [s.name for s in a.segments] == ["a", "b", "t"]  # the sum replaces a
    mul = arith_routine("mul", ("bf16", "bf16"), "bf16", "ftz", Arch())
    assert [s.name for s in mul.segments] == ["a", "b", "out", "t"]


def test_a_matrix_product_is_one_loop_over_its_lanes():
    arch = Arch(rows=64, max_crossbars=1)  # at most 16 chunks: 7 lanes in each
    prog, _ = compile_model(gemm_chain([100, 4]), "m.onnx", arch=arch)
    loops = [i for i in prog.ops if isinstance(i, Loop)]
    assert loops and {c.routine for c in loops[0].body} == {"mul_f32", "add_f32_acc"}
    assert sorted(r.name for r in prog.routines) == ["add_f32", "add_f32_acc", "mul_f32"]
    assert parse_program(print_program(prog)) == prog


def test_program_text_does_not_grow_with_the_inner_dimension():
    small, _ = compile_model(gemm_chain([64, 16]), "m.onnx")
    large, _ = compile_model(gemm_chain([4096, 16]), "m.onnx")
    assert len(print_program(large)) < 1.1 * len(print_program(small))
    assert len(flat(large).ops) > len(flat(small).ops)  # it executes more (a deeper tree)


def test_chunks_minimise_latency_or_energy():
    model = onnx.load(str(SAMPLE))
    fast, _ = compile_model(model, "m.onnx")
    frugal, _ = compile_model(model, "m.onnx", objective="energy")
    assert program_cost(fast, "latency") <= program_cost(frugal, "latency")
    assert program_cost(frugal, "energy") <= program_cost(fast, "energy")
    assert dict(fast.meta)["chunks"] == "16"  # every row of the crossbar busy


def test_a_chain_of_three_layers_is_bit_exact(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(gemm_chain([40, 24, 12, 5], batch=2), str(path))
    assert main(["compile", str(path), "-o", str(tmp_path / "m.uop")]) == 0
    assert main(["run", str(tmp_path / "m.uop"), "--verify"]) == 0
    assert "10 of 10 elements bit-exact" in capsys.readouterr().out


def test_chunks_pack_whole_crossbars_and_meet_by_transfers_then_shifts(tmp_path, capsys):
    """64 chunks of a 16-row space on 64-row crossbars: four a crossbar, 16 crossbars
    (not 64 a quarter full). The hidden layer is copied into every chunk by SHIFTs in
    the first crossbar, then TRANSFERs; the sums meet by TRANSFERs, then SHIFTs."""
    path = tmp_path / "m.onnx"
    onnx.save(gemm_chain([64, 16, 4]), str(path))
    (tmp_path / "arch.toml").write_text("rows = 64\n")
    assert main(["compile", str(path), "-o", str(tmp_path / "m.uop"),
                 "--arch", str(tmp_path / "arch.toml")]) == 0
    prog = parse_program((tmp_path / "m.uop").read_text())
    assert dict(prog.meta)["chunks"] == "64" and prog.crossbars == 16
    weights = dict(np.load(tmp_path / "m.uop.weights.npz"))
    _, stats = run_program(prog, complete_inputs(prog.inputs, weights, 3))
    assert stats.ops["TRANSFER"] > 0 and stats.ops["SHIFT"] > 0
    assert main(["run", str(tmp_path / "m.uop"), "--verify"]) == 0
    assert "4 of 4 elements bit-exact" in capsys.readouterr().out


def test_per_layer_report_in_stats_and_count_only(tmp_path, capsys):
    out = tmp_path / "m.uop"
    assert main(["compile", str(SAMPLE), "-o", str(out)]) == 0
    assert main(["run", str(out), "--stats", str(tmp_path / "run.json")]) == 0
    assert main(["run", str(out), "--count-only", "--stats", str(tmp_path / "n.json")]) == 0
    ran = json.loads((tmp_path / "run.json").read_text())
    counted = json.loads((tmp_path / "n.json").read_text())
    assert ran.keys() == counted.keys() and ran["format_version"] == 2
    names = [r["layer"].split(" ", 1)[1] for r in ran["layers"]]
    assert names == ["fc1 Gemm", "relu Relu", "relayout", "fc2 Gemm"]
    assert sum(r["cycles"] for r in ran["layers"]) == ran["cycles"]
    assert sum(r["energy_fj"] for r in ran["layers"]) == pytest.approx(ran["energy_fj"])
    relayout = ran["layers"][2]
    assert relayout["movement_cycles"] > 0.9 * relayout["cycles"]
    assert [r["cycles"] for r in counted["layers"]] == [r["cycles"] for r in ran["layers"]]
    assert "per layer" in capsys.readouterr().out


def test_report_draws_or_says_what_is_missing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.uop"
    assert main(["compile", str(SAMPLE), "-o", str(out)]) == 0
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(builtins, "__import__", no_matplotlib)
        assert main(["report", str(out), "-o", str(tmp_path / "r.png")]) == 2
    assert 'pip install "pimc[plot]"' in capsys.readouterr().err
    assert not (tmp_path / "r.png").exists()
    pytest.importorskip("matplotlib")
    assert main(["report", str(out), "-o", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_a_kernel_without_parameters_compiles(tmp_path):
    src = tmp_path / "k.pk"
    src.write_text("kernel k() -> (y: f32) { y = f32(1.5); }\n")
    assert main(["compile", str(src), "-o", str(tmp_path / "k.uop")]) == 0
    assert main(["run", str(tmp_path / "k.uop"), "--verify"]) == 0
    out, _ = run_program(parse_program((tmp_path / "k.uop").read_text()))
    assert np.float32(out["y"]) == np.float32(1.5)


@pytest.mark.parametrize("body", ["y = sum(a * b, axis=1);", "y = max(a - b, axis=1);"])
def test_reductions_of_broadcast_tensors_compile_and_verify(body, tmp_path):
    """Once refused: a reduction over tensors of different sizes (lanes of each row,
    combined by the reference's pairwise tree, depth first)."""
    src = tmp_path / "r.pk"
    src.write_text(f"kernel k(a: bf16[4,8], b: bf16[8]) -> (y: bf16[4]) {{\n  {body}\n}}\n")
    assert main(["compile", str(src), "-o", str(tmp_path / "r.uop")]) == 0
    assert main(["run", str(tmp_path / "r.uop"), "--verify"]) == 0
