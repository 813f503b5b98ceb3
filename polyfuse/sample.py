"""Sampling: items in, candidate pools out (one pool record per item).

Each candidate has its own seed, derived from the study seed, the item and the
candidate index, so candidates are cached one by one: raising N from 5 to 8
generates three more per item and reuses the five already made.
"""

from __future__ import annotations

import logging
from typing import Iterator

from polyfuse.cache import OutputCache, cache_key
from polyfuse.engines import Engine, GenerationRequest, Prompt, SamplingParams
from polyfuse.io import content_hash, read_jsonl, read_jsonl_progress, sha256_hex, stable_json, write_jsonl
from polyfuse.tasks import TaskKind, stop_sequences, task_prompt

log = logging.getLogger(__name__)


def derive_seed(seed: int, *parts: object) -> int:
    return int(sha256_hex(stable_json([seed, *map(str, parts)]))[:8], 16) & 0x7FFFFFFF


def prompt_hash(prompt: Prompt) -> str:
    return content_hash(prompt)


def generate_cached(
    engine: Engine, cache: OutputCache, prompt: Prompt, params: SamplingParams, seeds: list[int]
) -> list[dict]:
    """One candidate per seed, from the cache where possible; new ones are committed at once."""
    identity = engine.identity()
    candidates = []
    for index, seed in enumerate(seeds):
        key = cache_key(model=identity, prompt=prompt, params=params.as_dict(), seed=seed, index=index)
        candidate = cache.get(key)
        if candidate is None:
            generation = next(engine.generate([GenerationRequest(prompt, params, seed)]))
            candidate = {
                "text": generation.texts[0],
                "model": engine.model_name,
                "engine": engine.engine_name,
                "params": params.as_dict(),
                "seed": seed,
                "tokens_in": generation.tokens_in,
                "tokens_out": generation.tokens_out[0],
                "seconds": round(generation.seconds, 4),
                "finish_reason": generation.finish_reasons[0],
            }
            cache.put(key, candidate)
        candidates.append(candidate)
    return candidates


def sample_pools(
    items_path: str,
    shots_path: str,
    kind: TaskKind,
    engine: Engine,
    style: str,
    cache: OutputCache,
    n: int,
    sampling: dict,
    seed: int,
) -> Iterator[dict]:
    shots = list(read_jsonl(shots_path))
    params = SamplingParams(
        temperature=float(sampling["temperature"]),
        top_p=float(sampling["top_p"]),
        max_tokens=int(sampling["max_tokens"]),
        stop=stop_sequences(kind, style),
    )
    for item in read_jsonl_progress(items_path, f"sample {engine.model_name}"):
        prompt, template_hash = task_prompt(kind, item, style, shots)
        seeds = [derive_seed(seed, item["id"], index) for index in range(n)]
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "prompt_hash": prompt_hash(prompt),
            "template_hash": template_hash,
            "sampler": engine.model_name,
            "candidates": generate_cached(engine, cache, prompt, params, seeds),
        }


def run_sample(items_path, shots_path, out_path, kind, engine, style, cache, n, sampling, seed) -> None:
    count = write_jsonl(out_path, sample_pools(items_path, shots_path, kind, engine, style, cache, n, sampling, seed))
    log.info("pools=%d model_calls=%d cache_hits=%d", count, engine.calls, cache.hits)
