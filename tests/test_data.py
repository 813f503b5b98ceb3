import json
import re

import pytest

from polyfuse import data
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, write_jsonl
from tests.conftest import REPO


def test_wmt24pp_real_slice_loads_with_reference_field(shared):
    items = list(data.load_items("wmt", "ja", {"format": "wmt24pp", "path": str(shared / "wmt24pp/en-ja_JP.jsonl")}, 5))
    assert len(items) == 5
    first = items[0]
    assert first["task"] == "wmt" and first["lang"] == "ja"
    assert first["input"].startswith("Siso's depictions")
    assert first["reference"] == "大地と水をテーマにしたシソの作品展が新ギャラリーで開催"
    assert first["origin"]["line"] == 1
    assert len({item["id"] for item in items}) == 5


def test_wmt24pp_accepts_the_hub_field_name_target(tmp_path):
    path = tmp_path / "en-de_DE.jsonl"
    path.write_text(json.dumps({"lp": "en-de_DE", "source": "Hello.", "target": "Hallo."}) + "\n")
    (item,) = data.load_items("wmt", "de", {"format": "wmt24pp", "path": str(path)})
    assert item["reference"] == "Hallo."


def test_wmt24pp_rejects_a_file_for_another_language(shared):
    with pytest.raises(PolyfuseError, match=r"en-de_DE.jsonl:1: language pair 'en-de_DE' does not translate into 'fr'"):
        list(data.load_items("wmt", "fr", {"format": "wmt24pp", "path": str(shared / "wmt24pp/en-de_DE.jsonl")}))


@pytest.mark.parametrize("lang", ["en", "de", "ja", "sw", "zh"])
def test_mgsm_real_slices_have_numeric_answers(shared, lang):
    path = shared / "mgsm" / f"mgsm_{lang}.tsv"
    if not path.exists():
        pytest.skip(f"no MGSM slice for {lang}")
    items = list(data.load_items("mgsm", lang, {"format": "mgsm", "path": str(path)}))
    assert len(items) == 250
    assert items[0]["reference"] == "18"  # Janet's ducks, in every language
    assert all(float(item["reference"]) == int(float(item["reference"])) for item in items)


def test_arena_formats_m_arenahard_and_arena_hard_auto(shared, tmp_path):
    de = list(
        data.load_items(
            "arena", "de", {"format": "arena", "path": str(shared / "m_arenahard/m_arenahard_v1_de.jsonl")}, 3
        )
    )
    assert de[0]["id"] == "328c149ed45a41c0b9d6f14659e63599"
    assert de[0]["input"].startswith("Verwenden Sie die ABC-Notation")
    assert de[0]["reference"] is None
    turns = tmp_path / "question.jsonl"
    turns.write_text(json.dumps({"question_id": 7, "turns": [{"content": "Write a haiku."}]}) + "\n")
    (item,) = data.load_items("arena", "en", {"format": "arena", "path": str(turns)})
    assert item["id"] == "7" and item["input"] == "Write a haiku."


@pytest.mark.parametrize(
    "fmt, text, message",
    [
        (
            "wmt24pp",
            '{"lp": "en-de_DE", "source": "a", "target": "b"}\n{"lp": "en-de_DE", "source": "x"}\n',
            r"bad.txt:2: missing field 'target' or 'reference'",
        ),
        ("wmt24pp", '{"lp": "en-de_DE", "source": "a", "target": "b"}\n{not json\n', r"bad.txt:2: not valid JSON"),
        ("mgsm", "What is 2+2?\t4\nno answer here\n", r"bad.txt:2: expected 'question<TAB>answer', got 1 field"),
        ("mgsm", "What is 2+2?\tfour\n", r"bad.txt:1: answer 'four' is not a number"),
        ("mgsm", "What is 0/0?\tnan\n", r"bad.txt:1: answer 'nan' is not a number"),  # float() would take it
        ("mgsm", "How many?\t1_000\n", r"bad.txt:1: answer '1_000' is not a number"),
        ("wmt24pp", '{"id": 1, "source": "a", "target": ' + "9" * 5000 + "}\n", r"bad.txt:1: not valid JSON"),
        ("arena", '{"prompt": "hi"}\n', r"bad.txt:1: missing field 'question_id' or 'uid' or 'id'"),
        ("arena", '{"id": 1, "turns": []}\n', r"bad.txt:1: missing field 'prompt' or 'turns\[0\].content'"),
        (
            "ultrafeedback",
            '{"prompt": "hi"}\n{"id": 2, "messages": [{"role": "assistant", "content": "hello"}]}\n',
            r"bad.txt:2: missing field 'prompt' or a user turn in 'messages' or 'chosen'",
        ),
        ("gsm8k", '{"question": "1+1?", "answer": "2"}\n{"answer": "3"}\n', r"bad.txt:2: missing field 'question'"),
        ("gsm8k", '{"question": "1+1?"}\n', r"bad.txt:1: missing field 'answer'"),
        ("gsm8k", '{"question": "1+1?", "answer": "So #### two"}\n', r"bad.txt:1: answer 'So #### two' does not end"),
        ("gsm8k", '{"question": "1+1?", "answer": "So #### inf"}\n', r"bad.txt:1: answer 'So #### inf' does not end"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, fmt, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolyfuseError, match=message) as caught:
        list(data.load_items("t", "de", {"format": fmt, "path": str(path)}))
    assert "\n" not in str(caught.value)


WMT_LINE = b'{"lp": "en-de_DE", "source": "a", "target": "b"}\n'
ARENA_LINE = b'{"question_id": "q1", "prompt": "hi"}\n'


@pytest.mark.parametrize(
    "fmt, content, line, message",
    [
        ("wmt24pp", WMT_LINE + b'{"lp": "en-de_DE", "source": "\xff", "target": "c"}\n', 2, "not valid UTF-8"),
        ("mgsm", b"What is 2+2?\t4\nWhat is 3\xe9+3?\t6\n", 2, "not valid UTF-8"),
        ("wmt24pp", WMT_LINE + b"{not json\n", 2, r"not valid JSON \(Expecting property name enclosed in .*\)"),
        ("wmt24pp", WMT_LINE + b'["a", "b"]\n', 2, "expected a JSON object, got list"),
        ("arena", ARENA_LINE + b'{"question_id": "q1", "prompt": "again"}\n', 2, "duplicate item id 'q1'"),
        ("arena", ARENA_LINE + b'{"question_id": " ", "prompt": "again"}\n', 2, "empty item id"),
        ("geofactx", b'{"id": "", "question": "Capital?", "answer_list": ["Paris"]}\n', 1, "empty item id"),
        ("wmt24pp", WMT_LINE + b'{"lp": "en-de_DE", "source": "x"}\n', 2, "missing field 'target' or 'reference'"),
    ],
    ids=["utf8-jsonl", "utf8-tsv", "not-json", "not-an-object", "duplicate-id", "blank-id", "empty-id", "no-reference"],
)
def test_a_bad_dataset_line_is_one_line_naming_it_and_no_items_or_shots_are_written(
    tmp_path, fmt, content, line, message
):
    path = tmp_path / "bad.data"
    path.write_bytes(content)
    dataset = {"format": fmt, "path": str(path)}
    with pytest.raises(PolyfuseError, match=f"^{re.escape(str(path))}:{line}: {message}$"):
        data.write_items(tmp_path / "items.jsonl", tmp_path / "shots.jsonl", "t", "de", dataset, 0, None, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.data"]  # no items, no shots, no temporary file


def test_write_items_splits_few_shot_exemplars_and_leaves_nothing_on_error(tmp_path, shared):
    dataset = {"format": "mgsm", "path": str(shared / "mgsm/mgsm_de.tsv")}
    count = data.write_items(
        tmp_path / "items.jsonl", tmp_path / "shots.jsonl", "mgsm", "de", dataset, shots=2, max_items=3, seed=1
    )
    shots = list(read_jsonl(tmp_path / "shots.jsonl"))
    items = list(read_jsonl(tmp_path / "items.jsonl"))
    assert count == 3 and len(shots) == 2 and len(items) == 3
    assert [shot["origin"]["line"] for shot in shots] == [1, 2]
    lines = [item["origin"]["line"] for item in items]
    assert lines == sorted(lines) and min(lines) >= 3

    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\t1\nq2\t2\nq3\tthree\n")
    with pytest.raises(PolyfuseError, match="bad.tsv:3"):
        data.write_items(
            tmp_path / "out.jsonl",
            tmp_path / "outshots.jsonl",
            "mgsm",
            "de",
            {"format": "mgsm", "path": str(bad)},
            1,
            None,
            seed=1,
        )
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "outshots.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_hub_dataset_downloads_then_uses_the_local_loader(monkeypatch, tmp_path, shared):
    calls = []

    def fake_download(repo_id, filename, repo_type, revision):
        calls.append((repo_id, filename, repo_type))
        return str(shared / "wmt24pp" / filename)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    hub = {"repo": "google/wmt24pp", "filename": "en-{locale}.jsonl", "locales": {"de": "de_DE"}}
    items = list(data.load_items("wmt", "de", {"format": "wmt24pp", "hub": hub}, 2))
    assert calls == [("google/wmt24pp", "en-de_DE.jsonl", "dataset")]
    assert len(items) == 2 and items[0]["reference"]


def test_wmt24pp_drops_bad_sources_and_the_canary(tmp_path):
    path = tmp_path / "en-de_DE.jsonl"
    rows = [
        {"domain": "canary", "document_id": "canary", "segment_id": 0, "source": "CANARY", "target": "C"},
        {"domain": "news", "segment_id": 1, "is_bad_source": True, "source": "@@", "target": "@@"},
        {"domain": "news", "segment_id": 2, "is_bad_source": False, "source": "Hi.", "target": "Hallo."},
    ]
    rows = [{"lp": "en-de_DE", **row} for row in rows]
    write_jsonl(path, rows)
    assert [item["input"] for item in data.load_items("wmt", "de", {"format": "wmt24pp", "path": str(path)})] == ["Hi."]


def split(tmp_path, dataset, lang, shots, max_items, seed, task="wmt"):
    data.write_items(
        tmp_path / "items.jsonl",
        tmp_path / "shots.jsonl",
        task,
        lang,
        dataset,
        shots=shots,
        max_items=max_items,
        seed=seed,
    )
    return list(read_jsonl(tmp_path / "shots.jsonl")), list(read_jsonl(tmp_path / "items.jsonl"))


def test_items_never_share_a_document_with_the_shots(shared, tmp_path):
    dataset = {"format": "wmt24pp", "path": str(shared / "wmt24pp/en-de_DE.jsonl")}
    shots, items = split(tmp_path, dataset, "de", shots=2, max_items=None, seed=1)
    shot_documents = {shot["meta"]["document_id"] for shot in shots}
    assert [shot["origin"]["line"] for shot in shots] == [1, 2]
    assert shot_documents.isdisjoint(item["meta"]["document_id"] for item in items)
    # the first document has five segments: all of them are left out, not just the two shots
    assert len(items) == 200 - 5 and items[0]["origin"]["line"] == 6


def test_max_items_is_a_seeded_domain_stratified_subset_in_file_order(shared, tmp_path):
    dataset = {"format": "wmt24pp", "path": str(shared / "wmt24pp/en-de_DE.jsonl")}
    _, items = split(tmp_path, dataset, "de", shots=2, max_items=8, seed=1234)
    assert [item["meta"]["domain"] for item in items].count("news") == 2
    assert sorted(item["meta"]["domain"] for item in items) == sorted(["news", "social", "speech", "literary"] * 2)
    lines = [item["origin"]["line"] for item in items]
    assert lines == sorted(lines) and lines != list(range(6, 14))  # a sample, not the first rows
    assert items == split(tmp_path, dataset, "de", shots=2, max_items=8, seed=1234)[1]
    reseeded = split(tmp_path, dataset, "de", shots=2, max_items=8, seed=99)[1]
    assert [i["id"] for i in items] != [i["id"] for i in reseeded]
    ja = split(tmp_path, {"format": "wmt24pp", "path": str(shared / "wmt24pp/en-ja_JP.jsonl")}, "ja", 2, 8, 1234)[1]
    assert [i["origin"]["line"] for i in ja] == lines  # same segments per language


def test_max_items_quota_follows_domain_shares(tmp_path):
    path = tmp_path / "en-de_DE.jsonl"
    domains = ["a"] * 6 + ["b"] * 3 + ["c"] * 1
    write_jsonl(
        path,
        [
            {"lp": "en-de_DE", "domain": d, "segment_id": n, "source": f"s{n}", "target": f"t{n}"}
            for n, d in enumerate(domains)
        ],
    )
    _, items = split(tmp_path, {"format": "wmt24pp", "path": str(path)}, "de", shots=0, max_items=5, seed=3)
    assert [item["meta"]["domain"] for item in items].count("a") == 3
    assert sorted(item["meta"]["domain"] for item in items) == ["a", "a", "a", "b", "b"]


def test_a_dataset_with_no_items_outside_the_shot_documents_is_an_error(tmp_path):
    path = tmp_path / "en-de_DE.jsonl"
    write_jsonl(
        path,
        [
            {"lp": "en-de_DE", "document_id": "d", "segment_id": n, "source": f"s{n}", "target": f"t{n}"}
            for n in range(3)
        ],
    )
    with pytest.raises(
        PolyfuseError, match="'wmt', language 'de' has no items outside the documents of its 1 few-shot"
    ):
        split(tmp_path, {"format": "wmt24pp", "path": str(path)}, "de", shots=1, max_items=None, seed=1)


@pytest.mark.parametrize("lang", ["de", "fr", "ja"])
def test_demo_translation_data_keeps_shots_and_items_in_different_documents(tmp_path, lang):
    dataset = {"format": "wmt24pp", "path": str(REPO / f"resources/demo/wmt24pp/en-{lang}.jsonl")}
    shots, items = split(tmp_path, dataset, lang, shots=2, max_items=8, seed=1234)
    assert len(shots) == 2 and len(items) == 8
    assert {s["meta"]["document_id"] for s in shots}.isdisjoint(i["meta"]["document_id"] for i in items)
    assert {i["meta"]["domain"] for i in items} == {"notice", "conversation"}


@pytest.mark.parametrize(
    "name, lang, first_id, first_prompt",
    [
        ("ultrafeedback/ultrafeedback_en.jsonl", "en", "ufb-trl-train-36641", "Write a Java program that prompts"),
        ("alpagasus_x/alpagasus_x_de.jsonl", "de", "alpagasus-0", "Geben Sie drei Tipps, um gesund zu bleiben."),
        ("alpagasus_x/alpagasus_x_zh.jsonl", "zh", "alpagasus-0", "给出三条保持健康的秘诀。"),
    ],
)
def test_ultrafeedback_reads_the_real_training_prompt_slices(shared, name, lang, first_id, first_prompt):
    dataset = {"format": "ultrafeedback", "path": str(shared / "train" / name)}
    items = list(data.load_items("ufb", lang, dataset))
    assert len(items) == 200 and len({item["id"] for item in items}) == 200
    assert items[0]["id"] == first_id and items[0]["input"].startswith(first_prompt)
    assert all(item["reference"] is None and item["input"].strip() for item in items)


def test_ultrafeedback_takes_the_first_user_turn_of_chat_transcripts(tmp_path):
    path = tmp_path / "ufb.jsonl"
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another?"},
    ]
    rows = [
        {"prompt_id": "p1", "messages": conversation},
        {"chosen": conversation[1:3]},
        {"prompt": "Say hi.", "response": "Hi!"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    items = list(data.load_items("ufb", "en", {"format": "ultrafeedback", "path": str(path)}))
    # A written answer (`response`, or the last assistant turn of `chosen`) is the reference shots and fusors use.
    assert [(item["id"], item["input"], item["reference"]) for item in items] == [
        ("p1", "Name a prime.", None),
        ("ultrafeedback-en-2", "Name a prime.", "7"),
        ("ultrafeedback-en-3", "Say hi.", "Hi!"),
    ]


@pytest.mark.parametrize("lang", ["en", "de", "es", "fr", "ja", "ru", "sw", "zh"])
def test_gsm8k_reads_the_real_training_slices_with_their_final_answers(shared, lang):
    dataset = {"format": "gsm8k", "path": str(shared / f"train/mgsm8kinstruct/gsm8k_train_{lang}.jsonl")}
    items = list(data.load_items("gsm", lang, dataset))
    assert len(items) == 100
    assert items[0]["id"] == "gsm8k-train-0" and items[0]["reference"] == "72"  # Natalia's clips
    assert all(float(item["reference"]) == int(float(item["reference"])) for item in items)  # integers, as in GSM8K
    assert ("question_en" in items[0]["meta"]) == (lang != "en")


def test_gsm8k_takes_the_final_number_of_a_solution_string(tmp_path):
    path = tmp_path / "gsm.jsonl"
    rows = [
        {"question": "Clips?", "answer": "48/2 = <<48/2=24>>24\n48+24 = <<48+24=72>>72\n#### 72"},
        {"question": "Cost?", "answer": "It is #### 1,250"},
        {"question": "Plain?", "answer": "5"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    items = list(data.load_items("gsm", "en", {"format": "gsm8k", "path": str(path)}))
    assert [item["reference"] for item in items] == ["72", "1250", "5"]


@pytest.mark.parametrize("lang", ["en", "hi", "ja", "sw", "th"])
def test_geofactx_reads_the_real_train_slices(shared, lang):
    dataset = {"format": "geofactx", "path": str(shared / f"train/geofactx/geofactx_train_{lang}.jsonl")}
    items = list(data.load_items("geo", lang, dataset))
    assert len(items) == 100 and len({item["id"] for item in items}) == 100
    assert all(item["id"].startswith("geofactx-train-row") for item in items)
    assert all(isinstance(item["reference"], list) and item["reference"] for item in items)
    assert {item["meta"]["region"] for item in items} == {"USA", "India", "Kenya", "Japan", "Thailand"}


def test_demo_training_prompts_are_parallel_and_not_arena_requests():
    def prompts(kind, lang):
        path = REPO / f"resources/demo/{kind}_{lang}.jsonl"
        fmt = "ultrafeedback" if kind.startswith("train") else "arena"
        return {item["id"]: item["input"] for item in data.load_items("t", lang, {"format": fmt, "path": str(path)})}

    en, de = prompts("train/chat", "en"), prompts("train/chat", "de")
    assert len(en) == len(de) == 16 and list(en) == list(de)
    assert len(set(en.values())) == len(set(de.values())) == 16
    for lang, train in (("en", en), ("de", de)):
        assert not set(train.values()) & set(prompts("arena/arena", lang).values())
