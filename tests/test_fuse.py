import re

import pytest

from polyfuse.cache import OutputCache
from polyfuse.engines import Engine, Generation
from polyfuse.fuse import (
    FusionJob,
    exemplar_texts,
    fuse_pools,
    fusion_exemplars,
    fusion_prompt,
    leaks_exemplar,
    parse_fused,
    shown_order,
)
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.tasks import task_kind


@pytest.mark.parametrize(
    "raw, text, status",
    [
        ("Comparison: 2 is best.\nAnswer: [[Hallo Welt.]]", "Hallo Welt.", "ok"),
        # brackets inside the answer: single, double, nested code
        ("Comparison: fine\nAnswer: [[Use m[idx[0]] here]]", "Use m[idx[0]] here", "ok"),
        (
            "Comparison: fine\nAnswer: [[ Use [[wiki links]] and a[i][j] here. ]]",
            "Use [[wiki links]] and a[i][j] here.",
            "ok",
        ),
        (
            "Answer: [[```python\nx = grid[rows[0]][cols[1]]\nprint([[1, 2], [3, 4]])\n```]]",
            "```python\nx = grid[rows[0]][cols[1]]\nprint([[1, 2], [3, 4]])\n```",
            "ok",
        ),
        ("Answer: [[a[0]]]", "a[0]", "ok"),
        # the comparison quotes [[...]] or mentions Answer: mid-line; only the line-start marker counts
        ("Comparison: [[1]] beats [[2]]; its answer: [[x]] is bad.\nAnswer: [[the fused one]]", "the fused one", "ok"),
        ("Comparison: candidate 1 ends with\nAnswer: [[42]] which is wrong.\nAnswer: [[41]]", "41", "ok"),
        ("Comparison: I like [[3]].\nAnswer: plain text without brackets", None, "missing"),
        ("Comparison: the answer: [[3]] is best.\nAnswer: 3", None, "missing"),
        ("[[first]] then [[second]]", None, "missing"),
        # a math answer that itself ends with a line-start 'Answer:' line
        ("Comparison: both agree.\nAnswer: [[3 + 4 = 7 apples.\nAnswer: 7]]", "3 + 4 = 7 apples.\nAnswer: 7", "ok"),
        ("Comparison: both fine.\nAnswer: Hallo Welt.", None, "missing"),
        ("Comparison: ok\nAnswer: [[Hallo Welt, and the model ran out of tok", None, "unclosed"),
        ("Comparison: ok\nAnswer: [[Hallo]\n", None, "unclosed"),
        ("Answer: [[   ]]", None, "empty"),
        ("Answer: [[]]", None, "empty"),
        # other scripts, case and spacing, markdown, full-width colon, Windows newlines
        ("Comparison: 2 est mieux.\nAnswer: [[図書館は毎朝九時に開きます。]]", "図書館は毎朝九時に開きます。", "ok"),
        ("Comparison: ok\nAnswer: [[مرحبا بالعالم]]", "مرحبا بالعالم", "ok"),
        ("answer : [[lower case marker]]", "lower case marker", "ok"),
        ("ANSWER:[[no space]]", "no space", "ok"),
        ("Comparison: ok\n  **Answer:** [[bold marker]]", "bold marker", "ok"),
        ("Comparison: ok\nAnswer：[[全角]]", "全角", "ok"),
        ("Comparison: ok\r\nAnswer: [[line one\r\nline two]]\r\n", "line one\nline two", "ok"),
        ("Comparison: ok\nAnswer:\n[[on the next line]]\nThanks!", "on the next line", "ok"),
    ],
)
def test_parse_fused(raw, text, status):
    parsed = parse_fused(raw)
    assert (parsed.text, parsed.status) == (text, status)


def test_shown_order_is_a_seeded_permutation_per_item():
    order = shown_order(1234, "item-1", 5)
    assert sorted(order) == [0, 1, 2, 3, 4]
    assert order == shown_order(1234, "item-1", 5)
    others = {tuple(shown_order(1234, f"item-{i}", 5)) for i in range(20)}
    assert len(others) > 5  # orders vary across items
    assert shown_order(99, "item-1", 5) != order or shown_order(98, "item-1", 5) != order


def test_fusion_prompt_follows_the_paper_structure():
    item = {"id": "x", "lang": "de", "input": "Good morning."}
    prompt, template_hash = fusion_prompt("paper", "chat", task_kind("translation"), item, ["Guten Morgen.", "Morgen."])
    text = prompt[0]["content"]
    assert prompt[0]["role"] == "user"
    for expected in (
        "compare the candidates",
        "strengths and weaknesses",
        "native German speaker",
        "unsafe or unethical",
        "Candidate 1:\nGuten Morgen.",
        "Candidate 2:\nMorgen.",
        "Comparison:",
        "Answer: [[",
        "Translate the following text from English into German",
    ):
        assert expected in text
    fewshot, fewshot_hash = fusion_prompt("paper", "fewshot", task_kind("translation"), item, ["a", "b"])
    assert isinstance(fewshot, str) and fewshot.rstrip().endswith("Comparison:")
    assert fewshot_hash != template_hash


def test_fusion_template_can_be_a_user_file(tmp_path):
    custom = tmp_path / "mine.txt"
    custom.write_text("{{ instruction }} || {{ candidates | join(' / ') }} || {{ language }}")
    prompt, _ = fusion_prompt(
        str(custom), "fewshot", task_kind("math"), {"id": "1", "lang": "fr", "input": "1+1?"}, ["2", "3"]
    )
    assert prompt.endswith("|| 2 / 3 || French")


DE_SHOTS = [
    {
        "id": "s1",
        "task": "wmt",
        "lang": "de",
        "input": "The library opens at nine o'clock every morning.",
        "reference": "Die Bibliothek öffnet jeden Morgen um neun Uhr.",
    },
    {
        "id": "s2",
        "task": "wmt",
        "lang": "de",
        "input": "My brother bought a new bicycle last week.",
        "reference": "Mein Bruder hat letzte Woche ein neues Fahrrad gekauft.",
    },
]


def test_fewshot_fusor_exemplars_come_from_the_tasks_own_shots():
    item = {"id": "x", "lang": "de", "input": "The museum is closed on Mondays."}
    exemplars = fusion_exemplars(task_kind("translation"), DE_SHOTS, seed=7)
    shown = ["Das Museum.", "Montags zu."]
    prompt, _ = fusion_prompt("paper", "fewshot", task_kind("translation"), item, shown, exemplars)
    assert "musée" not in prompt and "French" not in prompt  # the old fixed French exemplar is gone
    assert prompt.count("into German") == 3  # two worked examples and the item, all en->de
    first = exemplars[0]
    shortened = "Die Bibliothek öffnet jeden Morgen"  # five of its eight words
    assert set(first.candidates) == {DE_SHOTS[0]["reference"], shortened, DE_SHOTS[1]["reference"]}
    assert first.answer == DE_SHOTS[0]["reference"] and "[[" + first.answer + "]]" in prompt
    # The comparison describes each shown candidate truthfully.
    position = first.candidates.index(first.answer) + 1
    assert f"Candidate {position} is complete" in first.comparison
    assert f"Candidate {first.candidates.index(shortened) + 1} breaks off" in first.comparison
    assert fusion_exemplars(task_kind("translation"), DE_SHOTS, seed=7) == exemplars  # deterministic
    assert prompt.rstrip().endswith("Candidate 2:\nMontags zu.\n\nComparison:")


def test_exemplars_handle_unspaced_scripts_numbers_answer_lists_and_missing_references():
    ja = fusion_exemplars(
        task_kind("translation"),
        [{"id": "j", "lang": "ja", "input": "The library opens at nine.", "reference": "図書館は九時に開きます。"}],
        seed=1,
    )
    assert set(ja[0].candidates) == {"図書館は九時に開きます。", "図書館は九時に開"}
    maths = [
        {"id": "m1", "lang": "de", "input": "2+2?", "reference": "4"},
        {"id": "m2", "lang": "de", "input": "3+3?", "reference": "6"},
    ]
    assert [set(e.candidates) for e in fusion_exemplars(task_kind("math"), maths, seed=1)] == [{"4", "6"}, {"6", "4"}]
    facts = [{"id": "f1", "lang": "ja", "input": "Capital?", "reference": ["東京都", "東京"]}]
    assert fusion_exemplars(task_kind("factqa"), facts, seed=1)[0].answer == "東京都"
    chats = [{"id": "c", "lang": "de", "input": "Hi", "reference": None}]
    assert fusion_exemplars(task_kind("chat"), chats, seed=1) == []
    assert fusion_exemplars(task_kind("math"), maths[:1], seed=1) == []  # one candidate cannot show a fusion


def test_exemplar_leak_flags_exemplar_text_of_reasonable_length_only():
    texts = exemplar_texts(fusion_exemplars(task_kind("translation"), DE_SHOTS, seed=7))
    assert leaks_exemplar("Das Museum ist montags geschlossen. Die  bibliothek öffnet jeden Morgen um neun Uhr.", texts)
    assert leaks_exemplar("Mein Bruder hat letzte Woche", texts) is False
    # a shortened candidate is a prefix: an honest answer opening the same way is not a leak
    assert not leaks_exemplar("Die Bibliothek öffnet jeden Morgen", texts)
    # a copy must sit on word boundaries, and text the item's own reference holds is not a leak
    assert not leaks_exemplar("xDie Bibliothek öffnet jeden Morgen um neun Uhr.", texts)
    own = "Heute: Die Bibliothek öffnet jeden Morgen um neun Uhr."
    assert not leaks_exemplar("Die Bibliothek öffnet jeden Morgen um neun Uhr.", texts, own)
    facts = [
        {"id": "f1", "lang": "en", "input": "Which country is Ohio in?", "reference": ["United States"]},
        {"id": "f2", "lang": "en", "input": "Which country is Kent in?", "reference": ["United Kingdom"]},
    ]
    names = exemplar_texts(fusion_exemplars(task_kind("factqa"), facts, 1))
    assert not leaks_exemplar("United States", names)  # short answers recur across questions
    assert leaks_exemplar("The library opens at nine o'clock every morning.", texts)  # a copied exemplar source
    maths = [
        {"id": "a", "lang": "en", "input": "2+2?", "reference": "4"},
        {"id": "b", "lang": "en", "input": "3+3?", "reference": "6"},
    ]
    numbers = exemplar_texts(fusion_exemplars(task_kind("math"), maths, 1))
    assert numbers == set() and not leaks_exemplar("The answer is 4.", numbers)


class RecordingFusor(Engine):
    """A fusor test double that records each prompt and answers with the next scripted output."""

    engine_name = "recording"

    def __init__(self, outputs):
        super().__init__("recorder", {})
        self.outputs, self.prompts = list(outputs), []

    def identity(self):
        return {"engine": "recording", "outputs": self.outputs}

    def generate(self, requests):
        for request in requests:
            self.prompts.append(request.prompt if isinstance(request.prompt, str) else request.prompt[0]["content"])
            self.calls += 1
            yield Generation([self.outputs[len(self.prompts) - 1]], 10, [5], 0.01, ["stop"])

    def loglik(self, prompt, continuations):
        raise NotImplementedError


def write_fusion_inputs(tmp_path, count=3, k=4):
    items = [
        {"id": f"i{n}", "task": "wmt", "lang": "de", "input": f"Sentence {n}.", "reference": "x"} for n in range(count)
    ]
    pools = [
        {"id": f"i{n}", "sampler": "gemma", "candidates": [{"text": f"cand-{n}-{c} "} for c in range(k)]}
        for n in range(count)
    ]
    write_jsonl(tmp_path / "items.jsonl", items)
    write_jsonl(tmp_path / "pools.jsonl", pools)
    write_jsonl(tmp_path / "shots.jsonl", DE_SHOTS)
    return pools


FUSION_SAMPLING = {"temperature": 0.3, "top_p": 0.95, "max_tokens": 64}


def inputs(tmp_path):
    return [str(tmp_path / name) for name in ("items.jsonl", "shots.jsonl", "pools.jsonl")]


def fuse(tmp_path, engine, style="chat", fallback="first"):
    stats = {}
    with OutputCache(tmp_path / f"{fallback}-{style}") as cache:
        records = list(
            fuse_pools(
                *inputs(tmp_path),
                job=FusionJob(engine, style, cache, task_kind("translation"), "paper", FUSION_SAMPLING, 1234, fallback),
                stats=stats,
            )
        )
    return records, stats


def test_recorded_order_is_the_order_the_fusor_was_shown(tmp_path):
    pools = write_fusion_inputs(tmp_path, count=6)
    engine = RecordingFusor(["Answer: [[ok]]"] * 6)
    records, _ = fuse(tmp_path, engine)
    assert any(record["order"] != sorted(record["order"]) for record in records)  # some prompts really are shuffled
    for record, pool, prompt in zip(records, pools, engine.prompts, strict=True):
        shown = dict(re.findall(r"Candidate (\d+):\n(.*)\n", prompt))
        texts = [candidate["text"].strip() for candidate in pool["candidates"]]
        assert [shown[str(position + 1)] for position in range(len(texts))] == [texts[i] for i in record["order"]]


@pytest.mark.parametrize(
    "fallback, expected", [("first", "cand-0-0"), ("raw", "Comparison: no brackets"), ("empty", "")]
)
def test_each_fallback_replaces_an_unparsed_answer(tmp_path, fallback, expected):
    write_fusion_inputs(tmp_path, count=2)
    engine = RecordingFusor(["Comparison: no brackets\n", "Answer: [[fused]]"])
    records, stats = fuse(tmp_path, engine, fallback=fallback)
    assert [r["output"] for r in records] == [expected, "fused"]
    assert [r["parse_status"] for r in records] == ["missing", "ok"]
    assert [r["fallback"] for r in records] == [fallback, None]
    assert records[0]["raw"] == "Comparison: no brackets\n"
    assert stats["missing"] == 1 and stats["ok"] == 1


def test_first_fallback_is_the_pools_first_candidate_not_the_first_shown(tmp_path):
    write_fusion_inputs(tmp_path, count=6)
    records, _ = fuse(tmp_path, RecordingFusor(["Answer: [[unclosed"] * 6))
    assert any(record["order"][0] != 0 for record in records)
    assert [record["output"] for record in records] == [f"cand-{n}-0" for n in range(6)]


def test_first_fallback_of_an_injected_pool_is_its_first_original_candidate(tmp_path):
    pools = write_fusion_inputs(tmp_path, count=3)
    for pool, injected in zip(pools, ([0], [0, 1, 2], [1]), strict=True):  # issue 17 item 1
        for index in injected:
            pool["candidates"][index] = {"text": f"garbage words {index}", "injected": "garbage"}
    write_jsonl(tmp_path / "pools.jsonl", pools)
    records, _ = fuse(tmp_path, RecordingFusor(["Answer: [[unclosed"] * 3))
    assert [record["output"] for record in records] == ["cand-0-1", "cand-1-3", "cand-2-0"]
    assert [record["fallback"] for record in records] == ["first"] * 3


def test_fewshot_fusion_shows_shot_exemplars_and_flags_leaks(tmp_path):
    write_fusion_inputs(tmp_path, count=2)
    copied = "Answer: [[Mein Bruder hat letzte Woche ein neues Fahrrad gekauft.]]"
    engine = RecordingFusor([copied, " fine.\nAnswer: [[Das ist neu.]]"])
    records, stats = fuse(tmp_path, engine, style="fewshot")
    assert [r["exemplar_leak"] for r in records] == [True, False]
    assert stats["exemplar_leaks"] == 1 and stats["exemplars"] == 2
    fallback, _ = fuse(tmp_path, RecordingFusor([copied.replace("]]", ""), "no answer"]), style="fewshot")
    assert [r["exemplar_leak"] for r in fallback] == [None, None]  # a fallback's text is not the fusor's answer
    assert all("Die Bibliothek öffnet jeden Morgen um neun Uhr." in prompt for prompt in engine.prompts)
    chat, chat_stats = fuse(tmp_path, RecordingFusor([copied, copied]), style="chat")
    assert chat_stats["exemplars"] == 0 and [r["exemplar_leak"] for r in chat] == [False, False]  # chat sees none


def test_run_fuse_reads_the_shots_file(tmp_path, caplog):
    from polyfuse.fuse import run_fuse

    write_fusion_inputs(tmp_path, count=2)
    with OutputCache(tmp_path / "run") as cache, caplog.at_level("INFO"):
        fusor = RecordingFusor(["Answer: [[a]]", "x"])
        job = FusionJob(fusor, "fewshot", cache, task_kind("translation"), "paper", FUSION_SAMPLING, 1, "first")
        run_fuse(*inputs(tmp_path), str(tmp_path / "out.jsonl"), job=job)
    assert [r["parse_status"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["ok", "missing"]
    assert "parse_failures=1" in caplog.text and "exemplars=2 exemplar_leaks=0" in caplog.text


def test_a_position_bias_pool_is_shown_in_its_own_order(tmp_path):
    pools = write_fusion_inputs(tmp_path, count=2)
    fixed = [[3, 2, 1, 0], [1, 3, 0, 2]]
    write_jsonl(
        tmp_path / "pools.jsonl", [{**pool, "shown_order": order} for pool, order in zip(pools, fixed, strict=True)]
    )
    engine = RecordingFusor(["Answer: [[ok]]"] * 2)
    records, _ = fuse(tmp_path, engine)
    for record, pool, prompt, order in zip(records, pools, engine.prompts, fixed, strict=True):
        shown = dict(re.findall(r"Candidate (\d+):\n(.*)\n", prompt))
        texts = [candidate["text"].strip() for candidate in pool["candidates"]]
        assert record["order"] == order
        assert [shown[str(position + 1)] for position in range(len(texts))] == [texts[i] for i in order]
