import json
import math
import re

import pytest

from polyfuse.cache import OutputCache
from polyfuse.engines import Engine, Generation
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.judge import (
    PAIRWISE_LABELS,
    Judge,
    parse_pairwise,
    parse_rating,
    reference_from_file,
    reference_from_pools,
    run_judge,
)
from polyfuse.select import best_index, make_scorer
from polyfuse.tasks import task_kind

CHAT = task_kind("chat")


@pytest.mark.parametrize(
    "raw, winner",
    [
        ("A is more complete. My final verdict is [[A>>B]].", "A"),
        ("Slightly better: [[A>B]]", "A"),
        ("[[ B>A ]]", "B"),
        ("Clearly [[B>>A]]", "B"),
        ("Both are equally good: [[A=B]]", "tie"),
        ("MT-bench style: [[C]]", "tie"),
        ("First I thought [[A>B]] but then [[A>>B]].", "A"),
        # the last label is the final verdict: labels quoted in the reasoning give way to it
        ("Not [[A>B]] but rather the reverse, as B is complete. My final verdict is [[B>A]].", "B"),
        ("Undecided: [[A>B]] or maybe [[B>A]]", "B"),
        ("Final verdict: [[B>A]]. (A label like [[A>A]] names no winner.)", "B"),
        ("[[ b > a ]]", "B"),
        ("[[a>>b]]", "A"),
        ("[[A >> B]]", "A"),
        ("[[B<A]] means A wins", "A"),
        ("[[ Tie ]]", "tie"),
        ("[[B=A]]", "tie"),
        ("[[A>A]]", None),
        ("[[A>B]", None),
        ("Assistant A is better.", None),
        ("", None),
    ],
)
def test_parse_pairwise(raw, winner):
    assert parse_pairwise(raw) == winner


@pytest.mark.parametrize(
    "raw, rating",
    [("Good. Rating: [[8]]", 8.0), ("[[3]] then [[7.5]]", 7.5), ("Rating: 8", None), ("Rating: [[42]]", None)],
)
def test_parse_rating(raw, rating):
    assert parse_rating(raw) == rating


class ScriptedJudge(Engine):
    """A judge model that answers from a script keyed by which answer is shown first (a test double)."""

    engine_name = "scripted"

    def __init__(self, script):
        super().__init__("scripted", {})
        self.script = script

    def identity(self):
        return {"engine": "scripted", "script": sorted(self.script.items())}

    def generate(self, requests):
        for request in requests:
            self.calls += 1
            text = request.prompt[0]["content"]
            first = text.split("<|The Start of Assistant A's Answer|>\n")[1].split("\n")[0]
            yield Generation([self.script.get(first, "no verdict")], 10, [5], 0.01, ["stop"])

    def loglik(self, prompt, continuations):
        raise NotImplementedError


def make_judge(tmp_path, script):
    cache = OutputCache(tmp_path / "judge")
    return Judge.from_settings(
        ScriptedJudge(script), "chat", {"temperature": 0.0, "max_tokens": 64, "seed": 0}, cache, "arena"
    )


ITEM = {"id": "q1", "task": "arena", "lang": "de", "input": "Erkläre den Regenbogen."}


def test_both_orders_cancel_position_bias_and_ties_count_half(tmp_path):
    # A judge that always prefers whatever it sees first: one win and one loss, so 50.
    biased = make_judge(tmp_path, {"ours": "[[A>B]]", "theirs": "[[A>B]]"})
    verdict = biased.compare(CHAT, ITEM, "ours", "theirs")
    assert [o["outcome"] for o in verdict["orders"]] == [1.0, 0.0] and verdict["value"] == 50.0
    assert [o["position"] for o in verdict["orders"]] == ["A", "B"]
    consistent = make_judge(tmp_path, {"ours": "[[A>>B]]", "theirs": "[[B>A]]"})
    assert consistent.compare(CHAT, ITEM, "ours", "theirs")["value"] == 100.0
    tie = make_judge(tmp_path, {"ours": "[[A=B]]", "theirs": "[[B>A]]"})
    assert tie.compare(CHAT, ITEM, "ours", "theirs")["value"] == 75.0


def test_unparseable_verdicts_are_counted_never_guessed(tmp_path):
    judge = make_judge(tmp_path, {"ours": "I cannot decide.", "theirs": "[[B>A]]"})
    verdict = judge.compare(CHAT, ITEM, "ours", "theirs")
    # issue 17 item 10: one order alone is not position-corrected, so the item is dropped (Arena-Hard-Auto)
    assert verdict["orders"][0]["verdict"] is None and verdict["value"] is None
    silent = make_judge(tmp_path, {})
    assert silent.compare(CHAT, ITEM, "ours", "theirs")["value"] is None

    write_jsonl(tmp_path / "items.jsonl", [ITEM, {**ITEM, "id": "q2"}])
    write_jsonl(
        tmp_path / "outputs.jsonl",
        [
            {"id": "q1", "method": "single", "sampler": "m", "output": "ours"},
            {"id": "q2", "method": "single", "sampler": "m", "output": "other"},
        ],
    )
    write_jsonl(tmp_path / "reference.jsonl", [{"id": "q1", "output": "theirs"}, {"id": "q2", "output": "nothing"}])
    run_judge(
        str(tmp_path / "items.jsonl"),
        str(tmp_path / "outputs.jsonl"),
        str(tmp_path / "reference.jsonl"),
        str(tmp_path / "scores.jsonl"),
        str(tmp_path / "summary.json"),
        kind=CHAT,
        judge=judge,
    )
    scores = list(read_jsonl(tmp_path / "scores.jsonl"))
    assert [s["values"]["winrate"] for s in scores] == [None, None]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdicts"] == 4 and summary["unparsed_verdicts"] == 3 and summary["dropped_items"] == 2
    assert summary["method"] == "single" and summary["lang"] == "de"


def test_a_judge_that_follows_position_is_counted(tmp_path):
    write_jsonl(tmp_path / "items.jsonl", [ITEM, {**ITEM, "id": "q2"}, {**ITEM, "id": "q3"}])
    write_jsonl(
        tmp_path / "outputs.jsonl",
        [
            {"id": q, "method": "single", "sampler": "m", "output": out}
            for q, out in (("q1", "ours"), ("q2", "good"), ("q3", "mute"))
        ],
    )
    write_jsonl(
        tmp_path / "reference.jsonl",
        [{"id": q, "output": out} for q, out in (("q1", "theirs"), ("q2", "bad"), ("q3", "other"))],
    )
    # q1: first shown always wins (position-bound); q2: content wins in both orders; q3: one verdict unparsed
    judge = make_judge(
        tmp_path, {"ours": "[[A>B]]", "theirs": "[[A>B]]", "good": "[[A>B]]", "bad": "[[B>A]]", "mute": "[[A>B]]"}
    )
    run_judge(
        str(tmp_path / "items.jsonl"),
        str(tmp_path / "outputs.jsonl"),
        str(tmp_path / "reference.jsonl"),
        str(tmp_path / "scores.jsonl"),
        str(tmp_path / "summary.json"),
        kind=CHAT,
        judge=judge,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["position_bound"] == 1 and summary["items"] == 3 and summary["unparsed_verdicts"] == 1
    assert [s["values"]["winrate"] for s in read_jsonl(tmp_path / "scores.jsonl")] == [50.0, 100.0, None]


def test_pointwise_judge_selects_the_best_rated_and_counts_failures(tmp_path):
    class Rater(ScriptedJudge):
        def generate(self, requests):
            for request in requests:
                self.calls += 1
                content = request.prompt[0]["content"]
                answer = content.split("<|The Start of the Assistant's Answer|>\n")[1].split("\n")[0]
                rating = {"good": "Rating: [[9]]", "ok": "Rating: [[6]]"}.get(answer, "??")
                yield Generation([rating], 10, [5], 0.01, ["stop"])

    judge = Judge.from_settings(
        Rater({}),
        "chat",
        {"temperature": 0.0, "max_tokens": 64, "seed": 0},
        OutputCache(tmp_path / "c"),
        "pointwise",
    )
    scorer = make_scorer("llm_judge_pointwise", CHAT, judge=judge)
    scores = scorer.score(ITEM, ["garbled", "ok", "good"])
    assert scores == [None, 6.0, 9.0] and best_index(scores) == 2 and scorer.failures == 1
    assert best_index([None, None]) == 0
    # three ratings, each one call as the engine counted it (a cached rating costs what it cost once)
    _, details = scorer.score_item(ITEM, ["garbled", "ok", "good"])
    assert details["cost"] == {"calls": 3, "tokens_in": 30, "tokens_out": 15, "seconds": pytest.approx(0.03)}


def test_reference_answers_from_an_arena_hard_file(tmp_path):
    write_jsonl(tmp_path / "items.jsonl", [ITEM])
    write_jsonl(
        tmp_path / "answers.jsonl", [{"question_id": "q1", "choices": [{"turns": [{"content": "Licht bricht."}]}]}]
    )
    (record,) = reference_from_file(str(tmp_path / "items.jsonl"), str(tmp_path / "answers.jsonl"))
    assert record["output"] == "Licht bricht."
    write_jsonl(tmp_path / "answers.jsonl", [{"id": "other", "output": "x"}])
    with pytest.raises(PolyfuseError, match="no reference answer for item 'q1'"):
        list(reference_from_file(str(tmp_path / "items.jsonl"), str(tmp_path / "answers.jsonl")))


def test_an_empty_or_whitespace_reference_answer_in_a_file_is_an_error(tmp_path):
    write_jsonl(tmp_path / "items.jsonl", [ITEM])
    write_jsonl(tmp_path / "answers.jsonl", [{"id": "q1", "output": " \n "}])
    with pytest.raises(PolyfuseError, match="reference answer for item 'q1' is empty"):
        list(reference_from_file(str(tmp_path / "items.jsonl"), str(tmp_path / "answers.jsonl")))


def reference_pool(text, finish_reason="stop"):
    candidate = {"text": text, "model": "gemma270m", "params": {"max_tokens": 64}, "finish_reason": finish_reason}
    return {"id": "q1", "task": "arena", "lang": "de", "candidates": [candidate]}


def test_an_empty_or_length_cut_reference_answer_from_a_model_is_an_error():
    (record,) = reference_from_pools([reference_pool(" Licht bricht. ")])
    assert record["output"] == "Licht bricht." and record["system"] == "gemma270m"
    with pytest.raises(PolyfuseError, match="item 'q1' by 'gemma270m' is empty"):
        list(reference_from_pools([reference_pool("\n")]))
    cut = "item 'q1' by 'gemma270m' was cut at 64 tokens; raise tasks.arena.reference.max_tokens"
    with pytest.raises(PolyfuseError, match=re.escape(cut)):
        list(reference_from_pools([reference_pool("Licht bricht sich im", "length")]))


def test_an_unknown_judge_mode_or_a_label_mode_without_summed_logprobs_is_an_error(tmp_path):
    def judge(mode):
        settings = {"temperature": 0.0, "max_tokens": 8, "seed": 0, "mode": mode}
        return Judge.from_settings(ScriptedJudge({}), "chat", settings, OutputCache(tmp_path / "judge"), "arena")

    with pytest.raises(PolyfuseError, match="judge.mode: unknown mode 'vote'; known: generate, loglik, calibrated"):
        judge("vote")
    with pytest.raises(PolyfuseError, match="model 'scripted': judge.mode calibrated needs summed label log-prob"):
        judge("calibrated")


def shown_first(prompt) -> str:
    return prompt[0]["content"].split("<|The Start of Assistant A's Answer|>\n")[1].split("\n")[0]


class LabelScorer(ScriptedJudge):
    """A judge model whose verdict-label probabilities depend on which answer it is shown first (a test double).

    `tokens` says how many tokens each label spans: its per-token mean (Engine.loglik) differs from its total.
    """

    def __init__(self, probs, tokens=None):
        super().__init__({})
        self.probs, self.tokens = probs, tokens or {}

    def identity(self):
        return {"engine": "label-scorer", "probs": self.probs, "tokens": self.tokens}

    loglik = Engine.loglik  # the engines' mean, derived from the terms below

    def loglik_terms(self, prompt, continuations):
        table = self.probs[shown_first(prompt)]
        self.calls += len(continuations)
        labels = [text.split("[[")[1].split("]]")[0] for text in continuations]
        return [(math.log(table[label]), self.tokens.get(label, 4)) for label in labels]


def labels(**probs):
    """A full label distribution from the named labels' probabilities (A_B stands for A>B, AA_B for A>>B ...)."""
    names = {"AA_B": "A>>B", "A_B": "A>B", "tie": "A=B", "B_A": "B>A", "BB_A": "B>>A"}
    return {label: probs.get(key, 0.001) for key, label in names.items()}


def loglik_judge(tmp_path, mode, probs, tokens=None):
    return Judge.from_settings(
        LabelScorer(probs, tokens),
        "chat",
        {"temperature": 0.0, "max_tokens": 8, "seed": 0, "mode": mode},
        OutputCache(tmp_path / f"{mode}"),
        "arena",
    )


def test_loglik_verdict_is_the_winner_with_the_most_label_mass_over_label_token_counts(tmp_path):
    # A's mass (0.25 + 0.25) beats B's 0.4 although B>A is the single most likely label
    split = labels(AA_B=0.25, A_B=0.25, tie=0.1, B_A=0.4)
    verdict = loglik_judge(tmp_path, "loglik", {"ours": split, "theirs": split}).compare(CHAT, ITEM, "ours", "theirs")
    assert [order["verdict"] for order in verdict["orders"]] == ["A", "A"] and verdict["value"] == 50.0
    # B>>A spans one token and A>B eight: a per-token mean would pick A>B (mean log 0.3 / 8) over B>>A (log 0.2)
    skewed = labels(AA_B=0.1, A_B=0.3, tie=0.1, B_A=0.3, BB_A=0.2)
    verdict = loglik_judge(
        tmp_path, "loglik", {"ours": skewed, "theirs": skewed}, tokens={"B>>A": 1, "A>B": 8}
    ).compare(CHAT, ITEM, "ours", "theirs")
    (first, _) = verdict["orders"]
    assert first["verdict"] == "B" and first["label_probs"]["B>>A"] == pytest.approx(0.2 / sum(skewed.values()))
    assert first["label_logprobs"]["B>>A"] == pytest.approx(math.log(0.2))
    assert first["raw"].startswith("Verdict: [[") and "label probabilities: A>>B=" in first["raw"]


# Always prefers position A, but prefers it more strongly when the good answer sits there.
POSITION_BIASED = {"good": labels(A_B=0.9, B_A=0.1), "bad": labels(A_B=0.7, B_A=0.3), "same": labels(A_B=0.8, B_A=0.2)}


def test_calibrated_mode_separates_what_a_position_bound_loglik_judge_cannot(tmp_path):
    loglik = loglik_judge(tmp_path, "loglik", POSITION_BIASED)
    assert loglik.compare(CHAT, ITEM, "good", "bad")["value"] == 50.0
    assert loglik.compare(CHAT, ITEM, "bad", "good")["value"] == 50.0
    calibrated = loglik_judge(tmp_path, "calibrated", POSITION_BIASED)
    better, worse = calibrated.compare(CHAT, ITEM, "good", "bad"), calibrated.compare(CHAT, ITEM, "bad", "good")
    assert (better["value"], worse["value"]) == (100.0, 0.0)
    # s = (good's mass at A when shown first + good's mass at B when shown second) / 2, ties counting half
    good_first, bad_first = (
        {label: p / sum(table.values()) for label, p in table.items()}
        for table in (POSITION_BIASED["good"], POSITION_BIASED["bad"])
    )
    at_a = good_first["A>>B"] + good_first["A>B"] + 0.5 * good_first["A=B"]
    at_b = bad_first["B>>A"] + bad_first["B>A"] + 0.5 * bad_first["A=B"]
    assert better["calibrated_score"] == pytest.approx((at_a + at_b) / 2) == pytest.approx(0.6, abs=0.01)
    assert worse["calibrated_score"] == pytest.approx(1 - better["calibrated_score"])  # swapping the answers
    # each order keeps its position-bound verdict and its raw label probabilities
    assert [order["verdict"] for order in better["orders"]] == ["A", "A"]
    assert all(sum(order["label_probs"].values()) == pytest.approx(1) for order in better["orders"])
    assert all(set(order["label_logprobs"]) == set(PAIRWISE_LABELS) for order in better["orders"])


def test_calibrated_mode_calls_identical_answers_and_small_margins_a_tie(tmp_path):
    judge = loglik_judge(tmp_path, "calibrated", POSITION_BIASED)
    assert judge.compare(CHAT, ITEM, "same", "same")["calibrated_score"] == pytest.approx(0.5)
    assert judge.compare(CHAT, ITEM, "same", "same")["value"] == 50.0
    wide = Judge.from_settings(
        LabelScorer(POSITION_BIASED),
        "chat",
        {"temperature": 0.0, "max_tokens": 8, "seed": 0, "mode": "calibrated", "tie_band": 0.2},
        OutputCache(tmp_path / "wide"),
        "arena",
    )
    assert wide.compare(CHAT, ITEM, "good", "bad")["value"] == 50.0  # s = 0.6 lies within 0.5 +- 0.2


def write_methods(tmp_path, better, worse):
    ids = [f"q{i}" for i in range(len(better))]
    write_jsonl(tmp_path / "items.jsonl", [{**ITEM, "id": q} for q in ids])
    for name, texts in (("better", better), ("worse", worse)):
        write_jsonl(
            tmp_path / f"{name}.jsonl",
            [{"id": q, "method": name, "sampler": "m", "output": text} for q, text in zip(ids, texts, strict=True)],
        )


def head_to_head(tmp_path, judge, first, second) -> tuple[list, dict]:
    scores, summary = tmp_path / f"{first}__vs__{second}.jsonl", tmp_path / f"{first}__vs__{second}.summary.json"
    run_judge(
        str(tmp_path / "items.jsonl"),
        str(tmp_path / f"{first}.jsonl"),
        str(tmp_path / f"{second}.jsonl"),
        str(scores),
        str(summary),
        kind=CHAT,
        judge=judge,
        label=f"{first} vs {second}",
    )
    return list(read_jsonl(scores)), json.loads(summary.read_text())


def test_head_to_head_a_method_better_on_every_item_wins(tmp_path):
    write_methods(tmp_path, ["good one", "good two"], ["bad one", "bad two"])
    # the judge sees content: whichever position holds a good answer wins
    judge = make_judge(
        tmp_path, {"good one": "[[A>B]]", "good two": "[[A>>B]]", "bad one": "[[B>A]]", "bad two": "[[B>>A]]"}
    )
    records, summary = head_to_head(tmp_path, judge, "better", "worse")
    assert [r["values"]["winrate"] for r in records] == [100.0, 100.0] and summary["method"] == "better vs worse"
    records, summary = head_to_head(tmp_path, judge, "worse", "better")
    assert [r["values"]["winrate"] for r in records] == [0.0, 0.0] and summary["method"] == "worse vs better"


def test_head_to_head_in_calibrated_mode_keeps_both_orders_label_probabilities(tmp_path):
    write_methods(tmp_path, ["good"], ["bad"])
    records, summary = head_to_head(tmp_path, loglik_judge(tmp_path, "calibrated", POSITION_BIASED), "better", "worse")
    (record,) = records
    assert record["values"]["winrate"] == 100.0 and record["calibrated_score"] > 0.5
    assert record["judge_mode"] == "calibrated"
    assert [order["position"] for order in record["orders"]] == ["A", "B"]
    assert all(set(order["label_probs"]) == set(PAIRWISE_LABELS) for order in record["orders"])
    assert summary["position_bound"] == 1 and summary["unparsed_verdicts"] == 0


SKY = {"id": "sky", "task": "arena", "lang": "en", "input": "Explain in two sentences why the sky looks blue."}
GOOD_SKY = (
    "Air molecules scatter blue sunlight more strongly than red light. This Rayleigh scattering makes the sky blue."
)


def test_generate_mode_with_a_real_small_judge_records_parsed_or_counted_verdicts(tmp_path, smol):
    write_jsonl(tmp_path / "items.jsonl", [SKY])
    write_jsonl(tmp_path / "outputs.jsonl", [{"id": "sky", "method": "single", "sampler": "smol", "output": GOOD_SKY}])
    write_jsonl(tmp_path / "reference.jsonl", [{"id": "sky", "output": "Because it is."}])
    judge = Judge.from_settings(
        smol,
        "chat",
        {"temperature": 0.0, "max_tokens": 24, "seed": 0, "mode": "generate"},
        OutputCache(tmp_path / "judge"),
        "arena",
    )
    run_judge(
        str(tmp_path / "items.jsonl"),
        str(tmp_path / "outputs.jsonl"),
        str(tmp_path / "reference.jsonl"),
        str(tmp_path / "scores.jsonl"),
        str(tmp_path / "summary.json"),
        kind=CHAT,
        judge=judge,
    )
    (record,) = read_jsonl(tmp_path / "scores.jsonl")
    summary = json.loads((tmp_path / "summary.json").read_text())
    orders = record["orders"]
    assert [order["position"] for order in orders] == ["A", "B"] and record["judge_mode"] == "generate"
    for order in orders:
        assert isinstance(order["raw"], str) and order["finish_reason"] in ("stop", "length")
        assert order["verdict"] == parse_pairwise(order["raw"])
        assert order["outcome"] == (
            None
            if order["verdict"] is None
            else 0.5
            if order["verdict"] == "tie"
            else float(order["verdict"] == order["position"])
        )
    parsed = [order["outcome"] for order in orders if order["outcome"] is not None]
    assert record["values"]["winrate"] == (100.0 * sum(parsed) / 2 if len(parsed) == 2 else None)
    assert summary["verdicts"] == 2 and summary["unparsed_verdicts"] == 2 - len(parsed)
    assert summary["dropped_items"] == (len(parsed) < 2)


def test_label_modes_with_a_real_small_judge_always_yield_a_verdict(tmp_path, smol):
    cache = OutputCache(tmp_path / "judge")

    def judge(mode, template="arena"):
        return Judge.from_settings(
            smol, "chat", {"temperature": 0.0, "max_tokens": 32, "seed": 0, "mode": mode}, cache, template
        )

    verdict = judge("loglik").compare(CHAT, SKY, GOOD_SKY, "Because it is.")
    assert all(order["verdict"] in ("A", "B", "tie") for order in verdict["orders"])
    assert all(sum(order["label_probs"].values()) == pytest.approx(1) for order in verdict["orders"])
    assert all(all(value < 0 for value in order["label_logprobs"].values()) for order in verdict["orders"])
    assert verdict["value"] in (0.0, 25.0, 50.0, 75.0, 100.0)
    calls = smol.calls
    assert judge("loglik").compare(CHAT, SKY, GOOD_SKY, "Because it is.") == verdict and smol.calls == calls  # cached
    # calibrated mode combines the very label scores loglik mode computed: no further model calls
    calibrated = judge("calibrated").compare(CHAT, SKY, GOOD_SKY, "Because it is.")
    assert smol.calls == calls
    assert [o["label_probs"] for o in calibrated["orders"]] == [o["label_probs"] for o in verdict["orders"]]
    assert 0 < calibrated["calibrated_score"] < 1 and calibrated["value"] in (0.0, 50.0, 100.0)
    rating, raw, cost = judge("loglik", "pointwise").rate(CHAT, SKY, GOOD_SKY)
    assert rating in range(1, 11) and raw.startswith(f"Rating: [[{int(rating)}]] (label probabilities: 1=")
    # one scoring call per label: five verdict labels in each of two orders, ten ratings
    assert verdict["cost"]["calls"] == pytest.approx(10) and cost["calls"] == pytest.approx(10)
    assert verdict["cost"]["tokens_in"] > 0 and cost["seconds"] > 0


class RecordingJudge(Engine):
    """A base-model judge that keeps every prompt it is shown and always answers one label (a test double)."""

    engine_name = "recording"

    def __init__(self):
        super().__init__("recording", {})
        self.prompts = []

    def identity(self):
        return {"engine": "recording"}

    def generate(self, requests):
        for request in requests:
            self.calls += 1
            self.prompts.append(request.prompt)
            yield Generation(["A is better. Verdict: [[A>B]] Rating: [[7]]"], 10, [5], 0.01, ["stop"])


TRANSLATION = task_kind("translation")
SHOTS = [
    {"id": "de-s1", "task": "wmt", "lang": "de", "input": "The house is old.", "reference": "Das Haus ist alt."},
    {"id": "de-s2", "task": "wmt", "lang": "de", "input": "I like rain.", "reference": "Ich mag Regen."},
    {"id": "de-s3", "task": "wmt", "lang": "de", "input": "Where is the station?", "reference": "Wo ist der Bahnhof?"},
    {"id": "fr-s1", "task": "wmt", "lang": "fr", "input": "The house is old.", "reference": "La maison est vieille."},
    {"id": "fr-s2", "task": "wmt", "lang": "fr", "input": "I like rain.", "reference": "J'aime la pluie."},
]
DE_ITEM = {"id": "de-1", "task": "wmt", "lang": "de", "input": "The cat sleeps.", "reference": "Die Katze schläft."}


def fewshot_judge(tmp_path, engine, template="arena", mode="generate", shots=SHOTS):
    settings = {"temperature": 0.0, "max_tokens": 32, "seed": 0, "mode": mode}
    return Judge.from_settings(engine, "fewshot", settings, OutputCache(tmp_path / "judge"), template, tuple(shots))


def test_a_few_shot_judge_sees_worked_judgements_in_its_items_own_language_and_task(tmp_path):
    engine = RecordingJudge()
    judge = fewshot_judge(tmp_path, engine)
    judge.compare(TRANSLATION, DE_ITEM, "Die Katze schläft.", "Der Hund bellt.")
    fewshot_judge(tmp_path, engine, "pointwise").rate(TRANSLATION, DE_ITEM, "Die Katze schläft.")
    for prompt in engine.prompts:
        assert isinstance(prompt, str) and "capital of France" not in prompt
        assert "Das Haus ist alt." in prompt and "The house is old." in prompt and "Where is the station?" in prompt
        assert "La maison" not in prompt and "pluie" not in prompt  # the French shots are another language's
        assert prompt.rstrip().endswith("### Judgement:")
    pairwise = engine.prompts[0]
    # three German shots, each against the next one's answer; the good answer alternates A, B, A
    examples = re.findall(r"### Answer A:\n(.*)\n### Answer B:\n(.*)\n### Judgement: (.*)", pairwise)
    assert examples[:3] == [
        (
            "Das Haus ist alt.",
            "Ich mag Regen.",
            "A answers the prompt; B answers a different prompt. Verdict: [[A>>B]]",
        ),
        (
            "Wo ist der Bahnhof?",
            "Ich mag Regen.",
            "B answers the prompt; A answers a different prompt. Verdict: [[B>>A]]",
        ),
        (
            "Wo ist der Bahnhof?",
            "Das Haus ist alt.",
            "A answers the prompt; B answers a different prompt. Verdict: [[A>>B]]",
        ),
    ]
    ratings = re.findall(r"### Answer:\n(.*)\n### Judgement: .*Rating: \[\[(\d+)\]\]", engine.prompts[-1])
    assert ratings == [("Das Haus ist alt.", "9"), ("Wo ist der Bahnhof?", "2"), ("Wo ist der Bahnhof?", "9")]
    # a French item sees the French shots only
    engine.prompts.clear()
    judge.compare(TRANSLATION, {**DE_ITEM, "id": "fr-1", "lang": "fr"}, "Le chat dort.", "Le chien aboie.")
    assert all("La maison est vieille." in prompt and "Das Haus" not in prompt for prompt in engine.prompts)


def test_a_chat_judge_sees_no_worked_examples(tmp_path):
    engine = ScriptedJudge({"ours": "[[A>B]]", "theirs": "[[A>B]]"})
    settings = {"temperature": 0.0, "max_tokens": 32, "seed": 0}
    judge = Judge.from_settings(engine, "chat", settings, OutputCache(tmp_path / "judge"), "arena", tuple(SHOTS))
    prompt = judge._prompt(TRANSLATION, DE_ITEM, {"answer_a": "ours", "answer_b": "theirs"})
    assert "Das Haus" not in prompt[0]["content"]


def test_a_real_base_model_judge_reads_worked_judgements_and_gives_a_verdict(tmp_path, gemma):
    judge = fewshot_judge(tmp_path, gemma, mode="loglik")
    prompt = judge._prompt(TRANSLATION, DE_ITEM, {"answer_a": "Die Katze schläft.", "answer_b": "Ich mag Regen."})
    assert prompt.count("### Judgement:") == 4 and "Wo ist der Bahnhof?" in prompt
    verdict = judge.compare(TRANSLATION, DE_ITEM, "Die Katze schläft.", "Ich mag Regen.")
    assert all(order["verdict"] in ("A", "B", "tie") for order in verdict["orders"])
    assert all(sum(order["label_probs"].values()) == pytest.approx(1) for order in verdict["orders"])
    rating, _, _ = fewshot_judge(tmp_path, gemma, "pointwise", "loglik").rate(
        TRANSLATION, DE_ITEM, "Die Katze schläft."
    )
    assert rating in range(1, 11)
