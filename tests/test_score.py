import pytest

from polyfuse import data
from polyfuse.score import accuracy, bleu, chrf, corpus_scores, extract_answer, parse_number
from polyfuse.tasks import task_kind


@pytest.mark.parametrize(
    "text, lang, expected",
    [
        ("Sie verdient 9 * 2 = 18 Dollar pro Tag. Die Antwort lautet 18.", "de", 18),
        ("Elle gagne 16 - 3 - 4 = 9 œufs, donc 9 * 2 = 18 $. La réponse est 18.", "fr", 18),
        ("The total is 80,000 + 50,000 = 130,000. Answer: 70,000", "en", 70000),
        ("Der Gewinn beträgt 70.000 Dollar.", "de", 70000),
        ("Le bénéfice est de 70 000 $.", "fr", 70000),
        ("Le prix est 2,5 dollars. Réponse : 2,5", "fr", 2.5),
        ("合計は２巻と１巻なので、答えは３です。", "ja", 3),
        ("答案是 18。", "zh", 18),
        ("Ответ: 1 200", "ru", 1200),
        ("Jibu ni 18.", "sw", 18),
        ("الإجابة: ١٨", "ar", 18),
        ("So the result is \\boxed{540} meters, not 600.", "en", 540),
        ("It costs -5 degrees? Answer: −5", "en", -5),
        ("I am not sure.", "en", None),
    ],
)
def test_extract_answer_across_languages_and_formats(text, lang, expected):
    assert extract_answer(text, lang) == expected


@pytest.mark.parametrize("token, lang, value", [("1,234.5", "en", 1234.5), ("1.234,5", "de", 1234.5), ("1.5", "en", 1.5),
                                                  ("1,5", "de", 1.5), ("1.234", "de", 1234), ("1,234", "en", 1234)])
def test_parse_number_separators(token, lang, value):
    assert parse_number(token, lang) == value


@pytest.mark.parametrize("lang", ["en", "de", "ja", "zh", "sw"])
def test_accuracy_on_real_mgsm_answers(shared, lang):
    path = shared / "mgsm" / f"mgsm_{lang}.tsv"
    if not path.exists():
        pytest.skip(f"no MGSM slice for {lang}")
    items = list(data.load_items("mgsm", lang, {"format": "mgsm", "path": str(path)}, 30))
    for item in items:
        answer = int(item["reference"])
        assert accuracy(f"... so the answer is {answer:,}".replace(",", "." if lang == "de" else ","), item["reference"], lang) == 100.0
        assert accuracy(f"Answer: {answer + 1}", item["reference"], lang) == 0.0


def test_chrf_and_bleu_rank_a_close_translation_higher():
    reference = "Die Bibliothek öffnet jeden Morgen um neun Uhr."
    assert chrf(reference, reference) == pytest.approx(100.0)
    assert chrf("Die Bibliothek öffnet um neun Uhr.", reference) > chrf("Der Hund schläft.", reference)
    assert bleu("Die Bibliothek öffnet jeden Morgen um neun.", reference, "de") > bleu("Hund.", reference, "de")


def test_japanese_bleu_uses_mecab_and_records_the_signature():
    hyps, refs = ["図書館は毎朝九時に開きます。"], ["図書館は毎朝九時に開館します。"]
    scores = corpus_scores(task_kind("translation"), "ja", hyps, refs)
    assert "tok:ja-mecab" in scores["bleu"]["signature"]
    assert "nc:6" in scores["chrf"]["signature"]
    assert 0 < scores["bleu"]["score"] < 100
    assert "tok:13a" in corpus_scores(task_kind("translation"), "de", ["Hallo"], ["Hallo"])["bleu"]["signature"]
    assert "tok:zh" in corpus_scores(task_kind("translation"), "zh", ["你好"], ["你好"])["bleu"]["signature"]
    assert corpus_scores(task_kind("math"), "en", ["1"], ["1"]) == {}


@pytest.mark.parametrize("text, lang, expected", [
    ("Die Antwort ist achtzehn Dollar.", "de", 100.0),
    ("The answer is eighteen dollars.", "de", 0.0),
    ("答えは十八ドルです。", "ja", 100.0),
    ("18", "en", None),
])
def test_language_correctness_uses_a_real_identifier(text, lang, expected):
    from polyfuse.score import language_correct

    assert language_correct(text, lang) == expected


def test_geofactx_loader_and_short_answer_accuracy(shared):
    from polyfuse.score import item_metric

    items = list(data.load_items("geofactx", "ja", {"format": "geofactx", "path": str(shared / "geofactx/geofactx_test_ja.jsonl")}, 3))
    assert items[0]["reference"][0] == "ギター" and items[0]["id"] == "geofactx-test-row7"
    kind = task_kind("factqa")
    assert item_metric(kind, "accuracy", "答えはスライドギターです。", items[0]) == 100.0
    assert item_metric(kind, "accuracy", "答えはピアノです。", items[0]) == 0.0
    assert item_metric(kind, "lang_correct", "答えはピアノです。", items[0]) == 100.0
    assert item_metric(kind, "accuracy", "Answer: GUITAR", {**items[0], "reference": ["Guitar"]}) == 100.0
