"""The CPU backend's "device": persistent worker threads that serve the ring in shared memory.

Workers follow the same state machine a GPU block does (docs/PROTOCOL.md): find a schedulable
slot, check its tenant, claim it (PUBLISHED/YIELD/REQUEUE -> CLAIMED under the device lock,
which stands in for the GPU's compare-and-swap), run it, write results, count it, and publish
DONE or FAULT last. They exit when the SHUTDOWN or the PAUSE control word is set, after the slots
they claimed; `relaunch` starts new workers over the same ring after a pause (docs/PROTOCOL.md,
6.5). A faulting or runaway program ends its own slot as FAULT; the worker goes on serving.

Doorbell hints (slot indices the host just published) spare workers a scan of the ring; a
periodic scan of the status words still finds anything a hint missed, so hints are an
optimisation, never a correctness requirement.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from vyre_runtime import hostmem
from vyre_runtime.backends.cpu.builtins import SIMPLE_BODIES, DeviceContext, SlotFaultRaised, packed_slot
from vyre_runtime.backends.cpu.results import Region, RunResult
from vyre_runtime.backends.cpu.run import run_program
from vyre_runtime.errors import BackendError, DispatchError
from vyre_runtime.protocol import ioqueue, resume
from vyre_runtime.protocol.codec import check_image, ring_view
from vyre_runtime.protocol.layout import (
    RESULT_WORDS,
    SCHEDULABLE,
    SLOT_WORDS,
    ControlWord,
    DeviceState,
    Layout,
    Priority,
    SlotFault,
    SlotState,
    SlotWord,
)
from vyre_runtime.protocol.opcodes import BuiltinOpcode, is_user_opcode, metric_index
from vyre_runtime.registry import FusedGroup, RegisteredProgram, Registry, RunContext
from vyre_runtime.vir0.isa import MAX_LANES

MASK32 = 0xFFFFFFFF
SCAN_INTERVAL_S = 0.02  # an idle worker rescans the ring this often
STARVATION_LIMIT = 16  # consecutive CRITICAL/HIGH claims before a lower priority is served
IO_POLL_S = 0.0002
CLAIM_BATCH = 32  # slots a worker claims at once: one lock round trip for many small slots
PRIORITY_ORDER = tuple(Priority)
STARVATION_ORDER = PRIORITY_ORDER[Priority.NORMAL :] + PRIORITY_ORDER[: Priority.NORMAL]
SCHEDULABLE_LIST = sorted(int(state) for state in SCHEDULABLE)
IO_SHUTDOWN_GRACE_S = 1.0  # a stopped host cannot answer: give up after this


class CpuDevice:
    name = "cpu"

    def __init__(
        self,
        image: np.ndarray,
        layout: Layout,
        registry: Registry,
        workers: int,
        on_complete: Callable[[], None],
    ) -> None:
        self.image = image
        self.layout = layout
        self.registry = registry
        self.lock = threading.Lock()
        self.on_complete = on_complete
        self.hints: list[deque[int]] = [deque() for _ in Priority]
        self.wake = threading.Condition()
        self.internal_errors: dict[int, str] = {}  # slot -> traceback, for the host to raise
        self._consecutive_urgent = 0
        self._sleeping = 0  # workers waiting on `wake` (changed only while holding it)
        self._last_scan = 0.0
        self._workers = workers
        self._threads = self._new_threads()
        self._ring = ring_view(image, layout)
        self._status_column = self._ring[:, SlotWord.STATUS]

    # ------------------------------------------------------------------ host-facing

    def _new_threads(self) -> list[threading.Thread]:
        return [
            threading.Thread(target=self._serve, name=f"vyre-cpu-worker-{i}", daemon=True) for i in range(self._workers)
        ]

    def start(self) -> None:
        check_image(self.image, self.layout)  # a device refuses an image built from other constants
        self.image[ControlWord.DEVICE_STATE] = DeviceState.SERVING
        for thread in self._threads:
            thread.start()

    def _stopping(self) -> bool:
        """SHUTDOWN or PAUSE: claim nothing more, finish what is claimed, leave."""
        return bool(self.image[ControlWord.SHUTDOWN] or self.image[ControlWord.PAUSE])

    def ring_doorbell(self, slots: list[int], priorities: list[int]) -> None:
        for slot, priority in zip(slots, priorities):
            self.hints[priority].append(slot)
        with self.wake:
            if self._sleeping:  # busy workers pick hints up on their own; only wake idle ones
                self.wake.notify(len(slots))

    def tenant_enabled(self) -> None:
        """A tenant was enabled again: its slots were passed over while it was paused, so the
        next claim attempt scans the ring at once rather than up to SCAN_INTERVAL_S later."""
        self._last_scan = float("-inf")
        with self.wake:
            if self._sleeping:
                self.wake.notify_all()

    # The CPU device reads the registry directly: nothing to stage or upload.
    def program_registered(self, handle: int) -> None:
        pass

    def dfa_registered(self, handle: int) -> None:
        pass

    def fused_registered(self, handle: int) -> None:
        pass

    def fused_unregistered(self, handle: int) -> None:
        pass

    def program_unregistered(self, handle: int) -> None:
        pass

    def opcode_bound(self, opcode: int, program: int) -> None:
        pass

    def run_prepared(self, program: int, context: int, region: int) -> None:
        pass

    def run_result(self, program: int, context: int) -> Any:
        fused_run = self.registry.fused_runs.get(context)
        if fused_run is not None:
            return [self.run_result(program, member) for member in fused_run.contexts]
        run = self.registry.contexts.get(context)
        return None if run is None else run.result

    def run_released(self, context: int, region: int) -> None:
        pass

    def host_memory(self, nbytes: int) -> np.ndarray:
        """Page-aligned anonymous memory (the workers read any host memory); large regions on
        huge pages, as on CUDA (hostmem)."""
        return hostmem.anonymous(nbytes)

    def close(self) -> None:
        pass

    def stop(self, timeout: float) -> bool:
        """Set SHUTDOWN, wake everyone, join within ``timeout``; False if a worker is still busy."""
        self.image[ControlWord.SHUTDOWN] = 1
        return self._join(timeout)

    def pause(self, timeout: float) -> bool:
        """Set PAUSE and join the workers within ``timeout``: they finish the slots they claimed and
        leave the rest PUBLISHED, so `relaunch` can resume the ring. False if a worker is still busy."""
        self.image[ControlWord.PAUSE] = 1
        return self._join(timeout)

    def relaunch(self, cubin: object = None) -> dict[int, str]:
        """Start new workers over the same ring after a pause (CudaDevice.relaunch's contract).

        Returns the slots faulted INTERNAL because no worker completed them (none after a pause
        that returned True), with the reason; the caller holds the host's IO servicing off.
        """
        if cubin is not None:
            raise BackendError("the CPU backend runs no cubin", "relaunch(cubin=...) is for backend='cuda'")
        if any(thread.is_alive() for thread in self._threads):
            raise BackendError("CPU workers are still running", "pause() the device first (Megakernel.relaunch does)")
        if self.image[ControlWord.SHUTDOWN]:
            raise BackendError(
                "this ring was shut down (shutdown() or a SHUTDOWN slot); a shut-down ring is not resumed",
                "create a new Megakernel",
            )
        reasons = resume.prepare_relaunch(self.image, self.layout)
        self.internal_errors.update(reasons)
        self._threads = self._new_threads()
        self.start()
        return reasons

    def _join(self, timeout: float) -> bool:
        with self.wake:
            self.wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = any(thread.is_alive() for thread in self._threads)
        if not alive:
            self.image[ControlWord.DEVICE_STATE] = DeviceState.EXITED
        return not alive

    # ------------------------------------------------------------------ worker loop

    def _serve(self) -> None:
        context = DeviceContext(self.image, self.layout, self.lock, self.registry.dfas)
        while not self._stopping():
            candidates = self._next_candidates()
            if not candidates:
                continue
            finished: list[tuple[int, int, list[int], bool]] = []
            for slot in self._claim_many(candidates):
                row = self._ring[slot].tolist()
                slow = row[SlotWord.OPCODE] not in SIMPLE_BODIES
                if slow and finished:  # never hold quick results back behind a long run
                    self._complete_many(finished)
                    finished = []
                finished.append(self._run_one(context, slot, row))
                if slow:
                    self._complete_many(finished)
                    finished = []
            if finished:
                self._complete_many(finished)

    def _next_candidates(self) -> list[int]:
        """Up to CLAIM_BATCH hinted slots, most urgent first; else a scan of the ring; else sleep."""
        # after STARVATION_LIMIT urgent claims in a row, look at the others first once, so
        # background work cannot starve
        order = PRIORITY_ORDER
        if self._consecutive_urgent >= STARVATION_LIMIT:
            order = STARVATION_ORDER
            self._consecutive_urgent = 0
        candidates: list[int] = []
        for priority in order:
            queue = self.hints[priority]
            while queue and len(candidates) < CLAIM_BATCH:
                try:
                    candidates.append(queue.popleft())
                except IndexError:  # another worker emptied it
                    break
            if candidates:
                urgent = priority <= Priority.HIGH
                self._consecutive_urgent = self._consecutive_urgent + len(candidates) if urgent else 0
                return candidates
        now = time.monotonic()
        if now - self._last_scan >= SCAN_INTERVAL_S:  # the safety net for anything a hint missed
            self._last_scan = now
            found = self._scan()
            if found:
                return found
        with self.wake:
            if not any(self.hints) and not self._stopping():
                self._sleeping += 1
                self.wake.wait(SCAN_INTERVAL_S)
                self._sleeping -= 1
        return []

    def _scan(self) -> list[int]:
        with self.lock:  # heartbeat: a device-owned counter, advanced on every scan of the ring
            self.image[ControlWord.HEARTBEAT] = (int(self.image[ControlWord.HEARTBEAT]) + 1) & MASK32
        schedulable = np.flatnonzero(np.isin(self._status_column, SCHEDULABLE_LIST))
        if len(schedulable):
            # skip paused tenants' slots (they stay PUBLISHED): else the first one would hide
            # every slot after it from the scan, and workers would spin on it
            schedulable = schedulable[self._tenant_enabled(self._ring[schedulable, SlotWord.TENANT])]
        # partitions are laid out in priority order, so the lowest index is the most urgent
        return schedulable[:CLAIM_BATCH].tolist()

    def _tenant_enabled(self, tenants: np.ndarray) -> np.ndarray:
        """Claimable by tenant: enabled, or out of range (claimed, then faulted BAD_TENANT)."""
        count = self.layout.tenants
        masks = self.image[self.layout.tenant_masks : self.layout.tenant_masks + count]
        return (tenants >= count) | (masks[np.minimum(tenants, count - 1)] != 0)

    def _claim_many(self, candidates: list[int]) -> list[int]:
        """Claim what is still schedulable (the GPU's compare-and-swap, here under the lock).

        A disabled tenant's slot stays PUBLISHED, visible to the host, never stuck CLAIMED.
        """
        rows = np.fromiter(dict.fromkeys(candidates), dtype=np.int64)
        with self.lock:
            # this device takes hints in-process (ring_doorbell): consume the shared doorbell too
            self.image[ControlWord.DOORBELL_HEAD] = self.image[ControlWord.DOORBELL_TAIL]
            states = self._ring[rows, SlotWord.STATUS]
            claimable = np.isin(states, SCHEDULABLE_LIST) & self._tenant_enabled(self._ring[rows, SlotWord.TENANT])
            claimed = rows[claimable]
            self._ring[claimed, SlotWord.STATUS] = SlotState.CLAIMED
            self.image[ControlWord.CLAIM_COUNT] = (int(self.image[ControlWord.CLAIM_COUNT]) + len(claimed)) & MASK32
        return claimed.tolist()

    def _run_one(self, context: DeviceContext, slot: int, row: list[int]) -> tuple[int, int, list[int], bool]:
        opcode, tenant = row[SlotWord.OPCODE], row[SlotWord.TENANT]
        context.slot, context.tenant = slot, tenant
        try:
            if tenant >= self.layout.tenants:  # bounds-checked: the seed read past its mask table
                raise SlotFaultRaised(SlotFault.BAD_TENANT, detail=tenant)
            results = self._execute(context, slot, opcode, tuple(row[SlotWord.ARG0 :]))
        except SlotFaultRaised as fault:
            return slot, opcode, [int(fault.code), fault.pc, fault.lane, fault.detail], True
        except Exception:  # a backend bug must not take the worker (and every later slot) down
            self.internal_errors[slot] = traceback.format_exc()
            return slot, opcode, [int(SlotFault.INTERNAL), 0, 0, 0], True
        padded = [int(r) & MASK32 for r in results] + [0] * (RESULT_WORDS - len(results))
        return slot, opcode, padded, False

    def _complete_many(self, finished: list[tuple[int, int, list[int], bool]]) -> None:
        """Count, write results, then DONE/FAULT last, for every finished slot."""
        slots = np.fromiter((f[0] for f in finished), dtype=np.int64, count=len(finished))
        results = np.array([f[2] for f in finished], dtype=np.uint32)
        states = np.array([SlotState.FAULT if f[3] else SlotState.DONE for f in finished], dtype=np.uint32)
        metrics = [self.layout.metrics + m for m in map(metric_index, (f[1] for f in finished)) if m >= 0]
        faults = sum(1 for f in finished if f[3])
        with self.lock:
            np.add.at(self.image, metrics, np.uint32(1))  # uint32: wraps at 2^32 like the GPU's
            self.image[ControlWord.DONE_COUNT] = (int(self.image[ControlWord.DONE_COUNT]) + len(finished)) & MASK32
            if faults:
                self.image[ControlWord.FAULT_COUNT] = (int(self.image[ControlWord.FAULT_COUNT]) + faults) & MASK32
            self._ring[slots, SlotWord.RESULT0 :] = results
            self._ring[slots, SlotWord.STATUS] = states  # status last
        self.on_complete()

    # ------------------------------------------------------------------ opcode bodies

    def _execute(self, context: DeviceContext, slot: int, opcode: int, args: tuple[int, ...]) -> tuple[int, ...]:
        body = SIMPLE_BODIES.get(opcode)
        if body is not None:
            return body(context, args)
        if opcode == BuiltinOpcode.PACKED_SLOT:
            return packed_slot(context, args)
        if opcode == BuiltinOpcode.RUN_PROGRAM:
            return self._run_program(args[0], args[1:])
        if opcode == BuiltinOpcode.LOAD_MISS:
            return self._load_miss(slot, args)
        if is_user_opcode(opcode):
            program = self.registry.opcode_programs.get(opcode)
            if program is None:
                raise SlotFaultRaised(SlotFault.BAD_OPCODE, detail=opcode)
            return self._run_program(program, args)
        raise SlotFaultRaised(SlotFault.BAD_OPCODE, detail=opcode)

    def _run_program(self, program_handle: int, args: tuple[int, ...]) -> tuple[int, ...]:
        """RUN_PROGRAM arguments after the program handle (docs/PROTOCOL.md, RUN_PROGRAM)."""
        group = self.registry.fused.get(program_handle)
        if group is not None:
            return self._run_fused(group, args)
        context_handle, region_handle, lanes = args[0], args[1], args[10]
        registered = self.registry.programs.get(program_handle)
        run = self.registry.contexts.get(context_handle)
        data = self.registry.regions.get(region_handle)
        for handle, found in ((program_handle, registered), (context_handle, run), (region_handle, data)):
            if found is None:
                raise SlotFaultRaised(SlotFault.BAD_HANDLE, detail=handle)
        region = self._run_region(data, args)
        try:
            result = self._run_member(registered, run, region, lanes)
        except DispatchError:
            raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=lanes) from None
        if result.fault is not None:
            fault = result.fault
            raise SlotFaultRaised(SlotFault(int(fault.code)), detail=fault.detail, pc=fault.pc, lane=fault.lane)
        return (len(result.records), result.dropped, result.instructions & MASK32, result.instructions >> 32 & MASK32)

    def _run_fused(self, group: FusedGroup, args: tuple[int, ...]) -> tuple[int, ...]:
        """A fused group's members, one after another, over the same bytes (docs/PROTOCOL.md,
        "Fused runs"): every handle and argument is checked before any member runs; a member's
        fault stays in its own result and the next member still runs."""
        context_handle, region_handle, slot_lanes = args[0], args[1], args[10]
        fused_run = self.registry.fused_runs.get(context_handle)
        if fused_run is None or len(fused_run.contexts) != len(group.members):
            raise SlotFaultRaised(SlotFault.BAD_HANDLE, detail=context_handle)
        data = self.registry.regions.get(region_handle)
        if data is None:
            raise SlotFaultRaised(SlotFault.BAD_HANDLE, detail=region_handle)
        members = []
        for program_handle, member_context in zip(group.members, fused_run.contexts):
            registered = self.registry.programs.get(program_handle)
            run = self.registry.contexts.get(member_context)
            for handle, found in ((program_handle, registered), (member_context, run)):
                if found is None:
                    raise SlotFaultRaised(SlotFault.BAD_HANDLE, detail=handle)
            members.append((registered, run))
        region = self._run_region(data, args)
        if slot_lanes != 0:  # a fused run's lane counts are per member, in its fused-run record
            raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=slot_lanes)
        for lanes in fused_run.lanes:
            if lanes > MAX_LANES:
                raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=lanes)
        faulted, instructions = 0, 0
        for index, ((registered, run), lanes) in enumerate(zip(members, fused_run.lanes)):
            result = self._run_member(registered, run, region, lanes)
            faulted |= (result.fault is not None) << index
            instructions += result.instructions
        return (len(members), faulted, instructions & MASK32, instructions >> 32 & MASK32)

    def _run_region(self, data: Any, args: tuple[int, ...]) -> Region:
        """The bytes and special registers of a run, from its RunArg words (after PROGRAM)."""
        offset_lo, offset_hi, length, own_lo, own_hi, file_lo, file_hi, chunk_index = args[2:10]
        offset = offset_lo | offset_hi << 32
        if offset + length > len(data) or not own_lo <= own_hi <= length:
            raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=offset_lo)
        return Region(
            data=memoryview(data)[offset : offset + length],
            own_lo=own_lo,
            own_hi=own_hi,
            file_offset=file_lo | file_hi << 32,
            chunk_index=chunk_index,
        )

    def _run_member(self, registered: RegisteredProgram, run: RunContext, region: Region, lanes: int) -> RunResult:
        """One program over the region; the result goes to its run context for run_result."""
        result = run_program(
            registered.program,
            region,
            lanes=lanes or None,
            fuel=run.fuel,
            emit_capacity=run.emit_capacity,
            global_buffers=registered.global_buffers,
        )
        run.result = result
        return result

    def _load_miss(self, slot: int, args: tuple[int, ...]) -> tuple[int, ...]:
        resource, offset_lo, offset_hi, nbytes, destination = args[:5]
        if nbytes == 0 or destination + (nbytes + 3) // 4 > self.layout.observables:
            raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=nbytes)
        while True:  # wait for a free IO entry; shutdown ends the wait
            with self.lock:
                entry = ioqueue.post_request(
                    self.image, self.layout, resource, offset_lo | offset_hi << 32, nbytes, destination
                )
            if entry >= 0:
                break
            if self._stopping():
                raise SlotFaultRaised(SlotFault.CANCELLED)
            time.sleep(IO_POLL_S)
        self.image[self.layout.ring + slot * SLOT_WORDS + SlotWord.STATUS] = SlotState.WAIT_IO
        self.on_complete()  # wake the host service: it answers IO requests
        shutdown_seen = None
        while True:  # the host answers every claimed request, ERROR included (ioqueue.py)
            answer = ioqueue.take_answer(self.image, self.layout, entry)
            if answer is not None:
                break
            if self._stopping():  # as the GPU's LOAD_MISS, which the dispatcher's stop flag ends
                shutdown_seen = shutdown_seen or time.monotonic()
                if time.monotonic() - shutdown_seen > IO_SHUTDOWN_GRACE_S:
                    raise SlotFaultRaised(SlotFault.CANCELLED)
            time.sleep(IO_POLL_S)
        ok, result = answer
        if not ok:
            raise SlotFaultRaised(SlotFault.IO_ERROR, detail=result)
        return (result,)
