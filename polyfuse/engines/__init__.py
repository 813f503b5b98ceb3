"""One engine interface; each backend is a small plug-in registered by name.

An engine does two things:
  ``generate(requests) -> generations`` (texts plus token counts and seconds), and
  ``loglik(prompt, continuations) -> mean token log-probabilities``
  (engines that see the tokens also give ``loglik_terms``: the sum and the token count).
A continuation is scored exactly as given (no stripping), tokenized apart from the prompt so
the tokens at the boundary are the ones the model generated after it (llamacpp, vllm; the openai
engine's echo path can only send prompt + continuation as one text, and leaves out a token that
straddles the boundary). A generation request or
a continuation that does not fit the model's context is a PolyfuseError naming the key to raise,
never a silent truncation.
Backends live in sibling modules and are imported only when a model asks for them,
so a llama.cpp run never imports vLLM and the other way round.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from polyfuse.errors import PolyfuseError
from polyfuse.registry import Registry

# engine name -> module that registers it (imported lazily)
BACKEND_MODULES = {
    "llamacpp": "polyfuse.engines.llamacpp",
    "openai": "polyfuse.engines.openai",
    "vllm": "polyfuse.engines.vllm",
}
ENGINES: Registry[type[Engine]] = Registry("engine", name_attribute="engine_name")
register_engine = ENGINES.register
# engines that see the tokens and so give summed log-probabilities (loglik_terms); the openai echo path gives means
SUMMED_LOGLIK_ENGINES = frozenset({"llamacpp", "vllm"})

Prompt = str | list[dict]  # a raw prompt, or chat messages [{role, content}, ...]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class GenerationRequest:
    prompt: Prompt
    params: SamplingParams
    seed: int
    n: int = 1


@dataclass
class Generation:
    texts: list[str]
    tokens_in: int
    tokens_out: list[int]
    seconds: float
    finish_reasons: list[str] = field(default_factory=list)


class Engine(ABC):
    """A loaded model. Subclasses load lazily and count their model calls."""

    engine_name = "abstract"
    spec_model = None  # the typed model keys of this engine (polyfuse.engines.spec), which hold their defaults
    batch_items = 1  # items whose missing candidates go to generate() together; batching engines raise it

    def __init__(self, model_name: str, spec: dict, threads: int = 1):
        self.model_name = model_name
        self.spec = spec
        self.threads = threads
        self.calls = 0  # model invocations, so tests and benchmarks can assert a cached re-run makes none
        self.loglik_tokens = 0  # tokens the model read to score continuations (prompt and continuations as fed)
        self.loglik_prompt_tokens = 0  # of those, the prompt tokens read once for all of a call's continuations
        # Tokens each continuation of the last loglik call read (0: not scored), beyond the prompt where it is shared
        # (llama.cpp) and the whole sequence where not (vLLM, a server), so a continuation's cost is its own, not a
        # share of whatever batch it came in. An engine that does not say leaves it empty.
        self.loglik_reads: list[int] = []

    def option(self, key: str):
        """One of this engine's model keys: the model's own value, else its typed default."""
        return self.spec[key] if key in self.spec else self.spec_model.default(key)

    @abstractmethod
    def identity(self) -> dict:
        """What determines this model's outputs (weights, chat template): part of every cache key."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Generation]:
        """Yield one Generation per request, in order."""

    def loglik(self, prompt: Prompt, continuations: Sequence[str]) -> list[float]:
        """Mean per-token log-probability of each continuation after `prompt` (-inf for an empty one)."""
        return [total / count if count else float("-inf") for total, count in self.loglik_terms(prompt, continuations)]

    def loglik_terms(self, prompt: Prompt, continuations: Sequence[str]) -> list[tuple[float, int]]:
        """(summed log-probability, token count) of each continuation after `prompt`."""
        raise PolyfuseError(
            f"model {self.model_name!r}: the {self.engine_name} engine reports only mean "
            "log-probabilities; use study.loglik_normalization: mean"
        )

    def certainty_terms(self, prompt: Prompt, continuations: Sequence[str]) -> list[tuple[float, int]]:
        """(summed KL(uniform || p) over the tokens, token count) of each continuation after `prompt`: self-certainty
        needs the full next-token distribution at every position."""
        raise PolyfuseError(
            f"model {self.model_name!r}: the {self.engine_name} engine does not give full-vocabulary "
            "log-probabilities, which self_certainty needs; run it with a llamacpp model"
        )

    def require_room(
        self, prompt_tokens: int, added_tokens: int, context: int, key: str, added: str = "max_tokens"
    ) -> None:
        """A prompt plus its generation budget (or continuation) that overflows the context is an error, not a cut."""
        if prompt_tokens + added_tokens > context:
            raise PolyfuseError(
                f"model {self.model_name!r}: a {prompt_tokens}-token prompt plus {added}={added_tokens} does not fit "
                f"its {context}-token context; raise models.{self.model_name}.{key}"
            )

    def close(self) -> None:  # noqa: B027 - optional hook: engines that hold nothing need not override it
        """Free the model."""


def create_engine(model_name: str, spec: dict, threads: int = 1) -> Engine:
    engine = spec.get("engine")
    if engine not in BACKEND_MODULES:
        raise PolyfuseError(
            f"model {model_name!r}: unknown engine {engine!r}; known: {', '.join(sorted(BACKEND_MODULES))}"
        )
    if engine not in ENGINES:
        importlib.import_module(BACKEND_MODULES[engine])
    return ENGINES[engine](model_name, spec, threads)
