"""The cache's shard layout: concurrent writers lose nothing, a killed writer resumes, sealed shards merge."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyfuse.cache import OutputCache, compact, sealed_shards
from polyfuse.errors import PolyfuseError
from tests.helpers.workflow import REPO, cache_entries, killed_shard_rows

# One writer: puts `count` entries under its own prefix and `count` under a prefix all writers share,
# reading the shared ones back as it goes, then seals its shard (or is killed before it can).
WRITER = """
import sys, time
from polyfuse.cache import OutputCache
directory, writer, count, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with OutputCache(directory, writer=writer) as cache:
    for i in range(count):
        cache.put(f"{writer}-{i}", {"text": f"{writer} {i}", "i": i})
        cache.put(f"shared-{i}", {"text": f"shared {i}", "i": i})
        assert cache.get(f"shared-{i}") == {"text": f"shared {i}", "i": i}
        time.sleep(pause)
"""


def start_writer(directory: Path, writer: str, count: int, pause: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), writer, str(count), str(pause)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )


def intact(shard: Path) -> bool:
    with sqlite3.connect(f"file:{shard}?mode=ro", uri=True) as db:
        return db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_concurrent_writers_of_one_model_lose_no_entry(tmp_path):
    directory = tmp_path / "cache/smol"
    writers = [start_writer(directory, f"job{k}", 300) for k in range(4)]
    for process in writers:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    shards = sealed_shards(directory)
    assert len(shards) == 4 and all(intact(shard) for shard in shards)
    assert list((directory / "open").iterdir()) == []  # every writer sealed its shard
    keys = [f"job{k}-{i}" for k in range(4) for i in range(300)] + [f"shared-{i}" for i in range(300)]
    with OutputCache(directory) as reader:
        found = reader.get_many(keys)
        assert len(found) == len(keys) == 1500 and reader.hits == 1500
        assert found["job2-299"] == {"text": "job2 299", "i": 299} and found["shared-7"]["i"] == 7
    assert list((directory / "open").iterdir()) == [], "a reader that wrote nothing leaves no shard"


def test_a_killed_writer_resumes_its_own_shard_and_others_never_read_it_half_written(tmp_path):
    directory = tmp_path / "cache/gemma"
    process = start_writer(directory, "sample-abc", 10_000, pause=0.002)
    deadline = time.time() + 120
    while cache_entries(directory) < 200 and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    own = directory / "open/sample-abc.sqlite"
    assert own.exists() and sealed_shards(directory) == []
    written = killed_shard_rows(own, tmp_path / "copy")  # the kill may have cut a transaction short: intact anyway
    assert 200 <= written < 20_000

    with OutputCache(directory, writer="other-job") as other:  # the killed job's shard is not sealed: not read
        assert other.get("sample-abc-0") is None
    with OutputCache(directory, writer="sample-abc") as resumed:  # the same job, run again, finds its work
        found = resumed.get_many(f"sample-abc-{i}" for i in range(written // 2))
        assert len(found) == written // 2 and found["sample-abc-0"] == {"text": "sample-abc 0", "i": 0}
    (shard,) = sealed_shards(directory)
    assert shard.name.startswith("sample-abc.") and intact(shard) and not own.exists()


def test_compaction_merges_sealed_shards_and_a_reader_opened_before_it_still_finds_every_entry(tmp_path):
    directory = tmp_path / "cache/judge"
    for k in range(3):
        with OutputCache(directory, writer=f"judge-{k}") as cache:
            for i in range(50):
                cache.put(f"k{k}-{i}", i)
                cache.put("common", "same")
    with OutputCache(directory, writer="early") as early:
        assert compact(directory) == (3, 151)
        (merged,) = sealed_shards(directory)
        assert merged.name.startswith("compact.") and intact(merged)
        assert len(early.get_many(f"k{k}-{i}" for k in range(3) for i in range(50))) == 150
    with OutputCache(directory) as late:
        assert late.get("k2-49") == 49 and late.get("common") == "same"
    assert compact(directory) == (0, 0)  # one shard: nothing to merge


def test_a_damaged_shard_is_one_error_naming_it(tmp_path):
    directory = tmp_path / "cache/smol"
    directory.mkdir(parents=True)
    (directory / "sample-x.0123.sqlite").write_bytes(b"not a database, a file cut short by a full disk")
    with OutputCache(directory) as cache:
        with pytest.raises(PolyfuseError, match=r"sample-x\.0123\.sqlite: not a readable cache shard"):
            cache.get("anything")
