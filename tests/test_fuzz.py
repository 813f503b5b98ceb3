"""Property-based tests (hypothesis) of the parsers: fused answers, judge verdicts, numeric answers and dataset files.

Every test is derandomized and keeps no example database, so CI runs the same examples on every machine.
"""

import json
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from polyfuse.data import LOADERS
from polyfuse.errors import PolyfuseError
from polyfuse.fuse import ANSWER_LINE, CLOSE, OPEN, parse_fused
from polyfuse.judge import PAIRWISE_LABEL, RATING, parse_pairwise, parse_rating
from polyfuse.languages import DECIMAL_COMMA, LANGUAGE_NAMES
from polyfuse.score import accuracy, extract_answer, parse_number

FUZZ = settings(deadline=None, derandomize=True, database=None)
LANGUAGES = sorted(LANGUAGE_NAMES)

# Pieces the parsers react to, mixed into arbitrary unicode so the examples reach their branches.
FRAGMENTS = (
    *("[[", "]]", "[", "]", "{", "}", "\n", "\r\n", "\r", " ", "\t", "\u3000"),
    *("A", "B", "C", ">", ">>", "<", "=", "tie"),
    *("Answer:", "answer :", "**Answer:**", "# Answer:", "Answer：", "Comparison:", "Verdict: ", "Rating: "),
    *("[[A>B]]", "[[ b >> a ]]", "[[A=B]]", "[[C]]", "[[A>A]]", "[[7]]", "[[10]]", "[[3.5]]", "[[wiki]]"),
    *("the answer is", "Die Antwort lautet", "Réponse :", "答えは", "الإجابة:", "उत्तर", "Jibu ni", "####"),
    *("\\boxed{", "\\frac{3}{4}", "{,}", "\\,", "\\text{", "12/05/2024", "3/4", "1/0", "1e308"),
    *("0123456789", "١٢٣٤٥٦٧٨٩٠", "۱۲۳۴", "१२३४", "১২৩", "౧౮", "๑๘", "１２３", "，", "．", "²"),
    *(",", ".", "'", "’", "\u066b", "\u066c", "\u00a0", "\u202f", "\u2009", "-", "−", "/"),
    *("1,234.5", "1.234,5", "1 234,5", "1\u202f234,5", "١٬٢٣٤٫٥", "12,34,567", "0.125", "-1,234"),
)
TRICKY_TEXT = st.lists(st.one_of(st.text(), st.sampled_from(FRAGMENTS)), max_size=24).map("".join)
NUMBERISH = st.text(st.sampled_from("0123456789١٢٣۴४৩౧๑１２，．,.'’٫٬ -−/\u00a0\u202f\u2009e_+"), max_size=24)


def unix_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- fused answers -----------------------------------------------------------------------


@settings(FUZZ, max_examples=400)
@given(raw=st.one_of(st.text(), TRICKY_TEXT))
def test_parse_fused_never_raises_and_returns_a_stripped_span_of_the_output_only_when_ok(raw):
    parsed = parse_fused(raw)
    assert parsed.status in ("ok", "missing", "unclosed", "empty")
    assert (parsed.text is not None) == (parsed.status == "ok")
    if parsed.text is not None:
        assert parsed.text == parsed.text.strip() and parsed.text in unix_newlines(raw)


def opens_an_answer_block(text: str) -> bool:
    """Whether `text` holds a line-start Answer: marker with a [[ after it: the rule would start the answer there."""
    return any(OPEN in text[marker.end() :] for marker in ANSWER_LINE.finditer(text))


# Other candidates' answers, quoted in the comparison inline or as their own Answer: blocks.
QUOTED_BLOCKS = st.one_of(
    TRICKY_TEXT,
    st.text().map(lambda answer: f"[[{answer}]]"),
    st.text().map(lambda answer: f"\nAnswer: [[{answer}]]\n"),
)
REASONING = st.lists(QUOTED_BLOCKS, max_size=6).map("".join)
# The marker forms the module docstring accepts, and what may stand between the marker and the [[.
ANSWER_MARKERS = ("Answer:", "answer :", "ANSWER:", "**Answer:**", "**Answer**:", "# Answer:", "> Answer:", "Answer：")


@settings(FUZZ, max_examples=500)
@given(
    reasoning=REASONING,
    marker=st.sampled_from(ANSWER_MARKERS),
    gap=st.sampled_from(["", " ", "\n", " \n\t"]),
    answer=st.one_of(st.text(), TRICKY_TEXT),
    trailing=st.text(),
)
def test_the_last_answer_block_parses_back_to_its_text_after_reasoning_that_quotes_other_answers(
    reasoning, marker, gap, answer, trailing
):
    expected = unix_newlines(answer).strip()
    # the closing delimiter, or a later block opened inside the answer, would end or restart it: out of the rule's scope
    assume(CLOSE not in unix_newlines(answer) and not opens_an_answer_block(unix_newlines(answer)))
    # text after the last ]] is ignored unless it adds brackets that move the last ]] or open another block
    assume(OPEN not in trailing and CLOSE not in trailing and not trailing.startswith("]"))
    parsed = parse_fused(f"{reasoning}\n{marker}{gap}{OPEN}{answer}{CLOSE}{trailing}")
    assert (parsed.text, parsed.status) == ((expected, "ok") if expected else (None, "empty"))


@settings(FUZZ, max_examples=300)
@given(reasoning=REASONING, answer=st.text())
def test_an_answer_block_without_a_closing_delimiter_is_unclosed(reasoning, answer):
    assume(CLOSE not in unix_newlines(answer) and not opens_an_answer_block(unix_newlines(answer)))
    assert parse_fused(f"{reasoning}\nAnswer: {OPEN}{answer}").status == "unclosed"


@settings(FUZZ, max_examples=300)
@given(text=st.one_of(st.text(), TRICKY_TEXT))
def test_bracketed_text_without_a_line_start_answer_marker_is_missing(text):
    # no line may start with 'answer' (any case, markdown marks before it): mid-line markers never count
    assume(not ANSWER_LINE.search(unix_newlines(text)))
    assert parse_fused(f"{text}[[quoted]]").status == "missing"


# --- judge verdicts ----------------------------------------------------------------------

WINNERS = {"A>>B": "A", "A>B": "A", "A=B": "tie", "B>A": "B", "B>>A": "B"}
# The same verdict written the other way round: A>B is B<A.
MIRRORED = {">>": "<<", ">": "<", "=": "="}
# MT-bench's single-letter labels, which the parser also documents.
SINGLE_WINNERS = {"A": "A", "B": "B", "C": "tie", "tie": "tie"}
# Whitespace `\s` accepts inside the brackets, including no-break and ideographic spaces.
LABEL_SPACE = st.text(st.sampled_from(" \t\n\u00a0\u3000"), max_size=3)


def any_case(draw, text: str) -> str:
    return "".join(char.lower() if draw(st.booleans()) else char.upper() for char in text)


@st.composite
def written_labels(draw) -> tuple[str, str]:
    """A verdict label in any documented spelling, and the winner it names."""
    if draw(st.booleans()):
        single = draw(st.sampled_from(sorted(SINGLE_WINNERS)))
        return f"[[{draw(LABEL_SPACE)}{any_case(draw, single)}{draw(LABEL_SPACE)}]]", SINGLE_WINNERS[single]
    label = draw(st.sampled_from(sorted(WINNERS)))
    left, relation, right = re.fullmatch(r"([AB])(>>|>|=)([AB])", label).groups()
    if draw(st.booleans()):
        left, relation, right = right, MIRRORED[relation], left
    parts = [any_case(draw, left), relation, any_case(draw, right)]
    return "[[" + "".join(draw(LABEL_SPACE) + part for part in parts) + draw(LABEL_SPACE) + "]]", WINNERS[label]


LABEL_FREE = st.one_of(st.text(), TRICKY_TEXT).filter(lambda text: PAIRWISE_LABEL.search(text) is None)


@settings(FUZZ, max_examples=400)
@given(raw=st.one_of(st.text(), TRICKY_TEXT))
def test_parse_pairwise_never_raises_and_names_a_winner_or_none(raw):
    assert parse_pairwise(raw) in ("A", "B", "tie", None)


@settings(FUZZ, max_examples=400)
@given(reasoning=LABEL_FREE, label=written_labels(), trailing=LABEL_FREE)
def test_a_verdict_label_after_label_free_reasoning_names_its_winner(reasoning, label, trailing):
    written, winner = label
    assert parse_pairwise(f"{reasoning}{written}{trailing}") == winner


@settings(FUZZ, max_examples=400)
@given(
    before=LABEL_FREE,
    quoted=st.lists(written_labels(), min_size=1, max_size=3),
    between=LABEL_FREE,
    final=written_labels(),
    no_winner=st.sampled_from(["", "[[A>A]]", "[[ b<<b ]]", "[[B=B]]"]),
)
def test_the_last_verdict_label_wins_over_labels_quoted_in_the_reasoning(before, quoted, between, final, no_winner):
    # a label naming one side twice names no winner, so one after the verdict does not displace it
    written, winner = final
    raw = before + " ".join(text for text, _ in quoted) + between + written + no_winner
    assert parse_pairwise(raw) == winner


@settings(FUZZ, max_examples=400)
@given(
    raw=st.one_of(st.text(), TRICKY_TEXT),
    bounds=st.tuples(st.integers(-5, 15), st.integers(-5, 15)).map(sorted),
)
def test_parse_rating_never_raises_and_stays_within_the_scale(raw, bounds):
    low, high = bounds
    rating = parse_rating(raw, low, high)
    assert rating is None or low <= rating <= high


RATING_FREE = st.one_of(st.text(), TRICKY_TEXT).filter(lambda text: RATING.search(text) is None)


@settings(FUZZ, max_examples=300)
@given(
    reasoning=RATING_FREE,
    quoted=st.lists(st.integers(0, 99), max_size=3),
    tenths=st.integers(0, 200),
    space=LABEL_SPACE,
    trailing=RATING_FREE,
)
def test_the_last_rating_is_read_back_when_on_the_scale_and_none_off_it(reasoning, quoted, tenths, space, trailing):
    # whole ratings are written as integers, others with one decimal, as judges do
    rating = tenths / 10
    written = str(tenths // 10) if tenths % 10 == 0 else f"{rating:.1f}"
    quotes = "".join(f" not [[{value}]]," for value in quoted)
    raw = f"{reasoning}{quotes}Rating: [[{space}{written}{space}]]{trailing}"
    assert parse_rating(raw, 1, 10) == (pytest.approx(rating) if 1 <= rating <= 10 else None)


# --- numeric answers ---------------------------------------------------------------------


def digits_of(zero: str) -> str:
    return "".join(chr(ord(zero) + value) for value in range(10))


ASCII_DIGITS = "0123456789"
# Per language: (digits, group marks, decimal mark) as the language writes numbers; a group mark "" means ungrouped.
DECIMAL_COMMA_GROUPS = {"fr": ("\u202f", "\u00a0", " "), "cs": ("\u00a0", " "), "pl": ("\u00a0", " ")}
DECIMAL_COMMA_GROUPS |= {"ru": ("\u00a0", " "), "uk": ("\u00a0", " ")}
NATIVE_DIGITS = {
    "ar": (digits_of("\u0660"), ("\u066c",), "\u066b"),  # Arabic-Indic, with the Arabic group and decimal marks
    "fa": (digits_of("\u06f0"), ("\u066c",), "\u066b"),  # Extended Arabic-Indic
    "hi": (digits_of("\u0966"), (",",), "."),  # Devanagari
    "bn": (digits_of("\u09e6"), (",",), "."),
    "te": (digits_of("\u0c66"), (",",), "."),
    "th": (digits_of("\u0e50"), (",",), "."),
    "ja": (digits_of("\uff10"), ("\uff0c", ","), "\uff0e"),  # full-width digits and marks
    "zh": (digits_of("\uff10"), ("\uff0c", ","), "\uff0e"),
}


def conventions(lang: str) -> list[tuple[str, tuple[str, ...], str]]:
    if lang in DECIMAL_COMMA:
        return [(ASCII_DIGITS, ("", *DECIMAL_COMMA_GROUPS.get(lang, (".",))), ",")]
    return [(ASCII_DIGITS, ("", ","), "."), *([NATIVE_DIGITS[lang]] if lang in NATIVE_DIGITS else [])]


WHOLE_NUMBERS = st.integers(0, 10**9)


@st.composite
def written_numbers(draw, lang: str, whole=WHOLE_NUMBERS, group_size: int = 3) -> tuple[str, str]:
    """A number as `lang` writes it (sign, digit groups, at most two decimals) and its plain decimal spelling."""
    digits, groups, decimal_mark = draw(st.sampled_from(conventions(lang)))
    number, places = draw(whole), draw(st.integers(0, 2))
    fraction = f"{draw(st.integers(0, 10**places - 1)):0{places}d}" if places else ""
    group = draw(st.sampled_from(groups))
    grouped = group_digits(str(number), group, group_size)
    sign = draw(st.sampled_from(["", "-", "\u2212"]))
    written = sign + grouped + (decimal_mark + fraction if places else "")
    plain = ("-" if sign else "") + str(number) + ("." + fraction if places else "")
    return written.translate(str.maketrans(ASCII_DIGITS, digits)), plain


def group_digits(whole: str, group: str, group_size: int) -> str:
    """Groups of three from the right; with `group_size` 2, the Indian style: three, then twos (12,34,567)."""
    if not group:
        return whole
    head, tail = whole[:-3], whole[-3:]
    parts = [tail]
    while head:
        head, part = head[:-group_size], head[-group_size:]
        parts.insert(0, part)
    return group.join(parts)


@st.composite
def languages_and_numbers(draw) -> tuple[str, str, str]:
    lang = draw(st.sampled_from(LANGUAGES))
    return (lang, *draw(written_numbers(lang)))


@settings(FUZZ, max_examples=400)
@given(token=st.one_of(NUMBERISH, TRICKY_TEXT), lang=st.sampled_from(LANGUAGES))
def test_parse_number_never_raises_and_returns_a_float_or_none(token, lang):
    value = parse_number(token, lang)
    assert value is None or isinstance(value, float)


@settings(FUZZ, max_examples=400)
@given(text=st.one_of(st.text(), TRICKY_TEXT, NUMBERISH), lang=st.sampled_from(LANGUAGES))
def test_extract_answer_and_accuracy_never_raise(text, lang):
    value = extract_answer(text, lang)
    assert value is None or isinstance(value, float)
    assert accuracy(text, "18", lang) in (0.0, 100.0)


@settings(FUZZ, max_examples=500)
@given(case=languages_and_numbers())
def test_parse_number_reads_a_number_written_in_the_languages_convention(case):
    lang, written, plain = case
    assert parse_number(written, lang) == pytest.approx(float(plain))


@settings(FUZZ, max_examples=500)
@given(
    case=languages_and_numbers(),
    working=st.lists(st.tuples(st.integers(0, 999), st.integers(0, 999)), max_size=3),
    ending=st.sampled_from(["", ".", " €", " dollars.", "\nI hope this helps: 99 percent sure."]),
)
def test_extract_answer_and_accuracy_read_the_stated_answer_after_working_with_other_numbers(case, working, ending):
    lang, written, plain = case
    steps = " ".join(f"{a} + {b} = {a + b}." for a, b in working)
    text = f"{steps} ... the answer is {written}{ending}"
    assert extract_answer(text, lang) == pytest.approx(float(plain))
    # references are plain decimal strings, as the MGSM and GSM8K loaders store them; accuracy is 0-100
    assert accuracy(text, plain, lang) == 100.0


@settings(FUZZ, max_examples=50)
@given(data=st.data(), lang=st.sampled_from(["hi", "bn", "te"]))
def test_indian_digit_grouping_is_read_as_one_number(data, lang):
    written, plain = data.draw(written_numbers(lang, whole=st.integers(10**5, 10**9), group_size=2))
    assume("," in written)
    assert extract_answer(f"the answer is {written}", lang) == pytest.approx(float(plain))


# --- dataset files -----------------------------------------------------------------------

NON_BLANK = st.text(min_size=1).filter(str.strip)
ITEM_IDS = st.one_of(st.integers(), st.text())
# One physical line of a TSV field: no tab, no line break of the file or the csv reader, no unencodable surrogate.
TSV_FIELD = st.text(st.characters(codec="utf-8", exclude_characters="\t\r\n"))
ONE_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n")).filter(str.strip)


def jsonl(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def ultrafeedback_flat(prompt: str, response: str | None) -> tuple[str, tuple]:
    return jsonl({"prompt": prompt, **({"response": response} if response else {})}), (prompt, response)


def ultrafeedback_chat(prompt: str, response: str) -> tuple[str, tuple]:
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
    record = {"messages": turns, "chosen": [*turns, {"role": "assistant", "content": response}]}
    return jsonl(record), (prompt, response)


# Per loader: a valid line with arbitrary content, and the (input, reference) the loader must give back for it.
VALID_LINES = {
    "wmt24pp": st.builds(
        lambda source, target: (jsonl({"lp": "en-de_DE", "source": source, "target": target}), (source, target)),
        NON_BLANK,
        NON_BLANK,
    ),
    "mgsm": st.builds(
        lambda question, answer: (f"{question}\t{answer:,}", (question.strip(), str(answer))),
        TSV_FIELD.filter(str.strip),
        st.integers(-(10**7), 10**7),
    ),
    "arena": st.one_of(
        st.builds(lambda i, prompt: (jsonl({"question_id": i, "prompt": prompt}), (prompt, None)), ITEM_IDS, NON_BLANK),
        st.builds(
            lambda i, prompt: (jsonl({"uid": i, "turns": [{"content": prompt}]}), (prompt, None)), ITEM_IDS, NON_BLANK
        ),
    ),
    "geofactx": st.builds(
        lambda question, answers: (jsonl({"question": question, "answer_list": answers}), (question, answers)),
        NON_BLANK,
        st.lists(st.text(), min_size=1, max_size=3),
    ),
    "ultrafeedback": st.one_of(
        st.builds(ultrafeedback_flat, NON_BLANK, st.one_of(st.none(), NON_BLANK)),
        st.builds(ultrafeedback_chat, NON_BLANK, NON_BLANK),
    ),
    "gsm8k": st.builds(
        lambda question, working, answer: (
            jsonl({"question": question, "answer": f"{working}\n#### {answer:,}"}),
            (question, str(answer)),
        ),
        NON_BLANK,
        st.text(),
        st.integers(-(10**7), 10**7),
    ),
}
JSONL_LOADERS = sorted(set(VALID_LINES) - {"mgsm"})
MISSING = object()
# Values that do not make a required text field: absent, null, blank, or not a string.
NOT_TEXT = st.sampled_from([MISSING, None, "", " \t", 0, 1.5, True, [], {}, ["text"]])
NOT_TURNS = st.sampled_from(
    [MISSING, None, [], [{}], ["text"], [{"content": ""}], [{"content": 3}], {"content": "text"}, "text", 5]
)
NOT_USER_TURNS = st.sampled_from(
    [MISSING, None, [], "text", {"role": "user", "content": "hi"}, [{"role": "assistant", "content": "hi"}]]
    + [[{"role": "user", "content": " "}], [{"role": "user", "content": 5}], [{"content": "hi"}], ["hi"]]
)
NOT_ANSWER_LISTS = st.sampled_from([MISSING, None, [], [1], ["a", None], "a", {"a": "b"}])
# A GSM8K solution whose last part is no number: '?' never reads as a float.
NOT_A_FINAL_NUMBER = st.builds(lambda head, tail: f"{head}#### {tail}?", st.text(), st.text())
NOT_A_NUMBER = st.builds(lambda head, tail: f"{head}?{tail}", TSV_FIELD, TSV_FIELD)


def record_with(**fields) -> str:
    return jsonl({name: value for name, value in fields.items() if value is not MISSING})


# Per loader: a line that is a JSON object (a TSV row for MGSM) lacking a required field or with one unusable.
MISSING_FIELD_LINES = {
    "wmt24pp": st.one_of(
        st.builds(lambda source: record_with(lp="en-de_DE", source=source, target="Hallo."), NOT_TEXT),
        st.builds(lambda t, r: record_with(lp="en-de_DE", source="Hello.", target=t, reference=r), NOT_TEXT, NOT_TEXT),
        # a language pair that does not translate into the file's language, or no pair at all
        st.builds(
            lambda lp: record_with(lp=lp, source="Hello.", target="Hallo."),
            st.sampled_from(["en-fr_FR", "de-en", "", None, 5, ["en", "de"]]),
        ),
    ),
    "mgsm": st.one_of(
        st.lists(TSV_FIELD, min_size=1, max_size=4)
        .filter(lambda fields: len(fields) != 2 and "".join(fields).strip())
        .map("\t".join),
        st.builds(lambda blank, answer: f"{blank}\t{answer}", st.sampled_from(["", " ", "\u3000"]), st.integers()),
        st.builds(lambda question, answer: f"{question}\t{answer}", TSV_FIELD.filter(str.strip), NOT_A_NUMBER),
    ),
    "arena": st.one_of(
        st.builds(lambda prompt: record_with(prompt=prompt), NON_BLANK),
        st.builds(lambda i, text, turns: record_with(id=i, prompt=text, turns=turns), ITEM_IDS, NOT_TEXT, NOT_TURNS),
    ),
    "geofactx": st.one_of(
        st.builds(lambda question: record_with(question=question, answer_list=["Paris"]), NOT_TEXT),
        st.builds(lambda answers: record_with(question="Capital?", answer_list=answers), NOT_ANSWER_LISTS),
    ),
    "ultrafeedback": st.builds(
        lambda prompt, messages, chosen: record_with(prompt=prompt, messages=messages, chosen=chosen),
        NOT_TEXT,
        NOT_USER_TURNS,
        NOT_USER_TURNS,
    ),
    "gsm8k": st.one_of(
        st.builds(lambda question: record_with(question=question, answer="#### 4"), NOT_TEXT),
        st.builds(lambda answer: record_with(question="2+2?", answer=answer), st.one_of(NOT_TEXT, NOT_A_FINAL_NUMBER)),
    ),
}


def not_a_json_object(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), dict)
    except ValueError:
        return True


def undecodable(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# Bytes that are not UTF-8: stray continuation bytes, a lead byte cut short, an encoded surrogate, an overlong form.
INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"])


@st.composite
def non_utf8_lines(draw, valid_lines) -> bytes:
    """A valid line with invalid bytes spliced in, or arbitrary bytes; either way undecodable and on one line."""
    if draw(st.booleans()):
        line = draw(valid_lines)[0].encode("utf-8")
        at = draw(st.integers(0, len(line)))
        data = line[:at] + draw(INVALID_UTF8) + line[at:]
    else:
        data = draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b"").replace(b"\r", b"")
    assume(undecodable(data))
    return data


def bad_lines(name: str):
    """One line the loader must refuse: not a JSON object (for MGSM: no tab), lacking a field, or not UTF-8."""
    not_parsed = (
        ONE_LINE.filter(lambda text: "\t" not in text) if name == "mgsm" else ONE_LINE.filter(not_a_json_object)
    )
    return st.one_of(
        not_parsed.map(str.encode),
        MISSING_FIELD_LINES[name].map(str.encode),
        non_utf8_lines(VALID_LINES[name]),
    )


def valid_or_blank(name: str):
    """Valid lines, with blank lines among them: blank lines are skipped but still counted."""
    return st.one_of(VALID_LINES[name].map(lambda case: case[0]), st.sampled_from(["", "  "]))


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "data.txt"


def load(name: str, path) -> list[dict]:
    return list(LOADERS[name](path, "de"))


@pytest.mark.parametrize("name", sorted(VALID_LINES))
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_a_loader_names_the_file_and_line_of_a_malformed_line(dataset_file, name, data):
    before = data.draw(st.lists(valid_or_blank(name), max_size=3), label="before")
    bad = data.draw(bad_lines(name), label="bad")
    after = data.draw(st.lists(valid_or_blank(name), max_size=2), label="after")
    lines = [*(line.encode() for line in before), bad, *(line.encode() for line in after)]
    dataset_file.write_bytes(b"".join(line + b"\n" for line in lines))
    with pytest.raises(PolyfuseError) as caught:
        load(name, dataset_file)
    message = str(caught.value)
    assert f"{dataset_file}:{len(before) + 1}: " in message and "\n" not in message


@pytest.mark.parametrize("name", sorted(VALID_LINES))
@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_a_loader_keeps_the_content_and_line_of_every_valid_record(dataset_file, name, data):
    cases = data.draw(st.lists(VALID_LINES[name], min_size=1, max_size=4))
    dataset_file.write_text("".join(line + "\n" for line, _ in cases), encoding="utf-8")
    items = load(name, dataset_file)
    assert [(item["input"], item["reference"]) for item in items] == [expected for _, expected in cases]
    lines = range(1, len(cases) + 1)
    assert [item["origin"] for item in items] == [{"file": str(dataset_file), "line": n} for n in lines]


# The fields each JSONL loader reads, so arbitrary records reach the type checks behind them.
LOADER_FIELDS = {
    "wmt24pp": ("lp", "source", "target", "reference", "is_bad_source", "domain", "segment_id", "id", "document_id"),
    "arena": ("question_id", "uid", "id", "prompt", "turns", "category", "cluster"),
    "geofactx": ("question", "answer_list", "id", "group_id", "topic", "region", "answer_type"),
    "ultrafeedback": ("prompt", "messages", "chosen", "response", "id", "prompt_id", "source", "source_index"),
    "gsm8k": ("question", "answer", "id", "question_en"),
}
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=8),
        st.sampled_from(["user", "assistant", "en-de_DE", "#### 4"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["role", "content"]) | st.text(max_size=4), children, max_size=3),
    ),
    max_leaves=8,
)


@pytest.mark.parametrize("name", JSONL_LOADERS)
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_a_jsonl_loader_loads_any_json_object_or_names_its_line(dataset_file, name, data):
    record = data.draw(st.dictionaries(st.sampled_from(LOADER_FIELDS[name]), JSON_VALUES, max_size=5), label="record")
    # a blank first line, so the error must count skipped lines to name line 2
    dataset_file.write_text("\n" + jsonl(record) + "\n", encoding="utf-8")
    try:
        load(name, dataset_file)
    except PolyfuseError as error:
        assert str(error).startswith(f"{dataset_file}:2: ")
