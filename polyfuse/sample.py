"""Sampling: items in, candidate pools out (one pool record per item).

Each candidate has its own seed, derived from the study seed, the item and the
candidate index, so candidates are cached one by one: raising N from 5 to 8
generates three more per item and reuses the five already made.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from polyfuse.cache import OutputCache, cache_key
from polyfuse.engines import Engine, GenerationRequest, Prompt, SamplingParams
from polyfuse.errors import PolyfuseError
from polyfuse.io import (
    content_hash,
    in_batches,
    paired_exactly,
    read_jsonl,
    sha256_hex,
    stable_json,
    with_progress,
    write_jsonl,
)
from polyfuse.tasks import TaskKind, stop_sequences, task_prompt

log = logging.getLogger(__name__)


def derive_seed(seed: int, *parts: object) -> int:
    return int(sha256_hex(stable_json([seed, *map(str, parts)]))[:8], 16) & 0x7FFFFFFF


def prompt_hash(prompt: Prompt) -> str:
    return content_hash(prompt)


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
    # Items go to the engine a batch at a time: memory stays bounded and batching engines stay busy.
    for batch in in_batches(read_jsonl(items_path), engine.batch_items):
        prompts = [task_prompt(kind, item, style, shots) for item in batch]
        jobs = [
            (prompt, params, [derive_seed(seed, item["id"], i) for i in range(n)])
            for item, (prompt, _) in zip(batch, prompts, strict=True)
        ]
        for item, (prompt, template_hash), candidates in zip(
            batch, prompts, generate_many(engine, cache, jobs), strict=True
        ):
            yield {
                "id": item["id"],
                "task": item["task"],
                "lang": item["lang"],
                "prompt_hash": prompt_hash(prompt),
                "template_hash": template_hash,
                "sampler": engine.model_name,
                "candidates": candidates,
            }


def run_sample(items_path, shots_path, out_path, kind, engine, style, cache, n, sampling, seed) -> None:
    pools = sample_pools(items_path, shots_path, kind, engine, style, cache, n, sampling, seed)
    count = write_jsonl(out_path, with_progress(pools, items_path, f"sample {engine.model_name}"))
    log.info("pools=%d model_calls=%d cache_hits=%d", count, engine.calls, cache.hits)
