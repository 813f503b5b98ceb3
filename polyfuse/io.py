"""Streaming JSONL records, atomic file writes and content hashes.

Every artifact of the workflow is JSONL with one record per item. Readers yield
records one at a time and writers stream them to a temporary file that is renamed
into place only when complete, so memory stays flat and nothing half-written is
ever left under an output name.

Staged files and directories are named for their writer (host, boot, PID namespace, PID and start time),
so a writer removes what a killed writer left and never what a live one is writing,
on one machine or on cluster nodes sharing a file system. A job's own output replaces
its target (`atomic_path`, `staged_directory`); a cache that several jobs may fill
at once keeps the first complete copy (`published_path`, `published_directory`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from polyfuse.errors import PolyfuseError


def stable_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, so equal objects hash equally."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(obj: Any, length: int = 16) -> str:
    """Short hash of any JSON-serialisable object (prompts, params, templates)."""
    return sha256_hex(stable_json(obj))[:length]


def file_hash(path: str | os.PathLike, length: int = 16) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def is_utf8(text: str) -> bool:
    """Whether `text`, read with errors="surrogateescape", came from valid UTF-8 (no escaped byte in it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_jsonl_numbered(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) per non-blank line; a bad line raises naming file and line."""
    # Undecodable bytes become lone surrogates instead of failing the whole read, so the line can be named.
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if not is_utf8(line):
                raise PolyfuseError(f"{path}:{line_no}: not valid UTF-8")
            try:
                record = json.loads(line)
            except ValueError as exc:  # a JSONDecodeError, or an integer past Python's digit limit
                raise PolyfuseError(f"{path}:{line_no}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
            if not isinstance(record, dict):
                raise PolyfuseError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    for _, record in read_jsonl_numbered(path):
        yield record


def read_paired(items_path: str | os.PathLike, path: str | os.PathLike) -> Iterator[tuple[dict, dict]]:
    """Walk the items and a per-item artifact (pools, outputs) in step; they must list the same ids in order."""
    records = read_jsonl(path)
    for item in read_jsonl(items_path):
        record = next(records, None)
        if record is None or record["id"] != item["id"]:
            found = None if record is None else record["id"]
            raise PolyfuseError(f"{path}: expected a record for item {item['id']!r}, found {found!r}")
        yield item, record
    extra = next(records, None)
    if extra is not None:
        raise PolyfuseError(f"{path}: record {extra['id']!r} has no item in {items_path}")


def in_batches(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Lists of up to `size` consecutive records, so only one batch is held at a time."""
    records = iter(records)
    while batch := list(itertools.islice(records, size)):
        yield batch


def paired_exactly(requests: Iterable, results: Iterable, what: str) -> Iterator[tuple]:
    """Pair each request with its result; a backend that returns fewer or more results is an error, not a short zip."""
    missing = object()
    for request, result in itertools.zip_longest(requests, results, fillvalue=missing):
        if request is missing or result is missing:
            side = "more" if request is missing else "fewer"
            raise PolyfuseError(f"{what}: returned {side} results than requests")
        yield request, result


def count_records(path: str | os.PathLike) -> int:
    """The records of a JSONL file: its non-blank lines."""
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def with_progress(records: Iterable[dict], items_path: str | os.PathLike, desc: str) -> Iterator[dict]:
    """Pass `records` through a progress bar that ticks per finished record, one per line of `items_path`."""
    from tqdm import tqdm

    return iter(tqdm(records, total=count_records(items_path), desc=desc, unit="item", mininterval=1.0))


# A stage no process has touched for this long is stale even when its writer's liveness cannot be checked (another
# host, another boot, another PID namespace): far above any write this suite makes (a model assembly, a fine-tune).
STALE_AFTER_SECONDS = 2 * 24 * 3600
_STAGE = r"\.(?P<host>[A-Za-z0-9_-]+)\.(?P<boot>[0-9a-f]+)-(?P<pidns>\d+)-(?P<pid>\d+)-(?P<start>\d+)\.[0-9a-f]{8}\.tmp"
# What os.link raises where a file system has no hard links: there a rename publishes instead.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


@functools.cache  # constant for the process; the PID and start time are read per stage
def _host() -> str:
    """This host's name with every character but letters, digits and '-' made '_': a stage name parses unambiguously."""
    return re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "_"


@functools.cache
def _boot() -> str:
    """This boot of this machine (8 hex digits of the kernel's boot id; '0' where there is none): a PID means a
    process only within one boot, and cloned machines that share a host name differ here."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().replace("-", "").strip()[:8] or "0"
    except OSError:
        return "0"


@functools.cache
def _pid_namespace() -> int:
    """The PID namespace this process sees (0 where there is none to read): a PID means a process only within it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _process_state(pid: int) -> tuple[str, int] | None:
    """A process's state letter and start time (clock ticks after boot), from /proc; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    except (OSError, IndexError, ValueError):
        return None


def _writer() -> str:
    state = _process_state(os.getpid())
    return f"{_host()}.{_boot()}-{_pid_namespace()}-{os.getpid()}-{state[1] if state else 0}"


def stage_path(target: Path) -> Path:
    """A fresh staging sibling of `target` that names its writer: host, boot, PID namespace, PID and start time."""
    return target.parent / f".{target.name}.{_writer()}.{secrets.token_hex(4)}.tmp"


def _process_is_writing(pid: int, start: int) -> bool:
    """Whether the process `pid` that started at `start` (0: unknown) still runs: not gone, not a zombie nobody has
    reaped (a killed writer under an init that does not reap), and not a later process that reused the PID."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process: it exists
        pass
    state = _process_state(pid)
    if state is None:
        return True
    return state[0] != "Z" and (start == 0 or state[1] == start)


def _last_touched(stage: Path) -> float:
    """The newest modification time in a staged file or directory tree (0 when it has just vanished)."""
    try:
        newest = stage.lstat().st_mtime
        if stage.is_dir():
            for root, dirs, files in os.walk(stage):
                for name in (*dirs, *files):
                    with contextlib.suppress(FileNotFoundError):
                        newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    except FileNotFoundError:
        return 0.0
    return newest


def stage_is_stale(stage: Path, target: Path, *, now: float | None = None) -> bool:
    """Whether `stage`, a staging sibling of `target`, was left by a writer that is gone.

    A stage of this host, boot and PID namespace is stale when its process no longer runs. Any other (another node on
    a shared file system, another container, a previous boot, or a name this suite did not make) only when nothing in
    it has changed for STALE_AFTER_SECONDS. So a live writer's stage is never removed, wherever that writer runs.
    """
    found = re.fullmatch(rf"\.{re.escape(target.name)}{_STAGE}", stage.name)
    here = found and (found["host"], found["boot"], int(found["pidns"])) == (_host(), _boot(), _pid_namespace())
    if here:
        return not _process_is_writing(int(found["pid"]), int(found["start"]))
    now = time.time() if now is None else now
    return now - _last_touched(stage) > STALE_AFTER_SECONDS


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_stages(target: Path) -> None:
    """Remove what killed writers staged beside `target` (a SIGKILL skips every cleanup), never a live writer's.
    Best effort: a stage that cannot be removed (another user's, in a shared cache) is left, and the write goes on."""
    for stage in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if stage_is_stale(stage, target):
                _remove(stage)


def _fsync_tree(path: Path) -> None:
    """Flush a staged file, or every file of a staged tree, to disk: a cache published before a crash is whole."""
    files = [path] if path.is_file() else [Path(root, name) for root, _, names in os.walk(path) for name in names]
    for file in files:
        descriptor = os.open(file, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot sync a directory; the rename is still atomic
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def _staged(path: str | os.PathLike, *, directory: bool, publish) -> Iterator[Path]:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(target)
    stage = stage_path(target)
    if directory:
        stage.mkdir()  # not mkdtemp: its 0700 mode would outlive the rename
    else:
        stage.touch(exist_ok=False)
    try:
        yield stage
        publish(stage, target)
    finally:
        _remove(stage)


def _replace_file(stage: Path, target: Path) -> None:
    os.replace(stage, target)


def _replace_directory(stage: Path, target: Path) -> None:
    # The old tree moves aside under a stage name first, so a kill at any point leaves no half-deleted target.
    old = stage_path(target)
    try:
        os.rename(target, old)
    except FileNotFoundError:
        old = None
    try:
        os.replace(stage, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)  # the previous output stays when the new one cannot take its place
        raise
    if old is not None:
        _remove(old)


def _publish_file_once(stage: Path, target: Path) -> None:
    _fsync_tree(stage)
    try:
        os.link(stage, target)  # atomic on local and network file systems; never replaces a published file
    except FileExistsError:
        return  # another writer published the same content first
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # No hard links here: a rename publishes, and at worst replaces another writer's copy of the same content.
        if not target.exists():
            os.replace(stage, target)
    _fsync_directory(target.parent)


def _publish_directory_once(stage: Path, target: Path) -> None:
    _fsync_tree(stage)
    try:
        os.rename(stage, target)
    except OSError as exc:
        published = target.is_dir() and (
            exc.errno in (errno.EEXIST, errno.ENOTEMPTY)  # another writer published the same content first
            or (exc.errno == errno.ENOENT and not stage.exists())  # NFS: a retransmitted rename that had succeeded
        )
        if not published:
            raise
    _fsync_directory(target.parent)


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Yield a staging sibling file that replaces `path` only if the block succeeds: a job's own output."""
    return _staged(path, directory=False, publish=_replace_file)


def staged_directory(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Yield a staging sibling directory that replaces `path` only if the block succeeds: a job's own output."""
    return _staged(path, directory=True, publish=_replace_directory)


def published_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Yield a staging sibling file, published as `path` if the block succeeds and no other writer published first.

    For content-addressed caches that several jobs, on one machine or many nodes, may fill at once: every writer
    succeeds, a reader sees no file or a whole one, and a published file is never replaced under its readers.
    """
    return _staged(path, directory=False, publish=_publish_file_once)


def published_directory(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """`published_path` for a directory: the first complete tree is published and never changes after."""
    return _staged(path, directory=True, publish=_publish_directory_once)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Stream records to `path` atomically; returns how many were written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
