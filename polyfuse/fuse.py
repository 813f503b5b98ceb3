"""FusioN: a fusor model reads the instruction and all candidates and writes one answer.

The candidates are shown in a seeded random order per prompt (the paper reports a
mild position bias). The fused text is what the fusor puts inside ``[[ ]]`` after
its last ``Answer:``. An output without one is a parse failure: it is counted,
recorded with its raw text, and replaced by the configured fallback.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from typing import Iterator

from polyfuse.cache import OutputCache
from polyfuse.engines import Engine, SamplingParams
from polyfuse.errors import PolyfuseError
from polyfuse.io import in_batches, read_paired, with_progress, write_jsonl
from polyfuse.languages import language_name
from polyfuse.sample import derive_seed, generate_many, prompt_hash
from polyfuse.tasks import TaskKind, instruction_text, load_template

log = logging.getLogger(__name__)

# first: the pool's first candidate (the single-sample answer); raw: the whole fusor output; empty: ""
FALLBACKS = ("first", "raw", "empty")
FEWSHOT_STOP = ("\n###",)  # the few-shot fusor template separates its examples with '###'
ANSWER_MARKER = re.compile(r"answer\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedFusion:
    text: str | None
    status: str  # ok | missing | unclosed | empty
    blocks: int  # how many top-level [[ ]] blocks the answer part held


def _top_level_blocks(text: str) -> tuple[list[str], bool]:
    """Contents of balanced top-level ``[[ ... ]]`` blocks, and whether one was left open."""
    blocks, depth, start, i = [], 0, 0, 0
    while i < len(text) - 1:
        pair = text[i : i + 2]
        if pair == "[[":
            if depth == 0:
                start = i + 2
            depth += 1
            i += 2
        elif pair == "]]" and depth > 0:
            depth -= 1
            if depth == 0:
                blocks.append(text[start:i])
            i += 2
        else:
            i += 1
    return blocks, depth > 0


def parse_fused(raw: str) -> ParsedFusion:
    """The fused answer: the first ``[[ ]]`` block after the last ``Answer:``, else the last block."""
    markers = list(ANSWER_MARKER.finditer(raw))
    tail = raw[markers[-1].end() :] if markers and "[[" in raw[markers[-1].end() :] else raw
    blocks, unclosed = _top_level_blocks(tail)
    if not blocks:
        return ParsedFusion(None, "unclosed" if unclosed else "missing", 0)
    text = (blocks[0] if tail is not raw else blocks[-1]).strip()
    return ParsedFusion(text or None, "ok" if text else "empty", len(blocks))


def shown_order(seed: int, item_id: str, k: int) -> list[int]:
    """Pool indices in the order the fusor sees them, seeded per item."""
    order = list(range(k))
    random.Random(derive_seed(seed, "order", item_id)).shuffle(order)
    return order


def fusion_prompt(template_ref: str, style: str, kind: TaskKind, item: dict, candidates: list[str]):
    template = load_template(template_ref, "fusion", style)
    text = template.render(
        instruction=instruction_text(kind, item), language=language_name(item["lang"]), candidates=candidates
    )
    return ([{"role": "user", "content": text}] if style == "chat" else text), template.hash


def fuse_pools(
    items_path: str,
    pools_path: str,
    kind: TaskKind,
    engine: Engine,
    style: str,
    template_ref: str,
    cache: OutputCache,
    sampling: dict,
    seed: int,
    fallback: str,
    stats: dict,
) -> Iterator[dict]:
    if fallback not in FALLBACKS:
        raise PolyfuseError(f"fusion.fallback: {fallback!r} is not one of {', '.join(FALLBACKS)}")
    params = SamplingParams(
        temperature=float(sampling["temperature"]),
        top_p=float(sampling["top_p"]),
        max_tokens=int(sampling["max_tokens"]),
        stop=FEWSHOT_STOP if style == "fewshot" else (),
    )
    # Items go to the fusor a batch at a time, so batching engines (vLLM, servers) fuse many prompts at once.
    for batch in in_batches(read_paired(items_path, pools_path), engine.batch_items):
        shown, jobs = [], []
        for item, pool in batch:
            texts = [candidate["text"].strip() for candidate in pool["candidates"]]
            order = shown_order(seed, item["id"], len(texts))
            prompt, template_hash = fusion_prompt(template_ref, style, kind, item, [texts[i] for i in order])
            shown.append((texts, order, prompt, template_hash))
            jobs.append((prompt, params, [derive_seed(seed, "fuse", item["id"])]))
        for (item, pool), (texts, order, prompt, template_hash), (generation,) in zip(
            batch, shown, generate_many(engine, cache, jobs)
        ):
            parsed = parse_fused(generation["text"])
            stats[parsed.status] = stats.get(parsed.status, 0) + 1
            output = parsed.text
            if output is None:
                output = {"first": texts[0], "raw": generation["text"].strip(), "empty": ""}[fallback]
            yield {
                "id": item["id"],
                "task": item["task"],
                "lang": item["lang"],
                "method": f"fusion-{engine.model_name}",
                "sampler": pool["sampler"],
                "output": output,
                "parse_status": parsed.status,
                "fallback": None if parsed.text is not None else fallback,
                "raw": generation["text"],
                "order": order,
                "fusor": engine.model_name,
                "template_hash": template_hash,
                "prompt_hash": prompt_hash(prompt),
                "cost": {k: generation[k] for k in ("tokens_in", "tokens_out", "seconds")},
            }


def run_fuse(items_path, pools_path, out_path, kind, engine, style, template_ref, cache, sampling, seed, fallback):
    stats: dict = {}
    records = fuse_pools(
        items_path, pools_path, kind, engine, style, template_ref, cache, sampling, seed, fallback, stats
    )
    count = write_jsonl(out_path, with_progress(records, items_path, f"fuse {engine.model_name}"))
    failures = count - stats.get("ok", 0)
    log.info("fused=%d parse_failures=%d statuses=%s model_calls=%d", count, failures, stats, engine.calls)
