"""The `vyre` command: its outputs, and one-line errors with a fix for everything a user can get wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from host_programs import TRAP_ON_SECOND_CHUNK

from vyre_runtime.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_cli(*argv: str) -> int:
    return main(list(argv))


def test_asm_writes_a_container_that_disasm_and_verify_accept(tmp_path, capsys):
    output = tmp_path / "lines.vir0"
    assert run_cli("asm", str(EXAMPLES / "line_count.vasm"), "-o", str(output)) == 0
    assert output.read_bytes().startswith(b"VIR0")
    assert run_cli("verify", str(output)) == 0
    assert "ok: line_count" in capsys.readouterr().out
    assert run_cli("disasm", str(output)) == 0
    text = capsys.readouterr().out
    assert ".program line_count" in text and "countb" in text


def test_disassembled_text_reassembles_to_the_same_bytes(tmp_path, capsys):
    first = tmp_path / "a.vir0"
    run_cli("asm", str(EXAMPLES / "filter_compact.vasm"), "-o", str(first))
    run_cli("disasm", str(first), "-o", str(tmp_path / "b.vasm"))
    run_cli("asm", str(tmp_path / "b.vasm"), "-o", str(tmp_path / "b.vir0"))
    assert (tmp_path / "b.vir0").read_bytes() == first.read_bytes()


def test_run_prints_merged_results_per_file(tmp_path, capsys):
    data = tmp_path / "log.txt"
    data.write_bytes(b"one\ntwo\nthree\n" * 1000)
    assert run_cli("run", str(EXAMPLES / "line_count.vasm"), str(data), "--chunk-size", "1000") == 0
    out = capsys.readouterr().out
    assert "lines = 3000" in out and "14 chunks" in out


def test_run_json_is_machine_readable(tmp_path, capsys):
    data = tmp_path / "log.txt"
    data.write_bytes(b"vyre at 0, vyre again\n")
    assert run_cli("run", str(EXAMPLES / "literal_search.vasm"), str(data), "--json") == 0
    document = json.loads(capsys.readouterr().out)
    result = document["files"][0]["results"][0]
    assert document["backend"] in ("cpu", "cuda") and len(document["programs"][0]["blake3"]) == 64  # "auto"
    assert result["outputs"]["matches"] == [2]
    assert sorted(r[0] for r in result["records"]) == [0, 11]


def test_faulting_chunk_is_reported_and_other_chunks_still_count(tmp_path, capsys):
    source = tmp_path / "trap.vasm"
    source.write_text(TRAP_ON_SECOND_CHUNK)
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(300))
    assert run_cli("run", str(source), str(data), "--chunk-size", "100", "--json") == 1
    result = json.loads(capsys.readouterr().out)["files"][0]["results"][0]
    assert result["outputs"]["seen"] == [8]  # 4 lanes x the 2 chunks that did not fault
    [fault] = result["faults"]
    assert fault["chunk"] == 1 and fault["code"] == "TRAP" and fault["detail"] == 77 and fault["lane"] == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "{tmp}/missing.vasm", "{tmp}"], "cannot read"),
        (["run", "{examples}/line_count.vasm", "{tmp}/empty"], "no files"),
        (["verify", "{tmp}/garbage.vir0"], "malformed VIR0 program"),
        (["verify", "{tmp}/bad.vasm"], "line 2"),
        (["run", "{examples}/line_count.vasm", "{examples}/line_count.vasm", "--chunk-size", "lots"], "size"),
        (["run", "{examples}/line_count.vasm", "{examples}/line_count.vasm", "--lanes", "0"], "lanes"),
    ],
)
def test_user_errors_are_one_line_with_a_fix(tmp_path, capsys, argv, expected):
    (tmp_path / "garbage.vir0").write_bytes(b"VIR0" + bytes(60))
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.vasm").write_text(".program bad\n    frobnicate r1, r2\n    exit\n")
    argv = [a.format(examples=EXAMPLES, tmp=tmp_path) for a in argv]
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("vyre: error:") and "(fix:" in err and expected in err


def test_unreadable_input_is_reported_and_the_other_inputs_still_run(tmp_path, capsys):
    data = tmp_path / "log.txt"
    data.write_bytes(b"a\nb\n")
    code = run_cli("run", str(EXAMPLES / "line_count.vasm"), str(tmp_path / "missing.txt"), str(data))
    captured = capsys.readouterr()
    assert code == 1
    assert "lines = 2" in captured.out
    assert captured.err.startswith("vyre: error: cannot open") and "(fix:" in captured.err


def test_several_programs_run_over_one_read_of_each_input(tmp_path, capsys):
    data = tmp_path / "log.txt"
    data.write_bytes(b"vyre\nvyre\nx\n")
    argv = [str(EXAMPLES / "line_count.vasm"), str(EXAMPLES / "literal_search.vasm"), str(data), "--json"]
    assert run_cli("run", *argv) == 0
    document = json.loads(capsys.readouterr().out)
    [line_count, search] = document["files"][0]["results"]
    assert line_count["outputs"]["lines"] == [3] and search["outputs"]["matches"] == [2]
    assert document["stats"]["bytes_processed"] == document["stats"]["bytes_read"] == len(data.read_bytes())


def test_run_fuse_gives_every_program_the_results_of_no_fuse_from_one_slot_per_chunk(tmp_path, capsys):
    data = tmp_path / "log.txt"
    data.write_bytes(b"vyre\nvyre\nx\n" * 500)
    programs = [str(EXAMPLES / "line_count.vasm"), str(EXAMPLES / "literal_search.vasm")]
    documents = {}
    for flag in ("--fuse", "--no-fuse"):
        argv = [*programs, str(data), "--json", "--chunk-size", "1000", "--backend", "cpu", flag]
        assert run_cli("run", *argv) == 0
        documents[flag] = json.loads(capsys.readouterr().out)
    fused, separate = (documents[flag]["files"][0]["results"] for flag in ("--fuse", "--no-fuse"))
    assert fused == separate and fused[0]["outputs"]["lines"] == [1500]
    chunks = documents["--fuse"]["files"][0]["chunks"]
    assert documents["--fuse"]["stats"]["runs"] == chunks and documents["--no-fuse"]["stats"]["runs"] == 2 * chunks


def test_directories_are_walked_in_sorted_order(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_bytes(b"\n")
    (tmp_path / "a.txt").write_bytes(b"\n\n")
    assert run_cli("run", str(EXAMPLES / "line_count.vasm"), str(tmp_path), "--json") == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [Path(f["path"]).name for f in files] == ["a.txt", "2.txt"]
    assert [f["results"][0]["outputs"]["lines"] for f in files] == [[2], [1]]


def test_installed_entry_point_never_prints_a_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "vyre_runtime.cli", "run", str(tmp_path / "nope.vasm"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr and completed.stderr.startswith("vyre: error:")


def test_a_forced_progress_bar_reports_on_stderr_and_leaves_the_results_alone(tmp_path, capsys):
    data = tmp_path / "log.txt"
    data.write_bytes(b"x\n" * 5000)
    assert run_cli("run", str(EXAMPLES / "line_count.vasm"), str(data), "--progress", "--chunk-size", "1KiB") == 0
    captured = capsys.readouterr()
    assert "lines = 5000" in captured.out
    assert "10.0/10.0 kB" in captured.err  # rich's download column: every byte accounted for


def test_run_jit_on_the_cpu_backend_fails_with_a_clear_error_and_json_counts_no_native_chunks(tmp_path, capsys):
    data = tmp_path / "log.txt"
    data.write_bytes(b"a\nb\n" * 100)
    program = str(EXAMPLES / "line_count.vasm")
    assert run_cli("run", program, str(data), "--backend", "cpu", "--jit") != 0
    assert "needs the cuda backend" in capsys.readouterr().err
    assert run_cli("run", program, str(data), "--backend", "cpu", "--json") == 0
    [result] = json.loads(capsys.readouterr().out)["files"][0]["results"]
    assert result["jit_chunks"] == 0 and result["outputs"]["lines"] == [200]
