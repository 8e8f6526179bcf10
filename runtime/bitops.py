"""Bit-packed row vectors: 64 rows per uint64 word, row r in bit r % 64 of word r // 64."""

from __future__ import annotations

import numpy as np

ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
WORD = 64


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """bool[..., R] -> uint64[..., R/64]."""
    packed = np.packbits(np.ascontiguousarray(bits, dtype=bool), axis=-1, bitorder="little")
    return packed.view("<u8").astype(np.uint64, copy=False)


def unpack_rows(words: np.ndarray) -> np.ndarray:
    """uint64[..., W] -> bool[..., 64*W]."""
    as_bytes = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little").astype(bool)


def row_mask(rows: int, indices: range) -> np.ndarray:
    """uint64[R/64] with the bits of `indices` set."""
    flags = np.zeros(rows, dtype=bool)
    flags[indices.start:indices.stop:indices.step] = True
    return pack_rows(flags)


def popcount(words: np.ndarray) -> int:
    return int(np.bitwise_count(words).sum(dtype=np.int64))


def shift_rows(words: np.ndarray, by: int) -> np.ndarray:
    """Row r of the result is row r - by of `words` (rows from outside read 0)."""
    n = words.shape[-1]
    q, s = divmod(abs(by), WORD)
    out = np.zeros_like(words)
    if q >= n:
        return out
    if by >= 0:
        src = words[..., : n - q]
        out[..., q:] = src << np.uint64(s)
        if s and n - q > 1:
            out[..., q + 1:] |= words[..., : n - q - 1] >> np.uint64(WORD - s)
    else:
        src = words[..., q:]
        out[..., : n - q] = src >> np.uint64(s)
        if s and n - q > 1:
            out[..., : n - q - 1] |= words[..., q + 1:] << np.uint64(WORD - s)
    return out
