"""Selection methods beyond scoring each candidate alone: a model names the best one, candidates meet in a
tournament, or they vote. Each maps (prompt, pool) to one index and plugs into `select` as a scorer: its scores
rank the pool (the chosen candidate highest, ties to the lowest index) and its record says how it chose.

- ``usc`` (Universal Self-Consistency, Chen et al. 2023, arXiv 2311.17311): one call; the model reads the numbered
  responses and names the most consistent one.
- ``genselect`` (NeMo-Skills' GenSelect): one call over a window of at most ``zoo.genselect.window`` candidates,
  ending ``Judgment: <index>``. NeMo-Skills drops the candidates beyond the window; here a larger pool is split into
  windows of at most that many, in shown order, each window's pick goes on to the next round, and so on until one
  is left (a window of one passes without a call).
- ``chops`` (checklist selection, arXiv 2506.20544): one call writes a checklist for this prompt, checks each
  response against it and names the best.
- ``knockout`` and ``round_robin``: pairwise tournaments with the study's judge (its template and mode), each pair
  judged in both orders (LLM-Blender's PairRanker with an LLM judge in place of PairRM). A knockout pairs the
  candidates in shown order, 1-2, 3-4, ..., an odd one out passes to the next round without a match: N - 1 matches,
  2(N - 1) verdicts. Round robin judges every pair, N(N - 1) verdicts, and ranks by wins (a tie is half a win) or
  by Bradley-Terry strengths (``zoo.round_robin.scoring``). A match whose verdict is a tie or was dropped (an
  unparsed order) goes to the candidate shown first in it, and is counted; when the final's verdict was dropped, or
  a round robin got no verdict at all, the record states the first shown candidate as a stand-in.
- ``mbr_judge``: minimum Bayes risk with an LLM-judge utility (Wu et al., ICLR 2025), the candidates themselves as
  pseudo-references (as mbrs does). ``zoo.mbr_judge.utility`` ``pointwise``: u(i, j) is the judge's 1-10 rating of
  candidate i with candidate j shown as the reference (template ``pointwise_reference``); ``pairwise``: u(i, j) is
  i's win rate against j over both orders (0-1), so u(j, i) = 1 - u(i, j). The self-pair rule
  (``zoo.mbr_judge.self_pair``): excluded by default, each candidate's expected utility is its mean over the N - 1
  others, N(N - 1) calls; included, over all N, N^2 calls for pointwise (a pairwise self-pair is a tie by definition,
  0.5 for every candidate, and is never asked). A rating or verdict the judge did not give is left out of the mean
  and counted; a candidate with none scores None and ranks last.
- ``mbr_comet``: MBR with COMET as the utility on translation tasks (the study's ``comet.model``), run in the torch
  environment (polyfuse.comet_score); each candidate's mean COMET with each other candidate as the reference (and
  itself with ``zoo.mbr_comet.self_pair``). Without the model every item falls back to its first candidate, stated.
- ``majority``: for tasks with an extractable answer (math, factqa): the most frequent extracted answer; its first
  candidate in pool order is chosen (ties between answers go to the lowest index too).
- ``self_certainty`` (Kang et al. 2025, arXiv 2502.18581): the mean over the answer's tokens of KL(uniform || p),
  from one teacher-forced pass per candidate after the task prompt; it needs full-vocabulary log-probabilities,
  which only the llama.cpp engine gives.

Every model call goes through the cached calls. The models see the candidates in the order the fusor sees them
(polyfuse.fuse.shown_order under the study's seed, ``order_seed`` in their settings), numbered from 1, and a named
number is mapped back to its pool index; the tournaments pair them in that order too. The answer
is read by one rule (`parse_choice`): the last line that starts with ``Judgment:``; it must hold exactly one number,
from 1 to the number shown. Anything else is a parse failure, counted under its status (``missing``, ``no_index``,
``several``, ``out_of_range``), and the candidate shown first in that call stands in, stated as ``fallback:
"first"`` in the record.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from polyfuse.cache import OutputCache, cache_key, generate_cached, generation_cost, sum_costs
from polyfuse.comet_score import MBR_COMET
from polyfuse.engines import Engine, SamplingParams
from polyfuse.errors import PolyfuseError
from polyfuse.fuse import shown_order
from polyfuse.judge import PAIRWISE_LABELS, RATINGS
from polyfuse.languages import language_name
from polyfuse.sample import derive_seed
from polyfuse.score import extract_answer, final_answer_text, normalize_answer
from polyfuse.select import Scorer, register_scorer
from polyfuse.tasks import EXAMPLE_SEPARATOR_STOP, TaskKind, instruction_text, load_template, task_prompt

# The selectors that run a generative model (named as bon-<selector>@<model>), those without one, and the task kinds
# majority voting can read an answer from.
MODEL_SELECTORS = ("usc", "genselect", "chops", "knockout", "round_robin", "mbr_judge", "self_certainty")
ANSWER_KINDS = ("math", "factqa")
ZOO_SELECTORS = (*MODEL_SELECTORS, "majority", MBR_COMET)  # mbr_comet runs in the torch group (comet_score)
TOURNAMENT_SCORINGS = ("wins", "bradley_terry")
MBR_UTILITIES = ("pointwise", "pairwise")

JUDGMENT_LINE = re.compile(r"^[ \t>#*_]*judg(?:e)?ment[ \t*_]*[:\uff1a](?P<rest>.*)$", re.IGNORECASE | re.MULTILINE)
INTEGER = re.compile(r"(?<![\d.])\d+(?![\d.]*\d)")


@dataclass(frozen=True)
class Choice:
    position: int | None  # 0-based shown position; None when the output did not name one
    status: str  # ok | missing | no_index | several | out_of_range


def parse_choice(raw: str, shown: int) -> Choice:
    """The shown position a judgment names, by the module's rule (the last ``Judgment:`` line, one number in 1..n)."""
    lines = list(JUDGMENT_LINE.finditer(raw.replace("\r\n", "\n")))
    if not lines:
        return Choice(None, "missing")
    numbers = {int(number) for number in INTEGER.findall(lines[-1]["rest"])}
    if not numbers:
        return Choice(None, "no_index")
    if len(numbers) > 1:
        return Choice(None, "several")
    (number,) = numbers
    return Choice(number - 1, "ok") if 1 <= number <= shown else Choice(None, "out_of_range")


def choice_primer(prompt, style: str) -> str:
    """A few-shot prompt that ends at ``Judgment:`` has already written the marker: it is read before the output."""
    last = prompt.rsplit("\n", 1)[-1] if style == "fewshot" else ""
    return last if JUDGMENT_LINE.match(last) else ""


def knockout_rounds(entrants: list[int], size: int) -> list[list[list[int]]]:
    """The brackets of a knockout in groups of at most `size` (2: pairs), when every group's first entrant wins;
    used for its arithmetic (the number of calls), the selectors play the real one."""
    rounds = []
    while len(entrants) > 1:
        groups = [entrants[start : start + size] for start in range(0, len(entrants), size)]
        rounds.append(groups)
        entrants = [group[0] for group in groups]
    return rounds


def knockout_calls(n: int, size: int) -> int:
    """The calls of a knockout over `n` candidates in groups of at most `size`: one per group of two or more."""
    return sum(len(group) > 1 for groups in knockout_rounds(list(range(n)), size) for group in groups)


def calls_floor(name: str, n: int, settings: dict) -> int:
    """The model calls a selector makes on `n` candidates (the benchmark's floor): one per window of a knockout over
    windows (USC and CHOPS: the whole pool, one call); one per verdict or rating of a tournament or an MBR judge,
    with the judge generating (in a log-likelihood mode each verdict takes one pass per label instead, see
    `judge_passes`); one teacher-forced pass per candidate for self-certainty; COMET segments for COMET-MBR; none for
    a vote."""
    if name in ("usc", "chops"):
        return knockout_calls(n, max(n, 1))
    if name == "genselect":
        return knockout_calls(n, settings["genselect"]["window"])
    if name == "knockout":
        return 2 * knockout_calls(n, 2)
    if name == "round_robin":
        return n * (n - 1)
    if name == "mbr_judge":
        mbr = settings["mbr_judge"]
        return n * n if mbr["utility"] == "pointwise" and mbr["self_pair"] else n * (n - 1)
    if name == "self_certainty":
        return n
    if name == MBR_COMET:  # COMET segments: each candidate against each other one (and itself with the self-pair)
        return n * n if settings["mbr_comet"]["self_pair"] else n * (n - 1)
    if name == "majority":
        return 0
    raise PolyfuseError(f"unknown zoo selector {name!r}; known: {', '.join(ZOO_SELECTORS)}")


def judge_passes(name: str, mode: str) -> int:
    """A judge's model calls per verdict (tournaments, pairwise MBR) or rating (pointwise MBR): one when it
    generates, one per label when it reads the labels' log-probabilities."""
    if mode == "generate":
        return 1
    return len(RATINGS) if name == "mbr_judge_pointwise" else len(PAIRWISE_LABELS)


class ModelChoice(Scorer):
    """A selector that asks a model to name the best of the candidates it is shown, a window at a time."""

    template = "usc"
    window: int | None = None  # None: the whole pool in one call

    def __init__(self, kind: TaskKind, engine: Engine, style: str, cache: OutputCache, settings: dict, **context):
        super().__init__(kind, **context)
        self.engine, self.style, self.cache, self.settings = engine, style, cache, settings
        self.seed = int(settings["seed"])  # the selection calls' seeds
        self.order_seed = int(settings["order_seed"])  # the study's seed: the fusor's shown order, item by item
        self.params = SamplingParams(
            temperature=float(settings["temperature"]),
            top_p=1.0,
            max_tokens=int(settings["max_tokens"]),
            stop=EXAMPLE_SEPARATOR_STOP if style == "fewshot" else (),
        )
        self.failures = 0

    def score(self, item, texts):
        return self.score_item(item, texts)[0]

    def prompt(self, item: dict, candidates: list[str]):
        template = load_template(self.template, "select", self.style)
        text = template.render(
            instruction=instruction_text(self.kind, item), language=language_name(item["lang"]), candidates=candidates
        )
        return ([{"role": "user", "content": text}] if self.style == "chat" else text), template.hash

    def choose(self, item: dict, texts: list[str], group: list[int], call: int) -> tuple[int, dict]:
        """The pool index the model picks out of `group` (pool indices in shown order), and the call's record."""
        prompt, template_hash = self.prompt(item, [texts[i] for i in group])
        seeds = [derive_seed(self.seed, self.name, item["id"], call)]
        (answer,) = generate_cached(self.engine, self.cache, prompt, self.params, seeds)
        choice = parse_choice(choice_primer(prompt, self.style) + answer["text"], len(group))
        self.failures += choice.position is None
        chosen = group[choice.position if choice.position is not None else 0]
        return chosen, {
            "shown": group,
            "status": choice.status,
            "raw": answer["text"],
            "template_hash": template_hash,
            "cost": generation_cost(answer),
        }

    def score_item(self, item, texts):
        entrants = shown_order(self.order_seed, item["id"], len(texts))
        wins, calls = [0.0] * len(texts), []
        size = self.window or len(texts)
        while len(entrants) > 1:
            winners = []
            for start in range(0, len(entrants), size):
                group = entrants[start : start + size]
                chosen = group[0]  # a window of one passes without a call
                if len(group) > 1:
                    chosen, call = self.choose(item, texts, group, len(calls))
                    calls.append(call)
                wins[chosen] += 1
                winners.append(chosen)
            entrants = winners
        failed = [call["status"] for call in calls if call["status"] != "ok"]
        final = calls[-1] if calls else None
        return wins, {
            "calls": calls,
            "parse_status": final["status"] if final else "ok",
            "fallback": "first" if final and final["status"] != "ok" else None,
            "failed_calls": len(failed),
            "cost": sum_costs(call["cost"] for call in calls),
        }


@register_scorer("usc")
class UniversalSelfConsistency(ModelChoice):
    template = "usc"


@register_scorer("chops")
class ChecklistSelection(ModelChoice):
    template = "chops"


@register_scorer("genselect")
class GenSelect(ModelChoice):
    template = "genselect"

    def __init__(self, kind, engine, style, cache, settings, **context):
        super().__init__(kind, engine, style, cache, settings, **context)
        self.window = int(settings["genselect"]["window"])


def match_winner(value: float | None, first: int, second: int) -> tuple[int, str]:
    """A match's winner from the judge's value for `first` (0-100, both orders; None: dropped), and how it went:
    ``won``, ``tie`` or ``dropped`` (the last two go to `first`, the candidate shown first)."""
    if value is None:
        return first, "dropped"
    if value == 50.0:
        return first, "tie"
    return (first if value > 50.0 else second), "won"


class Tournament(Scorer):
    """Pairwise matches judged by the study's judge, each in both orders (polyfuse.judge.Judge.compare)."""

    def __init__(self, kind: TaskKind, judge, settings: dict, **context):
        super().__init__(kind, **context)
        self.judge, self.engine, self.settings = judge, judge.engine, settings
        self.seed = int(settings["seed"])  # the selection calls' seeds
        self.order_seed = int(settings["order_seed"])  # the study's seed: the fusor's shown order, item by item
        self.failures = 0

    def score(self, item, texts):
        return self.score_item(item, texts)[0]

    def match(self, item: dict, texts: list[str], first: int, second: int) -> dict:
        verdict = self.judge.compare(self.kind, item, texts[first], texts[second])
        self.failures += verdict["value"] is None
        return {"pair": [first, second], "value": verdict["value"], "cost": verdict["cost"]}

    def outcome(self, matches: list[dict], scores: list, extra: dict | None = None) -> tuple[list, dict]:
        dropped = sum(match["value"] is None for match in matches)
        ties = sum(match["value"] == 50.0 for match in matches)
        return scores, {
            "matches": matches,
            "ties": ties,
            "dropped": dropped,
            "fallback": None,
            "cost": sum_costs(match["cost"] for match in matches),
            **(extra or {}),
        } | {"parse_status": "dropped" if (extra or {}).get("fallback") else "ok"}


@register_scorer("knockout")
class Knockout(Tournament):
    def score_item(self, item, texts):
        entrants = shown_order(self.order_seed, item["id"], len(texts))
        wins, matches = [0.0] * len(texts), []
        while len(entrants) > 1:
            winners = []
            for start in range(0, len(entrants), 2):
                pair = entrants[start : start + 2]
                winner = pair[0]  # the odd one out passes without a match
                if len(pair) == 2:
                    matches.append(self.match(item, texts, *pair))
                    winner, how = match_winner(matches[-1]["value"], *pair)
                    matches[-1]["how"] = how
                wins[winner] += 1
                winners.append(winner)
            entrants = winners
        # the final's verdict was dropped: the candidate shown first in it stands in for the judge's pick
        dropped_final = bool(matches) and matches[-1]["how"] == "dropped"
        return self.outcome(matches, wins, {"fallback": "first" if dropped_final else None})


def bradley_terry(wins: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Bradley-Terry strengths from a matrix of wins (wins[i, j]: i's wins over j, ties as halves), by the MM
    algorithm (Hunter 2004), normalised to sum to 1; a candidate without a win gets 0."""
    games = wins + wins.T
    strengths = np.full(len(wins), 1.0 / len(wins))
    for _ in range(iterations):
        total = strengths[:, None] + strengths[None, :]
        denominators = np.where(games > 0, games / np.where(total > 0, total, 1.0), 0.0).sum(axis=1)
        strengths = np.where(denominators > 0, wins.sum(axis=1) / np.where(denominators > 0, denominators, 1.0), 0.0)
        strengths /= strengths.sum() or 1.0
    return strengths


@register_scorer("round_robin")
class RoundRobin(Tournament):
    def score_item(self, item, texts):
        shown = shown_order(self.order_seed, item["id"], len(texts))
        wins = np.zeros((len(texts), len(texts)))
        matches = []
        for a in range(len(shown)):
            for b in range(a + 1, len(shown)):
                first, second = shown[a], shown[b]
                matches.append(self.match(item, texts, first, second))
                value = matches[-1]["value"]
                if value is not None:  # a dropped match gives no one a point
                    wins[first, second] += value / 100.0
                    wins[second, first] += 1.0 - value / 100.0
        scoring = self.settings["round_robin"]["scoring"]
        if all(match["value"] is None for match in matches):  # no verdict at all: the first shown stands in
            scores = [None] * len(texts)
            scores[shown[0]] = 0.0
            return self.outcome(matches, scores, {"scoring": scoring, "fallback": "first"})
        scores = wins.sum(axis=1) if scoring == "wins" else bradley_terry(wins)
        return self.outcome(matches, [round(float(score), 6) for score in scores], {"scoring": scoring})


@register_scorer("mbr_judge")
class MbrJudge(Tournament):
    """Minimum Bayes risk with an LLM-judge utility: each candidate's mean utility against the others."""

    def score_item(self, item, texts):
        mbr = self.settings["mbr_judge"]
        n = len(texts)
        utility = np.full((n, n), np.nan)
        calls = []
        if mbr["utility"] == "pairwise":
            for i in range(n):
                for j in range(i + 1, n):
                    calls.append(self.match(item, texts, i, j))
                    if calls[-1]["value"] is not None:
                        utility[i, j] = calls[-1]["value"] / 100.0
                        utility[j, i] = 1.0 - utility[i, j]
        else:
            for i in range(n):
                for j in range(n):
                    if i == j and not mbr["self_pair"]:
                        continue
                    rating = self.judge.rate(self.kind, item, texts[i], reference=texts[j])
                    self.failures += rating.value is None
                    calls.append({"pair": [i, j], "value": rating.value, "cost": rating.cost})
                    utility[i, j] = np.nan if rating.value is None else rating.value
        if not mbr["self_pair"] or mbr["utility"] == "pairwise":
            np.fill_diagonal(utility, np.nan)  # the self-pair left out (a pairwise one is a tie by definition)
        scores = [None if np.isnan(row).all() else round(float(np.nanmean(row)), 6) for row in utility]
        unrated = sum(call["value"] is None for call in calls)
        return scores, {
            "utility": mbr["utility"],
            "self_pair": mbr["self_pair"],
            "unrated": unrated,
            "parse_status": "ok" if any(score is not None for score in scores) else "no_utility",
            "fallback": None if any(score is not None for score in scores) else "first",
            "cost": sum_costs(call["cost"] for call in calls),
        }


def voted_answer(kind: TaskKind, text: str, lang: str) -> str | None:
    """The answer a vote counts: the number a math answer ends on, the normalised final answer of a short answer."""
    if kind.name == "math":
        number = extract_answer(text, lang)
        return None if number is None else repr(round(number, 6))  # full precision, to the scorer's tolerance
    if kind.name == "factqa":
        return normalize_answer(final_answer_text(text)) or None
    raise PolyfuseError(f"majority: task kind {kind.name!r} has no extractable answer; it votes on {ANSWER_KINDS}")


@register_scorer("majority")
class MajorityVote(Scorer):
    """Each candidate scores the number of candidates that give its answer; one without an answer ranks last."""

    def score_item(self, item, texts):
        answers = [voted_answer(self.kind, text, item["lang"]) for text in texts]
        counts = Counter(answer for answer in answers if answer is not None)
        scores = [float(counts[answer]) if answer is not None else None for answer in answers]
        status = (
            {"parse_status": "ok", "fallback": None} if counts else {"parse_status": "no_answer", "fallback": "first"}
        )
        return scores, {"answers": answers, **status}

    def score(self, item, texts):
        return self.score_item(item, texts)[0]


def certainty_costed(engine: Engine, cache: OutputCache, prompt, continuations: list[str]) -> tuple[list, dict | None]:
    """Each continuation's self-certainty (mean KL(uniform || p) per token) after `prompt`, cached with its cost."""
    identity = engine.identity()
    keys = [cache_key(model=identity, prompt=prompt, self_certainty=text) for text in continuations]
    cached = cache.get_many(keys)
    missing = [index for index, key in enumerate(keys) if key not in cached]
    if missing:
        calls, tokens = engine.calls, getattr(engine, "loglik_tokens", 0)
        start = time.perf_counter()
        terms = engine.certainty_terms(prompt, [continuations[index] for index in missing])
        seconds = (time.perf_counter() - start) / len(missing)
        read = (getattr(engine, "loglik_tokens", 0) - tokens) / len(missing)
        made = (engine.calls - calls) / len(missing)
        entries = []
        for index, (total, count) in zip(missing, terms, strict=True):
            value = {
                "score": total / count if count else None,
                "cost": {"calls": made, "tokens_in": read, "tokens_out": 0, "seconds": round(seconds, 6)},
            }
            entries.append((keys[index], value))
            cached[keys[index]] = value
        cache.put_many(entries)
    values = [cached[key] for key in keys]
    return [value["score"] for value in values], sum_costs(value["cost"] for value in values)


@register_scorer("self_certainty")
class SelfCertainty(Scorer):
    """Self-certainty of each candidate as generated, after the task prompt, under the named model."""

    scores_raw_text = True  # as loglik: the candidate's own first token is scored after the prompt

    def __init__(self, kind, engine: Engine, style: str, shots: list[dict], cache: OutputCache, **context):
        super().__init__(kind, **context)
        if type(engine).certainty_terms is Engine.certainty_terms:
            engine.certainty_terms(None, [])  # raises the engine's one line: no full-vocabulary log-probabilities
        self.engine, self.style, self.shots, self.cache = engine, style, shots, cache

    def score(self, item, texts):
        return self.score_item(item, texts)[0]

    def score_item(self, item, texts):
        prompt, _ = task_prompt(self.kind, item, self.style, self.shots)
        scores, cost = certainty_costed(self.engine, self.cache, prompt, texts)
        scored = any(score is not None for score in scores)  # an empty candidate has no token to be certain of
        status = (
            {"parse_status": "ok", "fallback": None} if scored else {"parse_status": "no_tokens", "fallback": "first"}
        )
        return scores, {**status, "cost": cost}
