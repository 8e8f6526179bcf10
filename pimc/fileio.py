"""Writing output files atomically: a failed or interrupted command never leaves a
half-written file, and the files one command writes appear together or not at all."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from pimc.isa.errors import PimError

Writer = Callable[[IO[bytes]], None]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_all(files: Sequence[tuple[str | Path, Writer]]) -> None:
    """Write every file to a temporary file beside it, then rename them all into place
    (with the permissions a new file gets); on any failure none is left behind."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, write in files:
            path = Path(path)
            if path.is_dir():
                raise PimError(f"{path}: is a directory, not a file to write")
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                           suffix=".tmp")
            except OSError as exc:
                raise PimError(f"{path}: cannot write: {exc.strerror or exc}") from None
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, path in temps:
            os.replace(tmp, path)
    except OSError as exc:
        raise PimError(f"{exc.filename or 'output'}: cannot write: {exc.strerror or exc}"
                       ) from None
    finally:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)


def write_atomic(path: str | Path, write: Writer) -> None:
    """One file, written atomically."""
    write_all([(path, write)])


def check_paths(outputs: Sequence[str | Path | None], inputs: Sequence[str | Path | None]
                ) -> None:
    """Refuse, before any work, an output that is one of the inputs or another output."""
    seen: dict[Path, str] = {}
    for p in inputs:
        if p is not None:
            seen[Path(p).resolve()] = f"the input {p}"
    for p in outputs:
        if p is None:
            continue
        key = Path(p).resolve()
        if key in seen:
            raise PimError(f"{p}: this output would overwrite {seen[key]}")
        seen[key] = f"the output {p}"


def load_arrays(path: str, what: str = "cannot read inputs") -> dict[str, np.ndarray]:
    """The arrays of an .npz (no pickles); PimError `path: what: why` if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PimError(f"{path}: {what}: {exc}") from None
