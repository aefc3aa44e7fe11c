"""The offline simulator: one engine behind the in-process `sim` provider and `picaco sim-server`."""
