"""The build cache: content keys, a bounded memory LRU, and a disk store that survives corrupt,
truncated, tampered and hostile entries and several processes writing at once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from vyre_runtime import cache
from vyre_runtime.cache import FOOTER, BuildCache, CacheWarning, cache_key
from vyre_runtime.cli import main

ROOT = Path(__file__).resolve().parent.parent
KEY = cache_key("source", "options", kind="cubin")
OTHER_KEY = cache_key("source", "other options", kind="cubin")
PAYLOAD = b"\x7fELF" + bytes(range(256)) * 8
META = {"log": "warning: none", "names": {"vyre_megakernel": "vyre_megakernel"}}


@pytest.fixture(autouse=True)
def private_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    return root


class Builder:
    """A build function that counts its calls."""

    def __init__(self, payload: bytes = PAYLOAD, meta: dict | None = None) -> None:
        self.payload, self.meta, self.calls = payload, META if meta is None else meta, 0

    def __call__(self) -> tuple[bytes, dict]:
        self.calls += 1
        return self.payload, self.meta


def fresh(root: Path, **options) -> BuildCache:
    return BuildCache(root, **options)


def stored(root: Path) -> BuildCache:
    """A cache holding KEY, and the path of its file."""
    store = fresh(root)
    store.put("cubin", KEY, PAYLOAD, META)
    return store


def test_an_entry_is_a_memory_hit_then_a_disk_hit_for_a_fresh_instance(private_root):
    store = stored(private_root)
    assert store.get("cubin", KEY) == (PAYLOAD, META, "memory")
    again = fresh(private_root)
    assert again.get("cubin", KEY) == (PAYLOAD, META, "disk")
    assert again.get("cubin", KEY)[2] == "memory"  # a disk hit is remembered
    path = again.entry_path("cubin", KEY)
    assert path == private_root / "cubin" / KEY[:2] / f"{KEY}.bin"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stats = again.stats()
    assert (stats.memory_hits, stats.disk_hits, stats.misses, stats.corrupt) == (1, 1, 0, 0)
    assert (stats.disk_entries, stats.disk_bytes) == (1, path.stat().st_size)


def test_get_or_build_builds_once_then_answers_from_memory_and_disk(private_root):
    builder = Builder()
    store = fresh(private_root)
    assert store.get_or_build("cubin", KEY, builder) == (PAYLOAD, META, "built")
    assert store.get_or_build("cubin", KEY, builder) == (PAYLOAD, META, "memory")
    assert fresh(private_root).get_or_build("cubin", KEY, builder) == (PAYLOAD, META, "disk")
    assert builder.calls == 1
    assert store.stats().misses == 1


def test_metadata_handed_out_is_a_copy_the_caller_may_edit(private_root):
    store = stored(private_root)
    store.get("cubin", KEY)[1]["names"].clear()
    assert store.get("cubin", KEY)[1] == META


def test_every_part_and_its_boundaries_and_the_kind_change_the_key():
    base = cache_key("ab", "c", kind="cubin")
    assert base == cache_key("ab", b"c", kind="cubin")  # str is its UTF-8 bytes
    assert len(base) == 64 and int(base, 16) >= 0
    variants = [
        cache_key("a", "bc", kind="cubin"),  # same concatenation, other boundary
        cache_key("abc", kind="cubin"),
        cache_key("ab", "c", "", kind="cubin"),  # an empty part still counts
        cache_key("ab", "d", kind="cubin"),
        cache_key("ab", "c", kind="jit"),
        cache_key("c", "ab", kind="cubin"),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_a_key_or_kind_that_could_name_another_path_is_refused(private_root):
    store = fresh(private_root)
    for kind, key in (("../up", KEY), ("cubin", "../" + KEY[3:]), ("cubin", KEY.upper()), ("", KEY)):
        with pytest.raises(cache.VyreError):
            store.get(kind, key)
    with pytest.raises(cache.VyreError):
        cache_key("x", kind="Not/A/Kind")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "where",
    ["payload start", "payload end", "metadata", "footer magic", "footer lengths", "footer digest", "last byte"],
)
def test_a_flipped_byte_anywhere_is_a_miss_that_is_rebuilt_and_rewritten(private_root, where):
    path = stored(private_root).entry_path("cubin", KEY)
    size = path.stat().st_size
    meta_at = len(PAYLOAD) + 3
    footer = size - FOOTER.size
    offset = {
        "payload start": 0,
        "payload end": len(PAYLOAD) - 1,
        "metadata": meta_at,
        "footer magic": footer,
        "footer lengths": footer + 16,
        "footer digest": footer + 40,
        "last byte": size - 1,
    }[where]
    _flip(path, offset)
    builder = Builder()
    store = fresh(private_root)
    assert store.get_or_build("cubin", KEY, builder) == (PAYLOAD, META, "built")
    assert builder.calls == 1 and store.stats().corrupt == 1
    assert fresh(private_root).get("cubin", KEY) == (PAYLOAD, META, "disk")  # rewritten whole


@pytest.mark.parametrize("keep", [0, 1, FOOTER.size - 1, FOOTER.size, 100, -1])
def test_a_truncated_entry_is_a_miss_and_is_removed(private_root, keep):
    path = stored(private_root).entry_path("cubin", KEY)
    data = path.read_bytes()
    path.write_bytes(data[: keep if keep >= 0 else len(data) + keep])
    store = fresh(private_root)
    assert store.get("cubin", KEY) is None
    assert store.stats().corrupt == 1 and not path.exists()


def test_an_entry_moved_to_another_keys_name_or_kind_is_a_miss(private_root):
    source = stored(private_root).entry_path("cubin", KEY)
    store = fresh(private_root)
    for kind, key in (("cubin", OTHER_KEY), ("jit", KEY)):
        target = store.entry_path(kind, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        assert store.get(kind, key) is None
    assert store.stats().corrupt == 2
    assert store.get("cubin", KEY) == (PAYLOAD, META, "disk")


def test_a_symlink_at_the_entry_is_never_followed_and_its_target_never_written(private_root, tmp_path):
    path = stored(private_root).entry_path("cubin", KEY)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(path.read_bytes())  # even a valid entry is not read through a link
    target_bytes = outside.read_bytes()
    path.unlink()
    path.symlink_to(outside)
    store = fresh(private_root)
    assert store.get("cubin", KEY) is None and store.stats().corrupt == 1
    assert outside.read_bytes() == target_bytes  # the link was removed, not its target
    path.symlink_to(outside)  # and again, now for the writer
    store.put("cubin", KEY, b"\x7fELF new", {"log": ""})
    assert not path.is_symlink() and path.is_file()
    assert outside.read_bytes() == target_bytes
    assert fresh(private_root).get("cubin", KEY) == (b"\x7fELF new", {"log": ""}, "disk")


def test_a_directory_at_the_entry_is_a_miss_and_is_never_written_into(private_root):
    store = fresh(private_root)
    path = store.entry_path("cubin", KEY)
    path.mkdir(parents=True)
    (path / "inside").write_bytes(b"keep")
    builder = Builder()
    assert store.get_or_build("cubin", KEY, builder)[2] == "built"
    assert path.is_dir() and os.listdir(path) == ["inside"]
    stats = store.stats()
    assert (stats.corrupt, stats.write_errors) == (1, 1)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    assert store.get("cubin", KEY)[2] == "memory"  # the process still has it


def test_a_fifo_at_the_entry_is_not_opened_so_a_read_cannot_block(private_root):
    store = fresh(private_root)
    path = store.entry_path("cubin", KEY)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    results = []
    reader = threading.Thread(target=lambda: results.append(store.get_or_build("cubin", KEY, Builder())), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading the cache blocked on a FIFO"
    assert results[0][2] == "built" and store.stats().corrupt == 1
    assert stat.S_ISREG(os.lstat(path).st_mode)  # the writer replaced the FIFO node with an entry


def test_a_read_only_root_costs_one_warning_and_builds_go_on_in_memory(private_root, monkeypatch):
    stored(private_root)
    directories = [private_root, *(p for p in private_root.rglob("*") if p.is_dir())]
    for directory in directories:
        directory.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permissions: fail the directory step as a read-only disk would

        def refuse(self, shard):
            raise PermissionError(13, "Permission denied", str(shard))

        monkeypatch.setattr(BuildCache, "_make_directories", refuse)
    try:
        store = fresh(private_root)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for part in ("one", "two", "three"):
                key = cache_key(part, kind="cubin")
                assert store.get_or_build("cubin", key, Builder())[2] == "built"
                assert store.get("cubin", key)[2] == "memory"
        assert [w.category for w in caught] == [CacheWarning]
        assert "cannot be written" in str(caught[0].message)
        assert store.get("cubin", KEY)[2] == "disk"  # what is there is still read
    finally:
        for directory in directories:
            directory.chmod(0o700)


def test_a_root_that_cannot_be_created_degrades_to_memory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = fresh(blocker / "cache")
    with pytest.warns(CacheWarning):
        assert store.get_or_build("cubin", KEY, Builder())[2] == "built"
    assert store.get("cubin", KEY)[2] == "memory"


def test_an_entry_over_the_size_limit_is_neither_written_nor_read(private_root):
    store = fresh(private_root, max_entry_bytes=1024)
    store.put("cubin", KEY, PAYLOAD, META)
    assert not store.entry_path("cubin", KEY).exists() and store.stats().write_errors == 1
    stored(private_root)  # a bigger limit writes it; the small one refuses to read it
    assert fresh(private_root, max_entry_bytes=1024).get("cubin", KEY) is None


def test_the_memory_lru_evicts_the_least_recently_used_by_entry_count():
    store = BuildCache(None, max_entries=3)
    keys = [cache_key(str(i), kind="jit") for i in range(4)]
    for key in keys[:3]:
        store.put("jit", key, b"x", {})
    store.get("jit", keys[0])  # now the most recent
    store.put("jit", keys[3], b"x", {})
    assert store.get("jit", keys[1]) is None
    assert all(store.get("jit", k) is not None for k in (keys[0], keys[2], keys[3]))
    stats = store.stats()
    assert (stats.memory_entries, stats.evictions, stats.root) == (3, 1, None)


def test_the_memory_lru_evicts_by_bytes_and_skips_what_alone_is_too_big():
    store = BuildCache(None, max_entries=100, max_bytes=1000)
    keys = [cache_key(str(i), kind="jit") for i in range(5)]
    for key in keys:
        store.put("jit", key, b"x" * 300, {})  # 302 bytes with "{}"
    stats = store.stats()
    assert stats.memory_bytes <= 1000 and stats.memory_entries == 3 and stats.evictions == 2
    assert [store.get("jit", k) is not None for k in keys] == [False, False, True, True, True]
    store.put("jit", cache_key("big", kind="jit"), b"x" * 2000, {})
    assert store.stats().memory_entries == 3


def test_clear_removes_entries_of_a_kind_and_follows_no_symlink_out_of_the_root(private_root, tmp_path):
    store = stored(private_root)
    store.put("jit", OTHER_KEY, b"jit", {})
    outside = tmp_path / "outside"
    (outside / KEY[:2]).mkdir(parents=True)
    victim = outside / KEY[:2] / f"{KEY}.bin"
    victim.write_bytes(b"not yours")
    (private_root / "linked").symlink_to(outside, target_is_directory=True)
    (private_root / "cubin" / KEY[:2] / "notes.txt").write_text("not an entry")
    assert set(store.disk_usage()) == {"cubin", "jit"}
    assert store.clear("jit")[0] == 1
    assert store.get("jit", OTHER_KEY) is None and store.get("cubin", KEY) is not None
    assert store.clear()[0] == 1
    assert store.get("cubin", KEY) is None
    assert victim.read_bytes() == b"not yours"
    assert (private_root / "cubin" / KEY[:2] / "notes.txt").exists()


def test_cache_root_prefers_vyre_cache_dir_then_xdg_cache_home_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "v"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.cache_root() == tmp_path / "v"
    monkeypatch.delenv(cache.CACHE_ENV)
    assert cache.cache_root() == tmp_path / "x" / "vyre-runtime"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "vyre-runtime"


def test_the_default_cache_follows_a_changed_root(monkeypatch, tmp_path):
    first = cache.default_cache()
    assert cache.default_cache() is first and first.root == cache.cache_root()
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert cache.default_cache().root == tmp_path / "elsewhere"


WRITER = """
import json, sys
import blake3
from vyre_runtime.cache import BuildCache, cache_key

root, worker, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = BuildCache(root, max_entries=0)  # no memory: every get reads the disk

def payload(key):
    return blake3.blake3(key.encode()).digest(length=50_000 + int(key[:3], 16))

shared = [cache_key("shared", str(i), kind="t") for i in range(5)]
seen = wrong = 0
for i in range(rounds):
    key = shared[(i + worker) % 5]
    store.put("t", key, payload(key), {"key": key})
    own = cache_key("own", str(worker), str(i), kind="t")
    store.put("t", own, payload(own), {"key": own})
    for probe in (shared[(i + worker + 1) % 5], own):
        found = store.get("t", probe)
        if found is not None:
            seen += 1
            wrong += found[0] != payload(probe) or found[1] != {"key": probe}
stats = store.stats()
print(json.dumps({"seen": seen, "wrong": wrong, "corrupt": stats.corrupt, "write_errors": stats.write_errors}))
"""


def test_concurrent_writers_from_several_processes_leave_only_whole_entries(private_root):
    processes, rounds = 4, 50
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(private_root), str(worker), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            text=True,
        )
        for worker in range(processes)
    ]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        reports.append(json.loads(out))
    for report in reports:
        assert report["wrong"] == 0 and report["corrupt"] == 0 and report["write_errors"] == 0, report
        assert report["seen"] > rounds  # every process read back its own entries at least
    store = fresh(private_root, max_entries=0)
    usage = store.disk_usage()
    assert usage["t"].entries == 5 + processes * rounds
    files = list((private_root / "t").rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]  # no temporary file left behind
    for path in (f for f in files if f.suffix == ".bin"):
        found = store.get("t", path.stem)
        assert found is not None and found[1] == {"key": path.stem}, path
    assert store.stats().corrupt == 0


def test_cli_cache_path_stats_and_clear(private_root, capsys):
    stored(private_root)
    assert main(["cache", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(private_root)
    assert main(["cache", "stats"]) == 0
    out = capsys.readouterr().out
    assert str(private_root) in out and any(line.split()[:2] == ["cubin", "1"] for line in out.splitlines())
    assert main(["cache", "stats", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["root"] == str(private_root) and document["entries"] == 1
    assert document["kinds"]["cubin"]["bytes"] == document["bytes"] > len(PAYLOAD)
    assert main(["cache", "clear", "--kind", "jit"]) == 0
    assert "removed 0 files" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed 1 files" in capsys.readouterr().out
    assert json.loads((main(["cache", "stats", "--json"]), capsys.readouterr().out)[1])["entries"] == 0


def test_cli_cache_clear_of_a_kind_that_is_not_a_name_is_a_one_line_error(capsys):
    assert main(["cache", "clear", "--kind", "../etc"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("vyre: error: ") and "(fix: " in error and error.count("\n") == 1


def _nvrtc_missing() -> bool:
    from vyre_runtime.backends.cuda import build
    from vyre_runtime.errors import BackendError

    try:
        build.nvrtc_version()
    except BackendError:
        return True
    return False


@pytest.mark.skipif(_nvrtc_missing(), reason="NVRTC is not importable here; install vyre-runtime[cuda]")
def test_compile_source_goes_through_the_cache_and_a_fresh_process_reads_the_same_cubin():
    from vyre_runtime.backends.cuda import build

    probe = '#include "vyre_abi.h"\nextern "C" __global__ void vyre_megakernel(Params params) {}\n'
    first = build.compile_source(probe, "sm_90", symbols=("vyre_megakernel",))
    assert not first.cached
    cache.default_cache().forget_memory()  # as a new process would start
    again = build.compile_source(probe, "sm_90", symbols=("vyre_megakernel",))
    assert again.cached and again.cubin == first.cubin and again.names == first.names and again.key == first.key
    assert cache.default_cache().stats().disk_hits == 1
    assert build.compile_source(probe, "sm_90", symbols=("vyre_megakernel",)).cached
    assert cache.default_cache().stats().memory_hits == 1
    entry = cache.default_cache().entry_path("cubin", first.key)
    assert entry.is_file() and entry.is_relative_to(cache.cache_root())
