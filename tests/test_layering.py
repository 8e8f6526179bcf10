"""The runtime depends on the shared ISA only, never on the compiler's passes."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_imports_only_the_isa_from_pimc():
    code = ("import sys, runtime, runtime.reference; "
            "print(sorted(m for m in sys.modules if m == 'pimc' or m.startswith('pimc.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = eval(done.stdout)
    assert loaded, "the runtime should use pimc.isa"
    assert all(m in ("pimc", "pimc.isa") or m.startswith("pimc.isa.") for m in loaded), loaded
