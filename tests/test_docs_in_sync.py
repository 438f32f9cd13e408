"""docs/VIR0.md carries no hand-typed opcode, enum value, limit or container byte.

Its generated blocks must equal what ``vyre_runtime.vir0.docgen`` prints from the code; when a
test here fails, regenerate them with ``python -m vyre_runtime.vir0.docgen --write`` and review
the diff (a changed opcode or limit is a change of the specification).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vyre_runtime import docblocks
from vyre_runtime.vir0 import container, docgen, isa
from vyre_runtime.vir0.verify import verify

DOC = Path(__file__).resolve().parents[1] / "docs" / "VIR0.md"
REGENERATE = f"docs/VIR0.md is out of date with the code; regenerate it with `{docgen.REGENERATE_COMMAND}`"


def _doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_reference_tables_in_vir0_md_match_the_isa() -> None:
    block = docblocks.extract_block(_doc_text(), docgen.TABLES_BEGIN, docgen.TABLES_END)
    assert block == docgen.opcode_table_markdown(), REGENERATE


def test_worked_example_bytes_in_vir0_md_match_the_container_encoder() -> None:
    block = docblocks.extract_block(_doc_text(), docgen.EXAMPLE_BEGIN, docgen.EXAMPLE_END)
    assert block == docgen.example_markdown(), REGENERATE


def test_every_opcode_appears_in_the_document_with_its_code() -> None:
    text = _doc_text()
    for info in isa.OPCODES:
        assert f"| `{info.code:#04x}` | `{info.name}` |" in text, f"{info.name} is missing from docs/VIR0.md"


def test_worked_example_program_verifies_and_round_trips() -> None:
    program = verify(docgen.example_program())
    assert container.decode(container.encode(program)) == program


def test_worked_example_assembly_in_vir0_md_assembles_to_the_documented_bytes() -> None:
    asm = pytest.importorskip("vyre_runtime.vir0.asm")
    after_marker = _doc_text().split("<!-- EXAMPLE SOURCE -->", 1)[1]
    source = re.search(r"```vasm\n(.*?)```", after_marker, re.DOTALL)
    assert source is not None, "docs/VIR0.md lost the ```vasm block after <!-- EXAMPLE SOURCE -->"
    assert asm.assemble(source.group(1)) == container.encode(docgen.example_program()), (
        "the example's assembly in docs/VIR0.md and docgen.example_program() disagree; edit them together"
    )


def test_write_rewrites_a_stale_block_and_check_then_passes(tmp_path: Path) -> None:
    stale = tmp_path / "VIR0.md"
    text = _doc_text()
    stale.write_text(
        docgen.replace_block(text, docgen.TABLES_BEGIN, docgen.TABLES_END, "| stale |\n"), encoding="utf-8"
    )
    assert docgen.main(["--check", "--doc", str(stale)]) == 1
    assert docgen.main(["--write", "--doc", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert docgen.main(["--check", "--doc", str(stale)]) == 0


def test_a_document_without_markers_is_reported_not_overwritten(tmp_path: Path) -> None:
    bare = tmp_path / "bare.md"
    bare.write_text("# no generated blocks here\n", encoding="utf-8")
    assert docgen.main(["--write", "--doc", str(bare)]) == 1
    assert bare.read_text(encoding="utf-8") == "# no generated blocks here\n"
