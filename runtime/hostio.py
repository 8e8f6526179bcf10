"""Host I/O: writing input tensors into their placed cells and reading outputs back.

Counted apart from compute (HostIO in stats): one row write per placed slot, energy by
the bits written. Element e of a tensor is in lane e % lanes of slot e // lanes (TensorIO).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pimc.runtime.bitops import pack_rows, popcount, unpack_rows
from pimc.runtime.endurance import count_host_writes

from pimc.isa.dtypes import DType, Kind, parse_dtype, quantize
from pimc.isa.errors import PimError
from pimc.isa.uop import TensorIO, apply_view, unview, view_shape

if TYPE_CHECKING:
    from pimc.runtime.machine import Machine


class HostPort:
    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def dtype(self, t: TensorIO) -> DType:
        return parse_dtype(t.dtype)

    def _slots(self, t: TensorIO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Columns of the tensor, and each slot's crossbar and row."""
        bits = self.dtype(t).bits
        count = len(t.xbs) * len(t.rows) if t.broadcast else t.placed_elements // t.lanes
        slots = np.arange(count)
        per = len(t.rows)
        xb = t.xbs.start + (slots // per) * t.xbs.step
        row = t.rows.start + (slots % per) * t.rows.step
        return np.array(t.columns(bits)), xb, row

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
        m, dt = self.m, self.dtype(t)
        cols, xb, row = self._slots(t)
        flat = apply_view(values, t.view).reshape(-1)
        if t.broadcast:  # FloatPIM's row-parallel write: one value into every row
            flat = np.repeat(flat, len(xb))
        raw = dt.to_bits(flat).reshape(len(xb), t.lanes)
        per_col = _bits_of(raw, dt).reshape(len(xb), len(cols)).T  # [cols, slots]
        lo, hi = int(xb.min()), int(xb.max()) + 1
        cells = np.zeros((len(cols), hi - lo, m.arch.rows), dtype=bool)
        placed = np.zeros((hi - lo, m.arch.rows), dtype=bool)
        grid = _grid(t, len(xb), lo)
        if grid is None:
            cells[:, xb - lo, row] = per_col
            placed[xb - lo, row] = True
        else:  # whole crossbars of slots: a strided copy, not a scatter
            cells[(slice(None), *grid)] = per_col.reshape(len(cols), -1, len(t.rows))
            placed[grid] = True
        data, mask = pack_rows(cells), pack_rows(placed)
        xs = slice(lo, hi)
        m.bits[cols, xs] = (m.bits[cols, xs] & ~mask) | data
        if m.faults is not None:
            m.faults.after_write(m.bits, cols, xs, mask)
        m.written.update(cols, xs, mask, True)
        m.armed.update(cols, xs, mask, False)
        if m.writes is not None:
            count_host_writes(m.writes, t)
        ones = popcount(data)
        h = m.stats.host
        h.input_cells += len(cols) * len(xb)
        h.input_row_writes += 2 if t.broadcast else len(xb)  # a SET and a RESET phase
        h.input_set_cells += ones
        h.input_reset_cells += len(cols) * len(xb) - ones
        h.input_energy_fj = h.input_set_cells * m.arch.e_set_fj + \
            h.input_reset_cells * m.arch.e_reset_fj

    def read(self, t: TensorIO) -> np.ndarray:
        m, dt = self.m, self.dtype(t)
        cols, xb, row = self._slots(t)
        lo, hi = int(xb.min()), int(xb.max()) + 1
        xs = slice(lo, hi)
        if m.strict:
            placed = np.zeros((hi - lo, m.arch.rows), dtype=bool)
            placed[xb - lo, row] = True
            mask = pack_rows(placed)
            if not m.written.all_set(cols, xs, mask):
                c, x, r = m.written.first_unset(cols, xs, mask)
                raise PimError(f"{m.name}: output '{t.name}' reads c{cols[c]} of crossbar "
                               f"{lo + x} row {r}, which was never written")
        grid = _grid(t, len(xb), lo)
        every = unpack_rows(m.bits[cols, xs])
        cells = (every[:, xb - lo, row] if grid is None else  # [cols, slots]
                 every[(slice(None), *grid)].reshape(len(cols), -1))
        raw = _words_of(cells.T.reshape(len(xb), t.lanes, dt.bits), dt)
        m.stats.host.output_cells += len(cols) * len(xb)
        m.stats.host.output_row_reads += len(xb)
        values = dt.from_bits(raw.reshape(-1))
        if t.view:  # read back through the view: padding dropped, copies read once
            return unview(values.reshape(view_shape(t.shape, t.view)), t.shape, t.view)
        return values.reshape(t.shape)

    def read_outputs(self) -> dict[str, np.ndarray]:
        return {t.name: self.read(t) for t in self.m.prog.outputs}


def _grid(t: TensorIO, slots: int, lo: int) -> tuple[slice, slice] | None:
    """(crossbars, rows) as slices when the slots fill whole crossbars' rows in order."""
    per = len(t.rows)
    if slots % per:
        return None
    xbs = slice(t.xbs.start - lo, t.xbs.start - lo + (slots // per - 1) * t.xbs.step + 1,
                t.xbs.step)
    return xbs, t.rows.as_slice()


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
