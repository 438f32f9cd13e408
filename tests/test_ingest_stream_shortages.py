"""The stream under shortages and interruptions: a device whose record tables are full (the CUDA
device has fixed tables: 1024 programs, 256 fused groups; set here through the registry's
index capacities, the mechanism the CUDA device uses), a launch interrupted between a slot's runs,
a ring that fails to close while the arena is replaced. Every input still gets its result, and
nothing is leaked or lent again while it may be read."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_ingest_stream import FaultInjectingReader

from vyre_runtime.cli import load_program_file
from vyre_runtime.errors import IngestError
from vyre_runtime.ingest.reader import open_reader
from vyre_runtime.ingest.stream import StreamOptions, StreamPipeline
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.opcodes import BuiltinOpcode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def small_files(directory: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = directory / f"f{i}"
        path.write_bytes(bytes([i % 256]) * (100 + i))
        paths.append(str(path))
    return paths


def histogram_of(path: str) -> np.ndarray:
    return np.bincount(np.frombuffer(Path(path).read_bytes(), dtype=np.uint8), minlength=256)


@pytest.mark.parametrize("kind, capacity, programs, fuse", [("fused", 4, 1, True), ("program", 40, 11, None)])
def test_inputs_wait_for_device_records_instead_of_failing_the_run(tmp_path, kind, capacity, programs, fuse) -> None:
    histogram = load_program_file(str(EXAMPLES / "histogram.vasm"))
    paths = small_files(tmp_path, 12)
    with Megakernel(backend="cpu", workers=2) as mk:
        mk.registry.index_capacity[kind] = capacity  # fewer records than inputs the stream opens at once
        descriptors, registered = open_descriptors(), len(mk.registry.programs)
        options = StreamOptions(chunk_size=4096, chunks=12, fuse=fuse, reader="preadv")
        with StreamPipeline([histogram] * programs, mk, options) as pipeline:
            results = pipeline.run(paths)
        assert [r.error for r in results] == [None] * len(paths)
        for path, result in zip(paths, results):
            for program in result.programs:
                assert np.array_equal(program.outputs["histogram"], histogram_of(path))
        assert open_descriptors() == descriptors and len(mk.registry.programs) == registered  # nothing leaked


class Interrupt(BaseException):
    """Stands for Ctrl-C while submit() waits for a free ring slot."""


class InterruptedSecondSubmit:
    """FAULT INJECTION: the real Megakernel, whose tenant 0 is paused at the first submit (that run
    stays in flight, reading the arena) and whose second submit is interrupted."""

    def __init__(self, megakernel: Megakernel) -> None:
        self._megakernel, self.calls, self.first = megakernel, 0, None

    def __getattr__(self, name: str):
        return getattr(self._megakernel, name)

    def run_template(self, handle: int, **options):  # the stream submits its chunks through templates
        template = self._megakernel.run_template(handle, **options)
        return SimpleNamespace(
            submit=lambda *args, **kwargs: self._submit(template.submit, *args, **kwargs),
            submit_many=lambda runs: self._submit(template.submit_many, runs),  # a batch counts as one submit
        )

    def submit(self, *args, **kwargs):
        return self._submit(self._megakernel.submit, *args, **kwargs)

    def _submit(self, submit, *args, **kwargs):
        self.calls += 1
        if self.calls > 1:
            raise Interrupt
        self._megakernel.set_tenant_enabled(0, False)
        submitted = submit(*args, **kwargs)
        self.first = submitted[0] if isinstance(submitted, list) else submitted
        return submitted


def test_a_launch_interrupted_between_runs_leaves_no_run_over_a_reusable_arena(tmp_path) -> None:
    programs = [load_program_file(str(EXAMPLES / name)) for name in ("histogram.vasm", "line_count.vasm")]
    path = tmp_path / "f.bin"
    path.write_bytes(b"x\n" * 3000)
    with Megakernel(backend="cpu", workers=2) as mk:
        proxy = InterruptedSecondSubmit(mk)
        pipeline = StreamPipeline(programs, proxy, StreamOptions(chunk_size=1 << 16, chunks=2, fuse=False))
        try:
            with pytest.raises(Interrupt):
                pipeline.run([str(path)])
            assert not proxy.first.done()  # the first run still reads the arena
            assert pipeline.arena is None  # so the arena was retired, not kept to be lent again
        finally:
            mk.set_tenant_enabled(0, True)
            pipeline.close()
        assert proxy.first.result(10).ok


class CloseFails(FaultInjectingReader):
    def close(self) -> None:
        self.inner.close()
        raise IngestError("injected: the ring failed to close")


def test_a_replaced_arena_is_handed_back_even_if_its_ring_fails_to_close(tmp_path) -> None:
    histogram = load_program_file(str(EXAMPLES / "histogram.vasm"))
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"a" * 10)
    big.write_bytes(b"b" * 5 * 4096)
    with Megakernel(backend="cpu", workers=2) as mk:
        pipeline = StreamPipeline(
            [histogram],
            mk,
            StreamOptions(chunk_size=4096, chunks=8),
            reader_factory=lambda o: CloseFails(open_reader(o.reader, o.queue_depth)),
        )
        pipeline.run([str(small)])  # a 1-slot arena
        old = pipeline.arena.memory
        with pytest.raises(IngestError):
            pipeline.run([str(big)])  # needs 5 slots: the arena is replaced, and its ring fails to close
        retired = any(memory is old for memory in mk._host_memory_retired)
        assert retired  # not dropped: a read might still land in it, so it is never lent again
        pipeline._closed = True  # its rings are gone already


def test_a_stream_sharing_the_ring_with_a_paused_tenant_streams_through_the_slots_left(tmp_path) -> None:
    """A paused tenant's slots stay PUBLISHED: here they leave the stream 3 slots it can take
    (64 slots, 55 held, the more urgent partitions' reserves kept). The stream's run batches
    (up to an eighth of the ring, 8 here) must not wait for more slots than that: they would
    wait until publish_timeout and fail the input, where one run at a time goes through."""
    histogram = load_program_file(str(EXAMPLES / "histogram.vasm"))
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 200)
    with Megakernel(backend="cpu", workers=2, slots=64, tenants=2, publish_timeout=1.0) as mk:
        mk.set_tenant_enabled(1, False)
        held = [mk.publish(BuiltinOpcode.NOP, tenant=1) for _ in range(55)]
        try:
            options = StreamOptions(chunk_size=1024, chunks=4, chunks_per_slot=4, fuse=False, reader="preadv")
            with StreamPipeline([histogram], mk, options) as pipeline:
                [result] = pipeline.run([str(path)])
            assert result.error is None, result.error
            assert np.array_equal(result.programs[0].outputs["histogram"], histogram_of(str(path)))
        finally:
            mk.set_tenant_enabled(1, True)
        assert all(future.result(10).ok for future in held)
