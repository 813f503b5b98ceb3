"""Language codes the suite knows, the English names prompts are filled with, and the scripts they are written in."""

from __future__ import annotations

import unicodedata

from polyfuse.errors import PolyfuseError

LANGUAGE_NAMES = {
    "ar": "Arabic",
    "bn": "Bengali",
    "cs": "Czech",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fa": "Persian",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sw": "Swahili",
    "te": "Telugu",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}

# Scripts written without spaces between words, so word boundaries cannot be seen in the text.
UNSPACED_SCRIPTS = {"HAN", "KANA", "THAI"}
# Unicode character-name prefixes that name one script under another word.
SCRIPT_ALIASES = {
    "CJK": "HAN",
    "IDEOGRAPHIC": "HAN",
    "HIRAGANA": "KANA",
    "KATAKANA": "KANA",
    "KATAKANA-HIRAGANA": "KANA",
}

# Languages that write 1.234,5 rather than 1,234.5 (decimal comma).
DECIMAL_COMMA = {"cs", "de", "el", "es", "fr", "id", "it", "nl", "pl", "pt", "ro", "ru", "tr", "uk", "vi"}


def language_name(code: str) -> str:
    try:
        return LANGUAGE_NAMES[code]
    except KeyError:
        raise PolyfuseError(f"unknown language code {code!r}; known: {', '.join(sorted(LANGUAGE_NAMES))}") from None


def base_code(locale: str) -> str:
    """'de_DE' or 'pt-BR' -> 'de' / 'pt'."""
    return locale.replace("-", "_").split("_")[0].lower()


def script_of(char: str) -> str:
    """The script of one character, from its Unicode name ('THAI CHARACTER KO KAI' -> 'THAI'); '' when unnamed."""
    word = unicodedata.name(char, "").split(" ", 1)[0]
    return SCRIPT_ALIASES.get(word, word)


def is_spaced_word_char(char: str) -> bool:
    """Digits, and letters and marks of scripts that separate words by spaces: they run on into one token."""
    if char.isdigit():
        return True
    return (char.isalpha() or unicodedata.category(char).startswith("M")) and script_of(char) not in UNSPACED_SCRIPTS


def joins(left: str, right: str) -> bool:
    """Whether two adjacent characters belong to one token: a mark attaches to what precedes it, spaced-script word
    characters run on, and characters of unspaced scripts (Han, kana, Thai) show no boundary, so never block one."""
    return unicodedata.category(right).startswith("M") or (is_spaced_word_char(left) and is_spaced_word_char(right))
