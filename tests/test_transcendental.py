"""Exp, Log, Sigmoid and Tanh: executed on the runtime bit-exact against the order-matched
reference, correctly rounded over every bfloat16 input, and faithful in float32 within a
stated ulp bound (bench/transcendentals.py measures the same at volume)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from pimc.runtime import run_program

from pimc.compile import compile_model
from pimc.isa.dtypes import parse_dtype
from pimc.reference.evaluate import evaluate

FUNCTIONS = ("Exp", "Log", "Sigmoid", "Tanh")


def _sigmoid(v: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1 / (1 + e), e / (1 + e))


TRUE = {"Exp": np.exp, "Log": np.log, "Sigmoid": _sigmoid, "Tanh": np.tanh}


def _compiled(function: str, n: int, dtype: str = "f32"):
    g = helper.make_graph([helper.make_node(function, ["x"], ["y"], name="f")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return compile_model(m, "f.onnx", dtype=dtype)


def _reference(function: str, x: np.ndarray, dtype: str = "f32") -> np.ndarray:
    """The order-matched reference's result bits."""
    _, imported = _compiled(function, len(x), dtype)
    raw, _ = evaluate(imported.kernel, {"x": x, **imported.constants}, "ieee")
    return raw["y"]


def _ulps(got_bits: np.ndarray, x: np.ndarray, function: str, dtype: str) -> np.ndarray:
    dt = parse_dtype(dtype)
    got = dt.from_bits(got_bits.astype(dt.storage)).astype(np.float64)
    with np.errstate(all="ignore"):
        want = TRUE[function](x.astype(np.float64))
        rounded = want.astype(dt.host)
        spacing = np.spacing(np.abs(rounded).astype(dt.host)).astype(np.float64)
        err = np.abs(got - want) / spacing
    exact = (got == rounded.astype(np.float64)) | (np.isnan(got) & np.isnan(want))
    return np.where(exact, 0.0, err)


EDGES = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-30, -1e-30, 0.5625,
                  -0.5625, 0.5624999, 1.0, -1.0, 9.0, -9.0, 20.0, -20.0, 88.72283, 88.72284,
                  -87.33655, -103.27893, -103.97208, -104.5, 1e10, -1e10, 3.4028235e38,
                  -3.4028235e38], dtype=np.float32)


def test_the_runtime_matches_the_reference_bit_for_bit():
    """Tanh holds every routine Exp and Sigmoid use (exp's clamp, rounding and scaling,
    the division, the polynomials, the selects); onnx's node tests of all four also run
    on the runtime (tests/test_onnx_backend.py)."""
    function = "Tanh"
    x = np.concatenate([EDGES, np.random.default_rng(3).normal(0, 8, 36).astype(np.float32)])
    prog, imported = _compiled(function, len(x))
    out, _ = run_program(prog, {"x": x, **imported.constants}, strict=False)
    assert (out["y"].view(np.uint32) == _reference(function, x)).all()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_bfloat16_input_is_correctly_rounded(function):
    dt = parse_dtype("bf16")
    x = dt.from_bits(np.arange(1 << 16, dtype=np.uint16))
    x = x[np.isfinite(x.astype(np.float64))]
    assert _ulps(_reference(function, x, "bf16"), x, function, "bf16").max() <= 0.5


@pytest.mark.parametrize("function,bound", [("Exp", 0.8), ("Log", 0.85), ("Sigmoid", 0.85),
                                            ("Tanh", 0.85)])
def test_float32_is_faithful_within_its_stated_bound(function, bound):
    """Below 1 ulp (faithful); the bounds are bench/transcendentals.py's maxima over a
    million inputs, rounded up."""
    rng = np.random.default_rng(0)
    x = np.concatenate([EDGES, rng.uniform(-110, 110, 10_000).astype(np.float32),
                        rng.uniform(-1, 1, 10_000).astype(np.float32),
                        rng.integers(0, 1 << 32, 10_000, dtype=np.uint64).astype(np.uint32)
                        .view(np.float32)])
    assert _ulps(_reference(function, x), x, function, "f32").max() <= bound


def test_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 89.0, -104.0], dtype=np.float32)
    bits = {f: _reference(f, x).astype(np.uint32) for f in FUNCTIONS}
    exp = bits["Exp"].view(np.float32)
    assert list(exp[:4]) == [1, 1, np.inf, 0] and np.isnan(exp[4]) and exp[5] == np.inf
    assert bits["Exp"][6] == 0  # below the smallest subnormal's half: +0
    assert bits["Tanh"][1] == 0x80000000  # tanh(-0) = -0
    assert list(bits["Tanh"].view(np.float32)[2:4]) == [1, -1]
    assert list(bits["Sigmoid"].view(np.float32)[:4]) == [0.5, 0.5, 1, 0]
    log = bits["Log"].view(np.float32)
    assert list(log[:3]) == [-np.inf, -np.inf, np.inf] and np.isnan(log[3:5]).all()
    assert np.isnan(log[6]) and log[5] == np.float32(np.log(89.0))


def _lrn(n: int, dtype: str = "f32"):
    """AlexNet's LRN (size 1) over n values."""
    nodes = [helper.make_node("Reshape", ["x", "s3"], ["x3"]),
             helper.make_node("LRN", ["x3"], ["y3"], size=1, alpha=1e-4, beta=0.75),
             helper.make_node("Reshape", ["y3", "s1"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])],
                          [helper.make_tensor("s3", TensorProto.INT64, [3], [1, 1, n]),
                           helper.make_tensor("s1", TensorProto.INT64, [1], [n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return compile_model(m, "lrn.onnx", dtype=dtype)


def test_lrn_power_is_faithful_for_its_float32_base():
    """x / t^beta (AlexNet's parameters), t the float32 sum the layer computes: the power
    from log's and exp's two parts and the quotient's exact remainder stay below 0.7
    ulp (bench/transcendentals.py: 0.68 over a million inputs); the runtime agrees."""
    n = 4096
    prog, imported = _lrn(n)
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 1, n // 2), rng.normal(0, 300, n // 2)]).astype(np.float32)
    x[:4] = [0.0, -0.0, 1e-30, -3e4]
    raw, _ = evaluate(imported.kernel, {"x": x, **imported.constants}, "ieee")
    got = raw["y"].astype(np.uint32).view(np.float32).astype(np.float64)
    base = ((x * x) * np.float32(1e-4) + np.float32(1)).astype(np.float64)
    want = x / base ** 0.75
    spacing = np.spacing(np.abs(want.astype(np.float32))).astype(np.float64)
    assert (np.abs(got - want) / spacing).max() < 0.7
    assert got[1] == 0 and np.signbit(got[1])  # -0 stays -0
    out, _ = run_program(prog, {"x": x, **imported.constants}, strict=False)
    assert (out["y"].view(np.uint32) == raw["y"]).all()


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_lrn_in_a_short_type_is_faithful_over_every_input(dtype):
    """x * exp(-beta log t), the short exp's polynomial of lower degree: below 1 ulp of
    the short result for every finite input (bench/transcendentals.py: 0.506 bf16, 0.502
    f16) against x / t^beta for the float32 base t; beyond float32's squares, 0. The
    runtime agrees on a sample."""
    dt = parse_dtype(dtype)
    x = dt.from_bits(np.arange(1 << 16, dtype=np.uint16))
    x = x[np.isfinite(x.astype(np.float64))]
    _, imported = _lrn(len(x), dtype)
    raw, _ = evaluate(imported.kernel, {"x": x, **imported.constants})
    got = dt.from_bits(raw["y"].astype(dt.storage)).astype(np.float64)
    x32 = x.astype(np.float32)
    with np.errstate(over="ignore"):
        base = ((x32 * x32) * np.float32(1e-4) + np.float32(1)).astype(np.float64)
    want = np.where(np.isinf(base), 0.0, x.astype(np.float64) / base ** 0.75)
    spacing = np.spacing(np.abs(want.astype(dt.host))).astype(np.float64)
    assert (np.abs(got - want) / spacing).max() < 1
    assert (got[np.isinf(base)] == 0).all()
    pick = np.random.default_rng(4).choice(len(x), 64, replace=False)
    prog, small = _lrn(64, dtype)
    out, _ = run_program(prog, {"x": x[pick], **small.constants}, strict=False)
    expect, _ = evaluate(small.kernel, {"x": x[pick], **small.constants})
    assert (dt.to_bits(out["y"]).astype(np.uint64) == expect["y"]).all()
