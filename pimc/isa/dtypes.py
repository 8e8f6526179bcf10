"""Element types of tensors held in crossbar columns, and their bit encodings.

A value of N bits sits in N adjacent columns of one row, least significant bit first.
Floats are stored as their IEEE-754 bit pattern; bf16 uses ml_dtypes' bfloat16 when
decoded for the host.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np

from pimc.isa.errors import PimError


class Kind(enum.Enum):
    UINT = "u"
    SINT = "i"
    FLOAT = "f"
    FIXED = "q"


@dataclass(frozen=True)
class DType:
    """A named element type: `u8`, `i32`, `f32`, `bf16`, `f16`, `q8.8` (signed fixed point)."""

    name: str
    kind: Kind
    bits: int
    frac_bits: int = 0  # fixed point: bits after the binary point

    @property
    def signed(self) -> bool:
        """Two's complement (iN and the Q formats), as opposed to unsigned."""
        return self.kind in (Kind.SINT, Kind.FIXED)

    @property
    def raw_range(self) -> tuple[int, int]:
        """The least and greatest integer a raw pattern stands for (two's complement for
        the signed kinds; a Q format's steps)."""
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    @property
    def storage(self) -> np.dtype:
        """The unsigned integer numpy dtype that holds one raw bit pattern."""
        for width, dt in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)):
            if self.bits <= width:
                return np.dtype(dt)
        raise AssertionError(self.bits)

    @property
    def host(self) -> np.dtype:
        """The numpy dtype users exchange values in (npz files, references)."""
        if self.kind is Kind.FLOAT:
            return np.dtype(_FLOATS[self.name])
        if self.kind is Kind.UINT:
            return self.storage
        signed = {np.dtype(np.uint8): np.int8, np.dtype(np.uint16): np.int16,
                  np.dtype(np.uint32): np.int32, np.dtype(np.uint64): np.int64}
        return np.dtype(signed[self.storage])

    def to_bits(self, values: np.ndarray) -> np.ndarray:
        """Host values -> raw bit patterns (unsigned, masked to `bits`)."""
        raw = np.asarray(values).astype(self.host).view(self.storage)
        return raw & self.storage.type(_mask(self.bits))

    def from_bits(self, raw: np.ndarray) -> np.ndarray:
        """Raw bit patterns -> host values (sign-extended for signed kinds)."""
        raw = np.asarray(raw).astype(self.storage) & self.storage.type(_mask(self.bits))
        if self.signed and self.bits < self.storage.itemsize * 8:
            sign = self.storage.type(1 << (self.bits - 1))
            raw = (raw ^ sign) - sign
        return raw.view(self.host)


def quantize(values: np.ndarray, dt: DType) -> np.ndarray:
    """Real values as the host writes them in `dt`: a fixed-point type's raw integers
    (round to nearest, saturated), or the values cast to the host type."""
    values = np.asarray(values)
    if dt.kind is Kind.FLOAT and values.dtype == dt.storage:
        return values.view(dt.host)  # raw bits, as .npz files hold bfloat16
    if dt.kind is not Kind.FIXED or values.dtype.kind not in "fc":
        return values.astype(dt.host)
    scaled = np.round(values.astype(np.float64) * (1 << dt.frac_bits))
    low, high = dt.raw_range
    return np.clip(scaled, low, high).astype(dt.host)


def dequantize(values: np.ndarray, dt: DType) -> np.ndarray:
    """The real values a fixed-point type's raw integers stand for (as float64)."""
    values = np.asarray(values)
    if dt.kind is not Kind.FIXED:
        return values.astype(np.float64)
    return values.astype(np.float64) / (1 << dt.frac_bits)


def _mask(bits: int) -> int:
    return (1 << bits) - 1


def _bfloat16() -> np.dtype:
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


_FLOATS: dict[str, object] = {"f32": np.float32, "f16": np.float16}
_FLOAT_BITS = {"f32": 32, "f16": 16, "bf16": 16}
_INT = re.compile(r"([ui])(\d+)$")
_FIXED = re.compile(r"q(\d+)\.(\d+)$")


def parse_dtype(name: str) -> DType:
    """Parse a dtype name; raises PimError with the list of valid forms."""
    if name in _FLOAT_BITS:
        if name == "bf16" and "bf16" not in _FLOATS:
            _FLOATS["bf16"] = _bfloat16()
        return DType(name, Kind.FLOAT, _FLOAT_BITS[name])
    m = _INT.match(name)
    if m and 1 <= int(m.group(2)) <= 64:
        return DType(name, Kind(m.group(1)), int(m.group(2)))
    m = _FIXED.match(name)
    if m:
        whole, frac = int(m.group(1)), int(m.group(2))
        if 1 <= whole + frac <= 64:
            return DType(name, Kind.FIXED, whole + frac, frac)
    raise PimError(
        f"unknown dtype '{name}' (expected f32, bf16, f16, uN or iN with N in 1..64, or qI.F)"
    )
