"""The base layer: records and errors every package of picaco may import. It imports nothing of the
project, so importing it never pulls in the call layer, the method or the simulator."""
