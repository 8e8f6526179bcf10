"""Architecture parameters of the simulated PIM memory: geometry, timing and energy.

One frozen record shared by the compiler (layout, costs) and the runtime (checks, stats).
Defaults are FloatPIM's (ISCA 2019, Sec. 5 and the table in Sec. 6.2); a TOML file may
override any field.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pimc.isa.errors import PimError


class InitModel(enum.Enum):
    """How INIT is charged, since published cycle counts differ by 2x on this alone."""

    BULK = "bulk"  # any set of cells per write phase (FloatPIM, MultPIM)
    PER_CELL = "per-cell"  # one cycle per initialised column (AritPIM's 1-INIT)


@dataclass(frozen=True)
class Arch:
    rows: int = 1024
    cols: int = 1024
    max_crossbars: int = 32 * 256  # 32 tiles x 256 blocks
    partitions: int = 1
    init_model: InitModel = InitModel.BULK
    max_shift: int = 1023  # widest row shift of the barrel shifter
    max_nor_inputs: int = 3
    t_nor_ns: float = 1.1
    t_write_ns: float = 1.1  # one SET or RESET phase of a row-parallel write
    t_search_ns: float = 1.5
    t_shift_ns: float = 1.1  # one column through the barrel shifter
    t_transfer_ns: float = 1.1  # one bit-serial step over the inter-block switches
    e_nor_fj: float = 0.29
    e_set_fj: float = 23.8
    e_reset_fj: float = 0.32
    e_search_fj: float = 5340.0
    # Writes a cell survives before it is stuck: FloatPIM's lower figure for ReRAM (Sec. 7.8
    # studies 1e9 and 1e15); used by fault injection (`pimc run --faults endurance`).
    endurance_writes: int = 10**9

    def __post_init__(self) -> None:
        if self.rows <= 0 or self.rows % 64:
            raise PimError(f"arch: rows must be a positive multiple of 64, got {self.rows}")
        if self.cols <= 0:
            raise PimError(f"arch: cols must be positive, got {self.cols}")
        if self.partitions <= 0 or self.cols % self.partitions:
            raise PimError(
                f"arch: partitions ({self.partitions}) must divide cols ({self.cols})"
            )
        if self.endurance_writes <= 0:
            raise PimError(f"arch: endurance_writes must be positive, got {self.endurance_writes}")
        if self.max_crossbars <= 0 or self.max_shift < 0:
            raise PimError("arch: max_crossbars must be positive and max_shift non-negative")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not (math.isfinite(v) and v >= 0):
                raise PimError(f"arch: {f.name} must be a finite number >= 0, got {v}")

    @property
    def partition_width(self) -> int:
        return self.cols // self.partitions

    def partition_of(self, col: int) -> int:
        return col // self.partition_width

    def fields(self) -> dict[str, object]:
        """Every parameter by name, with enums as their text value (for headers and JSON)."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.value if isinstance(v, enum.Enum) else v
        return out

    @classmethod
    def from_fields(cls, values: dict[str, object], where: str = "arch") -> Arch:
        """Build from name -> value pairs (strings allowed), rejecting unknown names."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, object] = {}
        for name, raw in values.items():
            f = known.get(name)
            if f is None:
                raise PimError(f"{where}: unknown architecture parameter '{name}'")
            default = getattr(cls, name)
            try:
                if isinstance(default, InitModel):
                    kwargs[name] = InitModel(str(raw))
                elif isinstance(default, int):
                    if isinstance(raw, (float, bool)):
                        raise ValueError
                    kwargs[name] = int(raw)
                else:
                    kwargs[name] = float(raw)
            except ValueError:
                raise PimError(f"{where}: bad value {raw!r} for '{name}'") from None
        try:
            return cls(**kwargs)
        except PimError as exc:
            raise PimError(f"{where}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> Arch:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PimError(f"{path}: cannot read architecture file: {exc}") from None
        table = data.get("arch", data)
        if not isinstance(table, dict):
            raise PimError(f"{path}: [arch] must be a table")
        return cls.from_fields(table, where=str(path))


FLOATPIM = Arch()
