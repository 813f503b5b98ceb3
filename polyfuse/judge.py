"""LLM judges: pairwise verdicts (win rates against a reference system) and pointwise ratings.

A pairwise comparison is judged in both orders, (method, opponent) and (opponent, method), to cancel
position bias. Three modes (``judge.mode``):

``generate`` (the paper's): the judge writes its reasoning and a label, which is parsed (the last label
    wins, see `parse_pairwise`). Each order counts 1 for a win, 0.5 for a tie and 0 for a loss (the paper
    does not say how it counts ties); an item's value is the mean of its two orders. A verdict that cannot
    be parsed is recorded and counted, never guessed, and its item is dropped (no value), as Arena-Hard-Auto
    drops it: one order alone would not be position-corrected. Dropped items are counted per cell.
``loglik``: per order, the judge model's probability of each verdict string ``Verdict: [[<label>]]``
    (the total log-probability of its tokens, so labels of different token counts compare fairly and the
    shared ``Verdict: [[`` cancels), normalised over the labels; the order's verdict is the winner with the
    most probability mass (A: ``A>>B`` + ``A>B``, tie: ``A=B``, B: ``B>A`` + ``B>>A``), counted as above.
``calibrated``: the loglik label probabilities of both orders combined, so a judge that always puts its
    mass on position A still separates methods where its content preference is real. With q_o(ours) the
    mass on our answer's position in order o plus half the tie mass, the item's score is
    s = (q_AB(A) + q_BA(B)) / 2 (balanced position calibration, as in Wang et al. 2023, "Large Language
    Models are not Fair Evaluators"); s > 0.5 + tie_band is a win (100), s < 0.5 - tie_band a loss (0),
    anything between a tie (50). Swapping the two answers gives 1 - s.

Base-model (``fewshot``) judges are shown worked judgements in the item's own task and language, built
from the task's few-shot shots (see `judge_exemplars`); chat judges read the instruction alone.

The loglik modes need an engine that gives summed log-probabilities (``Engine.loglik_terms``). Every
order's record keeps the raw label log-probabilities and the normalised label probabilities; pointwise
ratings take the most probable ``Rating: [[N]]``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from polyfuse.cache import OutputCache, add_cost, generate_cached, generation_cost, loglik_costed
from polyfuse.data import load_answers
from polyfuse.engines import Engine, Prompt, SamplingParams
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, read_paired, with_progress, write_json, write_jsonl
from polyfuse.languages import language_name
from polyfuse.sample import derive_seed
from polyfuse.tasks import EXAMPLE_SEPARATOR_STOP, TaskKind, instruction_text, load_template, reference_text

log = logging.getLogger(__name__)

MODES = ("generate", "loglik", "calibrated")
DEFAULT_TIE_BAND = 0.02  # the schema's judge.tie_band default, for callers that pass partial settings
PAIRWISE_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
RATINGS = tuple(str(n) for n in range(1, 11))
# [[A>B]], [[ b >> a ]], [[B<A]], [[A=B]], and MT-bench's [[A]], [[B]], [[C]] (tie); any case, spaces allowed
PAIRWISE_LABEL = re.compile(
    r"\[\[\s*(?:(?P<left>[AB])\s*(?P<relation>>>|<<|>|<|=)\s*(?P<right>[AB])|(?P<single>A|B|C|tie))\s*\]\]",
    re.IGNORECASE,
)
SINGLE_WINNER = {"a": "A", "b": "B", "c": "tie", "tie": "tie"}
RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


def label_winner(match: re.Match) -> str | None:
    """'A', 'B' or 'tie' for one matched label; None for a label that names one side twice ([[A>A]])."""
    if match["single"]:
        return SINGLE_WINNER[match["single"].lower()]
    left, right = match["left"].upper(), match["right"].upper()
    if left == right:
        return None
    return "tie" if match["relation"] == "=" else left if match["relation"].startswith(">") else right


def parse_pairwise(raw: str) -> str | None:
    """'A', 'B' or 'tie' from the judge's last label; None when it wrote none.

    The template asks for reasoning first and the final verdict last, so labels quoted in the reasoning
    ("not [[A>B]] but ...") give way to the final one. arena-hard instead counts any disagreeing labels
    as a failure and asks again; the raw text stays in every record for audit.
    """
    winners = [winner for winner in map(label_winner, PAIRWISE_LABEL.finditer(raw)) if winner is not None]
    return winners[-1] if winners else None


def parse_rating(raw: str, low: float = 1, high: float = 10) -> float | None:
    ratings = [float(value) for value in RATING.findall(raw)]
    return ratings[-1] if ratings and low <= ratings[-1] <= high else None


def label_distribution(logprobs: list[float]) -> list[float]:
    """Softmax over the labels' total log-probabilities: each label's share of the label mass."""
    peak = max(logprobs)
    weights = [math.exp(value - peak) for value in logprobs]
    return [weight / sum(weights) for weight in weights]


def winner_mass(probs: dict[str, float]) -> dict[str, float]:
    return {"A": probs["A>>B"] + probs["A>B"], "tie": probs["A=B"], "B": probs["B>A"] + probs["B>>A"]}


def probabilities_text(probs: dict[str, float]) -> str:
    return "(label probabilities: " + ", ".join(f"{label}={p:.3f}" for label, p in probs.items()) + ")"


def outcome_of(winner: str | None, ours: str) -> float | None:
    return None if winner is None else 0.5 if winner == "tie" else float(winner == ours)


def calibrated_score(orders: list[dict]) -> float:
    """Our expected score averaged over both orders: position preference cancels, content preference stays."""
    shares = []
    for order in orders:
        mass = winner_mass(order["label_probs"])
        shares.append(mass[order["position"]] + 0.5 * mass["tie"])
    return sum(shares) / len(shares)


class Rating(NamedTuple):
    value: float | None  # 1-10; None when a written rating did not parse
    raw: str
    cost: dict | None  # the judge's calls, tokens and seconds for this rating (None: cached before costs were kept)


GOOD_RATING, POOR_RATING = 9, 2  # the worked pointwise judgements' ratings: clearly good, clearly poor


@dataclass(frozen=True)
class JudgeExemplar:
    """A worked judgement for few-shot judges: a shot's own answer against an answer to another shot's prompt."""

    instruction: str
    answer_a: str
    answer_b: str
    judgement: str  # the pairwise judgement, ending in its label
    answer: str  # the answer the pointwise example rates
    rating_judgement: str  # the pointwise judgement, ending in its rating


def judge_exemplars(kind: TaskKind, shots: list[dict]) -> list[JudgeExemplar]:
    """One worked judgement per shot with a written answer, from these shots only (one task and language).

    The shot's reference is the good answer; the next shot's reference, which answers a different prompt, is the
    poor one. The good answer stands at A in even-numbered exemplars and at B in odd ones, and the pointwise
    example rates the good answer in even ones and the poor one in odd ones, so the examples teach neither a
    position nor a rating. A shot with no distinct other answer gives no exemplar.
    """
    usable = [(shot, reference) for shot in shots if (reference := reference_text(shot)) is not None]
    exemplars: list[JudgeExemplar] = []
    for index, (shot, good) in enumerate(usable):
        poor = usable[(index + 1) % len(usable)][1]
        if poor == good:
            continue
        even = len(exemplars) % 2 == 0
        first, second = (good, poor) if even else (poor, good)
        winner, loser = ("A", "B") if even else ("B", "A")
        good_rated = (good, GOOD_RATING, "It answers the prompt.")
        rated, rating, reason = good_rated if even else (poor, POOR_RATING, "It answers a different prompt.")
        verdict = f"Verdict: [[{winner}>>{loser}]]"
        exemplars.append(
            JudgeExemplar(
                instruction=instruction_text(kind, shot),
                answer_a=first,
                answer_b=second,
                judgement=f"{winner} answers the prompt; {loser} answers a different prompt. {verdict}",
                answer=rated,
                rating_judgement=f"{reason} Rating: [[{rating}]]",
            )
        )
    return exemplars


@dataclass
class Judge:
    """Asks a model for verdicts in one of `MODES` (see the module docstring)."""

    engine: Engine
    style: str
    template: str
    cache: OutputCache
    params: SamplingParams
    seed: int
    mode: str = "generate"
    tie_band: float = DEFAULT_TIE_BAND
    shots: tuple[dict, ...] = ()  # the task's few-shot shots: worked judgements for a few-shot judge
    _exemplars: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PolyfuseError(f"judge.mode: unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.mode != "generate" and type(self.engine).loglik_terms is Engine.loglik_terms:
            raise PolyfuseError(
                f"model {self.engine.model_name!r}: judge.mode {self.mode} needs summed label "
                f"log-probabilities, which the {self.engine.engine_name} engine does not give; "
                "use judge.mode generate"
            )

    @classmethod
    def from_settings(
        cls, engine: Engine, style: str, settings: dict, cache: OutputCache, template: str, shots: tuple[dict, ...] = ()
    ) -> Judge:
        params = SamplingParams(
            temperature=float(settings["temperature"]),
            top_p=1.0,
            max_tokens=int(settings["max_tokens"]),
            stop=EXAMPLE_SEPARATOR_STOP if style == "fewshot" else (),
        )
        return cls(
            engine,
            style,
            template,
            cache,
            params,
            int(settings["seed"]),
            settings.get("mode", "generate"),
            float(settings.get("tie_band", DEFAULT_TIE_BAND)),
            tuple(shots),
        )

    def exemplars(self, kind: TaskKind, item: dict) -> list[JudgeExemplar]:
        """The worked judgements a few-shot judge sees for `item`: from the shots of its own task and language."""
        key = (item["task"], item["lang"])
        if key not in self._exemplars:
            own = [shot for shot in self.shots if (shot.get("task"), shot.get("lang")) == key]
            self._exemplars[key] = judge_exemplars(kind, own)
            if not self._exemplars[key] and self.style == "fewshot":  # no English stand-in: say it is zero-shot
                log.warning(
                    "few-shot judge %s on %s/%s: no worked judgement (needs two shots with distinct references, "
                    "tasks.%s.shots); it judges from the instruction alone",
                    self.engine.model_name,
                    *key,
                    key[0],
                )
        return self._exemplars[key]

    def _prompt(self, kind: TaskKind, item: dict, variables: dict) -> Prompt:
        # Chat judges follow the instruction alone; only base models get worked examples, from this task's shots.
        examples = self.exemplars(kind, item) if self.style == "fewshot" else []
        common = {"instruction": instruction_text(kind, item), "language": language_name(item["lang"])}
        text = load_template(self.template, "judge", self.style).render(**common, **variables, examples=examples)
        return [{"role": "user", "content": text}] if self.style == "chat" else text

    def _generate(self, prompt: Prompt, key: str) -> dict:
        seeds = [derive_seed(self.seed, "judge", key)]
        (answer,) = generate_cached(self.engine, self.cache, prompt, self.params, seeds)
        return answer

    def _label_scores(self, prompt: Prompt, prefix: str, labels: tuple[str, ...]) -> tuple[dict, dict, dict | None]:
        """Total log-probability of each ``prefix[[label]]`` after the prompt, each label's share, and the cost."""
        # a few-shot judgement continues the text after "Judgement:"; a chat answer starts a fresh turn
        lead = " " if self.style == "fewshot" else ""
        continuations = [f"{lead}{prefix}[[{label}]]" for label in labels]
        totals, cost = loglik_costed(self.engine, self.cache, prompt, continuations, normalization="sum")
        logprobs = dict(zip(labels, totals, strict=True))
        return logprobs, dict(zip(labels, label_distribution(totals), strict=True)), cost

    def _order(self, prompt: Prompt, key: str, ours: str) -> dict:
        """One order's verdict, with our answer at position `ours`."""
        if self.mode == "generate":
            answer = self._generate(prompt, key)
            winner = parse_pairwise(answer["text"])
            return {
                "position": ours,
                "verdict": winner,
                "outcome": outcome_of(winner, ours),
                "raw": answer["text"],
                "finish_reason": answer["finish_reason"],
                "cost": generation_cost(answer),
            }
        logprobs, probs, cost = self._label_scores(prompt, "Verdict: ", PAIRWISE_LABELS)
        mass = winner_mass(probs)
        winner = max(mass, key=mass.get)
        raw = f"Verdict: [[{max(probs, key=probs.get)}]] {probabilities_text(probs)}"
        return {
            "position": ours,
            "verdict": winner,
            "outcome": outcome_of(winner, ours),
            "raw": raw,
            "label_logprobs": logprobs,
            "label_probs": probs,
            "cost": cost,
        }

    def compare(self, kind: TaskKind, item: dict, answer: str, opponent: str) -> dict:
        """Judge `answer` against `opponent` in both orders; `value` is our win rate on this item (0-100)."""
        orders = [
            self._order(self._prompt(kind, item, {"answer_a": first, "answer_b": second}), f"{item['id']}:{ours}", ours)
            for first, second, ours in ((answer, opponent, "A"), (opponent, answer, "B"))
        ]
        cost = add_cost(orders[0]["cost"], orders[1]["cost"])
        if self.mode == "calibrated":
            score = calibrated_score(orders)
            outcome = 1.0 if score > 0.5 + self.tie_band else 0.0 if score < 0.5 - self.tie_band else 0.5
            return {"value": 100.0 * outcome, "calibrated_score": score, "orders": orders, "cost": cost}
        outcomes = [order["outcome"] for order in orders]
        both = None not in outcomes  # else dropped: the one order that parsed is not position-corrected
        return {"value": 100.0 * sum(outcomes) / len(outcomes) if both else None, "orders": orders, "cost": cost}

    def rate(self, kind: TaskKind, item: dict, answer: str, reference: str | None = None) -> Rating:
        """A 1-10 rating of `answer`; against `reference` (another answer standing in for one) when given, with a
        template that shows it (MBR's judge utility)."""
        shown = {"answer": answer} if reference is None else {"answer": answer, "reference": reference}
        prompt = self._prompt(kind, item, shown)
        if self.mode == "generate":
            key = f"{item['id']}:rate:{answer}" + ("" if reference is None else f":against:{reference}")
            generated = self._generate(prompt, key)
            return Rating(parse_rating(generated["text"]), generated["text"], generation_cost(generated))
        _, probs, cost = self._label_scores(prompt, "Rating: ", RATINGS)
        best = max(probs, key=probs.get)
        return Rating(float(best), f"Rating: [[{best}]] {probabilities_text(probs)}", cost)


def opponent_texts(path: str) -> dict[str, str]:
    return {record["id"]: record["output"] for record in read_jsonl(path)}


def reference_from_pools(pools: Iterator[dict]) -> Iterator[dict]:
    """A reference system's answers, drawn as one-candidate pools.

    An empty answer is an error (every method would beat it), and so is one cut at its token budget:
    a truncated reference loses to any complete answer, which would inflate every method's win rate.
    """
    for pool in pools:
        (candidate,) = pool["candidates"]
        text = candidate["text"].strip()
        where = f"reference answer for item {pool['id']!r} by {candidate['model']!r}"
        if not text:
            raise PolyfuseError(f"{where} is empty")
        if candidate.get("finish_reason") == "length":
            raise PolyfuseError(
                f"{where} was cut at {candidate['params']['max_tokens']} tokens; raise "
                f"tasks.{pool['task']}.reference.max_tokens, or give the answers as a file"
            )
        yield {
            "id": pool["id"],
            "task": pool["task"],
            "lang": pool["lang"],
            "output": text,
            "system": candidate["model"],
            "candidate": candidate,
        }


def reference_from_file(items_path: str, answers_path: str) -> Iterator[dict]:
    answers = load_answers(answers_path)
    for item in read_jsonl(items_path):
        if item["id"] not in answers:
            raise PolyfuseError(f"{answers_path}: no reference answer for item {item['id']!r}")
        if not answers[item["id"]].strip():
            raise PolyfuseError(f"{answers_path}: the reference answer for item {item['id']!r} is empty")
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "output": answers[item["id"]],
            "system": str(answers_path),
        }


def position_bound(orders: list[dict]) -> bool:
    """The judge named the same position the winner in both orders: it followed position, not content."""
    verdicts = [order["verdict"] for order in orders]
    return verdicts[0] in ("A", "B") and verdicts[0] == verdicts[1]


def judge_records(
    items_path: str,
    outputs_path: str,
    opponents: dict[str, str],
    kind: TaskKind,
    judge: Judge,
    stats: dict,
    label: str | None,
) -> Iterator[dict]:
    for item, output in read_paired(items_path, outputs_path):
        if item["id"] not in opponents:
            raise PolyfuseError(f"no opponent answer for item {item['id']!r}")
        verdict = judge.compare(kind, item, output["output"], opponents[item["id"]])
        failed = sum(order["verdict"] is None for order in verdict["orders"])
        stats["verdicts"] = stats.get("verdicts", 0) + 2
        stats["unparsed"] = stats.get("unparsed", 0) + failed
        stats["dropped"] = stats.get("dropped", 0) + (verdict["value"] is None)
        stats["position_bound"] = stats.get("position_bound", 0) + position_bound(verdict["orders"])
        cell = {
            "task": item["task"],
            "lang": item["lang"],
            "method": label or output["method"],
            "sampler": output["sampler"],
        }
        stats["cell"] = cell
        yield {
            "id": item["id"],
            **cell,
            "values": {"winrate": verdict["value"]},
            "judge": judge.engine.model_name,
            "judge_mode": judge.mode,
            "orders": verdict["orders"],
            "cost": verdict["cost"],
            **({"calibrated_score": verdict["calibrated_score"]} if "calibrated_score" in verdict else {}),
        }


def run_judge(
    items_path, outputs_path, opponent_path, scores_path, summary_path, *, kind: TaskKind, judge: Judge, label=None
) -> None:
    """Win rate of each output against the opponent's answer to the same item (`label` names a head-to-head)."""
    stats: dict = {}
    records = judge_records(items_path, outputs_path, opponent_texts(opponent_path), kind, judge, stats, label)
    count = write_jsonl(scores_path, with_progress(records, items_path, f"judge {label or 'vs reference'}"))
    write_json(
        summary_path,
        {
            **stats.get("cell", {}),
            "items": count,
            "judge": judge.engine.model_name,
            "verdicts": stats.get("verdicts", 0),
            "unparsed_verdicts": stats.get("unparsed", 0),
            "dropped_items": stats.get("dropped", 0),
            "position_bound": stats.get("position_bound", 0),
            "corpus": {},
        },
    )
    log.info(
        "judged=%d verdicts=%d unparsed=%d dropped=%d position_bound=%d model_calls=%d",
        count,
        stats.get("verdicts", 0),
        stats.get("unparsed", 0),
        stats.get("dropped", 0),
        stats.get("position_bound", 0),
        judge.engine.calls,
    )
