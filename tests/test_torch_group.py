"""COMET and reward-model BoN for real, in the torch environment, through the rules' command line."""

import json
from pathlib import Path

import pytest

from polyfuse.io import read_jsonl, write_jsonl
from tests.helpers.built import built_once
from tests.helpers.torch_env import REPO, run_torch

ITEMS = [
    {
        "id": "s1",
        "task": "wmt",
        "lang": "de",
        "input": "The museum is closed on Mondays.",
        "reference": "Das Museum ist montags geschlossen.",
    },
    {"id": "s2", "task": "wmt", "lang": "de", "input": "It will rain tomorrow.", "reference": "Morgen wird es regnen."},
]
CANDIDATES = {
    "s1": ["Das Museum ist montags zu.", "Museum Montag.", "Das Museum ist montags geschlossen."],
    "s2": ["Morgen regnet es.", "Es wird morgen regnen.", "Regen."],
}


@pytest.fixture(scope="module")
def checkpoint(comet_checkpoint):
    return comet_checkpoint


@pytest.fixture
def cell(tmp_path):
    write_jsonl(tmp_path / "items.jsonl", ITEMS)
    for index, method in enumerate(("single", "bon-x")):
        write_jsonl(
            tmp_path / f"{method}.jsonl",
            [{"id": i["id"], "method": method, "sampler": "m", "output": CANDIDATES[i["id"]][index]} for i in ITEMS],
        )
    write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {
                "id": i["id"],
                "sampler": "m",
                "prompt_hash": "h",
                "candidates": [{"text": t} for t in CANDIDATES[i["id"]]],
            }
            for i in ITEMS
        ],
    )
    return tmp_path


def comet(cell, model):
    settings = json.dumps({"model": str(model), "batch_size": 4, "gpus": 0})
    run_torch(
        "-m",
        "polyfuse.cli",
        "comet",
        "--items",
        str(cell / "items.jsonl"),
        "--inputs",
        str(cell / "single.jsonl"),
        str(cell / "bon-x.jsonl"),
        "--out",
        str(cell / "comet.jsonl"),
        "--summary",
        str(cell / "comet.json"),
        "--settings",
        settings,
        "--log",
        str(cell / "comet.log"),
    )
    return list(read_jsonl(cell / "comet.jsonl")), json.loads((cell / "comet.json").read_text())


def reference_scores(checkpoint, triples):
    code = (
        "import json, sys; from polyfuse.comet_score import Comet; "
        f"print(json.dumps(Comet({str(checkpoint)!r}).segment_scores(json.loads(sys.argv[1]))))"
    )
    return json.loads(run_torch("-c", code, json.dumps(triples)).stdout.strip().splitlines()[-1])


def test_comet_segment_scores_through_load_from_checkpoint(cell, checkpoint):
    records, summary = comet(cell, checkpoint)
    assert [(r["method"], r["id"]) for r in records] == [
        ("single", "s1"),
        ("single", "s2"),
        ("bon-x", "s1"),
        ("bon-x", "s2"),
    ]
    values = [r["values"]["comet"] for r in records]
    assert all(isinstance(v, float) and -1000 < v < 1000 for v in values)
    assert summary["comet_status"] == "ok"
    assert summary["system"]["single"] == pytest.approx((values[0] + values[1]) / 2)
    assert summary["system"]["bon-x"] == pytest.approx((values[2] + values[3]) / 2)
    triples = [{"src": ITEMS[0]["input"], "mt": CANDIDATES["s1"][0], "ref": ITEMS[0]["reference"]}]
    assert reference_scores(checkpoint, triples)[0] == pytest.approx(values[0], abs=1e-4)  # segment-level, same model


def test_comet_without_a_model_is_unavailable_not_a_number(cell):
    records, summary = comet(cell, "Unbabel/wmt22-comet-da")
    assert {r["values"]["comet"] for r in records} == {None}
    assert summary["comet_status"].startswith("unavailable: Unbabel/wmt22-comet-da") and summary["system"] == {}
    records, summary = comet(cell, cell / "no-such-checkpoint")
    assert summary["comet_status"].startswith("unavailable: no COMET checkpoint")


def test_comet_oracle_picks_the_best_candidate_by_comet(cell, checkpoint):
    settings = json.dumps({"model": str(checkpoint), "batch_size": 4, "gpus": 0})
    run_torch(
        "-m",
        "polyfuse.cli",
        "comet-oracle",
        "--items",
        str(cell / "items.jsonl"),
        "--inputs",
        str(cell / "pool.jsonl"),
        "--out",
        str(cell / "oracle.jsonl"),
        "--settings",
        settings,
    )
    for record, item in zip(read_jsonl(cell / "oracle.jsonl"), ITEMS, strict=True):
        expected = reference_scores(
            checkpoint, [{"src": item["input"], "mt": t, "ref": item["reference"]} for t in CANDIDATES[item["id"]]]
        )
        assert record["scores"] == pytest.approx(expected, abs=1e-4)
        assert record["chosen"] == max(range(3), key=lambda i: (expected[i], -i))
        assert record["output"] == CANDIDATES[item["id"]][record["chosen"]] and record["method"] == "oracle-comet"


def reward_model(factory: pytest.TempPathFactory, *, chat: bool) -> Path:
    """A tiny local reward model (tests/helpers/build_reward_model.py), with or without a chat template: built once."""
    flags = ["--chat-template"] if chat else []
    build = lambda out: run_torch(str(REPO / "tests/helpers/build_reward_model.py"), str(out), *flags)  # noqa: E731
    return built_once(factory, "rm-chat" if chat else "rm", build)


def test_reward_model_scores_feed_selection(cell, tmp_path_factory):
    model_dir = reward_model(tmp_path_factory, chat=False)
    settings = {"model": str(model_dir), "device": "cpu", "batch_size": 2, "max_length": 64}
    run_torch(
        "-m",
        "polyfuse.cli",
        "select-rm",
        "--items",
        str(cell / "items.jsonl"),
        "--inputs",
        str(cell / "pool.jsonl"),
        "--out",
        str(cell / "rm.jsonl"),
        "--kind",
        "translation",
        "--settings",
        json.dumps(settings),
    )
    code = (  # each item's (prompt, candidates) scored in one batch, and the tokens the model read
        "import json, sys; from polyfuse.reward import RewardModel; "
        f"rm = RewardModel({str(model_dir)!r}, 'cpu', batch_size=3, max_length=64); "
        "print(json.dumps([{'scores': rm.score(prompt, texts).scores, "
        "'tokens': sum(len(rm.tokenizer(prompt, text)['input_ids']) for text in texts)} "
        "for prompt, texts in json.loads(sys.argv[1])]))"
    )
    from polyfuse.tasks import instruction_text, task_kind

    prompts = [instruction_text(task_kind("translation"), item) for item in ITEMS]
    asked = json.dumps([[prompt, CANDIDATES[item["id"]]] for prompt, item in zip(prompts, ITEMS, strict=True)])
    probes = json.loads(run_torch("-c", code, asked).stdout.strip().splitlines()[-1])
    targets = {}
    for record, item, probe in zip(read_jsonl(cell / "rm.jsonl"), ITEMS, probes, strict=True):
        expected = probe["scores"]
        # what the model read, counted as it ran: two batches of at most 2 pairs, each pair as the tokenizer encodes it
        assert record["cost"]["calls"] == 2 and record["cost"]["tokens_in"] == probe["tokens"]
        assert record["cost"]["tokens_out"] == 0 and record["cost"]["seconds"] > 0
        assert record["scores"] == pytest.approx(
            expected, abs=1e-4
        )  # batch size 2 vs 3: batching does not change scores
        assert record["chosen"] == max(range(3), key=lambda i: (expected[i], -i))
        assert record["method"] == "bon-reward_model"
        assert record["truncated"] == [False, False, False]
        targets[item["id"]] = expected[1]
    # the reward model's score of another method's answer (here bon-x's, candidate 1), as the SFT records keep it
    run_torch(
        "-m",
        "polyfuse.cli",
        "target-scores-rm",
        "--items",
        str(cell / "items.jsonl"),
        "--inputs",
        str(cell / "pool.jsonl"),
        str(cell / "bon-x.jsonl"),
        "--out",
        str(cell / "targets.jsonl"),
        "--kind",
        "translation",
        "--settings",
        json.dumps(settings),
    )
    scored = {record["id"]: record for record in read_jsonl(cell / "targets.jsonl")}
    assert {i: record["score"] for i, record in scored.items()} == pytest.approx(targets, abs=1e-4)
    assert all(r["scored_by"] == "bon-reward_model" and r["method"] == "bon-x" for r in scored.values())
    bad = run_torch(
        "-m",
        "polyfuse.cli",
        "select-rm",
        "--items",
        str(cell / "items.jsonl"),
        "--inputs",
        str(cell / "pool.jsonl"),
        "--out",
        str(cell / "bad.jsonl"),
        "--kind",
        "translation",
        "--settings",
        json.dumps({**settings, "model": str(cell / "missing")}),
        check=False,
    )
    assert bad.returncode == 1 and "reward model" in bad.stderr and not (cell / "bad.jsonl").exists()


TRUNCATION_PROBE = """
import json, sys
from polyfuse.reward import RewardModel
rm = RewardModel(sys.argv[1], "cpu", batch_size=4, max_length=64)
prompt = "Translate this long briefing into German. " * 40 + "The museum is closed on Mondays."
responses = ["Das Museum ist montags geschlossen.", "Das Museum ist montags offen.", "Ja."]
rewards = rm.score(prompt, responses)
encoded, _ = rm._encode_pair(prompt, responses[0])
print(json.dumps({"scores": rewards.scores, "truncated": rewards.truncated,
                  "short": rm.score("Hi", ["Hallo"]).truncated, "length": len(encoded["input_ids"]),
                  "text": rm.tokenizer.decode(encoded["input_ids"])}))
"""


@pytest.mark.parametrize("chat", [False, True], ids=["text-pair", "chat-template"])
def test_reward_model_truncates_the_prompt_so_the_whole_response_is_scored(tmp_path_factory, chat):
    model_dir = reward_model(tmp_path_factory, chat=chat)
    probe = json.loads(run_torch("-c", TRUNCATION_PROBE, str(model_dir)).stdout.strip().splitlines()[-1])
    assert probe["truncated"] == [True, True, True] and probe["short"] == [False]
    assert probe["length"] == 64
    # The instruction lost its start; the response, the instruction's end and the closing tokens survived.
    assert "das museum ist montags geschlossen." in probe["text"]
    assert "the museum is closed on mondays." in probe["text"]
    assert probe["text"].endswith("[SEP]" if not chat else "geschlossen.")
    assert probe["scores"][0] != probe["scores"][1]  # the answers differ only at their end, which the model read
