"""IR -> IR passes, one job per module: each is a plain function from Kernel to Kernel."""
