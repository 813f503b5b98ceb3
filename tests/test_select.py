import pytest

from polyfuse.cache import OutputCache
from polyfuse.errors import PolyfuseError
from polyfuse.io import write_jsonl
from polyfuse.select import best_index, make_scorer, run_select
from polyfuse.io import read_jsonl
from polyfuse.tasks import task_kind

TRANSLATION = task_kind("translation")
ITEM = {"id": "1", "task": "wmt", "lang": "de", "input": "The museum is closed on Mondays.",
        "reference": "Das Museum ist montags geschlossen."}
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
    with OutputCache(tmp_path / "cache.sqlite") as cache:
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
    write_jsonl(pools, [{"id": "1", "sampler": "m", "prompt_hash": "h",
                         "candidates": [{"text": f" {text} "} for text in CANDIDATES]}])
    run_select(str(items), str(pools), str(tmp_path / "out.jsonl"), make_scorer("oracle", TRANSLATION))
    (record,) = read_jsonl(tmp_path / "out.jsonl")
    assert record["method"] == "oracle" and record["chosen"] == 1
    assert record["output"] == CANDIDATES[1] and len(record["scores"]) == 4
    write_jsonl(items, [{**ITEM, "id": "other"}])
    with pytest.raises(PolyfuseError, match="expected a record for item 'other', found '1'"):
        run_select(str(items), str(pools), str(tmp_path / "out2.jsonl"), make_scorer("oracle", TRANSLATION))
    assert not (tmp_path / "out2.jsonl").exists()
