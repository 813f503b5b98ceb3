"""Setting 2's SFT sets: one training record per prompt, its target taken from one aggregation method of a pool.

``build_sft_set`` streams the items, the pool and every method output given for that pool (BoN picks, fusions,
the single sample) in step, and writes per prompt Cohere's released shape plus TRL's conversational
prompt-completion fields: the user turn (the task's instruction text), the target as the assistant turn, the
target's method and candidate index, every candidate with its model, engine, params and seed (stripped, as
selection and fusion saw them), what each given method made of the pool, and the pool's provenance. As Cohere's
released cards keep a reward-model score for both the BoN pick and the fused output, each fusion's entry keeps
``bon_scores``: its answer's score under each given BoN method's scorer (see ``select.target_scores``).

A fusion target whose parse failed (its output is a fallback, not the fusor's answer) is never trained on, nor is
a target that is empty after stripping: both are counted in the data card. The card (``card.json``) describes the
written records: candidate models, target lengths, and how much the targets copy their candidates, both whole
(``copied_whole``: exact match after stripping) and by the paper's measure (``copy_rate``: the mean
character-level ``difflib.SequenceMatcher`` ratio of each target to its closest candidate); ``skipped`` counts the
prompts left out by reason (each fusion parse status, ``empty_target``). A training prompt whose text equals an
evaluated test item's (after NFKC, case folding and collapsing whitespace) is never trained on either: the card
counts them (``test_overlap``) beside how many test items were checked. A set with no record left is an error and
writes nothing.
"""

from __future__ import annotations

import bisect
import itertools
import os
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from polyfuse import methods
from polyfuse.analyses import closest_ratio
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, read_paired, write_json, write_jsonl
from polyfuse.tasks import TaskKind, instruction_text

EMPTY_TARGET = "empty_target"


def prompt_key(text: str) -> str:
    """A prompt as compared for overlap: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def evaluated_prompts(items_paths: list[str | os.PathLike]) -> set[str]:
    """The compared texts of every evaluated test item (bounded by the test slices, not the training prompts)."""
    return {prompt_key(item["input"]) for path in items_paths for item in read_jsonl(path)}


def selection_of(method: str, record: dict) -> dict:
    """What one method made of a pool: a fusion's text and parse status, or a selection's pick and its scores."""
    family, _ = methods.parse(method)
    if family == "fusion":
        # Only a parsed answer is the fusor's own: a missing status or a fallback text never counts as fused.
        status = record.get("parse_status") or "unknown"
        if status == "ok" and record.get("fallback"):
            status = "fallback"
        return {"text": record["output"], "parse_status": status}
    chosen = record["chosen"]
    return {"text": record["output"], "index": chosen, "score": record["scores"][chosen], "scores": record["scores"]}


def histogram_stats(histogram: Counter) -> dict:
    """Mean, median, min and max of the values counted in `histogram`.

    From a histogram rather than statistics over a list: memory stays flat in the number of prompts.
    """
    values = sorted(histogram)
    cumulative = list(itertools.accumulate(histogram[value] for value in values))
    total = cumulative[-1]
    middle = [values[bisect.bisect_right(cumulative, rank)] for rank in ((total - 1) // 2, total // 2)]
    return {
        "mean": round(sum(value * count for value, count in histogram.items()) / total, 2),
        "median": sum(middle) / 2,
        "min": values[0],
        "max": values[-1],
    }


@dataclass
class SetTally:
    """Running counts for the data card; every field is bounded by text lengths or pool sizes, not by prompts."""

    prompts: int = 0
    written: int = 0
    task: str | None = None
    lang: str | None = None
    pool: str | None = None
    members: list | None = None
    parse_failures: Counter = field(default_factory=Counter)
    empty_targets: int = 0
    test_overlap: int = 0
    evaluated_items: int = 0
    models: Counter = field(default_factory=Counter)
    candidates_per_prompt: Counter = field(default_factory=Counter)
    chars: Counter = field(default_factory=Counter)
    words: Counter = field(default_factory=Counter)
    exact_copies: int = 0
    closest_ratio_sum: float = 0.0

    def see(self, item: dict, pool: dict) -> None:
        self.prompts += 1
        self.task, self.lang, self.pool = item["task"], item["lang"], pool["sampler"]
        if self.members is None and "members" in pool:
            self.members = [{k: member[k] for k in ("model", "n", "temperature")} for member in pool["members"]]

    def write(self, target: str, candidates: list[dict]) -> None:
        texts = [candidate["text"] for candidate in candidates]
        self.written += 1
        self.models.update(candidate["model"] for candidate in candidates)
        self.candidates_per_prompt[len(candidates)] += 1
        self.chars[len(target)] += 1
        self.words[len(target.split())] += 1
        self.exact_copies += target in texts
        self.closest_ratio_sum += closest_ratio(target, texts)

    def card(self, set_name: str, target_method: str, methods_given: list[str]) -> dict:
        return {
            "set": set_name,
            "task": self.task,
            "lang": self.lang,
            "pool": self.pool,
            "members": self.members,
            "target": target_method,
            "methods": methods_given,
            "prompts": self.prompts,
            "written": self.written,
            "skipped": {**self.parse_failures, EMPTY_TARGET: self.empty_targets},
            "test_overlap": self.test_overlap,
            "evaluated_items": self.evaluated_items,
            "candidate_models": dict(self.models.most_common()),
            "candidates_per_prompt": {str(k): count for k, count in sorted(self.candidates_per_prompt.items())},
            "target_length": {"chars": histogram_stats(self.chars), "words": histogram_stats(self.words)},
            "copied_whole": self.exact_copies,
            "copied_whole_share": round(self.exact_copies / self.written, 4),
            "copy_rate": round(self.closest_ratio_sum / self.written, 4),
        }


@dataclass(frozen=True)
class SetTarget:
    """What one SFT set makes of a pool: the set's name, the method whose answer is the target, the task kind."""

    name: str
    method: str
    kind: TaskKind


def sft_records(
    items_path: str | os.PathLike,
    pool_path: str | os.PathLike,
    outputs: dict[str, str],
    *,
    target: SetTarget,
    tally: SetTally,
    evaluated: set[str] = frozenset(),
    target_scores: dict[tuple[str, str], str] | None = None,
) -> Iterator[dict]:
    """The set's records, streamed; raises at the end when none was left, so the atomic writer keeps nothing.
    A prompt in `evaluated` (compared texts of the evaluated test items) is left out and counted.
    `target_scores`: per (fusion method, BoN method), the file of the BoN scorer's scores of the fused answers."""
    if target.method not in outputs:
        raise PolyfuseError(
            f"distill set {target.name!r}: target method {target.method!r} has no output file "
            f"(given: {', '.join(outputs)})"
        )
    names, scorings = list(outputs), list(target_scores or {})
    walks = [
        read_paired(items_path, pool_path),
        *(read_paired(items_path, outputs[name]) for name in names),
        *(read_paired(items_path, target_scores[scoring]) for scoring in scorings),
    ]
    for (item, pool), *made in zip(*walks, strict=True):
        made, scored = made[: len(names)], made[len(names) :]
        tally.see(item, pool)
        if prompt_key(item["input"]) in evaluated:
            tally.test_overlap += 1  # training on a test prompt would score the student on what it was taught
            continue
        selections = {}
        for name, (_, record) in zip(names, made, strict=True):
            if record["method"] != name or record["sampler"] != pool["sampler"]:
                raise PolyfuseError(
                    f"{outputs[name]}: record {record['id']!r} is {record['method']!r} of {record['sampler']!r}, "
                    f"expected {name!r} of pool {pool['sampler']!r}"
                )
            selections[name] = selection_of(name, record)
        for (fusion, selector), (_, record) in zip(scorings, scored, strict=True):
            if (record["method"], record["scored_by"], record["sampler"]) != (fusion, selector, pool["sampler"]):
                raise PolyfuseError(
                    f"{target_scores[(fusion, selector)]}: record {record['id']!r} is {record['method']!r} scored by "
                    f"{record['scored_by']!r} of {record['sampler']!r}, expected {fusion!r} by {selector!r} of pool "
                    f"{pool['sampler']!r}"
                )
            selections[fusion].setdefault("bon_scores", {})[selector] = record["score"]
        chosen = selections[target.method]
        status = chosen.get("parse_status")  # None for a selection: its pick is a candidate
        if status not in (None, "ok"):
            tally.parse_failures[status] += 1
            continue
        text = chosen["text"].strip()
        if not text:
            tally.empty_targets += 1
            continue
        candidates = [
            {k: candidate[k] for k in ("model", "engine", "params", "seed")} | {"text": candidate["text"].strip()}
            for candidate in pool["candidates"]
        ]
        tally.write(text, candidates)
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "set": target.name,
            "prompt": [{"role": "user", "content": instruction_text(target.kind, item)}],
            "completion": [{"role": "assistant", "content": text}],
            "target": {"method": target.method, "index": chosen.get("index"), "parse_status": status},
            "candidates": candidates,
            "selections": selections,
            "provenance": {
                "pool": pool["sampler"],
                **({"members": pool["members"]} if "members" in pool else {}),
                "prompt_hash": pool["prompt_hash"],
                "template_hash": pool["template_hash"],
            },
        }
    if tally.written == 0:
        where = f"{tally.task}/{tally.lang}" if tally.prompts else f"no items in {items_path}"
        raise PolyfuseError(
            f"distill set {target.name!r} ({where}): no training record left ({sum(tally.parse_failures.values())} "
            f"parse failures {dict(tally.parse_failures)}, {tally.empty_targets} empty targets, of {tally.prompts} "
            f"prompts); nothing to fine-tune on"
        )


def build_sft_set(
    items_path: str | os.PathLike,
    pool_path: str | os.PathLike,
    outputs: dict[str, str],
    out_path: str | os.PathLike,
    card_path: str | os.PathLike,
    *,
    target: SetTarget,
    evaluated_items: list[str | os.PathLike] = (),
    target_scores: dict[tuple[str, str], str] | None = None,
) -> dict:
    """Write the SFT set of one training task and language, and its data card; returns the card.
    `evaluated_items`: the items files of the test tasks the students answer, checked for overlap;
    `target_scores`: the BoN scorers' scores of the fused answers, per (fusion method, BoN method)."""
    evaluated = evaluated_prompts(evaluated_items)
    tally = SetTally(evaluated_items=len(evaluated))
    records = sft_records(
        items_path, pool_path, outputs, target=target, tally=tally, evaluated=evaluated, target_scores=target_scores
    )
    write_jsonl(out_path, records)
    card = tally.card(target.name, target.method, list(outputs))
    write_json(card_path, card)
    return card
