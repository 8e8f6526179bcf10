"""The runtime depends on the shared ISA only, never on the compiler's passes."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_imports_only_the_isa_from_pimc():
    code = ("import sys, pimc.runtime, pimc.runtime.reference, pimc.runtime.count; "
            "print(sorted(m for m in sys.modules if m == 'pimc' or m.startswith('pimc.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = eval(done.stdout)
    assert loaded, "the runtime should use pimc.isa"
    assert all(m in ("pimc", "pimc.isa", "pimc.runtime") or m.startswith(("pimc.isa.", "pimc.runtime."))
               for m in loaded), loaded


def test_runtime_sources_import_only_the_isa_statically():
    """Every import statement in runtime/ (lazy ones inside functions too) names the
    standard library, numpy, the runtime itself or pimc.isa."""
    import ast
    from pathlib import Path

    allowed = ("pimc.isa", "pimc.runtime", "numpy", "numba", "distributed")  # optional extras
    for path in (Path(__file__).resolve().parent.parent / "runtime").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                ok = name.startswith(allowed) or (top != "pimc" and top in sys.stdlib_module_names)
                assert ok or name == "__future__", f"{path.name} imports {name}"
