"""Decoded programs cached by content, so loading a `.uop` a second time skips the parser.

Each entry holds a parsed Program, pickled, in a file named by a key made of the text's
SHA-256 and a fingerprint of the ISA's record types: editing the `.uop`, or a pimc whose
records differ, gives another key, so a stale entry is never read. Entries live in the
user's cache folder ($PIMC_CACHE_DIR, else $XDG_CACHE_HOME/pimc, else ~/.cache/pimc), not
beside the program: a run leaves nothing in the user's folders and works where they are
read-only. The oldest entries beyond MAX_ENTRIES are removed. Unpickling admits only
pimc.isa's own types, so an entry cannot name arbitrary code to run. Where the cache
folder cannot be written, loads simply parse.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import os
import pickle
import tempfile
from pathlib import Path

from pimc.isa import arch, uop, view

MAGIC = b"pimc-decoded-1\n"
MAX_ENTRIES = 64


def _fingerprint() -> bytes:
    """The ISA's record types, field by field: a change of any invalidates sidecars."""
    parts = []
    for module in (arch, uop, view):
        for name, cls in sorted(vars(module).items()):
            if isinstance(cls, type) and cls.__module__ == module.__name__:
                if dataclasses.is_dataclass(cls):
                    parts.append(f"{name}({[(f.name, str(f.type)) for f in dataclasses.fields(cls)]})")
                elif issubclass(cls, enum.Enum):
                    parts.append(f"{name}{[m.value for m in cls]}")
    return hashlib.sha256("\n".join(parts).encode()).digest()


FINGERPRINT = _fingerprint()


def key_of(text: bytes) -> bytes:
    return hashlib.sha256(FINGERPRINT + text).digest()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if module.startswith("pimc.isa.") or (module, name) in (("builtins", "frozenset"),
                                                                  ("builtins", "set")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not an ISA type")


def folder() -> Path:
    base = os.environ.get("PIMC_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pimc"


def _entry(key: bytes) -> Path:
    return folder() / f"{key.hex()}.uopcache"


def load(key: bytes) -> uop.Program | None:
    """The cached program for this key, or None (missing, damaged or unreadable)."""
    try:
        data = _entry(key).read_bytes()
    except OSError:
        return None
    head = MAGIC + key
    if not data.startswith(head):
        return None
    try:
        prog = _Unpickler(io.BytesIO(data[len(head):])).load()
    except Exception:  # a damaged entry is only a cache miss
        return None
    return prog if isinstance(prog, uop.Program) else None


def store(key: bytes, prog: uop.Program) -> None:
    """Write the entry atomically and prune the oldest; quietly skip what cannot be
    written."""
    target = _entry(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + key)
            pickle.dump(prog, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
        entries = sorted(target.parent.glob("*.uopcache"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-MAX_ENTRIES]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        Path(tmp).unlink(missing_ok=True)
