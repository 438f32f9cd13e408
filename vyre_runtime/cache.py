"""The content-addressed build cache: an in-memory LRU in front of one file per entry on disk.

A key is BLAKE3 over everything that determines the artifact (``cache_key``: length-prefixed
parts, so no two different part lists hash alike); ``kind`` namespaces the entries ("cubin"
for NVRTC builds, "jit" for compiled programs). ``BuildCache.get_or_build`` answers from memory,
then disk, then calls the builder and stores what it returns.

On disk, under ``$VYRE_CACHE_DIR``, else ``$XDG_CACHE_HOME/vyre-runtime``, else
``~/.cache/vyre-runtime``, each entry is ``<root>/<kind>/<key[:2]>/<key>.bin``:

    payload | metadata (JSON) | footer (FOOTER: magic, format, lengths, BLAKE3 of kind, key, payload, metadata)

Why it is safe with several processes and hostile leftovers:
- A writer fills a fresh temporary file (O_EXCL, unique name) in the entry's own directory and
  renames it over the entry (``os.replace``, atomic): a reader sees the old file or the new one,
  never a partial one. Two processes building the same key both build; the last rename wins and
  both files are whole.
- A reader opens only regular files (lstat first, then O_NOFOLLOW | O_NONBLOCK and a matching
  fstat), so a symlink is never followed and a FIFO never blocks, bounds the size before reading,
  and checks the footer; the digest covers the key, so an entry copied to another key's name
  is a miss. Every failure is a miss (counted as ``corrupt``), the bad file is unlinked (never
  a directory) and the caller rebuilds. The footer is an integrity check, not a signature: the
  cache directory must be the user's own (it is created 0700).
- Without fsync a crash can leave a torn file; the footer makes it a miss, so fsync is optional.
- A cache directory that cannot be written (read-only, full) costs a recompile, never a crash:
  one warning (``CacheWarning``), then the instance stops writing to disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import struct
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import blake3

from vyre_runtime.errors import VyreError

CACHE_ENV = "VYRE_CACHE_DIR"
FORMAT_VERSION = 1
MAGIC = b"VYRECACH"
# magic, format version, flags (0), payload bytes, metadata bytes, BLAKE3 digest: 64 bytes, at the end
FOOTER = struct.Struct("<8sIIQQ32s")
DEFAULT_MAX_ENTRIES = 64
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_MAX_ENTRY_BYTES = 64 << 20
READ_ATTEMPTS = 4  # lstat/open/fstat rounds before a name that keeps being replaced counts as a miss

KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")
KEY = re.compile(r"[0-9a-f]{64}\Z")
ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.bin\Z")
TEMPORARY_NAME = re.compile(r"\.[0-9a-f]{64}\.\d+\.[0-9a-f]{8}\.tmp\Z")
SHARD_NAME = re.compile(r"[0-9a-f]{2}\Z")

Builder = Callable[[], tuple[bytes, dict]]


class CacheWarning(UserWarning):
    """The disk cache cannot be used (read-only or full directory): builds go on without it."""


def _encode(part: bytes | str) -> bytes:
    return part.encode() if isinstance(part, str) else bytes(part)


def cache_key(*parts: bytes | str, kind: str) -> str:
    """BLAKE3 hex over the format version, ``kind`` and ``parts`` (str as UTF-8), each prefixed with
    its length, so ("ab", "c") and ("a", "bc") differ."""
    _check_kind(kind)
    hasher = blake3.blake3(b"vyre-cache-key\0" + FORMAT_VERSION.to_bytes(4, "little"))
    for part in (kind, *parts):
        data = _encode(part)
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.hexdigest()


def _check_kind(kind: str) -> None:
    if not isinstance(kind, str) or not KIND.match(kind):
        raise VyreError(f"cache kind {kind!r} is not a short lower-case name", "use a name like 'cubin' or 'jit'")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not KEY.match(key):
        raise VyreError(f"cache key {key!r} is not 64 lower-case hex digits", "make it with cache.cache_key")


def cache_root() -> Path:
    """$VYRE_CACHE_DIR, else $XDG_CACHE_HOME/vyre-runtime (if absolute, per the XDG spec), else
    ~/.cache/vyre-runtime. Only computes the path; nothing is created."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "vyre-runtime"
    return Path.home() / ".cache" / "vyre-runtime"


def _digest(kind: str, key: str, payload: bytes, meta: bytes, header: bytes) -> bytes:
    hasher = blake3.blake3()
    for part in (kind.encode(), key.encode()):
        hasher.update(len(part).to_bytes(8, "little") + part)
    hasher.update(payload)
    hasher.update(meta)
    hasher.update(header)  # the footer up to the digest: lengths and version are covered too
    return hasher.digest()


def encode_entry(kind: str, key: str, payload: bytes, meta: bytes) -> bytes:
    """An entry file's bytes: payload, metadata, footer."""
    header = FOOTER.pack(MAGIC, FORMAT_VERSION, 0, len(payload), len(meta), b"")[:-32]
    return b"".join((payload, meta, header, _digest(kind, key, payload, meta, header)))


def decode_entry(kind: str, key: str, data: bytes) -> tuple[bytes, bytes] | None:
    """(payload, metadata) of an entry file's bytes, or None unless the footer proves it whole and
    written for this kind and key."""
    if len(data) < FOOTER.size:
        return None
    magic, version, flags, payload_size, meta_size, digest = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    if magic != MAGIC or version != FORMAT_VERSION or flags != 0:
        return None
    if payload_size + meta_size + FOOTER.size != len(data):
        return None
    payload = data[:payload_size]
    meta = data[payload_size : payload_size + meta_size]
    header = data[len(data) - FOOTER.size : len(data) - 32]
    if not secrets.compare_digest(digest, _digest(kind, key, payload, meta, header)):
        return None
    return payload, meta


@dataclass(frozen=True)
class CacheStats:
    memory_hits: int
    disk_hits: int
    misses: int  # neither in memory nor on disk
    corrupt: int  # disk entries refused: torn, tampered, foreign, not a regular file
    evictions: int  # memory LRU evictions
    write_errors: int  # entries not written to disk (unwritable directory, directory in the way)
    memory_entries: int
    memory_bytes: int
    disk_entries: int
    disk_bytes: int
    root: str | None  # None: memory only

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KindUsage:
    entries: int
    bytes: int


class BuildCache:
    """A memory LRU (bounded in entries and bytes) over a disk store at ``root`` (None: memory only).

    Thread-safe; several processes may share one ``root``."""

    def __init__(
        self,
        root: Path | str | None,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        fsync: bool = False,
    ) -> None:
        self.root = Path(root) if root is not None else None
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._memory: OrderedDict[tuple[str, str], tuple[bytes, bytes]] = OrderedDict()
        self._memory_bytes = 0
        self._disk_writable = self.root is not None
        self._counts = dict.fromkeys(("memory_hits", "disk_hits", "misses", "corrupt", "evictions", "write_errors"), 0)

    # -- the API ---------------------------------------------------------------------------

    def get_or_build(self, kind: str, key: str, build: Builder) -> tuple[bytes, dict, str]:
        """(payload, metadata, how) with how "memory", "disk" or "built"; ``build`` returns
        (payload bytes, JSON-serializable dict) and runs only on a miss."""
        found = self.get(kind, key)
        if found is not None:
            return found
        payload, meta = build()
        self.put(kind, key, payload, meta)
        return bytes(payload), json.loads(_meta_bytes(meta)), "built"

    def get(self, kind: str, key: str) -> tuple[bytes, dict, str] | None:
        """(payload, metadata, "memory" | "disk"), or None on a miss."""
        _check_kind(kind)
        _check_key(key)
        with self._lock:
            entry = self._memory.get((kind, key))
            if entry is not None:
                self._memory.move_to_end((kind, key))
                self._counts["memory_hits"] += 1
        if entry is not None:
            return entry[0], json.loads(entry[1]), "memory"  # a fresh dict: callers cannot edit the cache
        entry = self._read(kind, key)
        if entry is None:
            self._count("misses")
            return None
        self._count("disk_hits")
        self._remember(kind, key, *entry)
        return entry[0], json.loads(entry[1]), "disk"

    def put(self, kind: str, key: str, payload: bytes, meta: dict) -> None:
        _check_kind(kind)
        _check_key(key)
        if not isinstance(payload, (bytes, bytearray, memoryview)) or not isinstance(meta, dict):
            raise TypeError("a cache entry is (bytes, dict)")
        payload, meta_bytes = bytes(payload), _meta_bytes(meta)
        self._remember(kind, key, payload, meta_bytes)
        self._write(kind, key, payload, meta_bytes)

    def entry_path(self, kind: str, key: str) -> Path:
        _check_kind(kind)
        _check_key(key)
        if self.root is None:
            raise VyreError("this cache keeps no files (root=None)", "construct BuildCache with a directory")
        return self.root / kind / key[:2] / f"{key}.bin"

    def forget_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._memory_bytes = 0

    def stats(self) -> CacheStats:
        usage = self.disk_usage()
        with self._lock:
            counts = dict(self._counts)
            entries, size = len(self._memory), self._memory_bytes
        return CacheStats(
            **counts,
            memory_entries=entries,
            memory_bytes=size,
            disk_entries=sum(u.entries for u in usage.values()),
            disk_bytes=sum(u.bytes for u in usage.values()),
            root=str(self.root) if self.root is not None else None,
        )

    def disk_usage(self) -> dict[str, KindUsage]:
        """Entries and bytes on disk per kind (files named like entries; symlinks not followed)."""
        usage: dict[str, list[int]] = {}
        for kind, path in self._entry_files(None, temporaries=False):
            try:
                size = path.lstat().st_size
            except OSError:
                continue
            counts = usage.setdefault(kind, [0, 0])
            counts[0] += 1
            counts[1] += size
        return {kind: KindUsage(*counts) for kind, counts in sorted(usage.items())}

    def clear(self, kind: str | None = None) -> tuple[int, int]:
        """Remove the entries (and stray temporary files) of ``kind``, or of every kind, from
        memory and disk; (files removed, bytes). Only files named like entries inside real
        directories of the root are touched; symlinks are unlinked, never followed."""
        if kind is not None:
            _check_kind(kind)
        with self._lock:
            for memory_key in [k for k in self._memory if kind is None or k[0] == kind]:
                self._memory_bytes -= _size(self._memory.pop(memory_key))
        removed = removed_bytes = 0
        shards = set()
        for _, path in self._entry_files(kind, temporaries=True):
            try:
                size = path.lstat().st_size
                path.unlink()
            except OSError:
                continue
            removed, removed_bytes = removed + 1, removed_bytes + size
            shards.add(path.parent)
        for shard in shards:
            with contextlib.suppress(OSError):
                shard.rmdir()  # only if empty; another process may be writing into it
        return removed, removed_bytes

    # -- memory ----------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _remember(self, kind: str, key: str, payload: bytes, meta: bytes) -> None:
        entry = (payload, meta)
        if _size(entry) > self.max_bytes or self.max_entries < 1:
            return
        with self._lock:
            old = self._memory.pop((kind, key), None)
            if old is not None:
                self._memory_bytes -= _size(old)
            self._memory[(kind, key)] = entry
            self._memory_bytes += _size(entry)
            while len(self._memory) > self.max_entries or self._memory_bytes > self.max_bytes:
                _, evicted = self._memory.popitem(last=False)
                self._memory_bytes -= _size(evicted)
                self._counts["evictions"] += 1

    # -- disk ------------------------------------------------------------------------------

    def _read(self, kind: str, key: str) -> tuple[bytes, bytes] | None:
        if self.root is None:
            return None
        path = self.entry_path(kind, key)
        for _ in range(READ_ATTEMPTS):
            try:
                seen = os.lstat(path)
            except OSError:
                return None  # no entry (or no cache directory): a plain miss
            data = None
            if stat.S_ISREG(seen.st_mode) and FOOTER.size <= seen.st_size <= self.max_entry_bytes + FOOTER.size:
                try:
                    data = _read_regular(path, seen)
                except _ReplacedError:
                    continue  # another process renamed a new entry in since the lstat: look again
            entry = decode_entry(kind, key, data) if data is not None else None
            if entry is None:
                self._count("corrupt")
                _unlink_if_same(path, seen)
            return entry
        return None  # replaced under us on every attempt: a plain miss

    def _write(self, kind: str, key: str, payload: bytes, meta: bytes) -> None:
        if not self._disk_writable:
            return
        if len(payload) + len(meta) > self.max_entry_bytes:
            self._count("write_errors")
            return
        path = self.entry_path(kind, key)
        temporary = path.with_name(f".{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        created = False
        try:
            self._make_directories(path.parent)
            descriptor = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600
            )
            created = True
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(encode_entry(kind, key, payload, meta))
                    if self.fsync:
                        file.flush()
                        os.fsync(file.fileno())
                try:
                    in_the_way = stat.S_ISDIR(os.lstat(path).st_mode)
                except FileNotFoundError:
                    in_the_way = False
                if in_the_way:  # never replace (or write into) a directory at the entry's name
                    self._count("write_errors")
                    return
                # rename replaces a symlink or FIFO at the name itself, never what it points to
                os.replace(temporary, path)
                created = False
                if self.fsync:
                    _fsync_directory(path.parent)
            finally:
                if created:
                    os.unlink(temporary)
        except OSError as error:
            self._count("write_errors")
            self._writing_failed(error)

    def _make_directories(self, shard: Path) -> None:
        assert self.root is not None
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for directory in (shard.parent, shard):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
            if not stat.S_ISDIR(os.lstat(directory).st_mode):  # a symlink would lead out of the root
                raise OSError(errno.ENOTDIR, "not a directory of the cache", str(directory))

    def _writing_failed(self, error: OSError) -> None:
        unusable = error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
        if not unusable and self.root is not None and self.root.is_dir():
            return  # something in the way of one entry: that entry goes unwritten, the rest carry on
        with self._lock:
            if not self._disk_writable:
                return
            self._disk_writable = False
        warnings.warn(
            f"the vyre build cache at {self.root} cannot be written ({error.strerror}); building without it "
            f"(fix: make the directory writable, or point ${CACHE_ENV} at one)",
            CacheWarning,
            stacklevel=4,
        )

    def _entry_files(self, kind: str | None, *, temporaries: bool):
        """(kind, path) of every file named like an entry (or a temporary one) under real
        directories of the root; yields symlinks as files, never descends through one."""
        if self.root is None:
            return
        for kind_dir in _directories(self.root, KIND):
            if kind is not None and kind_dir.name != kind:
                continue
            for shard in _directories(Path(kind_dir.path), SHARD_NAME):
                try:
                    files = list(os.scandir(shard.path))
                except OSError:
                    continue
                for file in files:
                    if file.is_dir(follow_symlinks=False):
                        continue
                    if ENTRY_NAME.match(file.name) or (temporaries and TEMPORARY_NAME.match(file.name)):
                        yield kind_dir.name, Path(file.path)


def _directories(parent: Path, name: re.Pattern) -> list[os.DirEntry]:
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    return [e for e in entries if name.match(e.name) and e.is_dir(follow_symlinks=False)]


class _ReplacedError(Exception):
    """The name now points at another file than the one the lstat saw (a writer's rename)."""


def _read_regular(path: Path, seen: os.stat_result) -> bytes | None:
    """The bytes of the regular file ``seen`` at ``path``; None if it cannot be read whole."""
    # O_NOFOLLOW: a symlink swapped in after the lstat is not followed; O_NONBLOCK: nor does a
    # FIFO swapped in block the open; the fstat must be the very file the lstat saw.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except (FileNotFoundError, IsADirectoryError):
        raise _ReplacedError from None
    except OSError as error:
        if error.errno == errno.ELOOP:  # a symlink now: the next lstat sees it
            raise _ReplacedError from None
        return None
    try:
        opened = os.fstat(descriptor)
        if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
            raise _ReplacedError
        chunks, remaining = [], opened.st_size
        while remaining > 0:
            chunk = os.read(descriptor, remaining)
            if not chunk:
                return None  # shorter than its size: torn
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(descriptor)


def _size(entry: tuple[bytes, bytes]) -> int:
    return len(entry[0]) + len(entry[1])


def _meta_bytes(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def _unlink_if_same(path: Path, seen: os.stat_result) -> None:
    """Remove a bad entry, unless it is a directory or another writer already renamed a new file in."""
    if stat.S_ISDIR(seen.st_mode):
        return
    try:
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (seen.st_dev, seen.st_ino):
            os.unlink(path)
    except OSError:
        pass


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


_default: BuildCache | None = None
_default_lock = threading.Lock()


def default_cache() -> BuildCache:
    """The process-wide cache at ``cache_root()``; a new one (empty memory) when the root changes,
    so a changed $VYRE_CACHE_DIR takes effect. Memory only where no root can be named."""
    global _default
    try:
        root: Path | None = cache_root()
    except RuntimeError:  # no home directory to be found
        root = None
    with _default_lock:
        if _default is None or _default.root != root:
            _default = BuildCache(root)
        return _default
