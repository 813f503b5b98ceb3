"""The statistics behind every table: the macro average, BCa bootstrap intervals, the paired sign-flip
permutation test, Holm's adjustment for a family of tests, and the power of a paired comparison (the smallest
effect it could detect, and the items it needs to detect a given one)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_of_means(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """The macro average: each sample's (language's) mean, averaged with equal weight."""
    return np.mean([sample.mean(axis=axis) for sample in samples], axis=0)


def bootstrap_ci(samples, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """BCa bootstrap interval of ``mean_of_means``, resampling items within each sample (stratified).

    BCa rather than percentile: item scores are bounded and skewed (0/100 accuracies near a floor or ceiling,
    win rates), where BCa's bias and skew corrections keep coverage closer to nominal. A sample of one item
    cannot be resampled (scipy needs two): it enters every resample's mean as the constant it is.
    """
    samples = [np.asarray(sample, dtype=float) for sample in samples]
    fixed = [float(sample[0]) for sample in samples if len(sample) == 1]
    varying = [sample for sample in samples if len(sample) >= 2]
    if not varying:
        return float("nan"), float("nan")  # one item says nothing about spread

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        return (np.sum([sample.mean(axis=axis) for sample in resampled], axis=0) + sum(fixed)) / len(samples)

    if all(np.ptp(sample) == 0 for sample in varying):
        estimate = float(statistic(*varying))
        return estimate, estimate  # every resample gives the same value; BCa would warn and return NaN
    result = stats.bootstrap(
        varying,
        statistic,
        n_resamples=resamples,
        confidence_level=confidence,
        method="BCa",
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def holm_adjust(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values: rejecting those below alpha controls the family-wise error at alpha."""
    p_values = np.asarray(p_values, dtype=float)
    order = np.argsort(p_values, kind="stable")
    scaled = (len(p_values) - np.arange(len(p_values))) * p_values[order]
    adjusted = np.empty_like(p_values)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def paired_test(first, second, resamples: int, seed: int) -> tuple[float, float]:
    """Mean paired difference and its two-sided p-value: a sign-flip permutation test over items.

    Exact when the items allow fewer sign patterns than `resamples`; identical methods give p = 1.
    """
    differences = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    if not len(differences):
        return float("nan"), float("nan")
    if not differences.any() or len(differences) == 1:
        return float(differences.mean()), 1.0  # one item has two sign patterns of equal size: p = 1
    result = stats.permutation_test(
        (differences,),
        lambda sample, axis=-1: sample.mean(axis=axis),
        permutation_type="samples",  # with one sample: each item's difference keeps or flips its sign
        n_resamples=resamples,
        alternative="two-sided",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(differences.mean()), float(result.pvalue)


POWER = 0.8  # the conventional power a "could have detected" statement is made at


def alpha_of(settings) -> float:
    """The significance level of a report's `confidence` (report settings, or any mapping holding it)."""
    return 1 - float(settings["confidence"])


def fewest_testable(alpha: float) -> int:
    """The fewest items at which the sign-flip test can reach p < alpha at all: its smallest p is 2 / 2^n."""
    return int(np.floor(np.log2(2 / alpha))) + 1


def detectable_effect(differences, alpha: float, power: float = POWER) -> float:
    """The smallest mean paired difference a two-sided test at `alpha` detects with probability `power`, given
    the observed per-item differences: (t_{1-alpha/2} + t_{power}) * sd / sqrt(n), with n - 1 degrees of freedom.

    The sign-flip test's power is close to the paired t-test's; the t quantiles keep small n honest (the normal
    approximation, z in place of t, promises too much below about 30 items). Infinite where the sign-flip test
    cannot reach `alpha` with n items at all (n = 5 or fewer at 0.05); NaN without items.
    """
    differences = np.asarray(differences, dtype=float)
    n = len(differences)
    if not n:
        return float("nan")
    if n < fewest_testable(alpha):
        return float("inf")
    quantiles = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(quantiles * differences.std(ddof=1) / np.sqrt(n))


def items_needed(sd: float, effect: float, alpha: float, power: float = POWER) -> int:
    """The fewest items at which a paired comparison with per-item difference sd `sd` detects a mean difference of
    `effect` (two-sided, at `alpha`) with probability `power`: the smallest n whose `detectable_effect` is at most
    `effect`. Starts from the normal approximation's n (at least the sign-flip test's `fewest_testable`) and steps
    up for the t quantiles."""
    if not effect or not np.isfinite(sd) or not np.isfinite(effect):
        raise ValueError(f"items_needed: effect {effect!r} and sd {sd!r} must be finite and the effect non-zero")
    if sd == 0:
        return fewest_testable(alpha)  # every item differs by the same amount: the fewest a test can decide on
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = max(fewest_testable(alpha), int(np.ceil((z * sd / abs(effect)) ** 2)))
    while (stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / np.sqrt(n) > abs(effect):
        n += 1
    return n
