"""Aggregation methods: how a fusor's calls are chained to turn a pool into one new answer.

Each method is a procedure over the candidates in the order the fusor is shown them (the same seeded order for every
method). It asks for fusions a round at a time: each request is a list of texts to fuse, and each answer comes back
as a `Fused` (the parsed text, or None with the parse status). The fusion driver (polyfuse.fuse) batches one round's
requests across items, so a batching engine sees them together.

- ``paper``, ``moa``, ``usi`` and ``nocompare`` make one call over the whole pool; they differ only in the prompt
  template (the paper's compare-then-fuse; MoA's aggregate-and-synthesize; USI's translation criteria; the paper's
  prompt with the comparison step removed).
- ``self_moa_seq`` (Li et al. 2025, arXiv 2502.00674) slides a window over the candidates: the first call fuses the
  first `window` candidates; every later call fuses the current synthesis, shown first, with the next `step`
  unseen candidates, until every candidate was seen: 1 + ceil((N - window) / step) calls for N > window, else 1.
- ``rsa`` (recursive self-aggregation, arXiv 2509.26626) keeps a population of `population` answers: in round 1 each
  member fuses a seeded random `subset` of the candidates, in each later round a seeded random `subset` of the
  previous population; after `rounds` rounds the answer is the last population's first member
  (population x rounds calls, no extra final fusion).

A call whose output does not parse is counted (each record keeps every call's status). Its stand-in is stated in the
record: a one-call method takes the study's ``fusion.fallback``, as FusioN does (``first``: the pool's first
original candidate); in a chain the previous synthesis is carried on (``carried``), or the first candidate of the
first window when there is none yet (``first``); an RSA member that fails becomes the first text of its subset, and
when the answering member failed the record says ``first``. A record's answer counts as the method's own only when
the call that made it parsed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass

from polyfuse.errors import PolyfuseError
from polyfuse.registry import Registry


@dataclass(frozen=True)
class Fused:
    """One fusion call's answer: the parsed text (None when it did not parse) and the parse status."""

    text: str | None
    status: str


@dataclass(frozen=True)
class Outcome:
    """A procedure's answer: the text, whether a stand-in replaced the answering call's output (None: its own), the
    number of calls whose output did not parse, and which call (in order made) gives the answer."""

    text: str
    fallback: str | None
    failed_calls: int
    answer_call: int = -1  # the last call


# A procedure is a generator: it yields one round's requests (lists of texts to fuse) and is sent their answers.
Procedure = Generator[list[list[str]], list[Fused], Outcome]


@dataclass(frozen=True)
class Aggregator:
    name: str
    template: str | None  # the prompt template it fuses with; None: the study's fusion.template (the paper's)
    procedure: Callable[..., Procedure]
    kinds: tuple[str, ...] | None = None  # the task kinds it applies to; None: every kind
    source: str = ""


AGGREGATORS: Registry[Aggregator] = Registry("aggregator")


def one_call(texts: list[str], **_) -> Procedure:
    (answer,) = yield [texts]
    if answer.text is None:
        return Outcome(texts[0], "first", 1)
    return Outcome(answer.text, None, 0)


def self_moa_seq_calls(n: int, window: int, step: int) -> int:
    """Self-MoA-Seq's calls on `n` candidates: one for the first window, one per `step` candidates after it."""
    return 1 + math.ceil(max(n - window, 0) / step)


def sliding_window(texts: list[str], *, window: int, step: int, **_) -> Procedure:
    (answer,) = yield [texts[:window]]
    failed = answer.text is None
    state, fallback = (texts[0], "first") if failed else (answer.text, None)
    for start in range(window, len(texts), step):
        (answer,) = yield [[state, *texts[start : start + step]]]
        if answer.text is None:
            failed += 1
            fallback = "carried" if fallback is None else fallback
        else:
            state, fallback = answer.text, None
    return Outcome(state, fallback, failed)


def population_subsets(size: int, *, population: int, subset: int, rng: random.Random) -> list[list[int]]:
    """`population` seeded random subsets of `subset` indices out of `size` (all of them when size <= subset)."""
    return [sorted(rng.sample(range(size), min(subset, size))) for _ in range(population)]


def recursive_population(texts: list[str], *, population: int, subset: int, rounds: int, rng, **_) -> Procedure:
    current, failed, fallback = list(texts), 0, None
    for _ in range(rounds):
        subsets = population_subsets(len(current), population=population, subset=subset, rng=rng)
        answers = yield [[current[i] for i in chosen] for chosen in subsets]
        failed += sum(answer.text is None for answer in answers)
        fallback = None if answers[0].text is not None else "first"
        current = [
            answer.text if answer.text is not None else current[chosen[0]]
            for answer, chosen in zip(answers, subsets, strict=True)
        ]
    return Outcome(current[0], fallback, failed, answer_call=(rounds - 1) * population)


for _aggregator in (
    Aggregator("paper", None, one_call, source="Fusion-of-N (arXiv 2510.00931): compare, then fuse"),
    Aggregator("moa", "moa", one_call, source="Mixture-of-Agents (togethercomputer/MoA): aggregate-and-synthesize"),
    Aggregator("usi", "usi", one_call, ("translation",), source="ritranslation: universal self-improvement"),
    Aggregator("nocompare", "nocompare", one_call, source="FusioN without its comparison step (ablation)"),
    Aggregator("self_moa_seq", "moa", sliding_window, source="Self-MoA-Seq (arXiv 2502.00674)"),
    Aggregator("rsa", "rsa", recursive_population, source="recursive self-aggregation (arXiv 2509.26626)"),
):
    AGGREGATORS.register(_aggregator.name)(_aggregator)


def aggregator(name: str) -> Aggregator:
    if name not in AGGREGATORS:
        raise PolyfuseError(f"unknown aggregator {name!r}; known: {', '.join(AGGREGATORS)}")
    return AGGREGATORS[name]


def applies(name: str, kind: str) -> bool:
    """Whether the aggregator runs on tasks of `kind` (USI is for translation only)."""
    kinds = aggregator(name).kinds
    return kinds is None or kind in kinds


def calls_floor(name: str, n: int, settings: dict) -> int:
    """The fewest fusor calls the aggregator makes on `n` candidates (the benchmark's floor)."""
    if name == "self_moa_seq":
        return self_moa_seq_calls(n, settings["self_moa_seq"]["window"], settings["self_moa_seq"]["step"])
    if name == "rsa":
        return settings["rsa"]["population"] * settings["rsa"]["rounds"]
    return 1


def run_procedure(
    procedures: list[Procedure], fuse_round: Callable[[list[int], list[list[list[str]]]], list[list[Fused]]]
) -> list[Outcome]:
    """Drive several items' procedures a round at a time: `fuse_round(indices, requests)` answers together the
    requests of the items (by their index in `procedures`) still running, which may be fewer each round when items
    need different numbers of calls. Returns each procedure's Outcome."""
    outcomes: list[Outcome | None] = [None] * len(procedures)
    pending = {index: next(procedure) for index, procedure in enumerate(procedures)}
    while pending:
        indices = list(pending)
        answers = fuse_round(indices, [pending[index] for index in indices])
        pending = {}
        for index, answered in zip(indices, answers, strict=True):
            try:
                pending[index] = procedures[index].send(answered)
            except StopIteration as stop:
                outcomes[index] = stop.value
    return outcomes
