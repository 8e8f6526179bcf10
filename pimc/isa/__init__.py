"""The micro-op ISA shared by compiler and runtime: architecture, ops, text format.

This package imports nothing else from pimc, so the runtime can depend on it without
depending on the compiler (see docs/isa.md, "Where the ISA lives").
"""
