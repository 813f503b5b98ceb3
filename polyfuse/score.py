"""Task metrics: chrF and BLEU through sacrebleu, numeric and short-answer accuracy, language correctness.

Per-item values are 0-100 for every metric, so tables and figures share one scale.

The final answer is read from the last \\boxed{}, else from the line after the last answer marker (word-bounded, in
the suite's languages; an 'Answer:' form with a colon wins over a marker in running text). Numeric accuracy takes the
final number there (its first sentence when that is just a number, with at most a unit; the number it opens with
when a reason follows it, as in 'The answer is 12, because 3 packs of 4'; with no marker, of the whole output),
read with the language's decimal
mark; short-answer accuracy looks for an accepted answer, normalised, on token boundaries in that line (with no
marker, the last line). Language correctness asks py3langid, restricted to the suite's languages, about the
response's prose: reasoning and answer, without the English 'Answer:' marker and LaTeX.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import cache

from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, read_paired, write_json, write_jsonl
from polyfuse.languages import DECIMAL_COMMA, LANGUAGE_NAMES, joins, script_of
from polyfuse.tasks import TaskKind

log = logging.getLogger(__name__)

# sacrebleu tokenizers for scripts without spaces between words; 13a elsewhere
BLEU_TOKENIZERS = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}


@cache
def _chrf():
    from sacrebleu.metrics import CHRF

    return CHRF()


@cache
def _bleu(lang: str, sentence: bool):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=BLEU_TOKENIZERS.get(lang, "13a"), effective_order=sentence)


def chrf(hypothesis: str, reference: str) -> float:
    return _chrf().sentence_score(hypothesis, [reference]).score


def bleu(hypothesis: str, reference: str, lang: str) -> float:
    return _bleu(lang, True).sentence_score(hypothesis, [reference]).score


# --- final answers ---------------------------------------------------------------------

# Words after which models state a final answer, in the suite's languages, each with an optional copula.
ANSWER_WORDS = (
    "final answer|answer|antwort|réponse|respuesta|resposta|risposta|ответ|jibu|उत्तर|উত্তর|సమాధానం|الإجابة|"
    "الجواب|答え|答案|回答|答|정답|คำตอบ|####"
)
COPULAS = r"(?:is|lautet|ist|est|es|é|è|ni)(?!\w)|है|হলো|হল|คือ|は|是|은|는"
# NFKC like the texts it searches (it rewrites Thai ำ, as in คำตอบ).
ANSWER_MARKER = re.compile(
    unicodedata.normalize("NFKC", rf"(?P<word>(?:{ANSWER_WORDS})(?:\s*(?:{COPULAS}))?)\s*(?P<colon>:)?"), re.IGNORECASE
)
# A sentence ends at a full stop after a word and before a space (not inside 1.5 or '...'), or at a CJK or Indic stop.
SENTENCE_END = re.compile(r"(?<=\w)[.!?؟](?=\s|$)|[。।]")


def _bounded(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is a whole token: 'answer' in 'To answer' but not in 'answered', nor jibu in majibu."""
    joined_left = start > 0 and joins(text[start - 1], text[start])
    return not joined_left and not (end < len(text) and joins(text[end - 1], text[end]))


def answer_line(text: str) -> str | None:
    """The line that states the final answer: after the last answer marker ending in a colon (the 'Answer: ...' form
    the prompts ask for), else after the last marker of any form; None when the text has no marker."""
    markers = [m for m in ANSWER_MARKER.finditer(text) if _bounded(text, m.start("word"), m.end("word"))]
    marker = next((m for m in reversed(markers) if m.group("colon")), markers[-1] if markers else None)
    if marker is None:
        return None
    return text[marker.end() :].lstrip().split("\n", 1)[0]


# --- numeric answers ------------------------------------------------------------------

# A number: digits of any script, optional sign (not a hyphen after a word or digit, as in 10-15), digit groups of
# three after ',', '.', an apostrophe, the Arabic group mark or a space (a space only before exactly three digits, so
# '10 20' is two numbers) or the Indian lakh grouping (12,34,567), an optional decimal part, and an optional
# '/denominator' (3/4 is read as 0.75).
_GROUP_SEPARATORS = ",.'’\u066c \u00a0\u202f\u2009"
_LAKH = r"\d{1,2}(?:,\d{2})+,\d{3}(?!\d)"
_UNSIGNED = rf"(?:\d{{1,3}}(?:[{_GROUP_SEPARATORS}]\d{{3}})+(?!\d)|{_LAKH}|\d+)(?:[.,\u066b]\d+)?"
NUMBER = re.compile(rf"(?<![\d/])(?:(?<!\w)[-−])?{_UNSIGNED}(?:/{_UNSIGNED}(?![/\d]))?")
# Words that give a reason right after a stated answer, per language ('because'), and in English, which models use
# in any language. Words that also mean something else ('as', 'since', 'da', 'pues', 'pois') count only after a
# comma or bracket ('18, as 9 eggs...'), never in working ('2 times as many', 'diviso da 4').
REASON_WORDS = {
    "en": ("because",),
    "de": ("weil", "denn"),
    "fr": ("car", "parce que", "puisque"),
    "es": ("porque", "ya que"),
    "pt": ("porque",),
    "it": ("perché", "poiché"),
    "ru": ("потому что", "так как", "поскольку", "ибо"),
    "sw": ("kwa sababu", "kwa kuwa"),
    "hi": ("क्योंकि",),
    "bn": ("কারণ",),
    "te": ("ఎందుకంటే", "ఎందుకనగా"),
    "ar": ("لأن", "لان"),
    "zh": ("因为", "因為", "由于", "由於"),
    "ja": ("なぜなら", "というのも"),
    "th": ("เพราะ",),
}
REASON_WORDS_AFTER_COMMA = {"en": ("as", "since"), "de": ("da",), "es": ("pues",), "pt": ("pois",)}
# A unit after the number: a run of letters and marks (Indic vowel signs too), not a multiplier of working.
_UNIT = r"(?!(?:times|mal|fois|veces|vezes|volte|раза?|mara)(?!\w))[^\s\d.,;:!?()\[\]。、+\-−*/×÷=]+"


@cache
def justified_answer(lang: str) -> re.Pattern:
    """An answer line that opens with a number (and at most a unit) and goes on to give a reason for it."""

    def words(table: dict) -> str:
        found = {*table.get(lang, ()), *table.get("en", ())}
        return "|".join(re.escape(word) for word in sorted(found, key=len, reverse=True))

    spaced, after_comma = words(REASON_WORDS), words(REASON_WORDS_AFTER_COMMA)
    # scripts written without spaces need no word boundary after the reason word
    boundary = "" if lang in ("zh", "ja", "th") else r"(?!\w)"
    return re.compile(
        rf"[^\w\d]*?(?P<number>{NUMBER.pattern})[*_]*(?:\s*{_UNIT}[*_]*)??"
        rf"(?:\s*[,;:、(—–]\s*(?:{after_comma or '(?!)'}|{spaced}){boundary}|\s*(?:{spaced}){boundary})",
        re.IGNORECASE,
    )


LATEX_FRACTION = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.digit(ch)) if ch.isdigit() else ch for ch in text)


def _parse_decimal(token: str, lang: str) -> float | None:
    """One number without a fraction bar, written with `lang`'s separators."""
    token = re.sub(r"[\u00a0\u202f\u2009 '’\u066c]", "", token).replace("\u066b", ".")
    separators = set(re.findall(r"[.,]", token))
    if len(separators) == 2:  # both kinds: the one that comes last is the decimal mark (1,234.5 and 1.234,5)
        decimal = token[max(token.rfind("."), token.rfind(","))]
        group = "," if decimal == "." else "."
        if token.count(decimal) > 1:
            return None
        token = token.replace(group, "").replace(decimal, ".")
    elif separators:
        (separator,) = separators
        whole, *rest = token.lstrip("-").split(separator)
        groups_of_three = all(len(part) == 3 for part in rest) and whole not in ("", "0")
        if len(rest) > 1:  # repeated: only digit groups can repeat (1.234.567, and 12,34,567 in lakhs)
            lakhs = separator == "," and len(rest[-1]) == 3 and all(len(part) == 2 for part in rest[:-1])
            if not (groups_of_three or lakhs and 0 < len(whole) <= 2):
                return None
            token = token.replace(separator, "")
        elif groups_of_three and separator == ("." if lang in DECIMAL_COMMA else ","):
            token = token.replace(separator, "")  # 1,234 in English, 1.234 in German: the group mark
        else:
            token = token.replace(separator, ".")  # 0.125, 1.5 and 2,5 anywhere; 1.234 in English
    try:
        return float(token)
    except ValueError:
        return None


def parse_number(token: str, lang: str) -> float | None:
    """Read one number written with `lang`'s separators ('1.234,5' in German, '1,234.5' in English, '3/4')."""
    token = _ascii_digits(unicodedata.normalize("NFKC", token)).replace("−", "-")
    numerator, _, denominator = token.partition("/")
    value = _parse_decimal(numerator, lang)
    if not denominator or value is None:
        return value
    divisor = _parse_decimal(denominator, lang)
    return value / divisor if divisor else None


def _boxed(text: str) -> str | None:
    """The content of the last \\boxed{...}, braces balanced (\\boxed{\\frac{3}{4}})."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed")
    for position in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[begin + 1 : position]
    return text[begin + 1 :]


def _final_number(text: str) -> str | None:
    numbers = NUMBER.findall(text)
    return numbers[-1] if numbers else None


# math-verify (0.9.0) was tried and not taken: its extraction is English/LaTeX-only (reads 'Die Antwort lautet 18. 2'
# as 2, '70.000' in German as 70, misses '答えは３' and '١٨'), and MGSM answers are integers, so after this extraction
# equivalence is plain numeric equality and its sympy stack would buy nothing.
def extract_answer(text: str, lang: str) -> float | None:
    """The final numeric answer: the final number in the last \\boxed{}; else the answer line's first sentence when it
    is one number with at most a unit (so 'Answer: 18. 2 eggs' is 18), or the number the line opens with when a reason
    follows it (so 'Answer: 12, because 3 packs of 4' is 12), else the final number of the answer line (so
    'Answer: 16 - 7 = 9 eggs. 9 * 2 = 18' is 18); else the final number of the text (lm-eval's flexible extract)."""
    text = unicodedata.normalize("NFKC", text)
    boxed = _boxed(text)
    if boxed is not None:
        boxed = LATEX_FRACTION.sub(r"\1/\2", boxed.replace("{,}", ",").replace("\\,", " "))  # 1{,}234 and 1\,234 group
        token = _final_number(LATEX_COMMAND.sub(" ", boxed))
        return parse_number(token, lang) if token else None
    line = answer_line(text)
    scopes = [line, text] if line is not None else [text]
    first = SENTENCE_END.split(line, 1)[0] if line is not None else ""
    if len(NUMBER.findall(first)) == 1 and len(NUMBER.sub(" ", first).split()) <= 1:
        scopes.insert(0, first)  # a first sentence that is a number (and a unit) is the answer; working is not
    elif line is not None and (justified := justified_answer(lang).match(line)):
        scopes.insert(0, justified["number"])  # 'Answer: 12, because 3 packs of 4': the reason's numbers are not it
    token = next((number for scope in scopes if (number := _final_number(scope))), None)
    return parse_number(token, lang) if token else None


def accuracy(hypothesis: str, reference: str, lang: str) -> float:
    predicted = extract_answer(hypothesis, lang)
    return 100.0 if predicted is not None and math.isclose(predicted, float(reference), abs_tol=1e-6) else 0.0


# --- short answers ----------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """NFKC, casefolded, punctuation and symbols as spaces, spaces collapsed: 'St. Louis' -> 'st louis'."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)
    return " ".join(text.split())


def contains_token_span(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` on token boundaries: '12' not inside '2012', 'guitar' not in 'guitars'.
    Han, kana and Thai write no spaces between words, so there a phrase may begin or end next to any character of
    those scripts ('ギター' in 'スライドギターです'); digits and spaced-script letters still may not run on."""
    start = text.find(phrase)
    while start >= 0:
        if _bounded(text, start, start + len(phrase)):
            return True
        start = text.find(phrase, start + 1)
    return False


def final_answer_text(hypothesis: str) -> str:
    """The stated final answer: the answer line (see answer_line), else the last non-empty line."""
    text = unicodedata.normalize("NFKC", hypothesis)
    line = answer_line(text)
    if line is not None:
        return line
    lines = [candidate for candidate in text.splitlines() if candidate.strip()]
    return lines[-1] if lines else ""


def answer_match(hypothesis: str, answers: list[str]) -> float:
    """Short-answer accuracy: an accepted answer, normalised, occurs on token boundaries in the final answer (not in
    the reasoning, where long outputs would mention many candidates)."""
    stated = normalize_answer(final_answer_text(hypothesis))
    accepted = [normalized for answer in answers if (normalized := normalize_answer(answer))]
    return 100.0 if any(contains_token_span(stated, answer) for answer in accepted) else 0.0


# --- language correctness -----------------------------------------------------------------

# The English marker the prompts ask for ('Answer: ...'), and LaTeX: neither tells the response's language.
TEMPLATE_ANSWER_MARKER = re.compile(r"\b(?:final\s+)?answer\s*:", re.IGNORECASE)
# Chinese prose has no kana; even kanji-heavy Japanese carries particles and endings in kana.
JAPANESE_MIN_KANA_SHARE = 0.05


@cache
def _suite_identifier():
    """A py3langid identifier of our own restricted to the suite's languages (its module-level one stays as it is)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages(sorted(LANGUAGE_NAMES))
    return identifier


def identify_language(text: str) -> str | None:
    """The suite language `text` is written in, by py3langid restricted to the suite's languages (English included),
    except that text py3langid calls Chinese is Japanese when kana make up a share of its Han and kana characters.
    None when `text` has no letters."""
    scripts = Counter(script_of(ch) for ch in text if ch.isalpha())
    if not scripts:
        return None
    detected = _suite_identifier().classify(text)[0]
    kana, han = scripts["KANA"], scripts["HAN"]
    return "ja" if detected == "zh" and kana and kana >= JAPANESE_MIN_KANA_SHARE * (kana + han) else detected


def response_prose(hypothesis: str) -> str:
    """What language correctness judges: the whole response, reasoning and final answer, without the English answer
    marker and LaTeX commands. Not the answer line alone: math answers are numbers, and GeoFact-X answers are names
    and loanwords too short to identify (py3langid calls 'Austin' German and 'Guitar' Romanian)."""
    text = unicodedata.normalize("NFKC", hypothesis)
    return LATEX_COMMAND.sub(" ", TEMPLATE_ANSWER_MARKER.sub(" ", text))


def language_correct(hypothesis: str, lang: str) -> float | None:
    """Is the response written in `lang`? None when its prose has no letters to judge."""
    detected = identify_language(response_prose(hypothesis))
    if detected is None:
        return None
    return 100.0 if detected == lang else 0.0


def item_metric(kind: TaskKind, metric: str, hypothesis: str, item: dict) -> float | None:
    """One item's score under `metric`, 0-100; None where the metric does not apply to this output."""
    if metric == "lang_correct":
        return language_correct(hypothesis, item["lang"])
    reference = item.get("reference")
    if reference is None:
        raise PolyfuseError(f"item {item['id']!r}: metric {metric!r} needs a reference")
    if metric == "chrf":
        return chrf(hypothesis, reference)
    if metric == "bleu":
        return bleu(hypothesis, reference, item["lang"])
    if metric == "accuracy" and isinstance(reference, list):
        return answer_match(hypothesis, reference)
    if metric == "accuracy":
        return accuracy(hypothesis, reference, item["lang"])
    raise PolyfuseError(f"task kind {kind.name!r} has no metric {metric!r}")


class CorpusScores:
    """Corpus-level sacrebleu chrF and BLEU summed segment by segment, so a scoring job holds no list of its texts.

    sacrebleu's corpus score is a function of the summed per-segment statistics; this sums them as items stream
    past and computes the same score (tested against ``corpus_score``) from the totals.
    """

    def __init__(self, kind: TaskKind, lang: str):
        metrics = (("chrf", _chrf()), ("bleu", _bleu(lang, False))) if kind.name == "translation" else ()
        self.totals: dict[str, list | None] = {name: None for name, _ in metrics}
        self.metrics = dict(metrics)

    def add(self, hypothesis: str, reference: str) -> None:
        for name, metric in self.metrics.items():
            (stats,) = metric._extract_corpus_statistics([hypothesis], [[reference]])
            totals = self.totals[name]
            self.totals[name] = stats if totals is None else [a + b for a, b in zip(totals, stats, strict=True)]

    def summary(self) -> dict:
        """Each metric's corpus score and signature; none before the first segment."""
        return {
            name: {"score": metric._compute_score_from_stats(totals).score, "signature": str(metric.get_signature())}
            for name, metric in self.metrics.items()
            if (totals := self.totals[name]) is not None
        }


def corpus_scores(kind: TaskKind, lang: str, hypotheses: list[str], references: list[str]) -> dict:
    """Corpus-level sacrebleu scores with their signatures, for the translation table."""
    corpus = CorpusScores(kind, lang)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        corpus.add(hypothesis, reference)
    return corpus.summary()


def score_records(kind: TaskKind, pairs: Iterable[tuple[dict, dict]], corpus: CorpusScores):
    for item, output in pairs:
        # per-item metrics first: a missing reference is their one-line error, not a TypeError inside sacrebleu
        values = {metric: item_metric(kind, metric, output["output"], item) for metric in kind.metrics}
        corpus.add(output["output"], item["reference"])
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "method": output["method"],
            "sampler": output["sampler"],
            "values": values,
        }


def run_score(items_path: str, outputs_path: str, scores_path: str, summary_path: str, *, kind: TaskKind) -> None:
    corpus = CorpusScores(kind, next(read_jsonl(items_path))["lang"])
    count = write_jsonl(scores_path, score_records(kind, read_paired(items_path, outputs_path), corpus))
    write_json(summary_path, {"items": count, "corpus": corpus.summary()})
    log.info("scored=%d", count)
