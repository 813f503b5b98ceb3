"""Best-of-N selection: score every candidate of a pool, keep the best.

Ties go to the lowest candidate index (the paper does not say how it breaks ties).
Scorers register by name; ``single`` and ``oracle`` are scorers too, so the first
sample and the selection ceiling come out of the same code path as BoN.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Iterator

from polyfuse.cache import OutputCache, cache_key
from polyfuse.engines import Engine
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_paired, write_jsonl
from polyfuse.score import chrf, item_metric
from polyfuse.tasks import TaskKind, task_prompt

log = logging.getLogger(__name__)

SCORERS: dict[str, type["Scorer"]] = {}
MODEL_SCORERS = {"loglik"}  # scorers that need a scorer model (the reward model and pointwise judge join later)


def register_scorer(name: str):
    def register(cls: type[Scorer]) -> type[Scorer]:
        cls.name = name
        SCORERS[name] = cls
        return cls

    return register


class Scorer(ABC):
    name = "abstract"

    def __init__(self, kind: TaskKind, **context):
        self.kind = kind
        self.context = context

    @abstractmethod
    def score(self, item: dict, texts: list[str]) -> list[float]:
        """One score per candidate, higher is better."""


@register_scorer("single")
class FirstSample(Scorer):
    """The first candidate: what a single sample would have given."""

    def score(self, item, texts):
        return [1.0] + [0.0] * (len(texts) - 1)


@register_scorer("oracle")
class Oracle(Scorer):
    """The task's primary metric against the reference: the ceiling of any selection."""

    def score(self, item, texts):
        return [item_metric(self.kind, self.kind.metrics[0], text, item) for text in texts]


@register_scorer("mbr_chrf")
class MbrChrf(Scorer):
    """Consensus: each candidate's mean chrF against the other candidates."""

    def score(self, item, texts):
        if len(texts) < 2:
            return [0.0] * len(texts)
        return [
            sum(chrf(text, other) for j, other in enumerate(texts) if j != i) / (len(texts) - 1)
            for i, text in enumerate(texts)
        ]


@register_scorer("loglik")
class LogLikelihood(Scorer):
    """Mean token log-probability of the candidate after the task prompt, under a scorer model."""

    def __init__(self, kind, engine: Engine, style: str, shots: list[dict], cache: OutputCache, **context):
        super().__init__(kind, **context)
        self.engine, self.style, self.shots, self.cache = engine, style, shots, cache

    def score(self, item, texts):
        prompt, _ = task_prompt(self.kind, item, self.style, self.shots)
        identity = self.engine.identity()
        keys = [cache_key(model=identity, prompt=prompt, loglik=text) for text in texts]
        cached = [self.cache.get(key) for key in keys]
        missing = [i for i, value in enumerate(cached) if value is None]
        if missing:
            fresh = self.engine.loglik(prompt, [texts[i] for i in missing])
            for i, value in zip(missing, fresh):
                self.cache.put(keys[i], value)
                cached[i] = value
        return cached


def make_scorer(name: str, kind: TaskKind, **context) -> Scorer:
    if name not in SCORERS:
        raise PolyfuseError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}")
    return SCORERS[name](kind, **context)


def best_index(scores: list[float]) -> int:
    """argmax, lowest index on ties."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def method_name(scorer: str) -> str:
    return scorer if scorer in ("single", "oracle") else f"bon-{scorer}"


def select_pools(items_path: str, pools_path: str, scorer: Scorer) -> Iterator[dict]:
    for item, pool in read_paired(items_path, pools_path):
        texts = [candidate["text"].strip() for candidate in pool["candidates"]]
        scores = scorer.score(item, texts)
        chosen = best_index(scores)
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "method": method_name(scorer.name),
            "sampler": pool["sampler"],
            "output": texts[chosen],
            "chosen": chosen,
            "scores": scores,
            "scorer": scorer.name,
            "prompt_hash": pool["prompt_hash"],
        }


def run_select(items_path: str, pools_path: str, out_path: str, scorer: Scorer) -> None:
    count = write_jsonl(out_path, select_pools(items_path, pools_path, scorer))
    engine = getattr(scorer, "engine", None)
    log.info("selected=%d scorer=%s model_calls=%d", count, scorer.name, engine.calls if engine else 0)
