"""Lowering of the tensor IR to micro-code with routines: arithmetic synthesised once per
(op, dtypes, mode, architecture) as a routine (arith), a word-level program of calls,
loops and moves (words), the tensor lowering that builds it (tensors)."""
