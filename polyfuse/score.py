"""Task metrics: chrF and BLEU through sacrebleu, exact numeric-answer accuracy.

Per-item values are 0-100 for every metric, so tables and figures share one scale.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache
from typing import Iterable

from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, read_paired, write_json, write_jsonl
from polyfuse.languages import DECIMAL_COMMA
from polyfuse.tasks import TaskKind

log = logging.getLogger(__name__)

# sacrebleu tokenizers for scripts without spaces between words; 13a elsewhere
BLEU_TOKENIZERS = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}


@lru_cache(maxsize=None)
def _chrf():
    from sacrebleu.metrics import CHRF

    return CHRF()


@lru_cache(maxsize=None)
def _bleu(lang: str, sentence: bool):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=BLEU_TOKENIZERS.get(lang, "13a"), effective_order=sentence)


def chrf(hypothesis: str, reference: str) -> float:
    return _chrf().sentence_score(hypothesis, [reference]).score


def bleu(hypothesis: str, reference: str, lang: str) -> float:
    return _bleu(lang, True).sentence_score(hypothesis, [reference]).score


# --- numeric answers ------------------------------------------------------------------

# Phrases after which models state a final answer, in the suite's languages.
ANSWER_MARKERS = re.compile(
    r"(?:answer|the answer is|antwort(?: lautet| ist)?|réponse(?: est)?|respuesta(?: es)?|resposta(?: é)?|"
    r"risposta(?: è)?|ответ|答え(?:は)?|答案(?:是)?|答|정답(?:은)?|jibu(?: ni)?|คำตอบ(?:คือ)?|उत्तर|উত্তর|సమాధానం|"
    r"الإجابة|####)\s*[:：]?",
    re.IGNORECASE,
)
# A number: digits of any script, optional sign, separators between digit groups.
NUMBER = re.compile(r"[-−]?\d(?:[\d.,'’\u00a0\u202f\u2009\u066b\u066c ]*\d)?")


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.digit(ch)) if ch.isdigit() else ch for ch in text)


def parse_number(token: str, lang: str) -> float | None:
    """Read one number written with `lang`'s separators ('1.234,5' in German, '1,234.5' in English)."""
    token = _ascii_digits(token).replace("−", "-").replace("\u066c", "").replace("\u066b", ".")
    token = re.sub(r"[\u00a0\u202f\u2009 '’]", "", token)
    decimal, group = (",", ".") if lang in DECIMAL_COMMA else (".", ",")
    # A lone separator followed by exactly three digits is a thousands separator in either convention.
    if token.count(decimal) == 1 and token.count(group) == 0 and re.fullmatch(r"-?\d{1,3}[.,]\d{3}", token):
        token = token.replace(decimal, "")
    token = token.replace(group, "").replace(decimal, ".")
    try:
        return float(token)
    except ValueError:
        return None


def extract_answer(text: str, lang: str) -> float | None:
    """The final numeric answer: in the last \\boxed{}, else first after the last answer marker, else last."""
    text = unicodedata.normalize("NFKC", text)
    boxed = re.findall(r"\\boxed\{([^}]*)\}", text)
    markers = list(ANSWER_MARKERS.finditer(text))
    if boxed:
        numbers = NUMBER.findall(boxed[-1])[:1]
    elif markers and NUMBER.search(text, markers[-1].end()):
        numbers = NUMBER.findall(text[markers[-1].end() :])[:1]
    else:
        numbers = NUMBER.findall(text)[-1:]
    return parse_number(numbers[0], lang) if numbers else None


def answer_match(hypothesis: str, answers: list[str]) -> float:
    """Short-answer accuracy: any accepted answer appears in the output (case- and width-insensitive)."""
    text = unicodedata.normalize("NFKC", hypothesis).casefold()
    return 100.0 if any(unicodedata.normalize("NFKC", a).casefold().strip() in text for a in answers if a.strip()) else 0.0


def language_correct(hypothesis: str, lang: str) -> float | None:
    """Is the output written in `lang`? py3langid's verdict; None when there are no letters to judge."""
    if not any(ch.isalpha() for ch in hypothesis):
        return None
    import py3langid

    detected, _ = py3langid.classify(hypothesis)
    return 100.0 if detected == lang else 0.0


def accuracy(hypothesis: str, reference: str, lang: str) -> float:
    predicted = extract_answer(hypothesis, lang)
    return 100.0 if predicted is not None and abs(predicted - float(reference)) < 1e-6 else 0.0


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


def corpus_scores(kind: TaskKind, lang: str, hypotheses: list[str], references: list[str]) -> dict:
    """Corpus-level sacrebleu scores with their signatures, for the translation table."""
    if kind.name != "translation":
        return {}
    out = {}
    for name, metric in (("chrf", _chrf()), ("bleu", _bleu(lang, False))):
        result = metric.corpus_score(hypotheses, [references])
        out[name] = {"score": result.score, "signature": str(metric.get_signature())}
    return out


def score_records(kind: TaskKind, pairs: Iterable[tuple[dict, dict]], hypotheses: list, references: list):
    for item, output in pairs:
        hypotheses.append(output["output"])
        references.append(item["reference"])
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "method": output["method"],
            "sampler": output["sampler"],
            "values": {metric: item_metric(kind, metric, output["output"], item) for metric in kind.metrics},
        }


def run_score(items_path: str, outputs_path: str, scores_path: str, summary_path: str, kind: TaskKind) -> None:
    hypotheses: list[str] = []
    references: list[str] = []
    count = write_jsonl(scores_path, score_records(kind, read_paired(items_path, outputs_path), hypotheses, references))
    lang = next(read_jsonl(items_path))["lang"]
    write_json(summary_path, {"items": count, "corpus": corpus_scores(kind, lang, hypotheses, references)})
    log.info("scored=%d", count)
