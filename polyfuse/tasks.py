"""Task kinds and prompt templates.

A task kind fixes its metrics and how an item becomes a prompt. Prompts are Jinja
template files, chosen in config by built-in name or by path; every record stores
the hash of the template it was rendered from, so editing a template invalidates
exactly the outputs it touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import jinja2

from polyfuse.engines import Prompt
from polyfuse.errors import PolyfuseError
from polyfuse.io import sha256_hex
from polyfuse.languages import language_name

TEMPLATE_DIR = Path(__file__).parent / "templates"
PROMPT_STYLES = ("chat", "fewshot")
# Few-shot prompts whose examples are multi-line (chat, fusion, judging) separate them with '###': stop there.
EXAMPLE_SEPARATOR_STOP = ("\n###",)


@dataclass(frozen=True)
class TaskKind:
    name: str
    metrics: tuple[str, ...]  # the first is the primary metric (oracle target, figures)
    fewshot_stop: tuple[str, ...]  # base models continue the few-shot pattern; stop at the answer's end
    max_tokens: int
    extra_metrics: tuple[str, ...] = ()  # scored by rules of their own (COMET in the torch environment)

    @property
    def has_oracle(self) -> bool:
        """Only metrics computed against a reference answer define a selection ceiling."""
        return self.metrics[0] != "winrate"


TASK_KINDS = {
    "translation": TaskKind("translation", ("chrf", "bleu"), ("\n",), 128, extra_metrics=("comet",)),
    "math": TaskKind("math", ("accuracy", "lang_correct"), ("\n",), 256),
    "factqa": TaskKind("factqa", ("accuracy", "lang_correct"), ("\n",), 256),
    "chat": TaskKind("chat", ("winrate",), EXAMPLE_SEPARATOR_STOP, 384),  # judged against a reference system
}


def task_kind(name: str) -> TaskKind:
    try:
        return TASK_KINDS[name]
    except KeyError:
        raise PolyfuseError(f"unknown task kind {name!r}; known: {', '.join(TASK_KINDS)}") from None


@dataclass(frozen=True)
class Template:
    path: Path
    text: str

    @property
    def hash(self) -> str:
        return sha256_hex(self.text)[:16]

    @cached_property
    def compiled(self) -> jinja2.Template:
        """Compiled once per template: compiling per render costs time and leaves cyclic garbage per record."""
        environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
        return environment.from_string(self.text)

    def render(self, **variables) -> str:
        try:
            return self.compiled.render(**variables).strip()
        except jinja2.TemplateError as exc:
            raise PolyfuseError(f"template {self.path}: {exc}") from None


@cache
def load_template(reference: str, family: str, variant: str) -> Template:
    """A template by path, or the built-in ``templates/<family>/<reference>.<variant>.j2``."""
    candidate = Path(reference).expanduser()
    path = candidate if candidate.is_file() else TEMPLATE_DIR / family / f"{reference}.{variant}.j2"
    if not path.is_file():
        raise PolyfuseError(f"template {reference!r} ({family}, {variant}) not found: no file {reference} or {path}")
    return Template(path, path.read_text(encoding="utf-8"))


def instruction_text(kind: TaskKind, item: dict) -> str:
    """The human-readable instruction: the chat prompt, and what fusors and judges are shown."""
    template = load_template(kind.name, "tasks", "instruction")
    return template.render(input=item["input"], language=language_name(item["lang"]))


def reference_text(shot: dict) -> str | None:
    """A shot's written answer (the first of several), stripped; None when it has none."""
    reference = shot.get("reference")
    if isinstance(reference, list):
        reference = reference[0] if reference else None
    return reference.strip() if isinstance(reference, str) and reference.strip() else None


def task_prompt(kind: TaskKind, item: dict, style: str, shots: list[dict]) -> tuple[Prompt, str]:
    """The prompt for `item` in a model's style, and the hash of the template used."""
    if style == "chat":
        template = load_template(kind.name, "tasks", "instruction")
        return [{"role": "user", "content": instruction_text(kind, item)}], template.hash
    if style == "fewshot":
        template = load_template(kind.name, "tasks", "fewshot")
        text = template.render(input=item["input"], language=language_name(item["lang"]), shots=shots)
        return text, template.hash
    raise PolyfuseError(f"unknown prompt_style {style!r}; known: {', '.join(PROMPT_STYLES)}")


def stop_sequences(kind: TaskKind, style: str) -> tuple[str, ...]:
    return kind.fewshot_stop if style == "fewshot" else ()
