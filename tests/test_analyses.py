"""The model-free analyses: pool subsets, injected pools, shown orders, copy measures and fusion outcomes."""

from __future__ import annotations

import difflib
import itertools
import math
import random
import re
from collections import Counter

import pytest

from polyfuse.analyses import CopyStats, closest_ratio, copy_stats, inject, order, outcomes, subset
from polyfuse.errors import PolyfuseError
from polyfuse.fuse import shown_order

TEXTS = [
    "Water the basil when the top of the soil feels dry.",
    "Keep it on a sunny window sill, out of cold drafts.",
    "Pinch off flower buds so the leaves stay tender.",
    "Use a pot with drainage holes and light potting mix.",
    "Harvest from the top, a few leaves at a time.",
]
# Other items' candidate texts, nearest item first: a blank one and one repeated across items.
DONORS = [
    ["Paris is the capital of France.", "   ", "Seven times six is forty-two."],
    ["Paris is the capital of France.", "Bees dance to show the hive where flowers are."],
    ["Sound travels faster in water than in air.", "A year on Mars lasts 687 Earth days."],
]
GARBAGE = re.compile(r"[a-z]{2,9}( [a-z]{2,9})*")


# subset


def test_subsets_are_seeded_by_seed_item_and_size():
    def draws(seed, item_id, pool_size=8, size=3):
        return [subset(pool_size, size, index, seed, item_id) for index in range(10)]

    assert draws(1, "q1") == draws(1, "q1")
    assert draws(1, "q1") != draws(2, "q1")
    assert draws(1, "q1") != draws(1, "q2")
    # Large pools take the rejection path: it is seeded the same way.
    assert draws(1, "q1", 16, 8) == draws(1, "q1", 16, 8)
    assert draws(1, "q1", 16, 8) != draws(2, "q1", 16, 8)


def test_the_subsets_of_one_item_and_size_are_all_distinct_then_wrap():
    count = math.comb(6, 3)
    drawn = [subset(6, 3, index, 7, "q1") for index in range(count)]
    assert sorted(drawn) == list(itertools.combinations(range(6), 3))
    assert [subset(6, 3, count + index, 7, "q1") for index in range(count)] == drawn


def test_subsets_drawn_with_rejection_are_distinct_sorted_and_wrap():
    # comb(16, 8) = 12870 subsets are too many to list: they are drawn with rejection.
    drawn = [subset(16, 8, index, 3, "q1") for index in range(200)]
    assert len(set(drawn)) == 200
    assert all(list(chosen) == sorted(set(chosen)) and len(chosen) == 8 for chosen in drawn)
    assert all(0 <= index < 16 for chosen in drawn for index in chosen)
    assert subset(16, 8, math.comb(16, 8), 3, "q1") == drawn[0]


@pytest.mark.parametrize(("pool_size", "size"), [(8, 3), (16, 8)])
def test_every_candidate_is_drawn_about_equally_often_over_items(pool_size, size):
    draws = 2000
    counts = Counter(index for item in range(draws) for index in subset(pool_size, size, 0, 11, f"q{item}"))
    expected = draws * size / pool_size
    assert set(counts) == set(range(pool_size))
    assert all(abs(count - expected) < 0.2 * expected for count in counts.values())


def test_a_subset_as_large_as_the_pool_is_the_whole_pool():
    assert {subset(5, 5, index, 1, "q1") for index in range(4)} == {(0, 1, 2, 3, 4)}


@pytest.mark.parametrize(("size", "index"), [(0, 0), (6, 0), (2, -1)])
def test_a_subset_size_outside_the_pool_or_a_negative_index_is_an_error(size, index):
    with pytest.raises(PolyfuseError, match="q1"):
        subset(5, size, index, 1, "q1")


# inject


@pytest.mark.parametrize("kind", ["garbage", "fluent"])
def test_injection_replaces_exactly_k_texts_and_leaves_the_rest_in_place(kind):
    for k in range(len(TEXTS)):
        injected = inject(TEXTS, k, kind, 5, "q1", DONORS)
        assert len(injected) == len(TEXTS)
        assert sum(marker == kind for _, marker in injected) == k
        assert all(marker in (None, kind) for _, marker in injected)
        for original, (text, marker) in zip(TEXTS, injected, strict=True):
            if marker is None:
                assert text == original


def test_injected_positions_are_seeded_nested_in_k_and_shared_by_both_kinds():
    def positions(kind, k, seed=5, item_id="q1"):
        return {p for p, (_, marker) in enumerate(inject(TEXTS, k, kind, seed, item_id, DONORS)) if marker}

    for k in range(1, len(TEXTS)):
        assert positions("garbage", k - 1) < positions("garbage", k)
        assert positions("garbage", k) == positions("fluent", k)
    assert any(positions("garbage", 2, seed=seed) != positions("garbage", 2) for seed in range(6, 12))
    assert any(positions("garbage", 2, item_id=f"q{i}") != positions("garbage", 2) for i in range(2, 8))


def test_garbage_is_random_words_about_as_long_as_the_text_it_replaces():
    texts = [*TEXTS, "Short."]
    injected = inject(texts, len(texts) - 1, "garbage", 5, "q1", [])
    for original, (text, marker) in zip(texts, injected, strict=True):
        if marker:
            assert GARBAGE.fullmatch(text)
            assert max(20, len(original)) <= len(text) <= max(20, len(original)) + 9
            assert text not in texts


def test_fluent_answers_are_distinct_nonblank_donor_texts_from_the_nearest_items_first():
    nonblank = [text for other in DONORS for text in other if text.strip()]
    distinct = list(dict.fromkeys(nonblank))
    for seed in range(30):  # read nearest first, pool by pool, until the largest k of a 5-candidate pool (4) is met
        injected = inject(TEXTS, 2, "fluent", seed, "q1", [*DONORS, ["Never read: the first three give five."]])
        assert {text for text, marker in injected if marker} <= set(distinct)
    for seed in range(30):  # issue 17 item 8: never the same wrong text twice
        wrong = [text for text, marker in inject(TEXTS, 4, "fluent", seed, "q1", DONORS) if marker]
        assert len(wrong) == len(set(wrong)) == 4 and set(wrong) <= set(distinct)


def test_fluent_answers_differing_only_in_whitespace_are_one_text_and_a_larger_k_keeps_the_smaller_ones():
    donors = [["Paris.", "Paris.\n", " Rome."], ["Oslo.", "Bern."], ["Lima.", "Kyiv."]]
    wrong = [text for text, marker in inject(TEXTS, 4, "fluent", 3, "q1", donors) if marker]
    assert len(set(wrong)) == 4 and all(text == text.strip() for text in wrong)  # 'Paris.' once at most
    for seed in range(20):
        drawn = {k: inject(TEXTS, k, "fluent", seed, "q1", donors) for k in (1, 2, 3, 4)}
        for k in (1, 2, 3):  # the same positions keep the same wrong texts as k grows
            assert all(drawn[k + 1][p] == pair for p, pair in enumerate(drawn[k]) if pair[1])


def test_a_fluent_answer_is_never_one_of_the_items_own_candidates():
    texts = [*TEXTS[:2], "Paris is the capital of France.", *TEXTS[3:]]
    for seed in range(30):
        wrong = [text for text, marker in inject(texts, 3, "fluent", seed, "q1", DONORS) if marker]
        assert "Paris is the capital of France." not in wrong and len(set(wrong)) == 3


def test_fluent_injection_without_enough_distinct_donors_names_the_item():
    with pytest.raises(PolyfuseError, match="'q9'"):
        inject(TEXTS, 1, "fluent", 5, "q9", [["", "  "]])
    with pytest.raises(PolyfuseError, match="'q9': 1 distinct donor texts .* for 2"):
        inject(TEXTS, 2, "fluent", 5, "q9", [["Same.", "Same.", " "], [TEXTS[0]]])
    assert inject(TEXTS, 0, "fluent", 5, "q9", []) == [(text, None) for text in TEXTS]


@pytest.mark.parametrize(
    ("k", "kind", "message"),
    [(5, "garbage", "0 <= k < N"), (-1, "fluent", "0 <= k < N"), (1, "typo", "garbage, fluent")],
)
def test_injecting_every_text_or_an_unknown_kind_is_an_error(k, kind, message):
    with pytest.raises(PolyfuseError, match=message):
        inject(TEXTS, k, kind, 5, "q1", DONORS)


# order

SCORES = [0.2, 0.9, None, 0.5, 0.9, float("nan")]


def test_score_orders_put_ties_by_index_and_missing_scores_last():
    assert order(SCORES, "best-first", 1, "q1") == [1, 4, 3, 0, 2, 5]
    assert order(SCORES, "worst-first", 1, "q1") == [0, 3, 1, 4, 2, 5]
    assert order(SCORES, "pooled", 1, "q1") == list(range(6))


def test_random_order_is_the_fusors_seeded_shuffle():
    shuffled = order(SCORES, "random", 3, "q1")
    assert shuffled == shown_order(3, "q1", len(SCORES))
    assert sorted(shuffled) == list(range(len(SCORES)))
    assert any(order(SCORES, "random", 3, f"q{i}") != shuffled for i in range(2, 8))


def test_an_unknown_order_is_an_error_listing_the_orders():
    with pytest.raises(PolyfuseError, match="best-first, worst-first, random, pooled"):
        order(SCORES, "shuffled", 1, "q1")


# copy measures


def test_closest_ratio_equals_the_best_ratio_over_all_candidates():
    rng = random.Random(7)
    words = "the basil window water soil sunny keep light warm leaves pot drain".split()
    for _ in range(30):
        texts = [" ".join(rng.choices(words, k=rng.randint(3, 30))) for _ in range(4)]
        target = " ".join(texts[0].split()[:5] + texts[1].split()[5:])
        brute = max(difflib.SequenceMatcher(None, target, text, autojunk=False).ratio() for text in texts)
        assert closest_ratio(target, texts) == brute


def test_a_whole_copy_is_fully_covered_and_copied_whole():
    assert copy_stats(TEXTS[1], TEXTS) == CopyStats(ratio=1.0, coverage=1.0, sources=(1,), copied_whole=True)
    stripped_copy = copy_stats(f"  {TEXTS[2]}\n", TEXTS)
    assert stripped_copy.copied_whole and stripped_copy.sources == (2,) and stripped_copy.ratio < 1.0


def test_a_text_sharing_no_letter_with_the_candidates_copies_nothing():
    assert copy_stats("0123-4567-89", ["abcd efgh", "ijkl mnop"]) == CopyStats(0.0, 0.0, (), False)
    assert copy_stats("", TEXTS).coverage == 0.0


def test_identical_candidates_are_all_sources_of_a_copy_of_them():
    # issue 17 item 7: duplicates tie; the lowest index alone would credit whichever is shown first
    stats = copy_stats("Das Haus ist alt.", ["Das Haus ist alt.", "Ein Baum.", "Das Haus ist alt. "])
    assert stats.sources == (0, 2) and stats.copied_whole
    assert copy_stats("zzzz", ["abc", "def"]).sources == ()


def test_half_taken_from_one_candidate_is_half_covered_with_that_source():
    candidates = ["THE SHOUTED TEXT SHARES NO LOWERCASE LETTER AT ALL", TEXTS[0]]
    stats = copy_stats(TEXTS[0][:40] + "0123456789" * 4, candidates)
    assert stats.coverage == 0.5
    assert stats.sources == (1,)
    assert not stats.copied_whole


def test_coverage_is_the_union_over_candidates_and_the_source_the_larger_one():
    first, second = TEXTS[3], TEXTS[4][:30]
    stats = copy_stats(first + " " + second, [TEXTS[0], first, second])
    assert stats.coverage == pytest.approx(1.0, abs=0.02)
    assert stats.sources == (1,)
    assert stats.ratio < 1.0


def test_runs_shorter_than_the_minimum_block_are_chance_not_copying():
    assert copy_stats("cat dog", ["dog cat"]).coverage == 0.0
    assert copy_stats("cat dog", ["dog cat"], min_block=3).coverage == pytest.approx(3 / 7)


def test_copy_measures_work_on_japanese_text():
    candidates = ["バジルは土の表面が乾いたら水をやります。", "日当たりの良い窓辺に置いてください。"]
    fused = candidates[1][:10] + "ＡＢＣＤＥＦＧＨＩＪ"
    stats = copy_stats(fused, candidates)
    assert stats.coverage == 0.5
    assert stats.sources == (1,)
    assert copy_stats(candidates[0], candidates) == CopyStats(1.0, 1.0, (0,), True)


# outcomes


def test_outcomes_count_wins_ties_losses_and_size_the_losses():
    result = outcomes([1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 2.0, 5.0, 4.5, 1.0])
    assert result["items"] == 5
    assert (result["wins"], result["ties"], result["losses"]) == (2, 1, 2)
    assert result["mean_delta"] == pytest.approx(0.5)
    assert result["loss_quantiles"] == pytest.approx({"p50": 1.25, "p90": 1.85, "max": 2.0})
    assert result["worst"] == {"index": 2, "delta": -2.0}


def test_outcomes_without_losses_or_items_have_no_loss_sizes():
    result = outcomes([1.0, 2.0], [1.0, 1.5])
    assert (result["wins"], result["ties"], result["losses"]) == (1, 1, 0)
    assert result["loss_quantiles"] == {"p50": None, "p90": None, "max": None}
    assert result["worst"] is None
    assert outcomes([], [])["mean_delta"] is None


def test_outcomes_of_unpaired_score_lists_are_an_error():
    with pytest.raises(PolyfuseError, match="3 items"):
        outcomes([1.0, 2.0, 3.0], [1.0, 2.0])
