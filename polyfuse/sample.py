"""Sampling: items in, candidate pools out (one pool record per item).

Each candidate has its own seed, derived from the study seed, the item and the
candidate index, so candidates are cached one by one: raising N from 5 to 8
generates three more per item and reuses the five already made.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from polyfuse.cache import OutputCache, generate_many
from polyfuse.engines import Engine, Prompt, SamplingParams
from polyfuse.io import (
    content_hash,
    in_batches,
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
