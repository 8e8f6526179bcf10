"""numba, if installed (the `fast` extra): whether it is, and its decorator and parallel
range for the compiled kernel and scatter. numba itself loads on the first use of those
two (a program only counted, or run by the numpy path, never pays for it)."""

from __future__ import annotations

import importlib.util

AVAILABLE = importlib.util.find_spec("numba") is not None


def _missing(*args: object, **kwargs: object) -> object:
    raise ImportError("numba is not installed")


def __getattr__(name: str) -> object:
    """`njit` and `prange`, from numba when it is there."""
    if name not in ("njit", "prange"):
        raise AttributeError(name)
    if not AVAILABLE:
        return range if name == "prange" else _missing
    import numba

    return getattr(numba, name)
