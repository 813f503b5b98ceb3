"""Sampling: items in, candidate pools out (one pool record per item).

Each candidate has its own seed, derived from the study seed, the item and the
candidate index, so candidates are cached one by one: raising N from 5 to 8
generates three more per item and reuses the five already made.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SamplingJob:
    """What a sampling job runs: a model (its engine, prompt style and cache) on a task kind, N candidates per
    item drawn with the sampling settings (temperature, top_p, max_tokens) from seeds derived from the study's."""

    engine: Engine
    style: str
    cache: OutputCache
    kind: TaskKind
    n: int
    sampling: dict
    seed: int


def sample_pools(items_path: str, shots_path: str, *, job: SamplingJob) -> Iterator[dict]:
    shots = list(read_jsonl(shots_path))
    params = SamplingParams(
        temperature=float(job.sampling["temperature"]),
        top_p=float(job.sampling["top_p"]),
        max_tokens=int(job.sampling["max_tokens"]),
        stop=stop_sequences(job.kind, job.style),
    )
    # Items go to the engine a batch at a time: memory stays bounded and batching engines stay busy.
    for batch in in_batches(read_jsonl(items_path), job.engine.batch_items):
        prompts = [task_prompt(job.kind, item, job.style, shots) for item in batch]
        requests = [
            (prompt, params, [derive_seed(job.seed, item["id"], i) for i in range(job.n)])
            for item, (prompt, _) in zip(batch, prompts, strict=True)
        ]
        for item, (prompt, template_hash), candidates in zip(
            batch, prompts, generate_many(job.engine, job.cache, requests), strict=True
        ):
            yield {
                "id": item["id"],
                "task": item["task"],
                "lang": item["lang"],
                "prompt_hash": prompt_hash(prompt),
                "template_hash": template_hash,
                "sampler": job.engine.model_name,
                "candidates": candidates,
            }


def run_sample(items_path: str, shots_path: str, out_path: str, *, job: SamplingJob) -> None:
    pools = sample_pools(items_path, shots_path, job=job)
    count = write_jsonl(out_path, with_progress(pools, items_path, f"sample {job.engine.model_name}"))
    log.info("pools=%d model_calls=%d cache_hits=%d", count, job.engine.calls, job.cache.hits)
