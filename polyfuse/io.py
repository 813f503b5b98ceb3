"""Streaming JSONL records, atomic file writes and content hashes.

Every artifact of the workflow is JSONL with one record per item. Readers yield
records one at a time and writers stream them to a temporary file that is renamed
into place only when complete, so memory stays flat and nothing half-written is
ever left under an output name.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import itertools
import json
import os
import shutil
import tempfile
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


def with_progress(records: Iterable[dict], items_path: str | os.PathLike, desc: str) -> Iterator[dict]:
    """Pass `records` through a progress bar that ticks per finished record, one per line of `items_path`."""
    from tqdm import tqdm

    with open(items_path, encoding="utf-8") as handle:
        total = sum(1 for line in handle if line.strip())
    return iter(tqdm(records, total=total, desc=desc, unit="item", mininterval=1.0))


def remove_stale_stages(target: Path, stage_glob: str) -> None:
    """Remove what a killed attempt staged beside `target` (a SIGKILL skips every cleanup): one job writes a target."""
    for stale in target.parent.glob(stage_glob):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path that replaces `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(target, f".{glob.escape(target.name)}.{'?' * 8}.tmp")  # mkstemp's names
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


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
