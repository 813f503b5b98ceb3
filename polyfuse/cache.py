"""A persistent cache of model outputs, so a finished item is never generated twice, and the cached model calls.

Keys hash everything that determines an output: the engine and model identity,
the rendered prompt, the sampling params, the seed and the candidate index.

Layout, safe where file locks are not (NFS, Lustre): a model's cache is a directory of
SQLite shards, and no shard is ever written by two processes or read while it changes.
- Each writer (a Snakemake job, named after its outputs) owns `open/<writer>.sqlite`
  and commits every entry as it is produced, without file locks. A killed job's re-run
  is the same writer: it reopens its shard and resumes at the item it was on.
- Closing seals the shard: it moves to `<writer>.<unique>.sqlite` and never changes
  again, so other jobs read it immutable, with no lock. A writer that wrote nothing
  leaves no shard.
- A lookup reads the writer's own shard, then every sealed shard. Another job's open
  shard is not read until that job ends; `compact` merges sealed shards when they pile up.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from polyfuse.engines import Engine, GenerationRequest, Prompt, SamplingParams
from polyfuse.errors import PolyfuseError
from polyfuse.io import content_hash, in_batches, paired_exactly

log = logging.getLogger(__name__)
SCHEMA = "CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
LOOKUP_CHUNK = 500  # keys per query: below SQLite's bound on host parameters


def cache_key(**parts: Any) -> str:
    return content_hash(parts, length=32)


def _writable(path: Path) -> sqlite3.Connection:
    """A shard only this process opens, so it takes no file locks (unreliable on network file systems).

    The rollback journal (not WAL, whose index needs shared memory) keeps every commit
    whole through a kill; reopening rolls back a transaction the kill cut short.
    """
    db = sqlite3.connect(f"{path.resolve().as_uri()}?vfs=unix-none", uri=True, isolation_level=None)
    db.execute(SCHEMA)
    return db


def _sealed(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)


def sealed_shards(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.sqlite"))


def _open_sealed(directory: Path) -> list[tuple[Path, sqlite3.Connection]]:
    while True:
        readers: list[tuple[Path, sqlite3.Connection]] = []
        for path in sealed_shards(directory):
            try:
                readers.append((path, _sealed(path)))
            except sqlite3.OperationalError as exc:
                for _, reader in readers:
                    reader.close()
                if path.exists():
                    raise PolyfuseError(f"{path}: not a readable cache shard ({exc})") from None
                break  # compaction removed it after the listing: its entries are in a newer shard
        else:
            return readers


class OutputCache:
    def __init__(self, directory: str | os.PathLike, writer: str | None = None):
        self.directory = Path(directory)
        self.writer = writer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        (self.directory / "open").mkdir(parents=True, exist_ok=True)
        self._own_path = self.directory / "open" / f"{self.writer}.sqlite"
        self._own = _writable(self._own_path)
        self._readers = _open_sealed(self.directory)
        self.hits = 0
        self.misses = 0
        self.puts = 0

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of those keys that have one, from the writer's own shard first."""
        keys = list(keys)
        found: dict[str, Any] = {}
        todo = list(dict.fromkeys(keys))
        for path, db in ((self._own_path, self._own), *self._readers):
            for chunk in in_batches(todo, LOOKUP_CHUNK):
                marks = ",".join("?" * len(chunk))
                try:
                    rows = db.execute(f"SELECT key, value FROM outputs WHERE key IN ({marks})", chunk).fetchall()
                except sqlite3.DatabaseError as exc:
                    raise PolyfuseError(f"{path}: not a readable cache shard ({exc})") from None
                found.update((key, json.loads(value)) for key, value in rows)
            todo = [key for key in todo if key not in found]
            if not todo:
                break
        hits = sum(key in found for key in keys)
        self.hits += hits
        self.misses += len(keys) - hits
        return found

    def get(self, key: str) -> Any | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])

    def put_many(self, entries: list[tuple[str, Any]]) -> None:
        """Store the entries in one commit: a kill keeps all of them or none (a score and its cost stay together)."""
        self.puts += len(entries)
        rows = [(key, json.dumps(value, ensure_ascii=False)) for key, value in entries]
        self._own.execute("BEGIN")
        try:
            self._own.executemany("INSERT OR REPLACE INTO outputs (key, value) VALUES (?, ?)", rows)
            self._own.execute("COMMIT")
        except BaseException:
            if self._own.in_transaction:  # SQLite may have rolled back on its own (disk full, I/O error)
                self._own.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Seal the writer's shard (or drop it, if it holds nothing): from now on others may read it."""
        for _, db in self._readers:
            db.close()
        self._readers = []
        if self._own is None:
            return
        (entries,) = self._own.execute("SELECT COUNT(*) FROM outputs").fetchone()
        self._own.close()
        self._own = None
        log.info(
            "cache=%s writer=%s puts=%d hits=%d entries=%d", self.directory, self.writer, self.puts, self.hits, entries
        )
        if entries:
            os.replace(self._own_path, self.directory / f"{self.writer}.{uuid.uuid4().hex[:12]}.sqlite")
        else:
            self._own_path.unlink()

    def __enter__(self) -> OutputCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compact(directory: str | os.PathLike) -> tuple[int, int]:
    """Merge a model's sealed shards into one; returns (shards merged, entries). Safe beside running jobs.

    The merged shard is complete before any source is removed, and sources are only ever
    removed, so a reader that listed them earlier finds each entry in one or the other.
    """
    directory = Path(directory)
    sources = sealed_shards(directory)
    if len(sources) < 2:
        return 0, 0
    staging = directory / "open" / f"compact-{uuid.uuid4().hex}.sqlite"
    merged = _writable(staging)
    merged.execute("BEGIN")
    for source in sources:
        reader = _sealed(source)
        rows = reader.execute("SELECT key, value FROM outputs")
        merged.executemany("INSERT OR IGNORE INTO outputs (key, value) VALUES (?, ?)", rows)
        reader.close()
    merged.execute("COMMIT")
    (entries,) = merged.execute("SELECT COUNT(*) FROM outputs").fetchone()
    merged.close()
    os.replace(staging, directory / f"compact.{uuid.uuid4().hex[:12]}.sqlite")
    for source in sources:
        source.unlink(missing_ok=True)
    return len(sources), entries


# The cached model calls, shared by sampling, fusion, selection and judging.
def generate_many(
    engine: Engine, cache: OutputCache, jobs: list[tuple[Prompt, SamplingParams, list[int]]]
) -> list[list[dict]]:
    """One candidate per seed of each (prompt, params, seeds) job, from the cache where possible.

    All missing candidates go to the engine in one call, so batching engines (vLLM, a server
    under concurrency) see them together; each is committed to the cache as it arrives.
    """
    identity = engine.identity()
    keys = [
        [
            cache_key(model=identity, prompt=prompt, params=params.as_dict(), seed=seed, index=i)
            for i, seed in enumerate(seeds)
        ]
        for prompt, params, seeds in jobs
    ]
    cached = cache.get_many(key for job_keys in keys for key in job_keys)
    results: list[list[dict | None]] = [[cached.get(key) for key in job_keys] for job_keys in keys]
    missing = [
        (j, index, key, GenerationRequest(prompt, params, seed))
        for j, ((prompt, params, seeds), job_keys) in enumerate(zip(jobs, keys, strict=True))
        for index, (seed, key) in enumerate(zip(seeds, job_keys, strict=True))
        if results[j][index] is None
    ]
    generations = engine.generate([request for *_, request in missing]) if missing else iter(())
    for (j, index, key, request), generation in paired_exactly(missing, generations, f"model {engine.model_name!r}"):
        candidate = {
            "text": generation.texts[0],
            "model": engine.model_name,
            "engine": engine.engine_name,
            "params": request.params.as_dict(),
            "seed": request.seed,
            "tokens_in": generation.tokens_in,
            "tokens_out": generation.tokens_out[0],
            "seconds": round(generation.seconds, 4),
            "finish_reason": generation.finish_reasons[0],
        }
        cache.put(key, candidate)
        results[j][index] = candidate
    return results


def generate_cached(
    engine: Engine, cache: OutputCache, prompt: Prompt, params: SamplingParams, seeds: list[int]
) -> list[dict]:
    return generate_many(engine, cache, [(prompt, params, seeds)])[0]


LOGLIK_NORMALIZATIONS = ("mean", "sum")  # per-token mean (length-neutral) or total (favours shorter text)


def no_cost() -> dict:
    """The cost of work that ran no model: what a record's ``cost`` adds up from."""
    return {"calls": 0, "tokens_in": 0, "tokens_out": 0, "seconds": 0.0}


def add_cost(total: dict | None, part: dict | None) -> dict | None:
    """`total` plus `part`; None (not measured, e.g. a score cached before costs were kept) makes the sum None."""
    if total is None or part is None:
        return None
    return {field: total[field] + part[field] for field in total}


def sum_costs(costs: Iterable[dict | None]) -> dict | None:
    """The total of several costs; None when any of them was not measured."""
    total: dict | None = no_cost()
    for cost in costs:
        total = add_cost(total, cost)
    return total


def generation_cost(candidate: dict) -> dict:
    """The cost of one cached generation, as the engine recorded it when it ran (a cache hit costs it again)."""
    return {
        "calls": 1,
        "tokens_in": candidate["tokens_in"],
        "tokens_out": candidate["tokens_out"],
        "seconds": candidate["seconds"],
    }


def loglik_cached(
    engine: Engine, cache: OutputCache, prompt: Prompt, continuations: list[str], normalization: str = "mean"
) -> list[float]:
    """Token log-probabilities of the continuations (their mean or sum), from the cache where possible."""
    return loglik_costed(engine, cache, prompt, continuations, normalization)[0]


def loglik_costed(
    engine: Engine, cache: OutputCache, prompt: Prompt, continuations: list[str], normalization: str = "mean"
) -> tuple[list[float], dict | None]:
    """Token log-probabilities of the continuations (their mean or sum), and what computing them cost.

    The cost is measured when the engine runs (its calls, the tokens it read, wall seconds) and cached, so a cached
    score costs what it cost once, as a cached candidate does. It has two parts: the prompt, which an engine that
    shares it across continuations (llama.cpp) reads once per run, cached once per prompt; and each continuation's
    own call and tokens, as the engine reports them, cached beside its score (seconds split by tokens read). Scoring
    any set of continuations costs the prompt once plus theirs, so a subset of a pool costs what scoring it alone
    would, and a text's cost does not depend on which batch first scored it (job order, a resumed run). A score
    cached without its cost makes the cost None (not measured), never 0. An empty continuation scores -inf under
    either normalization, so it never wins a selection.
    """
    if normalization not in LOGLIK_NORMALIZATIONS:
        raise PolyfuseError(
            f"study.loglik_normalization: unknown {normalization!r}; known: {', '.join(LOGLIK_NORMALIZATIONS)}"
        )
    identity = engine.identity()
    # The mean keeps the key it always had, so the caches of earlier runs stay valid.
    variant = {} if normalization == "mean" else {"normalization": normalization}
    keys = [cache_key(model=identity, prompt=prompt, loglik=text, **variant) for text in continuations]
    cost_keys = [cache_key(model=identity, prompt=prompt, loglik=text, **variant, cost=True) for text in continuations]
    prompt_key = cache_key(model=identity, prompt=prompt, loglik_prompt=True, **variant)
    cached = cache.get_many([*keys, *cost_keys, prompt_key])
    values = [cached.get(key) for key in keys]
    costs = [cached.get(key) for key in cost_keys]
    prompt_cost = cached.get(prompt_key)
    if prompt_cost is None and None not in costs:  # shares cached before the prompt had its own entry include it
        prompt_cost = no_cost()
    missing = [i for i, value in enumerate(values) if value is None]
    if missing:
        todo = [continuations[i] for i in missing]
        calls, tokens, shared = engine.calls, engine.loglik_tokens, engine.loglik_prompt_tokens
        engine.loglik_reads = []
        start = time.perf_counter()
        if normalization == "mean":
            fresh = engine.loglik(prompt, todo)
        else:
            fresh = [total if count else float("-inf") for total, count in engine.loglik_terms(prompt, todo)]
        seconds, tokens = time.perf_counter() - start, engine.loglik_tokens - tokens
        shared = engine.loglik_prompt_tokens - shared
        shared_seconds = seconds * shared / tokens if tokens else 0.0
        prompt_cost = {"calls": 0, "tokens_in": shared, "tokens_out": 0, "seconds": round(shared_seconds, 6)}
        own_seconds = seconds - shared_seconds
        if engine.loglik_reads:
            own = [{"calls": int(read > 0), "tokens_in": read} for read in engine.loglik_reads]
        else:  # an engine that does not report each continuation's tokens (a test double): an even share
            own = [{"calls": (engine.calls - calls) / len(todo), "tokens_in": (tokens - shared) / len(todo)}] * len(
                todo
            )
        own_tokens = sum(cost["tokens_in"] for cost in own)
        own = [  # seconds by tokens read: the one part of a cost that is not the same on every run
            cost
            | {
                "tokens_out": 0,
                "seconds": round(own_seconds * (cost["tokens_in"] / own_tokens if own_tokens else 1 / len(own)), 6),
            }
            for cost in own
        ]
        entries = [(prompt_key, prompt_cost)]
        for i, value, cost in zip(missing, fresh, own, strict=True):
            entries += [(cost_keys[i], cost), (keys[i], value)]
            values[i], costs[i] = value, cost
        cache.put_many(entries)  # one commit: a run killed here keeps the engine call's scores and costs whole
    return values, add_cost(prompt_cost if continuations else no_cost(), sum_costs(costs))


if __name__ == "__main__":  # python -m polyfuse.cache results/cache/<model> ...: merge each model's sealed shards
    import sys

    for path in sys.argv[1:]:
        merged, entries = compact(path)
        print(f"{path}: merged {merged} shards, {entries} entries")
