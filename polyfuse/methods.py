"""Method names, built and parsed in one place.

A method is what turns a pool into one output: ``single`` (the first candidate), ``oracle`` (the best by the task
metric), ``bon-<selector>`` (Best-of-N under a scorer) or ``fusion-<fusor>`` (a fusor model's answer). A judged
head-to-head pairs two methods as ``<method>__vs__<method>``.
"""

from __future__ import annotations

from polyfuse.errors import PolyfuseError

BON_PREFIX = "bon-"
FUSION_PREFIX = "fusion-"
PAIR_SEPARATOR = "__vs__"
PLAIN_METHODS = ("single", "oracle", "oracle-comet")


def bon(selector: str) -> str:
    return f"{BON_PREFIX}{selector}"


def fusion(fusor: str) -> str:
    return f"{FUSION_PREFIX}{fusor}"


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


def pair(first: str, second: str) -> str:
    return f"{first}{PAIR_SEPARATOR}{second}"


def split_pair(name: str) -> tuple[str, str]:
    first, sep, second = name.partition(PAIR_SEPARATOR)
    if not sep or not first or not second:
        raise PolyfuseError(f"not a head-to-head pair: {name!r} (expected <method>{PAIR_SEPARATOR}<method>)")
    return first, second


def is_pair(name: str) -> bool:
    return PAIR_SEPARATOR in name


# A student of the synthetic-data setting answers as a sampler of its own: `student-<set>`, `student-base` untrained.
STUDENT_PREFIX = "student-"
BASE_STUDENT = "base"


def student(set_name: str) -> str:
    return f"{STUDENT_PREFIX}{set_name}"


def is_student(sampler: str) -> bool:
    return sampler.startswith(STUDENT_PREFIX)
