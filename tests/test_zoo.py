"""The method zoo's selection and aggregation methods: parsing, arithmetic and the same-pool contract."""

import copy
import itertools
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from polyfuse import aggregators, methods
from polyfuse.aggregators import Fused, run_procedure
from polyfuse.cache import OutputCache
from polyfuse.dag import StudyDag
from polyfuse.engines import Engine, Generation
from polyfuse.engines.llamacpp import uniform_kl
from polyfuse.errors import PolyfuseError
from polyfuse.fuse import FusionJob, fuse_pools
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.select import make_scorer, select_pools
from polyfuse.selectors import (
    bradley_terry,
    calls_floor,
    knockout_calls,
    match_winner,
    parse_choice,
    voted_answer,
)
from polyfuse.settings import load_config
from polyfuse.tasks import task_kind
from tests.test_fuse import DE_SHOTS

ZOO_SETTINGS = {
    "seed": 0,
    "order_seed": 7,
    "temperature": 0.0,
    "max_tokens": 32,
    "genselect": {"window": 2},
    "self_moa_seq": {"window": 2, "step": 1},
    "rsa": {"population": 3, "subset": 2, "rounds": 2},
    "round_robin": {"scoring": "wins"},
    "mbr_judge": {"utility": "pointwise", "self_pair": False, "template": "pointwise_reference"},
}


# --- parsing a named candidate ---


@pytest.mark.parametrize(
    "raw, shown, position, status",
    [
        ("Response 2 agrees with most.\nJudgment: 2", 3, 1, "ok"),
        ("Judgment: 1", 3, 0, "ok"),
        ("**Judgment:** 3", 3, 2, "ok"),
        ("judgement：2", 3, 1, "ok"),
        ("Judgment: Response 3.", 3, 2, "ok"),
        ("Judgment: 1\nOn reflection:\nJudgment: 3", 3, 2, "ok"),  # the last judgment line counts
        ("Judgment: 4", 3, None, "out_of_range"),  # out of range
        ("Judgment: 0", 3, None, "out_of_range"),
        ("Response 2 is best.", 3, None, "missing"),  # no judgment line at all
        ("Judgment: the second one", 3, None, "no_index"),  # a line without an index
        ("Judgment: 1 or 3", 3, None, "several"),  # several indices
        ("Judgment: 2 and 2", 3, 1, "ok"),  # the same index twice is one index
        ("I would say Judgment: 2", 3, None, "missing"),  # the marker must open its line
        ("Judgment: 2.5", 3, None, "no_index"),  # a decimal is not an index
    ],
)
def test_parse_choice(raw, shown, position, status):
    choice = parse_choice(raw, shown)
    assert (choice.position, choice.status) == (position, status)


# --- tournament and window arithmetic ---


def brute_force_knockout_calls(n: int, size: int) -> int:
    """Play a knockout by hand: every group of two or more in a round is one call; its first member goes on."""
    calls, entrants = 0, n
    while entrants > 1:
        groups = [min(size, entrants - start) for start in range(0, entrants, size)]
        calls += sum(group > 1 for group in groups)
        entrants = len(groups)
    return calls


@pytest.mark.parametrize("n", range(1, 12))
@pytest.mark.parametrize("size", [2, 3, 4, 8])
def test_knockout_calls(n, size):
    assert knockout_calls(n, size) == brute_force_knockout_calls(n, size)
    if size == 2:
        assert knockout_calls(n, 2) == max(n - 1, 0)  # a pairwise knockout has N - 1 matches, odd N included
    if n <= size:
        assert knockout_calls(n, size) == (1 if n > 1 else 0)


@pytest.mark.parametrize(
    "value, winner, how", [(100.0, 3, "won"), (0.0, 5, "won"), (50.0, 3, "tie"), (None, 3, "dropped")]
)
def test_match_winner(value, winner, how):
    assert match_winner(value, 3, 5) == (winner, how)


def test_bradley_terry_matches_the_two_player_closed_form_and_a_likelihood_fit():
    # two players: the MLE strength ratio is the ratio of wins
    strengths = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]))
    assert strengths[0] / strengths[1] == pytest.approx(3.0, rel=1e-6)
    # three players: the MM fixed point maximises the Bradley-Terry likelihood (checked against a grid search)
    wins = np.array([[0.0, 2.0, 1.5], [1.0, 0.0, 2.0], [0.5, 1.0, 0.0]])
    fitted = bradley_terry(wins, iterations=2000)

    def loglik(p):
        return sum(
            wins[i, j] * math.log(p[i] / (p[i] + p[j])) for i in range(3) for j in range(3) if i != j and wins[i, j]
        )

    grid = np.linspace(0.05, 0.9, 80)
    best = max(((a, b, 1 - a - b) for a in grid for b in grid if a + b < 0.95), key=loglik)
    assert loglik(fitted) >= loglik(best) - 1e-9
    assert list(np.argsort(-fitted)) == list(np.argsort(-np.array(best)))


# --- majority vote ---


def vote(kind, texts, lang="en"):
    scorer = make_scorer("majority", task_kind(kind))
    scores, details = scorer.score_item({"id": "x", "lang": lang}, texts)
    chosen = max(range(len(texts)), key=lambda i: (scores[i] is not None, scores[i] or 0.0, -i))
    return chosen, scores, details


def test_majority_picks_the_most_frequent_answer_and_breaks_ties_to_the_lowest_index():
    chosen, scores, details = vote("math", ["So 17.", "The answer is 18.", "Answer: 18", "no idea"])
    assert chosen == 1 and scores == [1.0, 2.0, 2.0, None] and details["parse_status"] == "ok"
    assert details["answers"] == ["17.0", "18.0", "18.0", None]
    assert vote("math", ["1234567", "1234568"])[1] == [1.0, 1.0]  # numbers that differ in the 7th digit differ
    assert vote("math", ["Answer: 5", "Answer: 7"])[0] == 0  # a tie between answers: the lowest index
    assert vote("math", ["Antwort: 1.000", "1000"], lang="de")[1] == [2.0, 2.0]  # the language's number format


def test_majority_without_any_answer_falls_back_to_the_first_candidate_and_says_so():
    chosen, scores, details = vote("math", ["no idea", "none"])
    assert chosen == 0 and scores == [None, None]
    assert (details["parse_status"], details["fallback"]) == ("no_answer", "first")


def test_majority_votes_on_short_answers_normalised_and_refuses_other_kinds():
    assert voted_answer(task_kind("factqa"), "Answer: St. Louis", "en") == voted_answer(
        task_kind("factqa"), "answer: st louis!", "en"
    )
    with pytest.raises(Exception, match="no extractable answer"):
        voted_answer(task_kind("translation"), "Hallo", "de")


# --- self-certainty ---


def test_uniform_kl_is_scipys_kl_divergence_from_uniform():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 50)) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    uniform = np.full(50, 1 / 50)
    expected = [stats.entropy(uniform, row) for row in probabilities]
    assert uniform_kl(logits) == pytest.approx(expected, rel=1e-9)
    assert uniform_kl(np.zeros((1, 7))) == pytest.approx([0.0], abs=1e-12)


def test_self_certainty_on_an_engine_without_full_logprobs_is_one_clear_error(tmp_path):
    with OutputCache(tmp_path / "c") as cache, pytest.raises(Exception, match="full-vocabulary log-probabilities"):
        make_scorer("self_certainty", task_kind("math"), engine=ScriptedEngine([]), style="chat", shots=[], cache=cache)


# --- aggregation procedures ---


def drive(procedure_name, texts, settings, fail=()):
    """Run one procedure with a fuse_round that joins the texts it is shown, and fails the calls numbered in
    `fail`; returns the outcome and every request."""
    requests, counter = [], itertools.count()

    def fuse_round(indices, rounds):
        answers = []
        for item_requests in rounds:
            item_answers = []
            for shown in item_requests:
                requests.append(shown)
                number = next(counter)
                fused = None if number in fail else "(" + "+".join(shown) + ")"
                item_answers.append(Fused(fused, "missing" if fused is None else "ok"))
            answers.append(item_answers)
        return answers

    method = aggregators.aggregator(procedure_name)
    rng = random.Random(0)
    (outcome,) = run_procedure([method.procedure(texts, **settings.get(procedure_name, {}), rng=rng)], fuse_round)
    return outcome, requests


@pytest.mark.parametrize("n", range(1, 9))
@pytest.mark.parametrize("window, step", [(2, 1), (3, 2), (4, 4), (2, 3)])
def test_self_moa_seq_makes_the_stated_number_of_calls_and_carries_its_synthesis(n, window, step):
    texts = [f"c{i}" for i in range(n)]
    settings = {"self_moa_seq": {"window": window, "step": step}}
    outcome, requests = drive("self_moa_seq", texts, settings)
    assert len(requests) == 1 + math.ceil(max(n - window, 0) / step)
    assert len(requests) == aggregators.calls_floor("self_moa_seq", n, settings)
    assert requests[0] == texts[:window]
    seen = list(texts[:window])
    for previous, request in itertools.pairwise(requests):
        assert request[0] == "(" + "+".join(previous) + ")"  # the current synthesis, shown first
        seen += request[1:]
    assert seen == texts and outcome.fallback is None and outcome.failed_calls == 0


def test_self_moa_seq_failures_are_stated():
    texts = ["a", "b", "c", "d"]
    settings = {"self_moa_seq": {"window": 2, "step": 1}}
    first_failed, requests = drive("self_moa_seq", texts, settings, fail={0})
    assert requests[1][0] == "a" and first_failed.fallback is None  # the later calls parsed: their answer stands
    last_failed, _ = drive("self_moa_seq", texts, settings, fail={2})
    assert last_failed.fallback == "carried" and last_failed.text == "((a+b)+c)" and last_failed.failed_calls == 1
    all_failed, _ = drive("self_moa_seq", texts, settings, fail={0, 1, 2})
    assert (all_failed.text, all_failed.fallback, all_failed.failed_calls) == ("a", "first", 3)


def test_rsa_fuses_subsets_of_the_population_for_each_round():
    texts = ["a", "b", "c", "d"]
    settings = {"rsa": {"population": 3, "subset": 2, "rounds": 2}}
    outcome, requests = drive("rsa", texts, settings)
    assert len(requests) == 6 == aggregators.calls_floor("rsa", 4, settings)
    assert all(len(request) == 2 and set(request) <= set(texts) for request in requests[:3])
    round_one = {"(" + "+".join(request) + ")" for request in requests[:3]}
    assert all(set(request) <= round_one for request in requests[3:])  # round 2 fuses round 1's answers
    assert outcome.text == "(" + "+".join(requests[3]) + ")" and outcome.fallback is None
    failed, requests = drive("rsa", texts, settings, fail={3})
    assert failed.fallback == "first" and failed.text == requests[3][0] and failed.failed_calls == 1
    assert failed.answer_call == 3  # the last round's first member's call, whose status the record gives


def test_one_call_aggregators_and_the_method_grammar():
    assert methods.fusion("smol") == "fusion-smol" and methods.fusion("smol", "moa") == "fusion-moa@smol"
    assert methods.fusor_of("fusion-smol") == ("paper", "smol")
    assert methods.fusor_of("fusion-self_moa_seq@gemma270m") == ("self_moa_seq", "gemma270m")
    with pytest.raises(Exception, match="not a fusion method"):
        methods.fusor_of("bon-usc@smol")
    assert aggregators.applies("usi", "translation") and not aggregators.applies("usi", "math")
    outcome, requests = drive("moa", ["a", "b"], {})
    assert requests == [["a", "b"]] and outcome.text == "(a+b)"


# --- the same-pool contract, through the real fusion and selection code ---


class ScriptedEngine(Engine):
    """Records every prompt; answers each with `answer(prompt)`."""

    engine_name = "scripted"

    def __init__(self, answer):
        super().__init__("scripted", {})
        self.answer, self.prompts = answer, []

    def identity(self):
        return {"engine": "scripted"}

    def generate(self, requests):
        for request in requests:
            prompt = request.prompt if isinstance(request.prompt, str) else request.prompt[0]["content"]
            self.prompts.append(prompt)
            self.calls += 1
            yield Generation([self.answer(prompt)], 10, [5], 0.01, ["stop"])


def write_pools(tmp_path, count=3, k=5):
    items = [
        {"id": f"i{n}", "task": "wmt", "lang": "de", "input": f"Sentence {n}.", "reference": "x"} for n in range(count)
    ]
    pools = [
        {
            "id": f"i{n}",
            "sampler": "gemma",
            "prompt_hash": "h",
            "candidates": [{"text": f"item{n}-cand{c}"} for c in range(k)],
        }
        for n in range(count)
    ]
    write_jsonl(tmp_path / "items.jsonl", items)
    write_jsonl(tmp_path / "pools.jsonl", pools)
    write_jsonl(tmp_path / "shots.jsonl", DE_SHOTS)
    return [str(tmp_path / name) for name in ("items.jsonl", "shots.jsonl", "pools.jsonl")]


CANDIDATE = re.compile(r"item(\d+)-cand\d+")


def shown_items(prompt: str) -> set[str]:
    return set(CANDIDATE.findall(prompt))


@pytest.mark.parametrize("name", ["moa", "nocompare", "usi", "self_moa_seq", "rsa"])
def test_every_aggregator_sees_only_its_own_items_pool_and_rerun_makes_no_call(tmp_path, name):
    items, shots, pools = write_pools(tmp_path)
    engine = ScriptedEngine(
        lambda prompt: "Answer: [[" + "|".join(sorted(set(re.findall(r"item\d+-cand\d+", prompt)))) + "]]"
    )
    kind = task_kind("translation")
    sampling = {"temperature": 0.3, "top_p": 0.95, "max_tokens": 32}
    for run in range(2):
        with OutputCache(tmp_path / "cache", writer=f"w{run}") as cache:
            job = FusionJob(engine, "chat", cache, kind, "paper", sampling, 7, aggregator=name, settings=ZOO_SETTINGS)
            records = list(fuse_pools(items, shots, pools, job=job, stats={}))
        if run == 0:
            calls = engine.calls
    assert engine.calls == calls  # the re-run answered every call from the cache
    assert calls == 3 * aggregators.calls_floor(name, 5, ZOO_SETTINGS)
    for prompt in engine.prompts:
        assert len(shown_items(prompt)) == 1  # one item's candidates (and fusions of them) per prompt
    for n, record in enumerate(records):
        assert record["method"] == f"fusion-{name}@scripted" and record["fallback"] is None
        assert shown_items(record["output"]) == {str(n)}
        assert record["cost"]["calls"] == aggregators.calls_floor(name, 5, ZOO_SETTINGS)


@pytest.mark.parametrize("name", ["usc", "genselect", "chops"])
def test_model_selectors_see_only_their_items_pool_and_map_the_named_position_back(tmp_path, name):
    items, _, pools = write_pools(tmp_path)

    def answer(prompt):  # name the response whose text is the highest candidate number shown
        shown = re.findall(r"(?:Response|Solution) (\d+):\n(item\d+-cand(\d+))", prompt)
        best = max(shown, key=lambda entry: int(entry[2]))
        return f"Thinking.\nJudgment: {best[0]}"

    engine = ScriptedEngine(answer)
    with OutputCache(tmp_path / "cache") as cache:
        scorer = make_scorer(
            name, task_kind("translation"), engine=engine, style="chat", cache=cache, settings=ZOO_SETTINGS
        )
        records = list(select_pools(items, pools, scorer, methods.bon(methods.scored_by(name, "scripted"))))
    assert all(len(shown_items(prompt)) == 1 for prompt in engine.prompts)
    calls = knockout_calls(5, 2) if name == "genselect" else 1
    assert engine.calls == 3 * calls
    for n, record in enumerate(records):
        assert record["output"] == f"item{n}-cand4" and record["chosen"] == 4
        assert record["parse_status"] == "ok" and record["fallback"] is None and record["cost"]["calls"] == calls


def usc_selection(items: str, pools: str, engine, cache):
    """USC run by `engine` on the pools: the scorer (its failure count) and the records."""
    scorer = make_scorer(
        "usc", task_kind("translation"), engine=engine, style="chat", cache=cache, settings=ZOO_SETTINGS
    )
    return scorer, list(select_pools(items, pools, scorer, "bon-usc@scripted"))


def test_a_model_selector_that_names_no_valid_candidate_falls_back_to_the_first_shown_and_counts_it(tmp_path):
    items, _, pools = write_pools(tmp_path, count=2, k=3)
    engine = ScriptedEngine(lambda prompt: "Judgment: 9")
    with OutputCache(tmp_path / "cache") as cache:
        scorer, records = usc_selection(items, pools, engine, cache)
    for record, prompt in zip(records, engine.prompts, strict=True):
        first_shown = re.search(r"Response 1:\n(\S+)", prompt)[1]
        assert record["output"] == first_shown
        assert (record["parse_status"], record["fallback"]) == ("out_of_range", "first")
    assert scorer.failures == 2


class PreferenceJudge:
    """A judge double: prefers the candidate with the higher number, ties when equal, drops the verdicts of pairs
    among `drop` (an unparsed order); counts its verdicts."""

    def __init__(self, tie=(), drop=()):
        self.engine, self.calls, self.tie, self.drop = ScriptedEngine(lambda p: ""), 0, set(tie), set(drop)

    def compare(self, kind, item, answer, opponent):
        self.calls += 2  # both orders
        a, b = (int(text.rsplit("cand", 1)[1]) for text in (answer, opponent))
        value = None if {a, b} <= self.drop else 50.0 if {a, b} <= self.tie else 100.0 if a > b else 0.0
        return {"value": value, "cost": {"calls": 2, "tokens_in": 0, "tokens_out": 0, "seconds": 0.0}}


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_knockout_with_odd_and_even_n_plays_n_minus_1_matches_and_finds_the_best(tmp_path, n):
    items, _, pools = write_pools(tmp_path, count=2, k=n)
    judge = PreferenceJudge()
    scorer = make_scorer("knockout", task_kind("translation"), judge=judge, settings=ZOO_SETTINGS)
    records = list(select_pools(items, pools, scorer, "bon-knockout@scripted"))
    assert judge.calls == 2 * 2 * (n - 1)  # two items, 2(N - 1) verdicts each
    for record in records:
        assert record["chosen"] == n - 1 and len(record["matches"]) == n - 1


def test_round_robin_judges_every_pair_and_ranks_by_wins_or_bradley_terry(tmp_path):
    items, _, pools = write_pools(tmp_path, count=1, k=4)
    for scoring in ("wins", "bradley_terry"):
        judge = PreferenceJudge(tie={2, 3})
        settings = {**ZOO_SETTINGS, "round_robin": {"scoring": scoring}}
        scorer = make_scorer("round_robin", task_kind("translation"), judge=judge, settings=settings)
        (record,) = select_pools(items, pools, scorer, "bon-round_robin@scripted")
        assert judge.calls == 4 * 3  # N(N - 1) verdicts
        assert record["ties"] == 1 and record["dropped"] == 0
        if scoring == "wins":
            assert record["scores"] == [0.0, 1.0, 2.5, 2.5]
        assert record["chosen"] == 2  # 2 and 3 tie on wins and on strength: the lower index


# --- config and DAG ---

DEFAULT = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
EVERY_METHOD = {
    "model": "smol",
    "selectors": [
        *("usc", "genselect", "chops", "knockout", "round_robin", "mbr_judge", "majority", "self_certainty"),
        "mbr_comet",
    ],
    "aggregators": ["moa", "self_moa_seq", "usi", "rsa", "nocompare"],
}


def test_the_dag_runs_each_zoo_method_where_its_kind_allows():
    config = copy.deepcopy(DEFAULT) | {"zoo": {**EVERY_METHOD, "cells": {"mgsm": ["de", "fr"], "wmt24pp": ["de"]}}}
    dag = StudyDag(load_config(config))
    model_run = ["usc", "genselect", "chops", "knockout", "round_robin", "mbr_judge"]
    assert dag.zoo_methods("mgsm") == [
        *(f"bon-{name}@smol" for name in model_run),
        "bon-majority",
        "bon-self_certainty@smol",
        *(f"fusion-{name}@smol" for name in ["moa", "self_moa_seq", "rsa", "nocompare"]),  # no USI: not translation
    ]
    assert "bon-majority" not in dag.zoo_methods("wmt24pp") and "fusion-usi@smol" in dag.zoo_methods("wmt24pp")
    assert "bon-mbr_comet" in dag.zoo_methods("wmt24pp") and "bon-mbr_comet" not in dag.zoo_methods("mgsm")
    assert dag.job_model("mbr_comet", {}) == config["comet"]["model"]
    assert dag.zoo_methods("arena") == []  # not a zoo task
    assert dag.job_model("select", {"selector": "bon-usc@smol"}) == "smol"
    assert dag.job_model("aggregate", {"fusor": "smol", "aggregator": "rsa"}) == "smol"
    assert dag.job_model("select", {"selector": "bon-majority"}) is None
    files = dag.zoo_files("outputs")
    assert "results/mgsm/de/outputs/gemma270m/fusion-rsa@smol.jsonl" in files
    assert "results/mgsm/de/outputs/gemma270m/fusion-gemma270m.jsonl" in files  # the study's own, beside them
    # the zoo stays out of the study's own tables and claims
    assert not any("@smol" in path for path in dag.score_files(".jsonl"))
    assert dag.zoo_outputs()[:2] == ["results/tables/zoo_mgsm.csv", "results/tables/zoo_mgsm.md"]


@pytest.mark.parametrize(
    "zoo, message",
    [
        ({"model": "gpt9"}, "zoo.model: unknown 'gpt9'"),
        ({"model": "smol", "cells": {"ufb": ["en"]}}, "zoo.cells: unknown 'ufb'"),
        ({"model": "smol", "cells": {"mgsm": ["ja"]}}, "zoo.cells.mgsm: unknown 'ja'"),
        ({"model": "smol", "selectors": ["best"]}, "zoo.selectors"),
        ({"model": "smol", "aggregators": ["paper"]}, "zoo.aggregators"),
        ({"model": "smol", "genselect": {"window": 1}}, "zoo.genselect.window"),
        ({"model": "smol", "cells": {}}, "zoo.cells: {} should be non-empty"),
        ({"model": "smol", "cells": {"mgsm": []}}, "zoo.cells.mgsm: [] should be non-empty"),
        ({"model": "smol", "models": {"usc": "smol"}}, "zoo.models (a method zoo.selectors or zoo.aggregators lists)"),
    ],
)
def test_a_bad_zoo_is_one_line_naming_its_key(zoo, message):
    with pytest.raises(PolyfuseError, match=re.escape(message)):
        load_config(copy.deepcopy(DEFAULT) | {"zoo": zoo})


def test_self_certainty_needs_a_llamacpp_model():
    config = copy.deepcopy(DEFAULT)
    config["models"]["api"] = {
        "engine": "openai",
        "model": "m",
        "base_url": "http://localhost:1/v1",
        "prompt_style": "chat",
    }
    with pytest.raises(PolyfuseError, match="zoo: self_certainty needs full-vocabulary log-probabilities"):
        load_config(config | {"zoo": {"model": "api", "selectors": ["self_certainty"]}})


def test_a_zoo_selector_in_study_selectors_is_pointed_to_the_zoo():
    config = copy.deepcopy(DEFAULT)
    config["study"]["selectors"] = ["usc"]
    with pytest.raises(PolyfuseError, match="study.selectors: 'usc' is a method of the zoo: list it in zoo.selectors"):
        load_config(config)


# --- the zoo's table and figure ---


def test_the_pareto_front_is_every_method_no_other_beats_on_quality_at_no_more_cost():
    import pandas as pd

    from polyfuse.zoo_report import pareto_front

    points = pd.DataFrame(
        {
            "method": ["single", "cheap-good", "dear-better", "dear-worse", "same-cost-worse", "tie"],
            "cost": [0.0, 10.0, 100.0, 100.0, 10.0, 10.0],
            "quality": [20.0, 50.0, 60.0, 40.0, 45.0, 50.0],
        }
    )
    assert pareto_front(points) == {"single", "cheap-good", "dear-better", "tie"}  # equal points do not dominate


def test_a_method_whose_model_reads_no_generated_token_is_off_the_token_axis():
    from polyfuse.zoo_report import off_the_token_axis

    assert off_the_token_axis({"calls": 20.0, "tokens_in": 0.0, "tokens_out": 0.0})  # COMET-MBR's passes
    assert not off_the_token_axis({"calls": 0.0, "tokens_in": 0.0, "tokens_out": 0.0})  # a vote: free, on the axis
    assert not off_the_token_axis({"calls": 1.0, "tokens_in": 150.0, "tokens_out": 8.0})


def test_the_zoo_table_pairs_each_method_with_fusion_and_the_best_bon(tmp_path):
    from polyfuse.zoo_report import run_zoo

    values = {  # per method, item scores in two languages (0/100 accuracy)
        "single": [0, 0, 100, 0, 0, 100, 0, 0],
        "bon-loglik": [100, 0, 100, 0, 100, 100, 0, 0],
        "bon-mbr_chrf": [0, 0, 100, 0, 0, 0, 0, 0],
        "fusion-gemma270m": [100, 100, 100, 0, 100, 100, 0, 100],
        "bon-usc@smol": [0, 0, 0, 0, 0, 0, 0, 0],
        "fusion-moa@smol": [100, 100, 100, 100, 100, 100, 100, 100],
    }
    scores, records = [], []
    for method, column in values.items():
        for lang, half in (("de", column[:4]), ("fr", column[4:])):
            base = tmp_path / lang / method
            base.mkdir(parents=True)
            rows = [
                {"id": f"{lang}{i}", "task": "mgsm", "lang": lang, "sampler": "g", "method": method} for i in range(4)
            ]
            write_jsonl(
                base / "scores.jsonl", [row | {"values": {"accuracy": v}} for row, v in zip(rows, half, strict=True)]
            )
            cost = {"calls": 1, "tokens_in": 100, "tokens_out": 20, "seconds": 0.5}
            fallback = ["first", None, None, None] if method == "bon-usc@smol" else [None] * 4
            write_jsonl(
                base / "outputs.jsonl",
                [row | {"cost": cost, "fallback": f} for row, f in zip(rows, fallback, strict=True)],
            )
            scores.append(str(base / "scores.jsonl"))
            records.append(str(base / "outputs.jsonl"))
    outputs = {
        f"mgsm_{name}": str(tmp_path / f"zoo.{ext}")
        for name, ext in (("table", "csv"), ("markdown", "md"), ("figure", "png"), ("pdf", "pdf"))
    }
    settings = {
        "bootstrap": 200,
        "confidence": 0.95,
        "seed": 0,
        "tasks": {"mgsm": {"kind": "math"}},
        "metrics": {"mgsm": "accuracy"},
        "zoo_tasks": ["mgsm"],
        "zoo_fusion": {"mgsm": "fusion-gemma270m"},
        "zoo_bon": ["bon-loglik", "bon-mbr_chrf"],
    }
    run_zoo(scores, records, outputs=outputs, settings=settings)
    import pandas as pd

    table = pd.read_csv(outputs["mgsm_table"])
    avg = table[table["lang"] == "avg"].set_index("method")
    assert avg.loc["fusion-moa@smol", "mean"] == 100 and avg.loc["bon-usc@smol", "own_share"] == pytest.approx(
        6 / 8
    )  # one fallback per language
    # the best BoN is loglik (mean 50 against 12.5); moa - fusion = 100 - 75 over 8 paired items
    assert avg.loc["fusion-moa@smol", "difference_vs_FusioN"] == pytest.approx(25.0)
    assert avg.loc["fusion-moa@smol", "difference_vs_best_BoN"] == pytest.approx(50.0)
    # Holm over one family: 5 methods against FusioN, 4 against the best BoN (FusioN against it once, not twice)
    raw = pd.concat([avg["p_vs_FusioN"], avg["p_vs_best_BoN"]]).dropna()
    holm = pd.concat([avg["p_holm_vs_FusioN"], avg["p_holm_vs_best_BoN"]]).dropna()
    assert len(raw) == len(holm) == 9 and (holm >= raw - 1e-12).all()
    assert holm.min() == pytest.approx(
        min(1.0, 9 * raw.min()), rel=1e-3
    )  # Holm's first step is Bonferroni's (CSV: 4 digits)
    assert pd.isna(avg.loc["fusion-gemma270m", "p_vs_best_BoN"])
    markdown = Path(outputs["mgsm_markdown"]).read_text()
    assert "the best BoN is `bon-loglik`" in markdown and "| fusion-moa@smol |" in markdown
    assert Path(outputs["mgsm_figure"]).stat().st_size > 0 and Path(outputs["mgsm_pdf"]).stat().st_size > 0


class ReferenceJudge(PreferenceJudge):
    """Rates an answer 10 minus its distance to the reference's number; no rating for candidate 1 against 3."""

    def rate(self, kind, item, answer, reference=None):
        from polyfuse.judge import Rating

        self.calls += 1
        a, b = (int(text.rsplit("cand", 1)[1]) for text in (answer, reference))
        value = None if (a, b) == (1, 3) else float(10 - abs(a - b) * (a + 1))
        return Rating(value, "", {"calls": 1, "tokens_in": 0, "tokens_out": 0, "seconds": 0.0})


@pytest.mark.parametrize("self_pair", [False, True])
def test_mbr_with_a_pointwise_judge_utility_is_each_candidates_mean_rating_against_the_others(tmp_path, self_pair):
    items, _, pools = write_pools(tmp_path, count=1, k=4)
    judge = ReferenceJudge()
    settings = {**ZOO_SETTINGS, "mbr_judge": {"utility": "pointwise", "self_pair": self_pair, "template": "x"}}
    scorer = make_scorer("mbr_judge", task_kind("translation"), judge=judge, settings=settings)
    (record,) = select_pools(items, pools, scorer, "bon-mbr_judge@scripted")
    assert judge.calls == (16 if self_pair else 12) == calls_floor("mbr_judge", 4, settings)
    expected = []
    for i in range(4):  # by hand: the ratings the judge gave, the missing one left out
        ratings = [10 - abs(i - j) * (i + 1) for j in range(4) if (i != j or self_pair) and (i, j) != (1, 3)]
        expected.append(sum(ratings) / len(ratings))
    assert record["scores"] == pytest.approx(expected) and record["unrated"] == 1
    assert record["chosen"] == int(np.argmax(expected))


def test_mbr_with_a_pairwise_judge_utility_never_asks_the_self_pair(tmp_path):
    items, _, pools = write_pools(tmp_path, count=1, k=3)
    judge = PreferenceJudge()
    settings = {**ZOO_SETTINGS, "mbr_judge": {"utility": "pairwise", "self_pair": True, "template": "x"}}
    scorer = make_scorer("mbr_judge", task_kind("translation"), judge=judge, settings=settings)
    (record,) = select_pools(items, pools, scorer, "bon-mbr_judge@scripted")
    assert judge.calls == 3 * 2 == calls_floor("mbr_judge", 3, settings)  # N(N - 1) verdicts, self-pair or not
    assert record["scores"] == [0.0, 0.5, 1.0] and record["chosen"] == 2


class ChrfMetric:
    """A COMET stand-in with COMET's interface: sacrebleu's sentence chrF of mt against ref."""

    name = "chrf-standin"

    def __init__(self):
        from sacrebleu.metrics import CHRF

        self.chrf, self.segments = CHRF(), 0

    def segment_scores(self, triples):
        self.segments += len(triples)
        return [self.chrf.sentence_score(t["mt"], [t["ref"]]).score for t in triples]


@pytest.mark.parametrize("self_pair", [False, True])
def test_comet_mbr_is_each_candidates_mean_utility_against_the_other_candidates(tmp_path, self_pair):
    from sacrebleu.metrics import CHRF

    from polyfuse.comet_score import mbr_records

    items, _, pools = write_pools(tmp_path, count=1, k=4)
    texts = ["the cat sat on the mat", "a cat sat on a mat", "the dog ran", "the cat sat on a mat"]
    write_jsonl(
        pools, [{"id": "i0", "sampler": "gemma", "prompt_hash": "h", "candidates": [{"text": t} for t in texts]}]
    )
    metric = ChrfMetric()
    (record,) = mbr_records(items, pools, metric, self_pair=self_pair, status="ok")
    chrf = CHRF()
    expected = [  # by hand: sacrebleu's own sentence chrF, averaged over the pseudo-references
        np.mean([chrf.sentence_score(h, [r]).score for j, r in enumerate(texts) if self_pair or j != i])
        for i, h in enumerate(texts)
    ]
    assert record["scores"] == pytest.approx(expected, abs=1e-5) and record["chosen"] == int(np.argmax(expected))
    assert (
        metric.segments
        == record["cost"]["calls"]
        == calls_floor("mbr_comet", 4, {"mbr_comet": {"self_pair": self_pair}})
    )
    assert record["method"] == "bon-mbr_comet" and record["fallback"] is None


def test_comet_mbr_without_a_model_falls_back_to_the_first_candidate_and_says_why(tmp_path):
    from polyfuse.comet_score import mbr_records

    items, _, pools = write_pools(tmp_path, count=2, k=3)
    records = list(mbr_records(items, pools, None, self_pair=False, status="unavailable: offline"))
    assert [r["chosen"] for r in records] == [0, 0] and {r["fallback"] for r in records} == {"first"}
    assert {r["parse_status"] for r in records} == {"unavailable: offline"}


def first_shown(item_id: str, n: int) -> list[int]:
    """The fusor's shown order of an item, recomputed from its definition: a seeded shuffle of the pool indices."""
    from polyfuse.sample import derive_seed

    order = list(range(n))
    random.Random(derive_seed(ZOO_SETTINGS["order_seed"], "order", item_id)).shuffle(order)
    return order


def test_selectors_show_the_candidates_in_the_fusors_order(tmp_path):
    items, shots, pools = write_pools(tmp_path, count=3, k=5)
    engine = ScriptedEngine(lambda prompt: "Judgment: 1")
    with OutputCache(tmp_path / "cache") as cache:
        scorer, records = usc_selection(items, pools, engine, cache)
        fusor = ScriptedEngine(lambda prompt: "Answer: [[x]]")
        sampling = {"temperature": 0.3, "top_p": 0.95, "max_tokens": 32}
        job = FusionJob(fusor, "chat", cache, task_kind("translation"), "paper", sampling, ZOO_SETTINGS["order_seed"])
        fused = list(fuse_pools(items, shots, pools, job=job, stats={}))
    for n, (record, prompt, fusion, fusion_prompt) in enumerate(
        zip(records, engine.prompts, fused, fusor.prompts, strict=True)
    ):
        order = first_shown(f"i{n}", 5)
        assert re.findall(r"item\d+-cand(\d+)", prompt) == [str(i) for i in order]
        assert re.findall(r"item\d+-cand(\d+)", fusion_prompt) == [str(i) for i in order] and fusion["order"] == order
        assert record["chosen"] == order[0]


def test_a_knockout_whose_final_verdict_was_dropped_states_its_stand_in(tmp_path):
    items, _, pools = write_pools(tmp_path, count=1, k=2)
    judge = PreferenceJudge(drop={0, 1})
    (record,) = select_pools(
        items, pools, make_scorer("knockout", task_kind("translation"), judge=judge, settings=ZOO_SETTINGS), "k"
    )
    assert record["chosen"] == first_shown("i0", 2)[0]
    assert (record["fallback"], record["parse_status"], record["dropped"]) == ("first", "dropped", 1)
    tie = PreferenceJudge(tie={0, 1})  # a tie is the judge's verdict, broken to the first shown: no stand-in
    (record,) = select_pools(
        items, pools, make_scorer("knockout", task_kind("translation"), judge=tie, settings=ZOO_SETTINGS), "k"
    )
    assert record["chosen"] == first_shown("i0", 2)[0] and record["fallback"] is None and record["ties"] == 1


def test_a_round_robin_without_any_verdict_states_the_first_shown_as_its_stand_in(tmp_path):
    items, _, pools = write_pools(tmp_path, count=1, k=3)
    judge = PreferenceJudge(drop={0, 1, 2})
    scorer = make_scorer("round_robin", task_kind("translation"), judge=judge, settings=ZOO_SETTINGS)
    (record,) = select_pools(items, pools, scorer, "bon-round_robin@scripted")
    assert record["chosen"] == first_shown("i0", 3)[0] and record["fallback"] == "first" and record["dropped"] == 3


def test_a_batch_of_items_that_need_different_numbers_of_calls_is_fused_round_by_round(tmp_path):
    items, shots, pools = write_pools(tmp_path, count=3, k=5)
    sizes = [3, 5, 4]  # Self-MoA-Seq with window 2, step 1: 2, 4 and 3 calls
    write_jsonl(pools, [p | {"candidates": p["candidates"][:k]} for p, k in zip(read_jsonl(pools), sizes, strict=True)])
    engine = ScriptedEngine(
        lambda prompt: "Answer: [[" + "|".join(sorted(set(re.findall(r"item\d+-cand\d+", prompt)))) + "]]"
    )
    engine.batch_items = 3  # one batch: the items leave it after different rounds
    sampling = {"temperature": 0.3, "top_p": 0.95, "max_tokens": 32}
    with OutputCache(tmp_path / "cache") as cache:
        job = FusionJob(
            engine,
            "chat",
            cache,
            task_kind("translation"),
            "paper",
            sampling,
            7,
            aggregator="self_moa_seq",
            settings=ZOO_SETTINGS,
        )
        records = list(fuse_pools(items, shots, pools, job=job, stats={}))
    assert [r["cost"]["calls"] for r in records] == [2, 4, 3] and engine.calls == 9
    for n, (record, k) in enumerate(zip(records, sizes, strict=True)):
        assert record["output"] == "|".join(f"item{n}-cand{c}" for c in sorted(range(k), key=str))


@pytest.mark.parametrize(
    "template, family, generation, expected",
    [
        ("usc", "select", " 2\n", (1, "ok")),
        ("genselect", "select", " 3 is best", (2, "ok")),
        ("usc", "select", " none", (None, "no_index")),
    ],
)
def test_a_few_shot_selection_prompt_ends_at_its_marker_and_the_output_is_read_after_it(
    template, family, generation, expected
):
    from polyfuse.selectors import choice_primer
    from polyfuse.tasks import load_template

    prompt = load_template(template, family, "fewshot").render(
        instruction="Say hi.", language="German", candidates=["a", "b", "c"]
    )
    choice = parse_choice(choice_primer(prompt, "fewshot") + generation, 3)
    assert (choice.position, choice.status) == expected


@pytest.mark.parametrize("aggregator", ["moa", "nocompare", "usi", "rsa"])
def test_a_few_shot_aggregation_prompt_opens_the_answer_and_the_output_closes_it(aggregator):
    from polyfuse.fuse import fusion_prompt, parse_fused, prompt_primer

    item = {"id": "x", "lang": "de", "input": "Good morning."}
    prompt, _ = fusion_prompt(aggregator, "fewshot", task_kind("translation"), item, ["Guten Morgen.", "Morgen."])
    assert prompt.endswith("Answer: [[")
    assert parse_fused(prompt_primer(prompt, "fewshot") + "Guten Morgen!]]\n").text == "Guten Morgen!"
    paper, _ = fusion_prompt("paper", "fewshot", task_kind("translation"), item, ["Guten Morgen.", "Morgen."])
    assert prompt_primer(paper, "fewshot") == ""  # the paper's prompt ends at "Comparison:", which is not the answer


def test_the_zoo_average_weighs_each_language_equally_over_the_common_items():
    import pandas as pd

    from polyfuse.zoo_report import task_table

    rows = []
    for method, by_lang in {  # de: 2 items, fr: 6; fusion scores item fr5 not at all
        "fusion-f": {"de": [100, 100], "fr": [0, 0, 0, 0, 0, None]},
        "bon-usc@m": {"de": [0, 0], "fr": [100, 100, 100, 100, 100, 100]},
    }.items():
        for lang, values in by_lang.items():
            rows += [
                {"task": "t", "lang": lang, "sampler": "s", "method": method, "id": f"{lang}{i}", "value": v}
                for i, v in enumerate(values)
            ]
    items = pd.DataFrame(rows).astype({"value": float})
    records = items.assign(own=True, calls=1.0, tokens_in=1.0, tokens_out=1.0, seconds=1.0)
    settings = {"bootstrap": 200, "confidence": 0.95, "seed": 0, "zoo_fusion": {"t": "fusion-f"}, "zoo_bon": []}
    table, _ = task_table(items, records, "t", settings)
    avg = table[table["lang"] == "avg"].set_index("method")
    # on the 7 common items: fusion (100 + 0) / 2 = 50 and USC (0 + 100) / 2 = 50, although USC wins 6 of 7 items
    assert avg.loc["fusion-f", "mean"] == pytest.approx(50) and avg.loc["bon-usc@m", "mean"] == pytest.approx(50)
    assert avg.loc["bon-usc@m", "items"] == 7 and avg.loc["bon-usc@m", "difference_vs_FusioN"] == pytest.approx(0)
    fr = table[(table["lang"] == "fr")].set_index("method")
    assert fr.loc["fusion-f", "items"] == 5  # a language's own cell keeps every item the method scored


def test_a_comparison_of_identical_scores_says_so_instead_of_a_detectable_difference_of_zero():
    from polyfuse.zoo_report import comparison_text

    same = {"difference_vs_FusioN": 0.0, "detectable_vs_FusioN": 0.0, "p_holm_vs_FusioN": 1.0}
    assert comparison_text(same, "FusioN") == "+0.0 (the same score on every item; p_holm 1.000)"
    shifted = {"difference_vs_FusioN": 100.0, "detectable_vs_FusioN": 0.0, "p_holm_vs_FusioN": 0.03}
    assert comparison_text(shifted, "FusioN") == "+100.0 (p_holm 0.030; detectable ±0.0)"  # a constant difference
