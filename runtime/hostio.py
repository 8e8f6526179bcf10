"""Host I/O: writing input tensors into their placed cells and reading outputs back.

Counted apart from compute (HostIO in stats): set-up writes (weights) apart from the
inputs of a run, in row-parallel writes (row_writes), energy by the bits written.
Element e of a tensor is in lane e % lanes of slot e // lanes (TensorIO).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pimc.runtime import jit
from pimc.runtime.bitops import pack_rows, popcount, unpack_rows
from pimc.runtime.endurance import count_host_writes
from pimc.runtime.stats import HostIO

from pimc.isa.arch import Arch
from pimc.isa.dtypes import DType, Kind, parse_dtype, quantize
from pimc.isa.errors import PimError
from pimc.isa.uop import TensorIO, apply_view, unview, view_shape

if TYPE_CHECKING:
    from pimc.runtime.machine import Machine


class HostPort:
    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def load(self, given: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        """Write every declared input (random where not given); return what was written."""
        known = {t.name for t in self.m.prog.inputs}
        extra = sorted(set(given) - known)
        if extra:
            raise PimError(f"{self.m.name}: inputs given that the program does not declare: "
                           f"{', '.join(extra)} (it declares: {', '.join(sorted(known)) or 'none'})")
        complete = complete_inputs(self.m.prog.inputs, given, seed)
        used: dict[str, np.ndarray] = {}
        for t in self.m.prog.inputs:
            values = host_values(t, complete[t.name], self.m.name)
            self.write(t, values)
            used[t.name] = values
        return used

    def write(self, t: TensorIO, values: np.ndarray) -> None:
        m = self.m
        p = encode(t, values, m.arch.rows)
        self.place(p.cols, slice(p.lo, p.lo + p.mask.shape[0]), p.data, p.mask)
        if m.writes is not None:
            count_host_writes(m.writes, t)
        account(m.stats.host, t, p, m.arch)

    def place(self, cols: np.ndarray, xs: slice, data: np.ndarray, mask: np.ndarray) -> None:
        """Write encoded cells (under their mask) and mark them written (flags only the
        strict checks read)."""
        m = self.m
        m.bits[cols, xs] = (m.bits[cols, xs] & ~mask) | data
        if m.faults is not None:
            m.faults.after_write(m.bits, cols, xs, mask)
        if m.strict:
            m.written.update(cols, xs, mask, True)
            m.armed.update(cols, xs, mask, False)

    def unwritten(self, cols: np.ndarray, xs: slice, mask: np.ndarray
                  ) -> tuple[int, int, int] | None:
        """(column index, crossbar, row) of the first cell under `mask` never written."""
        if self.m.written.all_set(cols, xs, mask):
            return None
        c, x, r = self.m.written.first_unset(cols, xs, mask)
        return c, self.m.xb_base + xs.start + x, r

    def read(self, t: TensorIO) -> np.ndarray:
        m = self.m
        cols, xb, _ = slots(t)
        lo, hi = int(xb.min()), int(xb.max()) + 1
        xs = slice(lo, hi)
        if m.strict:
            bad = self.unwritten(cols, xs, placed_mask(t, m.arch.rows, lo, hi))
            if bad is not None:
                raise unwritten_output(m.name, t, cols, bad)
        account_read(m.stats.host, t)
        return decode(t, m.bits[cols, xs], lo)

    def read_outputs(self) -> dict[str, np.ndarray]:
        return {t.name: self.read(t) for t in self.m.prog.outputs}


@dataclass(frozen=True)
class Encoded:
    """An input tensor as the cells the host writes: data and mask over crossbars lo.."""

    cols: np.ndarray
    lo: int
    data: np.ndarray  # uint64[cols, crossbars, words]
    mask: np.ndarray  # uint64[crossbars, words]: the slots' rows
    slots: int
    broadcast: bool


def slot_count(t: TensorIO) -> int:
    return len(t.xbs) * len(t.rows) if t.broadcast else t.placed_elements // t.lanes


def slots(t: TensorIO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of the tensor, and each slot's crossbar and row."""
    bits = parse_dtype(t.dtype).bits
    return np.array(t.columns(bits)), *slot_places(t, np.arange(slot_count(t)))


def slot_crossbars(t: TensorIO) -> tuple[int, int]:
    """The first crossbar of the tensor's slots and one past the last."""
    xb, _ = slot_places(t, np.array([0, slot_count(t) - 1]))
    return int(xb[0]), int(xb[1]) + 1


def slot_places(t: TensorIO, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crossbar and row of the tensor's slots `index` (slots fill a crossbar's rows,
    then the next crossbar's)."""
    per = len(t.rows)
    return t.xbs.start + (index // per) * t.xbs.step, t.rows.start + (index % per) * t.rows.step


def placed_mask(t: TensorIO, rows: int, lo: int, hi: int) -> np.ndarray:
    """uint64[crossbars lo..hi-1, words]: the rows holding the tensor's slots."""
    _, xb, row = slots(t)
    placed = np.zeros((hi - lo, rows), dtype=bool)
    placed[xb - lo, row] = True
    return pack_rows(placed)


def _slot_range(t: TensorIO, n: int, lo: int, hi: int) -> tuple[int, int]:
    """The run of slots in crossbars lo..hi-1 (slots fill crossbars in order)."""
    per, start, step = len(t.rows), t.xbs.start, t.xbs.step
    return tuple(min(max(-(-(x - start) // step) * per, 0), n)
                 for x in (lo, hi))


def encode(t: TensorIO, values: np.ndarray, rows: int,
           within: tuple[int, int] | None = None) -> Encoded:
    """The cells an input's values make, bit-packed, with the mask of their rows (only
    those in crossbars within[0]..within[1]-1, if given: one shard's part)."""
    dt = parse_dtype(t.dtype)
    cols, n = np.array(t.columns(dt.bits)), slot_count(t)
    first, end = (0, n) if within is None else _slot_range(t, n, *within)
    count = end - first
    if not count:
        words = rows // 64
        return Encoded(cols, within[0] if within else 0,
                       np.zeros((len(cols), 0, words), dtype=np.uint64),
                       np.zeros((0, words), dtype=np.uint64), 0, t.broadcast)
    bits = dt.to_bits(apply_view(values, t.view).reshape(-1))
    if jit.AVAILABLE:
        from pimc.runtime import scatter  # numba, loaded where values are written

        lo, hi = slot_places(t, np.array([first, end - 1]))[0]
        per = len(t.rows)
        data, placed = scatter.scatter(
            bits if t.broadcast else bits[first * t.lanes:end * t.lanes], dt.bits, t.lanes,
            t.broadcast, first, count, per, t.xbs.start, t.xbs.step, t.rows.start,
            t.rows.step, int(lo), int(hi - lo + 1), rows // 64)
        return Encoded(cols, int(lo), data, placed, count, t.broadcast)
    xb, row = slot_places(t, np.arange(first, end))
    raw = (np.repeat(bits, count) if t.broadcast  # FloatPIM's row-parallel write: one
           else bits.reshape(n, t.lanes)[first:end]).reshape(count, t.lanes)  # value, all rows
    per_col = _bits_of(raw, dt).reshape(count, len(cols)).T  # [cols, slots]
    lo, hi = int(xb.min()), int(xb.max()) + 1
    cells = np.zeros((len(cols), hi - lo, rows), dtype=bool)
    placed = np.zeros((hi - lo, rows), dtype=bool)
    grid = _grid(t, first, count, lo)
    if grid is None:
        cells[:, xb - lo, row] = per_col
        placed[xb - lo, row] = True
    else:  # whole crossbars of slots: a strided copy, not a scatter
        cells[(slice(None), *grid)] = per_col.reshape(len(cols), -1, len(t.rows))
        placed[grid] = True
    return Encoded(cols, lo, pack_rows(cells), pack_rows(placed), count, t.broadcast)


def account(h: HostIO, t: TensorIO, p: Encoded, arch: Arch) -> None:
    """Host write statistics: cells, row writes, cells set and reset, energy."""
    h.writes(t.setup).add(len(p.cols) * p.slots, popcount(p.data), row_writes(t), arch)


def account_values(h: HostIO, t: TensorIO, values: np.ndarray, arch: Arch) -> None:
    """account() of the cells encode(t, values) would make, without making them."""
    dt = parse_dtype(t.dtype)
    n = slot_count(t)
    raw = dt.to_bits(apply_view(values, t.view).reshape(-1))
    if raw.dtype.itemsize * 8 > dt.bits:
        raw = raw & raw.dtype.type((1 << dt.bits) - 1)
    ones = int(np.bitwise_count(raw).sum(dtype=np.int64))
    h.writes(t.setup).add(dt.bits * t.lanes * n, ones * (n if t.broadcast else 1),
                          row_writes(t), arch)


@functools.lru_cache(maxsize=256)
def row_writes(t: TensorIO) -> int:
    """The host's row-parallel writes of t: a run of consecutive slots in one crossbar
    that hold the same elements of the tensor (a replicated copy, as a convolution's
    weights in every output position's row) is written at once. Decided by the placement,
    not by the values, so counting without executing gives the same number."""
    per = len(t.rows)
    if t.broadcast:
        return len(t.xbs)
    n = slot_count(t)
    if all(step.kind in ("reshape", "transpose") for step in t.view):
        return n  # a permutation: every slot holds elements of its own
    size = math.prod(t.shape)
    index = np.arange(1, size + 1, dtype=np.int32 if size < 2**31 - 1 else np.int64)
    slot = apply_view(index.reshape(t.shape), t.view).reshape(n, t.lanes)  # padding: 0 or least
    new = (slot[1:] != slot[:-1]).any(axis=1)
    new[per - 1::per] = True  # a crossbar's first slot
    return 1 + int(np.count_nonzero(new))


def account_read(h: HostIO, t: TensorIO) -> None:
    cols, xb, _ = slots(t)
    h.output_cells += len(cols) * len(xb)
    h.output_row_reads += len(xb)


def decode(t: TensorIO, words: np.ndarray, lo: int) -> np.ndarray:
    """An output's values from its columns' words over crossbars lo.. ."""
    dt = parse_dtype(t.dtype)
    cols, xb, row = slots(t)
    grid = _grid(t, 0, len(xb), lo)
    every = unpack_rows(words)
    cells = (every[:, xb - lo, row] if grid is None else  # [cols, slots]
             every[(slice(None), *grid)].reshape(len(cols), -1))
    raw = _words_of(cells.T.reshape(len(xb), t.lanes, dt.bits), dt)
    values = dt.from_bits(raw.reshape(-1))
    if t.view:  # read back through the view: padding dropped, copies read once
        return unview(values.reshape(view_shape(t.shape, t.view)), t.shape, t.view)
    return values.reshape(t.shape)


def unwritten_output(name: str, t: TensorIO, cols: np.ndarray, bad: tuple[int, int, int]
                     ) -> PimError:
    c, x, r = bad
    return PimError(f"{name}: output '{t.name}' reads c{cols[c]} of crossbar {x} row {r}, "
                    "which was never written")


def _grid(t: TensorIO, first: int, slots: int, lo: int) -> tuple[slice, slice] | None:
    """(crossbars, rows) as slices when slots first.. fill whole crossbars' rows in order."""
    per = len(t.rows)
    if slots % per or first % per:
        return None
    start = t.xbs.start + (first // per) * t.xbs.step - lo
    return slice(start, start + (slots // per - 1) * t.xbs.step + 1, t.xbs.step), \
        t.rows.as_slice()


def _bits_of(raw: np.ndarray, dt: DType) -> np.ndarray:
    """bool[..., lanes * bits]: each value's bits, least significant first."""
    width = dt.storage.itemsize * 8
    as_bytes = np.ascontiguousarray(raw, dtype=dt.storage.newbyteorder("<")).view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little").astype(bool)
    if width == dt.bits:
        return bits
    return bits.reshape(*raw.shape, width)[..., :dt.bits].reshape(*raw.shape[:-1], -1)


def _words_of(bits: np.ndarray, dt: DType) -> np.ndarray:
    """The inverse of _bits_of for bool[..., bits]: values of dt's storage type."""
    width = dt.storage.itemsize * 8
    if width != dt.bits:
        pad = np.zeros((*bits.shape[:-1], width - dt.bits), dtype=bool)
        bits = np.concatenate([bits, pad], axis=-1)
    packed = np.ascontiguousarray(np.packbits(bits, axis=-1, bitorder="little"))
    return packed.view(dt.storage.newbyteorder("<")).reshape(bits.shape[:-1]).astype(dt.storage)


def random_input(t: TensorIO, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random bit patterns of the tensor's dtype (deterministic per seed)."""
    dt = parse_dtype(t.dtype)
    raw = rng.integers(0, 1 << dt.bits, size=t.shape, dtype=np.uint64, endpoint=False)
    return dt.from_bits(np.asarray(raw).astype(dt.storage))


def complete_inputs(inputs: tuple[TensorIO, ...], given: dict[str, np.ndarray],
                    seed: int) -> dict[str, np.ndarray]:
    """The given inputs, and random ones (from `seed`, in declaration order) for the rest."""
    rng = np.random.default_rng(seed)
    out = dict(given)
    for t in inputs:
        if t.name not in out:
            out[t.name] = random_input(t, rng)
    return out


def host_values(t: TensorIO, given: np.ndarray, name: str) -> np.ndarray:
    """An input as the host writes it, in the tensor's host dtype: float types given as
    their raw bit patterns are viewed as floats, real values for a fixed-point type are
    rounded to its steps; anything it cannot hold is refused, not wrapped or truncated."""
    values, dt = np.asarray(given), parse_dtype(t.dtype)
    if values.dtype.kind not in "biuf" and values.dtype != dt.host:
        raise PimError(f"{name}: input '{t.name}' holds {values.dtype}, not numbers")
    if tuple(values.shape) != t.shape:
        raise PimError(f"{name}: input '{t.name}' has shape {values.shape}, the program "
                       f"declares {t.shape}")
    if dt.kind is Kind.FLOAT:
        return values.view(dt.host) if values.dtype == dt.storage else values.astype(dt.host)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise PimError(f"{name}: input '{t.name}' holds NaN or infinity, which "
                           f"{t.dtype} cannot represent")
        if dt.kind is Kind.FIXED:
            return quantize(values, dt)
        if (values != np.round(values)).any():
            raise PimError(f"{name}: input '{t.name}' holds fractions; {t.dtype} is an "
                           "integer type")
    lo, hi = dt.raw_range
    if values.size and dt.kind is not Kind.FIXED and (values.min() < lo or values.max() > hi):
        raise PimError(f"{name}: input '{t.name}' holds values outside {t.dtype}'s range "
                       f"{lo}..{hi}")
    return values.astype(dt.host)
