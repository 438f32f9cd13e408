"""Which programs run as native code: the JIT policy, per-program paths and background builds.

Programs are interpreted by default. A program is JIT-compiled (backends/cuda/jit.py) when the
caller asks (`Megakernel.jit`) or, under the "auto" policy, once its code has run `hot_runs`
times interpreted (counted by code, so the handles a stream registers per file add up).
Builds happen on a background thread: every program wanted so far goes into one megakernel
variant (NVRTC, through the build cache), and the Megakernel swaps to it (_swap_to_variant: a
pause that leaves queued slots PUBLISHED, then a relaunch of the new module), so nothing is lost
or run twice. Requests that arrive while a build runs share the next build.

Only the CUDA backend compiles; on the CPU backend "auto" never triggers and an explicit request
is refused with a clear error. `Megakernel.stats().programs` reports each program's state and
how many of its runs took each path, as the device reported them (CONTEXT.path).
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from vyre_runtime.errors import BackendError, DispatchError
from vyre_runtime.registry import Registry
from vyre_runtime.vir0.program import Program

JIT_MODES = ("off", "request", "auto")
DEFAULT_HOT_RUNS = 256
# At interpreter exit, how long to wait for a JIT build still inside NVRTC. A process that exits
# while a daemon thread is compiling tears NVRTC's library state down under it (SIGSEGV after
# the results were printed); the build thread ends itself once its compile returns.
EXIT_BUILD_WAIT_S = 300.0

_MANAGERS: weakref.WeakSet[JitManager] = weakref.WeakSet()


def _finish_builds_at_exit() -> None:
    """atexit: close every JIT manager and wait for its build thread to end (bounded)."""
    for manager in list(_MANAGERS):
        manager.close()
        manager.join(EXIT_BUILD_WAIT_S)


atexit.register(_finish_builds_at_exit)


@dataclass(frozen=True)
class JitPolicy:
    """``mode``: "off" (always interpret), "request" (only what `Megakernel.jit` names) or
    "auto" (also any program after ``hot_runs`` interpreted runs). ``settle_s``: a build waits
    this long after the first new request so that requests close together share one build."""

    mode: str = "auto"
    hot_runs: int = DEFAULT_HOT_RUNS
    settle_s: float = 0.2

    def __post_init__(self) -> None:
        if self.mode not in JIT_MODES:
            raise DispatchError(f"jit mode {self.mode!r}; choose one of {JIT_MODES}")
        if self.hot_runs < 1:
            raise DispatchError(f"jit hot_runs={self.hot_runs}; a program is hot after >= 1 runs")
        if not 0.0 <= self.settle_s <= 60.0:
            raise DispatchError(f"jit settle_s={self.settle_s}; allowed 0..60 seconds")

    @classmethod
    def of(cls, value: JitPolicy | str) -> JitPolicy:
        return value if isinstance(value, JitPolicy) else cls(mode=value)


@dataclass(frozen=True)
class ProgramPath:
    """One registered program in `Stats.programs`."""

    name: str
    state: str  # "interpreted", "compiling", "jit" (the serving module holds it) or "failed"
    runs_interpreted: int
    runs_jit: int
    error: str | None = None  # why its build failed


@dataclass
class _Waiter:
    keys: set[str]
    future: Future


class JitManager:
    """The policy's bookkeeping and the build thread of one Megakernel."""

    def __init__(
        self,
        device: Any,
        registry: Registry,
        policy: JitPolicy,
        code_key: Callable[[Program], str],
        swap: Callable[[dict[str, Program]], None],
    ) -> None:
        self.device = device
        self._swap = swap  # builds a variant of these programs and makes it the serving kernel
        self.registry = registry
        self.policy = policy
        self.supported = bool(getattr(device, "supports_jit", False))
        self._code_key = code_key
        self._lock = threading.Condition()
        self._runs: dict[int, list[int]] = {}  # handle -> [interpreted, jit]
        # interpreted runs per code key: what makes code hot, whichever handles ran it (a stream
        # registers its programs afresh for every file, and they share one native function)
        self._key_runs: dict[str, int] = {}
        self._keys: dict[int, str] = {}  # handle -> code key
        self._wanted: dict[str, Program] = {}  # every code key asked for (built or not)
        self._serving: set[str] = set()  # keys the running module holds
        self._failed: dict[str, str] = {}
        self._waiters: list[_Waiter] = []
        self._building = False
        self._closed = False
        self._thread: threading.Thread | None = None
        _MANAGERS.add(self)

    # ------------------------------------------------------------------ events

    def observe(self, handle: int, path: str) -> None:
        """A run of ``handle`` finished on ``path`` (the reaper calls this: keep it cheap)."""
        with self._lock:
            runs = self._runs.setdefault(handle, [0, 0])
            runs[path == "jit"] += 1
            if path != "interpreted" or self.policy.mode != "auto" or not self.supported:
                return
            entry = self.registry.programs.get(handle)
            if entry is None:
                return  # unregistered meanwhile: its code is counted through the handles that remain
            key = self._keys.get(handle) or self._keys.setdefault(handle, self._code_key(entry.program))
            count = self._key_runs[key] = self._key_runs.get(key, 0) + 1
            if count >= self.policy.hot_runs and key not in self._wanted and key not in self._failed:
                self._want(key, entry.program)

    def module_replaced(self) -> None:
        """Someone relaunched the device with a build of their own: every program interprets
        again, and nothing is rebuilt unless asked again (or hot again, under "auto")."""
        with self._lock:
            self._serving.clear()
            self._wanted.clear()
            self._key_runs.clear()

    def forget(self, handle: int) -> None:
        """``handle`` was unregistered (its code stays in the module: other handles may share it)."""
        with self._lock:
            self._runs.pop(handle, None)
            self._keys.pop(handle, None)

    def request(self, handles: Iterable[int]) -> Future:
        """Compile ``handles``; the Future resolves once the serving module runs them natively."""
        handles = list(handles)
        with self._lock:
            for handle in handles:  # the caller's arguments first, on every backend
                self._check_handle(handle)
        if not self.supported:
            raise BackendError(
                f"the {getattr(self.device, 'name', '?')} backend interprets every program: JIT compiles "
                "VIR0 to CUDA and needs the cuda backend",
                "run on a GPU (backend='cuda'); on the CPU the NumPy interpreter is the fast path",
            )
        if self.policy.mode == "off":
            raise DispatchError("this Megakernel was made with jit='off'", "use jit='request' or 'auto'")
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise BackendError("the Megakernel is shut down", "open a new one")
            keys = set()
            for handle in handles:
                self._check_handle(handle)  # again: it may have been unregistered meanwhile
                key = self._key(handle)
                if self._failed.pop(key, None) is not None:  # asked again: try again (it may have been transient)
                    self._wanted.pop(key, None)
                keys.add(key)
                if key not in self._wanted:
                    self._want(key, self.registry.programs[handle].program)
            missing = keys - self._serving
            if not missing:
                future.set_result(None)
            else:
                self._waiters.append(_Waiter(missing, future))
        return future

    def _check_handle(self, handle: int) -> None:  # under the lock
        if handle in self.registry.fused:
            members = ", ".join(map(str, self.registry.fused[handle].members))
            raise DispatchError(
                f"handle {handle} is a fused group; the JIT compiles programs",
                f"jit() its members ({members}): the group's runs then use their native code",
            )
        if handle not in self.registry.programs:
            raise DispatchError(f"program handle {handle} is not registered", "register_program() first")

    # ------------------------------------------------------------------ reporting

    def states(self) -> dict[int, ProgramPath]:
        with self._lock:
            result = {}
            for handle, entry in list(self.registry.programs.items()):
                key = self._key(handle)
                if key in self._serving:
                    state = "jit"
                elif key in self._failed:
                    state = "failed"
                elif key in self._wanted:
                    state = "compiling"
                else:
                    state = "interpreted"
                interpreted, native = self._runs.get(handle, (0, 0))
                result[handle] = ProgramPath(entry.program.name, state, interpreted, native, self._failed.get(key))
            return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiters, self._waiters = self._waiters, []
            self._lock.notify_all()
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(BackendError("the Megakernel shut down before the JIT build finished"))

    @property
    def closed(self) -> bool:
        """close() was called: no swap may begin (a build that finishes now is dropped)."""
        return self._closed

    def join(self, timeout: float) -> bool:
        """After close(): wait up to ``timeout`` s for the build thread to end (a build in
        NVRTC cannot be interrupted; the thread returns once it does). True when it has."""
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # ------------------------------------------------------------------ the build thread

    def _key(self, handle: int) -> str:  # under the lock
        key = self._keys.get(handle)
        if key is None:
            key = self._keys[handle] = self._code_key(self.registry.programs[handle].program)
        return key

    def _want(self, key: str, program: Program) -> None:  # under the lock
        self._wanted[key] = program
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="vyre-jit", daemon=True)
            self._thread.start()
        self._lock.notify_all()

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._closed and set(self._wanted) - self._failed.keys() <= self._serving:
                    self._lock.wait()
                if self._closed:
                    return
            time.sleep(self.policy.settle_s)  # let requests close together join this build
            with self._lock:
                if self._closed:
                    return
                wanted = {k: p for k, p in self._wanted.items() if k not in self._failed}
                self._building = True
            try:
                self._swap(wanted)
                error = None
            except Exception as exc:  # a failed build or swap: these programs stay interpreted
                error = exc
            with self._lock:
                self._building = False
                if error is None:
                    self._serving = set(wanted)
                else:
                    message = error.one_line() if hasattr(error, "one_line") else str(error)
                    for key in set(wanted) - self._serving:
                        self._failed[key] = message
                settled = self._settle_waiters(error)
            for future, failure in settled:  # outside the lock: done-callbacks may call back in
                if failure is None:
                    future.set_result(None)
                else:
                    future.set_exception(failure)

    def _settle_waiters(self, error: Exception | None) -> list[tuple[Future, Exception | None]]:  # under the lock
        """The waiters this build answers (removed from the list), with their outcome."""
        remaining, settled = [], []
        for waiter in self._waiters:
            if waiter.keys <= self._serving:
                settled.append((waiter.future, None))
            elif error is not None and waiter.keys & self._failed.keys():
                failure = BackendError(
                    f"the JIT build failed: {error}", "the programs stay interpreted; jit() them again to retry"
                )
                settled.append((waiter.future, failure))
            else:
                remaining.append(waiter)
        self._waiters = remaining
        return settled


__all__ = ["JIT_MODES", "JitManager", "JitPolicy", "ProgramPath"]
