"""`vyre doctor`: one line per check, each "ok", "missing" or "failed", and it never hangs."""

from __future__ import annotations

import pytest

from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.cli import main


def test_doctor_reports_every_check_on_its_own_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VYRE_CACHE_DIR", str(tmp_path))
    status = main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    checks = {line.split()[0]: line for line in lines}
    assert {"python", "numpy", "cpu", "cuda-bindings"} <= set(checks)
    assert checks["cpu"].split()[2].startswith("ok")
    for line in lines:
        assert line[21:].split(":")[0] in ("ok", "missing", "failed"), line
    if cuda_unavailable_reason() is not None and "cuda-bindings        ok" in checks["cuda-bindings"]:
        assert checks["gpu"][21:].startswith("missing")
        assert any(line.startswith("megakernel sm_90") and line[21:].startswith("ok") for line in lines)
    assert status == (1 if any(line[21:].startswith("failed") for line in lines) else 0)


def test_doctor_reports_io_uring_and_names_the_fallback_when_it_is_off(capsys, monkeypatch):
    from vyre_runtime.ingest.uring import io_uring_status

    main(["doctor"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("io_uring")]
    assert line[21:].startswith("ok" if io_uring_status()[0] else "missing")
    monkeypatch.setenv("VYRE_DISABLE_IO_URING", "1")
    main(["doctor"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("io_uring")]
    assert line[21:].startswith("missing") and "preadv fallback" in line


def test_doctor_shows_an_unlimited_memlock_limit_as_unlimited(capsys, monkeypatch):
    # root on the GPU machine has RLIMIT_MEMLOCK = RLIM_INFINITY; the doctor crashed on it once
    import resource

    real = resource.getrlimit

    def unlimited_memlock(which):
        if which == resource.RLIMIT_MEMLOCK:
            return (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        return real(which)

    monkeypatch.setattr(resource, "getrlimit", unlimited_memlock)
    main(["doctor"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("io_uring")]
    if line[21:].startswith("ok"):
        assert "memlock limit unlimited" in line


def test_doctor_reports_the_ingest_read_defaults(capsys, monkeypatch):
    from vyre_runtime.ingest import reader
    from vyre_runtime.ingest.uring import io_uring_status

    monkeypatch.delenv("VYRE_DISABLE_IO_URING", raising=False)
    if not io_uring_status()[0]:
        pytest.skip("io_uring unavailable: the doctor prints no read defaults")
    main(["doctor"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ingest reads")]
    assert "READ_FIXED" in line and "MiB reads" in line and "THP" in line
    assert f"capped at {reader.DEFAULT_IOWQ_WORKERS} of {reader.usable_cpus()} CPUs" in line
    monkeypatch.setattr(reader, "DEFAULT_IOWQ_WORKERS", reader.KERNEL_CAPS)
    main(["doctor"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ingest reads")]
    assert "the kernel's io-wq caps" in line
