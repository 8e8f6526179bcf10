"""pimc: a compiler from ONNX graphs and a small DSL to digital PIM micro-op programs."""

__version__ = "0.1.0"
