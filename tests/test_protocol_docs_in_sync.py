"""docs/PROTOCOL.md carries no hand-typed word position, enum value, limit or digest.

Its generated blocks must equal what ``vyre_runtime.protocol.docgen`` prints from the code; when a
test here fails, regenerate them with ``python -m vyre_runtime.protocol.docgen --write`` and
review the diff (a changed word position or code is a change of the protocol). The region
formulas printed in the document are evaluated here against ``Layout`` for many geometries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vyre_runtime.backends.cpu import builtins
from vyre_runtime.protocol import debuglog, docgen, ioqueue
from vyre_runtime.protocol.codec import doorbell_entry, new_image, ring_doorbell
from vyre_runtime.protocol.layout import (
    DEBUG_RECORD_WORDS,
    MAX_DOORBELLS,
    MAX_IO_ENTRIES,
    MAX_OBSERVABLES,
    MAX_SLOTS,
    ControlWord,
    IoState,
    Layout,
    SlotFault,
    SlotState,
)
from vyre_runtime.protocol.opcodes import MAX_TENANTS, BuiltinOpcode

DOC = Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md"
REGENERATE = f"docs/PROTOCOL.md is out of date with the code; regenerate it with `{docgen.REGENERATE_COMMAND}`"


def _doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("block", docgen.BLOCKS, ids=[block.name for block in docgen.BLOCKS])
def test_every_generated_block_of_protocol_md_matches_the_code(block: docgen.GeneratedBlock) -> None:
    assert docgen.extract_block(_doc_text(), block.name) == block.render(), REGENERATE


def test_check_mode_agrees_that_the_document_is_up_to_date() -> None:
    assert docgen.main(["--check"]) == 0, REGENERATE


@pytest.mark.parametrize(
    ("member", "row"),
    [(state, f"| {int(state)} | `{state.name}` |") for state in SlotState]
    + [(fault, f"| {int(fault)} | `{fault.name}` |") for fault in SlotFault]
    + [(state, f"| {int(state)} | `{state.name}` |") for state in IoState]
    + [(op, f"| `{int(op):#x}` | `{op.name}` |") for op in BuiltinOpcode],
    ids=lambda value: getattr(value, "name", None) or "",
)
def test_every_state_fault_and_builtin_has_a_row_with_its_number(member: object, row: str) -> None:
    assert row in _doc_text(), f"{member!r} is missing from docs/PROTOCOL.md"


def test_every_control_word_is_documented_at_its_position() -> None:
    text = _doc_text()
    for word in ControlWord:
        assert f"| `{word.name}` |" in text and f"| {int(word)}" in text


layouts = st.builds(
    Layout,
    slots=st.integers(1, MAX_SLOTS),
    tenants=st.integers(1, MAX_TENANTS),
    observables=st.integers(1, MAX_OBSERVABLES),
    debug_records=st.integers(0, 16).map(lambda exponent: 1 << exponent),
    io_entries=st.integers(1, MAX_IO_ENTRIES),
    doorbells=st.integers(0, MAX_DOORBELLS.bit_length() - 1).map(lambda exponent: 1 << exponent),
)


@settings(max_examples=300, deadline=None)
@given(layouts)
def test_the_printed_region_formulas_compute_the_layouts_regions(layout: Layout) -> None:
    env = docgen.formula_environment(layout)
    computed = [
        (formula.region, docgen.evaluate(formula.first, env), docgen.evaluate(formula.words, env))
        for formula in docgen.FORMULAS
    ]
    assert computed == layout.regions()
    assert docgen.evaluate(docgen.TOTAL_FORMULA, env) == layout.total_words
    for formula in docgen.FORMULAS[1:]:
        assert env[formula.start_name] == getattr(layout, formula.start_name)


@settings(max_examples=200, deadline=None)
@given(layouts, st.data())
def test_the_printed_address_formulas_agree_with_the_code(layout: Layout, data: st.DataObject) -> None:
    env = docgen.formula_environment(layout)
    formulas = dict(docgen.ADDRESS_FORMULAS)
    slot = data.draw(st.integers(0, layout.slots - 1))
    word = data.draw(st.integers(0, 15))
    position = data.draw(st.integers(0, 0xFFFFFFFF))
    entry = data.draw(st.integers(0, layout.io_entries - 1))
    assert docgen.evaluate(formulas["word `w` of slot `i`"], env, i=slot, w=word) == layout.slot(slot) + word
    record = docgen.evaluate(formulas["debug record at position `p` (any u32)"], env, p=position)
    assert record == debuglog._record_base(layout, position)
    io_entry = docgen.evaluate(formulas["word `w` of IO entry `e`"], env, e=entry, w=0)
    assert io_entry == ioqueue._entry_base(layout, entry)
    assert docgen.evaluate(formulas["tenant mask of tenant `t`"], env, t=0) == layout.tenant_masks
    assert docgen.evaluate(formulas["metric counter `i`"], env, i=0) == layout.metrics
    assert docgen.evaluate(formulas["observable word `i`"], env, i=0) == layout.observable_base
    doorbell_entry = docgen.evaluate(formulas["doorbell entry at position `p` (any u32)"], env, p=position)
    assert doorbell_entry == layout.doorbell + position % layout.doorbells
    assert layout.doorbell <= doorbell_entry < layout.total_words


@pytest.mark.parametrize("tail", [0, 3, 7, 8, 0xFFFFFFFE, 0xFFFFFFFF])
def test_the_printed_doorbell_address_is_where_ring_doorbell_writes(tail: int) -> None:
    layout = Layout(slots=16, doorbells=8)
    image = new_image(layout)
    image[ControlWord.DOORBELL_TAIL] = image[ControlWord.DOORBELL_HEAD] = tail
    assert ring_doorbell(image, layout, [11, 12]) == 2
    formula = dict(docgen.ADDRESS_FORMULAS)["doorbell entry at position `p` (any u32)"]
    env = docgen.formula_environment(layout)
    for k, slot in enumerate([11, 12]):
        position = (tail + k) & 0xFFFFFFFF
        assert image[docgen.evaluate(formula, env, p=position)] == doorbell_entry(position, slot, layout.doorbells)


def test_the_doorbell_section_names_its_words_and_the_host_function() -> None:
    text = _doc_text()
    assert "### 4.7 The doorbell" in text
    section = text[text.index("### 4.7 The doorbell") : text.index("## 5. Opcodes")]
    for name in ("DOORBELL_TAIL", "DOORBELL_HEAD", "DOORBELL_CAPACITY", "codec.ring_doorbell", "fallback scan"):
        assert name in section
    rows = [f"| control: `{word.name}` |" for word in (ControlWord.DOORBELL_TAIL, ControlWord.DOORBELL_HEAD,
                                                      ControlWord.DOORBELL_CAPACITY)]  # fmt: skip
    assert all(row in text for row in rows), "the ownership table (3.1) lacks a doorbell word"


def test_documented_dfa_step_limit_is_the_devices() -> None:
    assert docgen.DFA_STEP_MAX_BYTES == builtins.DFA_STEP_MAX_BYTES


def test_documented_debug_record_layout_is_what_the_device_writes() -> None:
    layout = Layout(debug_records=4)
    image = new_image(layout)
    debuglog.append_record(image, layout, format_id=11, a=22, b=33, slot=44, tenant=55)
    base = debuglog._record_base(layout, 0)
    assert len(docgen.DEBUG_RECORD_DOC) == DEBUG_RECORD_WORDS
    assert image[base : base + DEBUG_RECORD_WORDS].tolist() == [1, 11, 22, 33, 44, 55, 0, 0]
    assert [text.split(" ")[0] for text in docgen.DEBUG_RECORD_DOC[:6]] == [
        "sequence:",
        "format",
        "a",
        "b",
        "slot",
        "tenant",
    ]


def test_an_undescribed_enum_member_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    partial = dict(docgen.FAULT_DOC)
    del partial[SlotFault.CANCELLED]
    monkeypatch.setattr(docgen, "FAULT_DOC", partial)
    with pytest.raises(RuntimeError, match="CANCELLED"):
        docgen.faults_markdown()


def test_write_rewrites_a_stale_block_and_check_then_passes(tmp_path: Path) -> None:
    stale = tmp_path / "PROTOCOL.md"
    text = _doc_text()
    stale.write_text(docgen.replace_block(text, "control", "| stale |\n"), encoding="utf-8")
    assert docgen.main(["--check", "--doc", str(stale)]) == 1
    assert docgen.main(["--write", "--doc", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert docgen.main(["--check", "--doc", str(stale)]) == 0


def test_a_document_without_markers_is_reported_not_overwritten(tmp_path: Path) -> None:
    bare = tmp_path / "bare.md"
    bare.write_text("# no generated blocks here\n", encoding="utf-8")
    assert docgen.main(["--write", "--doc", str(bare)]) == 1
    assert bare.read_text(encoding="utf-8") == "# no generated blocks here\n"


def test_printing_shows_every_block_between_its_markers(capsys: pytest.CaptureFixture[str]) -> None:
    assert docgen.main([]) == 0
    out = capsys.readouterr().out
    for block in docgen.BLOCKS:
        assert f"{docgen.begin_marker(block.name)}\n{block.render()}{docgen.end_marker(block.name)}" in out


def test_the_worked_example_slot_is_what_write_slot_writes() -> None:
    # the example block is generated by codec.write_slot itself; this pins what it shows
    block = docgen.extract_block(_doc_text(), "example")
    assert "| ARG8 = RESULT0 | `0x0` | `0x29` |" in block
    assert f"| STATUS | `{int(SlotState.PUBLISHED):#x}` | `{int(SlotState.DONE):#x}` |" in block
    # ... and its doorbell hint is what codec.ring_doorbell writes: the entry, then the tail
    entry = Layout().doorbell
    tagged = doorbell_entry(0, 207, Layout().doorbells)  # slot 207 at position 0: lap 0's tag
    assert f"| 1 | {entry} | `{4 * entry:#07x}` |" in block and f"| `{tagged:#010x}` |" in block
    assert f"| 2 | {int(ControlWord.DOORBELL_TAIL)} |" in block
