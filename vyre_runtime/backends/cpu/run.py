"""``run_program``: one dispatch ("run") of a VIR0 program on the CPU.

Checks the dispatch arguments against the program (DispatchError, with a fix), builds the run's
state (fresh RUN bindings filled with ``init``; GLOBAL bindings from the caller, mutated in
place, or created), runs the scheduler with NumPy's floating-point warnings silenced (VIR0 defines
every float edge itself), and packages the result.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import numpy as np

from vyre_runtime.backends.cpu.emit import EmitBuffer
from vyre_runtime.backends.cpu.interpreter import Scheduler
from vyre_runtime.backends.cpu.machine import Machine
from vyre_runtime.backends.cpu.prepared import PreparedProgram, prepare
from vyre_runtime.backends.cpu.results import Region, RunResult
from vyre_runtime.errors import DispatchError
from vyre_runtime.vir0.isa import MAX_LANES, Scope, SpecialRegister
from vyre_runtime.vir0.program import Program

U32_MAX = 0xFFFFFFFF
U64_MAX = (1 << 64) - 1
DEFAULT_EMIT_CAPACITY = 65536


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise DispatchError(f"{name} must be an integer, got a bool", f"pass {name} as an int in {low}..{high}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise DispatchError(
            f"{name} must be an integer, got {type(value).__name__}", f"pass an int in {low}..{high}"
        ) from None
    if not low <= number <= high:
        raise DispatchError(f"{name} = {number} is outside {low}..{high}", f"pass {name} in {low}..{high}")
    return number


def _input_array(region: Region) -> np.ndarray:
    data = region.data
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1 or not data.flags.c_contiguous:
            raise DispatchError(
                f"region data is a {data.dtype} array of shape {data.shape}; it must be 1-D contiguous uint8",
                "pass np.ascontiguousarray(data, dtype=np.uint8).reshape(-1), or bytes",
            )
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DispatchError(
            f"region data is a {type(data).__name__}", "pass bytes, bytearray, a contiguous memoryview or a uint8 array"
        )
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (ValueError, BufferError, TypeError) as error:
        raise DispatchError(f"region data cannot be read as bytes: {error}", "pass a C-contiguous buffer") from None


def _region_bounds(region: Region, size: int) -> tuple[int, int]:
    if size > U32_MAX:
        raise DispatchError(
            f"the region holds {size} bytes; a run reads fewer than 2^32", "split the input into chunks"
        )
    own_lo = _integer("own_lo", region.own_lo, 0, size)
    own_hi = size if region.own_hi is None else _integer("own_hi", region.own_hi, 0, size)
    if own_lo > own_hi:
        raise DispatchError(f"own_lo {own_lo} > own_hi {own_hi}", "the owned range must satisfy own_lo <= own_hi")
    return own_lo, own_hi


def _bindings(prepared: PreparedProgram, global_buffers: Mapping[str, np.ndarray] | None) -> list[np.ndarray]:
    supplied = dict(global_buffers or {})
    by_name = {binding.name: binding for binding in prepared.bindings}
    for name in supplied:
        binding = by_name.get(name)
        if binding is None or binding.scope != Scope.GLOBAL:
            what = "a run-scoped binding" if binding is not None else "not a binding"
            globals_ = [b.name for b in prepared.bindings if b.scope == Scope.GLOBAL]
            raise DispatchError(
                f"global buffer {name!r} is {what} of program {prepared.name!r}", f"pass only {globals_}"
            )
    buffers = []
    for binding in prepared.bindings:
        buffer = supplied.get(binding.name)
        if buffer is None:
            buffers.append(np.full(binding.words, binding.init, dtype=np.uint32))
            continue
        if not (
            isinstance(buffer, np.ndarray)
            and buffer.dtype == np.uint32
            and buffer.shape == (binding.words,)
            and buffer.flags.c_contiguous
            and buffer.flags.writeable
        ):
            shape = getattr(buffer, "shape", None)
            raise DispatchError(
                f"global buffer {binding.name!r} must be a writeable contiguous uint32 array of shape "
                f"({binding.words},), got {type(buffer).__name__} {getattr(buffer, 'dtype', '')} {shape}",
                f"create it once with np.full({binding.words}, {binding.init}, dtype=np.uint32); pass it every run",
            )
        buffers.append(buffer)
    return buffers


def run_program(
    program: Program | PreparedProgram,
    region: Region,
    *,
    lanes: int | None = None,
    fuel: int | None = None,
    emit_capacity: int = DEFAULT_EMIT_CAPACITY,
    global_buffers: Mapping[str, np.ndarray] | None = None,
) -> RunResult:
    """Run ``program`` over ``region`` on ``lanes`` lanes and return outputs, records and any fault.

    The program is verified on first use (VerifyError) and its decoded form cached. Defaults:
    lanes and fuel from the program's ``.lanes`` / ``.fuel``. GLOBAL bindings not supplied in
    ``global_buffers`` are created from ``init`` for this run (pass ``result.outputs[name]`` back
    to keep them across runs).
    """
    prepared = prepare(program)
    if not isinstance(region, Region):
        raise DispatchError(f"region is a {type(region).__name__}", "wrap the bytes in Region(data, ...)")
    lanes = _integer("lanes", prepared.default_lanes if lanes is None else lanes, 1, MAX_LANES)
    fuel = _integer("fuel", prepared.default_fuel if fuel is None else fuel, 1, U32_MAX)
    emit_capacity = _integer("emit_capacity", emit_capacity, 0, U32_MAX)
    input_array = _input_array(region)
    own_lo, own_hi = _region_bounds(region, len(input_array))
    file_offset = _integer("file_offset", region.file_offset, 0, U64_MAX)
    chunk_index = _integer("chunk_index", region.chunk_index, 0, U32_MAX)
    bindings = _bindings(prepared, global_buffers)
    special = {
        SpecialRegister.LANE_COUNT: lanes,
        SpecialRegister.REGION_LEN: len(input_array),
        SpecialRegister.OWN_LO: own_lo,
        SpecialRegister.OWN_HI: own_hi,
        SpecialRegister.FILE_OFFSET_LO: file_offset & U32_MAX,
        SpecialRegister.FILE_OFFSET_HI: file_offset >> 32,
        SpecialRegister.CHUNK_INDEX: chunk_index,
        SpecialRegister.EMIT_CAPACITY: emit_capacity,
    }
    emits = EmitBuffer(emit_capacity, prepared.emit_words)
    machine = Machine(
        registers=prepared.registers,
        lanes=lanes,
        fuel=fuel,
        data=region.data,
        input_array=input_array,
        special=special,
        bindings=bindings,
        emits=emits,
    )
    with np.errstate(all="ignore"):
        Scheduler(prepared, machine).run()
    return RunResult(
        outputs={binding.name: buffer for binding, buffer in zip(prepared.bindings, bindings)},
        records=emits.records(),
        dropped=emits.dropped,
        fault=machine.fault,
        lanes=lanes,
        instructions=fuel * lanes - int(machine.fuel[:lanes].sum()),
    )
