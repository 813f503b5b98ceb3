"""LLM judges: pairwise verdicts (win rates against a reference system) and pointwise ratings.

A pairwise comparison is judged in both orders, (method, opponent) and (opponent,
method), to cancel position bias. Each order's verdict counts 1 for a win, 0.5 for
a tie and 0 for a loss (the paper does not say how it counts ties); an item's value
is the mean over the orders whose verdict parsed. A verdict that cannot be parsed
is recorded and counted, never guessed: an item with no parseable order has no value.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Iterator

from polyfuse.cache import OutputCache
from polyfuse.engines import Engine, Prompt, SamplingParams
from polyfuse.errors import PolyfuseError
from polyfuse.data import load_answers
from polyfuse.io import read_jsonl, read_paired, with_progress, write_json, write_jsonl
from polyfuse.languages import language_name
from polyfuse.sample import derive_seed, generate_cached, loglik_cached
from polyfuse.tasks import TaskKind, instruction_text, load_template

log = logging.getLogger(__name__)

PAIRWISE_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
RATINGS = tuple(str(n) for n in range(1, 11))
PAIRWISE_LABEL = re.compile(r"\[\[\s*(A>>B|A>B|A=B|B>A|B>>A|A<<B|A<B|B<A|B<<A|A|B|C|tie)\s*\]\]", re.IGNORECASE)
WINNER = {"a>>b": "A", "a>b": "A", "b<a": "A", "b<<a": "A", "a": "A",
          "b>>a": "B", "b>a": "B", "a<b": "B", "a<<b": "B", "b": "B",
          "a=b": "tie", "c": "tie", "tie": "tie"}
RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
FEWSHOT_STOP = ("\n###",)


def parse_pairwise(raw: str) -> str | None:
    """'A', 'B' or 'tie'; None when no label, or labels naming different winners."""
    winners = {WINNER[label.lower()] for label in PAIRWISE_LABEL.findall(raw)}
    return winners.pop() if len(winners) == 1 else None


def parse_rating(raw: str, low: float = 1, high: float = 10) -> float | None:
    ratings = [float(value) for value in RATING.findall(raw)]
    return ratings[-1] if ratings and low <= ratings[-1] <= high else None


@dataclass
class Judge:
    """Asks a model for verdicts.

    mode ``generate``: the judge writes its reasoning and a label, which is parsed.
    mode ``loglik``: the judge's verdict is the label it finds most likely after the prompt, for
    small models that seldom write a label on their own; every verdict then parses by construction.
    """

    engine: Engine
    style: str
    template: str
    cache: OutputCache
    params: SamplingParams
    seed: int
    mode: str = "generate"

    @classmethod
    def from_settings(cls, engine: Engine, style: str, settings: dict, cache: OutputCache, template: str) -> "Judge":
        params = SamplingParams(
            temperature=float(settings["temperature"]),
            top_p=1.0,
            max_tokens=int(settings["max_tokens"]),
            stop=FEWSHOT_STOP if style == "fewshot" else (),
        )
        return cls(engine, style, template, cache, params, int(settings["seed"]), settings.get("mode", "generate"))

    def _ask(self, variables: dict, key: str, labels: tuple[str, ...], prefix: str) -> str:
        """The judge's raw answer; in loglik mode, the most likely ``prefix[[label]]`` and all label scores."""
        text = load_template(self.template, "judge", self.style).render(**variables)
        prompt: Prompt = [{"role": "user", "content": text}] if self.style == "chat" else text
        if self.mode == "loglik":
            scores = loglik_cached(self.engine, self.cache, prompt, [f" {prefix}[[{label}]]" for label in labels])
            best = max(range(len(labels)), key=lambda i: (scores[i], -i))
            return f"{prefix}[[{labels[best]}]] (loglik: " + ", ".join(f"{l}={s:.3f}" for l, s in zip(labels, scores)) + ")"
        (answer,) = generate_cached(self.engine, self.cache, prompt, self.params, [derive_seed(self.seed, "judge", key)])
        return answer["text"]

    def compare(self, kind: TaskKind, item: dict, answer: str, opponent: str) -> dict:
        """Judge `answer` against `opponent` in both orders."""
        common = {"instruction": instruction_text(kind, item), "language": language_name(item["lang"])}
        orders = []
        for first, second, ours in ((answer, opponent, "A"), (opponent, answer, "B")):
            raw = self._ask({**common, "answer_a": first, "answer_b": second}, f"{item['id']}:{ours}",
                            PAIRWISE_LABELS, "Verdict: ")
            winner = parse_pairwise(raw)
            outcome = None if winner is None else 0.5 if winner == "tie" else float(winner == ours)
            orders.append({"position": ours, "verdict": winner, "outcome": outcome, "raw": raw})
        parsed = [order["outcome"] for order in orders if order["outcome"] is not None]
        return {"value": 100.0 * sum(parsed) / len(parsed) if parsed else None, "orders": orders}

    def rate(self, kind: TaskKind, item: dict, answer: str) -> tuple[float | None, str]:
        common = {"instruction": instruction_text(kind, item), "language": language_name(item["lang"])}
        raw = self._ask({**common, "answer": answer}, f"{item['id']}:rate:{answer}", RATINGS, "Rating: ")
        return parse_rating(raw), raw


def opponent_texts(path: str) -> dict[str, str]:
    return {record["id"]: record["output"] for record in read_jsonl(path)}


def reference_from_pools(pools: Iterator[dict]) -> Iterator[dict]:
    """A reference system's answers, drawn as one-candidate pools."""
    for pool in pools:
        (candidate,) = pool["candidates"]
        yield {"id": pool["id"], "task": pool["task"], "lang": pool["lang"], "output": candidate["text"].strip(),
               "system": candidate["model"], "candidate": candidate}


def reference_from_file(items_path: str, answers_path: str) -> Iterator[dict]:
    answers = load_answers(answers_path)
    for item in read_jsonl(items_path):
        if item["id"] not in answers:
            raise PolyfuseError(f"{answers_path}: no reference answer for item {item['id']!r}")
        yield {"id": item["id"], "task": item["task"], "lang": item["lang"], "output": answers[item["id"]],
               "system": str(answers_path)}


def position_bound(orders: list[dict]) -> bool:
    """The judge named the same position the winner in both orders: it followed position, not content."""
    verdicts = [order["verdict"] for order in orders]
    return verdicts[0] in ("A", "B") and verdicts[0] == verdicts[1]


def judge_records(items_path: str, outputs_path: str, opponents: dict[str, str], kind: TaskKind, judge: Judge,
                  stats: dict, label: str | None) -> Iterator[dict]:
    for item, output in read_paired(items_path, outputs_path):
        if item["id"] not in opponents:
            raise PolyfuseError(f"no opponent answer for item {item['id']!r}")
        verdict = judge.compare(kind, item, output["output"], opponents[item["id"]])
        failed = sum(order["verdict"] is None for order in verdict["orders"])
        stats["verdicts"] = stats.get("verdicts", 0) + 2
        stats["unparsed"] = stats.get("unparsed", 0) + failed
        stats["position_bound"] = stats.get("position_bound", 0) + position_bound(verdict["orders"])
        cell = {"task": item["task"], "lang": item["lang"], "method": label or output["method"], "sampler": output["sampler"]}
        stats["cell"] = cell
        yield {
            "id": item["id"],
            **cell,
            "values": {"winrate": verdict["value"]},
            "judge": judge.engine.model_name,
            "orders": verdict["orders"],
        }


def run_judge(items_path, outputs_path, opponent_path, scores_path, summary_path, kind, judge, label=None) -> None:
    """Win rate of each output against the opponent's answer to the same item (`label` names a head-to-head)."""
    stats: dict = {}
    records = judge_records(items_path, outputs_path, opponent_texts(opponent_path), kind, judge, stats, label)
    count = write_jsonl(scores_path, with_progress(records, items_path, f"judge {label or 'vs reference'}"))
    write_json(summary_path, {**stats.get("cell", {}), "items": count, "judge": judge.engine.model_name,
                              "verdicts": stats.get("verdicts", 0),
                              "unparsed_verdicts": stats.get("unparsed", 0),
                              "position_bound": stats.get("position_bound", 0), "corpus": {}})
    log.info("judged=%d verdicts=%d unparsed=%d position_bound=%d model_calls=%d", count, stats.get("verdicts", 0),
             stats.get("unparsed", 0), stats.get("position_bound", 0), judge.engine.calls)
