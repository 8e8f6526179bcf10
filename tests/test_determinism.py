"""The same input and flags give byte-identical programs and weights (whatever Python's
hash seed), and the same --seed gives identical outputs and statistics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _pimc(args: list[str], hash_seed: str, cwd: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-m", "pimc", *args], cwd=cwd, env=env, check=True,
                   capture_output=True)


@pytest.mark.parametrize("source", ["axpy.pk", "gemm_relu_gemm.onnx"])
def test_compiling_twice_gives_the_same_bytes(tmp_path, source):
    built = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        out.mkdir()
        _pimc(["compile", str(SAMPLES / source), "-o", "p.uop"], hash_seed, out)
        built.append({f.name: f.read_bytes() for f in sorted(out.iterdir())})
    assert built[0] == built[1]
    assert "p.uop" in built[0] and (source.endswith(".pk") or "p.uop.weights.npz" in built[0])


def test_the_same_seed_gives_the_same_outputs_and_statistics(tmp_path):
    from pimc.cli import main

    prog = str(tmp_path / "p.uop")
    assert main(["compile", str(SAMPLES / "gemm_relu_gemm.onnx"), "-o", prog]) == 0
    for k in ("a", "b"):
        assert main(["run", prog, "--seed", "7", "-o", str(tmp_path / f"{k}.npz"),
                     "--stats", str(tmp_path / f"{k}.json")]) == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a.files == b.files and all((a[f] == b[f]).all() for f in a.files)
    assert main(["run", prog, "--seed", "8", "-o", str(tmp_path / "c.npz")]) == 0
    assert not (np.load(tmp_path / "c.npz")["y"] == a["y"]).all()  # the seed matters
