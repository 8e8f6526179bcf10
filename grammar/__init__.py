"""The grammar files of the pimc kernel language, shipped with the package."""

from pathlib import Path

KERNEL_GRAMMAR = Path(__file__).with_name("kernel.lark")
