"""Best-of-N selection: score every candidate of a pool, keep the best.

Ties go to the lowest candidate index (the paper does not say how it breaks ties).
Scorers register by name; ``single`` and ``oracle`` are scorers too, so the first
sample and the selection ceiling come out of the same code path as BoN.

``loglik`` scores each candidate exactly as generated (a few-shot answer's leading space is
the token the model wrote after ``German:``); every other scorer, and the ``output``, see
the stripped text, as fusion and judging do. Each record flags the candidates that degenerate
into repetition (``repetition``: seq-rep-4, ``repetitive``: at least half repeated).

Each record's ``cost`` is what scoring its candidates took: a model scorer's calls, the tokens it read
and its seconds, measured when the model ran (a cached score costs what it cost once, as a cached
candidate does; ``null`` for a score cached before costs were kept); a scorer without a model makes no
call and reads no model token, and its seconds are measured on every run.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator

from polyfuse import methods
from polyfuse.cache import OutputCache, loglik_costed, no_cost, sum_costs
from polyfuse.engines import Engine
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_paired, with_progress, write_jsonl
from polyfuse.registry import Registry
from polyfuse.score import chrf, item_metric
from polyfuse.tasks import TaskKind, instruction_text, task_prompt

log = logging.getLogger(__name__)

SCORERS: Registry[type[Scorer]] = Registry("scorer", name_attribute="name")
register_scorer = SCORERS.register
MODEL_SCORERS = {"loglik", "llm_judge_pointwise"}  # scorers that run a generative model (study.scorer_models)
TORCH_SCORERS = {"reward_model"}  # scorers that run in the torch environment (envs/comet.yaml)
REPETITION_NGRAM = 4  # seq-rep-4 (Welleck et al. 2020, "Neural Text Degeneration with Unlikelihood Training")
REPETITIVE_SHARE = 0.5  # a candidate is flagged when at least half of its word 4-grams repeat an earlier one
# Kana, CJK and Thai write no spaces: each character counts as a word.
WORD = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]|\w+")


def repetition(text: str) -> float:
    """seq-rep-n over words: the share of word n-grams that repeat an earlier one (0.0 below n words)."""
    words = WORD.findall(text.casefold())
    ngrams = [tuple(words[i : i + REPETITION_NGRAM]) for i in range(len(words) - REPETITION_NGRAM + 1)]
    return 1 - len(set(ngrams)) / len(ngrams) if ngrams else 0.0


class Scorer(ABC):
    name = "abstract"
    scores_raw_text = False  # True: the scorer sees candidates as generated, not stripped

    def __init__(self, kind: TaskKind, **context):
        self.kind = kind
        self.context = context

    @abstractmethod
    def score(self, item: dict, texts: list[str]) -> list[float]:
        """One score per candidate, higher is better."""

    def score_item(self, item: dict, texts: list[str]) -> tuple[list, dict]:
        """The scores plus fields the select record keeps about how they were made (a model scorer adds `cost`)."""
        return self.score(item, texts), {}

    def score_beside(self, item: dict, texts: list[str], text: str) -> tuple[float | None, dict]:
        """The score `text` gets as one more candidate beside the pool's `texts`, and how it was made.

        A scorer that reads each candidate alone scores `text` alone; a consensus scorer overrides this.
        """
        scores, details = self.score_item(item, [text])
        return scores[0], details


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

    def score_beside(self, item, texts, text):
        """A new text's consensus: its mean chrF against all N candidates of the pool (a candidate's own is against
        the N - 1 others, so a text that copies a candidate whole scores (100 + (N - 1) * its score) / N)."""
        return (sum(chrf(text, other) for other in texts) / len(texts) if texts else None), {}


@register_scorer("loglik")
class LogLikelihood(Scorer):
    """Token log-probability of the candidate after the task prompt, under a scorer model: mean per token or sum."""

    scores_raw_text = True  # the prompt ends where generation began, so the candidate's own first token is scored

    def __init__(
        self,
        kind,
        engine: Engine,
        style: str,
        shots: list[dict],
        cache: OutputCache,
        normalization: str = "mean",
        **context,
    ):
        super().__init__(kind, **context)
        self.engine, self.style, self.shots, self.cache = engine, style, shots, cache
        self.normalization = normalization

    def score(self, item, texts):
        return self.score_item(item, texts)[0]

    def score_item(self, item, texts):
        prompt, _ = task_prompt(self.kind, item, self.style, self.shots)
        scores, cost = loglik_costed(self.engine, self.cache, prompt, texts, self.normalization)
        return scores, {"normalization": self.normalization, "cost": cost}


@register_scorer("llm_judge_pointwise")
class PointwiseJudge(Scorer):
    """An LLM judge rates each candidate 1-10; an unparseable rating scores None and is counted."""

    def __init__(self, kind, judge, **context):
        super().__init__(kind, **context)
        self.judge = judge
        self.engine = judge.engine
        self.failures = 0

    def score(self, item, texts):
        return self.score_item(item, texts)[0]

    def score_item(self, item, texts):
        ratings = [self.judge.rate(self.kind, item, text) for text in texts]
        self.failures += sum(rating.value is None for rating in ratings)
        rated = any(rating.value is not None for rating in ratings)  # none rated: the first candidate stands in
        return [rating.value for rating in ratings], {
            **({} if rated else {"fallback": "first"}),
            "cost": sum_costs(rating.cost for rating in ratings),
        }


@register_scorer("reward_model")
class RewardModelScorer(Scorer):
    """A sequence-classification reward model's score of (instruction, candidate); over-long pairs are counted."""

    def __init__(self, kind, reward_model, **context):
        super().__init__(kind, **context)
        self.engine = self.reward_model = reward_model
        self.truncated = 0

    def score(self, item, texts):
        return self.score_item(item, texts)[0]

    def score_item(self, item, texts):
        rewards = self.reward_model.score(instruction_text(self.kind, item), texts)
        self.truncated += sum(rewards.truncated)
        return rewards.scores, {"truncated": rewards.truncated, "cost": rewards.cost}


def make_scorer(name: str, kind: TaskKind, **context) -> Scorer:
    if name not in SCORERS:
        raise PolyfuseError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}")
    return SCORERS[name](kind, **context)


def scoring_cost(details: dict, start: float) -> dict | None:
    """The cost a scorer reports in `details` (taken out of them), or for a scorer without a model the seconds since
    `start`; seconds rounded for the record."""
    cost = details.pop("cost") if "cost" in details else {**no_cost(), "seconds": time.perf_counter() - start}
    return cost if cost is None else {**cost, "seconds": round(cost["seconds"], 6)}


def best_index(scores: list[float | None]) -> int:
    """argmax, lowest index on ties; a candidate the scorer could not score (None) ranks last."""
    return max(range(len(scores)), key=lambda i: (scores[i] is not None, scores[i] or 0.0, -i))


def select_pools(items_path: str, pools_path: str, scorer: Scorer, method: str | None = None) -> Iterator[dict]:
    """One record per pool: the candidate `scorer` ranks first, as `method` (default: BoN under the scorer's name)."""
    method = method or methods.selection(scorer.name)
    for item, pool in read_paired(items_path, pools_path):
        generated = [candidate["text"] for candidate in pool["candidates"]]
        texts = [text.strip() for text in generated]
        start = time.perf_counter()
        scores, details = scorer.score_item(item, generated if scorer.scores_raw_text else texts)
        cost = scoring_cost(details, start)
        chosen = best_index(scores)
        repetitions = [repetition(text) for text in texts]
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "method": method,
            "sampler": pool["sampler"],
            "output": texts[chosen],
            "chosen": chosen,
            "scores": scores,
            "scorer": scorer.name,
            "repetition": [round(share, 4) for share in repetitions],
            "repetitive": [share >= REPETITIVE_SHARE for share in repetitions],
            **details,
            "cost": cost,
            "prompt_hash": pool["prompt_hash"],
        }


def run_select(items_path: str, pools_path: str, out_path: str, *, scorer: Scorer, method: str | None = None) -> None:
    method = method or methods.selection(scorer.name)
    repetitive_chosen = 0

    def counted(records: Iterator[dict]) -> Iterator[dict]:
        nonlocal repetitive_chosen
        for record in records:
            repetitive_chosen += record["repetitive"][record["chosen"]]
            yield record

    count = write_jsonl(
        out_path,
        with_progress(
            counted(select_pools(items_path, pools_path, scorer, method)),
            items_path,
            f"select {method}",
        ),
    )
    engine = getattr(scorer, "engine", None)
    log.info(
        "selected=%d scorer=%s model_calls=%d scorer_failures=%d truncated=%d repetitive_chosen=%d",
        count,
        scorer.name,
        engine.calls if engine else 0,
        getattr(scorer, "failures", 0),
        getattr(scorer, "truncated", 0),
        repetitive_chosen,
    )


def target_scores(items_path: str, pools_path: str, targets_path: str, scorer: Scorer, method: str) -> Iterator[dict]:
    """The BoN scorer's score of each target a method wrote (a fused answer), as Cohere's released SFT cards keep it.

    The target is scored as one more candidate of its pool: alone by a scorer that reads each candidate alone, by
    its mean chrF against every candidate for MBR. A scorer of the raw text (loglik) reads it after the leading
    whitespace the pool's first candidate was generated with, as the candidates are scored.
    """
    for (item, pool), (_, target) in zip(
        read_paired(items_path, pools_path), read_paired(items_path, targets_path), strict=True
    ):
        generated = [candidate["text"] for candidate in pool["candidates"]]
        texts, text = [text.strip() for text in generated], target["output"].strip()
        if scorer.scores_raw_text:
            texts, text = generated, generated[0][: len(generated[0]) - len(generated[0].lstrip())] + text
        start = time.perf_counter()
        score, details = scorer.score_beside(item, texts, text)
        cost = scoring_cost(details, start)
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "sampler": pool["sampler"],
            "method": target["method"],
            "scored_by": method,
            "score": score,
            **details,
            "cost": cost,
        }


def run_target_scores(
    items_path: str, pools_path: str, targets_path: str, out_path: str, *, scorer: Scorer, method: str
) -> None:
    count = write_jsonl(
        out_path,
        with_progress(
            target_scores(items_path, pools_path, targets_path, scorer, method), items_path, f"score targets {method}"
        ),
    )
    log.info("targets=%d scored_by=%s", count, method)
