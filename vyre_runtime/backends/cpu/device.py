"""The CPU backend's "device": persistent worker threads that serve the ring in shared memory.

Workers follow the same state machine a GPU block does (docs/PROTOCOL.md): find a schedulable
slot, check its tenant, claim it (PUBLISHED/YIELD/REQUEUE -> CLAIMED under the device lock,
which stands in for the GPU's compare-and-swap), run it, write results, count it, and publish
DONE or FAULT last. They exit when the SHUTDOWN control word is set. A faulting or runaway
program ends its own slot as FAULT; the worker goes on serving.

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

import numpy as np

from vyre_runtime.backends.cpu.builtins import SIMPLE_BODIES, DeviceContext, SlotFaultRaised, packed_slot
from vyre_runtime.errors import DispatchError
from vyre_runtime.protocol import ioqueue
from vyre_runtime.protocol.layout import (
    SCHEDULABLE,
    SLOT_WORDS,
    ControlWord,
    Layout,
    Priority,
    SlotFault,
    SlotState,
    SlotWord,
)
from vyre_runtime.protocol.opcodes import BuiltinOpcode, is_user_opcode, metric_index
from vyre_runtime.registry import Registry

MASK32 = 0xFFFFFFFF
SCAN_INTERVAL_S = 0.02  # an idle worker rescans the ring this often
STARVATION_LIMIT = 16  # consecutive CRITICAL/HIGH claims before a lower priority is served
IO_POLL_S = 0.0002
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
        self._threads = [
            threading.Thread(target=self._serve, name=f"vyre-cpu-worker-{i}", daemon=True) for i in range(workers)
        ]
        self._status_column = image[layout.ring + SlotWord.STATUS : layout.debug_log : SLOT_WORDS]
        self._tenant_column = image[layout.ring + SlotWord.TENANT : layout.debug_log : SLOT_WORDS]

    # ------------------------------------------------------------------ host-facing

    def start(self) -> None:
        self.image[ControlWord.DEVICE_STATE] = 1
        for thread in self._threads:
            thread.start()

    def ring_doorbell(self, slot: int, priority: int) -> None:
        self.hints[min(max(priority, 0), len(Priority) - 1)].append(slot)
        if self._sleeping:  # busy workers pick the hint up on their own; only wake idle ones
            with self.wake:
                self.wake.notify()

    def stop(self, timeout: float) -> bool:
        """Set SHUTDOWN, wake everyone, join within ``timeout``; False if a worker is still busy."""
        self.image[ControlWord.SHUTDOWN] = 1
        with self.wake:
            self.wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = any(thread.is_alive() for thread in self._threads)
        if not alive:
            self.image[ControlWord.DEVICE_STATE] = 2
        return not alive

    # ------------------------------------------------------------------ worker loop

    def _serve(self) -> None:
        context = DeviceContext(self.image, self.layout, self.lock, self.registry.dfas)
        while not self.image[ControlWord.SHUTDOWN]:
            slot = self._next_candidate()
            if slot is None:
                continue
            if self._claim(slot):
                self._run_claimed(context, slot)

    def _next_candidate(self) -> int | None:
        # Serve urgent partitions first, but after STARVATION_LIMIT urgent claims in a row
        # look at the others first once, so background work cannot starve.
        order = list(Priority)
        if self._consecutive_urgent >= STARVATION_LIMIT:
            order = order[Priority.NORMAL :] + order[: Priority.NORMAL]
            self._consecutive_urgent = 0
        for priority in order:
            try:
                slot = self.hints[priority].popleft()
            except IndexError:
                continue
            self._consecutive_urgent = self._consecutive_urgent + 1 if priority <= Priority.HIGH else 0
            return slot
        with self.lock:  # heartbeat: a device-owned counter, advanced while idle polling
            self.image[ControlWord.HEARTBEAT] = (int(self.image[ControlWord.HEARTBEAT]) + 1) & MASK32
        schedulable = np.flatnonzero(np.isin(self._status_column, list(SCHEDULABLE)))
        if len(schedulable):
            # skip paused tenants' slots (they stay PUBLISHED): else the first one would hide
            # every slot after it from the scan, and workers would spin on it
            tenants = self._tenant_column[schedulable]
            masks = self.image[self.layout.tenant_masks : self.layout.tenant_masks + self.layout.tenants]
            enabled = (tenants >= self.layout.tenants) | (masks[np.minimum(tenants, self.layout.tenants - 1)] != 0)
            schedulable = schedulable[enabled]
        if len(schedulable):
            # partitions are laid out in priority order, so the lowest index is the most urgent
            return int(schedulable[0])
        with self.wake:
            if not any(self.hints) and not self.image[ControlWord.SHUTDOWN]:
                self._sleeping += 1
                self.wake.wait(SCAN_INTERVAL_S)
                self._sleeping -= 1
        return None

    def _claim(self, slot: int) -> bool:
        base = self.layout.ring + slot * SLOT_WORDS
        with self.lock:
            if int(self.image[base + SlotWord.STATUS]) not in SCHEDULABLE:
                return False  # another worker took it, or a stale hint
            tenant = int(self.image[base + SlotWord.TENANT])
            # a disabled tenant's slot stays PUBLISHED, visible to the host, never stuck CLAIMED
            if tenant < self.layout.tenants and not self.image[self.layout.tenant_masks + tenant]:
                return False
            self.image[base + SlotWord.STATUS] = SlotState.CLAIMED
            self.image[ControlWord.CLAIM_COUNT] = (int(self.image[ControlWord.CLAIM_COUNT]) + 1) & MASK32
        return True

    def _run_claimed(self, context: DeviceContext, slot: int) -> None:
        base = self.layout.ring + slot * SLOT_WORDS
        words = self.image[base : base + SLOT_WORDS].tolist()
        opcode, tenant = words[SlotWord.OPCODE], words[SlotWord.TENANT]
        args = tuple(words[SlotWord.ARG0 :])
        context.slot, context.tenant = slot, tenant
        try:
            if tenant >= self.layout.tenants:  # bounds-checked: the seed read past its mask table
                raise SlotFaultRaised(SlotFault.BAD_TENANT, detail=tenant)
            results = self._execute(context, slot, opcode, args)
            fault = None
        except SlotFaultRaised as raised:
            results, fault = (), raised
        except Exception:  # a backend bug must not take the worker (and every later slot) down
            self.internal_errors[slot] = traceback.format_exc()
            results, fault = (), SlotFaultRaised(SlotFault.INTERNAL)
        self._complete(slot, opcode, results, fault)

    def _complete(self, slot: int, opcode: int, results: tuple[int, ...], fault: SlotFaultRaised | None) -> None:
        base = self.layout.ring + slot * SLOT_WORDS
        if fault is not None:
            results = (int(fault.code), fault.pc, fault.lane, fault.detail)
        padded = [int(r) & MASK32 for r in results] + [0] * (4 - len(results))
        with self.lock:
            metric = metric_index(opcode)
            if metric >= 0:
                word = self.layout.metrics + metric
                self.image[word] = (int(self.image[word]) + 1) & MASK32
            self.image[ControlWord.DONE_COUNT] = (int(self.image[ControlWord.DONE_COUNT]) + 1) & MASK32
            if fault is not None:
                self.image[ControlWord.FAULT_COUNT] = (int(self.image[ControlWord.FAULT_COUNT]) + 1) & MASK32
            self.image[base + SlotWord.RESULT0 : base + SlotWord.RESULT0 + 4] = padded
            self.image[base + SlotWord.STATUS] = SlotState.FAULT if fault is not None else SlotState.DONE  # last
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
        from vyre_runtime.backends.cpu import Region, run_program

        context_handle, region_handle, offset_lo, offset_hi, length, own_lo, own_hi = args[:7]
        file_lo, file_hi, chunk_index, lanes = args[7:11]
        registered = self.registry.programs.get(program_handle)
        run = self.registry.contexts.get(context_handle)
        data = self.registry.regions.get(region_handle)
        for handle, found in ((program_handle, registered), (context_handle, run), (region_handle, data)):
            if found is None:
                raise SlotFaultRaised(SlotFault.BAD_HANDLE, detail=handle)
        offset = offset_lo | offset_hi << 32
        if offset + length > len(data) or not own_lo <= own_hi <= length:
            raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=offset_lo)
        region = Region(
            data=memoryview(data)[offset : offset + length],
            own_lo=own_lo,
            own_hi=own_hi,
            file_offset=file_lo | file_hi << 32,
            chunk_index=chunk_index,
        )
        try:
            result = run_program(
                registered.program,
                region,
                lanes=lanes or None,
                fuel=run.fuel,
                emit_capacity=run.emit_capacity,
                global_buffers=registered.global_buffers,
            )
        except DispatchError:
            raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=lanes) from None
        run.result = result
        if result.fault is not None:
            fault = result.fault
            raise SlotFaultRaised(SlotFault(int(fault.code)), detail=fault.detail, pc=fault.pc, lane=fault.lane)
        return (len(result.records), result.dropped, result.instructions & MASK32, result.instructions >> 32 & MASK32)

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
            if self.image[ControlWord.SHUTDOWN]:
                raise SlotFaultRaised(SlotFault.CANCELLED)
            time.sleep(IO_POLL_S)
        self.image[self.layout.ring + slot * SLOT_WORDS + SlotWord.STATUS] = SlotState.WAIT_IO
        self.on_complete()  # wake the host service: it answers IO requests
        shutdown_seen = None
        while True:  # the host answers every claimed request, ERROR included (ioqueue.py)
            answer = ioqueue.take_answer(self.image, self.layout, entry)
            if answer is not None:
                break
            if self.image[ControlWord.SHUTDOWN]:
                shutdown_seen = shutdown_seen or time.monotonic()
                if time.monotonic() - shutdown_seen > IO_SHUTDOWN_GRACE_S:
                    raise SlotFaultRaised(SlotFault.CANCELLED)
            time.sleep(IO_POLL_S)
        ok, result = answer
        if not ok:
            raise SlotFaultRaised(SlotFault.IO_ERROR, detail=result)
        return (result,)
