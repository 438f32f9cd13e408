"""Loops whose trip loads jit_wide.py plans (aligned reads, wide spans), shared by the CI text and
NVRTC tests (test_jit.py) and the GPU differential test (test_cuda_jit.py).

Lane i walks its own 512 bytes from byte 512 i + shift, so the shift decides which copy of the
speculative step runs: 0, every span 16-byte aligned (uint4 pieces); 4, words aligned but not the
spans (the vote fails: today's loads); 2, misaligned words. Lanes whose bytes run past the region
fault mid-span (OOB_INPUT at the first word crossing it), as the interpreter does."""

from __future__ import annotations


def contiguous_words(shift: int) -> str:
    """Each trip adds the next word: the address advances by the load's size (one span)."""
    return f""".program wide_words_{shift}
.registers 10
.lanes 64
.binding sum 2 run sum
    sreg r0, lane_id
    shl r3, r0, 9
    add r3, r3, {shift}     ; this lane's first byte
    add r4, r3, 512         ; and its end
    li r5, 0
    li r8, 0
loop:
    geu r6, r3, r4
    jnz r6, done
    ldi32 r7, r3, 0
    add r5, r5, r7
    xor r8, r8, r7
    rotl r8, r8, 5
    add r3, r3, 4
    jmp loop
done:
    li r6, 0
    atadd r6, r6, r5, sum
    li r6, 1
    atadd r6, r6, r8, sum
    exit
"""


def unrolled_words(shift: int) -> str:
    """Four words a trip at offsets 0..12 from one register that strides 16 x lanes (the
    hand-written checksum's pattern): one 16-byte piece per trip."""
    return f""".program wide_unrolled_{shift}
.registers 12
.lanes 64
.binding sum 2 run sum
    sreg r0, lane_id
    sreg r1, lane_count
    sreg r2, region_len
    shl r3, r0, 4
    add r3, r3, {shift}
    shl r1, r1, 4           ; the stride: 16 bytes a lane
    li r5, 0
loop:
    geu r6, r3, r2
    jnz r6, done
    ldi32 r7, r3, 0
    ldi32 r8, r3, 4
    ldi32 r9, r3, 8
    ldi32 r10, r3, 12
    add r5, r5, r7
    add r5, r5, r8
    xor r5, r5, r9
    add r5, r5, r10
    add r3, r3, r1
    jmp loop
done:
    li r6, 0
    atadd r6, r6, r5, sum
    exit
"""


def mixed_bytes(shift: int) -> str:
    """A byte and a 16-bit load at odd offsets, 3 bytes a trip: some 16-bit loads straddle a word
    (read one at a time, or by jit_load when not aligned with the class's first)."""
    return f""".program wide_bytes_{shift}
.registers 10
.lanes 64
.binding sum 2 run sum
    sreg r0, lane_id
    shl r3, r0, 9
    add r3, r3, {shift}
    add r4, r3, 300
    li r5, 0
    li r8, 0
loop:
    geu r6, r3, r4
    jnz r6, done
    ldi8 r7, r3, 0
    ldi16 r9, r3, 1
    add r5, r5, r7
    mul r8, r8, 31
    add r8, r8, r9
    add r3, r3, 3
    jmp loop
done:
    li r6, 0
    atadd r6, r6, r5, sum
    li r6, 1
    atadd r6, r6, r8, sum
    exit
"""


WIDE_PROGRAMS = [
    *(contiguous_words(shift) for shift in (0, 4, 2)),
    *(unrolled_words(shift) for shift in (0, 4, 1)),
    *(mixed_bytes(shift) for shift in (0, 1)),
]
