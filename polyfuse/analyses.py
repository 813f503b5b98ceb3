"""The paper's analyses that need no model: pool subsets, injected pools, shown orders, copy measures, outcomes.

Each function works on what one item's records already hold, so none calls a model:

- ``subset`` (N-scaling): which candidate indices of a pool (``results/<task>/<lang>/pools/<sampler>.jsonl``) form
  the ``index``-th random subset of a given size for one item; the subsets of one (item, size) are distinct as long
  as the pool has enough of them.
- ``inject`` (robustness): a pool's candidate texts with ``k`` of them replaced, at seeded positions, by random
  words (``garbage``) or by distinct other items' candidate texts (``fluent``: fluent wrong answers). The positions for
  ``k`` are the first ``k`` of one seeded shuffle per item, so a larger ``k`` keeps the smaller one's injections,
  and both kinds replace the same positions.
- ``order`` (position bias): the pool indices in the order a fusor is shown them, by the candidates' scores
  (from a selection output's ``scores``), at random, or as pooled.
- ``copy_stats`` (copy rate): how much a fused text (a fusion output's ``output``) takes over from its candidates:
  the paper's closest-candidate ``difflib`` ratio, the share of its characters found in some candidate, the
  candidates it takes most from (all of them when tied), and whether it is a whole copy.
- ``outcomes`` (fusion diagnostics): per-item score differences between fusion and a reference method (from
  ``scores/`` item records), as wins, ties, losses and the size of the losses.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import random
import string
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from polyfuse.errors import PolyfuseError
from polyfuse.fuse import shown_order
from polyfuse.methods import INJECTIONS, ORDERS
from polyfuse.sample import derive_seed

# Up to this many subsets of one size are listed and shuffled; past it they are drawn with rejection instead.
ENUMERATED_SUBSETS = 10_000
GARBAGE_MIN_CHARS = 20


@functools.lru_cache(maxsize=16)
def _shuffled_subsets(pool_size: int, size: int, subset_seed: int) -> tuple[tuple[int, ...], ...]:
    """Every subset of `size` indices, in one seeded order; cached because a caller asks for each index in turn."""
    subsets = list(itertools.combinations(range(pool_size), size))
    random.Random(subset_seed).shuffle(subsets)
    return tuple(subsets)


def subset(pool_size: int, size: int, index: int, seed: int, item_id: str) -> tuple[int, ...]:
    """The `index`-th (0-based) random subset of `size` of an item's `pool_size` candidate indices, sorted.

    Seeded by (seed, item_id, size). Indices below comb(pool_size, size) give distinct subsets; past that they
    wrap around, so the subsets repeat in the same order.
    """
    if not 1 <= size <= pool_size:
        raise PolyfuseError(f"subset size {size} of item {item_id!r} must be between 1 and its pool size {pool_size}")
    if index < 0:
        raise PolyfuseError(f"subset index {index} of item {item_id!r} must not be negative")
    count = math.comb(pool_size, size)
    index %= count
    subset_seed = derive_seed(seed, "subset", item_id, size)
    if count <= ENUMERATED_SUBSETS:
        return _shuffled_subsets(pool_size, size, subset_seed)[index]
    rng = random.Random(subset_seed)
    seen: set[tuple[int, ...]] = set()
    while True:
        drawn = tuple(sorted(rng.sample(range(pool_size), size)))
        if drawn in seen:
            continue
        if len(seen) == index:
            return drawn
        seen.add(drawn)


def garbage_text(chars: int, rng: random.Random) -> str:
    """Random lowercase words of 2 to 9 letters, single-spaced, until the text has at least `chars` characters."""
    words: list[str] = []
    length = -1  # no space before the first word
    while length < chars:
        word = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def inject(
    texts: list[str], k: int, kind: str, seed: int, item_id: str, donors: Iterable[Iterable[str]]
) -> list[tuple[str, str | None]]:
    """One (text, injected kind or None) per position of `texts`, `k` of them replaced at seeded positions.

    ``garbage`` replaces a text with random words of about its length (at least 20 characters); ``fluent`` with `k`
    distinct texts drawn from `donors`, other items' candidate texts (the nearest items first, read as far as the
    largest k of this pool needs), none blank and none equal to one of this item's own: a wrong answer per position,
    not a consensus.
    """
    if kind not in INJECTIONS:
        raise PolyfuseError(f"unknown injected kind {kind!r} for item {item_id!r}; kinds: {', '.join(INJECTIONS)}")
    if not 0 <= k < len(texts):
        # Replacing every candidate would leave nothing to find.
        raise PolyfuseError(f"cannot inject {k} of the {len(texts)} candidates of item {item_id!r}: need 0 <= k < N")
    # Not seeded by k or kind: a larger k extends the smaller one's positions, and both kinds hit the same ones.
    positions = list(range(len(texts)))
    random.Random(derive_seed(seed, "inject", item_id)).shuffle(positions)
    wrong = fluent_texts(texts, k, seed, item_id, donors) if kind == "fluent" else []
    injected: list[tuple[str, str | None]] = [(text, None) for text in texts]
    for rank, position in enumerate(positions[:k]):
        if kind == "garbage":
            rng = random.Random(derive_seed(seed, "inject", kind, item_id, position))
            injected[position] = (garbage_text(max(GARBAGE_MIN_CHARS, len(texts[position])), rng), kind)
        else:
            injected[position] = (wrong[rank], kind)
    return injected


def fluent_texts(texts: list[str], k: int, seed: int, item_id: str, donors: Iterable[Iterable[str]]) -> list[str]:
    """`k` distinct donor texts (stripped, as fusion and selection see them), none blank or equal to one of `texts`.

    Donors are read until there are as many as the largest k this pool allows (len(texts) - 1), whatever `k` is,
    and shuffled once per item, so a larger k keeps the smaller one's texts: the robustness curve stays paired.
    """
    if not k:
        return []
    own = {text.strip() for text in texts}
    eligible: dict[str, None] = {}  # insertion-ordered, so the draw depends on the donors' order alone
    for other in donors:
        eligible.update((text.strip(), None) for text in other if text.strip() and text.strip() not in own)
        if len(eligible) >= len(texts) - 1:
            break
    if len(eligible) < k:
        raise PolyfuseError(
            f"item {item_id!r}: {len(eligible)} distinct donor texts (other items' candidates, none equal to one of its"
            f" own) for {k} fluent wrong answers"
        )
    drawn = list(eligible)
    random.Random(derive_seed(seed, "inject", "fluent", item_id)).shuffle(drawn)
    return drawn[:k]


def order(scores: list[float | None], how: str, seed: int, item_id: str) -> list[int]:
    """Pool indices in the order to show them: position p shows ``pool[order[p]]``, as in a fusion record.

    ``best-first`` and ``worst-first`` sort by score (ties: lower index first; a missing or NaN score last),
    ``random`` is FusioN's own seeded shuffle, ``pooled`` the pool's order.
    """
    if how not in ORDERS:
        raise PolyfuseError(f"unknown order {how!r} for item {item_id!r}; orders: {', '.join(ORDERS)}")
    if how == "random":
        return shown_order(seed, item_id, len(scores))
    if how == "pooled":
        return list(range(len(scores)))
    sign = -1 if how == "best-first" else 1

    def key(index: int) -> tuple[bool, float, int]:
        score = scores[index]
        missing = score is None or math.isnan(score)
        return missing, 0.0 if missing else sign * score, index

    return sorted(range(len(scores)), key=key)


def closest_ratio(target: str, texts: list[str]) -> float:
    """The character-level SequenceMatcher ratio of `target` to its closest text (the paper's copy measure).

    autojunk is off: on texts of 200+ characters it would treat every common letter as junk and understate
    how much is copied. A whole copy is 1.0 without matching, and a text whose quick_ratio (an upper bound)
    cannot beat the best so far is not matched at all.
    """
    if target in texts:
        return 1.0
    matchers = [difflib.SequenceMatcher(None, target, text, autojunk=False) for text in texts]
    best = 0.0
    for matcher in sorted(matchers, key=lambda matcher: -matcher.quick_ratio()):
        if matcher.quick_ratio() <= best:
            break
        best = max(best, matcher.ratio())
    return best


class CopyStats(NamedTuple):
    """How much a fused text takes over from its candidates."""

    ratio: float  # closest_ratio: the paper's measure
    coverage: float  # share of the fused characters inside a long enough matching block with some candidate
    # The candidates whose blocks cover the most fused characters (several when tied, as identical candidates always
    # are: each then shares the credit); empty when none covers any.
    sources: tuple[int, ...]
    copied_whole: bool  # equal to some candidate after stripping


def copy_stats(fused: str, candidates: list[str], min_block: int = 4) -> CopyStats:
    """Copy measures of `fused` against `candidates`; see CopyStats.

    A fused character counts as copied when it lies in a ``difflib`` matching block (autojunk off) of at least
    `min_block` characters with any one candidate; blocks of one candidate do not cross, so text taken from one
    candidate in a different order counts only once per candidate alignment.
    """
    # min_block: unrelated texts share 1-3 character runs (spaces, common letters, short words) by chance.
    covered = [False] * len(fused)
    chars_by_candidate = []
    for candidate in candidates:
        matcher = difflib.SequenceMatcher(None, fused, candidate, autojunk=False)
        # a fused text shorter than min_block (a number, a word) still counts when a candidate holds it whole
        blocks = [block for block in matcher.get_matching_blocks() if block.size >= min(min_block, len(fused))]
        chars = sum(block.size for block in blocks)
        for block in blocks:
            covered[block.a : block.a + block.size] = [True] * block.size
        chars_by_candidate.append(chars)
    most = max(chars_by_candidate, default=0)
    stripped = fused.strip()
    return CopyStats(
        ratio=closest_ratio(fused, candidates),
        coverage=sum(covered) / len(fused) if fused else 0.0,
        sources=tuple(index for index, chars in enumerate(chars_by_candidate) if most and chars == most),
        copied_whole=any(stripped == candidate.strip() for candidate in candidates),
    )


def outcomes(fused: list[float], reference: list[float]) -> dict:
    """Fusion's per-item differences to a reference method: wins, ties, losses and how large the losses are.

    `fused` and `reference` are the two methods' scores on the same items, in the same order. ``worst`` is the
    largest single loss: its item position and its (negative) difference.
    """
    if len(fused) != len(reference):
        raise PolyfuseError(f"fused scores ({len(fused)} items) and reference scores ({len(reference)}) are not paired")
    deltas = [fused_score - reference_score for fused_score, reference_score in zip(fused, reference, strict=True)]
    losses = [-delta for delta in deltas if delta < 0]
    quantiles = np.quantile(losses, [0.5, 0.9, 1.0]).tolist() if losses else [None] * 3
    worst = min(range(len(deltas)), key=deltas.__getitem__) if losses else None
    return {
        "items": len(deltas),
        "wins": sum(delta > 0 for delta in deltas),
        "ties": sum(delta == 0 for delta in deltas),
        "losses": len(losses),
        "mean_delta": float(np.mean(deltas)) if deltas else None,
        "loss_quantiles": dict(zip(("p50", "p90", "max"), quantiles, strict=True)),
        "worst": {"index": worst, "delta": deltas[worst]} if worst is not None else None,
    }
