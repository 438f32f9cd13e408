"""Execution backends for VIR0 programs: ``cpu`` (NumPy interpreter, the oracle), later ``cuda``."""
