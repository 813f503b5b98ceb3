"""A persistent cache of model outputs, so a finished item is never generated twice, and the cached model calls.

Keys hash everything that determines an output: the engine and model identity,
the rendered prompt, the sampling params, the seed and the candidate index.
Each entry is committed as soon as it is produced, so a killed job resumes at the
item it was on. One SQLite file per model keeps concurrent jobs of different
models from contending; jobs sharing a model wait on SQLite's lock.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from polyfuse.engines import Engine, GenerationRequest, Prompt, SamplingParams
from polyfuse.errors import PolyfuseError
from polyfuse.io import content_hash, paired_exactly


def cache_key(**parts: Any) -> str:
    return content_hash(parts, length=32)


class OutputCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM outputs WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO outputs (key, value) VALUES (?, ?)", (key, json.dumps(value, ensure_ascii=False))
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> OutputCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The cached model calls, shared by sampling, fusion, selection and judging.
def generate_many(
    engine: Engine, cache: OutputCache, jobs: list[tuple[Prompt, SamplingParams, list[int]]]
) -> list[list[dict]]:
    """One candidate per seed of each (prompt, params, seeds) job, from the cache where possible.

    All missing candidates go to the engine in one call, so batching engines (vLLM, a server
    under concurrency) see them together; each is committed to the cache as it arrives.
    """
    identity = engine.identity()
    results: list[list[dict | None]] = [[None] * len(seeds) for _, _, seeds in jobs]
    missing = []
    for j, (prompt, params, seeds) in enumerate(jobs):
        for index, seed in enumerate(seeds):
            key = cache_key(model=identity, prompt=prompt, params=params.as_dict(), seed=seed, index=index)
            results[j][index] = cache.get(key)
            if results[j][index] is None:
                missing.append((j, index, key, GenerationRequest(prompt, params, seed)))
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


def loglik_cached(
    engine: Engine, cache: OutputCache, prompt: Prompt, continuations: list[str], normalization: str = "mean"
) -> list[float]:
    """Token log-probabilities of the continuations (their mean or sum), from the cache where possible.

    An empty continuation scores -inf under either normalization, so it never wins a selection.
    """
    if normalization not in LOGLIK_NORMALIZATIONS:
        raise PolyfuseError(
            f"study.loglik_normalization: unknown {normalization!r}; known: {', '.join(LOGLIK_NORMALIZATIONS)}"
        )
    identity = engine.identity()
    # The mean keeps the key it always had, so the caches of earlier runs stay valid.
    variant = {} if normalization == "mean" else {"normalization": normalization}
    keys = [cache_key(model=identity, prompt=prompt, loglik=text, **variant) for text in continuations]
    values = [cache.get(key) for key in keys]
    missing = [i for i, value in enumerate(values) if value is None]
    if missing:
        todo = [continuations[i] for i in missing]
        if normalization == "mean":
            fresh = engine.loglik(prompt, todo)
        else:
            fresh = [total if count else float("-inf") for total, count in engine.loglik_terms(prompt, todo)]
        for i, value in zip(missing, fresh, strict=True):
            cache.put(keys[i], value)
            values[i] = value
    return values
