"""Pattern sets compiled to VIR0 DFA tables (the `.dfa` directive; read by `dfa` and `dfae`).

An Aho-Corasick automaton is built over the patterns and expanded into a full DFA: every state
has all 256 transitions, so the `dfa` intrinsic needs one table load per input byte and no
failure links at run time. Table layout (docs/VIR0.md §9): u32 n_states, then
n_states x 256 u32 transitions, each the target state with DFA_ACCEPT_BIT set when the target
accepts, i.e. when at least one pattern is a suffix of the bytes consumed so far. Start state 0.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Sequence

import numpy as np

from vyre_runtime.errors import VerifyError
from vyre_runtime.vir0 import isa

DFA_ROW_BYTES = 256 * 4
# A DFA must fit both the state limit and the total table budget (one row is 1 KiB).
MAX_PATTERN_STATES = min(isa.MAX_DFA_STATES, (isa.MAX_TABLE_BYTES_TOTAL - 4) // DFA_ROW_BYTES)


def _build_trie(patterns: Sequence[bytes]) -> tuple[list[dict[int, int]], list[bool]]:
    """Trie edges per state and whether a pattern ends at each state; state 0 is the root."""
    edges: list[dict[int, int]] = [{}]
    ends_pattern = [False]
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, (bytes, bytearray)):
            raise VerifyError(f"DFA pattern {index} is a {type(pattern).__name__}, not bytes", "pass patterns as bytes")
        if not pattern:
            raise VerifyError(
                f"DFA pattern {index} is empty; it would match at every position",
                "remove the empty pattern (count every byte with `tlen`/`sreg region_len` instead)",
            )
        state = 0
        for byte in pattern:
            child = edges[state].get(byte)
            if child is None:
                # Checked while inserting so a huge pattern fails before it allocates a huge trie.
                if len(edges) >= MAX_PATTERN_STATES:
                    raise VerifyError(
                        f"the patterns need more than {MAX_PATTERN_STATES} DFA states",
                        "split the patterns over several DFA tables or shorten them",
                    )
                child = len(edges)
                edges.append({})
                ends_pattern.append(False)
                edges[state][byte] = child
            state = child
        ends_pattern[state] = True
    return edges, ends_pattern


def compile_patterns(patterns: Sequence[bytes]) -> bytes:
    """The VIR0 DFA table that counts the byte positions where at least one pattern ends."""
    if not patterns:
        raise VerifyError("a DFA needs at least one pattern", 'give one or more patterns: .dfa NAME "p1" "p2"')
    edges, accepting = _build_trie(patterns)
    state_count = len(edges)
    transitions = np.zeros((state_count, 256), dtype=np.uint32)
    failure = [0] * state_count
    queue: deque[int] = deque()
    for byte, child in edges[0].items():
        transitions[0, byte] = child  # the root's children fail back to the root (failure 0)
        queue.append(child)
    # Breadth-first order: a state's failure state is shallower, so its row and its accepting
    # flag are final before the state itself is expanded.
    while queue:
        state = queue.popleft()
        fallback = failure[state]
        accepting[state] = accepting[state] or accepting[fallback]
        transitions[state] = transitions[fallback]
        for byte, child in edges[state].items():
            failure[child] = int(transitions[fallback, byte])
            transitions[state, byte] = child
            queue.append(child)
    accept_bits = np.where(np.array(accepting, dtype=bool), np.uint32(isa.DFA_ACCEPT_BIT), np.uint32(0))
    table = transitions | accept_bits[transitions]
    return struct.pack("<I", state_count) + table.astype("<u4").tobytes()
