"""The order-matched reference: the IR evaluated as the hardware orders it, and the
checks of a run against it (and against onnx)."""
