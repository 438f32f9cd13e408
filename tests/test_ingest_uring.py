"""The raw io_uring layer: structure layouts, setup and teardown, registration, waiting.

Real rings on this kernel; every test skips with the reason where io_uring cannot be set up.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vyre_runtime.errors import IngestError
from vyre_runtime.ingest import uring, uring_abi
from vyre_runtime.ingest.uring import Ring
from vyre_runtime.ingest.uring_abi import Feature, Op, SqeFlag

AVAILABLE, REASON = uring.io_uring_status()
REPO = Path(__file__).resolve().parents[1]
needs_io_uring = pytest.mark.skipif(not AVAILABLE, reason=f"io_uring unavailable here: {REASON}")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def ring_mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum("io_uring" in line for line in maps)


def test_structures_match_the_kernel_abi() -> None:
    assert ctypes.sizeof(uring_abi.IoUringSqe) == 64
    assert ctypes.sizeof(uring_abi.IoUringCqe) == 16
    assert ctypes.sizeof(uring_abi.IoUringParams) == 120
    assert uring_abi.IoUringParams.sq_off.offset == 40 and uring_abi.IoUringParams.cq_off.offset == 80
    assert uring_abi.IoUringSqe.off.offset == 8 and uring_abi.IoUringSqe.addr.offset == 16
    assert uring_abi.IoUringSqe.len.offset == 24 and uring_abi.IoUringSqe.user_data.offset == 32
    assert uring_abi.IoUringSqe.buf_index.offset == 40 and uring_abi.IoUringSqe.addr3.offset == 48
    assert ctypes.sizeof(uring_abi.IoUringGeteventsArg) == 24


def test_read_fixed_is_opcode_4_and_read_is_22() -> None:
    assert Op.READ_FIXED == 4 and Op.READ == 22 and Op.READV == 1
    assert SqeFlag.FIXED_FILE == 1 and SqeFlag.ASYNC == 0x10


@pytest.mark.parametrize("entries", [0, 3, 100, 65536])
def test_ring_entries_must_be_a_power_of_two_within_the_kernel_limit(entries: int) -> None:
    with pytest.raises(IngestError, match="power of two"):
        Ring(entries)


@needs_io_uring
def test_ring_reports_kernel_features_and_supports_the_read_ops() -> None:
    with Ring(8, cq_entries=64) as ring:
        assert ring.sq_entries == 8 and ring.cq_entries == 64
        assert ring.features & Feature.NODROP
        ops = ring.probe()
        assert {Op.NOP, Op.READ, Op.READ_FIXED} <= ops


@needs_io_uring
def test_nop_round_trip_through_get_sqe_submit_and_wait_peek_and_seen() -> None:
    with Ring(4) as ring:
        sqe = ring.get_sqe()
        sqe.opcode, sqe.user_data = Op.NOP, 0xDEAD_BEEF_0000_0001
        ring.prep_nop(7)
        assert ring.submit_and_wait(2) == 2
        seen = []
        while (cqe := ring.peek_cqe()) is not None:
            seen.append((cqe.user_data, cqe.res))
            ring.cqe_seen()
        assert seen == [(0xDEAD_BEEF_0000_0001, 0), (7, 0)]
        assert ring.cq_ready() == 0


@needs_io_uring
def test_full_submission_queue_raises_instead_of_overwriting() -> None:
    with Ring(2) as ring:
        ring.prep_nop(1)
        ring.prep_nop(2)
        with pytest.raises(IngestError, match="submission queue is full"):
            ring.prep_nop(3)
        ring.submit()
        ring.wait_cqes(2, 1.0)
        assert sorted(user_data for user_data, _, _ in ring.reap()) == [1, 2]


@needs_io_uring
def test_read_fixed_lands_in_a_registered_buffer_through_a_registered_file(tmp_path) -> None:
    data = os.urandom(64 * 1024)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    destination = np.zeros(len(data), np.uint8)
    fd = os.open(path, os.O_RDONLY)
    try:
        with Ring(8) as ring:
            ring.register_buffers([(destination.ctypes.data, destination.nbytes)])
            ring.register_files([-1, -1, -1])
            ring.register_files_update(1, [fd])
            for i in range(4):
                part = 16 * 1024
                address = destination.ctypes.data + i * part
                ring.prep_read_fixed(1, address, part, i * part, 0, user_data=40 + i, sqe_flags=SqeFlag.FIXED_FILE)
            assert ring.submit() == 4
            assert ring.wait_cqes(4, 5.0) == 4
            assert sorted(ring.reap()) == [(40 + i, 16 * 1024, 0) for i in range(4)]
            ring.unregister_buffers()
    finally:
        os.close(fd)
    assert destination.tobytes() == data


@needs_io_uring
def test_wait_with_nothing_coming_returns_at_its_timeout() -> None:
    with Ring(4) as ring:
        start = time.monotonic()
        assert ring.wait_cqes(1, 0.05) == 0
        assert 0.04 <= time.monotonic() - start < 0.5


@needs_io_uring
def test_a_buffer_over_1_gib_is_refused_before_the_syscall() -> None:
    with Ring(2) as ring, pytest.raises(IngestError, match="not registrable") as caught:
        ring.register_buffers([(0x10000, (1 << 30) + 4096)])
    assert "1 GiB" in caught.value.fix


@needs_io_uring
def test_failed_syscall_names_the_call_and_errno() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with Ring(2) as ring:
        ring.register_files([-1])
        with pytest.raises(IngestError, match=r"register_files_update failed: EBADF") as caught:
            ring.register_files_update(0, [read_end])
    assert caught.value.errno == errno.EBADF
    assert "not open" in caught.value.fix


_MEMLOCK_CHILD = """
import errno, mmap, os, resource
from vyre_runtime.errors import IngestError
from vyre_runtime.ingest.uring import Ring, _address_of
resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, 64 * 1024))
if os.getuid() == 0:  # root has CAP_IPC_LOCK, which skips the accounting: become nobody
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
memory = mmap.mmap(-1, 4 << 20)
with Ring(2) as ring:
    try:
        ring.register_buffers([(_address_of(memory), 4 << 20)])
        print("registered 4 MiB past a 64 KiB limit")
    except IngestError as exc:
        print(errno.errorcode[exc.errno], "|", exc.fix)
"""


@needs_io_uring
def test_registered_buffers_over_memlock_fail_with_a_memlock_fix() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _MEMLOCK_CHILD],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.stdout.startswith("ENOMEM |") and "RLIMIT_MEMLOCK" in child.stdout, child.stdout + child.stderr


@needs_io_uring
def test_sqpoll_thread_is_woken_after_it_went_idle() -> None:
    try:
        ring = Ring(4, sqpoll=True, sq_thread_idle_ms=1)
    except IngestError as exc:
        pytest.skip(f"SQPOLL unavailable: {exc.one_line()}")
    with ring:
        for round_ in range(3):
            time.sleep(0.02)  # the SQ thread sleeps after 1 ms idle and sets NEED_WAKEUP
            ring.prep_nop(round_)
            assert ring.submit() == 1
            assert ring.wait_cqes(1, 2.0) == 1
            assert ring.reap() == [(round_, 0, 0)]


@needs_io_uring
def test_fifty_rings_leak_no_fd_and_no_mapping() -> None:
    fds, maps = open_fds(), ring_mappings()
    for i in range(50):
        ring = Ring(16)
        ring.register_files([-1] * 4)
        if i % 2:
            ring.close()
        else:
            with ring:
                ring.prep_nop(i)
                ring.submit_and_wait(1)
        ring.close()  # a second close is a no-op
    assert (open_fds(), ring_mappings()) == (fds, maps)


@pytest.mark.skipif(uring._load_acquire is None, reason="libatomic.so.1 is not installed")
def test_acquire_release_words_for_weakly_ordered_cpus_load_and_store() -> None:
    cell = ctypes.c_uint32(7)
    word = uring._Word(ctypes.addressof(cell), weakly_ordered=True)
    assert word.load() == 7
    word.store(0xFFFF_FFFF)
    assert cell.value == 0xFFFF_FFFF and word.load() == 0xFFFF_FFFF


@needs_io_uring
@pytest.mark.skipif(uring._load_acquire is None, reason="libatomic.so.1 is not installed")
def test_ring_runs_on_the_weakly_ordered_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uring, "_WEAKLY_ORDERED", True)  # what an aarch64 host takes
    with Ring(4) as ring:
        for user_data in range(10):  # wraps the 4-entry rings twice
            ring.prep_nop(user_data)
            ring.submit()
            assert ring.wait_cqes(1, 2.0) == 1
            assert ring.reap() == [(user_data, 0, 0)]


@needs_io_uring
def test_closed_ring_refuses_work() -> None:
    ring = Ring(2)
    ring.close()
    for use in (lambda: ring.prep_nop(1), ring.submit, ring.reap, ring.cqe_seen, lambda: ring.wait_cqes(1, 0)):
        with pytest.raises(IngestError, match="closed"):
            use()  # an error, never a touch of unmapped ring memory


def test_disable_env_makes_io_uring_unavailable(monkeypatch) -> None:
    monkeypatch.setenv("VYRE_DISABLE_IO_URING", "1")
    available, reason = uring.io_uring_status()
    assert not available and "VYRE_DISABLE_IO_URING" in reason
    assert uring.probe_features()["available"] is False


@needs_io_uring
def test_probe_features_reports_what_doctor_shows(monkeypatch) -> None:
    monkeypatch.delenv("VYRE_DISABLE_IO_URING", raising=False)
    report = uring.probe_features()
    assert report["available"] and report["read_fixed"] and report["read"]
    assert "NODROP" in report["features"] and report["registered_buffers"] is True
    assert report["ext_arg"] == ("EXT_ARG" in report["features"])
    assert report["sqpoll"] is True or "SQPOLL" in report["sqpoll"] or "EPERM" in report["sqpoll"]


# ---- optional setup flags and io-wq worker caps -------------------------------------------------


def _ring_or_skip(flags: int) -> Ring:
    try:
        return Ring(8, flags=flags)
    except IngestError as exc:  # an older kernel than the flag: EINVAL
        if exc.errno == errno.EINVAL:
            pytest.skip(f"this kernel lacks the flag: {exc.one_line()}")
        raise


@needs_io_uring
@pytest.mark.parametrize(
    "flags",
    [
        uring_abi.SetupFlag.COOP_TASKRUN,
        uring_abi.SetupFlag.SINGLE_ISSUER,
        uring_abi.SetupFlag.SINGLE_ISSUER | uring_abi.SetupFlag.DEFER_TASKRUN,
        uring_abi.SetupFlag.COOP_TASKRUN | uring_abi.SetupFlag.SINGLE_ISSUER | uring_abi.SetupFlag.SUBMIT_ALL,
    ],
)
def test_setup_flags_reach_the_kernel_and_reads_still_complete(tmp_path, flags) -> None:
    # DEFER_TASKRUN posts completions only inside io_uring_enter(GETEVENTS): reap() must run it
    data = os.urandom(3 * 4096)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    destination = np.zeros(len(data), np.uint8)
    fd = os.open(path, os.O_RDONLY)
    try:
        with _ring_or_skip(flags) as ring:
            assert ring.setup_flags & flags == flags
            for i in range(3):
                ring.prep_read(fd, destination.ctypes.data + i * 4096, 4096, i * 4096, 7 + i, SqeFlag.ASYNC)
            assert ring.submit() == 3
            got: list[tuple[int, int, int]] = []
            deadline = time.monotonic() + 5.0
            while len(got) < 3 and time.monotonic() < deadline:
                got += ring.reap()  # no wait_cqes: reap alone must see every completion
            assert sorted(entry[:2] for entry in got) == [(7, 4096), (8, 4096), (9, 4096)]
    finally:
        os.close(fd)
    assert destination.tobytes() == data


def test_setup_flags_are_checked_before_the_syscall() -> None:
    with pytest.raises(IngestError, match="DEFER_TASKRUN needs SINGLE_ISSUER"):
        Ring(4, flags=uring_abi.SetupFlag.DEFER_TASKRUN)
    with pytest.raises(IngestError, match="not supported by Ring") as raised:
        Ring(4, flags=uring_abi.SetupFlag.IOPOLL)
    assert "COOP_TASKRUN" in raised.value.fix


@needs_io_uring
def test_a_single_issuer_ring_used_from_another_thread_names_the_fix() -> None:
    import threading

    ring = _ring_or_skip(uring_abi.SetupFlag.SINGLE_ISSUER | uring_abi.SetupFlag.DEFER_TASKRUN)
    failures: list[IngestError] = []

    def submit_elsewhere() -> None:
        try:
            ring.prep_nop(1)
            ring.submit()
        except IngestError as exc:
            failures.append(exc)

    try:
        thread = threading.Thread(target=submit_elsewhere)
        thread.start()
        thread.join(5)
        [failure] = failures
        assert failure.errno == errno.EEXIST and "thread that opened it" in failure.fix
    finally:
        ring.close()


@needs_io_uring
def test_iowq_worker_caps_are_set_read_back_and_belong_to_the_thread() -> None:
    import threading

    seen: list[tuple[int, int]] = []

    def in_a_fresh_thread() -> None:  # caps outlive a ring in its thread: keep other tests clear of them
        with Ring(8) as ring:
            try:
                ring.register_iowq_max_workers(3, 5)
            except IngestError as exc:
                seen.append((-1, exc.errno or 0))
                return
            seen.append(ring.register_iowq_max_workers(0, 0))  # 0, 0: reads them, changes none
        with Ring(8) as later:  # another ring of the same thread finds them in force
            seen.append(later.register_iowq_max_workers(0, 0))

    thread = threading.Thread(target=in_a_fresh_thread)
    thread.start()
    thread.join(10)
    if seen and seen[0][0] == -1:
        pytest.skip(f"no io-wq caps on this kernel (errno {seen[0][1]})")
    assert seen == [(3, 5), (3, 5)]


@needs_io_uring
def test_iowq_worker_caps_out_of_range_are_refused() -> None:
    with Ring(2) as ring, pytest.raises(IngestError, match="io-wq worker caps"):
        ring.register_iowq_max_workers(-1, 0)


@needs_io_uring
def test_probe_reports_iowq_caps_and_the_optional_setup_flags(monkeypatch) -> None:
    monkeypatch.delenv("VYRE_DISABLE_IO_URING", raising=False)
    report = uring.probe_features()
    assert report["iowq_max_workers"] is True or "register_iowq_max_workers" in report["iowq_max_workers"]
    assert set(report["setup_flags"]) <= {"COOP_TASKRUN", "SINGLE_ISSUER", "DEFER_TASKRUN"}
