"""The JIT without a GPU: VIR0 -> CUDA C++ translation, the variant build through NVRTC and the
build cache, and the policy's behaviour on a backend that cannot compile (the CPU).

What runs on the GPU (native results bit-identical to the interpreter and the CPU, the hot
swap) is tests/test_cuda_jit.py."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from differential import deterministic_case
from test_cuda_build import needs_nvrtc

from vyre_runtime.backends.cuda import build, jit
from vyre_runtime.errors import BackendError, DispatchError
from vyre_runtime.jit_policy import JitPolicy
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.asm import assemble_program
from vyre_runtime.vir0.program import Instruction, Program
from vyre_runtime.vir0.verify import VerifyError

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.vasm"))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "cache"))


def _examples() -> dict[str, Program]:
    programs = [assemble_program(path.read_text(), source_name=path.name) for path in EXAMPLES]
    return {jit.code_key(program): program for program in programs}


def test_each_instruction_becomes_one_case_with_its_operands_as_constants() -> None:
    program = assemble_program(EXAMPLES[0].read_text())
    text = jit.translate(program, 7)
    assert "void vyre_jit_7(RunShared& S, Lane& io)" in text
    case = r"case (\d+)u: exec_op<(0x[0-9a-f]{2})u>\(S, L, part, participants, (\d+)u, (\d+)u, (\d+)u,"
    cases = re.findall(case, text)
    assert [int(pc) for pc, *_ in cases] == list(range(len(program.code)))
    for (_, byte, d, a, b), instruction in zip(cases, program.code):
        assert (int(byte, 16), int(d), int(a), int(b)) == (instruction.op, instruction.d, instruction.a, instruction.b)
    assert f"i < {program.registers}u; i++) L.r[i] = 0" in text


def test_basic_blocks_split_at_branches_and_targets_and_name_their_successors() -> None:
    program = assemble_program((EXAMPLES[0].parent / "checksum.vasm").read_text())
    blocks = jit.basic_blocks(program)
    code = program.code
    leaders = [block.first for block in blocks]
    assert leaders[0] == 0 and leaders == sorted(leaders)
    covered = [pc for block in blocks for pc in range(block.first, block.last + 1)]
    assert covered == list(range(len(code)))  # every instruction in exactly one block
    branches = {isa.Op.JMP, isa.Op.JZ, isa.Op.JNZ, isa.Op.EXIT, isa.Op.TRAP}
    for block in blocks:
        assert all(code[pc].op not in branches for pc in range(block.first, block.last))
        last = code[block.last]
        if last.op == isa.Op.JMP:
            assert block.successors == (last.imm,)
        elif last.op in (isa.Op.JZ, isa.Op.JNZ):
            assert set(block.successors) == {last.imm, block.last + 1}
        elif last.op in (isa.Op.EXIT, isa.Op.TRAP):
            assert block.successors == ()
        else:
            assert block.successors == (block.last + 1,) and block.last + 1 in leaders
        assert set(block.successors) <= set(leaders)
    text = jit.translate(program, 1)
    for block in blocks:  # each block runs straight once converged, and chains to its successors
        assert f"B{block.first}:  // instructions {block.first}..{block.last}" in text
        for successor in block.successors:
            assert f"goto B{successor};" in text


def test_a_block_charges_fuel_per_segment_and_only_loop_loads_prefetch() -> None:
    """Fuel is charged once per run of instructions that cannot end a lane (a lane live at its
    start runs all of it); `live` is re-voted only after a block that may end a lane; input
    loads inside loops prefetch, the others do not."""
    program = assemble_program((EXAMPLES[0].parent / "checksum.vasm").read_text())
    blocks = jit.basic_blocks(program)
    keeps = jit._KEEPS_LANE
    for block in blocks:
        segments = jit._segments(program, block)
        assert [pc for segment in segments for pc in segment] == list(range(block.first, block.last + 1))
        for segment in segments:  # only a segment's last instruction may end a lane
            assert all(jit._keeps_lane(program.code[pc]) for pc in segment[:-1])
    assert {isa.Op.EXIT, isa.Op.TRAP, isa.Op.LDI32, isa.Op.STO, isa.Op.ATADD, isa.Op.FNV}.isdisjoint(keeps)
    assert jit._keeps_lane(Instruction(isa.Op.ADD | isa.IMM_FORM, d=0, a=0, imm=1))  # the immediate form too
    text = jit.translate(program, 1)
    assert "L.fuel--" not in text.split("    B0:")[1]  # the blocks charge segments
    loads = [pc for pc, i in enumerate(program.code) if i.op in (isa.Op.LDI8, isa.Op.LDI32)]
    looping = jit._in_loops(blocks)
    in_loops = [pc for pc in loads if any(b.first in looping and b.first <= pc <= b.last for b in blocks)]
    assert in_loops == loads  # checksum's word loop and its tail-byte loop
    assert [int(n) for n in re.findall(r"uint32_t last(\d+) = 0;", text)] == in_loops
    for block in blocks:  # every block also runs without lane predicates for a warp of 32 live lanes
        assert f"F{block.first}:  // the same for a warp of 32 live lanes" in text
        assert f"goto F{block.first};" in text
    straight = assemble_program(".program straight\n.registers 2\n li r0, 0\n ldi32 r1, r0, 0\n exit\n")
    assert "jit_prefetch" not in jit.translate(straight, 1)


def test_simple_loops_of_register_ops_and_loads_run_as_speculative_trips() -> None:
    """A loop whose every block goes on to one block of the loop (the other successor leaves it)
    and whose ops touch only registers and loads gets fast trips at its header's full-warp copy:
    several trips, then one, each kept all or none by one vote; a loop with an emit, a store or
    an atomic does not."""
    program = assemble_program((EXAMPLES[0].parent / "checksum.vasm").read_text())
    loops = jit.fast_loops(program)
    assert {header: [block.first for block in loop.blocks] for header, loop in loops.items()} == {
        16: [16, 18],  # the word loop: geu, jnz | ldi32, rotl, add, add, jmp
        24: [24, 26],  # the tail-byte loop
    }
    assert loops[16].trip == 7 and jit.fast_trips(7) == 8 and jit.fast_trips(10) == 6 and jit.fast_trips(99) == 1
    text = jit.translate(program, 1)
    words = text.split("    F16:")[1].split("    B18:")[0]
    assert "8 trips of the loop at 16, kept all or none" in words and "1 trips of the loop at 16" in words
    assert words.count("jit_load<4u>(jit_in, jit_len, T.r[9] + 0x0u, kept)") == 8 + 1
    assert "L.fuel >= 56u" in words and "L.fuel -= 56u; L.instructions += 56u;" in words
    # the kept trips spent fuel: the block's stepped copy checks its entry condition again
    stepped = words.split("1 trips of the loop at 16")[1].split("        }\n", 1)[1]
    assert stepped.startswith("        if (!__all_sync(FULL_MASK, L.fuel >= 2u)) continue;")
    assert words.count("stayed = stayed && T.pc == 18u;") == 8 + 1  # jnz must fall through into the body
    assert "T.pc = 17u; exec_op<0x05u>" in words  # a branch sees its own pc (loads do not advance T.pc)
    for body in ("emit r1", "sto r1, r0, out, 0", "atadd r1, r0, r0, out"):
        looping = assemble_program(
            f""".program looping
.registers 4
.emit 1
.binding out 4 run sum
loop:
    ldi8 r1, r0, 0
    {body}
    add r0, r0, 1
    jmp loop
"""
        )
        assert jit.fast_loops(looping) == {}, body
        assert "kept all or none" not in jit.translate(looping, 1)


def test_the_code_key_follows_code_and_registers_but_not_names_tables_or_defaults() -> None:
    program, _, _ = deterministic_case(3)
    same_code = Program(name="other", code=program.code, registers=program.registers, lanes=7, fuel=9)
    assert jit.code_key(same_code) == jit.code_key(program)
    more_registers = Program(name=program.name, code=program.code, registers=program.registers + 1)
    assert jit.code_key(more_registers) != jit.code_key(program)
    other_code = Program(name=program.name, code=(*program.code[:-1], Instruction(isa.Op.TRAP, imm=1)))
    assert jit.code_key(other_code) != jit.code_key(program)


def test_a_variant_header_is_deterministic_and_dispatches_every_id() -> None:
    programs = _examples()
    text, ids = jit.variant_header(programs)
    again, ids_again = jit.variant_header(dict(reversed(list(programs.items()))))
    assert (text, ids) == (again, ids_again)  # the same set, the same text: one cache entry
    assert sorted(ids.values()) == list(range(1, len(programs) + 1))
    for jit_id in ids.values():
        assert f"case {jit_id}u: vyre_jit_{jit_id}(S, L); return true;" in text
    assert "default: return false;" in text


def test_unverifiable_code_is_refused_before_it_reaches_nvrtc() -> None:
    falls_off = Program(name="falls_off", registers=2, code=(Instruction(isa.Op.NOP),))
    with pytest.raises(VerifyError, match="fall off"):
        jit.translate(falls_off, 1)
    with pytest.raises(BackendError, match="ids start at 1"):
        jit.translate(assemble_program(EXAMPLES[0].read_text()), 0)


def test_a_variant_too_large_for_one_build_is_refused_with_a_way_out() -> None:
    loop = (*(Instruction(isa.Op.NOP) for _ in range(jit.MAX_VARIANT_INSTRUCTIONS)), Instruction(isa.Op.EXIT))
    with pytest.raises(BackendError, match="at most 16384"):
        jit.variant_header({"k": Program(name="huge", registers=1, code=loop)})


@needs_nvrtc
def test_nvrtc_builds_a_variant_with_every_example_and_random_programs_and_caches_it() -> None:
    programs = _examples()
    for seed in range(12):
        program, _, _ = deterministic_case(seed)
        programs[jit.code_key(program)] = program
    started = time.perf_counter()
    variant = jit.build_variant(programs)
    cold = time.perf_counter() - started
    assert variant.cubin.startswith(b"\x7fELF")
    assert set(build.MEGAKERNEL_SYMBOLS) <= set(variant.build.names)
    assert set(variant.ids) == set(programs)
    plain = build.build_megakernel()
    assert plain.key != variant.build.key  # a variant never answers for the plain kernel
    hit = jit.build_variant(programs)
    assert hit.build.cached and hit.cubin == variant.cubin and hit.ids == variant.ids
    assert hit.build.seconds < cold
    fewer = dict(list(programs.items())[:-1])
    assert jit.build_variant(fewer).build.key != variant.build.key


def test_policy_arguments_are_checked() -> None:
    with pytest.raises(DispatchError, match="jit mode"):
        JitPolicy(mode="always")
    with pytest.raises(DispatchError, match="hot_runs"):
        JitPolicy(hot_runs=0)
    assert JitPolicy.of("request").mode == "request"


def test_the_cpu_backend_refuses_a_jit_request_and_reports_every_run_as_interpreted() -> None:
    program = assemble_program(EXAMPLES[0].read_text())
    with Megakernel(backend="cpu", slots=16, workers=1, jit=JitPolicy(mode="auto", hot_runs=1)) as mk:
        handle = mk.register_program(program)
        for _ in range(3):
            outcome = mk.submit(handle, b"some bytes\nand a line\n").result(30)
            assert outcome.path == "interpreted"
        with pytest.raises(BackendError, match="needs the cuda backend"):
            mk.jit(handle)
        with pytest.raises(DispatchError, match="not registered"):
            mk.jit(handle + 1000)
        other = mk.register_program(assemble_program(EXAMPLES[1].read_text()))
        group = mk.register_fused([handle, other])
        with pytest.raises(DispatchError, match="is a fused group") as refused:
            mk.jit(group)
        assert f"its members ({handle}, {other})" in refused.value.one_line()
        path = mk.stats().programs[handle]
        assert (path.state, path.runs_interpreted, path.runs_jit) == ("interpreted", 3, 0)
        assert path.name == program.name


def test_a_failing_run_observer_costs_no_result_and_is_kept_for_diagnosis() -> None:
    program = assemble_program(EXAMPLES[0].read_text())
    with Megakernel(backend="cpu", slots=16, workers=1) as mk:
        handle = mk.register_program(program)

        def broken(handle: int, path: str) -> None:
            raise KeyError(handle)

        mk.service.run_observer = broken
        outcomes = [mk.submit(handle, b"x\ny\n").result(30) for _ in range(3)]
        assert all(outcome.ok for outcome in outcomes)
        assert len(mk.service.observer_errors) == 3 and mk.service.observer_errors[0].startswith("KeyError")


EXIT_SCRIPT = """
import sys, time, pathlib
from vyre_runtime.jit_policy import JitManager, JitPolicy
from vyre_runtime.registry import Registry
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.program import Instruction, Program

marker = pathlib.Path(sys.argv[1])


class CompilingDevice:  # the manager asks only whether its device compiles
    name = "cuda"
    supports_jit = True


def swap(programs):  # the slow part of a real swap is NVRTC: seconds, uninterruptible
    time.sleep(1.0)
    marker.write_text(",".join(sorted(programs)))


registry = Registry()
handle = registry.add_program(Program(name="p", registers=1, lanes=1, code=(Instruction(isa.Op.EXIT),)))
manager = JitManager(CompilingDevice(), registry, JitPolicy("request", settle_s=0.0), lambda program: "k", swap)
manager.request([handle])
time.sleep(0.2)  # the build is under way; the script ends while it runs
"""


def test_a_process_exiting_during_a_jit_build_waits_for_it(tmp_path: Path) -> None:
    # A daemon thread still inside NVRTC when the interpreter exits had NVRTC's state torn down
    # under it: the process died with SIGSEGV after printing its results. Exit now waits for the
    # build thread (jit_policy's atexit hook), which ends once its compile returns.
    marker = tmp_path / "built"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(marker)], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "k"  # the build ran to its end before the process exited
