"""Language codes the suite knows, with the English names prompts are filled with."""

from __future__ import annotations

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
