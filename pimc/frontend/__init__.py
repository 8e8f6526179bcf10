"""Front ends: source text (the kernel language, ONNX) to the dataflow IR, nothing further."""
