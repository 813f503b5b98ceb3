import logging

import pytest

from polyfuse import methods
from polyfuse.cache import OutputCache, cache_key
from polyfuse.engines import Engine
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.reward import Rewards
from polyfuse.select import best_index, make_scorer, repetition, run_select, run_target_scores
from polyfuse.tasks import task_kind, task_prompt

TRANSLATION = task_kind("translation")
ITEM = {
    "id": "1",
    "task": "wmt",
    "lang": "de",
    "input": "The museum is closed on Mondays.",
    "reference": "Das Museum ist montags geschlossen.",
}
CANDIDATES = [
    "Das Museum hat montags zu.",
    "Das Museum ist montags geschlossen.",
    "Museum montags geschlossen ist.",
    "Der Hund schläft im Garten.",
]


def test_ties_go_to_the_lowest_index():
    assert best_index([0.5, 0.9, 0.9, 0.1]) == 1
    assert best_index([1.0, 1.0]) == 0


def test_single_takes_the_first_candidate():
    assert best_index(make_scorer("single", TRANSLATION).score(ITEM, CANDIDATES)) == 0


def test_oracle_takes_the_candidate_closest_to_the_reference():
    scores = make_scorer("oracle", TRANSLATION).score(ITEM, CANDIDATES)
    assert best_index(scores) == 1 and scores[1] == pytest.approx(100.0)


def test_oracle_for_math_takes_the_first_correct_answer():
    item = {"id": "2", "lang": "en", "input": "2+3?", "reference": "5"}
    scores = make_scorer("oracle", task_kind("math")).score(item, ["Answer: 4", "Answer: 5", "5"])
    assert scores == [0.0, 100.0, 100.0] and best_index(scores) == 1


def test_mbr_chrf_prefers_the_consensus_and_shuns_the_outlier():
    scores = make_scorer("mbr_chrf", TRANSLATION).score(ITEM, CANDIDATES)
    assert best_index(scores) in (0, 1)
    assert min(range(4), key=scores.__getitem__) == 3


def test_unknown_scorer_is_a_clear_error():
    with pytest.raises(PolyfuseError, match="unknown scorer 'rm'; known: .*loglik.*mbr_chrf"):
        make_scorer("rm", TRANSLATION)


def test_loglik_with_a_real_model_ranks_a_fluent_answer_above_noise(tmp_path, gemma):
    with OutputCache(tmp_path / "cache") as cache:
        shots = [{"input": "Good morning.", "reference": "Guten Morgen."}]
        scorer = make_scorer("loglik", TRANSLATION, engine=gemma, style="fewshot", shots=shots, cache=cache)
        noise = "xq zzv plomf 7 ## wub"
        scores = scorer.score(ITEM, [noise, " Das Museum ist montags geschlossen."])
        assert scores[1] > scores[0] and all(s < 0 for s in scores)
        calls = gemma.calls
        assert scorer.score(ITEM, [noise, " Das Museum ist montags geschlossen."]) == scores
        assert gemma.calls == calls  # the second time comes from the cache


def test_run_select_writes_one_record_per_item_with_all_scores(tmp_path):
    items = tmp_path / "items.jsonl"
    pools = tmp_path / "pools.jsonl"
    write_jsonl(items, [ITEM])
    write_jsonl(
        pools,
        [{"id": "1", "sampler": "m", "prompt_hash": "h", "candidates": [{"text": f" {text} "} for text in CANDIDATES]}],
    )
    run_select(str(items), str(pools), str(tmp_path / "out.jsonl"), scorer=make_scorer("oracle", TRANSLATION))
    (record,) = read_jsonl(tmp_path / "out.jsonl")
    assert record["method"] == "oracle" and record["chosen"] == 1
    assert record["output"] == CANDIDATES[1] and len(record["scores"]) == 4
    write_jsonl(items, [{**ITEM, "id": "other"}])
    with pytest.raises(PolyfuseError, match="expected a record for item 'other', found '1'"):
        run_select(str(items), str(pools), str(tmp_path / "out2.jsonl"), scorer=make_scorer("oracle", TRANSLATION))
    assert not (tmp_path / "out2.jsonl").exists()


class CountingScorerModel(Engine):
    """Scores -2 per word, +1 for surrounding whitespace (so stripping shows), and records what it was asked."""

    def __init__(self):
        super().__init__("counting", {})
        self.seen: list[str] = []

    def identity(self):
        return {"engine": "counting"}

    def generate(self, requests):
        raise NotImplementedError

    def loglik_terms(self, prompt, continuations):
        self.seen.extend(continuations)
        self.calls += len(continuations)
        return [(-2.0 * len(text.split()) + (text != text.strip()), len(text.split())) for text in continuations]


def select_with(tmp_path, scorer, texts):
    write_jsonl(tmp_path / "items.jsonl", [ITEM])
    write_jsonl(
        tmp_path / "pools.jsonl",
        [{"id": "1", "sampler": "m", "prompt_hash": "h", "candidates": [{"text": text} for text in texts]}],
    )
    run_select(str(tmp_path / "items.jsonl"), str(tmp_path / "pools.jsonl"), str(tmp_path / "out.jsonl"), scorer=scorer)
    (record,) = read_jsonl(tmp_path / "out.jsonl")
    return record


def loglik_scorer(tmp_path, engine, normalization="mean"):
    cache = OutputCache(tmp_path / f"{normalization}")
    return make_scorer(
        "loglik", TRANSLATION, engine=engine, style="fewshot", shots=[], cache=cache, normalization=normalization
    )


def test_loglik_scores_candidates_as_generated_and_outputs_them_stripped(tmp_path):
    engine = CountingScorerModel()
    record = select_with(tmp_path, loglik_scorer(tmp_path, engine), [" Das Museum hat zu.", "Das Museum hat zu."])
    assert engine.seen == [" Das Museum hat zu.", "Das Museum hat zu."]  # the leading space the model wrote is scored
    assert record["chosen"] == 0 and record["output"] == "Das Museum hat zu."
    assert record["normalization"] == "mean"


def test_loglik_sum_normalization_prefers_the_shorter_candidate_and_is_cached_apart(tmp_path):
    texts = ["Museum zu.", "Das Museum ist am Montag und am Sonntag geschlossen.", ""]
    engine = CountingScorerModel()
    mean = select_with(tmp_path, loglik_scorer(tmp_path, engine, "mean"), texts)
    total = select_with(tmp_path, loglik_scorer(tmp_path, engine, "sum"), texts)
    assert mean["scores"] == [-2.0, -2.0, float("-inf")] and mean["chosen"] == 0
    assert total["scores"] == [-4.0, -18.0, float("-inf")] and total["normalization"] == "sum"
    with OutputCache(tmp_path / "shared") as cache:
        for normalization, expected in (("mean", -2.0), ("sum", -4.0), ("mean", -2.0)):
            scorer = make_scorer(
                "loglik",
                TRANSLATION,
                engine=engine,
                style="fewshot",
                shots=[],
                cache=cache,
                normalization=normalization,
            )
            assert scorer.score(ITEM, ["Museum zu."]) == [expected]
    with pytest.raises(PolyfuseError, match="study.loglik_normalization: unknown 'max'; known: mean, sum"):
        loglik_scorer(tmp_path, engine, "max").score(ITEM, texts)


def test_repetition_is_seq_rep_4_over_words():
    assert repetition("Das Museum ist montags geschlossen.") == 0.0
    assert repetition("no, no, no, no, no, no, no") == pytest.approx(0.75)  # 4 word 4-grams, 1 distinct
    assert repetition("いいえいいえいいえいいえいいえ") == pytest.approx(0.75)  # kana count as words
    assert repetition("no no no") == 0.0  # under four words there is nothing to repeat
    assert repetition("ไม่ใช่" * 8) > 0.5 and repetition("แมวนอนอยู่บนเสื่อสีแดงใกล้หน้าต่าง") < 0.2  # Thai too


def test_select_records_flag_repetitive_candidates_and_count_chosen_ones(tmp_path, caplog):
    texts = ["Das Museum ist montags geschlossen.", "nein, nein, nein, nein, nein, nein, nein, nein"]
    with caplog.at_level(logging.INFO):
        record = select_with(tmp_path, make_scorer("single", TRANSLATION), texts[::-1])
    assert record["repetitive"] == [True, False] and record["repetition"][0] > 0.5
    assert "repetitive_chosen=1" in caplog.text


class FixedRewardModel:
    """A reward model stand-in whose second candidate did not fit."""

    calls = 0

    def score(self, prompt, responses):
        cost = {"calls": 1, "tokens_in": 7 * len(responses), "tokens_out": 0, "seconds": 0.25}
        return Rewards([float(len(text)) for text in responses], [i == 1 for i in range(len(responses))], cost)


def test_reward_model_records_and_counts_truncated_pairs(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        record = select_with(
            tmp_path, make_scorer("reward_model", TRANSLATION, reward_model=FixedRewardModel()), CANDIDATES
        )
    assert record["truncated"] == [False, True, False, False] and "truncated=1" in caplog.text
    # the reward model's own count of what it read, not an estimate from the candidates
    assert record["cost"] == {"calls": 1, "tokens_in": 28, "tokens_out": 0, "seconds": 0.25}


def test_a_selector_may_name_its_scorers_model_and_the_record_carries_that_method(tmp_path):
    assert methods.split_selector("loglik@gemma270m") == ("loglik", "gemma270m")
    assert methods.split_selector("loglik") == ("loglik", None)
    assert methods.bon(methods.scored_by("loglik", "smol")) == "bon-loglik@smol"
    assert methods.parse("bon-loglik@smol") == ("bon", "loglik@smol")
    for malformed in ("loglik@", "@smol"):
        with pytest.raises(PolyfuseError, match=f"selector '{malformed}': expected <scorer>@<model>"):
            methods.split_selector(malformed)
    write_jsonl(tmp_path / "items.jsonl", [ITEM])
    write_jsonl(
        tmp_path / "pools.jsonl",
        [{"id": "1", "sampler": "m", "prompt_hash": "h", "candidates": [{"text": t} for t in CANDIDATES]}],
    )
    scorer = loglik_scorer(tmp_path, CountingScorerModel())
    out = tmp_path / "out.jsonl"
    run_select(
        str(tmp_path / "items.jsonl"),
        str(tmp_path / "pools.jsonl"),
        str(out),
        scorer=scorer,
        method="bon-loglik@counting",
    )
    (record,) = read_jsonl(out)
    assert record["method"] == "bon-loglik@counting" and record["scorer"] == "loglik"


def test_a_loglik_scorers_cost_is_measured_when_it_runs_and_kept_with_its_cached_scores(tmp_path, gemma):
    shots = [{"input": "Good morning.", "reference": "Guten Morgen."}]
    texts = ["xq zzv plomf 7 ## wub", " Das Museum ist montags geschlossen.", " Das Museum ist zu."]
    prompt, _ = task_prompt(TRANSLATION, ITEM, "fewshot", shots)
    llm = gemma.scorer
    # the prompt is read once (its last token again before each continuation), then each continuation whole
    prompt_tokens = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
    own = [1 + len(llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)) for t in texts]
    read = prompt_tokens - 1 + sum(own)
    with OutputCache(tmp_path / "cache") as cache:
        scorer = make_scorer("loglik", TRANSLATION, engine=gemma, style="fewshot", shots=shots, cache=cache)
        calls = gemma.calls
        scores, details = scorer.score_item(ITEM, texts)
        cost = details["cost"]
        assert gemma.calls - calls == 3 and cost["calls"] == pytest.approx(3) and cost["tokens_out"] == 0
        assert cost["tokens_in"] == pytest.approx(read) and cost["seconds"] > 0
        again = scorer.score_item(ITEM, texts)
        assert gemma.calls - calls == 3 and again == (scores, details)  # cached: no call, the cost it had
        # a subset costs what scoring it alone would: the prompt once, and its own continuation's tokens
        _, alone = scorer.score_item(ITEM, texts[:1])
        assert alone["cost"]["tokens_in"] == prompt_tokens - 1 + own[0]
        assert alone["cost"]["calls"] == 1 and gemma.calls - calls == 3
        # one new candidate: the two cached ones keep their share, the new one is measured on its own
        _, mixed = scorer.score_item(ITEM, texts[:2] + [" Geschlossen."])
        assert gemma.calls - calls == 4 and mixed["cost"]["calls"] == pytest.approx(3)
    # a score cached before costs were kept: the cost is not measured (None), never 0
    bare = OutputCache(tmp_path / "bare")
    for key, value in OutputCache(tmp_path / "cache").get_many(loglik_keys(gemma, prompt, texts)).items():
        bare.put(key, value)
    scorer = make_scorer("loglik", TRANSLATION, engine=gemma, style="fewshot", shots=shots, cache=bare)
    assert scorer.score_item(ITEM, texts) == (scores, {"normalization": "mean", "cost": None})


def timing_free(cost):
    return {field: value for field, value in cost.items() if field != "seconds"}


def test_a_texts_loglik_cost_does_not_depend_on_the_batch_that_first_scored_it(tmp_path, gemma):
    # issue 17: a fused answer equal to a candidate was costed as a share of whichever job scored it first (the
    # pool's selection, 5 at once, or the target scores, alone), so a resumed study's records differed
    shots = [{"input": "Good morning.", "reference": "Guten Morgen."}]
    texts = [" Das Museum ist montags und dienstags geschlossen.", " Zu.", " Das Museum ist montags zu."]
    costs = []
    for order, batches in enumerate([[texts, texts[:1]], [texts[:1], texts]]):
        with OutputCache(tmp_path / f"order{order}") as cache:
            scorer = make_scorer("loglik", TRANSLATION, engine=gemma, style="fewshot", shots=shots, cache=cache)
            costs.append([timing_free(scorer.score_item(ITEM, batch)[1]["cost"]) for batch in batches])
    batch_first, alone_first = costs
    assert batch_first == alone_first[::-1]


def loglik_keys(engine, prompt, texts):
    return [cache_key(model=engine.identity(), prompt=prompt, loglik=text) for text in texts]


def test_a_scorer_without_a_model_costs_no_call_and_its_seconds_are_measured(tmp_path):
    record = select_with(tmp_path, make_scorer("mbr_chrf", TRANSLATION), CANDIDATES)
    assert record["cost"]["calls"] == record["cost"]["tokens_in"] == record["cost"]["tokens_out"] == 0
    assert record["cost"]["seconds"] > 0


def test_a_fused_answer_is_scored_by_loglik_as_its_pools_candidates_were(tmp_path, gemma):
    # issue 17 item 14: the fused answer (stored stripped) is read after the leading space the candidates were
    # generated with, so its score compares with theirs
    shots = [{"input": "Good morning.", "reference": "Guten Morgen."}]
    write_jsonl(tmp_path / "items.jsonl", [ITEM])
    pool = {"id": "1", "task": "wmt", "lang": "de", "sampler": "m", "prompt_hash": "h"}
    write_jsonl(tmp_path / "pools.jsonl", [pool | {"candidates": [{"text": " Das Museum hat zu."}]}])
    fused = {"id": "1", "task": "wmt", "lang": "de", "sampler": "m", "method": "fusion-x"}
    write_jsonl(tmp_path / "fused.jsonl", [fused | {"output": "Das Museum ist montags geschlossen."}])
    with OutputCache(tmp_path / "cache") as cache:
        scorer = make_scorer("loglik", TRANSLATION, engine=gemma, style="fewshot", shots=shots, cache=cache)
        run_target_scores(
            str(tmp_path / "items.jsonl"),
            str(tmp_path / "pools.jsonl"),
            str(tmp_path / "fused.jsonl"),
            str(tmp_path / "scores.jsonl"),
            scorer=scorer,
            method="bon-loglik",
        )
    (record,) = read_jsonl(tmp_path / "scores.jsonl")
    prompt, _ = task_prompt(TRANSLATION, ITEM, "fewshot", shots)
    (expected,) = gemma.loglik(prompt, [" Das Museum ist montags geschlossen."])
    assert record["score"] == pytest.approx(expected, abs=1e-6)
    assert (record["method"], record["scored_by"], record["sampler"]) == ("fusion-x", "bon-loglik", "m")
    assert record["cost"]["calls"] == pytest.approx(1) and record["cost"]["tokens_in"] > 0
