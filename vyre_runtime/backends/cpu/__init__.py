"""The CPU backend: a NumPy interpreter of VIR0, the embedded default and the bit-exact oracle.

Lanes are vectorized: registers are a (registers, lanes) uint32 array and one scheduler step is
one NumPy operation over every lane executing it. Modules: ``run`` (public entry point and
argument checks), ``prepared`` (verified program -> per-pc step closures, cached), ``interpreter``
(scheduling rule, fuel, faults), ``machine`` (per-run state), ``alu`` / ``floats`` / ``memory`` /
``collectives`` / ``intrinsics`` (instruction handlers), ``lane_ranges`` / ``hashes`` /
``dfa_walk`` / ``histogram`` (range kernels), ``emit`` (hit buffer).
"""

from vyre_runtime.backends.cpu.prepared import PreparedProgram, prepare
from vyre_runtime.backends.cpu.results import Fault, Region, RunResult
from vyre_runtime.backends.cpu.run import run_program

__all__ = ["Fault", "PreparedProgram", "Region", "RunResult", "prepare", "run_program"]
