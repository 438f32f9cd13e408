"""The host API on the CPU backend: completion exactly once, fault isolation, backpressure,
tenants, IO, debug log, shutdown that never hangs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from host_programs import counting_program, faulting_program

from vyre_runtime.errors import BackendError, DispatchError, ProtocolError, RingFullError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.codec import SlotRequest, encode_packed
from vyre_runtime.protocol.layout import Priority, SlotFault
from vyre_runtime.protocol.opcodes import USER_OPCODE_BASE, BuiltinOpcode
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.program import Binding, Instruction, Program

Op = isa.Op


@pytest.fixture
def mk():
    with Megakernel(backend="cpu", slots=256, tenants=4, workers=2) as megakernel:
        yield megakernel


def test_auto_backend_says_which_backend_it_chose():
    with Megakernel(backend="auto", slots=16) as megakernel:
        assert megakernel.backend in ("cpu", "cuda")


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(BackendError, match="unknown backend"):
        Megakernel(backend="tpu")


def test_builtins_run_and_return_results(mk):
    assert mk.publish(BuiltinOpcode.STORE_U32, (5, 40)).result(5).ok
    assert mk.publish(BuiltinOpcode.ATOMIC_ADD, (5, 2)).result(5).results[0] == 40
    assert mk.publish(BuiltinOpcode.COMPARE_SWAP, (5, 42, 7)).result(5).results[0] == 42
    assert mk.publish(BuiltinOpcode.MEMCPY, (5, 6, 1)).result(5).ok
    assert mk.observables()[5:7].tolist() == [7, 7]
    packed = encode_packed([(BuiltinOpcode.STORE_U32, (9, 1)), (BuiltinOpcode.ATOMIC_ADD, (9, 2))])
    assert mk.publish(BuiltinOpcode.PACKED_SLOT, packed).result(5).results[0] == 1
    assert mk.observables()[9] == 3


def test_dfa_step_walks_the_registered_automaton(mk):
    dfa = mk.register_dfa(compile_patterns([b"ab"]))
    data = b"xxabab"
    words = np.frombuffer(data.ljust(8, b"\0"), dtype="<u4").tolist()
    outcome = mk.publish(BuiltinOpcode.DFA_STEP, (dfa, 0, len(data), *words)).result(5)
    assert outcome.ok and outcome.results[1] == 2


def test_submit_runs_a_program_and_returns_outputs(mk):
    handle = mk.register_program(counting_program())
    result = mk.submit(handle, b"x" * 100, lanes=5).result(10)
    assert result.ok
    assert result.outputs["hits"].tolist() == [5] and result.outputs["bytes"].tolist() == [500]


def test_submit_checks_options_once_per_set_and_refuses_what_a_fresh_check_refuses(mk):
    """submit() reuses the RunTemplate of an option set it checked before: values that compare
    equal but are refused (True for 1) and removed programs or groups are still refused as a
    fresh check refuses them."""
    handle = mk.register_program(counting_program())
    assert mk.submit(handle, b"x" * 10, lanes=1, fuel=1000).result(10).outputs["hits"].tolist() == [1]
    assert mk.submit(handle, b"x" * 10, lanes=1, fuel=1000).result(10).ok
    assert len(mk._templates) == 1
    with pytest.raises(DispatchError, match="lanes=True"):
        mk.submit(handle, b"x", lanes=True, fuel=1000)
    with pytest.raises(DispatchError, match="fuel=True"):
        mk.submit(handle, b"x", lanes=1, fuel=True)
    other = mk.register_program(counting_program())
    group = mk.register_fused([handle, other])
    assert len(mk.submit(group, b"x" * 10, lanes=1, fuel=1000).result(10)) == 2
    mk.unregister_program(group)
    with pytest.raises(DispatchError, match=f"program handle {group} is not registered"):
        mk.submit(group, b"x", lanes=1, fuel=1000)
    mk.unregister_program(handle)
    with pytest.raises(DispatchError, match=f"program handle {handle} is not registered"):
        mk.submit(handle, b"x", lanes=1, fuel=1000)


@pytest.mark.parametrize(
    ("kind", "code"), [("oob", SlotFault.OOB_INPUT), ("fuel", SlotFault.FUEL_EXHAUSTED), ("trap", SlotFault.TRAP)]
)
def test_faulting_program_ends_its_slot_as_fault_and_later_slots_complete(mk, kind, code):
    bad = mk.register_program(faulting_program(kind))
    good = mk.register_program(counting_program())
    faulted = mk.submit(bad, b"abc", fuel=1000).result(30)
    assert faulted.fault is not None and faulted.fault.code == code and faulted.fault.lane == 0
    if kind == "trap":
        assert faulted.fault.detail == 1234
    later = [mk.submit(good, b"abcd", lanes=3) for _ in range(20)]
    assert all(f.result(10).outputs["hits"].tolist() == [3] for f in later)
    assert mk.stats().faulted == 1


def test_unregistered_handles_fault_without_stopping_the_workers(mk):
    args = (999, 999, 999, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    outcome = mk.publish(BuiltinOpcode.RUN_PROGRAM, args).result(5)
    assert outcome.fault.code == SlotFault.BAD_HANDLE
    assert mk.publish(BuiltinOpcode.NOP).result(5).ok


def test_user_opcode_runs_its_bound_program_inside_the_tenant_window(mk):
    handle = mk.register_program(counting_program())
    opcode = USER_OPCODE_BASE + 16 * 2 + 3  # tenant 2's window
    mk.bind_opcode(opcode, handle, tenant=2)
    with pytest.raises(ProtocolError, match="window"):
        mk.bind_opcode(USER_OPCODE_BASE, handle, tenant=2)
    with pytest.raises(ProtocolError, match="window"):
        mk.publish(opcode, (), tenant=1)
    unbound = mk.publish(opcode + 1, (), tenant=2).result(5)
    assert unbound.fault.code == SlotFault.BAD_OPCODE


def test_publish_checks_every_call_after_its_opcode_was_checked_once(mk):
    """publish() checks an (opcode, tenant, priority) once; the arguments, every call, and a
    combination it has not seen (another tenant, a bad priority) is checked in full."""
    before = mk.stats().published
    mk.publish(BuiltinOpcode.STORE_U32, (2, 7)).result(5)
    assert mk.publish(BuiltinOpcode.LOAD_U32, (2, 3)).result(5).results[0] == 7
    for args in ((-1,), (1 << 32,), tuple(range(13))):
        with pytest.raises(ProtocolError):
            mk.publish(BuiltinOpcode.LOAD_U32, args)
    with pytest.raises(ProtocolError, match="tenant"):
        mk.publish(BuiltinOpcode.LOAD_U32, (2, 3), tenant=4)
    with pytest.raises(ValueError):
        mk.publish(BuiltinOpcode.LOAD_U32, (2, 3), priority=99)
    with pytest.raises(ProtocolError):
        mk.publish(BuiltinOpcode.LOAD_U32, (2, 3), tenant=1.0)
    assert mk.publish(BuiltinOpcode.LOAD_U32, np.array([2, 4], dtype=np.uint32)).result(5).results[0] == 7
    assert mk.stats().published == before + 3


@pytest.mark.parametrize("timeout", ["1", True, [1]])
def test_a_timeout_that_is_not_seconds_is_refused_even_with_slots_free(mk, timeout):
    before = mk.stats().published
    with pytest.raises(DispatchError, match="timeout"):
        mk.publish(BuiltinOpcode.NOP, (), timeout=timeout)
    with pytest.raises(DispatchError, match="timeout"):
        mk.batch([SlotRequest(BuiltinOpcode.NOP)], timeout=timeout)
    assert mk.stats().published == before
    assert mk.publish(BuiltinOpcode.NOP, (), timeout=2).result(5).ok


def test_batch_validates_every_slot_before_writing_any(mk):
    before = mk.stats().published
    good = SlotRequest(BuiltinOpcode.NOP)
    with pytest.raises(ProtocolError):
        mk.batch([good, good, SlotRequest(0x0ABC)])
    assert mk.stats().published == before
    futures = mk.batch([good] * 10, tag=77)
    assert len(futures) == 11 and all(f.result(5).ok for f in futures)
    assert mk.stats().epoch == 1


def fill_ring(megakernel: Megakernel) -> list:
    futures = []
    with pytest.raises(RingFullError):
        for _ in range(1000):
            futures.append(megakernel.publish(BuiltinOpcode.NOP, timeout=0))
    return futures


def test_full_ring_raises_when_configured_to():
    with Megakernel(backend="cpu", slots=16, full_ring="raise", workers=1) as megakernel:
        megakernel.set_tenant_enabled(0, False)  # nothing gets claimed: the ring fills up
        futures = fill_ring(megakernel)
        assert 8 <= len(futures) < 16  # urgent partitions keep their reserve
        with pytest.raises(RingFullError, match="in flight"):
            megakernel.publish(BuiltinOpcode.NOP)
        megakernel.set_tenant_enabled(0, True)
        assert all(f.result(5).ok for f in futures)


def test_full_ring_blocks_until_the_deadline_then_raises():
    with Megakernel(backend="cpu", slots=16, workers=1) as megakernel:
        megakernel.set_tenant_enabled(0, False)
        futures = fill_ring(megakernel)
        started = time.monotonic()
        with pytest.raises(RingFullError, match="after waiting"):
            megakernel.publish(BuiltinOpcode.NOP, timeout=0.3)
        assert 0.25 < time.monotonic() - started < 3
        megakernel.set_tenant_enabled(0, True)
        assert all(f.result(5).ok for f in futures)


def test_full_ring_blocks_until_a_slot_frees():
    with Megakernel(backend="cpu", slots=16, workers=1) as megakernel:
        megakernel.set_tenant_enabled(0, False)
        fill_ring(megakernel)
        threading.Timer(0.2, megakernel.set_tenant_enabled, (0, True)).start()
        assert megakernel.publish(BuiltinOpcode.NOP, timeout=10).result(5).ok


def test_paused_tenant_slots_stay_published_until_resumed(mk):
    mk.set_tenant_enabled(1, False)
    future = mk.publish(BuiltinOpcode.NOP, tenant=1)
    other = mk.publish(BuiltinOpcode.NOP, tenant=0)
    assert other.result(5).ok
    time.sleep(0.1)
    assert not future.done()
    mk.set_tenant_enabled(1, True)
    assert future.result(5).ok


def test_load_miss_fills_observables_or_faults_with_io_error(mk):
    mk.register_resource(3, b"0123456789abcdef")
    outcome = mk.publish(BuiltinOpcode.LOAD_MISS, (3, 4, 0, 8, 20)).result(5)
    assert outcome.ok and outcome.results[0] == 8
    assert mk.observables()[20:22].tobytes() == b"456789ab"
    missing = mk.publish(BuiltinOpcode.LOAD_MISS, (4, 0, 0, 8, 20)).result(5)
    assert missing.fault.code == SlotFault.IO_ERROR
    zero = mk.publish(BuiltinOpcode.LOAD_MISS, (3, 0, 0, 0, 20)).result(5)
    assert zero.fault.code == SlotFault.BAD_ARGUMENT


def test_printf_records_reach_the_host_and_overflow_is_counted():
    with Megakernel(backend="cpu", slots=64, debug_records=4, workers=1) as megakernel:
        futures = [megakernel.publish(BuiltinOpcode.PRINTF, (1, i, 0)) for i in range(6)]
        assert [f.result(5).results[0] for f in futures].count(1) == 4
        assert megakernel.stats().debug_dropped == 2
        records = megakernel.debug_records()
        assert sorted(r.a for r in records) == sorted(r.a for r in records)[:4] and len(records) == 4
        assert megakernel.publish(BuiltinOpcode.PRINTF, (1, 99, 0)).result(5).results[0] == 1


def test_shutdown_opcode_stops_the_workers_and_new_publishes_are_refused():
    megakernel = Megakernel(backend="cpu", slots=16)
    assert megakernel.publish(BuiltinOpcode.SHUTDOWN).result(5).ok
    with pytest.raises(BackendError):
        megakernel.publish(BuiltinOpcode.NOP)
    megakernel.shutdown(timeout=2)


def test_shutdown_with_cancel_fails_pending_futures_and_does_not_hang():
    megakernel = Megakernel(backend="cpu", slots=16, workers=1)
    megakernel.set_tenant_enabled(0, False)
    pending = [megakernel.publish(BuiltinOpcode.NOP) for _ in range(5)]
    started = time.monotonic()
    megakernel.shutdown(timeout=2, cancel=True)
    assert time.monotonic() - started < 5
    for future in pending:
        with pytest.raises(BackendError, match="shut down"):
            future.result(1)


def test_bad_submit_arguments_are_rejected_before_publishing(mk):
    handle = mk.register_program(counting_program())
    with pytest.raises(DispatchError, match="lanes"):
        mk.submit(handle, b"abc", lanes=0)
    with pytest.raises(DispatchError, match="own range"):
        mk.submit(handle, b"abc", own_lo=2, own_hi=1)
    with pytest.raises(DispatchError, match="not registered"):
        mk.submit(12345, b"abc")
    # per-run values a run template checks: a float is refused before the run is staged (the
    # range checks let it through; then a float file_offset left its context and region behind)
    for bad in ({"file_offset": 1.5}, {"own_lo": 0.0}, {"own_hi": 3.0}, {"chunk_index": 2.0}):
        with pytest.raises(ProtocolError, match="integers"):
            mk.submit(handle, b"abc", **bad)
    assert not mk.registry.contexts and not mk.registry.regions
    numpy_ints = {"own_lo": np.int64(1), "file_offset": np.uint64(8), "chunk_index": np.uint32(2)}
    assert mk.submit(handle, b"abc", **numpy_ints).result(5).ok
    assert mk.stats().published == 1


def test_priorities_keep_room_for_urgent_work():
    with Megakernel(backend="cpu", slots=10, workers=1, full_ring="raise") as megakernel:
        megakernel.set_tenant_enabled(0, False)
        background = []
        with pytest.raises(RingFullError):
            while True:
                background.append(megakernel.publish(BuiltinOpcode.NOP, priority=Priority.BACKGROUND))
        urgent = megakernel.publish(BuiltinOpcode.NOP, priority=Priority.CRITICAL)
        megakernel.set_tenant_enabled(0, True)
        assert urgent.result(5).ok and all(f.result(5).ok for f in background)


def test_many_producers_complete_every_slot_exactly_once():
    """>= 1,000,000 slots from several threads, built-ins and small programs mixed: every
    future resolves once, and the device's done count and per-opcode metrics match exactly."""
    producers, per_producer = 4, 250_000
    program = Program(
        name="tiny",
        registers=2,
        lanes=1,
        bindings=(Binding("n", 1),),
        code=(Instruction(Op.LI, d=0, imm=1), Instruction(Op.ATADD, d=1, a=1, b=0, imm=0), Instruction(Op.EXIT)),
    )
    counts = {"nop": 0, "add": 0, "run": 0}
    resolved = []
    with Megakernel(backend="cpu", slots=4096, workers=2) as megakernel:
        handle = megakernel.register_program(program)
        lock = threading.Lock()

        def produce(seed: int) -> None:
            local = {"nop": 0, "add": 0, "run": 0}
            futures = []
            nop, add = SlotRequest(BuiltinOpcode.NOP), SlotRequest(BuiltinOpcode.ATOMIC_ADD, (0, 1))
            sent = 0
            while sent < per_producer:
                if sent % 1000 == seed:
                    futures.append(megakernel.submit(handle, b"x"))
                    local["run"] += 1
                    sent += 1
                    continue
                batch = [nop if (sent + i) % 2 else add for i in range(min(63, per_producer - sent))]
                futures += megakernel.batch(batch)[:-1]  # the fence completes too; counted below
                local["nop"] += sum(1 for r in batch if r is nop)
                local["add"] += sum(1 for r in batch if r is add)
                sent += len(batch)
            done = [f.result(60) for f in futures]
            with lock:
                resolved.extend(done)
                for key in counts:
                    counts[key] += local[key]

        threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert megakernel.wait(timeout=60)
        stats = megakernel.stats()
    total = producers * per_producer
    assert sum(counts.values()) == total and len(resolved) == total
    fences = stats.metrics["BATCH_FENCE"]
    assert stats.published == stats.completed == total + fences
    assert stats.device_done == total + fences and stats.faulted == 0
    assert stats.metrics.get("NOP", 0) == counts["nop"] and stats.metrics.get("RUN_PROGRAM", 0) == counts["run"]
    assert stats.metrics["ATOMIC_ADD"] == counts["add"]
    assert int(megakernel.observables()[0]) == counts["add"]


def test_bulk_publication_counts_every_completion_and_samples_faults(mk):
    ticket = mk.publish_bulk(BuiltinOpcode.ATOMIC_ADD, np.array([[3, 2]] * 5000, dtype=np.uint32))
    assert ticket.wait(60) and ticket.completed == 5000 and ticket.faulted == 0
    assert mk.observables()[3] == 10000
    bad = mk.publish_bulk(BuiltinOpcode.STORE_U32, np.array([[100000, 1]] * 40, dtype=np.uint32))
    assert bad.wait(10) and bad.faulted == 40
    assert len(bad.fault_samples) == 16 and bad.fault_samples[0][1].code == SlotFault.BAD_ARGUMENT
    assert mk.stats().in_flight == 0 and mk.stats().metrics["ATOMIC_ADD"] == 5000


def test_bulk_publication_rejects_bad_arguments_before_writing(mk):
    with pytest.raises(DispatchError, match="u32"):
        mk.publish_bulk(BuiltinOpcode.STORE_U32, np.array([[1, -1]]))
    with pytest.raises(DispatchError, match="shape"):
        mk.publish_bulk(BuiltinOpcode.STORE_U32, np.zeros((2, 13), dtype=np.uint32))
    with pytest.raises(DispatchError, match="in bulk"):
        mk.publish_bulk(BuiltinOpcode.RUN_PROGRAM, count=3)
    with pytest.raises(ProtocolError):
        mk.publish_bulk(0x0ABC, count=3)
    assert mk.stats().published == 0


def test_channel_calls_run_synchronously_on_a_reserved_slot(mk):
    with mk.channel() as channel:
        assert channel.call(BuiltinOpcode.STORE_U32, (7, 40)).ok
        assert channel.call(BuiltinOpcode.ATOMIC_ADD, (7, 2)).results[0] == 40
        fault = channel.call(BuiltinOpcode.STORE_U32, (10**6, 1)).fault
        assert fault is not None and fault.code == SlotFault.BAD_ARGUMENT
        assert mk.publish(BuiltinOpcode.NOP).result(5).ok  # the reaper leaves the channel's slot alone
        with pytest.raises(ProtocolError):
            channel.call(BuiltinOpcode.NOP, (1,) * 13)
        with pytest.raises(DispatchError, match="submit"):
            channel.call(BuiltinOpcode.RUN_PROGRAM, ())
    with pytest.raises(BackendError, match="closed"):
        channel.call(BuiltinOpcode.NOP)
    assert mk.observables()[7] == 42 and mk.stats().completed == 4


def test_an_unregistered_program_faults_bad_handle_and_frees_its_handle(mk):
    handle = mk.register_program(counting_program())
    assert mk.submit(handle, b"abc").result(10).ok
    mk.unregister_program(handle)
    with pytest.raises(DispatchError, match="not registered"):
        mk.submit(handle, b"abc")
    with pytest.raises(DispatchError, match="not registered"):
        mk.unregister_program(handle)
    args = (handle, 999, 999, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert mk.publish(BuiltinOpcode.RUN_PROGRAM, args).result(5).fault.code == SlotFault.BAD_HANDLE


# ---------------------------------------------------------------------- exactly once, end to end
# bench/scan.py on an H100 once failed with "slot N is FAULT (holding unreaped results)": the
# CUDA kernel's work queue let workers run stale entries (tests/test_cuda_backend.py,
# test_bursts_then_trickles_run_every_slot_exactly_once). These pin the host's side: the same
# sequence is exactly-once on the CPU device, and a device that completes a slot nobody published
# is detected without corrupting the free list.


def free_slots(megakernel: Megakernel) -> list[int]:
    return sorted(slot for partition in megakernel._free for slot in partition)


def test_paused_bursts_faults_timeouts_and_trickles_complete_every_slot_exactly_once():
    """bench/scan.py's sequence: runs published while the tenant is paused (some faulting, a
    caller timing out on one mid-wait), the tenant resumed, then more runs one at a time with many
    in flight, round after round."""
    with Megakernel(backend="cpu", slots=64, workers=2) as megakernel:
        good = megakernel.register_program(counting_program())
        bad = megakernel.register_program(faulting_program("trap"))
        expected: list[tuple] = []
        for _ in range(3):
            megakernel.set_tenant_enabled(0, False)
            try:
                burst = []
                for i in range(40):
                    handle = bad if i % 7 == 3 else good
                    burst.append((handle, megakernel.submit(handle, bytes(i + 1), lanes=2)))
                with pytest.raises(TimeoutError):  # nothing runs while the tenant is paused
                    burst[0][1].result(0.01)
                assert megakernel.stats().in_flight == 40
            finally:
                megakernel.set_tenant_enabled(0, True)
            trickle = [(good, megakernel.submit(good, bytes(i + 1), lanes=3)) for i in range(30)]
            expected += burst + trickle
            for handle, future in burst + trickle:
                outcome = future.result(10)
                if handle == bad:
                    assert outcome.fault is not None and outcome.fault.code == SlotFault.TRAP
                else:
                    assert outcome.ok and outcome.outputs["hits"].tolist()[0] in (2, 3)
        assert megakernel.wait(timeout=10)
        stats = megakernel.stats()
        total = len(expected)
        assert (stats.published, stats.completed, stats.in_flight) == (total, total, 0)
        assert (stats.device_claims, stats.device_done) == (total, total)
        assert stats.faulted == stats.device_faults == sum(1 for handle, _ in expected if handle == bad)
        assert stats.stray_completions == 0
        assert free_slots(megakernel) == list(range(64))  # every slot free, each once


def _stray(megakernel: Megakernel, slot: int) -> None:
    """What the CUDA bug did: a worker completes a slot the host never published (here: FAULT
    BAD_HANDLE of a released run), written straight into the image."""
    row = megakernel.layout.slot(slot)
    megakernel.image[row + 12 : row + 16] = [int(SlotFault.BAD_HANDLE), 0, 0, 1234]
    megakernel.image[row] = 7  # SlotState.FAULT, last


def test_a_stray_completion_is_counted_and_its_slot_stays_in_the_free_list_once():
    with Megakernel(backend="cpu", slots=16, workers=1) as megakernel:
        assert megakernel.publish(BuiltinOpcode.NOP).result(5).ok
        _stray(megakernel, 5)
        megakernel.poll()
        deadline = time.monotonic() + 5
        while megakernel.stats().stray_completions == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the service thread may have reaped it first
        stats = megakernel.stats()
        assert stats.stray_completions == 1 and stats.completed == 1 and stats.in_flight == 0
        assert megakernel.service.stray_samples[0][0] == 5
        assert free_slots(megakernel) == list(range(16))  # not released a second time
        megakernel.set_tenant_enabled(0, False)  # every slot in flight at once: all distinct
        futures = [megakernel.publish(BuiltinOpcode.NOP, priority=Priority.CRITICAL) for _ in range(16)]
        assert sorted(f.slot for f in futures) == list(range(16))
        megakernel.set_tenant_enabled(0, True)
        assert all(f.result(5).ok for f in futures)


def test_publishing_into_a_stray_completion_is_refused_and_loses_nothing():
    with Megakernel(backend="cpu", slots=16, workers=1) as megakernel:
        reap = megakernel.service.reap
        megakernel.service.reap = lambda: 0  # hold the reaper back: the stray is still there
        try:
            slot = megakernel._free[Priority.NORMAL][0]  # the slot the next NORMAL publish takes
            _stray(megakernel, slot)
            with pytest.raises(ProtocolError, match="exactly-once"):
                megakernel.publish(BuiltinOpcode.NOP)
            stats = megakernel.stats()
            assert (stats.published, stats.in_flight) == (0, 0)  # no phantom future
            assert free_slots(megakernel) == list(range(16))
        finally:
            megakernel.service.reap = reap
        megakernel.poll()
        assert megakernel.stats().stray_completions == 1
        assert all(megakernel.publish(BuiltinOpcode.NOP).result(5).ok for _ in range(40))
        assert free_slots(megakernel) == list(range(16))


def test_a_publication_that_fails_to_write_leaves_no_phantom_future(monkeypatch):
    from vyre_runtime.protocol import codec

    with Megakernel(backend="cpu", slots=16, workers=1) as megakernel:

        def broken(*args, **kwargs):
            raise ProtocolError("injected")

        monkeypatch.setattr(codec, "write_slots", broken)
        with pytest.raises(ProtocolError, match="injected"):
            megakernel.batch([SlotRequest(BuiltinOpcode.NOP)] * 3)
        monkeypatch.undo()
        stats = megakernel.stats()
        assert (stats.published, stats.in_flight) == (0, 0)
        assert free_slots(megakernel) == list(range(16))
        assert megakernel.wait(timeout=1)  # nothing waits on a slot that was never written
        assert all(f.result(5).ok for f in megakernel.batch([SlotRequest(BuiltinOpcode.NOP)] * 3))
