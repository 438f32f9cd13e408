"""The stream pipeline over real inputs: every byte of every file is processed exactly once.

Files of awkward sizes (empty, 1 byte, around the chunk size, ten times the arena), pipes and
stdin, O_DIRECT, both readers, several programs in one pass; and the failures a real disk and a
real user produce (missing, unreadable, truncated or removed while read, EIO, short reads): the
failing input reports its error, the others go on, and no result is lost or duplicated.
Each result is checked against plain Python (np.bincount, bytes.count, a find loop).

Faults that cannot be provoked on demand (EIO, short reads) are injected by
``FaultInjectingReader``: a real reader whose completions are rewritten after the real read
finished, so memory is never handed back while the kernel still writes to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from host_programs import TRAP_ON_SECOND_CHUNK
from references import literal_offsets

from vyre_runtime.cli import load_program_file
from vyre_runtime.errors import DispatchError, InputError
from vyre_runtime.ingest.arena import PAGE
from vyre_runtime.ingest.reader import ReadCompletion, Reader, open_reader
from vyre_runtime.ingest.results import FileResult
from vyre_runtime.ingest.sources import Source
from vyre_runtime.ingest.stream import StreamOptions, StreamPipeline, StreamStats
from vyre_runtime.ingest.uring import io_uring_status
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.vir0 import assemble_program
from vyre_runtime.vir0.program import Program

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
IO_URING, WHY_NOT = io_uring_status()
READERS = [
    pytest.param("io_uring", marks=pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable: {WHY_NOT}")),
    "preadv",
]
NEEDLE = b"vyre"
OVERLAP = 64  # literal_search.vasm's .overlap: the largest of the three programs
CHUNK = 5003  # owned bytes per chunk: not a multiple of the page
SLOTS = 3  # arena chunk slots: the big files are ten times the arena
BIG = 10 * SLOTS * CHUNK + 777
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, BIG]


@pytest.fixture(scope="module")
def megakernel() -> Iterator[Megakernel]:
    with Megakernel(backend="cpu", workers=2) as mk:
        yield mk


@pytest.fixture(scope="module")
def programs() -> list[Program]:
    """Histogram (a byte read twice or missed changes it), line count, literal search (overlap)."""
    return [
        load_program_file(str(EXAMPLES / name)) for name in ("histogram.vasm", "line_count.vasm", "literal_search.vasm")
    ]


def options(**changes: object) -> StreamOptions:
    """Small chunks, few slots, small reads and a shallow queue: many chunks, many reads, a backlog."""
    fields = {"chunk_size": CHUNK, "chunks": SLOTS, "read_size": 1500, "queue_depth": 8, **changes}
    return StreamOptions(**fields)  # type: ignore[arg-type]


def data_with_needles(seed: int, size: int, chunk_size: int = CHUNK) -> bytes:
    """Random bytes (every byte value) with needles across every chunk edge, at both ends and
    overlapping each other ("vyrevyre")."""
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(size))
    if size < len(NEEDLE):
        return bytes(data)
    spots = [0, size - len(NEEDLE)]
    spots += [edge - (k % (len(NEEDLE) + 1)) for k, edge in enumerate(range(chunk_size, size, chunk_size))]
    spots += [rng.randrange(size - len(NEEDLE) + 1) for _ in range(size // 3000)]
    for spot in spots:
        spot = min(spot, size - len(NEEDLE))
        data[spot : spot + len(NEEDLE)] = NEEDLE
    if size >= 3 * chunk_size:
        data[chunk_size + 100 : chunk_size + 108] = NEEDLE * 2
    assert len(data) == size
    return bytes(data)


def check_exact(result: FileResult, data: bytes) -> None:
    """The three programs' results equal the plain-Python references over ``data``."""
    assert result.error is None, result.error
    assert result.size == len(data)
    histogram, lines, search = result.programs
    assert not result.faults
    np.testing.assert_array_equal(
        histogram.outputs["histogram"], np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    )
    assert int(lines.outputs["lines"][0]) == data.count(b"\n")
    expected = literal_offsets(data, NEEDLE)
    offsets = [int(lo) | int(hi) << 32 for lo, hi in search.records]
    assert sorted(offsets) == expected  # each match exactly once, spanning an edge or not
    assert int(search.outputs["matches"][0]) == len(expected)
    assert search.dropped == 0


def write_files(directory: Path, sizes: Sequence[int], seed: int = 0) -> tuple[list[str], list[bytes]]:
    paths, contents = [], []
    for i, size in enumerate(sizes):
        data = data_with_needles(seed + i, size)
        path = directory / f"input{i}-{size}.bin"
        path.write_bytes(data)
        paths.append(str(path))
        contents.append(data)
    return paths, contents


def run(
    programs: Sequence[Program],
    megakernel: Megakernel,
    paths: Sequence[str],
    stream_options: StreamOptions,
    progress: Callable[[int, int], None] | None = None,
    reader_factory: Callable[[StreamOptions], Reader] | None = None,
) -> tuple[list[FileResult], StreamStats]:
    with StreamPipeline(programs, megakernel, stream_options, progress, reader_factory) as pipeline:
        results = pipeline.run(paths)
    assert [r.path for r in results] == list(paths)  # input order, whatever finished first
    return results, pipeline.stats


def supports_o_direct(directory: Path) -> bool:
    probe = directory / ".o_direct_probe"
    probe.write_bytes(bytes(PAGE))
    try:
        os.close(os.open(probe, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        return False
    finally:
        probe.unlink()


@pytest.fixture
def direct_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory whose file system takes O_DIRECT: tmp_path, else one on /var/tmp or the repo's build/."""
    if supports_o_direct(tmp_path):
        yield tmp_path
        return
    for parent in (Path("/var/tmp"), REPO / "build"):
        try:
            parent.mkdir(exist_ok=True)
            candidate = Path(tempfile.mkdtemp(prefix="vyre-o-direct-", dir=parent))
        except OSError:
            continue
        if supports_o_direct(candidate):
            yield candidate
            shutil.rmtree(candidate, ignore_errors=True)
            return
        shutil.rmtree(candidate, ignore_errors=True)
    pytest.skip(f"no file system here takes O_DIRECT (tried {tmp_path}, /var/tmp, {REPO / 'build'})")


def directory_for(direct: bool, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where a test's files go: on a file system that takes O_DIRECT when the test asks for it."""
    return request.getfixturevalue("direct_dir") if direct else tmp_path


# ---------------------------------------------------------------------------- fault injection


Rewrite = Callable[[str, int, int, int], int]  # (path, offset or -1, length asked, real result) -> reported


class FaultInjectingReader:
    """FAULT INJECTION for tests: a real reader (open_reader) whose completions are rewritten.

    Every read really runs to completion first; only the result the pipeline is told changes
    (``rewrite``), so an injected EIO or short read never leaves a read writing into a chunk the
    pipeline already gave back. Also records what the pipeline asked for (``reads``: path,
    O_DIRECT or not, offset, address, length) so tests can check the shape of the reads."""

    def __init__(self, inner: Reader, rewrite: Rewrite | None = None) -> None:
        self.inner = inner
        self.rewrite = rewrite
        self.name, self.depth, self.fallback_reason = inner.name, inner.depth, inner.fallback_reason
        self.paths: dict[int, str] = {}  # file handle -> path
        self.direct: dict[int, bool] = {}  # file handle -> opened with O_DIRECT
        self.reads: list[tuple[str, bool, int, int, int]] = []
        self.rewritten = 0
        self._asked: dict[int, tuple[int, int, int]] = {}  # user_data -> (handle, offset, length)

    @property
    def host_bytes_copied(self) -> int:
        return self.inner.host_bytes_copied

    @property
    def in_flight(self) -> int:
        return self.inner.in_flight

    def register_buffers(self, buffers: Sequence[tuple[int, int]]) -> None:
        self.inner.register_buffers(buffers)

    def add_file(self, fd: int) -> int:
        handle = self.inner.add_file(fd)
        self.paths[handle] = os.readlink(f"/proc/self/fd/{fd}")
        self.direct[handle] = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        return handle

    def remove_file(self, handle: int) -> None:
        self.inner.remove_file(handle)

    def prep_read(
        self, file: int, address: int, length: int, offset: int, user_data: int, buffer_index: int = -1
    ) -> None:
        self.inner.prep_read(file, address, length, offset, user_data, buffer_index)
        self._asked[user_data] = (file, offset, length)
        self.reads.append((self.paths[file], self.direct[file], offset, address, length))

    def submit(self) -> int:
        return self.inner.submit()

    def wait(self, minimum: int = 1, timeout: float | None = None) -> list[ReadCompletion]:
        completions = []
        for user_data, result in self.inner.wait(minimum, timeout):
            handle, offset, length = self._asked.pop(user_data)
            if self.rewrite is not None:
                told = self.rewrite(self.paths[handle], offset, length, result)
                self.rewritten += told != result
                result = told
            completions.append(ReadCompletion(user_data, result))
        return completions

    def close(self) -> None:
        self.inner.close()


def injecting(rewrite: Rewrite | None, made: list[FaultInjectingReader]) -> Callable[[StreamOptions], Reader]:
    def factory(stream_options: StreamOptions) -> Reader:
        reader = FaultInjectingReader(open_reader(stream_options.reader, stream_options.queue_depth), rewrite)
        made.append(reader)
        return reader

    return factory


# ---------------------------------------------------------------------------- exactly once


@pytest.mark.parametrize("fuse", [False, True], ids=["separate", "fused"])
@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "o_direct"])
@pytest.mark.parametrize("reader", READERS)
def test_every_byte_of_every_file_is_processed_exactly_once(
    programs, megakernel, request, tmp_path, reader, direct, fuse
):
    paths, contents = write_files(directory_for(direct, request, tmp_path), SIZES, seed=10)
    made: list[FaultInjectingReader] = []
    stream_options = options(reader=reader, direct=direct, read_size=4096 if direct else 1500, fuse=fuse)
    results, stats = run(programs, megakernel, paths, stream_options, reader_factory=injecting(None, made))
    for result, data in zip(results, contents):
        check_exact(result, data)
        assert result.note == ""  # O_DIRECT was taken where asked (direct_dir takes it)
        assert result.chunks == -(-len(data) // CHUNK)
    assert stats.reader == reader and stats.fallback_reason is None
    assert stats.host_bytes_copied == 0  # regular files: reads land in the arena, nothing bounced
    assert stats.bytes_read >= sum(SIZES) and stats.bytes_processed == sum(SIZES)
    assert stats.runs == (1 if fuse else 3) * sum(r.chunks for r in results)  # fused: one slot per chunk
    [recorder] = made
    assert all(is_direct == direct for _, is_direct, *_ in recorder.reads)
    if direct:  # aligned chunks: every O_DIRECT read starts, ends and lands on page boundaries
        assert all(
            offset % PAGE == 0 and address % PAGE == 0 and length % PAGE == 0
            for *_, offset, address, length in recorder.reads
        )
    big_reads = [r for r in recorder.reads if r[0] == paths[-1]]
    assert len(big_reads) > 2 * -(-BIG // CHUNK)  # read_size < chunk: several reads per chunk


@pytest.mark.parametrize("size", SIZES)
def test_a_file_alone_of_each_awkward_size_is_exact(programs, megakernel, tmp_path, size):
    paths, contents = write_files(tmp_path, [size], seed=size)
    [result], stats = run(programs, megakernel, paths, options())
    check_exact(result, contents[0])
    assert stats.bytes_read >= size and stats.bytes_processed == size


@pytest.mark.parametrize("queue_depth", [1, 8])
def test_several_files_come_back_in_input_order_each_exact(programs, megakernel, tmp_path, queue_depth):
    sizes = [BIG, 17, 0, 3 * CHUNK + 5, CHUNK, 1, 2 * CHUNK - 3]
    paths, contents = write_files(tmp_path, sizes, seed=20)
    paths.append(paths[0])  # the same file twice: two inputs, two full results
    contents.append(contents[0])
    results, _ = run(programs, megakernel, paths, options(chunks=2, read_size=4096, queue_depth=queue_depth))
    for result, data in zip(results, contents):
        check_exact(result, data)


@pytest.mark.parametrize("reader", READERS)
def test_two_rings_share_the_inputs_and_lose_nothing(programs, megakernel, tmp_path, reader):
    paths, contents = write_files(tmp_path, [BIG, CHUNK + 1, 0, 2 * CHUNK, 1, BIG // 2], seed=30)
    fifo = tmp_path / "stream.fifo"  # a pipe on the second ring, among files on both
    os.mkfifo(fifo)
    contents.insert(3, data_with_needles(31, 3 * CHUNK + 10))
    paths.insert(3, str(fifo))
    writer = feed_fifo(fifo, contents[3], piece=2000)
    results, stats = run(programs, megakernel, paths, options(reader=reader, rings=2, chunks=4))
    writer.join(10)
    for result, data in zip(results, contents):
        check_exact(result, data)
    assert stats.reader == reader


@pytest.fixture
def no_o_direct_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on ramfs, which has no O_DIRECT (tmpfs takes it since Linux 6.6): needs root."""
    mount_point = tmp_path / "ramfs"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a ramfs (a file system without O_DIRECT) needs root and mount(8)")
    mounted = subprocess.run(["mount", "-t", "ramfs", "vyre-test", str(mount_point)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a ramfs here: {mounted.stderr.decode().strip()}")
    try:
        if supports_o_direct(mount_point):
            pytest.skip("this ramfs takes O_DIRECT")
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def test_o_direct_where_the_file_system_refuses_it_reads_buffered_and_says_so(programs, megakernel, no_o_direct_dir):
    paths, contents = write_files(no_o_direct_dir, [BIG, 1], seed=35)
    made: list[FaultInjectingReader] = []
    results, _ = run(
        programs, megakernel, paths, options(direct=True, read_size=4096), reader_factory=injecting(None, made)
    )
    for result, data in zip(results, contents):
        check_exact(result, data)
        assert "O_DIRECT is not supported" in result.note
    assert not any(is_direct for _, is_direct, *_ in made[0].reads)


def test_without_io_uring_the_preadv_fallback_is_used_and_exact(programs, megakernel, tmp_path, monkeypatch):
    monkeypatch.setenv("VYRE_DISABLE_IO_URING", "1")
    paths, contents = write_files(tmp_path, [BIG, 0, CHUNK + 1], seed=40)
    results, stats = run(programs, megakernel, paths, options(reader="auto"))
    for result, data in zip(results, contents):
        check_exact(result, data)
    assert stats.reader == "preadv"
    assert stats.fallback_reason is not None and "VYRE_DISABLE_IO_URING" in stats.fallback_reason


# ---------------------------------------------------------------------------- pipes


def carried_bytes(size: int, chunk_size: int, overlap: int) -> int:
    """Bytes a sequential input copies from one chunk slot to the next: chunk i >= 1 (there is
    one wherever the stream has bytes past i * chunk) starts with its predecessor's bytes
    [i * chunk - overlap, i * chunk + overlap), clipped to the stream."""
    return sum(
        min(size, index * chunk_size + overlap) - max(0, index * chunk_size - overlap)
        for index in range(1, -(-size // chunk_size))
    )


def feed_fifo(path: Path, data: bytes, piece: int) -> threading.Thread:
    """A writer thread: opens the FIFO (blocking until the pipeline opens it) and writes in pieces."""

    def write() -> None:
        with open(path, "wb", buffering=0) as fifo, contextlib.suppress(BrokenPipeError):  # the reader failed
            for start in range(0, len(data), piece):
                fifo.write(data[start : start + piece])

    thread = threading.Thread(target=write, daemon=True)  # daemon: a failed run must not hang the suite
    thread.start()
    return thread


@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "o_direct_asked"])
@pytest.mark.parametrize("reader", READERS)
def test_a_fifo_larger_than_the_arena_is_exact_with_matches_across_chunk_edges(
    programs, megakernel, tmp_path, reader, direct
):
    fifo = tmp_path / "stream.fifo"
    os.mkfifo(fifo)
    data = data_with_needles(50, BIG)
    paths, contents = write_files(tmp_path, [2 * CHUNK + 9], seed=51)
    writer = feed_fifo(fifo, data, piece=3001)
    stream_options = options(reader=reader, read_size=4096, direct=direct)
    results, stats = run(programs, megakernel, [str(fifo), *paths], stream_options)
    writer.join(10)
    assert not writer.is_alive()
    check_exact(results[0], data)
    check_exact(results[1], contents[0])
    assert results[0].chunks == -(-BIG // CHUNK)
    # the carried overlaps are the only bytes the host copied (the regular file adds none)
    assert stats.host_bytes_copied == carried_bytes(BIG, CHUNK, OVERLAP) > 0


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK, CHUNK + 1, CHUNK + OVERLAP - 1, CHUNK + OVERLAP, CHUNK + OVERLAP + 1, 3 * CHUNK - OVERLAP]
)
def test_a_fifo_ending_near_a_chunk_edge_is_exact(programs, megakernel, tmp_path, size):
    fifo = tmp_path / "stream.fifo"
    os.mkfifo(fifo)
    data = data_with_needles(size, size)
    writer = feed_fifo(fifo, data, piece=1000)
    [result], stats = run(programs, megakernel, [str(fifo)], options())
    writer.join(10)
    check_exact(result, data)
    assert stats.host_bytes_copied == carried_bytes(size, CHUNK, OVERLAP)


@pytest.mark.parametrize("fuse", [False, True], ids=["separate", "fused"])
def test_chunks_smaller_than_the_overlap_are_exact_from_a_file_and_a_pipe(programs, megakernel, tmp_path, fuse):
    tiny = 10  # every region reaches over several neighbours: the carry holds more than one chunk
    data = data_with_needles(140, 700, chunk_size=tiny)
    (tmp_path / "tiny.bin").write_bytes(data)
    fifo = tmp_path / "tiny.fifo"
    os.mkfifo(fifo)
    writer = feed_fifo(fifo, data, piece=97)
    stream_options = options(chunk_size=tiny, read_size=33, fuse=fuse)
    results, stats = run(programs, megakernel, [str(tmp_path / "tiny.bin"), str(fifo)], stream_options)
    writer.join(10)
    for result in results:
        check_exact(result, data)
        assert result.chunks == len(data) // tiny
    assert stats.host_bytes_copied == carried_bytes(len(data), tiny, OVERLAP)


@pytest.mark.parametrize("stdin_kind", ["pipe", "regular_file"])
def test_stdin_through_the_cli_is_exact(tmp_path, stdin_kind):
    data = data_with_needles(60, 4 * CHUNK + 11)
    stdin_file = tmp_path / "stdin.bin"
    stdin_file.write_bytes(data)
    with open(stdin_file, "rb") as redirected:
        completed = subprocess.run(
            [
                sys.executable, "-m", "vyre_runtime.cli", "run",
                str(EXAMPLES / "line_count.vasm"), str(EXAMPLES / "literal_search.vasm"), "-",
                "--json", "--backend", "cpu", "--chunk-size", str(CHUNK), "--read-size", "1000", "--chunks", "2",
            ],
            input=data if stdin_kind == "pipe" else None,
            stdin=redirected if stdin_kind == "regular_file" else None,
            capture_output=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                "VYRE_CACHE_DIR": str(tmp_path / "cache"),
            },
            timeout=60,
            check=False,
        )  # fmt: skip
    assert completed.returncode == 0, completed.stderr.decode()
    document = json.loads(completed.stdout)
    [file] = document["files"]
    assert file["path"] == "-" and file["error"] is None and file["size"] == len(data)
    lines, search = file["results"]
    assert lines["outputs"]["lines"] == [data.count(b"\n")]
    assert sorted(lo | hi << 32 for lo, hi in search["records"]) == literal_offsets(data, NEEDLE)
    # stdin is read in order from where the caller left it, file or pipe: the overlaps are carried
    assert document["stats"]["host_bytes_copied"] == carried_bytes(len(data), CHUNK, OVERLAP)


def test_stdin_that_is_a_file_is_read_from_where_the_caller_left_it(tmp_path):
    data = b"skip me\n" * 10 + b"count\n" * 3
    stdin_file = tmp_path / "stdin.bin"
    stdin_file.write_bytes(data)
    with open(stdin_file, "rb") as redirected:
        redirected.seek(80)  # the caller already consumed the first 80 bytes (10 lines)
        completed = subprocess.run(
            [sys.executable, "-m", "vyre_runtime.cli", "run", str(EXAMPLES / "line_count.vasm"), "-", "--json"],
            stdin=redirected,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
            timeout=60,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr.decode()
    [file] = json.loads(completed.stdout)["files"]
    assert file["size"] == len(data) - 80 and file["results"][0]["outputs"]["lines"] == [3]


# ---------------------------------------------------------------------------- failing inputs


def test_a_missing_file_reports_cannot_open_and_the_others_are_exact(programs, megakernel, tmp_path):
    paths, contents = write_files(tmp_path, [BIG, CHUNK + 1], seed=70)
    missing = str(tmp_path / "missing.bin")
    results, _ = run(programs, megakernel, [paths[0], missing, paths[1]], options())
    check_exact(results[0], contents[0])
    check_exact(results[2], contents[1])
    error = results[1].error
    assert isinstance(error, InputError)
    assert "cannot open" in str(error) and "No such file" in str(error) and error.fix


def test_a_directory_given_as_input_reports_it_and_the_others_are_exact(programs, megakernel, tmp_path):
    paths, contents = write_files(tmp_path, [CHUNK + 1], seed=75)
    (tmp_path / "folder").mkdir()
    results, _ = run(programs, megakernel, [str(tmp_path / "folder"), paths[0]], options())
    assert isinstance(results[0].error, InputError) and "is a directory" in str(results[0].error)
    check_exact(results[1], contents[0])


@contextlib.contextmanager
def file_system_identity(uid: int, gid: int) -> Iterator[None]:
    """Open files as ``uid``/``gid`` on this thread only: Linux's setfsuid/setfsgid are
    per-thread, and moving the fs uid off 0 drops CAP_DAC_OVERRIDE from the thread's effective
    set, so root's opens are checked like that user's. (A child process that drops to nobody
    would be simpler, but nobody usually cannot run this venv's interpreter under /root.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    old_gid, old_uid = libc.setfsgid(gid), libc.setfsuid(uid)
    try:
        if libc.setfsuid(-1) != uid or libc.setfsgid(-1) != gid:  # -1 changes nothing, returns the current
            pytest.skip("setfsuid/setfsgid did not take effect here")
        yield
    finally:
        libc.setfsuid(old_uid)
        libc.setfsgid(old_gid)


def test_a_file_without_read_permission_reports_it_and_the_others_are_exact(programs, megakernel):
    """As root every open succeeds, so root opens the inputs as nobody (65534)."""
    directory = Path(tempfile.mkdtemp(prefix="vyre-eacces-"))  # not tmp_path: its parents are 0700
    try:
        directory.chmod(0o755)
        good, secret = directory / "good.bin", directory / "secret.bin"
        data = data_with_needles(130, 3 * CHUNK + 7)
        good.write_bytes(data)
        secret.write_bytes(data)
        good.chmod(0o644)
        secret.chmod(0o000)
        inputs = [str(good), str(secret), str(good)]
        identity = file_system_identity(65534, 65534) if os.geteuid() == 0 else contextlib.nullcontext()
        with identity:
            try:
                os.close(os.open(secret, os.O_RDONLY))
                pytest.skip("a mode-000 file is readable here even as nobody (a capability or LSM allows it)")
            except PermissionError:
                pass
            results, _ = run(programs, megakernel, inputs, options())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    check_exact(results[0], data)
    check_exact(results[2], data)
    error = results[1].error
    assert isinstance(error, InputError)
    assert "cannot open" in str(error) and "Permission denied" in str(error) and "permission" in error.fix


def test_a_file_truncated_mid_stream_reports_that_it_shrank_and_the_others_are_exact(programs, megakernel, tmp_path):
    paths, contents = write_files(tmp_path, [BIG, CHUNK + 1, BIG], seed=80)
    victim = paths[0]

    def truncate_after_first_chunk(done: int, total: int) -> None:
        if os.path.getsize(victim) == BIG:
            os.truncate(victim, CHUNK + CHUNK // 2)

    results, _ = run(programs, megakernel, paths, options(), progress=truncate_after_first_chunk)
    error = results[0].error
    assert isinstance(error, InputError) and "shrank" in str(error)
    assert 0 < results[0].chunks < -(-BIG // CHUNK)  # what completed before the error, no more
    check_exact(results[1], contents[1])
    check_exact(results[2], contents[2])


@pytest.mark.parametrize("reader", READERS)
def test_a_file_removed_while_open_is_still_read_in_full(programs, megakernel, tmp_path, reader):
    paths, contents = write_files(tmp_path, [BIG, CHUNK + 1], seed=90)
    victim = Path(paths[0])

    def unlink_after_first_chunk(done: int, total: int) -> None:
        victim.unlink(missing_ok=True)  # Linux keeps the inode while it is open

    results, _ = run(programs, megakernel, paths, options(reader=reader), progress=unlink_after_first_chunk)
    assert not victim.exists()
    check_exact(results[0], contents[0])
    check_exact(results[1], contents[1])


@pytest.mark.parametrize("reader", READERS)
def test_a_short_o_direct_read_of_a_removed_file_is_finished_from_that_same_file(
    programs, megakernel, direct_dir, reader
):
    """The unaligned rest of a short O_DIRECT read is read through a buffered descriptor: it must
    be the same file, not whatever the path names by then (here: nothing, then an impostor)."""
    paths, contents = write_files(direct_dir, [BIG, CHUNK + 1], seed=95)
    victim = Path(paths[0])

    def replace_after_first_chunk(done: int, total: int) -> None:
        if victim.exists() and victim.stat().st_size == BIG:
            victim.unlink()
            victim.write_bytes(bytes(BIG))  # an impostor under the old name

    completed = [0]

    def every_third_read_short(path: str, offset: int, length: int, result: int) -> int:
        completed[0] += 1
        return max(1, result // 2 - 7) if result > 1 and completed[0] % 3 == 0 else result

    made: list[FaultInjectingReader] = []
    factory = injecting(every_third_read_short, made)
    stream_options = options(reader=reader, direct=True, read_size=4096)
    results, _ = run(programs, megakernel, paths, stream_options, replace_after_first_chunk, factory)
    assert any(not is_direct for _, is_direct, *_ in made[0].reads)  # buffered rests happened
    check_exact(results[0], contents[0])
    check_exact(results[1], contents[1])


def test_a_short_o_direct_read_that_cannot_reopen_its_file_fails_only_that_file(
    programs, megakernel, direct_dir, monkeypatch
):
    def out_of_descriptors(self: Source) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(Source, "open_buffered", out_of_descriptors)
    paths, contents = write_files(direct_dir, [BIG, CHUNK + 1], seed=97)

    def first_read_of_the_big_file_short(path: str, offset: int, length: int, result: int) -> int:
        return 100 if path == paths[0] and offset == 0 else result

    factory = injecting(first_read_of_the_big_file_short, [])
    results, _ = run(programs, megakernel, paths, options(direct=True, read_size=4096), None, factory)
    error = results[0].error
    assert isinstance(error, InputError) and "Too many open files" in str(error)
    check_exact(results[1], contents[1])


@pytest.mark.parametrize("reader", READERS)
def test_an_injected_eio_fails_only_its_file_and_the_others_are_exact(programs, megakernel, tmp_path, reader):
    paths, contents = write_files(tmp_path, [BIG, BIG, CHUNK + 1], seed=100)
    failing = paths[1]
    bad = range(4 * CHUNK, 5 * CHUNK)

    def eio_in_one_range(path: str, offset: int, length: int, result: int) -> int:
        return -errno.EIO if path == failing and offset in bad else result

    made: list[FaultInjectingReader] = []
    results, _ = run(
        programs, megakernel, paths, options(reader=reader), reader_factory=injecting(eio_in_one_range, made)
    )
    assert made[0].rewritten >= 1
    error = results[1].error
    assert isinstance(error, InputError) and "Input/output error" in str(error) and "offset" in str(error)
    check_exact(results[0], contents[0])
    check_exact(results[2], contents[2])


@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "o_direct"])
@pytest.mark.parametrize("reader", READERS)
def test_injected_short_reads_are_completed_and_the_result_is_exact(
    programs, megakernel, request, tmp_path, reader, direct
):
    directory = directory_for(direct, request, tmp_path)
    paths, contents = write_files(directory, [BIG, 1, CHUNK - 1, 2 * CHUNK + 1], seed=110)
    completed = [0]

    def short_reads(path: str, offset: int, length: int, result: int) -> int:
        """Every other read arrives short (never 0: that would be EOF); the bytes really are
        there, so the pipeline must read the rest and end up exact."""
        completed[0] += 1
        if result < 2 or completed[0] % 2:
            return result
        return max(1, result // 3 - 5)  # not a page multiple: O_DIRECT's rest is unaligned

    made: list[FaultInjectingReader] = []
    stream_options = options(reader=reader, direct=direct, read_size=4096 if direct else 1500)
    results, stats = run(programs, megakernel, paths, stream_options, reader_factory=injecting(short_reads, made))
    assert made[0].rewritten > 10 and stats.short_reads > 10
    for result, data in zip(results, contents):
        check_exact(result, data)
    if direct:  # the unaligned rest of a short O_DIRECT read went through a buffered descriptor
        assert any(not is_direct for _, is_direct, *_ in made[0].reads)


@pytest.mark.parametrize("reader", READERS)
def test_an_injected_eio_on_a_pipe_fails_only_that_pipe(programs, megakernel, tmp_path, reader):
    fifo = tmp_path / "stream.fifo"
    os.mkfifo(fifo)
    paths, contents = write_files(tmp_path, [BIG, CHUNK + 1], seed=105)
    writer = feed_fifo(fifo, data_with_needles(106, BIG), piece=4000)
    sequential_reads = [0]

    def eio_on_the_fifth_pipe_read(path: str, offset: int, length: int, result: int) -> int:
        if path != str(fifo):
            return result
        sequential_reads[0] += 1
        return -errno.EIO if sequential_reads[0] == 5 else result

    made: list[FaultInjectingReader] = []
    factory = injecting(eio_on_the_fifth_pipe_read, made)
    results, _ = run(programs, megakernel, [paths[0], str(fifo), paths[1]], options(reader=reader), None, factory)
    writer.join(10)
    assert not writer.is_alive()  # the closed read end broke the writer's pipe: nothing hangs
    error = results[1].error
    assert isinstance(error, InputError) and "the stream" in str(error) and "Input/output error" in str(error)
    check_exact(results[0], contents[0])
    check_exact(results[2], contents[1])


@pytest.mark.parametrize("fuse", [False, True], ids=["separate", "fused"])
def test_a_program_fault_is_reported_for_its_chunk_and_everything_else_counts(programs, megakernel, tmp_path, fuse):
    trap = assemble_program(TRAP_ON_SECOND_CHUNK)
    paths, contents = write_files(tmp_path, [4 * CHUNK + 3, CHUNK], seed=120)
    with StreamPipeline([trap, *programs], megakernel, options(fuse=fuse)) as pipeline:
        results = pipeline.run(paths)
    first, second = results
    trapped = first.programs[0]
    [fault] = trapped.faults
    assert fault.chunk.index == 1 and fault.fault.code.name == "TRAP" and fault.fault.detail == 77
    assert int(trapped.outputs["seen"][0]) == 4 * (first.chunks - 1)  # 4 lanes x the other chunks
    first.programs = first.programs[1:]  # the other programs over the same chunks are exact
    check_exact(first, contents[0])
    assert int(second.programs[0].outputs["seen"][0]) == 4 and not second.programs[0].faults
    second.programs = second.programs[1:]
    check_exact(second, contents[1])


# ---------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"chunks": 0}, "chunks"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"read_size": 1000, "direct": True}, "read_size"),
        ({"lanes": 0}, "lanes"),
        ({"queue_depth": 0}, "queue_depth"),
    ],
)
def test_bad_options_raise_dispatch_error(programs, megakernel, changes, message):
    with pytest.raises(DispatchError, match=message):
        StreamPipeline(programs, megakernel, StreamOptions(**changes))


def test_fusion_is_off_by_default_on_the_cpu_and_takes_one_to_eight_programs(programs, megakernel):
    assert StreamPipeline(programs, megakernel, options()).options.fuse is False  # nothing to save on the CPU
    assert StreamPipeline(programs[:1], megakernel, options(fuse=True)).options.fuse  # a group of one
    with pytest.raises(DispatchError, match=r"fuse=True needs 1\.\.8 programs, not 9"):
        StreamPipeline(programs * 3, megakernel, options(fuse=True))


@pytest.mark.parametrize("fuse", [False, True], ids=["separate", "group-of-one"])
def test_a_single_program_streams_alone_or_as_a_group_of_one_with_the_same_result(megakernel, tmp_path, fuse):
    checksum = load_program_file(str(EXAMPLES / "checksum.vasm"))
    data = random.Random(5).randbytes(BIG)
    path = tmp_path / "one.bin"
    path.write_bytes(data)
    with StreamPipeline([checksum], megakernel, options(fuse=fuse)) as pipeline:
        [result] = pipeline.run([str(path)])
        stats = pipeline.stats
    assert result.error is None and stats.runs == result.chunks  # one slot per chunk either way
    padded = data + bytes(-len(data) % 4)
    expected = int(np.frombuffer(padded, dtype="<u4").sum(dtype=np.uint64) & 0xFFFFFFFF)
    assert int(result.programs[0].outputs["sum"][0]) == expected
    assert int(result.programs[0].outputs["bytes"][0]) == len(data)


def test_the_arena_holds_no_more_slots_than_the_files_need_and_grows_when_they_need_more(
    programs, megakernel, tmp_path
):
    paths, contents = write_files(tmp_path, [1, CHUNK + 1, BIG], seed=171)
    with StreamPipeline(programs, megakernel, options()) as pipeline:
        check_exact(pipeline.run(paths[:1])[0], contents[0])
        assert pipeline.arena is not None and pipeline.arena.count == 1  # a 1-byte file pins one slot
        check_exact(pipeline.run(paths[1:2])[0], contents[1])
        assert pipeline.arena.count == 2  # replaced (with its rings) by a bigger one
        for result, content in zip(pipeline.run(paths), contents):
            check_exact(result, content)
        assert pipeline.arena.count == SLOTS  # never more than asked for


def test_a_stream_without_programs_is_refused(megakernel):
    with pytest.raises(DispatchError, match="at least one program"):
        StreamPipeline([], megakernel)


def test_a_pipeline_runs_again_on_its_arena_and_rings_and_close_hands_the_arena_back(programs, megakernel, tmp_path):
    paths, contents = write_files(tmp_path, [3 * CHUNK + 5, 17], seed=130)
    with StreamPipeline(programs, megakernel, options()) as pipeline:
        first = pipeline.run(paths)
        arena, readers = pipeline.arena, list(pipeline._readers)
        second = pipeline.run(list(reversed(paths)))
        assert pipeline.arena is arena and pipeline._readers == readers  # nothing pinned or set up again
    for result, data in zip(first, contents):
        check_exact(result, data)
    for result, data in zip(second, reversed(contents)):
        check_exact(result, data)
    assert pipeline.arena is None
    with StreamPipeline(programs, megakernel, options()) as again:
        again.run(paths[:1])
        assert again.arena.memory is arena.memory  # the Megakernel lent the same memory again
    with pytest.raises(DispatchError, match="closed"):
        pipeline.run(paths)


@pytest.mark.parametrize("fuse", [False, True], ids=["separate", "fused"])
@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "o_direct"])
@pytest.mark.parametrize("per_slot", [2, 3])
def test_several_chunks_per_slot_run_as_the_same_chunks_exactly_once(
    programs, megakernel, request, tmp_path, direct, per_slot, fuse
):
    paths, contents = write_files(directory_for(direct, request, tmp_path), SIZES, seed=140 + per_slot)
    stream_options = options(direct=direct, read_size=4096 if direct else 1500, chunks_per_slot=per_slot, fuse=fuse)
    results, stats = run(programs, megakernel, paths, stream_options)
    for result, data in zip(results, contents):
        check_exact(result, data)
        assert result.chunks == -(-len(data) // CHUNK)  # programs still see CHUNK-sized chunks
    assert stats.bytes_processed == sum(SIZES) and stats.host_bytes_copied == 0
    assert stats.runs == (1 if fuse else 3) * sum(r.chunks for r in results)


# ---------------------------------------------------------------------------- aborted runs


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class StopStreaming(BaseException):
    """What a progress callback raises to stop a stream (like KeyboardInterrupt)."""


@pytest.mark.parametrize("reader", READERS)
def test_a_run_stopped_midway_leaks_nothing_and_the_pipeline_runs_again_with_per_run_progress(
    programs, megakernel, tmp_path, reader
):
    paths, contents = write_files(tmp_path, [5 * CHUNK + 3, 4 * CHUNK, 7], seed=150)
    fds, registered = open_fds(), len(megakernel.registry.programs)
    calls: list[tuple[int, int]] = []
    stopped = []

    def stop_on_third_call(done: int, total: int) -> None:
        calls.append((done, total))
        if len(calls) == 3 and not stopped:
            stopped.append(True)
            raise StopStreaming

    with StreamPipeline(programs, megakernel, options(reader=reader), stop_on_third_call) as pipeline:
        with pytest.raises(StopStreaming):
            pipeline.run(paths)
        assert open_fds() <= fds  # the open inputs' descriptors are closed (the rings too)
        assert len(megakernel.registry.programs) == registered  # and their program handles released
        assert pipeline.arena is not None  # every read and run drained: the arena is reused
        calls.clear()
        for result, data in zip(pipeline.run(paths), contents):
            check_exact(result, data)
        assert calls[-1] == (sum(map(len, contents)),) * 2  # totals count this run only
        calls.clear()
        pipeline.run(paths[:1])
        assert calls[-1] == (len(contents[0]),) * 2
    assert open_fds() <= fds and len(megakernel.registry.programs) == registered


class WaitFailsReader(FaultInjectingReader):
    """The reader's wait fails once a read is in flight; close gives up on stragglers quickly."""

    def wait(self, minimum: int = 1, timeout: float | None = None) -> list[ReadCompletion]:
        threading.Event().wait(0.1)  # a preadv worker has started the (never delivered) pipe read
        raise InputError("injected: the ring failed")

    def close(self) -> None:
        self.inner.close(timeout=0.2)  # type: ignore[call-arg]

    @property
    def drained(self) -> bool:
        return self.inner.drained  # type: ignore[attr-defined]


@pytest.mark.parametrize("reader", READERS)
def test_an_arena_a_stuck_read_may_still_write_is_never_reused_nor_lent_again(programs, megakernel, tmp_path, reader):
    fifo = tmp_path / "silent.fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # a writer that never writes: the read blocks
    made: list[FaultInjectingReader] = []
    try:
        pipeline = StreamPipeline(
            programs,
            megakernel,
            options(reader=reader),
            reader_factory=lambda o: made.append(WaitFailsReader(open_reader(o.reader, o.queue_depth))) or made[-1],
        )
        with pytest.raises(InputError, match="injected"):
            pipeline.run([str(fifo)])
        memory = None if pipeline.arena is None else pipeline.arena.memory
        # io_uring cancels the pipe read, so its arena is reused; a preadv worker stays blocked in
        # readv into the arena, so that arena is retired (the Megakernel keeps it mapped)
        assert made[0].drained == (reader == "io_uring")
        assert (memory is not None) == made[0].drained
        pipeline.reader_factory = injecting(None, made)
        paths, contents = write_files(tmp_path, [SLOTS * CHUNK], seed=160)  # a full arena: the same size
        check_exact(pipeline.run(paths)[0], contents[0])
        lent = pipeline.arena.memory
        pipeline.close()
        reused = StreamPipeline(programs, megakernel, options(reader=reader))
        reused.run(paths)
        assert reused.arena.memory is lent  # what was drained is lent again
        reused.close()
    finally:
        os.write(writer, b"late bytes")  # the stuck read lands: in retired memory only
        os.close(writer)


def test_an_input_the_reader_cannot_take_fails_alone(programs, megakernel, tmp_path):
    paths, contents = write_files(tmp_path, [CHUNK + 9, 11, 3 * CHUNK], seed=170)

    class RefusesSecondFile(FaultInjectingReader):
        def add_file(self, fd: int) -> int:
            if os.readlink(f"/proc/self/fd/{fd}") == paths[1]:
                raise InputError("injected: all file slots of the reader are in use")
            return super().add_file(fd)

    fds = open_fds()
    results, _ = run(
        programs, megakernel, paths, options(), reader_factory=lambda o: RefusesSecondFile(open_reader(o.reader, 8))
    )
    assert "file slots" in str(results[1].error) and not results[1].programs
    check_exact(results[0], contents[0])
    check_exact(results[2], contents[2])
    assert open_fds() <= fds


@pytest.mark.skipif(not IO_URING, reason=f"io_uring unavailable ({WHY_NOT}); the preadv reader dups each file")
def test_inputs_wait_for_a_descriptor_instead_of_failing_when_the_process_is_out_of_them(
    programs, megakernel, tmp_path
):
    import resource

    paths, contents = write_files(tmp_path, [CHUNK + 3] * 12, seed=150)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with StreamPipeline(programs, megakernel, options(reader="io_uring")) as pipeline:
        pipeline.run(paths[:1])  # rings and arena set up before the limit bites
        in_use = len(os.listdir("/proc/self/fd")) - 1  # less the descriptor listdir itself held
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 1, hard))  # room for one input at a time
        try:
            results = pipeline.run(paths)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    for result, data in zip(results, contents):
        assert result.error is None, result.error
        check_exact(result, data)


def test_programs_merge_side_by_side_with_the_same_results(tmp_path, megakernel, programs, monkeypatch) -> None:
    """Inputs whose programs emitted many records merge on worker threads (_merge_all): the
    results equal those of merging one program after another."""
    from vyre_runtime.ingest import stream

    paths, contents = write_files(tmp_path, [BIG, CHUNK + 1, 0], seed=11)
    every = [*programs, load_program_file(str(EXAMPLES / "fnv1a_blocks.vasm"))]
    monkeypatch.setattr(stream, "PARALLEL_MERGE_RECORDS", 1 << 62)
    serial, _ = run(every, megakernel, paths, options())
    monkeypatch.setattr(stream, "PARALLEL_MERGE_RECORDS", 1)
    with StreamPipeline(every, megakernel, options()) as pipeline:
        side_by_side = pipeline.run(paths)
        assert pipeline._mergers is not None  # the threads merged them
    for one, other, data in zip(serial, side_by_side, contents):
        check_exact(FileResult(one.path, one.size, programs=one.programs[:3]), data)
        assert [p.program for p in one.programs] == [p.program for p in other.programs]
        for mine, theirs in zip(one.programs, other.programs):
            np.testing.assert_array_equal(mine.records, theirs.records)
            np.testing.assert_array_equal(mine.record_chunks, theirs.record_chunks)
            assert mine.outputs.keys() == theirs.outputs.keys()
            for name in mine.outputs:
                np.testing.assert_array_equal(mine.outputs[name], theirs.outputs[name])
    blocks = sum(-(-min(CHUNK, BIG - start) // 4096) for start in range(0, BIG, CHUNK))  # per chunk's 4 KiB
    assert len(side_by_side[0].programs[3].records) == blocks


@pytest.mark.parametrize("side_by_side", [False, True])
def test_a_merge_that_raises_leaks_nothing_and_the_pipeline_runs_again(
    tmp_path, megakernel, programs, monkeypatch, side_by_side
) -> None:
    """A merge that raises (MemoryError on a huge input, a Ctrl-C while the merge threads work)
    stops run(); the finishing input's program handles and descriptor go back as any unfinished
    input's do, and the pipeline streams again (review11)."""
    from vyre_runtime.ingest import stream

    paths, contents = write_files(tmp_path, [3 * CHUNK + 5, 2 * CHUNK], seed=12)
    fds, registered = open_fds(), len(megakernel.registry.programs)
    monkeypatch.setattr(stream, "PARALLEL_MERGE_RECORDS", 1 if side_by_side else 1 << 62)
    real_merge, calls = stream.merge, []

    def merge_failing_once(*arguments):
        calls.append(True)
        if len(calls) == 2:
            raise MemoryError("the merge's concatenation")
        return real_merge(*arguments)

    monkeypatch.setattr(stream, "merge", merge_failing_once)
    with StreamPipeline(programs, megakernel, options()) as pipeline:
        with pytest.raises(MemoryError):
            pipeline.run(paths)
        assert open_fds() <= fds  # the finishing input's descriptor is closed too
        assert len(megakernel.registry.programs) == registered  # and its program handles released
        for result, data in zip(pipeline.run(paths), contents):
            check_exact(result, data)
    assert open_fds() <= fds and len(megakernel.registry.programs) == registered
