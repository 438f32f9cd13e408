"""The host's side of the ring at run time: reap completed slots into futures, answer the
device's IO requests, drain the debug log, keep statistics.

Reaping is the only place a DONE or FAULT slot becomes EMPTY again, and it happens after the
results are copied out, so every published slot resolves its future exactly once. A completion in
a slot the host did not publish (a device that broke exactly-once) is a *stray*: it is cleared
and counted (`Stats.stray_completions`), never handed to the free list a second time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from vyre_runtime.errors import BackendError
from vyre_runtime.protocol import debuglog, ioqueue
from vyre_runtime.protocol.codec import ring_view, ring_words
from vyre_runtime.protocol.layout import IN_FLIGHT, SLOT_WORDS, ControlWord, Layout, SlotFault, SlotState, SlotWord
from vyre_runtime.protocol.opcodes import BuiltinOpcode
from vyre_runtime.registry import Registry
from vyre_runtime.stats import LatencyWindow, Stats, read_device_counters

SERVICE_INTERVAL_S = 0.05
CALLER_POLL_S = 0.01  # a waiting caller re-checks at least this often
POLL_INTERVAL_S = 0.0005  # the service thread's poll of a device that cannot signal, while busy
SPIN_LIMIT = 20_000  # status-word checks a waiting caller spins through before it sleeps
SPIN_SLEEP_S = 0.00002
FINISHED_STATES = (SlotState.DONE, SlotState.FAULT)
COUNTER_SETTLE_S = 0.5
STRAY_SAMPLES = 16
_FAULT_CODES = frozenset(int(code) for code in SlotFault)
SPINS_PER_YIELD = 64  # a spinning waiter lets other Python threads (publishers, the reaper) run this often
TRACKED_SCAN_LIMIT = 64  # up to this many futures in flight, check their status words, not the column
# plain ints for the per-slot paths (an enum member lookup costs about a microsecond)
_EMPTY, _DONE, _FAULT = int(SlotState.EMPTY), int(SlotState.DONE), int(SlotState.FAULT)
_OPCODE, _RESULT0 = int(SlotWord.OPCODE), int(SlotWord.RESULT0)
_RUN_PROGRAM = int(BuiltinOpcode.RUN_PROGRAM)
_IN_FLIGHT_STATES = frozenset(int(state) for state in IN_FLIGHT)
_SLOT_WORDS = SLOT_WORDS


def yield_gil() -> None:
    """Let other Python threads run for a moment: sched_yield releases the GIL (~0.5 us when no
    one waits for it), where time.sleep(0) costs ~80 us on Linux (it sleeps the timer slack)."""
    os.sched_yield()


@dataclass(frozen=True)
class SlotFaultInfo:
    code: SlotFault
    pc: int
    lane: int
    detail: int

    @classmethod
    def from_words(cls, code: int, pc: int, lane: int, detail: int) -> SlotFaultInfo:
        """A FAULT slot's four result words; a code this host does not know reads as INTERNAL."""
        return cls(SlotFault(code) if code in _FAULT_CODES else SlotFault.INTERNAL, pc, lane, detail)

    def describe(self) -> str:
        where = f" at pc {self.pc}, lane {self.lane}" if self.code <= SlotFault.BAD_INSTRUCTION else ""
        return f"{self.code.name}{where} (detail {self.detail})"


class ChannelCounts:
    """A channel's completed calls and faults, written only by the thread that owns the channel
    (so a call takes no lock); its latencies go into the shared window (a deque append, atomic)."""

    __slots__ = ("add_latency", "calls", "faults")

    def __init__(self, latency: LatencyWindow) -> None:
        self.calls = 0
        self.faults = 0
        self.add_latency = latency.add


@dataclass(frozen=True)
class SlotOutcome:
    """How a slot ended: DONE with up to four result words, or FAULT with its fault."""

    slot: int
    opcode: int
    results: tuple[int, ...]
    fault: SlotFaultInfo | None = None

    @property
    def ok(self) -> bool:
        return self.fault is None


@dataclass(frozen=True)
class RunOutcome:
    """What `Megakernel.submit` resolves to."""

    outputs: dict[str, np.ndarray]
    records: np.ndarray
    dropped: int
    instructions: int
    fault: SlotFaultInfo | None
    path: str = "not run"  # "interpreted" or "jit" (as the device reports it); "not run" if it never started

    @property
    def ok(self) -> bool:
        return self.fault is None


class SlotFuture(Future):
    """A Future whose waiter reaps completions itself: one thread hand-off fewer per round trip."""

    def __init__(self, service: HostService) -> None:
        super().__init__()
        self._service = service
        self.slot = -1  # set when the slot is tracked

    def _drive(self, timeout: float | None) -> float | None:
        if self.done():  # resolved already (a stream collecting its finished runs): no spinning
            return timeout  # over a status word that may belong to another run by now
        if not self._service.device_signals:
            return self._spin(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        service = self._service
        while not self.done():
            seen = service.completions
            if service.reap_tracked() and self.done():
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            wait = CALLER_POLL_S if remaining is None else min(remaining, CALLER_POLL_S)
            service.wait_for_completion(seen, wait)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _spin(self, timeout: float | None) -> float | None:
        """A device that cannot signal (a GPU): watch this slot's status word and reap just this
        slot when it is DONE or FAULT (no scan of the ring). Spins briefly (microsecond round
        trips), letting other threads run every few checks, then sleeps in short steps.

        The future's own state (a lock each time) is checked only when the status word says
        the slot is no longer in flight, and every few checks: another thread may have reaped
        it, and the slot may already be in flight again for someone else."""
        deadline = None if timeout is None else time.monotonic() + timeout
        service = self._service
        words = service.slot_words
        slot = self.slot  # set by track(), before the slot was published
        spins = 0
        while True:
            state = words[slot * _SLOT_WORDS] if slot >= 0 else _EMPTY
            if state in (_DONE, _FAULT):
                reaped = service.reap_slot(slot)
                if self.done():
                    break
                if reaped:
                    continue
                # not ours to reap: the slot went back to the free list before another thread
                # resolved this future, and now holds someone else's finished slot (a bulk
                # one, a stray); wait as for a slot in flight (yield, sleep, the deadline)
            spins += 1
            if state in _IN_FLIGHT_STATES and spins % SPINS_PER_YIELD:
                continue  # the hot loop: one load, two compares
            if self.done():  # reaped by another thread (EMPTY), or it is time for the periodic check
                break
            if spins > SPIN_LIMIT:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(SPIN_SLEEP_S)
            else:
                yield_gil()  # a spinning waiter must not starve publishers (nor the thread resolving it)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def result(self, timeout: float | None = None) -> Any:
        return super().result(self._drive(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._drive(timeout))


class BulkTicket:
    """Completion of many slots published at once (Megakernel.publish_bulk): counts, not futures.

    A Future per slot costs microseconds of Python; bulk work (millions of tiny slots) is
    tracked by counting completions per ticket instead, with the first faults kept as samples.
    """

    MAX_FAULT_SAMPLES = 16

    def __init__(self, service: HostService, ticket_id: int, total: int) -> None:
        self._service = service
        self.id = ticket_id
        self.total = total
        self.completed = 0
        self.faulted = 0
        self.fault_samples: list[tuple[int, SlotFaultInfo]] = []  # (slot, fault)
        self.published = 0  # slots written so far (publication may block on a full ring)
        self.cancelled = 0  # slots that never completed because the Megakernel shut down

    @property
    def done(self) -> bool:
        return self.completed + self.cancelled >= self.total

    def wait(self, timeout: float | None = None) -> bool:
        """Reap until every slot of the ticket completed; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        signals = self._service.device_signals
        idle = 0  # reaps in a row that found nothing
        while not self.done:
            if self._service.reap():
                idle = 0
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return False
            idle += 1
            if signals:
                time.sleep(0.0005)
            elif idle < SPIN_LIMIT // 100:  # a GPU completes thousands of slots per ms: keep reaping
                yield_gil()
            else:
                time.sleep(SPIN_SLEEP_S)
        return True


@dataclass(slots=True)
class _Pending:
    opcode: int
    future: Future
    published_ns: int
    run: tuple[int, int, int] | None  # (program, context, region) handles of a RUN_PROGRAM


class HostService:
    def __init__(
        self,
        image: np.ndarray,
        layout: Layout,
        registry: Registry,
        device: Any,
        release_slots: Callable[[list[int] | np.ndarray], None],
    ):
        self.image = image
        self.layout = layout
        self.registry = registry
        self.device = device
        # the CPU device calls notify() on completion; a GPU cannot call Python, so it is polled
        self.device_signals = getattr(device, "completion_signal", True)
        self.release_slots = release_slots
        self.internal_errors: dict[int, str] = {}
        self.stray_completions = 0  # DONE/FAULT in slots the host had not published (device bugs)
        self.stray_samples: list[tuple[int, tuple[int, ...]]] = []  # (slot, its 16 words), the first few
        # told (program handle, path) of every finished run: the JIT policy counts hot programs
        self.run_observer: Callable[[int, str], None] | None = None
        self.observer_errors: list[str] = []  # what run_observer raised (a bug), kept for diagnosis
        self._pending: dict[int, _Pending] = {}
        self._bulk_ticket = np.zeros(layout.slots, dtype=np.int64)  # slot -> ticket id, 0 = none
        self._bulk_in_flight = 0
        self.reserved = np.zeros(layout.slots, dtype=bool)  # channel slots: their owner reaps them
        self._tickets: dict[int, BulkTicket] = {}
        self._next_ticket = 0
        self._lock = threading.RLock()
        self._io_lock = threading.Lock()
        self._wake = threading.Condition()
        self._idle = threading.Condition(self._lock)
        self._running = False
        self._work_waiting = False
        self._sleeping = False
        self._idle_sleep = False  # the service sleeps SERVICE_INTERVAL_S: it polls no device meanwhile
        self._callers_waiting = 0
        self.completions = 0  # device completions so far; callers wait for it to move
        self._caller_wake = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name="vyre-host-service", daemon=True)
        self._latency = LatencyWindow()
        self._published = self._completed = self._faulted = 0
        self._channel_counts: list[ChannelCounts] = []
        self._ring = ring_view(image, layout)
        self._status_column = self._ring[:, SlotWord.STATUS]
        self.status_column = self._status_column
        # the ring as flat u32 words: a memoryview element costs ~40 ns, a NumPy one ~100
        self.slot_words = ring_words(image, layout)
        self._last_full_reap = time.monotonic()
        self._debug: list[debuglog.DebugRecord] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        self.notify()
        self._thread.join(timeout=2.0)
        self.reap()

    def notify(self) -> None:
        with self._caller_wake:
            self.completions += 1
            if self._callers_waiting:  # a caller waits on its future: it reaps, the service sleeps on
                self._caller_wake.notify_all()
                return
        self._work_waiting = True
        with self._wake:
            if self._sleeping:  # a busy service thread sees the flag before it sleeps again
                self._wake.notify()

    def wait_for_completion(self, seen: int, timeout: float) -> None:
        """Block a caller until the device completes something (or ``timeout``), so a caller
        waiting on its own future can reap it directly instead of through the service thread."""
        with self._caller_wake:
            self._callers_waiting += 1
            try:
                if self.completions == seen:  # nothing completed since the caller last reaped
                    self._caller_wake.wait(timeout)
            finally:
                self._callers_waiting -= 1

    def _serve(self) -> None:
        while self._running:
            with self._wake:
                if not self._work_waiting:
                    self._sleeping = True
                    # raised before _pending is read: a track() that adds to it after the read
                    # sees the flag (it reads it without the lock) and wakes us, so an idle
                    # sleep never misses a publication; track() cuts such a sleep short
                    self._idle_sleep = True
                    # a device that cannot signal is polled often while work is in flight
                    busy_poll = not self.device_signals and (self._pending or self._bulk_in_flight)
                    self._idle_sleep = not busy_poll
                    self._wake.wait(POLL_INTERVAL_S if busy_poll else SERVICE_INTERVAL_S)
                    self._idle_sleep = self._sleeping = False
            self._work_waiting = False
            # the busy poll checks the tracked slots; the whole ring (strays too) is scanned
            # once per service interval
            if time.monotonic() - self._last_full_reap < SERVICE_INTERVAL_S:
                self.reap_tracked()
            else:
                self.reap()
            self.service_io()

    # ------------------------------------------------------------------ slots

    def track(
        self, slots: list[int], requests: list[Any], futures: list[Future], run: tuple[int, int, int] | None
    ) -> None:
        """Remember what each slot's future waits for; called before the slots are published."""
        self._track(slots, [request.opcode for request in requests], futures, [run] * len(slots))

    def track_runs(self, slots: list[int], futures: list[Future], runs: list[tuple[int, int, int]]) -> None:
        """track() for RUN_PROGRAM slots published as one batch, each with its own run's handles."""
        self._track(slots, [_RUN_PROGRAM] * len(slots), futures, runs)

    def _track(
        self, slots: list[int], opcodes: list[int], futures: list[Future], runs: list[tuple[int, int, int] | None]
    ) -> None:
        now = time.perf_counter_ns()
        with self._lock:  # one hold for the whole publication
            for slot, opcode, future, run in zip(slots, opcodes, futures, runs):
                self._pending[slot] = _Pending(opcode, future, now, run)
                if isinstance(future, SlotFuture):
                    future.slot = slot
            self._published += len(slots)
        if self._idle_sleep:
            self._wake_to_poll()

    def _wake_to_poll(self) -> None:
        """Work was published while the service sleeps its idle interval: wake it, so that it
        polls a device that cannot signal from now on. Left asleep, it reaped these slots up to
        SERVICE_INTERVAL_S late: a stream whose runs had all been reaped (nothing in flight as
        the service went to sleep) stalled 50 ms per round of runs, ~1900 runs/s at most."""
        with self._wake:
            self._wake.notify()

    def untrack(self, slots: list[int], futures: list[Future]) -> None:
        """Forget slots tracked for a publication that was not written after all."""
        with self._lock:
            for slot, future in zip(slots, futures):
                pending = self._pending.get(slot)
                if pending is not None and pending.future is future:
                    del self._pending[slot]
                    self._published -= 1
            if not self._pending and not self._bulk_in_flight:
                self._idle.notify_all()

    def open_channel_counts(self) -> ChannelCounts:
        """Counters for one channel: its thread adds to them without the lock (a call's hot
        path); stats() and wait_idle() add the open ones in, close_channel_counts folds them."""
        counts = ChannelCounts(self._latency)
        with self._lock:
            self._channel_counts.append(counts)
        return counts

    def close_channel_counts(self, counts: ChannelCounts) -> None:
        with self._lock:
            self._channel_counts.remove(counts)
            self._published += counts.calls
            self._completed += counts.calls
            self._faulted += counts.faults

    def _totals(self) -> tuple[int, int, int]:
        """(published, completed, faulted), open channels included. Call with the lock held."""
        calls = sum(counts.calls for counts in self._channel_counts)
        faults = sum(counts.faults for counts in self._channel_counts)
        return self._published + calls, self._completed + calls, self._faulted + faults

    def new_ticket(self, total: int) -> BulkTicket:
        with self._lock:
            self._next_ticket += 1
            ticket = BulkTicket(self, self._next_ticket, total)
            self._tickets[ticket.id] = ticket
            return ticket

    def track_bulk(self, slots: np.ndarray, ticket: BulkTicket) -> None:
        """Bulk slots are counted per ticket on completion, without a Future each."""
        with self._lock:
            self._bulk_ticket[slots] = ticket.id
            self._published += len(slots)
            self._bulk_in_flight += len(slots)
            ticket.published += len(slots)

    def untrack_bulk(self, slots: np.ndarray, ticket: BulkTicket) -> None:
        """Undo track_bulk for slots that were not written after all."""
        with self._lock:
            self._bulk_ticket[slots] = 0
            self._published -= len(slots)
            self._bulk_in_flight -= len(slots)
            ticket.published -= len(slots)
            if not self._pending and not self._bulk_in_flight:
                self._idle.notify_all()

    def _reap_bulk(self, slots: np.ndarray, states: np.ndarray, tickets: np.ndarray) -> None:
        """Count finished bulk slots per ticket; a faulted one's results are read (before the
        caller hands the slots back) only for the ticket's first fault samples."""
        faulted = states == _FAULT
        self._bulk_ticket[slots] = 0
        self._bulk_in_flight -= len(slots)
        self._completed += len(slots)
        fault_count = int(faulted.sum())
        self._faulted += fault_count
        first = tickets[0]
        if (tickets == first).all():  # the usual case: one bulk publication in flight (no np.unique)
            groups: Any = ((first, len(tickets)),)
        else:
            groups = zip(*np.unique(tickets, return_counts=True))
        for ticket_id, count in groups:
            ticket = self._tickets[int(ticket_id)]
            ticket.completed += int(count)
            if fault_count:
                faults = np.flatnonzero((tickets == ticket_id) & faulted)
                ticket.faulted += len(faults)
                for index in faults[: max(0, BulkTicket.MAX_FAULT_SAMPLES - len(ticket.fault_samples))].tolist():
                    slot = int(slots[index])
                    info = SlotFaultInfo.from_words(*self._ring[slot, _RESULT0:].tolist())
                    ticket.fault_samples.append((slot, info))
            if ticket.done:
                del self._tickets[ticket.id]

    def reap(self) -> int:
        """Copy out every DONE/FAULT slot's results, hand the slot back (EMPTY), resolve futures.

        Scans the whole status column, so it also finds completions in slots nobody published
        (strays). The per-future paths use reap_slot / reap_tracked instead."""
        with self._lock:
            self._last_full_reap = time.monotonic()
            column = self._status_column
            finished = np.flatnonzero(column >= _DONE)  # one pass over the column (DONE < ... <= FAULT)
            if len(finished) == 0:
                return 0
            states = column[finished]
            keep = ((states == _DONE) | (states == _FAULT)) & ~self.reserved[finished]
            finished, states = finished[keep], states[keep]
            if len(finished) == 0:
                return 0
            tickets = self._bulk_ticket[finished]
            bulk = tickets != 0
            reaped_bulk = int(bulk.sum())
            # results are read before the slots are handed back: a future's (or stray's) 16 words;
            # of a bulk slot only its state, and a faulted one's fault (_reap_bulk)
            if reaped_bulk:
                bulk_slots = finished[bulk] if reaped_bulk < len(finished) else finished
                self._reap_bulk(bulk_slots, states[bulk], tickets[bulk])
            else:
                bulk_slots = finished[:0]
            loose = finished[~bulk] if reaped_bulk else finished  # a future's slot, or a stray
            rows = self._ring[loose].copy()
            self._ring[finished, SlotWord.STATUS] = _EMPTY
            # only slots the host published go back to the free list: a stray completion lands
            # in a slot that is free already (or held by a publisher), and releasing it again
            # would put it in the free list twice
            pending = self._pending
            tracked = np.asarray([slot in pending for slot in loose.tolist()], dtype=bool)
            if not tracked.all():
                self._count_strays(loose[~tracked], rows[~tracked])
                loose, rows = loose[tracked], rows[tracked]
            resolved = self._complete_tracked(loose.tolist(), rows.tolist())
            every_finished = np.concatenate((bulk_slots, loose)) if len(loose) else bulk_slots
        self.release_slots(every_finished)  # an array: the free lists take it without a list round trip
        self._finish(resolved)
        return len(resolved) + reaped_bulk

    def reap_slot(self, slot: int) -> int:
        """Reap one tracked slot its waiter saw DONE or FAULT: its 16 words, no column scan.
        Returns 1 if this call reaped it, 0 if it was not finished or another thread reaped it."""
        return self._reap_slots([slot])

    def reap_tracked(self) -> int:
        """Reap the finished slots among those futures wait on, reading only their status words
        while there are few of them and no bulk slots in flight; else the whole column (reap)."""
        if self._bulk_in_flight or len(self._pending) > TRACKED_SCAN_LIMIT:
            return self.reap()
        words = self.slot_words
        finished = [
            slot for slot in list(self._pending) if words[slot * _SLOT_WORDS] in (_DONE, _FAULT)
        ]  # (list() of a dict is one step under the GIL: no lock needed for a snapshot)
        return self._reap_slots(finished) if finished else 0

    def _reap_slots(self, slots: list[int]) -> int:
        """Reap these slots, those of them that are tracked and finished, under one lock hold."""
        words = self.slot_words
        reaped: list[int] = []
        rows: list[list[int]] = []
        with self._lock:
            for slot in slots:
                if slot not in self._pending:  # reaped already (another waiter, the service thread)
                    continue
                base = slot * _SLOT_WORDS
                state = words[base]
                if state not in (_DONE, _FAULT):
                    continue
                rows.append(words[base : base + _SLOT_WORDS].tolist())  # status first, then results
                words[base] = _EMPTY  # results copied out: the slot is the host's again
                reaped.append(slot)
            if not reaped:
                return 0
            resolved = self._complete_tracked(reaped, rows)
        self.release_slots(reaped)
        self._finish(resolved)
        return len(resolved)

    def _complete_tracked(self, slots: list[int], rows: list[list[int]]) -> list[tuple[int, _Pending, list[int]]]:
        """Forget finished tracked slots; returns each with its words (status first, then the
        results), which _resolve turns into the outcome outside the lock. Call with the lock held."""
        now = time.perf_counter_ns()
        resolved = []
        pending_slots = self._pending
        add_latency = self._latency.add
        faulted = 0
        for slot, row in zip(slots, rows):
            pending = pending_slots.pop(slot)
            add_latency(now - pending.published_ns)
            faulted += row[0] == _FAULT
            resolved.append((slot, pending, row))
        self._completed += len(slots)
        self._faulted += faulted
        if not pending_slots and not self._bulk_in_flight:
            self._idle.notify_all()
        return resolved

    def _finish(self, resolved: list[tuple[int, _Pending, list[int]]]) -> None:
        """Resolve futures (outside the lock: callbacks may publish), then wake waiting callers.
        Only a device that signals has callers waiting in wait_for_completion (a future on a
        device that cannot signal watches its own status word): else no wake-up is owed."""
        for slot, pending, row in resolved:
            self._resolve(slot, pending, row)
        if not self.device_signals:
            return
        with self._caller_wake:  # a caller may be waiting for a future this thread resolved
            self.completions += 1
            if self._callers_waiting:
                self._caller_wake.notify_all()

    def _count_strays(self, slots: np.ndarray, rows: np.ndarray) -> None:
        """A device completed slots nobody published: an exactly-once violation of the device
        (docs/PROTOCOL.md, 4.2). They are cleared (EMPTY) like any reaped slot, but not released."""
        self.stray_completions += len(slots)
        room = max(0, STRAY_SAMPLES - len(self.stray_samples))
        self.stray_samples += [(int(s), tuple(r)) for s, r in zip(slots[:room].tolist(), rows[:room].tolist())]

    def _resolve(self, slot: int, pending: _Pending, row: list[int]) -> None:
        """Resolve a reaped slot's future from its words (status first, then the results)."""
        future = pending.future
        fault = SlotFaultInfo.from_words(*row[_RESULT0:]) if row[0] == _FAULT else None
        if fault is not None and fault.code == SlotFault.INTERNAL:
            detail = self.device.internal_errors.pop(slot, None) or "no traceback recorded"
            if pending.run is not None:  # its handles go back as any finished run's do
                self.release_run(pending.run[1], pending.run[2])
            future.set_exception(BackendError(f"the backend failed on slot {slot}: {detail}", "please report this bug"))
        elif pending.run is not None:  # a run resolves to its result: no SlotOutcome is built
            program_handle, context_handle, region_handle = pending.run
            fused = context_handle in self.registry.fused_runs
            run = self.device.run_result(program_handle, context_handle)
            self.release_run(context_handle, region_handle)
            result = _fused_outcomes(run, fault) if fused else _run_outcome(run, fault)
            future.set_result(result)
            if self.run_observer is not None and run is not None:  # after the caller has its result
                try:
                    self._observe_paths(program_handle, fused, result)
                except Exception as error:  # bookkeeping must never cost a result or the reaper
                    self.observer_errors.append(f"{type(error).__name__}: {error}")
        else:
            future.set_result(SlotOutcome(slot, row[_OPCODE], tuple(row[_RESULT0:]), fault))

    def _observe_paths(self, program: int, fused: bool, result: Any) -> None:
        """Tell the JIT policy which path each program of a finished run took."""
        if not fused:
            self.run_observer(program, result.path)
            return
        group = self.registry.fused.get(program)
        for member, outcome in zip(group.members if group else (), result):
            if outcome.path != "not run":
                self.run_observer(member, outcome.path)

    def program_in_flight(self, program: int) -> bool:
        with self._lock:
            return any(p.run is not None and p.run[0] == program for p in self._pending.values())

    def release_run(self, context: int, region: int) -> None:
        self.device.run_released(context, region)
        self.registry.release_run(context, region)

    def wait_idle(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending or self._bulk_in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05) if remaining is not None else 0.05)
                self.reap()
        # a GPU adds to its counters just after publishing DONE (docs/PROTOCOL.md, counters):
        # once idle, give them a moment to land so stats() right after wait() is exact
        settle = time.monotonic() + COUNTER_SETTLE_S
        completed = self._completed_now() & 0xFFFFFFFF
        while int(self.image[ControlWord.DONE_COUNT]) != completed and time.monotonic() < settle:
            time.sleep(0.0001)
        return True

    def _completed_now(self) -> int:
        with self._lock:
            return self._totals()[1]

    def cancel_outstanding(self, reason: str) -> None:
        with self._lock:
            for slot, pending in list(self._pending.items()):
                if not pending.future.done():
                    pending.future.set_exception(
                        BackendError(f"slot {slot}: {reason}", "publish it again on a new Megakernel")
                    )
                if pending.run is not None:
                    self.release_run(*pending.run[1:])
            self._pending.clear()
            for ticket in self._tickets.values():  # bulk slots never ran: they count as cancelled
                ticket.cancelled = ticket.total - ticket.completed
            self._tickets.clear()
            self._bulk_ticket[:] = 0
            self._bulk_in_flight = 0
            self._idle.notify_all()

    # ------------------------------------------------------------------ IO queue and debug log

    @property
    def io_lock(self) -> threading.Lock:
        """Held while the host claims and answers IO requests; a relaunch holds it while it
        resets the IO entries, so no answer lands in an entry being reset."""
        return self._io_lock

    def service_io(self) -> None:
        with self._io_lock:  # one host thread claims and answers IO requests (docs/PROTOCOL.md)
            for request in ioqueue.claim_requests(self.image, self.layout):
                ok, result = self._load(request)
                ioqueue.complete(self.image, self.layout, request.entry, ok, result)

    def _load(self, request: ioqueue.IoRequest) -> tuple[bool, int]:
        loader = self.registry.resources.get(request.resource)
        if loader is None:
            return False, ioqueue.IoError.UNKNOWN_RESOURCE
        words = (request.nbytes + 3) // 4
        if request.destination + words > self.layout.observables:
            return False, ioqueue.IoError.OUT_OF_RANGE
        try:
            data = bytes(loader(request.offset, request.nbytes))
        except Exception:  # a user loader failing is an IO error for that slot, not a host crash
            return False, ioqueue.IoError.READ_FAILED
        if len(data) != request.nbytes:
            return False, ioqueue.IoError.OUT_OF_RANGE
        padded = data + bytes(words * 4 - len(data))
        base = self.layout.observable_base + request.destination
        # the destination words belong to the waiting request until it is answered
        self.image[base : base + words] = np.frombuffer(padded, dtype="<u4")
        return True, request.nbytes

    def answer_all_io_with_shutdown(self) -> None:
        with self._io_lock:
            for request in ioqueue.claim_requests(self.image, self.layout):
                ioqueue.complete(self.image, self.layout, request.entry, False, ioqueue.IoError.SHUTTING_DOWN)

    def drain_debug(self) -> list[debuglog.DebugRecord]:
        with self._lock:
            records = self._debug + debuglog.drain(self.image, self.layout)
            self._debug = []
            return records

    # ------------------------------------------------------------------ statistics

    def stats(self) -> Stats:
        with self._lock:
            published, completed, faulted = self._totals()
            host = {
                "published": published,
                "completed": completed,
                "faulted": faulted,
                "in_flight": len(self._pending) + self._bulk_in_flight,
                "latency_us": self._latency.summary(),
                "stray_completions": self.stray_completions,
            }
        return Stats(
            **host,
            **read_device_counters(self.image, self.layout),
            debug_dropped=debuglog.dropped(self.image, self.layout),
        )


def _fused_outcomes(runs: list[Any], slot_fault: SlotFaultInfo | None) -> list[RunOutcome]:
    """One RunOutcome per member of a fused run: a slot fault (nothing ran: a bad handle or
    argument) is every member's; otherwise each member carries its own program fault, if any."""
    if slot_fault is not None:
        return [_run_outcome(run, slot_fault) for run in runs]
    return [_run_outcome(run, None if run is None else _member_fault(run.fault)) for run in runs]


def _member_fault(fault: Any) -> SlotFaultInfo | None:
    """A member's VIR0 fault as the slot fault the same program would end a RUN_PROGRAM with."""
    if fault is None:
        return None
    return SlotFaultInfo(SlotFault(int(fault.code)), fault.pc, fault.lane, fault.detail)


def _run_outcome(run: Any, fault: SlotFaultInfo | None) -> RunOutcome:
    if run is None:  # the slot faulted before the program ran (bad handle, bad argument)
        return RunOutcome({}, np.zeros((0, 0), dtype=np.uint32), 0, 0, fault)
    return RunOutcome(run.outputs, run.records, run.dropped, run.instructions, fault, run.path)


__all__ = ["BuiltinOpcode", "HostService", "RunOutcome", "SlotFaultInfo", "SlotOutcome"]
