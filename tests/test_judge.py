import json

import pytest

from polyfuse.cache import OutputCache
from polyfuse.engines import Engine, Generation
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.judge import Judge, parse_pairwise, parse_rating, reference_from_file, run_judge
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
        ("Undecided: [[A>B]] or maybe [[B>A]]", None),
        ("Assistant A is better.", None),
        ("", None),
    ],
)
def test_parse_pairwise(raw, winner):
    assert parse_pairwise(raw) == winner


@pytest.mark.parametrize("raw, rating", [("Good. Rating: [[8]]", 8.0), ("[[3]] then [[7.5]]", 7.5),
                                         ("Rating: 8", None), ("Rating: [[42]]", None)])
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
    cache = OutputCache(tmp_path / "judge.sqlite")
    return Judge.from_settings(ScriptedJudge(script), "chat", {"temperature": 0.0, "max_tokens": 64, "seed": 0},
                               cache, "arena")


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
    assert verdict["orders"][0]["verdict"] is None and verdict["value"] == 100.0
    silent = make_judge(tmp_path, {})
    assert silent.compare(CHAT, ITEM, "ours", "theirs")["value"] is None

    write_jsonl(tmp_path / "items.jsonl", [ITEM, {**ITEM, "id": "q2"}])
    write_jsonl(tmp_path / "outputs.jsonl", [{"id": "q1", "method": "single", "sampler": "m", "output": "ours"},
                                             {"id": "q2", "method": "single", "sampler": "m", "output": "other"}])
    write_jsonl(tmp_path / "reference.jsonl", [{"id": "q1", "output": "theirs"}, {"id": "q2", "output": "nothing"}])
    run_judge(str(tmp_path / "items.jsonl"), str(tmp_path / "outputs.jsonl"), str(tmp_path / "reference.jsonl"),
              str(tmp_path / "scores.jsonl"), str(tmp_path / "summary.json"), CHAT, judge)
    scores = list(read_jsonl(tmp_path / "scores.jsonl"))
    assert [s["values"]["winrate"] for s in scores] == [100.0, None]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdicts"] == 4 and summary["unparsed_verdicts"] == 3
    assert summary["method"] == "single" and summary["lang"] == "de"


def test_a_judge_that_follows_position_is_counted(tmp_path):
    write_jsonl(tmp_path / "items.jsonl", [ITEM, {**ITEM, "id": "q2"}, {**ITEM, "id": "q3"}])
    write_jsonl(tmp_path / "outputs.jsonl", [{"id": q, "method": "single", "sampler": "m", "output": out}
                                             for q, out in (("q1", "ours"), ("q2", "good"), ("q3", "mute"))])
    write_jsonl(tmp_path / "reference.jsonl", [{"id": q, "output": out}
                                               for q, out in (("q1", "theirs"), ("q2", "bad"), ("q3", "other"))])
    # q1: first shown always wins (position-bound); q2: content wins in both orders; q3: one verdict unparsed
    judge = make_judge(tmp_path, {"ours": "[[A>B]]", "theirs": "[[A>B]]", "good": "[[A>B]]", "bad": "[[B>A]]",
                                  "mute": "[[A>B]]"})
    run_judge(str(tmp_path / "items.jsonl"), str(tmp_path / "outputs.jsonl"), str(tmp_path / "reference.jsonl"),
              str(tmp_path / "scores.jsonl"), str(tmp_path / "summary.json"), CHAT, judge)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["position_bound"] == 1 and summary["items"] == 3 and summary["unparsed_verdicts"] == 1
    assert [s["values"]["winrate"] for s in read_jsonl(tmp_path / "scores.jsonl")] == [50.0, 100.0, 100.0]


def test_pointwise_judge_selects_the_best_rated_and_counts_failures(tmp_path):
    class Rater(ScriptedJudge):
        def generate(self, requests):
            for request in requests:
                self.calls += 1
                answer = request.prompt[0]["content"].split("<|The Start of the Assistant's Answer|>\n")[1].split("\n")[0]
                yield Generation([{"good": "Rating: [[9]]", "ok": "Rating: [[6]]"}.get(answer, "??")], 10, [5], 0.01, ["stop"])

    judge = Judge.from_settings(Rater({}), "chat", {"temperature": 0.0, "max_tokens": 64, "seed": 0},
                                OutputCache(tmp_path / "c.sqlite"), "pointwise")
    scorer = make_scorer("llm_judge_pointwise", CHAT, judge=judge)
    scores = scorer.score(ITEM, ["garbled", "ok", "good"])
    assert scores == [None, 6.0, 9.0] and best_index(scores) == 2 and scorer.failures == 1
    assert best_index([None, None]) == 0


def test_reference_answers_from_an_arena_hard_file(tmp_path):
    write_jsonl(tmp_path / "items.jsonl", [ITEM])
    write_jsonl(tmp_path / "answers.jsonl", [{"question_id": "q1", "choices": [{"turns": [{"content": "Licht bricht."}]}]}])
    (record,) = reference_from_file(str(tmp_path / "items.jsonl"), str(tmp_path / "answers.jsonl"))
    assert record["output"] == "Licht bricht."
    write_jsonl(tmp_path / "answers.jsonl", [{"id": "other", "output": "x"}])
    from polyfuse.errors import PolyfuseError
    with pytest.raises(PolyfuseError, match="no reference answer for item 'q1'"):
        list(reference_from_file(str(tmp_path / "items.jsonl"), str(tmp_path / "answers.jsonl")))


def test_loglik_mode_with_a_real_small_judge_always_yields_a_verdict(tmp_path, smol):
    judge = Judge.from_settings(smol, "chat", {"temperature": 0.0, "max_tokens": 32, "seed": 0, "mode": "loglik"},
                                OutputCache(tmp_path / "judge.sqlite"), "arena")
    item = {"id": "sky", "lang": "en", "input": "Explain in two sentences why the sky looks blue."}
    good = "Air molecules scatter blue sunlight more strongly than red light. This Rayleigh scattering makes the sky blue."
    verdict = judge.compare(CHAT, item, good, "Because it is.")
    assert all(order["verdict"] in ("A", "B", "tie") for order in verdict["orders"])
    assert all("loglik:" in order["raw"] for order in verdict["orders"])
    assert verdict["value"] in (0.0, 25.0, 50.0, 75.0, 100.0)
    calls = smol.calls
    assert judge.compare(CHAT, item, good, "Because it is.") == verdict and smol.calls == calls  # cached
    rater = Judge.from_settings(smol, "chat", {"temperature": 0.0, "max_tokens": 32, "seed": 0, "mode": "loglik"},
                                OutputCache(tmp_path / "judge.sqlite"), "pointwise")
    rating, raw = rater.rate(CHAT, item, good)
    assert rating in range(1, 11) and raw.startswith("Rating: [[")
