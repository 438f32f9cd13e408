"""The reader contract, pinned for both readers (io_uring and preadv) on real files, pipes and
sockets: bytes land exactly, completions match by user_data, errors come back as -errno, limits
raise IngestError, and closing leaks nothing."""

from __future__ import annotations

import errno
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vyre_runtime.errors import IngestError
from vyre_runtime.ingest.fallback import PreadvReader
from vyre_runtime.ingest.reader import IoUringReader, ReadCompletion, Reader, open_reader
from vyre_runtime.ingest.uring import io_uring_status

IO_URING, WHY_NOT = io_uring_status()
KINDS = [
    pytest.param("io_uring", marks=pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")),
    "preadv",
]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def reader(kind: str) -> Iterator[Reader]:
    with open_reader(kind, depth=16) as opened:
        yield opened


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(5).randbytes(256 * 1024 + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def add(reader: Reader, path: Path, flags: int = os.O_RDONLY) -> int:
    """Add a file and close our fd at once: the reader keeps its own reference."""
    fd = os.open(path, flags)
    try:
        return reader.add_file(fd)
    finally:
        os.close(fd)


def wait_all(reader: Reader, count: int) -> list[ReadCompletion]:
    done: list[ReadCompletion] = []
    while len(done) < count:
        got = reader.wait(count - len(done), timeout=5.0)
        assert got, "no completion within 5 s"
        done += got
    return done


def test_both_readers_satisfy_the_reader_protocol(reader: Reader, kind: str) -> None:
    assert isinstance(reader, Reader)
    assert reader.name == kind and reader.depth == 16 and reader.fallback_reason is None
    assert reader.host_bytes_copied == 0 and reader.in_flight == 0


def test_reading_a_file_gives_exactly_its_bytes(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    memory = np.zeros(len(data), np.uint8)
    handle = add(reader, path)
    part = 64 * 1024
    for user_data, start in enumerate(range(0, len(data), part)):
        length = min(part, len(data) - start)
        reader.prep_read(handle, memory.ctypes.data + start, length, start, user_data)
    assert reader.submit() == 5
    done = wait_all(reader, 5)
    assert sorted(done) == [ReadCompletion(i, min(part, len(data) - i * part)) for i in range(5)]
    assert memory.tobytes() == data
    stats = reader.stats()
    assert (stats.reads_submitted, stats.reads_completed, stats.bytes_completed) == (5, 5, len(data))
    assert stats.failed_completions == 0 and reader.host_bytes_copied == 0


def test_read_fixed_lands_inside_a_registered_buffer(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    arena = np.zeros(2, dtype=[("chunk", np.uint8, 128 * 1024)])  # two registered buffers, one per chunk
    chunk_size = arena.itemsize
    reader.register_buffers([(arena.ctypes.data + i * chunk_size, chunk_size) for i in range(2)])
    handle = add(reader, path)
    reader.prep_read(handle, arena.ctypes.data, chunk_size, 0, 10, buffer_index=0)
    reader.prep_read(handle, arena.ctypes.data + chunk_size + 100, 1000, 5000, 11, buffer_index=1)
    assert sorted(wait_all(reader, 2)) == [(10, chunk_size), (11, 1000)]
    assert arena[0]["chunk"].tobytes() == data[:chunk_size]
    assert arena[1]["chunk"][100:1100].tobytes() == data[5000:6000]


def test_read_outside_its_registered_buffer_is_refused(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    memory = np.zeros(8192, np.uint8)
    reader.register_buffers([(memory.ctypes.data, 4096)])
    handle = add(reader, data_file[0])
    with pytest.raises(IngestError, match="not inside registered buffer 0"):
        reader.prep_read(handle, memory.ctypes.data + 4000, 200, 0, 1, buffer_index=0)
    with pytest.raises(IngestError, match="not registered"):
        reader.prep_read(handle, memory.ctypes.data, 100, 0, 1, buffer_index=1)
    assert reader.in_flight == 0


def test_buffers_register_once_and_at_most_1_gib_each(reader: Reader) -> None:
    memory = np.zeros(4096, np.uint8)
    with pytest.raises(IngestError, match="not registrable"):
        reader.register_buffers([(memory.ctypes.data, (1 << 30) + 1)])
    reader.register_buffers([(memory.ctypes.data, 4096)])
    with pytest.raises(IngestError, match="already registered"):
        reader.register_buffers([(memory.ctypes.data, 4096)])


def test_completions_match_by_user_data_whatever_their_order(
    reader: Reader, data_file: tuple[Path, bytes], kind: str
) -> None:
    path, data = data_file
    read_end, write_end = os.pipe()
    try:
        pipe = reader.add_file(read_end)
        handle = add(reader, path)
        memory = np.zeros((16, 4096), np.uint8)
        rng = random.Random(7)
        tags = list(dict.fromkeys(rng.getrandbits(64) - 1 for _ in range(16)))  # full 64-bit tags
        reader.prep_read(pipe, memory[0].ctypes.data, 4096, -1, tags[0])  # blocks until the pipe has data
        offsets = {tag: rng.randrange(0, len(data) - 4096) for tag in tags[1:]}
        for row, tag in enumerate(tags[1:], start=1):
            reader.prep_read(handle, memory[row].ctypes.data, 4096, offsets[tag], tag)
        assert reader.in_flight == 16
        first = wait_all(reader, 15)
        assert {c.user_data for c in first} == set(tags[1:])  # the first-queued read is still waiting
        os.write(write_end, b"late")
        assert wait_all(reader, 1) == [ReadCompletion(tags[0], 4)]
        for row, tag in enumerate(tags[1:], start=1):
            assert memory[row].tobytes() == data[offsets[tag] : offsets[tag] + 4096]
        assert memory[0, :4].tobytes() == b"late" and reader.in_flight == 0
    finally:
        os.close(read_end)
        os.close(write_end)


def test_many_reads_in_flight_each_land_where_its_user_data_says(kind: str, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    block, count = 1024, 256
    memory = np.zeros((count, block), np.uint8)
    order = list(range(count))
    random.Random(3).shuffle(order)
    with open_reader(kind, depth=64) as reader:
        handle = add(reader, path)
        done: list[ReadCompletion] = []
        for block_index in order:
            while reader.in_flight == reader.depth:
                done += reader.wait(1, timeout=5.0)
            reader.prep_read(handle, memory[block_index].ctypes.data, block, block_index * block, 1000 + block_index)
            if reader.in_flight % 8 == 0:
                reader.submit()
        done += wait_all(reader, reader.in_flight)
        assert reader.stats().reads_completed == count
    assert sorted(c.user_data for c in done) == [1000 + i for i in range(count)]
    assert all(c.result == block for c in done)
    assert memory.tobytes() == data[: count * block]


def test_reading_past_end_of_file_gives_zero(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    memory = np.zeros(4096, np.uint8)
    reader.prep_read(add(reader, path), memory.ctypes.data, 4096, len(data) + 10_000, 1)
    assert wait_all(reader, 1) == [ReadCompletion(1, 0)]


def test_read_across_end_of_file_is_short_and_reported_as_is(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    memory = np.full(4096, 0xAA, np.uint8)
    reader.prep_read(add(reader, path), memory.ctypes.data, 4096, len(data) - 100, 1)
    assert wait_all(reader, 1) == [ReadCompletion(1, 100)]
    assert memory[:100].tobytes() == data[-100:] and (memory[100:] == 0xAA).all()
    assert reader.stats().short_reads == 1


def test_read_of_a_write_only_file_completes_with_ebadf(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    memory = np.zeros(4096, np.uint8)
    reader.prep_read(add(reader, data_file[0], os.O_WRONLY), memory.ctypes.data, 4096, 0, 9)
    assert wait_all(reader, 1) == [ReadCompletion(9, -errno.EBADF)]
    assert reader.stats().failed_completions == 1


def test_adding_a_closed_fd_raises(reader: Reader) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(IngestError):
        reader.add_file(read_end)


def test_pipe_reads_at_offset_minus_one_take_the_next_bytes(reader: Reader) -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"hello, pipe")
        handle = reader.add_file(read_end)
        memory = np.zeros(64, np.uint8)
        reader.prep_read(handle, memory.ctypes.data, 5, -1, 1)
        assert wait_all(reader, 1) == [ReadCompletion(1, 5)]
        reader.prep_read(handle, memory.ctypes.data + 5, 64 - 5, -1, 2)
        assert wait_all(reader, 1) == [ReadCompletion(2, 6)]  # a pipe read returns what is there
        assert memory[:11].tobytes() == b"hello, pipe"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_socket_reads_at_offset_minus_one(reader: Reader) -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"over a socket")
        memory = np.zeros(64, np.uint8)
        reader.prep_read(reader.add_file(left.fileno()), memory.ctypes.data, 64, -1, 3)
        assert wait_all(reader, 1) == [ReadCompletion(3, 13)]
        assert memory[:13].tobytes() == b"over a socket"


def test_wait_with_nothing_in_flight_returns_empty_at_once(reader: Reader) -> None:
    start = time.monotonic()
    assert reader.wait(1, timeout=0.5) == []
    assert reader.wait(4) == []  # minimum is capped at the reads outstanding: never a hang
    assert time.monotonic() - start < 0.1


def test_wait_never_blocks_past_its_timeout(reader: Reader) -> None:
    read_end, write_end = os.pipe()
    try:
        memory = np.zeros(16, np.uint8)
        reader.prep_read(reader.add_file(read_end), memory.ctypes.data, 16, -1, 1)
        start = time.monotonic()
        assert reader.wait(1, timeout=0.1) == []
        assert 0.09 <= time.monotonic() - start < 0.6
        assert reader.in_flight == 1
        os.write(write_end, b"x")
        assert wait_all(reader, 1) == [ReadCompletion(1, 1)]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_queueing_past_depth_raises(kind: str, data_file: tuple[Path, bytes]) -> None:
    memory = np.zeros(4096, np.uint8)
    with open_reader(kind, depth=4) as reader:
        handle = add(reader, data_file[0])
        for user_data in range(4):
            reader.prep_read(handle, memory.ctypes.data, 1024, 0, user_data)
        with pytest.raises(IngestError, match="depth"):
            reader.prep_read(handle, memory.ctypes.data, 1024, 0, 99)
        reader.submit()
        wait_all(reader, 4)
        reader.prep_read(handle, memory.ctypes.data, 1024, 0, 99)  # room again


def test_a_user_data_in_flight_twice_raises(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    memory = np.zeros(4096, np.uint8)
    handle = add(reader, data_file[0])
    reader.prep_read(handle, memory.ctypes.data, 1024, 0, 42)
    with pytest.raises(IngestError, match="user_data 42 is already in flight"):
        reader.prep_read(handle, memory.ctypes.data + 1024, 1024, 1024, 42)
    reader.submit()
    with pytest.raises(IngestError, match="already in flight"):
        reader.prep_read(handle, memory.ctypes.data + 1024, 1024, 1024, 42)
    assert wait_all(reader, 1) == [ReadCompletion(42, 1024)]
    reader.prep_read(handle, memory.ctypes.data, 1024, 0, 42)  # completed: the tag is free again
    assert wait_all(reader, 1) == [ReadCompletion(42, 1024)]


def test_removed_file_handle_is_refused_and_its_slot_reused(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    memory = np.zeros(4096, np.uint8)
    first, second = add(reader, path), add(reader, path)
    reader.prep_read(first, memory.ctypes.data, 100, 0, 1)
    with pytest.raises(IngestError, match="reads in flight"):
        reader.remove_file(first)
    wait_all(reader, 1)
    reader.remove_file(first)
    with pytest.raises(IngestError, match="not open"):
        reader.prep_read(first, memory.ctypes.data, 100, 0, 2)
    with pytest.raises(IngestError, match="not open"):
        reader.remove_file(first)
    assert add(reader, path) == first  # the lowest free slot comes back
    reader.prep_read(second, memory.ctypes.data, 100, 200, 3)
    assert wait_all(reader, 1) == [ReadCompletion(3, 100)]
    assert memory[:100].tobytes() == data[200:300]


def test_invalid_reads_are_refused_before_reaching_the_kernel(reader: Reader, data_file: tuple[Path, bytes]) -> None:
    memory = np.zeros(64, np.uint8)
    handle = add(reader, data_file[0])
    for address, length, offset, user_data in [(0, 10, 0, 1), (memory.ctypes.data, 10, -2, 1)]:
        with pytest.raises(IngestError, match="invalid"):
            reader.prep_read(handle, address, length, offset, user_data)
    with pytest.raises(IngestError, match="64 bits"):
        reader.prep_read(handle, memory.ctypes.data, 10, 0, -1)
    assert reader.in_flight == 0


def test_closed_reader_refuses_work(kind: str) -> None:
    reader = open_reader(kind, depth=2)
    reader.close()
    reader.close()
    with pytest.raises(IngestError, match="closed"):
        reader.add_file(0)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _io_uring_mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum("io_uring" in line for line in maps)


def test_fifty_open_close_cycles_leak_no_fd_and_no_mapping(kind: str, data_file: tuple[Path, bytes]) -> None:
    memory = np.zeros(4096, np.uint8)

    def cycle(i: int) -> None:
        with open_reader(kind, depth=4) as reader:
            reader.register_buffers([(memory.ctypes.data, memory.nbytes)])
            handle = add(reader, data_file[0])
            reader.prep_read(handle, memory.ctypes.data, 4096, i, i, buffer_index=0)
            wait_all(reader, 1)

    cycle(0)  # the first cycle may allocate lasting things (thread stacks, caches)
    fds, maps = _fd_count(), _io_uring_mappings()
    for i in range(50):
        cycle(i)
    assert (_fd_count(), _io_uring_mappings()) == (fds, maps)


def test_closing_with_a_read_stuck_on_a_pipe_returns(kind: str) -> None:
    read_end, write_end = os.pipe()
    memory = np.zeros(16, np.uint8)
    reader = open_reader(kind, depth=2)
    try:
        reader.prep_read(reader.add_file(read_end), memory.ctypes.data, 16, -1, 1)
        reader.submit()
        start = time.monotonic()
        reader.close(timeout=0.1)  # type: ignore[call-arg]
        assert time.monotonic() - start < 2.0
    finally:
        os.close(write_end)  # lets a preadv worker still blocked on the pipe finish with EOF
        os.close(read_end)


@pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")
def test_sqpoll_reader_reads_a_file(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    try:
        reader = open_reader("io_uring", depth=8, sqpoll=True, sq_thread_idle_ms=1)
    except IngestError as exc:
        pytest.skip(f"SQPOLL unavailable: {exc.one_line()}")
    memory = np.zeros(len(data), np.uint8)
    with reader:
        handle = add(reader, path)
        for round_ in range(3):
            time.sleep(0.01)  # long enough for the SQ thread to go to sleep between rounds
            reader.prep_read(handle, memory.ctypes.data, len(data), 0, round_)
            assert reader.submit() == 1
            assert wait_all(reader, 1) == [ReadCompletion(round_, len(data))]
    assert memory.tobytes() == data


def test_auto_picks_io_uring_where_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VYRE_DISABLE_IO_URING", raising=False)
    with open_reader("auto", depth=2) as reader:
        expected = IoUringReader if IO_URING else PreadvReader
        assert isinstance(reader, expected)
        assert (reader.fallback_reason is None) == IO_URING


def test_disabling_io_uring_by_env_makes_auto_fall_back_and_io_uring_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VYRE_DISABLE_IO_URING", "1")
    with open_reader("auto", depth=2) as reader:
        assert reader.name == "preadv"
        assert reader.fallback_reason is not None and "VYRE_DISABLE_IO_URING" in reader.fallback_reason
    with pytest.raises(IngestError, match="VYRE_DISABLE_IO_URING") as caught:
        open_reader("io_uring")
    assert "preadv" in caught.value.fix


_NO_FREE_FD_CHILD = """
import errno, os, resource
from vyre_runtime.errors import IngestError
from vyre_runtime.ingest import fallback, uring  # imported now: no fd is left to open them later
from vyre_runtime.ingest.reader import open_reader
lowest_free = os.open("/dev/null", os.O_RDONLY)
os.close(lowest_free)
resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    uring.Ring(2)
except IngestError as exc:
    print("setup", errno.errorcode[exc.errno], "|", exc.fix)
with open_reader("auto", depth=2) as reader:
    print("auto", reader.name, "|", reader.fallback_reason)
try:
    open_reader("io_uring", depth=2)
except IngestError as exc:
    print("io_uring refused |", exc.message)
"""


@pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")
def test_auto_falls_back_to_preadv_with_the_reason_when_ring_setup_fails() -> None:
    """No fd left under RLIMIT_NOFILE: io_uring_setup fails with EMFILE, and the readers say so."""
    child = subprocess.run(
        [sys.executable, "-c", _NO_FREE_FD_CHILD],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
            ),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = child.stdout.splitlines()
    assert len(lines) == 3, child.stdout + child.stderr
    assert lines[0].startswith("setup EMFILE |") and "RLIMIT_NOFILE" in lines[0]
    assert lines[1].startswith("auto preadv |") and "EMFILE" in lines[1]
    assert lines[2].startswith("io_uring refused |") and "EMFILE" in lines[2]


def test_unknown_reader_kind_and_bad_depth_raise() -> None:
    with pytest.raises(IngestError, match="unknown reader"):
        open_reader("aio")
    with pytest.raises(IngestError, match="depth"):
        open_reader("preadv", depth=0)


# ---- io-wq worker caps and ring set-up flags (the io_uring reader's defaults) ---------------------


def _in_a_fresh_thread(work):  # io-wq caps belong to the thread: keep the test's own thread clear
    import threading

    outcome: list = []

    def run() -> None:
        try:
            outcome.append(("ok", work()))
        except BaseException as error:  # handed back to the test
            outcome.append(("error", error))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    [(status, value)] = outcome
    if status == "error":
        raise value
    return value


def test_default_iowq_workers_leave_two_cpus_to_the_stream() -> None:
    from vyre_runtime.ingest.reader import default_iowq_workers

    assert [default_iowq_workers(n) for n in (1, 2, 3, 4, 16, 64)] == [1, 2, 2, 2, 14, 62]


@pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")
def test_io_uring_reader_caps_its_threads_io_wq_workers_by_default() -> None:
    from vyre_runtime.ingest import reader as readers

    def open_and_read_caps() -> tuple[int, tuple[int, int]]:
        with IoUringReader(8) as opened:
            return opened.iowq_workers, opened.ring.register_iowq_max_workers(0, 0)

    cap = readers.DEFAULT_IOWQ_WORKERS
    assert _in_a_fresh_thread(open_and_read_caps) == (cap, (cap, cap))


@pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")
def test_kernel_caps_leave_the_io_wq_caps_alone_and_a_bad_cap_is_refused() -> None:
    from vyre_runtime.ingest.reader import KERNEL_CAPS
    from vyre_runtime.ingest.uring import Ring

    def caps_before_and_after() -> tuple[tuple[int, int], int, tuple[int, int]]:
        with Ring(8) as ring:
            before = ring.register_iowq_max_workers(0, 0)
        with IoUringReader(8, iowq_workers=KERNEL_CAPS) as opened:
            return before, opened.iowq_workers, opened.ring.register_iowq_max_workers(0, 0)

    before, cap, after = _in_a_fresh_thread(caps_before_and_after)
    assert cap == KERNEL_CAPS and after == before
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(IngestError, match="iowq_workers must be"):
        IoUringReader(8, iowq_workers=-3)
    assert len(os.listdir("/proc/self/fd")) == fds  # the ring opened before the check is closed


@pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")
def test_a_reader_on_a_single_issuer_deferred_ring_reads_a_file(data_file: tuple[Path, bytes]) -> None:
    from vyre_runtime.ingest.uring_abi import SetupFlag

    path, data = data_file
    try:
        opened = open_reader("io_uring", depth=8, setup_flags=SetupFlag.SINGLE_ISSUER | SetupFlag.DEFER_TASKRUN)
    except IngestError as exc:
        pytest.skip(f"this kernel lacks DEFER_TASKRUN: {exc.one_line()}")
    memory = np.zeros(len(data), np.uint8)
    part = 64 * 1024
    with opened:
        opened.register_buffers([(memory.ctypes.data, memory.nbytes)])
        handle = add(opened, path)
        pieces = range(0, len(data), part)
        for index, start in enumerate(pieces):
            opened.prep_read(handle, memory.ctypes.data + start, min(part, len(data) - start), start, index, 0)
        assert sorted(wait_all(opened, len(pieces))) == [
            ReadCompletion(i, min(part, len(data) - start)) for i, start in enumerate(pieces)
        ]
    assert memory.tobytes() == data


def test_preadv_reader_runs_one_worker_per_cpu_by_default() -> None:
    from vyre_runtime.ingest.reader import usable_cpus

    with PreadvReader(depth=256) as opened:
        assert len(opened._workers) == usable_cpus()
    with PreadvReader(depth=1) as opened:
        assert len(opened._workers) == 1


@pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")
def test_a_kernel_without_io_wq_caps_keeps_the_default_reader_but_refuses_an_asked_cap(monkeypatch) -> None:
    import errno as errnos

    from vyre_runtime.ingest import uring

    def no_caps(self, bound: int = 0, unbound: int = 0) -> tuple[int, int]:  # what a 5.10 kernel answers
        uring._raise_errno("register_iowq_max_workers", errnos.EINVAL)
        return (0, 0)

    monkeypatch.setattr(uring.Ring, "register_iowq_max_workers", no_caps)
    with open_reader("auto", depth=4) as opened:
        assert opened.name == "io_uring" and opened.iowq_workers == 0
    with pytest.raises(IngestError, match="register_iowq_max_workers failed: EINVAL") as raised:
        IoUringReader(4, iowq_workers=8)
    assert "5.15" in raised.value.fix


@pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")
def test_io_wq_caps_are_put_back_when_the_last_capping_reader_closes() -> None:
    from vyre_runtime.ingest.uring import Ring

    def caps_now() -> tuple[int, int]:
        with Ring(8) as ring:
            return ring.register_iowq_max_workers(0, 0)  # 0, 0: reads the caps, changes none

    def caps_along_the_way() -> list[tuple[int, int]]:
        seen = [caps_now()]
        first = IoUringReader(8, iowq_workers=3)
        second = IoUringReader(8, iowq_workers=3)
        seen.append(caps_now())
        first.close()  # not the last: the other still reads under the cap
        seen.append(caps_now())
        second.close()
        seen.append(caps_now())
        return seen

    before, both_open, one_open, none_open = _in_a_fresh_thread(caps_along_the_way)
    if 0 in before:
        pytest.skip(f"the kernel reported no io-wq for a fresh thread: {before}")
    assert (both_open, one_open, none_open) == ((3, 3), (3, 3), before)
