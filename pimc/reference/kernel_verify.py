"""The order-matched reference of a program compiled from a DSL kernel: the kernel its
.meta records, after the same passes, with the splits the program records."""

from __future__ import annotations

from pimc.frontend.dsl import parse_kernels
from pimc.ir import Kernel
from pimc.isa.errors import PimError
from pimc.isa.uop import Program
from pimc.lower.splits import recorded
from pimc.passes.pipeline import run_passes


def reference(prog: Program, name: str = "") -> Kernel:
    """The IR `prog` was lowered from, as the reference evaluates it."""
    meta = dict(prog.meta)
    if "kernel-source" not in meta:
        raise PimError(f"{name or prog.source}: the program records no computation to verify "
                       "against (it was not compiled from a kernel)")
    source = meta["kernel-source"]
    kernel = next(k for k in parse_kernels(source, prog.source) if k.name == meta["kernel"])
    ran = run_passes(kernel, source, meta.get("mode", "ieee"))
    assert ran is not None  # no pass to stop after
    return recorded(ran, meta)
