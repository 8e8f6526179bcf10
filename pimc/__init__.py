"""pimc: a compiler from ONNX graphs and a small DSL to digital PIM micro-op programs.

The runtime (`runtime/`) and the kernel grammar (`grammar/`) sit beside this folder in
the source tree and install as `pimc.runtime` and `pimc.grammar`, so an environment gets
one top-level name. Run from a source checkout, they are found beside this folder.
"""

from pathlib import Path

__version__ = "0.1.0"

_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "runtime" / "__init__.py").is_file() and not (
        Path(__file__).resolve().parent / "runtime").exists():
    __path__.append(str(_ROOT))  # a source checkout: runtime/ and grammar/ beside pimc/
