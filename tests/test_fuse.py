import pytest

from polyfuse.fuse import fusion_prompt, parse_fused, shown_order
from polyfuse.tasks import task_kind


@pytest.mark.parametrize(
    "raw, text, status, blocks",
    [
        ("Comparison: 2 is best.\nAnswer: [[Hallo Welt.]]", "Hallo Welt.", "ok", 1),
        ("Comparison: fine\nAnswer: [[ Use [[wiki links]] and a[i][j] here. ]]", "Use [[wiki links]] and a[i][j] here.", "ok", 1),
        ("Comparison: [[1]] beats [[2]].\nAnswer: [[the fused one]] and [[extra]]", "the fused one", "ok", 2),
        ("Comparison: I like [[3]].\nAnswer: plain text without brackets", "3", "ok", 1),
        ("[[first]] then [[second]]", "second", "ok", 2),
        ("Comparison: both fine.\nAnswer: Hallo Welt.", None, "missing", 0),
        ("Comparison: ok\nAnswer: [[Hallo Welt, and the model ran out of tok", None, "unclosed", 0),
        ("Answer: [[   ]]", None, "empty", 1),
        ("answer : [[lower case marker]]", "lower case marker", "ok", 1),
    ],
)
def test_parse_fused(raw, text, status, blocks):
    parsed = parse_fused(raw)
    assert (parsed.text, parsed.status, parsed.blocks) == (text, status, blocks)


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
    for expected in ("compare the candidates", "strengths and weaknesses", "native German speaker",
                     "unsafe or unethical", "Candidate 1:\nGuten Morgen.", "Candidate 2:\nMorgen.",
                     "Comparison:", "Answer: [[", "Translate the following text from English into German"):
        assert expected in text
    fewshot, fewshot_hash = fusion_prompt("paper", "fewshot", task_kind("translation"), item, ["a", "b"])
    assert isinstance(fewshot, str) and fewshot.rstrip().endswith("Comparison:")
    assert fewshot_hash != template_hash


def test_fusion_template_can_be_a_user_file(tmp_path):
    custom = tmp_path / "mine.txt"
    custom.write_text("{{ instruction }} || {{ candidates | join(' / ') }} || {{ language }}")
    prompt, _ = fusion_prompt(str(custom), "fewshot", task_kind("math"), {"id": "1", "lang": "fr", "input": "1+1?"}, ["2", "3"])
    assert prompt.endswith("|| 2 / 3 || French")
