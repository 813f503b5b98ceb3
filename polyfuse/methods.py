"""Method names, built and parsed in one place.

A method is what turns a pool into one output: ``single`` (the first candidate), ``oracle`` (the best by the task
metric), ``bon-<selector>`` (a selection method: Best-of-N under a scorer, ``<scorer>`` or ``<scorer>@<model>``, such
as ``bon-usc@smol``), ``fusion-<fusor>`` (the paper's FusioN by a fusor model) or ``fusion-<aggregator>@<fusor>``
(another aggregation method run by that model, such as ``fusion-moa@smol``). A judged head-to-head pairs two methods
as ``<method>__vs__<method>``.

The analyses derive pools from a sampler's pool without sampling again; a derived pool is a sampler named
``<sampler>~<variant>``: ``n<size>s<index>`` (a random subset of the candidates, for N-scaling), ``<kind><k>``
(k candidates replaced by ``garbage`` or ``fluent`` wrong answers, for robustness) or ``order-<how>`` (the whole
pool shown to the fusor ``best-first``, ``worst-first``, ``random`` or as ``pooled``, for position bias).
"""

from __future__ import annotations

import re

from polyfuse.errors import PolyfuseError

BON_PREFIX = "bon-"
FUSION_PREFIX = "fusion-"
PAIR_SEPARATOR = "__vs__"
ORACLE, COMET_ORACLE = "oracle", "oracle-comet"  # the best candidate by the task's metric, and by COMET
PLAIN_METHODS = ("single", ORACLE, COMET_ORACLE)


def oracle_by(metric: str) -> str:
    """The oracle method that picks by `metric`: the COMET oracle for COMET, the task metric's oracle otherwise."""
    return COMET_ORACLE if metric == "comet" else ORACLE


def bon(selector: str) -> str:
    return f"{BON_PREFIX}{selector}"


PAPER_AGGREGATOR = "paper"  # the paper's FusioN prompt: its methods keep the plain name fusion-<fusor>


def fusion(fusor: str, aggregator: str = PAPER_AGGREGATOR) -> str:
    """``fusion-<fusor>`` for the paper's FusioN, ``fusion-<aggregator>@<fusor>`` for another aggregation method."""
    return f"{FUSION_PREFIX}{fusor}" if aggregator == PAPER_AGGREGATOR else f"{FUSION_PREFIX}{aggregator}@{fusor}"


def fusor_of(method: str) -> tuple[str, str]:
    """``(aggregator, fusor)`` of a fusion method: ``fusion-<fusor>`` is the paper's aggregator."""
    family, payload = parse(method)
    if family != "fusion":
        raise PolyfuseError(f"{method!r} is not a fusion method (expected fusion-[<aggregator>@]<fusor>)")
    aggregator, fusor = split_selector(payload)
    return (PAPER_AGGREGATOR, aggregator) if fusor is None else (aggregator, fusor)


# A selector may name the model it scores with, ``<scorer>@<model>``, overriding study.scorer_models: the fusor
# analysis scores the same pools with each fusor model in turn.
SCORER_MODEL_SEPARATOR = "@"


def scored_by(scorer: str, model: str) -> str:
    return f"{scorer}{SCORER_MODEL_SEPARATOR}{model}"


def split_selector(selector: str) -> tuple[str, str | None]:
    """``(scorer, model)`` of ``<scorer>@<model>``; ``(selector, None)`` when it names no model."""
    scorer, sep, model = selector.partition(SCORER_MODEL_SEPARATOR)
    if sep and not (scorer and model):
        raise PolyfuseError(f"selector {selector!r}: expected <scorer>{SCORER_MODEL_SEPARATOR}<model>")
    return (scorer, model) if sep else (selector, None)


def scorer_of(method: str) -> tuple[str, str | None]:
    """``(scorer, model)`` of a selection method: ``bon-<scorer>[@<model>]``, ``single`` or ``oracle``."""
    return split_selector(parse(method)[1] or method)


def selection(scorer: str) -> str:
    """The method a select step writes: ``single`` and ``oracle`` keep their names, any other scorer is BoN."""
    return scorer if scorer in PLAIN_METHODS else bon(scorer)


def parse(method: str) -> tuple[str, str | None]:
    """``("bon", selector)``, ``("fusion", fusor)`` or ``(method, None)`` for single and the oracles."""
    for family, prefix in (("bon", BON_PREFIX), ("fusion", FUSION_PREFIX)):
        if method.startswith(prefix) and len(method) > len(prefix):
            return family, method[len(prefix) :]
    if method in PLAIN_METHODS:
        return method, None
    raise PolyfuseError(f"unknown method {method!r}: expected single, oracle, bon-<selector> or fusion-<fusor>")


def method_rank(method: str) -> tuple[int, str]:
    """Display order in every table and figure: single sample, BoN scorers, FusioN, then the oracle ceilings."""
    for rank, prefix in enumerate(("single", BON_PREFIX, FUSION_PREFIX, "oracle")):
        if method.startswith(prefix):
            return rank, method
    return 4, method  # unknown kinds last


def pair(first: str, second: str) -> str:
    return f"{first}{PAIR_SEPARATOR}{second}"


def split_pair(name: str) -> tuple[str, str]:
    first, sep, second = name.partition(PAIR_SEPARATOR)
    if not sep or not first or not second:
        raise PolyfuseError(f"not a head-to-head pair: {name!r} (expected <method>{PAIR_SEPARATOR}<method>)")
    return first, second


def is_pair(name: str) -> bool:
    return PAIR_SEPARATOR in name


# A head-to-head's verdicts are recorded under a readable label, ``<method> vs <method>``.
PAIR_LABEL = " vs "


def pair_label(name: str) -> str:
    first, second = split_pair(name)
    return f"{first}{PAIR_LABEL}{second}"


def is_head_to_head(method: str) -> bool:
    """Whether a scored method is a head-to-head verdict (its label) rather than one method's own score."""
    return PAIR_LABEL in method or is_pair(method)


# A student of the synthetic-data setting answers as a sampler of its own: `student-<set>`, `student-base` untrained.
STUDENT_PREFIX = "student-"
BASE_STUDENT = "base"


def student(set_name: str) -> str:
    return f"{STUDENT_PREFIX}{set_name}"


def is_student(sampler: str) -> bool:
    return sampler.startswith(STUDENT_PREFIX)


DERIVED_SEPARATOR = "~"
INJECTIONS = ("garbage", "fluent")
ORDERS = ("best-first", "worst-first", "random", "pooled")
RANKED_ORDERS = ("best-first", "worst-first")  # the orders that rank candidates by a metric against the reference
VARIANT_PATTERN = re.compile(
    rf"n(?P<size>[1-9]\d*)s(?P<index>\d+)|(?P<kind>{'|'.join(INJECTIONS)})(?P<k>\d+)|order-(?P<order>{'|'.join(ORDERS)})"
)


def subset_variant(size: int, index: int) -> str:
    return f"n{size}s{index}"


def injection_variant(kind: str, k: int) -> str:
    return f"{kind}{k}"


def order_variant(how: str) -> str:
    return f"order-{how}"


def derived(sampler: str, variant: str) -> str:
    return f"{sampler}{DERIVED_SEPARATOR}{variant}"


def split_derived(name: str) -> tuple[str, str | None]:
    """``(sampler, variant)`` of a derived pool's name; ``(name, None)`` for a sampler's own pool."""
    sampler, sep, variant = name.partition(DERIVED_SEPARATOR)
    return (sampler, variant) if sep else (name, None)


def parse_variant(variant: str) -> tuple[str, dict]:
    """``("subset", {size, index})``, ``("injection", {kind, k})`` or ``("order", {how})``."""
    match = VARIANT_PATTERN.fullmatch(variant)
    if match is None:
        raise PolyfuseError(
            f"unknown derived pool {variant!r}: expected n<size>s<index>, <garbage|fluent><k> or order-<how>"
        )
    if match["size"]:
        return "subset", {"size": int(match["size"]), "index": int(match["index"])}
    if match["kind"]:
        return "injection", {"kind": match["kind"], "k": int(match["k"])}
    return "order", {"how": match["order"]}
