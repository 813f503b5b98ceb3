"""Multi-model pools and SFT sets: merge teacher pools, select and fuse over them, build the training records."""

from __future__ import annotations

import json
import random
import string
import tracemalloc
from collections import Counter

import pytest
import sacrebleu

from polyfuse.distill import SetTarget, build_sft_set, histogram_stats
from polyfuse.errors import PolyfuseError
from polyfuse.io import content_hash, read_jsonl, write_jsonl
from polyfuse.pools import merge_pools, pool_members
from polyfuse.select import make_scorer, run_select, run_target_scores
from polyfuse.tasks import instruction_text, task_kind

CHAT = task_kind("chat")
MODELS = {"alpha": {}, "beta": {}, "noise": {}}
# Three teachers, alpha sampled twice; the noise teacher stands for a garbage model in the pool.
MEMBERS = [
    {"model": "alpha", "n": 2, "temperature": 0.3},
    {"model": "beta", "n": 1, "temperature": 0.3},
    {"model": "noise", "n": 1, "temperature": 0.3},
]
PROMPTS = {
    "p1": "Give two tips for keeping basil alive indoors.",
    "p2": "Name three fruits rich in vitamin C.",
    "p3": "Explain in one sentence what a leap year is.",
}
ANSWERS = {  # per prompt: alpha's two samples, then beta's answer; the noise teacher writes random characters
    "p1": [
        "Water the basil when the soil is dry and keep it in a sunny window.",
        "Keep basil in a sunny window and water it when the soil feels dry.",
        "Put the basil in a bright, sunny window and water it when the top soil is dry.",
    ],
    "p2": [
        "Oranges, kiwis and strawberries are rich in vitamin C.",
        "Kiwis, oranges and strawberries are rich in vitamin C.",
        "Strawberries, oranges and kiwis all contain a lot of vitamin C.",
    ],
    "p3": [
        "A leap year has 366 days, with an extra day on 29 February.",
        "A leap year is a year of 366 days, adding 29 February.",
        "A leap year adds a 29th of February, so the year has 366 days.",
    ],
}


def garbage(item_id: str) -> str:
    rng = random.Random(item_id)
    return "".join(rng.choices(string.ascii_letters + string.punctuation + " ", k=70))


def candidate(text: str, model: str, seed: int, temperature: float = 0.3) -> dict:
    return {
        "text": text,
        "model": model,
        "engine": "llamacpp",
        "params": {"temperature": temperature, "top_p": 0.95, "max_tokens": 64},
        "seed": seed,
        "tokens_in": 12,
        "tokens_out": len(text.split()),
        "seconds": 0.1,
        "finish_reason": "stop",
    }


def write_items(directory, prompts: dict[str, str]) -> str:
    path = directory / "items.jsonl"
    write_jsonl(
        path,
        (
            {"id": i, "task": "ufb", "lang": "en", "input": p, "reference": None, "origin": {}, "meta": {}}
            for i, p in prompts.items()
        ),
    )
    return str(path)


def write_member(directory, k: int, model: str, texts_by_item: dict[str, list[str]]) -> str:
    path = directory / "teachers" / f"{k}.jsonl"
    write_jsonl(
        path,
        (
            {
                "id": item_id,
                "task": "ufb",
                "lang": "en",
                "prompt_hash": f"prompt-{model}-{item_id}",
                "template_hash": f"template-{model}",
                "sampler": model,
                "candidates": [candidate(text, model, seed=100 * k + i) for i, text in enumerate(texts)],
            }
            for item_id, texts in texts_by_item.items()
        ),
    )
    return str(path)


def teacher_member_files(directory) -> list[str]:
    return [
        write_member(directory, 0, "alpha", {i: texts[:2] for i, texts in ANSWERS.items()}),
        write_member(directory, 1, "beta", {i: texts[2:] for i, texts in ANSWERS.items()}),
        write_member(directory, 2, "noise", {i: [garbage(i)] for i in ANSWERS}),
    ]


@pytest.fixture
def teachers(tmp_path):
    """Items, the merged teacher pool, and its BoN (mbr_chrf) and single outputs."""
    items = write_items(tmp_path, PROMPTS)
    pool = str(tmp_path / "teachers.jsonl")
    assert merge_pools(items, teacher_member_files(tmp_path), MEMBERS, pool, "teachers") == 3
    outputs = {}
    for scorer in ("mbr_chrf", "single"):
        method = "bon-mbr_chrf" if scorer == "mbr_chrf" else scorer
        outputs[method] = str(tmp_path / f"{method}.jsonl")
        run_select(items, pool, outputs[method], scorer=make_scorer(scorer, CHAT))
    return items, pool, outputs


def fusion_output(path, pool_path: str, fused: dict[str, str | None]) -> str:
    """A fusor's output file: the given answer per item, or a parse failure (None) with the first-candidate fallback."""
    write_jsonl(
        path,
        (
            {
                "id": pool["id"],
                "task": pool["task"],
                "lang": pool["lang"],
                "method": "fusion-judge",
                "sampler": pool["sampler"],
                "output": pool["candidates"][0]["text"].strip() if fused[pool["id"]] is None else fused[pool["id"]],
                "parse_status": "missing" if fused[pool["id"]] is None else "ok",
                "fallback": "first" if fused[pool["id"]] is None else None,
                "raw": "no answer block" if fused[pool["id"]] is None else f"Answer: [[{fused[pool['id']]}]]",
                "order": list(range(len(pool["candidates"]))),
                "fusor": "judge",
                "cost": {"tokens_in": 50, "tokens_out": 20, "seconds": 0.2},
            }
            for pool in read_jsonl(pool_path)
        ),
    )
    return str(path)


def test_merge_concatenates_member_candidates_in_member_order_with_their_provenance(teachers):
    _, pool_path, _ = teachers
    pools = list(read_jsonl(pool_path))
    assert [pool["id"] for pool in pools] == list(PROMPTS)
    first = pools[0]
    assert first["sampler"] == "teachers"
    assert [c["model"] for c in first["candidates"]] == ["alpha", "alpha", "beta", "noise"]
    assert [c["seed"] for c in first["candidates"]] == [0, 1, 100, 200]
    assert [c["text"] for c in first["candidates"]] == [*ANSWERS["p1"], garbage("p1")]
    assert first["members"] == [
        {**member, "prompt_hash": f"prompt-{member['model']}-p1", "template_hash": f"template-{member['model']}"}
        for member in MEMBERS
    ]
    assert first["prompt_hash"] == content_hash(["prompt-alpha-p1", "prompt-beta-p1", "prompt-noise-p1"])
    assert first["template_hash"] == content_hash(["template-alpha", "template-beta", "template-noise"])
    assert pools[1]["prompt_hash"] != first["prompt_hash"]


def test_bon_over_the_teacher_pool_never_picks_the_garbage_teacher(teachers):
    _, pool_path, outputs = teachers
    for pool, selected in zip(read_jsonl(pool_path), read_jsonl(outputs["bon-mbr_chrf"]), strict=True):
        assert pool["candidates"][selected["chosen"]]["model"] != "noise"
        assert min(selected["scores"]) == selected["scores"][3]  # the garbage is the least consensual
        assert selected["sampler"] == "teachers"


def test_sft_records_keep_each_candidates_model_and_the_pool_members(teachers, tmp_path):
    items, pool_path, outputs = teachers
    sft, card_path = tmp_path / "bon" / "sft.jsonl", tmp_path / "bon" / "card.json"
    card = build_sft_set(items, pool_path, outputs, sft, card_path, target=SetTarget("bon", "bon-mbr_chrf", CHAT))
    records = list(read_jsonl(sft))
    pools = list(read_jsonl(pool_path))
    picks = list(read_jsonl(outputs["bon-mbr_chrf"]))
    assert [record["id"] for record in records] == list(PROMPTS)
    for record, pool, pick in zip(records, pools, picks, strict=True):
        item = {"input": PROMPTS[record["id"]], "lang": "en"}
        assert record["prompt"] == [{"role": "user", "content": instruction_text(CHAT, item)}]
        assert record["completion"] == [{"role": "assistant", "content": pick["output"]}]
        assert record["target"] == {"method": "bon-mbr_chrf", "index": pick["chosen"], "parse_status": None}
        assert [(c["model"], c["seed"], c["params"]) for c in record["candidates"]] == [
            (c["model"], c["seed"], c["params"]) for c in pool["candidates"]
        ]
        assert record["provenance"] == {
            "pool": "teachers",
            "members": pool["members"],
            "prompt_hash": pool["prompt_hash"],
            "template_hash": pool["template_hash"],
        }
        assert record["selections"]["single"] == {
            "text": pool["candidates"][0]["text"],
            "index": 0,
            "score": 1.0,
            "scores": [1.0, 0.0, 0.0, 0.0],
        }
        assert record["selections"]["bon-mbr_chrf"]["score"] == max(pick["scores"])
    assert card == json.loads(card_path.read_text())
    assert card["candidate_models"] == {"alpha": 6, "beta": 3, "noise": 3}
    assert card["candidates_per_prompt"] == {"4": 3}
    assert card["members"] == MEMBERS
    assert (card["prompts"], card["written"], card["pool"], card["target"]) == (3, 3, "teachers", "bon-mbr_chrf")
    assert (card["copied_whole"], card["copied_whole_share"], card["copy_rate"]) == (3, 1.0, 1.0)


def test_a_fusion_parse_failure_is_counted_and_never_trained_on(teachers, tmp_path):
    items, pool_path, outputs = teachers
    fused = {"p1": "Keep basil in a sunny window; water it when the soil is dry.", "p2": None, "p3": ANSWERS["p3"][1]}
    outputs = {**outputs, "fusion-judge": fusion_output(tmp_path / "fusion.jsonl", pool_path, fused)}
    sft = tmp_path / "fusion" / "sft.jsonl"
    card = build_sft_set(
        items, pool_path, outputs, sft, tmp_path / "fusion" / "c.json", target=SetTarget("fusion", "fusion-judge", CHAT)
    )
    records = list(read_jsonl(sft))
    assert [record["id"] for record in records] == ["p1", "p3"]
    assert records[0]["target"] == {"method": "fusion-judge", "index": None, "parse_status": "ok"}
    assert records[0]["completion"][0]["content"] == fused["p1"]
    assert records[0]["selections"]["fusion-judge"] == {"text": fused["p1"], "parse_status": "ok"}
    assert set(records[0]["selections"]) == {"bon-mbr_chrf", "single", "fusion-judge"}
    assert (card["prompts"], card["written"]) == (3, 2)
    assert card["skipped"] == {"missing": 1, "empty_target": 0}
    assert card["copied_whole"] == 1  # p3 copies alpha's second sample whole


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda record: record.pop("parse_status"), "unknown"),
        (lambda record: record.update(parse_status=None), "unknown"),
        (lambda record: record.update(fallback="first"), "fallback"),  # "ok", yet a fallback text stands in
    ],
)
def test_a_fused_record_without_a_clean_parse_is_never_a_target(teachers, tmp_path, damage, reason):
    items, pool_path, outputs = teachers
    fused = {"p1": "Keep basil in a sunny window.", "p2": "Two tips.", "p3": "Three tips."}
    path = fusion_output(tmp_path / "fusion.jsonl", pool_path, fused)
    records = list(read_jsonl(path))
    damage(records[1])
    write_jsonl(path, records)
    outputs = {**outputs, "fusion-judge": path}
    sft = tmp_path / "sft.jsonl"
    card = build_sft_set(
        items, pool_path, outputs, sft, tmp_path / "card.json", target=SetTarget("fusion", "fusion-judge", CHAT)
    )
    assert [record["id"] for record in read_jsonl(sft)] == ["p1", "p3"]
    assert card["skipped"][reason] == 1


def solo_pool(directory, texts_by_item: dict[str, list[str]]) -> tuple[str, str]:
    """Items and the merged pool of one member (model alpha, n = candidates per item)."""
    items = write_items(directory, {item_id: f"Question {item_id}" for item_id in texts_by_item})
    member = write_member(directory, 0, "alpha", texts_by_item)
    n = len(next(iter(texts_by_item.values())))
    pool = str(directory / "solo.jsonl")
    merge_pools(items, [member], [{"model": "alpha", "n": n, "temperature": 0.3}], pool, "solo")
    return items, pool


def test_copy_and_length_statistics_of_a_hand_made_set(tmp_path):
    items, pool = solo_pool(tmp_path, {"a": ["abcd", "wxyz"], "b": ["one two three", "four"], "c": ["x", "y"]})
    # a: 'abcx' shares 'abc' with 'abcd' (2*3/8 = 0.75); b copies its first candidate; c: 'xx' vs 'x' is 2*1/3.
    fused = {"a": "abcx", "b": "one two three", "c": "xx"}
    outputs = {"fusion-judge": fusion_output(tmp_path / "f.jsonl", pool, fused)}
    card = build_sft_set(
        items, pool, outputs, tmp_path / "sft.jsonl", tmp_path / "c.json", target=SetTarget("f", "fusion-judge", CHAT)
    )
    assert (card["copied_whole"], card["copied_whole_share"]) == (1, round(1 / 3, 4))
    assert card["copy_rate"] == round((0.75 + 1.0 + 2 / 3) / 3, 4)
    assert card["target_length"] == {
        "chars": {"mean": round(19 / 3, 2), "median": 4, "min": 2, "max": 13},
        "words": {"mean": round(5 / 3, 2), "median": 1, "min": 1, "max": 3},
    }
    assert card["members"] == [{"model": "alpha", "n": 2, "temperature": 0.3}]


def test_histogram_statistics_take_the_middle_pair_on_even_counts():
    assert histogram_stats(Counter({1: 2, 5: 1, 9: 1})) == {"mean": 4.0, "median": 3.0, "min": 1, "max": 9}
    assert histogram_stats(Counter({2: 1, 3: 1, 10: 1}))["median"] == 3
    assert histogram_stats(Counter({7: 4}))["median"] == 7


def test_building_a_set_keeps_memory_flat_in_the_number_of_prompts(tmp_path):
    def peak(count: int) -> int:
        directory = tmp_path / str(count)
        answers = {f"q{i}": [f"Answer {i % 7} to the question.", "Another answer."] for i in range(count)}
        items, pool = solo_pool(directory, answers)
        outputs = {"single": str(directory / "single.jsonl")}
        run_select(items, pool, outputs["single"], scorer=make_scorer("single", CHAT))
        tracemalloc.start()
        build_sft_set(
            items,
            pool,
            outputs,
            directory / "sft.jsonl",
            directory / "card.json",
            target=SetTarget("s", "single", CHAT),
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    peak(10)  # warm-up: templates compiled, modules imported
    assert peak(2000) <= 1.2 * peak(100)


def test_an_empty_target_is_skipped_and_counted(tmp_path):
    items, pool = solo_pool(tmp_path, {"a": ["   ", "fine"], "b": ["good", "fine"]})
    outputs = {"single": str(tmp_path / "single.jsonl")}
    run_select(items, pool, outputs["single"], scorer=make_scorer("single", CHAT))
    card = build_sft_set(
        items, pool, outputs, tmp_path / "sft.jsonl", tmp_path / "card.json", target=SetTarget("s", "single", CHAT)
    )
    assert [record["id"] for record in read_jsonl(tmp_path / "sft.jsonl")] == ["b"]
    assert card["skipped"] == {"empty_target": 1}
    assert (card["prompts"], card["written"]) == (2, 1)


def test_a_training_prompt_that_is_an_evaluated_test_item_is_never_trained_on(tmp_path):
    # issue 17 item 14: the same prompt, up to case, width and spacing, in the test slice the students answer
    items, pool = solo_pool(tmp_path, {"a": ["one", "two"], "b": ["three", "four"], "c": ["five", "six"]})
    test_items = tmp_path / "test_items.jsonl"
    write_jsonl(test_items, [{"id": "t1", "input": "  QUESTION   ａ "}, {"id": "t2", "input": "Something else"}])
    outputs = {"single": str(tmp_path / "single.jsonl")}
    run_select(items, pool, outputs["single"], scorer=make_scorer("single", CHAT))
    card = build_sft_set(
        items,
        pool,
        outputs,
        tmp_path / "sft.jsonl",
        tmp_path / "c.json",
        target=SetTarget("s", "single", CHAT),
        evaluated_items=[test_items],
    )
    assert [record["id"] for record in read_jsonl(tmp_path / "sft.jsonl")] == ["b", "c"]
    assert (card["test_overlap"], card["evaluated_items"], card["written"]) == (1, 2, 2)


def test_a_set_with_no_record_left_raises_and_writes_nothing(tmp_path):
    items, pool = solo_pool(tmp_path, {"a": ["one", "two"], "b": ["three", "four"]})
    outputs = {"fusion-judge": fusion_output(tmp_path / "f.jsonl", pool, {"a": None, "b": None})}
    sft, card = tmp_path / "set" / "sft.jsonl", tmp_path / "set" / "card.json"
    message = r"distill set 'fusion' \(ufb/en\): no training record left \(2 parse failures .*nothing to fine-tune on"
    with pytest.raises(PolyfuseError, match=message):
        build_sft_set(items, pool, outputs, sft, card, target=SetTarget("fusion", "fusion-judge", CHAT))
    assert not sft.exists() and not card.exists()
    assert not list(sft.parent.iterdir())  # no temporary file left behind either


def test_an_output_of_another_pool_or_method_is_refused(teachers, tmp_path):
    items, _, _ = teachers
    other_items, other_pool = solo_pool(tmp_path / "other", {i: ["x", "y"] for i in PROMPTS})
    single = str(tmp_path / "single.jsonl")
    run_select(other_items, other_pool, single, scorer=make_scorer("single", CHAT))
    _, teacher_pool, outputs = teachers

    def build(given: dict[str, str], target: str) -> dict:
        return build_sft_set(
            items, teacher_pool, given, tmp_path / "o.jsonl", tmp_path / "c.json", target=SetTarget("s", target, CHAT)
        )

    with pytest.raises(PolyfuseError, match=r"single.jsonl: record 'p1' is 'single' of 'solo', expected 'single'"):
        build({**outputs, "single": single}, "single")
    with pytest.raises(PolyfuseError, match=r"is 'bon-mbr_chrf' of 'teachers', expected 'fusion-judge'"):
        build({"fusion-judge": outputs["bon-mbr_chrf"]}, "fusion-judge")
    with pytest.raises(PolyfuseError, match=r"target method 'bon-loglik' has no output file"):
        build(outputs, "bon-loglik")


def test_merge_rejects_a_member_file_that_disagrees_with_its_member(tmp_path):
    items = write_items(tmp_path, {"a": "Q1", "b": "Q2"})
    shuffled = write_member(tmp_path, 0, "alpha", {"b": ["x"], "a": ["y"]})
    with pytest.raises(PolyfuseError, match=r"teachers/0.jsonl: expected a record for item 'a', found 'b'"):
        merge_pools(items, [shuffled], [{"model": "alpha", "n": 1, "temperature": 0.3}], tmp_path / "p.jsonl", "p")
    other = write_member(tmp_path, 1, "beta", {"a": ["x"], "b": ["y"]})
    with pytest.raises(PolyfuseError, match=r"teachers/1.jsonl: record 'a' has 1 candidates from 'beta'; pool 'p'"):
        merge_pools(items, [other], [{"model": "alpha", "n": 1, "temperature": 0.3}], tmp_path / "p.jsonl", "p")
    assert not (tmp_path / "p.jsonl").exists()


def test_pool_members_fill_defaults_and_allow_one_model_at_two_temperatures():
    spec = {"temperature": 0.3, "members": [{"model": "alpha"}, {"model": "alpha", "n": 2, "temperature": 1.0}]}
    assert pool_members("teachers", spec, MODELS) == [
        {"model": "alpha", "n": 1, "temperature": 0.3},
        {"model": "alpha", "n": 2, "temperature": 1.0},
    ]


@pytest.mark.parametrize(
    "members, message",
    [
        ([{"model": "alpha"}, {"model": "gamma"}], r"pools.teachers.members\[1\]: unknown model 'gamma'; known: alpha"),
        (
            [{"model": "beta"}, {"model": "alpha", "n": 2}, {"model": "alpha", "temperature": 0.3}],
            r"pools.teachers.members\[2\]: same model 'alpha' and temperature 0.3 as members\[1\].*raise that",
        ),
        ([], r"pools.teachers.members: a pool needs at least one member"),
    ],
)
def test_pool_members_errors_name_the_member(members, message):
    with pytest.raises(PolyfuseError, match=message) as caught:
        pool_members("teachers", {"temperature": 0.3, "members": members}, MODELS)
    assert "\n" not in str(caught.value)


def test_sft_records_keep_the_bon_scorers_score_of_the_fused_answer(teachers, tmp_path):
    # issue 17 item 14: as Cohere's released cards, the BoN scorer's score for the fused output too
    items, pool_path, outputs = teachers
    fused = {"p1": "Keep basil in a sunny window; water it when the soil is dry.", "p2": None, "p3": ANSWERS["p3"][1]}
    outputs = {**outputs, "fusion-judge": fusion_output(tmp_path / "fusion.jsonl", pool_path, fused)}
    scored = tmp_path / "target_scores.jsonl"
    run_target_scores(
        items,
        pool_path,
        outputs["fusion-judge"],
        str(scored),
        scorer=make_scorer("mbr_chrf", CHAT),
        method="bon-mbr_chrf",
    )
    sft = tmp_path / "sft.jsonl"
    scorings = {("fusion-judge", "bon-mbr_chrf"): str(scored)}

    def build():
        return build_sft_set(
            items,
            pool_path,
            outputs,
            sft,
            tmp_path / "c.json",
            target=SetTarget("f", "fusion-judge", CHAT),
            target_scores=scorings,
        )

    build()
    pools = {pool["id"]: pool for pool in read_jsonl(pool_path)}
    for record in read_jsonl(sft):
        texts = [candidate["text"].strip() for candidate in pools[record["id"]]["candidates"]]
        # MBR's consensus of a new text: its mean sentence chrF against every candidate (sacrebleu's own score)
        expected = sum(sacrebleu.sentence_chrf(fused[record["id"]], [text]).score for text in texts) / len(texts)
        fusion = record["selections"]["fusion-judge"]
        assert fusion["bon_scores"] == {"bon-mbr_chrf": pytest.approx(expected)}
        assert "bon_scores" not in record["selections"]["bon-mbr_chrf"]  # a BoN pick keeps its own `score`
    # a scores file of another method or scorer is refused, naming the file and the record
    wrong = [{**record, "scored_by": "bon-loglik"} for record in read_jsonl(scored)]
    write_jsonl(scored, wrong)
    with pytest.raises(
        PolyfuseError, match=r"target_scores.jsonl: record 'p1' is 'fusion-judge' scored by 'bon-loglik'"
    ):
        build()
