"""The power behind a verdict: the smallest effect a paired comparison detects, and the items it needs, checked
against the normal approximation's closed form and by simulating the sign-flip test itself."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from polyfuse.statistics import detectable_effect, items_needed, paired_test

Z_975, Z_80 = 1.959963984540054, 0.8416212335729143  # standard normal quantiles, from tables


def exact_sd(n: int, sd: float, seed: int = 0) -> np.ndarray:
    """n values with mean 0 and sample standard deviation exactly `sd`."""
    values = np.random.default_rng(seed).normal(size=n)
    values = values - values.mean()
    return values * sd / values.std(ddof=1)


def test_the_detectable_effect_of_many_items_is_the_normal_approximations_closed_form():
    for n, sd in [(20_000, 12.0), (50_000, 0.7)]:
        closed_form = (Z_975 + Z_80) * sd / math.sqrt(n)
        assert detectable_effect(exact_sd(n, sd) + 3.0, 0.05) == pytest.approx(closed_form, rel=1e-3)


def test_a_few_items_detect_less_than_the_normal_approximation_promises():
    """At n = 10 the t quantiles (2.262 + 0.883 at 9 degrees of freedom) exceed the normal ones (1.960 + 0.842)."""
    assert detectable_effect(exact_sd(10, 1.0), 0.05) == pytest.approx((2.2622 + 0.8834) / math.sqrt(10), rel=1e-3)
    assert math.isnan(detectable_effect([], 0.05))
    assert detectable_effect([2.0] * 6, 0.05) == 0.0  # no spread: six items decide any constant difference


def test_below_six_items_the_sign_flip_test_cannot_reach_five_percent_so_nothing_is_detectable():
    """The test's smallest p is 2 / 2^n: 0.0625 at n = 5, 0.03125 at n = 6 (at 0.01: 0.0156 at 7, 0.0078 at 8)."""
    for n in range(1, 6):
        assert paired_test(np.full(n, 5.0), np.zeros(n), 999, 0)[1] >= 0.05
        assert detectable_effect(exact_sd(n, 1.0) if n > 1 else [1.0], 0.05) == math.inf
    assert paired_test(np.full(6, 5.0), np.zeros(6), 999, 0)[1] < 0.05
    assert (
        math.isfinite(detectable_effect(exact_sd(6, 1.0), 0.05)) and detectable_effect(exact_sd(7, 1), 0.01) == math.inf
    )
    assert items_needed(0.0, 1.0, 0.05) == 6 and items_needed(0.0, 1.0, 0.01) == 8 and items_needed(0.1, 5, 0.05) == 6


def test_items_needed_is_the_smallest_n_whose_detectable_effect_reaches_the_effect():
    for sd, effect, alpha in [(10.0, 2.0, 0.05), (30.0, 2.5, 0.05), (1.0, 1.0, 0.01), (5.0, -0.8, 0.05)]:
        n = items_needed(sd, effect, alpha)
        normal = ((Z_975 if alpha == 0.05 else 2.5758293035489) + Z_80) ** 2 * (sd / effect) ** 2
        assert normal <= n <= normal * 1.1 + 3  # the normal n, a little more for the t quantiles
        assert detectable_effect(exact_sd(n, sd), alpha) <= abs(effect) < detectable_effect(exact_sd(n - 1, sd), alpha)
    with pytest.raises(ValueError):
        items_needed(1.0, 0.0, 0.05)


@pytest.mark.parametrize("effect", [0.5, 1.0])
def test_the_sign_flip_test_detects_the_planned_effect_at_the_planned_n_about_80_percent_of_the_time(effect):
    """Simulated paired data with a known effect and spread, tested as the tables test it."""
    n = items_needed(1.0, effect, 0.05)
    rng = np.random.default_rng(7)
    trials = 500
    detected = sum(paired_test(rng.normal(effect, 1.0, n), np.zeros(n), 999, seed)[1] < 0.05 for seed in range(trials))
    assert abs(detected / trials - 0.8) <= 0.05, (n, detected / trials)


def score_file(path, task, lang, sampler, method, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps(
                {"task": task, "lang": lang, "sampler": sampler, "method": method, "id": f"i{k}", "values": value}
            )
            + "\n"
            for k, value in enumerate(values)
        )
    )


def test_plan_reads_a_pilots_scores_and_prints_the_items_each_comparison_needs(tmp_path):
    rng = np.random.default_rng(1)
    bon = rng.normal(80, 5, 24)
    differences = rng.normal(1.0, 4.0, 24)
    for lang, part in (("de", slice(0, 12)), ("ja", slice(12, 24))):
        cell = tmp_path / "results" / "wmt24pp" / lang / "scores" / "smol"
        score_file(cell / "bon-loglik.jsonl", "wmt24pp", lang, "smol", "bon-loglik", [{"chrf": v} for v in bon[part]])
        fused = bon[part] + differences[part]
        score_file(cell / "fusion-smol.jsonl", "wmt24pp", lang, "smol", "fusion-smol", [{"chrf": v} for v in fused])
        comet = [{"comet": v} for v in bon[part]] + [{"comet": v} for v in fused]
        lines = [("bon-loglik", v) for v in comet[:12]] + [("fusion-smol", v) for v in comet[12:]]
        (cell / "comet.jsonl").write_text(
            "".join(
                json.dumps(
                    {"task": "wmt24pp", "lang": lang, "sampler": "smol", "method": m, "id": f"i{k % 12}", "values": v}
                )
                + "\n"
                for k, (m, v) in enumerate(lines)
            )
        )
        score_file(cell / "h2h" / "x.jsonl", "wmt24pp", lang, "smol", "h2h", [{"winrate": 50.0}])  # not a method
    cell = tmp_path / "results" / "mgsm" / "de" / "scores" / "smol"
    # lang_correct scored none of the fused answers; comet scored nothing (no checkpoint)
    bon_values = [{"accuracy": v, "lang_correct": 100.0, "comet": None} for v in (0, 100, 0)]
    score_file(cell / "bon-loglik.jsonl", "mgsm", "de", "smol", "bon-loglik", bon_values)
    fused_values = [{"accuracy": 100.0, "lang_correct": None, "comet": None}] * 3
    score_file(cell / "fusion-smol.jsonl", "mgsm", "de", "smol", "fusion-smol", fused_values)

    def plan(*args):
        command = [sys.executable, "-m", "polyfuse.plan", "--results", str(tmp_path / "results"), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
        return {row[2].strip(): [cell.strip() for cell in row] for row in rows}

    rows = plan("--effect", "chrf=2")
    assert rows["lang_correct"][4:9] == ["0", "0", "nan", "nan", "nan"] and rows["lang_correct"][9:] == ["—"] * 3
    assert rows["comet"][0] == "wmt24pp"  # mgsm's comet scored nothing: no row of its own (it would replace this)
    # task, sampler, metric, comparison, languages, n, difference, sd, mde, effect, needed, per_language
    assert rows["accuracy"][4:9] == ["1", "3", "66.67", "57.74", "inf"]  # 3 items: no test reaches 0.05
    # no --effect and no paper gain: the items to confirm the pilot's own difference, 100, 0, 100
    needed = items_needed(np.std([100, 0, 100], ddof=1), 200 / 3, 0.05)
    assert rows["accuracy"][9:] == ["66.67 (observed)", str(needed), str(needed)]
    sd = differences.std(ddof=1)
    needed = items_needed(sd, 2.0, 0.05)
    assert rows["chrf"][3:9] == ["fusion-smol − bon-loglik", "2", "24", f"{differences.mean():.2f}", f"{sd:.2f}",
                                 f"{detectable_effect(differences, 0.05):.2f}"]  # fmt: skip
    assert rows["chrf"][9:] == ["2.00 (given)", str(needed), str(math.ceil(needed / 2))]
    assert rows["comet"][9] == "0.80 (paper)"  # the paper's XCOMET-XL gain where --effect names none
    # Four tests in the claims' family: each planned at 0.05 / 4.
    assert plan("--effect", "chrf=2", "--tests", "4")["chrf"][10] == str(items_needed(sd, 2.0, 0.0125))
    for args, message in [
        (["--results", str(tmp_path / "none")], "no score files"),
        (["--results", str(tmp_path / "results"), "--effect", "chrf=nan"], "expected <metric>=<points> with points"),
        (["--results", str(tmp_path / "results"), "--effect", "chrf=-1"], "expected <metric>=<points> with points"),
    ]:
        bad = subprocess.run([sys.executable, "-m", "polyfuse.plan", *args], capture_output=True, text=True)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and message in bad.stderr, bad.stderr
    bad = subprocess.run([sys.executable, "-m", "polyfuse.plan", "--alpha", "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--alpha must be between 0 and 1" in bad.stderr
