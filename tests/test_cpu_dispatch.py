"""CPU backend: dispatch arguments, input kinds, verification once per program, the dispatch table."""

from __future__ import annotations

import mmap

import numpy as np
import pytest
from cpu_harness import global_binding, op, out, program, run

from vyre_runtime.backends.cpu import Fault, PreparedProgram, Region, prepare, run_program
from vyre_runtime.backends.cpu import prepared as prepared_module
from vyre_runtime.errors import DispatchError, VerifyError
from vyre_runtime.vir0.isa import MAX_LANES, OPCODES, FaultCode, SpecialRegister

COUNT_NEWLINES = program(
    [
        op("sreg", d=1, imm=SpecialRegister.REGION_LEN),
        op("li", d=0, imm=0),
        op("countb", d=2, a=0, b=1, imm=10),
        op("findl", d=3, a=0, b=1, imm=0),
        op("sto", d=2, a=0, b=0),
        op("sto", d=3, a=0, b=0, imm=1),
        op("exit"),
    ],
    tables={"literal": b"b\n"},
    bindings=[out(2)],
)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("lanes", 0),
        ("lanes", MAX_LANES + 1),
        ("lanes", True),
        ("lanes", 2.0),
        ("fuel", 0),
        ("fuel", 2**32),
        ("emit_capacity", -1),
        ("emit_capacity", "many"),
    ],
)
def test_out_of_range_run_argument_is_a_dispatch_error_with_a_fix(argument: str, value: object) -> None:
    with pytest.raises(DispatchError) as raised:
        run_program(COUNT_NEWLINES, Region(b"abc"), **{argument: value})  # type: ignore[arg-type]
    assert argument in raised.value.message and raised.value.fix


@pytest.mark.parametrize(
    "region",
    [
        Region(b"abc", own_lo=2, own_hi=1),
        Region(b"abc", own_hi=4),
        Region(b"abc", own_lo=-1),
        Region(b"abc", file_offset=2**64),
        Region(b"abc", chunk_index=-1),
        Region([1, 2, 3]),  # type: ignore[arg-type]
        Region(np.zeros((2, 2), dtype=np.uint8)),
        Region(np.zeros(4, dtype=np.float32)),
        Region(np.zeros(8, dtype=np.uint8)[::2]),
        Region(memoryview(b"abcdef")[::2]),
    ],
)
def test_bad_region_is_a_dispatch_error(region: Region) -> None:
    with pytest.raises(DispatchError):
        run_program(COUNT_NEWLINES, region)


def test_region_of_2_pow_32_bytes_is_rejected_before_it_is_read() -> None:
    try:
        huge = mmap.mmap(-1, 2**32)  # anonymous and untouched: no memory is committed
    except (OSError, OverflowError, ValueError):
        pytest.skip("cannot map 4 GiB of address space here")
    with huge, pytest.raises(DispatchError, match="2\\^32"):
        run_program(COUNT_NEWLINES, Region(memoryview(huge)))


def test_non_region_argument_is_a_dispatch_error() -> None:
    with pytest.raises(DispatchError):
        run_program(COUNT_NEWLINES, b"abc")  # type: ignore[arg-type]


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    "buffers",
    [
        {"nope": np.zeros(2, dtype=np.uint32)},
        {"out": np.zeros(2, dtype=np.uint32)},  # a run binding
        {"total": np.zeros(3, dtype=np.uint32)},
        {"total": np.zeros(2, dtype=np.int32)},
        {"total": np.zeros(2, dtype=">u4")},
        {"total": [0, 0]},
        {"total": np.zeros(4, dtype=np.uint32)[::2]},
        {"total": _read_only(np.zeros(2, dtype=np.uint32))},
    ],
)
def test_bad_global_buffer_is_a_dispatch_error(buffers: dict) -> None:
    prog = program([op("exit")], bindings=[out(2), global_binding("total", 2)])
    with pytest.raises(DispatchError):
        run_program(prog, Region(b""), global_buffers=buffers)


@pytest.mark.parametrize(
    "data",
    [b"ab\nab\n", bytearray(b"ab\nab\n"), memoryview(b"ab\nab\n"), np.frombuffer(b"ab\nab\n", dtype=np.uint8)],
    ids=["bytes", "bytearray", "memoryview", "ndarray"],
)
def test_every_input_kind_gives_the_same_result(data: object) -> None:
    result = run_program(COUNT_NEWLINES, Region(data), lanes=3)  # type: ignore[arg-type]
    assert result.outputs["out"].tolist() == [2, 1]


def test_invalid_program_is_a_verify_error() -> None:
    with pytest.raises(VerifyError):
        run(program([op("nop")]))  # can fall off the end of the code


def test_program_is_prepared_once_and_prepared_programs_run_directly() -> None:
    prog = program(
        [op("li", d=1, imm=3), op("li", d=0, imm=0), op("sto", d=1, a=0, b=0), op("exit")], bindings=[out(1)]
    )
    prepared = prepare(prog)
    assert isinstance(prepared, PreparedProgram) and prepare(prog) is prepared and prepare(prepared) is prepared
    assert run_program(prepared, Region(b"")).outputs["out"].tolist() == [3]
    twin = program(list(prog.code), bindings=[out(1)])
    assert prepare(twin) is not prepared


def test_dispatch_table_covers_every_opcode_exactly_once() -> None:
    handled = set(prepared_module.HANDLERS) | set(prepared_module.CONTROL)
    assert handled == {info.code for info in OPCODES}
    assert not set(prepared_module.HANDLERS) & set(prepared_module.CONTROL)


def test_the_maximum_lane_count_runs() -> None:
    result = run_program(program([op("exit")], registers=1), Region(b""), lanes=MAX_LANES)
    assert result.fault is None and result.lanes == MAX_LANES and result.instructions == MAX_LANES


def test_fault_describe_names_the_lane_instruction_and_code() -> None:
    text = Fault(FaultCode.OOB_OUTPUT, pc=12, lane=40, detail=300).describe()
    assert "lane 40" in text and "instruction 12" in text and "OOB_OUTPUT" in text and "300" in text
