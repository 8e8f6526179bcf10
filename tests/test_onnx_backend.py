"""ONNX's own backend test suite (node tests) on pimc: each model is compiled to
micro-ops and executed bit by bit on the runtime, then compared with the suite's expected
outputs at the suite's tolerances."""

from __future__ import annotations

import os
import tempfile

import onnx.backend.test

os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="onnx-home-"))

from pimc import onnx_backend

OPS = ["add", "sub", "mul", "neg", "abs", "relu", "leakyrelu", "clip", "max", "min", "sum",
       "identity", "dropout", "flatten", "reshape", "squeeze", "unsqueeze", "transpose",
       "matmul", "gemm", "batchnorm", "conv", "basic_conv", "maxpool", "averagepool",
       "globalaveragepool", "globalmaxpool", "exp", "log", "sigmoid", "tanh", "constant_pad",
       "edge_pad", "reflect_pad", "wrap_pad", "slice", "softmax", "log_softmax", "logsoftmax",
       "concat", "lrn"]

backend_test = onnx.backend.test.BackendTest(onnx_backend, __name__)
backend_test.include(rf"^test_({'|'.join(OPS)})(_.*)?_cpu$")

# Excluded, with the reason (README lists them).
EXCLUDED = {
    r"^test_(max|min)_float64_cpu$": "float64: pimc's arithmetic is float32, bfloat16, float16",
    r"^test_identity_(opt|sequence)_cpu$": "optional and sequence values are not tensors",
    r"^test_batchnorm_.*training_mode_cpu$": "training mode (pimc compiles inference)",
    r"^test_(reshape_allowzero_reordered|slice_start_out_of_bounds)_cpu$": "a zero-element "
                                                                          "tensor: nothing to place",
    r"^test_slice_neg_steps_cpu$": "Slice's negative steps (positive steps only)",
    r"^test_maxpool_with_argmax_.*_cpu$": "MaxPool's Indices output (pimc computes the values)",
    r"^test_(edge|reflect|wrap)_pad_cpu$": "Pad's edge, reflect and wrap modes (constant only)",
    r"^test_(log_)?softmax_(dim3|lastdim|functional_dim3)_cpu$": "PyTorch-converted at opset 6 "
                                                                 "(pimc reads opset 7 on)",
}
for pattern in EXCLUDED:
    backend_test.exclude(pattern)

globals().update(backend_test.test_cases)
