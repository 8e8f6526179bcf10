"""The bit-level runtime: executes .uop programs on a simulated crossbar memory.

It imports the shared ISA (pimc.isa) and nothing else from the compiler.
"""

from pimc.runtime.machine import Machine, run_program
from pimc.runtime.stats import Stats

__all__ = ["Machine", "Stats", "run_program"]
