"""`pimc run` end to end: the table, the output files, and clean errors with exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pimc.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_run_prints_the_table_and_writes_outputs(tmp_path, capsys):
    out, stats = tmp_path / "out.npz", tmp_path / "stats.json"
    assert main(["run", str(SAMPLES / "ripple_add8.uop"), "-o", str(out),
                 "--stats", str(stats), "--seed", "3"]) == 0
    text = capsys.readouterr().out
    for label in ("NOR", "INIT", "total", "latency", "writes per cell", "columns used",
                  "crossbars used", "host input"):
        assert label in text
    data = json.loads(stats.read_text())
    assert data["ops"] == {"INIT": 8, "NOR": 69}
    assert data["cycles"] == 77 and data["cycles_per_cell_init"] == 8 * 9 - 3 + 69
    assert data["energy_fj_by_kind"]["NOR"] == pytest.approx(69 * 1024 * 0.29)
    with np.load(out) as arrays:
        assert arrays["s"].dtype == np.uint8 and arrays["s"].shape == (1024,)


def test_run_uses_given_inputs(tmp_path):
    a = np.arange(1024, dtype=np.uint16).astype(np.uint8)
    b = np.full(1024, 3, np.uint8)
    np.savez(tmp_path / "in.npz", a=a, b=b)
    assert main(["run", str(SAMPLES / "ripple_add8.uop"), "--inputs", str(tmp_path / "in.npz"),
                 "-o", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as arrays:
        assert np.array_equal(arrays["s"], (a.astype(int) + 3) % 256)


def test_seed_makes_random_inputs_reproducible(tmp_path):
    for name in ("a", "b"):
        main(["run", str(SAMPLES / "ripple_add8.uop"), "-o", str(tmp_path / f"{name}.npz"),
              "--seed", "7"])
    with np.load(tmp_path / "a.npz") as x, np.load(tmp_path / "b.npz") as y:
        assert np.array_equal(x["s"], y["s"])


def test_arch_file_recosts_a_program(tmp_path, capsys):
    arch = tmp_path / "arch.toml"
    arch.write_text('[arch]\ninit_model = "per-cell"\ne_nor_fj = 1.0\n')
    stats = tmp_path / "s.json"
    assert main(["run", str(SAMPLES / "full_adder.uop"), "--arch", str(arch),
                 "--stats", str(stats)]) == 0
    data = json.loads(stats.read_text())
    assert data["cycles"] == 18 and data["energy_fj_by_kind"]["NOR"] == 9 * 1024


def test_arch_file_must_match_the_geometry(tmp_path, capsys):
    arch = tmp_path / "arch.toml"
    arch.write_text("rows = 512\n")
    assert main(["run", str(SAMPLES / "full_adder.uop"), "--arch", str(arch)]) == 2
    assert "rows=512 but the program was built for rows=1024" in capsys.readouterr().err


def _malformed(tmp_path: Path) -> Path:
    prog = tmp_path / "bad.uop"
    text = (SAMPLES / "full_adder.uop").read_text().replace("NOR      x0 c8 = c6 c7",
                                                            "NOR      x0 c8 = c6 c7 c9 c10")
    prog.write_text(text)
    return prog


def test_malformed_program_exits_2_with_the_line_and_no_output(tmp_path, capsys):
    prog, out = _malformed(tmp_path), tmp_path / "out.npz"
    assert main(["run", str(prog), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    line = next(n for n, text in enumerate(prog.read_text().splitlines(), 1) if "c9 c10" in text)
    assert err.strip() == f"{prog}:{line}: NOR takes 1 to 3 inputs, got 4"
    assert not out.exists() and list(tmp_path.iterdir()) == [prog]


def test_runtime_error_leaves_no_output(tmp_path, capsys):
    prog = tmp_path / "p.uop"
    prog.write_text(".pimc 1\n.crossbars 1\n.output y u1 [1024] x0 r0:1024 c1\n"
                    "INIT x0 c1 = 0\nNOR x0 c1 = c0\n")
    assert main(["run", str(prog), "-o", str(tmp_path / "o.npz")]) == 2
    assert capsys.readouterr().err.startswith(f"{prog}:5: reads c0 of crossbar 0 row 0")
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["run", "missing.uop"], "missing.uop: cannot read program"),
    (["run", str(SAMPLES / "full_adder.uop"), "--inputs", "nope.npz"], "nope.npz: cannot read"),
    (["run", str(SAMPLES / "full_adder.uop"), "--arch", "nope.toml"], "nope.toml: cannot read"),
])
def test_bad_files_exit_2(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_inputs_must_match_the_declaration(tmp_path, capsys):
    np.savez(tmp_path / "in.npz", a=np.zeros(5, np.uint8), z=np.zeros(3))
    assert main(["run", str(SAMPLES / "full_adder.uop"), "--inputs",
                 str(tmp_path / "in.npz")]) == 2
    assert "the program does not declare: z" in capsys.readouterr().err
    np.savez(tmp_path / "in.npz", a=np.zeros(5, np.uint8))
    assert main(["run", str(SAMPLES / "full_adder.uop"), "--inputs",
                 str(tmp_path / "in.npz")]) == 2
    assert "input 'a' has shape (5,), the program declares (1024,)" in capsys.readouterr().err


def test_installed_console_script_runs_outside_the_checkout(tmp_path):
    """The `pimc` command works from anywhere (runtime/ is installed, not just in the tree)."""
    exe = shutil.which("pimc")
    if exe is None:
        pytest.skip("the pimc console script is not installed")
    shutil.copy(SAMPLES / "full_adder.uop", tmp_path)
    done = subprocess.run([exe, "run", "full_adder.uop"], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "NOR" in done.stdout
