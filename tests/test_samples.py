"""The shipped samples: exactly what make_samples.py prints, and correct on random inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pimc.runtime import run_program

from pimc.isa.text import load_program, print_program
from samples.make_samples import SAMPLES

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_file_is_what_the_generator_prints(name):
    assert (SAMPLES_DIR / name).read_text() == print_program(SAMPLES[name]())


def _run(name, seed):
    prog = load_program(SAMPLES_DIR / name)
    rng = np.random.default_rng(seed)
    inputs = {t.name: rng.integers(0, 1 << int(t.dtype[1:]), t.shape).astype(np.uint8)
              for t in prog.inputs}
    out, stats = run_program(prog, inputs)
    return inputs, out, stats


@pytest.mark.parametrize("seed", range(3))
def test_full_adder(seed):
    i, out, stats = _run("full_adder.uop", seed)
    total = i["a"].astype(int) + i["b"] + i["c"]
    assert np.array_equal(out["s"], total % 2)
    assert np.array_equal(out["co"], total // 2)
    assert stats.ops["NOR"] == 9 and stats.total_cycles == 10  # 9 NOR + one bulk INIT


@pytest.mark.parametrize("seed", range(3))
def test_ripple_add8(seed):
    i, out, stats = _run("ripple_add8.uop", seed)
    total = i["a"].astype(int) + i["b"]
    assert np.array_equal(out["s"], total % 256)
    assert np.array_equal(out["carry"], total // 256)
    assert stats.ops["NOR"] == 6 + 7 * 9


def test_ripple_add8_edge_cases():
    prog = load_program(SAMPLES_DIR / "ripple_add8.uop")
    a = np.tile(np.array([0, 255, 255, 128, 1, 0], np.uint8), 171)[:1024]
    b = np.tile(np.array([0, 1, 255, 128, 255, 255], np.uint8), 171)[:1024]
    out, _ = run_program(prog, {"a": a, "b": b})
    total = a.astype(int) + b
    assert np.array_equal(out["s"], total % 256)
    assert np.array_equal(out["carry"], total // 256)


@pytest.mark.parametrize("seed", range(3))
def test_row_ops(seed):
    i, out, _ = _run("row_ops.uop", seed)
    x = i["x"]
    assert np.array_equal(out["ismax"], (x == x.max(axis=1, keepdims=True)).astype(np.uint8))
    prev = np.concatenate([np.zeros((2, 1), np.uint8), x[:, :-1]], axis=1)
    assert np.array_equal(out["prev"], prev)
    assert np.array_equal(out["moved"], prev[0])
    bits = (x[0, :8][None, :] >> np.arange(8)[:, None]) & 1
    assert np.array_equal(out["bits"], bits)
