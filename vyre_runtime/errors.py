"""One error hierarchy for the whole runtime.

Every error says what went wrong (the message) and how to fix it (``fix``), so the CLI can
print one line and a library user can show the fix without parsing text.
"""

from __future__ import annotations


class VyreError(Exception):
    """Root of every error the runtime raises on purpose."""

    default_fix = "see the vyre-runtime documentation (docs/)"

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix or self.default_fix

    def one_line(self) -> str:
        """The message and the fix on one line, as the CLI prints them."""
        return f"{self.message} (fix: {self.fix})"


class DecodeError(VyreError):
    """A VIR0 blob is malformed: wrong magic, truncated, over a limit, bad digest."""

    default_fix = "rebuild the program with `vyre asm` or the builder API; do not edit blobs by hand"


class VerifyError(VyreError):
    """A decoded program breaks a static rule: register range, jump target, binding, table."""

    default_fix = "correct the program source; `vyre verify` names the instruction at fault"


class AssembleError(VyreError):
    """VIR0 assembly text has an error at a line and column."""

    default_fix = "correct the assembly source at the line and column given"

    def __init__(self, message: str, line: int, column: int, fix: str | None = None) -> None:
        super().__init__(f"line {line}, column {column}: {message}", fix)
        self.line = line
        self.column = column


class DispatchError(VyreError):
    """The arguments of a run do not fit the program (lanes, region, bindings, capacity)."""

    default_fix = "check the run arguments against the program's declared bindings and limits"


class InputError(VyreError):
    """A file or data source the user named cannot be read."""

    default_fix = "check that the path exists and is readable"


class ProtocolError(VyreError):
    """A slot, control word, debug log or IO queue breaks the ring protocol (docs/PROTOCOL.md)."""

    default_fix = "check the slot against docs/PROTOCOL.md; publish through Megakernel, which validates it"


class RingFullError(VyreError):
    """Every slot of the ring is in flight and the caller asked not to wait (or waited too long)."""

    default_fix = "wait for results (poll/wait), use a larger ring (slots=...), or publish with a longer timeout"


class BackendError(VyreError):
    """A backend cannot start, has stopped, or did not answer within its deadline."""

    default_fix = "check `vyre` backend availability; use backend='cpu' where no GPU is usable"


class IngestError(VyreError):
    """A file read or an io_uring syscall failed, or a reader was used out of its contract."""

    default_fix = "check the file and its permissions; where io_uring itself fails, use reader='preadv'"
    errno: int | None = None  # the errno of the failed syscall, where one failed
