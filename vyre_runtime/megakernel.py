"""`Megakernel`: the host API every user touches, the same on every backend.

    with Megakernel(backend="auto", slots=1024) as mk:
        handle = mk.register_program(program)
        future = mk.submit(handle, data)          # RUN_PROGRAM over a data region
        result = future.result(timeout=10)        # outputs, records, or a fault

The host owns the shared image's host-side words: it validates a slot in full, writes the
payload, then its status (status-last), and rings the backend's doorbell. A service thread
reaps DONE/FAULT slots (results -> futures, slot -> EMPTY), answers the device's IO requests
and keeps the latency statistics. Every wait has a deadline; shutdown never hangs.
"""

from __future__ import annotations

import bisect
import ctypes
import dataclasses
import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

import numpy as np

from vyre_runtime import channel_native
from vyre_runtime.backends.selection import open_backend
from vyre_runtime.buffers import DeviceBuffer, HostBuffer, device_region_of
from vyre_runtime.errors import BackendError, DispatchError, ProtocolError, RingFullError, VyreError
from vyre_runtime.host_service import BulkTicket, HostService, SlotFaultInfo, SlotFuture, SlotOutcome, yield_gil
from vyre_runtime.jit_policy import JitManager, JitPolicy
from vyre_runtime.protocol import codec, debuglog
from vyre_runtime.protocol.codec import SlotRequest
from vyre_runtime.protocol.layout import (
    ARGS_PER_SLOT,
    HINT_MASK,
    MAX_DOORBELLS,
    PRIORITY_BITS,
    PRIORITY_WATCHED,
    SLOT_WORDS,
    WATCH_TENANT_SHIFT,
    WATCH_VALID,
    WATCH_WORDS,
    ControlWord,
    Layout,
    Priority,
    SlotState,
    SlotWord,
)
from vyre_runtime.protocol.opcodes import INLINE, INLINE_MEMCPY_WORDS, BuiltinOpcode
from vyre_runtime.registry import Registry, ResourceLoader
from vyre_runtime.run_template import RunTemplate
from vyre_runtime.stats import Stats
from vyre_runtime.vir0.program import Program

FULL_RING_POLICIES = ("block", "raise")


def _code_key(program: Program) -> str:
    from vyre_runtime.backends.cuda.jit import code_key  # no CUDA import: BLAKE3 over the code

    return code_key(program)


PRIORITY_COUNT = len(Priority)
JIT_SWAP_DRAIN_S = 600.0  # a hot swap waits this long for runs in flight to let the pause finish
CHANNEL_SPINS = 200_000  # status checks before a channel call starts sleeping between checks
WATCH_ENV = "VYRE_CHANNEL_WATCH"  # "0": channels never ask the device to watch their slot
# the tiny built-ins a watched call may carry (at most 3 arguments: ARG3 echoes the call's
# sequence): what the CUDA dispatcher runs in its own lanes
_WATCHABLE = frozenset(int(op) for op in INLINE)
_MEMCPY = int(BuiltinOpcode.MEMCPY)
REAP_SPIN_S = 0.00002  # a bulk publisher's pause between reaps while the ring is full ...
REAP_SPINS = 200  # ... after this many empty reaps in a row (before: it yields the GIL, no sleep)
CHECKED_HEADS = 1024  # publish()'s validated (opcode, tenant, priority) combinations kept
TEMPLATE_CACHE = 64  # submit()'s checked option sets kept (cleared when full: options varying per run)
_PLAIN = (int, type(None))  # lanes / fuel as one value for every member, or each program's default
_TIMEOUT = (int, float, type(None))
BULK_BATCH_SHARE = 8  # a bulk publisher on a GPU waits for an eighth of the ring to be free
# runs published as one batch of up to this many are written with memoryview stores (no NumPy
# fancy indexing, which hands the GIL to another thread mid-publication); larger ones vectorized
WORDS_BATCH = 256
# plain ints for the channel's hot path (an enum member lookup costs about a microsecond)
_EMPTY, _PUBLISHED, _DONE = int(SlotState.EMPTY), int(SlotState.PUBLISHED), int(SlotState.DONE)
_WAIT_IO, _FAULT = int(SlotState.WAIT_IO), int(SlotState.FAULT)
_ARG0, _RESULT0, _PRIORITY = int(SlotWord.ARG0), int(SlotWord.RESULT0), int(SlotWord.PRIORITY)
_SHUTDOWN = int(ControlWord.SHUTDOWN)
_RUN_PROGRAM = int(BuiltinOpcode.RUN_PROGRAM)


class Megakernel:
    """A resident interpreter serving a ring of slots; see the module docstring."""

    def __init__(
        self,
        backend: str = "auto",
        *,
        slots: int = 1024,
        tenants: int = 1,
        observables: int = 256,
        debug_records: int = 256,
        io_entries: int = 64,
        workers: int | None = None,
        full_ring: str = "block",
        publish_timeout: float = 30.0,
        jit: JitPolicy | str = "auto",
    ) -> None:
        """``jit``: when programs run as native code on the CUDA backend (jit_policy.py):
        "auto" (default: a program is JIT-compiled in the background once it is hot, and on
        request), "request" (only what `jit()` names) or "off"; or a JitPolicy with thresholds."""
        jit_policy = JitPolicy.of(jit)
        if full_ring not in FULL_RING_POLICIES:
            raise DispatchError(f"full_ring={full_ring!r}; choose one of {FULL_RING_POLICIES}")
        doorbells = min(MAX_DOORBELLS, 1 << max(0, (slots - 1).bit_length()) if isinstance(slots, int) else 1)
        self.layout = Layout(slots, tenants, observables, debug_records, io_entries, doorbells)
        self.registry = Registry()
        self.full_ring = full_ring
        self.publish_timeout = publish_timeout
        self._closed = False
        self._free: list[deque[int]] = []
        offsets = self.layout.priority_offsets()
        for priority in Priority:
            self._free.append(deque(range(offsets[priority], offsets[priority + 1])))
        # a more urgent partition lends slots to less urgent work but keeps a quarter (>= 1) free
        self._reserve = [max(1, (offsets[p + 1] - offsets[p]) // 4) for p in Priority]
        self._partition_starts = np.asarray(self.layout.partition_offsets[:PRIORITY_COUNT], dtype=np.int64)
        self._free_changed = threading.Condition()
        self._doorbell_lock = threading.Lock()
        self._watch_lock = threading.Lock()
        self._watch_free: list[int] = []  # WATCH words no channel holds (filled once the device is open)
        self._watch_kept: dict[int, int] = {}  # slot -> the WATCH word an abandoned watched call kept
        self._swap_lock = threading.Lock()  # held by a JIT swap from its pause to its relaunch
        self._host_memory_lock = threading.Lock()
        self._host_memory_free: dict[int, list[np.ndarray]] = {}
        self._host_memory_retired: list[np.ndarray] = []  # kept mapped, never lent again
        # submit()'s options checked once (RunTemplate): a template made before a program or group
        # was unregistered is never used after (registry.removals is in the key), so each submit
        # still raises what a fresh check would
        self._templates: dict[tuple[Any, ...], RunTemplate] = {}
        self._checked_heads: set[tuple[int, int, Priority]] = set()
        # the backend owns the image's memory (host-mapped on CUDA); completions wake the service
        self.device = open_backend(backend, self.layout, self.registry, workers, lambda: self.service.notify())
        self.image = self.device.image
        self._ringer = codec.DoorbellRinger(self.image, self.layout)  # one-slot hints (channels, futures)
        if getattr(self.device, "watches_channels", False):  # a device with a channel watcher
            self._watch_free = list(range(WATCH_WORDS))
        self._ring_words = codec.ring_words(self.image, self.layout)
        self.backend = self.device.name
        self.service = HostService(self.image, self.layout, self.registry, self.device, self._release_slots)
        self._jit = JitManager(self.device, self.registry, jit_policy, _code_key, self._swap_to_variant)
        self.service.run_observer = self._jit.observe
        self.service.start()
        try:
            self.device.start()
        except BaseException:
            self.service.stop()
            self.device.close()
            raise

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> Megakernel:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        if exc is None:
            self.shutdown()
            return
        # leaving on an error: cancel what is queued, and never let a shutdown problem hide the
        # error that got us here (it is attached as a note instead)
        try:
            self.shutdown(cancel=True)
        except VyreError as error:
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(f"while shutting down: {error.one_line()}")

    # ------------------------------------------------------------------ host memory

    def host_memory(self, nbytes: int) -> np.ndarray:
        """Page-aligned host memory (uint8) that run regions may lie in: the device reads it in
        place (pinned and device-mapped on CUDA, so no staging copy). Pinning is slow, so memory
        handed back with `release_host_memory` is reused for the next request of the same size;
        it lives as long as the Megakernel (unpinning waits for a resident kernel)."""
        with self._host_memory_lock:
            free = self._host_memory_free.get(nbytes)
            if free:
                return free.pop()
        return self.device.host_memory(nbytes)

    def reserve_run_staging(self, nbytes: int, count: int) -> None:
        """Allocate now what ``count`` fused runs over regions of up to ``nbytes`` need on the
        device (CUDA: their staging blocks; other backends need none), so the first runs do not
        pay for it (a stream calls this when it starts)."""
        reserve = getattr(self.device, "reserve_staging", None)
        if reserve is not None:
            reserve(nbytes, count)

    def release_host_memory(self, memory: np.ndarray) -> None:
        """Give back memory from `host_memory` once no run reads it any more."""
        with self._host_memory_lock:
            self._host_memory_free.setdefault(memory.nbytes, []).append(memory)

    def retire_host_memory(self, memory: np.ndarray) -> None:
        """Keep memory from `host_memory` mapped for the Megakernel's life but never lend it again:
        for memory a read or run may still write or read (an aborted stream whose reader could not
        drain). Dropping it instead would unmap it (CPU backend), and the address range could be
        mapped again for someone else while the straggler still writes to it."""
        with self._host_memory_lock:
            self._host_memory_retired.append(memory)

    # ------------------------------------------------------------------ registration

    def register_program(self, program: Program | bytes) -> int:
        """Register a verified program; returns the handle RUN_PROGRAM and submit use."""
        from vyre_runtime.vir0.verify import load, verify

        if isinstance(program, (bytes, bytearray, memoryview)):
            program = load(bytes(program))
        elif isinstance(program, Program):
            verify(program)
        else:
            raise DispatchError(f"cannot register a {type(program).__name__}", "pass a vir0 Program or its bytes")
        handle = self.registry.add_program(program)
        self.device.program_registered(handle)
        return handle

    def register_fused(self, handles: Sequence[int]) -> int:
        """A fused group of 1..MAX_FUSED_MEMBERS registered programs, each listed once; returns
        its handle. ``submit(group, data)`` runs every member, in order, over the same bytes
        from one RUN_PROGRAM slot (on CUDA the bytes cross PCIe once) and resolves to one
        RunOutcome per member, in member order (docs/PROTOCOL.md, "Fused runs"). Members keep
        their own global buffers; ``unregister_program(group)`` releases the group."""
        try:
            members = tuple(handles)
        except TypeError:
            raise DispatchError(
                f"register_fused takes a sequence of program handles, not a {type(handles).__name__}",
                "pass e.g. [handle_a, handle_b]",
            ) from None
        handle = self.registry.add_fused(members)
        try:
            self.device.fused_registered(handle)
        except BaseException:
            self.registry.remove_fused(handle)
            raise
        return handle

    def unregister_program(self, handle: int) -> None:
        """Release a program's (or a fused group's) handle and its device record; refused while
        runs of it are in flight, and for a program while a fused group has it as a member.
        Its global buffers stay readable through any views already taken."""
        if self.service.program_in_flight(handle):
            raise DispatchError(f"program {handle} has runs in flight", "wait for them before unregistering")
        # the device's record turns BAD_HANDLE before the registry frees its index, so a program
        # registered meanwhile can take the index only after that (else its new record could be
        # zeroed by this unregistration)
        if handle in self.registry.fused:
            self.device.fused_unregistered(handle)
            self.registry.remove_fused(handle)
            return
        groups = self.registry.groups_using(handle)
        if groups:
            raise DispatchError(
                f"program {handle} is a member of fused group(s) {groups}",
                "unregister those groups (unregister_program(group)) first",
            )
        bound = [op for op, program in self.registry.opcode_programs.items() if program == handle]
        if handle in self.registry.programs:
            self.device.program_unregistered(handle)
        self.registry.remove_program(handle)  # (raises for a handle that is not registered)
        for opcode in bound:
            self.device.opcode_bound(opcode, 0)
        self._jit.forget(handle)

    def jit(self, *handles: int, wait: bool = True, timeout: float = 600.0) -> Future:
        """Compile these registered programs to native code (CUDA backend) and switch the
        resident kernel to a variant that runs them natively, without losing or repeating a slot.

        Returns a Future that resolves once the serving kernel runs them natively; with ``wait``
        (default) it is waited for here, up to ``timeout`` s (NVRTC takes seconds per build; the
        build cache makes a repeat instant). Until then they run interpreted, with identical results.
        """
        future = self._jit.request(handles)
        if wait:
            try:
                future.result(timeout)
            except FutureTimeoutError:  # (not the builtin TimeoutError on Python 3.10)
                raise BackendError(
                    f"the JIT build of programs {handles} did not finish within {timeout} s",
                    "wait on the Future (wait=False), or raise timeout; the programs stay interpreted meanwhile",
                ) from None
        return future

    def bind_opcode(self, opcode: int, program_handle: int, tenant: int = 0) -> None:
        """Make user opcode ``opcode`` (inside ``tenant``'s window) run ``program_handle``."""
        self.registry.bind_opcode(opcode, program_handle, tenant)
        self.device.opcode_bound(opcode, program_handle)

    def register_dfa(self, table: bytes) -> int:
        """A DFA table (vir0.compile_patterns) for DFA_STEP slots; returns its handle."""
        handle = self.registry.add_dfa(table)
        self.device.dfa_registered(handle)
        return handle

    def register_resource(self, resource: int, source: bytes | ResourceLoader) -> None:
        """What LOAD_MISS of ``resource`` loads: bytes, or a function (offset, nbytes) -> bytes."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            self.registry.add_resource(resource, lambda offset, nbytes: data[offset : offset + nbytes])
        elif callable(source):
            self.registry.add_resource(resource, source)
        else:
            raise DispatchError(f"resource source must be bytes or a callable, not {type(source).__name__}")

    def set_tenant_enabled(self, tenant: int, enabled: bool) -> None:
        """Pause or resume a tenant: a paused tenant's slots stay PUBLISHED, unclaimed."""
        if not 0 <= tenant < self.layout.tenants:
            raise ProtocolError(f"tenant {tenant} is out of range 0..{self.layout.tenants - 1}")
        self.image[self.layout.tenant_masks + tenant] = 0xFFFFFFFF if enabled else 0
        rescan = getattr(self.device, "tenant_enabled", None)  # the CUDA dispatcher sees the mask itself
        if enabled and rescan is not None:
            rescan()

    # ------------------------------------------------------------------ publishing

    def publish(
        self,
        opcode: int,
        args: Sequence[int] = (),
        *,
        tenant: int = 0,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
    ) -> Future:
        """Publish one slot; the future resolves to a SlotOutcome when the device completes it."""
        values = () if type(args) is tuple and not args else tuple(int(a) for a in args)
        if type(priority) is not Priority:
            priority = Priority(priority)
        request = SlotRequest(int(opcode), values, tenant, priority)
        head = (request.opcode, tenant, priority)
        # what validate() checks of the opcode, tenant and priority depends on them and the
        # layout alone: checked once per combination (the arguments, on every call)
        if (
            type(tenant) is not int
            or head not in self._checked_heads
            or len(values) > ARGS_PER_SLOT
            or (values and not (min(values) >= 0 and max(values) <= 0xFFFFFFFF))
        ):
            request.validate(self.layout)
            if type(tenant) is int:
                if len(self._checked_heads) >= CHECKED_HEADS:
                    self._checked_heads.clear()
                self._checked_heads.add(head)
        return self._publish_validated([request], timeout)[0]

    def batch(self, requests: Sequence[SlotRequest], *, tag: int = 0, timeout: float | None = None) -> list[Future]:
        """Validate every request before writing any, publish them, then a BATCH_FENCE slot.

        Returns one future per request and, last, the fence's future.
        """
        if not requests:
            raise DispatchError("an empty batch", "pass at least one SlotRequest")
        fence = SlotRequest(BuiltinOpcode.BATCH_FENCE, (len(requests), tag), requests[0].tenant)
        for request in [*requests, fence]:
            request.validate(self.layout)
        return self._publish_validated([*requests, fence], timeout)

    def submit(
        self,
        program: int | Program | bytes,
        data: Any,
        *,
        lanes: int | Sequence[int | None] | None = None,
        fuel: int | Sequence[int | None] | None = None,
        emit_capacity: int = 65536,
        own_lo: int = 0,
        own_hi: int | None = None,
        file_offset: int = 0,
        chunk_index: int = 0,
        tenant: int = 0,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
    ) -> Future:
        """Run a program over ``data``, kept referenced until the run completes: bytes-like, a
        DeviceBuffer or a slice of one (``device_buffer``; read in place, no staging), or on CUDA
        a device array with ``__cuda_array_interface__`` (CuPy, PyTorch; read as its bytes).

        The future resolves to the run's result (outputs, records, dropped, fault); for a fused
        group (register_fused), to a list of one such result per member, in member order. Then
        ``lanes`` and ``fuel`` may also be sequences, one value per member (None: its default);
        ``emit_capacity`` is each member's.
        """
        handle = program if isinstance(program, int) else self.register_program(program)
        template = self._submit_template(handle, lanes, fuel, emit_capacity, tenant, priority, timeout)
        return template.submit(data, own_lo=own_lo, own_hi=own_hi, file_offset=file_offset, chunk_index=chunk_index)

    def _submit_template(
        self, handle: int, lanes: Any, fuel: Any, emit_capacity: Any, tenant: Any, priority: Any, timeout: Any
    ) -> RunTemplate:
        """submit()'s RunTemplate for these options: made (and checked) once per option set."""
        key = None
        if (
            type(handle) is int
            and type(lanes) in _PLAIN
            and type(fuel) in _PLAIN
            and type(emit_capacity) is int
            and type(tenant) is int
            and type(priority) is Priority
            and type(timeout) in _TIMEOUT
        ):  # options whose equal values behave alike (not True == 1, nor lists): a template is reused
            key = (self.registry.removals, handle, lanes, fuel, emit_capacity, tenant, priority, timeout)
            template = self._templates.get(key)
        if key is None or template is None:
            template = RunTemplate(
                self,
                handle,
                lanes=lanes,
                fuel=fuel,
                emit_capacity=emit_capacity,
                tenant=tenant,
                priority=priority,
                timeout=timeout,
            )
            if key is not None:
                if len(self._templates) >= TEMPLATE_CACHE:
                    self._templates.clear()
                self._templates[key] = template
        return template

    def run_template(self, program: int, **options: Any) -> RunTemplate:
        """submit()'s options (lanes, fuel, emit_capacity, tenant, priority, timeout) for
        ``program`` (a handle) checked once: ``template.submit(data, own_lo=, own_hi=,
        file_offset=, chunk_index=)`` then runs it as submit() would, with less host work per
        run (a stream submits one run per chunk)."""
        return RunTemplate(self, program, **options)

    def device_buffer(self, nbytes: int) -> DeviceBuffer:
        """``nbytes`` of memory on the device that runs read in place: submit() takes the buffer
        or a slice of it (``buffer.slice(offset, length)``) as its region, with no staging copy.

        CUDA: device memory (``upload``/``download`` are bounded copies on a non-blocking stream).
        CPU: a NumPy uint8 array (``buffer.array``). ``free()`` returns it; on CUDA its memory is
        recycled by later buffers and freed at shutdown, never while the resident kernel runs
        (vyre_runtime/buffers.py says why)."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 1:
            raise DispatchError(f"device_buffer({nbytes!r}): the size must be a positive number of bytes")
        if self._closed or self.image[ControlWord.SHUTDOWN]:
            raise BackendError("this Megakernel is shut down", "create a new Megakernel")
        make = getattr(self.device, "device_buffer", None)
        if make is None:  # the CPU backend reads host memory: the buffer is a NumPy array
            return HostBuffer(int(nbytes), self.device)
        return make(int(nbytes))

    def _region_data(self, data: Any) -> tuple[Any, int]:
        """What the registry holds for a run's region, and its length in bytes."""
        region = device_region_of(data)
        if region is None:  # host bytes: the backend reads them in place or stages a copy
            view = (
                memoryview(data).cast("B")
                if not isinstance(data, np.ndarray)
                else memoryview(data.reshape(-1).view(np.uint8))
            )
            return view, len(view)
        if region.buffer is not None and region.buffer.owner is not self.device:
            raise DispatchError(
                f"this {region.buffer.backend} DeviceBuffer belongs to another Megakernel",
                "allocate it with this Megakernel's device_buffer()",
            )
        if self.device.name == "cuda":
            return region, region.nbytes
        if isinstance(region.buffer, HostBuffer):
            return region.buffer.host_view(region.offset, region.nbytes), region.nbytes
        raise DispatchError(
            f"the {self.device.name} backend cannot read GPU memory ({type(data).__name__})",
            "copy it to the host first (cupy.asnumpy(a), tensor.cpu().numpy()), or use backend='cuda'",
        )

    def publish_bulk(
        self,
        opcode: int,
        args: np.ndarray | Sequence[Sequence[int]] | None = None,
        *,
        count: int | None = None,
        tenant: int = 0,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
    ) -> BulkTicket:
        """Publish many slots of one built-in or user opcode, one argument row each.

        For throughput: no Future per slot; the returned ticket counts completions and faults
        (``ticket.wait()``). Blocks while the ring is full (or raises, per ``full_ring``).
        """
        rows = np.zeros((count or 0, 0), dtype=np.uint32) if args is None else np.asarray(args)
        if rows.ndim != 2 or rows.shape[1] > ARGS_PER_SLOT:
            raise DispatchError(f"args must be an (n, k) array with k <= {ARGS_PER_SLOT}, got shape {rows.shape}")
        if rows.size and (rows.min() < 0 or rows.max() > 0xFFFFFFFF):
            raise DispatchError("every argument must be a u32 (0..2^32-1)")
        rows = rows.astype(np.uint32)
        if opcode in (BuiltinOpcode.RUN_PROGRAM, BuiltinOpcode.SHUTDOWN):
            raise DispatchError(f"opcode {opcode:#x} cannot be published in bulk", "use submit() or shutdown()")
        SlotRequest(int(opcode), (), tenant, Priority(priority)).validate(self.layout)
        if self._closed or self.image[ControlWord.SHUTDOWN]:
            raise BackendError("this Megakernel is shut down", "create a new Megakernel")
        ticket = self.service.new_ticket(len(rows))
        sent = 0
        while sent < len(rows):
            slots = self._allocate_up_to(Priority(priority), len(rows) - sent, timeout)
            batch = np.asarray(slots, dtype=np.int64)
            self.service.track_bulk(batch, ticket)
            chunk = rows[sent : sent + len(slots)]
            try:
                self._write_and_ring(
                    batch,  # (the array: the doorbell's entries are computed from it without a list round trip)
                    lambda hints, batch=batch, chunk=chunk: codec.write_uniform_slots(
                        self.image, self.layout, batch, opcode, tenant, int(priority), chunk, hints
                    ),
                )
            except BaseException as error:  # nothing of this batch was published
                self.service.untrack_bulk(batch, ticket)
                self._give_back(slots)
                refusal = self._stray_refusal(slots)
                if refusal is not None:
                    raise refusal from error
                raise
            self.device.ring_doorbell(slots, [int(priority)] * len(slots))
            sent += len(slots)
        return ticket

    def _allocate_up_to(self, priority: Priority, wanted: int, timeout: float | None) -> list[int]:
        """At least one and at most ``wanted`` free slots, waiting (or raising) like _allocate.
        The partitions are drained in _take_one's order, a whole run of slots at a time."""
        if not self.service.device_signals:
            self._reap_until_free(priority, wanted, timeout)
        first = self._allocate([priority], timeout)
        with self._free_changed:
            for partition in [*range(priority, PRIORITY_COUNT), *range(priority - 1, -1, -1)]:
                free = self._free[partition]
                keep = self._reserve[partition] if partition < priority else 0
                take = min(wanted - len(first), len(free) - keep)
                if take > 0 and take == len(free):  # a bulk publisher usually takes them all
                    first += free
                    free.clear()
                elif take > 0 and 4 * take < len(free):  # a few of many: popleft costs O(take)
                    popleft = free.popleft
                    first += [popleft() for _ in range(take)]
                elif take > 0:  # most of them: the first `take`, in order, without a popleft each
                    items = list(free)
                    first += items[:take]
                    free.clear()
                    free.extend(items[take:])
        return first

    def _reap_until_free(self, priority: Priority, wanted: int, timeout: float | None) -> None:
        """A device that cannot signal (a GPU) completes slots without waking anyone: reap here
        until ``priority`` can take a slot, instead of sleeping until the service thread's next
        poll (half a millisecond, in which a GPU completes a ring's worth of tiny slots).

        While reaps keep finding completions, it goes on until a batch (``wanted``, at most an
        eighth of the ring) is free: a publication has a fixed cost of tens of microseconds, and
        publishing the few slots each reap frees made the host, not the device, the limit. A
        reap that finds nothing (the device idle or slow) returns at once with what is free.
        Gives up at the deadline and leaves the waiting (or raising) to _allocate."""
        deadline = time.monotonic() + (self.publish_timeout if timeout is None else timeout)
        batch = min(wanted, max(1, self.layout.slots // BULK_BATCH_SHARE))
        idle = 0
        while True:
            reaped = self.service.reap()
            if self._closed or time.monotonic() >= deadline:
                return
            if self._takeable(priority) and (not reaped or self._takeable(priority, batch)):
                return
            idle = 0 if reaped else idle + 1
            if idle < REAP_SPINS:
                yield_gil()
            else:
                time.sleep(REAP_SPIN_S)

    def _takeable(self, priority: Priority, count: int = 1) -> bool:
        """Whether _take_one(priority) would find ``count`` slots now (read without the lock: a hint)."""
        return self._takeable_count(priority) >= count

    def _takeable_count(self, priority: Priority) -> int:
        """How many slots _take_one(priority) would find now, its own and less urgent partitions'
        and the more urgent ones' beyond their reserves (read without the lock: a hint)."""
        free = sum(len(self._free[partition]) for partition in range(priority, PRIORITY_COUNT))
        for partition in range(priority):
            free += max(0, len(self._free[partition]) - self._reserve[partition])
        return free

    def channel(self, *, tenant: int = 0, priority: Priority = Priority.NORMAL) -> Channel:
        """Reserve one slot for the calling thread: the lowest-overhead synchronous round trip
        (no Future, no reaper; the caller watches its slot's status word). Close it to return
        the slot."""
        SlotRequest(BuiltinOpcode.NOP, (), tenant, Priority(priority)).validate(self.layout)
        slot = self._allocate([Priority(priority)], None)[0]
        self.service.reserved[slot] = True
        watch = self._watch(slot, tenant)
        return Channel(self, slot, tenant, Priority(priority), watch)

    def _watch(self, slot: int, tenant: int) -> int | None:
        """Ask the device to watch a channel's slot: the index of the WATCH word naming it, or
        None (no watcher, every WATCH word taken, or $VYRE_CHANNEL_WATCH=0): the doorbell serves."""
        if os.environ.get(WATCH_ENV, "1") == "0":
            return None
        with self._watch_lock:
            # At most one WATCH word names a slot: the watcher serves a call once per word naming
            # it, so a second word would run every call twice. A word an abandoned call kept goes
            # to the slot's next channel if the tenant is the same (the watcher still serves that
            # call through it); else the kept word stays and the new channel is not watched.
            word = WATCH_VALID | tenant << WATCH_TENANT_SHIFT | slot
            kept = self._watch_kept.pop(slot, None)
            if kept is not None:
                if int(self.image[int(ControlWord.WATCH) + kept]) == word:
                    return kept
                self._watch_kept[slot] = kept
                return None
            if not self._watch_free:
                return None
            index = self._watch_free.pop(0)
        # host-owned: the watcher reads it in its next batch, and serves only calls marked watched
        self.image[int(ControlWord.WATCH) + index] = word
        return index

    def _return_channel(self, slot: int, watch: int | None) -> None:
        # an abandoned watched call still in flight keeps its WATCH word: only the watcher can
        # serve it (a later batch of the watcher completes it)
        if watch is not None and self.image[self.layout.slot(slot)] in (_EMPTY, _DONE, _FAULT):
            self.image[int(ControlWord.WATCH) + watch] = 0
            with self._watch_lock:
                self._watch_free.append(watch)
        elif watch is not None:
            with self._watch_lock:
                self._watch_kept[slot] = watch  # the slot's next channel must not get a second word
        self.service.reserved[slot] = False
        self._release_slots([slot])

    def _publish_validated(
        self, requests: list[SlotRequest], timeout: float | None, run: tuple[int, int, int] | None = None
    ) -> list[Future]:
        if self._closed or self.image[_SHUTDOWN]:
            raise BackendError("this Megakernel is shut down", "create a new Megakernel")
        slots = self._allocate([r.priority for r in requests], timeout)
        futures: list[Future] = [SlotFuture(self.service) for _ in requests]
        self.service.track(slots, requests, futures, run)
        try:
            if len(slots) == 1:  # a future's round trip: memoryview stores, no NumPy
                self._write_and_ring_one(slots[0], requests[0])
            else:
                self._write_and_ring(
                    slots, lambda hints: codec.write_slots(self.image, self.layout, slots, requests, hints)
                )
        except BaseException as error:  # nothing was published: no phantom future, no slot lost
            self._withdraw(slots, futures, error)
            raise
        self.device.ring_doorbell(slots, [int(r.priority) for r in requests])
        return futures

    def _publish_runs(
        self,
        args: list[tuple[int, ...]],
        runs: list[tuple[int, int, int]],
        tenant: int,
        priority: Priority,
        timeout: float | None,
    ) -> list[Future]:
        """RUN_PROGRAM slots checked and staged by a RunTemplate (``args``: each slot's argument
        words; ``runs``: its (program, context, region) handles), published as one batch: one
        allocation (all or none), one tracking lock hold, one vectorized write and one doorbell
        ring for all of them (one publication per run cost tens of microseconds each)."""
        if self._closed or self.image[_SHUTDOWN]:
            raise BackendError("this Megakernel is shut down", "create a new Megakernel")
        slots = self._allocate([priority] * len(args), timeout)
        futures: list[Future] = [SlotFuture(self.service) for _ in args]
        self.service.track_runs(slots, futures, runs)
        try:
            if len(slots) == 1:
                self._write_and_ring_fields(slots[0], _RUN_PROGRAM, tenant, priority, args[0])
            elif len(slots) <= WORDS_BATCH:  # a stream's batch: memoryview stores (codec.write_slots_fields)
                with self._doorbell_lock:
                    position, rung = self._ringer.positions(len(slots))
                    codec.write_slots_fields(
                        self._ring_words, slots, _RUN_PROGRAM, tenant, int(priority), args, position, rung
                    )
                    self._ringer.ring_many(slots[:rung], position)
            else:
                rows, words = np.asarray(slots, dtype=np.int64), np.asarray(args, dtype=np.uint32)
                self._write_and_ring(
                    rows,
                    lambda hints: codec.write_uniform_slots(
                        self.image, self.layout, rows, _RUN_PROGRAM, tenant, int(priority), words, hints
                    ),
                )
        except BaseException as error:  # nothing was published: no phantom future, no slot lost
            self._withdraw(slots, futures, error)
            raise
        self.device.ring_doorbell(slots, [int(priority)] * len(slots))
        return futures

    def _withdraw(self, slots: list[int], futures: list[Future], error: BaseException) -> None:
        """A publication failed before its slots were written: forget their futures and give the
        slots back; raises the stray refusal if a slot from the free list was not EMPTY (else
        the caller raises ``error`` again)."""
        self.service.untrack(slots, futures)
        self._give_back(slots)
        refusal = self._stray_refusal(slots)
        if refusal is not None:
            raise refusal from error

    def _write_and_ring(self, slots: list[int] | np.ndarray, write: Callable[[np.ndarray], None]) -> None:
        """``write(hints)`` publishes the slots (payloads with their hint positions, then statuses);
        then their doorbell entries are rung. All under the doorbell lock: host threads share the
        doorbell's tail (a host-owned word), and a publication's hint position must be the position
        its entry takes, so no other thread may ring in between (docs/PROTOCOL.md, Hint positions).
        If ``write`` raises, nothing is rung."""
        with self._doorbell_lock:
            hints, rung = codec.doorbell_positions(self.image, self.layout, len(slots))
            write(hints)
            codec.ring_doorbell(self.image, self.layout, slots[:rung])

    def _write_and_ring_one(self, slot: int, request: SlotRequest) -> None:
        """_write_and_ring for one slot, on memoryviews (the channel's way): the same words in
        the same order, under the same lock."""
        self._write_and_ring_fields(slot, request.opcode, request.tenant, request.priority, request.args)

    def _write_and_ring_fields(self, slot: int, opcode: int, tenant: int, priority: int, args: Sequence[int]) -> None:
        """_write_and_ring_one of a validated request given as its fields."""
        with self._doorbell_lock:
            position, room = self._ringer.position()
            codec.write_slot_fields(self._ring_words, slot, opcode, tenant, priority, args, position)
            if room:
                self._ringer.ring_one(slot, position)

    def _allocate(self, priorities: list[Priority], timeout: float | None) -> list[int]:
        """Slots for every request at once (all or none). Each priority takes from its own
        partition, then less urgent ones, then borrows from more urgent ones down to their
        reserve, so urgent work always finds room (docs/PROTOCOL.md, "Priorities")."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            # (checked here, not where the deadline is built: a free slot builds none)
            raise DispatchError(f"timeout={timeout!r}; give seconds (a number) or None", "e.g. timeout=0.5")
        if len(priorities) == 1:  # a future's slot: no deadline unless it has to wait
            with self._free_changed:
                taken_one = self._take_one(priorities[0])
            if taken_one is not None:
                return [taken_one[1]]
        wait = self.publish_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._free_changed:
            while True:
                taken = self._try_take(priorities)
                if taken is not None:
                    return taken
                remaining = deadline - time.monotonic()
                if self.full_ring == "raise" or remaining <= 0:
                    raise RingFullError(
                        f"no free slot for {len(priorities)} request(s): all {self.layout.slots} slots are in flight"
                        + ("" if self.full_ring == "raise" else f" after waiting {wait:.1f} s")
                    )
                if self._closed:
                    raise BackendError("this Megakernel shut down while waiting for a slot")
                self._free_changed.wait(min(remaining, 0.1))

    def _try_take(self, priorities: list[Priority]) -> list[int] | None:
        taken: list[tuple[int, int]] = []
        for priority in priorities:
            slot = self._take_one(priority)
            if slot is None:
                for partition, returned in reversed(taken):
                    self._free[partition].appendleft(returned)
                return None
            taken.append(slot)
        return [slot for _, slot in taken]

    def _take_one(self, priority: Priority) -> tuple[int, int] | None:
        # own partition, then less urgent ones, then more urgent ones while they keep a reserve
        for partition in range(priority, PRIORITY_COUNT):
            if self._free[partition]:
                return partition, self._free[partition].popleft()
        for partition in range(priority - 1, -1, -1):
            if len(self._free[partition]) > self._reserve[partition]:
                return partition, self._free[partition].popleft()
        return None

    def _stray_refusal(self, slots: list[int]) -> ProtocolError | None:
        """Why the codec refused to write into slots taken from the free list, if one of them is
        not EMPTY: the host releases a slot only after reaping it, so the device completed a slot
        that was never published (the reaper clears such strays and counts them in stats())."""
        status = self.service.status_column
        busy = [slot for slot in slots if status[slot] != SlotState.EMPTY]
        if not busy:
            return None
        state = int(status[busy[0]])
        name = SlotState(state).name if state in SlotState.__members__.values() else str(state)
        return ProtocolError(
            f"free slot {busy[0]} is {name}: the device completed a slot the host had not published "
            f"(exactly-once violated; {len(busy)} of {len(slots)} slots taken); nothing was published",
            "a device bug: report it with Megakernel.stats().stray_completions and the kernel's build",
        )

    def _give_back(self, slots: list[int]) -> None:
        """Return slots taken from the free list but not published (EMPTY ones first)."""
        offsets = self.layout.partition_offsets
        status = self.service.status_column
        with self._free_changed:
            for slot in reversed(slots):
                free = self._free[bisect.bisect_right(offsets, slot) - 1]
                if status[slot] == SlotState.EMPTY:
                    free.appendleft(slot)
                else:  # a stray the reaper has yet to clear: offered last
                    free.append(slot)
            self._free_changed.notify_all()

    def _release_slots(self, slots: list[int] | np.ndarray) -> None:
        if len(slots) == 1:
            partitions = [bisect.bisect_right(self.layout.partition_offsets, int(slots[0])) - 1]
            runs = [[int(slots[0])]]
        else:  # a reap hands back thousands of bulk slots: group them by partition in NumPy
            indices = np.asarray(slots, dtype=np.int64)
            owner = np.searchsorted(self._partition_starts, indices, side="right") - 1
            partitions = np.flatnonzero(np.bincount(owner, minlength=PRIORITY_COUNT)).tolist()  # (no sort)
            if len(partitions) == 1:
                runs = [indices.tolist()]
            else:
                runs = [indices[owner == partition].tolist() for partition in partitions]
        with self._free_changed:
            for partition, run in zip(partitions, runs):
                self._free[partition].extend(run)
            self._free_changed.notify_all()

    # ------------------------------------------------------------------ results

    def poll(self) -> int:
        """Reap completed slots now; returns how many were reaped."""
        return self.service.reap()

    def wait(self, futures: Sequence[Future] | None = None, timeout: float | None = None) -> bool:
        """Wait for ``futures`` (default: everything in flight); False if the deadline passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if futures is None:
            return self.service.wait_idle(timeout)
        for future in futures:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                future.exception(timeout=remaining)
            except TimeoutError:
                return False
        return True

    def stats(self) -> Stats:
        return dataclasses.replace(self.service.stats(), programs=self._jit.states())

    def debug_records(self) -> list[debuglog.DebugRecord]:
        return self.service.drain_debug()

    def observables(self) -> np.ndarray:
        """A copy of the observable result words."""
        base = self.layout.observable_base
        return self.image[base : base + self.layout.observables].copy()

    # ------------------------------------------------------------------ pause and relaunch

    def pause(self, timeout: float = 10.0) -> None:
        """Stop the device without ending the ring, so that `relaunch` resumes it.

        The device claims nothing more and finishes every slot it claimed; every other slot stays
        PUBLISHED. Publishing and reaping go on meanwhile: slots published while paused wait in
        the ring for the relaunch. BackendError if a slot still runs after ``timeout`` (the
        device keeps draining: call again, or shutdown()).
        """
        self._refuse_if_shut_down()
        if not self.device.pause(timeout):
            raise BackendError(
                f"a {self.backend} worker was still busy {timeout:.1f} s after the pause began",
                "call pause() again (a long program ends at its fuel limit), or shutdown()",
            )

    def relaunch(self, cubin: Any = None, *, timeout: float = 10.0) -> dict[int, str]:
        """Serve the same ring with a fresh launch of the device; pauses a running one first.

        Every handle, buffer and future stays valid: PUBLISHED slots are served by the new
        launch, DONE slots not yet reaped are reaped once. A slot the old launch held claimed and
        never completed (it died) is faulted INTERNAL rather than run twice: its future fails
        with the reason; they are returned (slot -> reason). ``cubin`` (CUDA only: a
        build.BuildResult or cubin bytes) replaces the kernel: see CudaDevice.relaunch for what
        the new build must guarantee. BackendError: shut down, still busy after ``timeout``, or
        a device that cannot be resumed in this process (a dead CUDA context: restart it).
        """
        with self._swap_lock:  # never in the middle of a JIT swap
            self.pause(timeout)  # returns at once when the device already exited
            faulted = self._relaunch_paused(cubin, None)
            if cubin is not None:  # the caller's build runs now: no program is native any more
                self._jit.module_replaced()
        return faulted

    def _relaunch_paused(self, cubin: Any, jit_ids: dict[str, int] | None) -> dict[int, str]:
        """relaunch() once the device has exited; ``jit_ids`` go with a JIT variant's cubin."""
        with self.service.io_lock:  # the relaunch resets the IO entries: no answer may race it
            # (only the CUDA device takes jit_ids; a JIT swap happens only there)
            options = {} if jit_ids is None else {"jit_ids": jit_ids}
            faulted = self.device.relaunch(cubin, **options)
        if faulted:
            self.service.notify()  # the reaper hands their failures to the futures now
        return faulted

    def _swap_to_variant(self, programs: dict[str, Program]) -> None:
        """The JIT's hot swap (run on the JIT thread): build a megakernel variant holding
        ``programs`` (code key -> program) while the running kernel keeps serving, then pause and
        relaunch with the variant, whose functions the program records then name.

        No slot is lost or run twice: the pause finishes every claimed slot and leaves the rest
        PUBLISHED for the new launch (relaunch()). Once PAUSE is set the dispatcher is gone, so
        the swap waits for the drain however long the runs in flight take (their fuel bounds
        them) and always relaunches: the variant, or, if that launch fails, whichever module is
        loaded then, with its own ids (CudaDevice.relaunch keeps ids and module together).
        shutdown() waits for a swap in progress (up to its timeout) before it stops the device.
        """
        variant = self.device.build_variant(programs)  # seconds of NVRTC; the kernel serves meanwhile
        with self._swap_lock:
            if self._closed or self.image[ControlWord.SHUTDOWN] or self._jit.closed:  # (closed: at exit too)
                raise BackendError("the Megakernel shut down before the JIT swap", "nothing to do")
            while True:
                try:
                    self.pause(timeout=5.0)
                    break
                except BackendError:
                    if self._closed or self.image[ControlWord.SHUTDOWN]:
                        raise
            try:
                self._relaunch_paused(variant.build, variant.ids)
            except BackendError:
                if not (self._closed or self.image[ControlWord.SHUTDOWN]):
                    self._relaunch_paused(None, None)  # the loaded module serves again
                raise

    def _refuse_if_shut_down(self) -> None:
        if self._closed or self.image[ControlWord.SHUTDOWN]:
            raise BackendError(
                "this Megakernel is shut down (shutdown() or a SHUTDOWN slot); a shut-down ring is not resumed",
                "create a new Megakernel",
            )

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, timeout: float = 10.0, *, cancel: bool = False) -> None:
        """Drain in-flight work (or cancel it) and stop the backend, within ``timeout`` seconds.

        Never hangs: whatever has not completed by the deadline is cancelled, its futures fail
        with BackendError, and a worker still busy is reported, not waited on forever.
        """
        if self._closed:
            return
        self._jit.close()  # no swap may begin once shutdown has
        deadline = time.monotonic() + timeout
        # a swap in progress relaunches before we go on, so the work it paused is served (or, past
        # the deadline, cancelled below like any other)
        swap_waited = self._swap_lock.acquire(timeout=max(0.0, 0.5 * timeout))
        try:
            if not cancel and not self.image[ControlWord.PAUSE]:  # a paused device completes nothing more
                self.service.wait_idle(max(0.0, deadline - time.monotonic() - 0.5 * min(timeout, 1.0)))
            self._closed = True
        finally:
            if swap_waited:
                self._swap_lock.release()
        self.service.answer_all_io_with_shutdown()
        stopped = self.device.stop(max(0.1, deadline - time.monotonic()))
        self.service.stop()
        self.service.cancel_outstanding("the Megakernel shut down before this slot completed")
        if stopped:
            self.device.close()  # frees device memory; a busy worker keeps its memory alive
        with self._free_changed:
            self._free_changed.notify_all()
        if not stopped:
            raise BackendError(
                f"a {self.backend} worker was still busy {timeout:.1f} s after shutdown began",
                "lower the fuel of long programs; the worker stops at its next slot boundary",
            )


class Channel:
    """A slot owned by one thread for synchronous calls (Megakernel.channel()).

    ``call`` writes the payload, then the status (status-last), rings the doorbell, spins on the
    status word until DONE or FAULT, copies the results out and hands the slot back to EMPTY
    for the next call: the host side of a microsecond round trip.
    """

    def __init__(
        self, megakernel: Megakernel, slot: int, tenant: int, priority: Priority, watch: int | None = None
    ) -> None:
        self._megakernel = megakernel
        self.slot = slot
        self._watch = watch  # the WATCH word naming this slot: tiny calls skip the doorbell
        self._tenant = tenant
        self._priority = priority
        self._closed = False
        self._validated: set[int] = set()
        # Everything a call touches is prepared once: a call is a few stores and loads on
        # mapped memory. Through a memoryview an element costs ~40 ns (a NumPy element ~70-120
        # ns, a NumPy slice ~300 ns), and a call is a dozen of them.
        base = megakernel.layout.slot(slot)
        self._words = memoryview(megakernel.image)[base : base + SLOT_WORDS]  # stores land in the image
        self._payload = array("I", bytes(4 * (SLOT_WORDS - 1)))  # OPCODE .. ARG11 of the next call
        self._payload[SlotWord.TENANT - 1] = tenant
        self._payload[SlotWord.PRIORITY - 1] = priority
        self._no_arguments = array("I", bytes(4 * ARGS_PER_SLOT))
        self._argument_words = 0  # ARG words the previous call set (the rest of _payload is zero)
        self._hint = [slot]
        self._hint_priority = [int(priority)]
        self._device_hint = megakernel.device.ring_doorbell
        self._ring = megakernel._ringer.ring_one
        self._position = megakernel._ringer.position
        self._priority_bits = int(priority)
        self._doorbell_lock = megakernel._doorbell_lock
        self._spins_only = not megakernel.service.device_signals  # a CPU device needs the GIL to progress
        self._counts = megakernel.service.open_channel_counts()
        self._native = None
        self._state = channel_native.ChannelState()
        if watch is not None:
            self._state.slot = megakernel.image.ctypes.data + 4 * base  # the mapped image's own words
            self._state.tenant = tenant
            self._state.priority = int(priority) | PRIORITY_WATCHED
            self._native = channel_native.load()
        self._results = memoryview(self._state).cast("B")[channel_native.ChannelState.results.offset :][:16].cast("I")
        self._state_address = ctypes.addressof(self._state)
        self._timeout_ns = 0
        self._watched_head = array("I", bytes(4 * 6))  # OPCODE, TENANT, PRIORITY, ARG0 .. ARG2
        self._watched_head[1] = tenant
        self._zeros = array("I", bytes(4 * (SLOT_WORDS - _ARG0 - 4)))  # ARG4 .. ARG11

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, opcode: int, args: Sequence[int] = (), *, timeout: float = 10.0) -> SlotOutcome:
        if self._closed or self._megakernel._closed:
            raise BackendError("this channel is closed", "open a new one with Megakernel.channel()")
        if opcode not in self._validated:  # validate an opcode once per channel, then trust it
            self._validate(opcode)
        count = len(args)
        if count and (count > ARGS_PER_SLOT or not (min(args) >= 0 and max(args) <= 0xFFFFFFFF)):
            raise ProtocolError(f"arguments {tuple(args)!r}: at most {ARGS_PER_SLOT} u32 words")
        if (
            self._watch is not None
            and opcode in _WATCHABLE
            and count <= 3
            and (opcode != _MEMCPY or count < 3 or args[2] <= INLINE_MEMCPY_WORDS)
        ):
            return self._call_watched(opcode, args, count, timeout)
        words, payload = self._words, self._payload
        started = time.perf_counter_ns()
        if words[0] != _EMPTY:
            raise ProtocolError(f"channel slot {self.slot} is not EMPTY; a previous call was abandoned")
        payload[0] = opcode
        if count or self._argument_words:  # all twelve ARG words, every time (no stale arguments)
            payload[_ARG0 - 1 :] = self._no_arguments
            payload[_ARG0 - 1 : _ARG0 - 1 + count] = array("I", args)
            self._argument_words = count
        with self._doorbell_lock:  # the hint position is the entry's: nobody rings in between
            position, room = self._position()
            payload[_PRIORITY - 1] = self._priority_bits | (position & HINT_MASK) << PRIORITY_BITS
            words[1:] = payload  # payload first ...
            words[0] = _PUBLISHED  # ... status last (docs/PROTOCOL.md, publication)
            if room:
                self._ring(self.slot, position)
        self._device_hint(self._hint, self._hint_priority)
        state = words[0]
        if state < _DONE or state == _WAIT_IO:
            state = self._wait(words, timeout)
        results = tuple(words[_RESULT0:])
        words[0] = _EMPTY  # results copied out: hand the slot back for the next call
        return self._outcome(opcode, state, results, started)

    def _outcome(self, opcode: int, state: int, results: tuple[int, ...], started: int) -> SlotOutcome:
        counts = self._counts
        counts.add_latency(time.perf_counter_ns() - started)
        counts.calls += 1
        if state != _FAULT:
            return SlotOutcome(self.slot, opcode, results, None)
        counts.faults += 1
        return SlotOutcome(self.slot, opcode, results, SlotFaultInfo.from_words(*results))

    def _call_watched(self, opcode: int, args: Sequence[int], count: int, timeout: float) -> SlotOutcome:
        """A tiny call on a watched slot (docs/PROTOCOL.md, Watched channels): no doorbell, no
        lock; the device's watcher sees the status and the first 32 bytes in one read. PRIORITY
        carries PRIORITY_WATCHED and the call's sequence, which ARG3 echoes; ARG0 .. 2 are stored
        before ARG3, and the status last."""
        a0, a1, a2 = (*args, 0, 0, 0)[:3] if count else (0, 0, 0)
        started = time.perf_counter_ns()
        native = self._native
        if native is not None:  # the same stores in C, and the spin with the GIL released
            timeout_ns = int(timeout * 1e9)
            if timeout_ns != self._timeout_ns:
                self._state.timeout_ns = self._timeout_ns = timeout_ns
            state = native(self._state_address, opcode, a0, a1, a2)
            if state < 0:
                self._refuse(state == channel_native.NOT_EMPTY, timeout)
            return self._outcome(opcode, state, tuple(self._results), started)
        words, head = self._words, self._watched_head
        if words[0] != _EMPTY:
            self._refuse(True, timeout)
        seq = (self._state.seq + 1) & HINT_MASK
        if words[_ARG0 + 3] & HINT_MASK == seq:  # ARG3 must change (mod 2^24, as the watcher compares it)
            seq = (seq + 1) & HINT_MASK
        self._state.seq = seq
        head[0] = opcode
        head[2] = self._state.priority | seq << PRIORITY_BITS
        head[3], head[4], head[5] = a0, a1, a2
        words[1 : _ARG0 + 3] = head  # OPCODE .. ARG2 ...
        words[_ARG0 + 3] = seq  # ... then ARG3, the sequence's echo ...
        words[_ARG0 + 4 :] = self._zeros
        words[0] = _PUBLISHED  # ... and the status last
        state = words[0]
        if state < _DONE or state == _WAIT_IO:
            state = self._wait(words, timeout)
        results = tuple(words[_RESULT0:])
        words[0] = _EMPTY
        return self._outcome(opcode, state, results, started)

    def _refuse(self, not_empty: bool, timeout: float) -> None:
        if not_empty:
            raise ProtocolError(f"channel slot {self.slot} is not EMPTY; a previous call was abandoned")
        raise BackendError(
            f"slot {self.slot} did not complete within {timeout} s",
            "check Megakernel.stats() heartbeat; the device may be wedged",
        )

    def _validate(self, opcode: int) -> None:
        SlotRequest(int(opcode), (), self._tenant, self._priority).validate(self._megakernel.layout)
        if opcode == BuiltinOpcode.RUN_PROGRAM:
            raise DispatchError("RUN_PROGRAM goes through submit(), which stages its data", "use submit()")
        self._validated.add(opcode)

    def _wait(self, words: memoryview, timeout: float) -> int:
        """Spin on the slot's status word until DONE or FAULT; returns that status."""
        spins_only = self._spins_only
        for _ in range(CHANNEL_SPINS):  # a GPU completes a tiny slot in microseconds: spin first
            state = words[0]
            if state >= _DONE and state != _WAIT_IO:
                return state
            if not spins_only:
                yield_gil()  # the CPU device's workers need the GIL to complete the slot
        deadline = time.monotonic() + timeout
        while True:  # then sleep between checks, up to the deadline
            state = words[0]
            if state >= _DONE and state != _WAIT_IO:
                return state
            if time.monotonic() > deadline:
                raise BackendError(
                    f"slot {self.slot} did not complete within {timeout} s (state {state})",
                    "check Megakernel.stats() heartbeat; the device may be wedged",
                )
            time.sleep(0.00002)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._megakernel.service.close_channel_counts(self._counts)
            self._megakernel._return_channel(self.slot, self._watch)


__all__ = ["BulkTicket", "Channel", "Megakernel", "SlotOutcome", "SlotRequest"]
