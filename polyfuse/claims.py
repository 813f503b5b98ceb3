"""The claims table (``results/README.md``): each claim of the paper beside what this run found.

A claim is checked per sampler on this run's item scores with a paired sign-flip test over items (the resampling
unit; an item is a task's prompt in one language), Holm-adjusted over every tested row of the table, and reads
**reproduced** (the paper's direction, significant at the report's level after the adjustment), **not reproduced**
(the opposite direction, significant), **inconclusive** (the test cannot
tell the directions apart at this size, or most fused answers were fallbacks, not the fusor's own) or **not
measurable** (the study has no cell the claim is about, or the analysis it needs did not run).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polyfuse import methods
from polyfuse.analysis_report import (
    ANALYSES,
    FUSED_KEY,
    fused_items,
    nscaling_fusions,
    nscaling_points,
    pool_sizes,
    primary_scores,
)
from polyfuse.distill_report import compared_samplers
from polyfuse.io import write_text
from polyfuse.statistics import alpha_of, detectable_effect, holm_adjust, paired_test
from polyfuse.tables import mde, mde_note, read_item_scores
from polyfuse.tasks import task_kind

NOT_MEASURABLE = "not measurable"
PAPER_COPY_RATE = 80.0  # percent: "the fused text takes over 80% from the candidates"
MIN_PARSED = 0.5  # below this share of parsed fused answers, FusioN's scores are mostly its fallback's
# A copy rate from fewer of the fusor's own answers is no evidence: two whole copies give the interval [100, 100].
MIN_PARSED_ITEMS = 10
LEVEL_OFF_N = 7  # "gains level off past N ≈ 7"
METRIC_NAMES = {
    "chrf": "chrF",
    "comet": "COMET",
    "winrate": "judge win rate",
    "accuracy": "accuracy",
    "lang_correct": "language correctness",
}


def verdict(difference: float, p: float, alpha: float) -> str:
    """The paper's direction is a positive `difference`."""
    if not np.isfinite(p):
        return NOT_MEASURABLE
    if p >= alpha:
        return "inconclusive"
    return "reproduced" if difference > 0 else "not reproduced"


def paired(frame: pd.DataFrame, first: str, second: str, settings: dict) -> tuple[float, float, int, float]:
    """Mean paired difference first − second over the items both scored, its p-value, the item count and the
    smallest difference the test detects at the report's level with 80% power."""
    by_item = frame.pivot_table(index=["task", "lang", "id"], columns="method", values="value", aggfunc="first")
    if first not in by_item or second not in by_item:
        return float("nan"), float("nan"), 0, float("nan")
    both = by_item[[first, second]].dropna()
    difference, p = paired_test(both[first], both[second], int(settings["bootstrap"]), int(settings["seed"]))
    return difference, p, len(both), detectable(both[first] - both[second], settings)


def detectable(differences, settings: dict) -> float:
    return detectable_effect(differences, alpha_of(settings))


def tasks_of(settings: dict, kind: str) -> set[str]:
    return {task for task, spec in settings["tasks"].items() if spec["kind"] == kind}


def claim_metric(items: pd.DataFrame, settings: dict, kind: str) -> tuple[str, str]:
    """The metric the claims on `kind` read, and its name in a row: a model metric the study computed (COMET, with
    the configured model) where any item has one, as the paper used XCOMET-XL; else the kind's primary metric."""
    of_kind = items[items["task"].isin(tasks_of(settings, kind))]
    for metric in task_kind(kind).extra_metrics:
        if of_kind.loc[of_kind["metric"] == metric, "value"].notna().any():
            model = settings.get("comet_model")
            return metric, METRIC_NAMES[metric] + (f" ({model})" if model else "")
    primary = task_kind(kind).metrics[0]
    return primary, METRIC_NAMES.get(primary, primary)


def sampler_items(items: pd.DataFrame, settings: dict, kind: str, metric: str) -> pd.DataFrame:
    """Item scores on `metric` of every test task of `kind`: the samplers' own methods only."""
    own = ~items["sampler"].map(methods.is_student) & items["sampler"].map(lambda s: not methods.split_derived(s)[1])
    single_methods = ~items["method"].map(methods.is_head_to_head)  # head-to-head verdicts have tables of their own
    return items[items["task"].isin(tasks_of(settings, kind)) & (items["metric"] == metric) & own & single_methods]


def student_frame(items: pd.DataFrame, settings: dict, kind: str, metric: str, samplers: list[str]) -> pd.DataFrame:
    """The students' answers on `metric` of the evaluated tasks of `kind`, each student's sampler as its method."""
    tasks = tasks_of(settings, kind) & set(settings["distill"]["evaluate"])
    chosen = items[
        items["task"].isin(tasks)
        & (items["metric"] == metric)
        & (items["method"] == "single")
        & items["sampler"].isin(samplers)
    ]
    return chosen.assign(method=chosen["sampler"], sampler="students")


def method_pairs(items: pd.DataFrame, first_family: str, second_family: str) -> list[tuple[str, str]]:
    present = sorted(items["method"].unique(), key=methods.method_rank)
    return [
        (first, second)
        for first in present
        if methods.parse(first)[0] == first_family
        for second in present
        if methods.parse(second)[0] == second_family
    ]


def subset_fusions(fused: pd.DataFrame, size: int) -> pd.DataFrame:
    """The fusions of the N-scaling's subsets of `size`, per item under its base sampler: `parsed` is the share of
    the item's subset fusions that parsed, and its answers are the fusor's own when all did."""
    if fused.empty:
        return fused
    of_size = fused["variant"].map(
        lambda v: bool(v) and methods.parse_variant(v)[0] == "subset" and methods.parse_variant(v)[1]["size"] == size
    )
    subsets = fused[of_size.astype(bool)].assign(sampler=lambda frame: frame["base"])
    return subsets.groupby(list(FUSED_KEY), as_index=False)["parsed"].mean()  # 1: every subset's fusion parsed


def fusor_own(own: pd.DataFrame, fused: pd.DataFrame, sampler: str, fusion: str, first: str, second: str, settings):
    """The parsed share of the fusions a comparison tests, and the comparison on the fusor's own answers alone.

    (share, difference, p, n), share None when a tested item has no fusion record to say whether it parsed.
    """
    by_item = own.pivot_table(index=["task", "lang", "id"], columns="method", values="value", aggfunc="first")
    tested = by_item[[first, second]].dropna().index if {first, second} <= set(by_item) else by_item.index[:0]
    marks = fused[(fused["sampler"] == sampler) & (fused["method"] == fusion)].set_index(["task", "lang", "id"])
    parsed = marks["parsed"].reindex(tested)
    if not len(tested) or parsed.isna().any():
        return None, float("nan"), float("nan"), 0
    kept = own.set_index(["task", "lang", "id"]).index.isin(tested[(parsed == 1).to_numpy()])
    difference, p, n, _ = paired(own[kept], first, second, settings)
    return float(parsed.mean()), difference, p, n


def tested_row(claim: str, paper: str, found: str, p: float, decide) -> dict:
    """A row whose verdict is `decide(p)`: standalone here, and again at the p the table's multiplicity gives it."""
    return {"claim": claim, "paper": paper, "found": found, "verdict": decide(p), "p": p, "decide": decide}


def language_tally(own: pd.DataFrame, first: str, second: str, settings: dict) -> tuple[list[str], list[str], int]:
    """The languages where first − second is significantly positive and negative (Holm over the languages)."""
    alpha = alpha_of(settings)
    languages = sorted(own["lang"].unique())
    tests = [paired(own[own["lang"] == lang], first, second, settings) for lang in languages]
    tested = [
        (lang, difference, p) for lang, (difference, p, _, _) in zip(languages, tests, strict=True) if np.isfinite(p)
    ]
    adjusted = holm_adjust([p for _, _, p in tested]) if tested else []
    ahead = [lang for (lang, d, _), q in zip(tested, adjusted, strict=True) if q < alpha and d > 0]
    behind = [lang for (lang, d, _), q in zip(tested, adjusted, strict=True) if q < alpha and d < 0]
    return ahead, behind, len(languages)


def paired_claim(
    items, families, settings, claim, paper, fused, per_language=False, metric="", missing="no cell of this kind"
) -> list[dict]:
    """One row per sampler and method pair: the paired difference, its p, and the verdict.

    FusioN is compared twice: as deployed (its fallbacks included) and on the fusor's own parsed answers alone,
    against the same method on the same items. A verdict needs both, in the same direction: the row's p is the
    larger of the two (an intersection-union test), and a disagreement is inconclusive.
    """
    alpha = alpha_of(settings)
    rows = []
    for sampler, own in items.groupby("sampler"):
        for first, second in method_pairs(own, *families):
            difference, p, n, least = paired(own, first, second, settings)
            found = f"{sampler}: {first} − {second}: {difference:+.1f} (p={p:.3f}, n={n} items, {mde(least)})"
            found = f"{metric}; {found}" if metric else found
            majority = True
            if per_language:  # the claim is "in most languages": significant wins per language, not directions
                ahead, behind, count = language_tally(own, first, second, settings)
                found += (
                    f"; significantly ahead in {len(ahead)}/{count} languages ({', '.join(ahead) or 'none'}), "
                    f"behind in {len(behind)} ({', '.join(behind) or 'none'})"
                )
                majority = 2 * len(ahead) > count
            fusion = first if methods.parse(first)[0] == "fusion" else second
            share, own_difference, own_p, own_n = fusor_own(own, fused, sampler, fusion, first, second, settings)
            if share is None:
                found += "; no record says which of the fused answers tested parsed"
            elif not own_n:
                found += f"; {share:.0%} of the fused answers tested parsed: no item has the fusor's own answer"
            else:
                found += (
                    f"; {share:.0%} of the fused answers tested parsed; on the {own_n} items whose fusions all "
                    f"parsed (the fusor's own): {own_difference:+.1f} (p={own_p:.3f})"
                )
            both_p = max(p, own_p) if np.isfinite(own_p) else p

            def decide(
                p, difference=difference, own_difference=own_difference, own_n=own_n, majority=majority, share=share
            ):
                if share is None:
                    return NOT_MEASURABLE  # the parse guard cannot be checked
                result = verdict(difference, p, alpha)
                if result in ("reproduced", "not reproduced") and (
                    not own_n or verdict(own_difference, p, alpha) != result
                ):
                    result = "inconclusive"  # as deployed and on the fusor's own answers, the evidence disagrees
                if result == "reproduced" and not majority:
                    result = "inconclusive"
                if share < MIN_PARSED and result != NOT_MEASURABLE:
                    result = "inconclusive"  # mostly the fallback's text, not the fusor's
                return result

            rows.append(tested_row(claim, paper, found, both_p, decide))
    if not rows:
        return [{"claim": claim, "paper": paper, "found": f"{missing} in the study", "verdict": NOT_MEASURABLE}]
    return rows


def twice_claim(points: pd.DataFrame, settings: dict, fused: pd.DataFrame, metric: str) -> list[dict]:
    """FusioN at N against BoN at 2N, paired per item, for every N whose double the N-scaling also ran."""
    claim = "N-scaling: BoN at twice the samples does not beat FusioN (BoN needs about twice the samples to match)"
    paper = "BoN needs about 2N samples to match FusioN at N"
    sizes = sorted(set(points["n"]))
    doubled = [n for n in sizes if n >= 2 and 2 * n in sizes]
    if not doubled:
        found = f"the N-scaling has no N with its double (N = {', '.join(map(str, sizes))}); add both to analyses.sizes"
        return [{"claim": claim, "paper": paper, "found": found, "verdict": NOT_MEASURABLE}]
    family = points["method"].map(lambda method: methods.parse(method)[0])
    rows = []
    for n in doubled:
        fusion_at_n = points[(points["n"] == n) & (family == "fusion")]
        bon_at_double = points[(points["n"] == 2 * n) & (family == "bon")]
        items = pd.concat([fusion_at_n, bon_at_double], ignore_index=True)
        named = f"{metric}; FusioN at N = {n}, BoN at N = {2 * n}"
        rows += paired_claim(items, ("fusion", "bon"), settings, claim, paper, subset_fusions(fused, n), metric=named)
    for row in rows:  # no significant difference is a match or too few items: without a margin, it stays undecided
        if "decide" in row:
            row["found"] += "; a match reads inconclusive (no equivalence margin)"
    return rows


def level_off_claim(points: pd.DataFrame, settings: dict, fused: pd.DataFrame, metric: str) -> list[dict]:
    """Per cell and fusor: FusioN's gain per added candidate up to N = 7 against its gain per candidate past 7 (up to
    the cell's largest N), paired per item. `fused`: the N-scaling's fused items with their N."""
    claim = f"N-scaling: FusioN's gains level off past N ≈ {LEVEL_OFF_N}"
    paper = f"win rate rises with N and levels off past N ≈ {LEVEL_OFF_N}"
    alpha, rows, unmeasured = alpha_of(settings), [], []
    fusions = points[points["method"].map(lambda method: methods.parse(method)[0] == "fusion")]
    for (task, lang, sampler, method), curve in fusions.groupby(["task", "lang", "sampler", "method"]):
        ran, top = sorted(set(curve["n"])), int(curve["n"].max())
        by_n = curve.pivot_table(index="id", columns="n", values="value", aggfunc="first")
        by_n = by_n.reindex(columns=[1, LEVEL_OFF_N, top]).dropna()
        cell = f"{task}/{lang}/{sampler} {method}"
        if LEVEL_OFF_N not in ran or 1 not in ran or top <= LEVEL_OFF_N or by_n.empty:
            unmeasured.append(f"{cell} ran N = {', '.join(map(str, ran))}")
            continue
        early = (by_n[LEVEL_OFF_N] - by_n[1]) / (LEVEL_OFF_N - 1)
        late = (by_n[top] - by_n[LEVEL_OFF_N]) / (top - LEVEL_OFF_N)
        difference, p = paired_test(early, late, int(settings["bootstrap"]), int(settings["seed"]))
        at = fused[
            (fused["task"] == task)
            & (fused["lang"] == lang)
            & (fused["sampler"] == sampler)
            & (fused["method"] == method)
            & fused["n"].isin([LEVEL_OFF_N, top])
        ]
        share = float(at["parsed"].mean()) if len(at) else None
        found = (
            f"{metric}; {cell}: gain per candidate from N = 1 to {LEVEL_OFF_N} {early.mean():+.2f}, from "
            f"{LEVEL_OFF_N} to {top} {late.mean():+.2f}; difference {difference:+.2f} (p={p:.3f}, n={len(by_n)} items, "
            f"{mde(detectable(early - late, settings), digits=2)})"
            + ("; no record says which fusions parsed" if share is None else f"; {share:.0%} of those fusions parsed")
        )

        def decide(p, difference=difference, share=share):
            if share is None:
                return NOT_MEASURABLE
            result = verdict(difference, p, alpha)
            return "inconclusive" if share < MIN_PARSED and result != NOT_MEASURABLE else result

        rows.append(tested_row(claim, paper, found, p, decide))
    if rows:
        return rows
    found = f"it needs N = 1, N = {LEVEL_OFF_N} and a pool of more than {LEVEL_OFF_N} candidates per cell; " + (
        "; ".join(unmeasured) if unmeasured else "no FusioN curve"
    )
    return [{"claim": claim, "paper": paper, "found": found, "verdict": NOT_MEASURABLE}]


# The paper's downstream findings per kind of evaluated task: (claim, paper, FusioN-data ahead?, per language?).
STUDENT_CLAIMS = {
    ("chat", "winrate"): (
        "chat: FusioN-data student beats the BoN-data student",
        "+2.5 win rate vs Gemini 2.5 Flash (46.3 vs 43.8)",
        True,
        0,
    ),
    ("translation", None): ("WMT24++: FusioN-data student beats the BoN-data student", "+0.8 XCOMET-XL", True, 0),
    ("factqa", "accuracy"): (
        "GeoFactX: FusioN-data student more accurate in most languages",
        "FusioN better in 4 of 5 languages",
        True,
        1,
    ),
    ("factqa", "lang_correct"): (
        "GeoFactX: FusioN-data student slightly worse on language correctness",
        "FusioN slightly worse on language correctness",
        False,
        0,
    ),
    ("math", "accuracy"): (
        "MGSM: BoN-data student beats the FusioN-data student",
        "BoN ahead after fine-tuning",
        False,
        0,
    ),
}


def student_pair_row(own, first, second, settings, claim, paper, metric, per_language) -> dict:
    """One paired row between two students (first − second in the paper's direction), Holm-family member."""
    alpha = alpha_of(settings)
    difference, p, n, least = paired(own, first, second, settings)
    found = f"{metric}; {first} − {second}: {difference:+.1f} (p={p:.3f}, n={n} items, {mde(least)})"
    majority = True
    if per_language:
        ahead, behind, count = language_tally(own, first, second, settings)
        found += (
            f"; significantly ahead in {len(ahead)}/{count} languages ({', '.join(ahead) or 'none'}), "
            f"behind in {len(behind)} ({', '.join(behind) or 'none'})"
        )
        majority = 2 * len(ahead) > count

    def decide(p, difference=difference, majority=majority):
        result = verdict(difference, p, alpha)
        return "inconclusive" if result == "reproduced" and not majority else result

    return tested_row(claim, paper, found, p, decide)


def student_claims(items: pd.DataFrame, settings: dict) -> list[dict]:
    """Setting 2: the students of ``distill.compare`` on every evaluated task's metric, and the teacher pool's order
    (single-sample data below BoN data below FusioN data, on the compared sets' pool)."""
    distill = settings.get("distill")
    if not distill:
        found = "the study has no synthetic-data setting (distill)"
        claim, paper = "Setting 2: FusioN data makes better students than BoN data", "+2.5 win rate, +0.8 XCOMET-XL"
        return [{"claim": claim, "paper": paper, "found": found, "verdict": NOT_MEASURABLE}]
    (bon_set, fusion_set), (bon_student, fusion_student) = compared_samplers(settings)
    rows = []
    for (kind, chosen), (claim, paper, fusion_ahead, per_language) in STUDENT_CLAIMS.items():
        claim = f"Setting 2: {claim}"
        metric, name = (chosen, METRIC_NAMES[chosen]) if chosen else claim_metric(items, settings, kind)
        own = student_frame(items, settings, kind, metric, [bon_student, fusion_student])
        if own["method"].nunique() < 2:
            found = f"no evaluated {kind} task scored both students on {name} (distill.evaluate)"
            rows.append({"claim": claim, "paper": paper, "found": found, "verdict": NOT_MEASURABLE})
            continue
        first, second = (fusion_student, bon_student) if fusion_ahead else (bon_student, fusion_student)
        rows.append(student_pair_row(own, first, second, settings, claim, paper, name, bool(per_language)))
    # the teacher-pool table's order on the compared pool: a single sample's data below BoN's
    pool = distill["sets"][bon_set]["pool"]
    singles = [name for name, spec in distill["sets"].items() if spec["pool"] == pool and spec["method"] == "single"]
    claim, paper = "Setting 2: the teacher-pool table's order: BoN data above a single sample's", "57.9 → 61.0 win rate"
    if not singles:
        found = f"no single-sample set of pool {pool!r} (distill.sets with method: single)"
        return [*rows, {"claim": claim, "paper": paper, "found": found, "verdict": NOT_MEASURABLE}]
    single_student, ordered = methods.student(singles[0]), []
    for kind in ("chat", "translation", "factqa", "math"):
        metric, name = claim_metric(items, settings, kind)
        own = student_frame(items, settings, kind, metric, [bon_student, single_student])
        if own["method"].nunique() == 2:
            ordered.append(student_pair_row(own, bon_student, single_student, settings, claim, paper, name, False))
    if not ordered:
        found = f"no evaluated task scored both {bon_student} and {single_student}"
        ordered = [{"claim": claim, "paper": paper, "found": found, "verdict": NOT_MEASURABLE}]
    return rows + ordered


def nscaling_claims(points: pd.DataFrame | None, settings: dict, fused: pd.DataFrame, sizes: dict) -> list[dict]:
    """FusioN at N = 2 against the single sample and BoN at N = 2; BoN at 2N against FusioN at N; the level-off."""
    claim = "N-scaling: FusioN at N = 2 already beats the single sample and BoN at the same N"
    paper = "FusioN at N = 2 about +6 win rate over the single sample"
    if points is None or points.empty:
        found = "N-scaling did not run (analyses.sizes)"
        claims = [
            (claim, paper),
            (
                "N-scaling: BoN at twice the samples does not beat FusioN (BoN needs about twice the samples to match)",
                "BoN needs about 2N samples to match FusioN at N",
            ),
            (f"N-scaling: FusioN's gains level off past N ≈ {LEVEL_OFF_N}", f"gains level off past N ≈ {LEVEL_OFF_N}"),
        ]
        return [{"claim": c, "paper": p, "found": found, "verdict": NOT_MEASURABLE} for c, p in claims]
    # the N-scaling's primary metric (each task's own; the rows name them all)
    names = {METRIC_NAMES.get(settings.get("metrics", {}).get(task, ""), "") for task in points["task"]}
    metric = ", ".join(sorted(filter(None, names)))
    if 2 in set(points["n"]):
        at_one = points[points["n"] == 1].drop_duplicates(["task", "lang", "sampler", "id"]).assign(method="single")
        items = pd.concat([at_one, points[points["n"] == 2]], ignore_index=True)
        at_two = subset_fusions(fused, 2)  # the fusions the claim tests: the N = 2 subsets', not the full pool's
        rows = paired_claim(items, ("fusion", "single"), settings, claim, paper, at_two, metric=metric)
        rows += paired_claim(items, ("fusion", "bon"), settings, claim, paper, at_two, metric=metric)
    else:
        rows = [{"claim": claim, "paper": paper, "found": "N-scaling did not run at N = 2", "verdict": NOT_MEASURABLE}]
    rows += twice_claim(points, settings, fused, metric)
    analysed = pd.Series(
        [key in sizes for key in zip(fused["task"], fused["lang"], fused["sampler"], strict=True)],
        index=fused.index,
        dtype=bool,
    )
    curve = nscaling_fusions(fused[analysed & (fused["variant"] == "")], sizes)
    subsets = fused[fused["variant"].map(lambda v: bool(v) and methods.parse_variant(v)[0] == "subset").astype(bool)]
    rows += level_off_claim(points, settings, pd.concat([curve, nscaling_fusions(subsets, sizes)]), metric)
    return rows


def fusor_claim(fusors: pd.DataFrame | None, settings: dict) -> list[dict]:
    """Per cell: the largest listed model against the smallest, as fusor (must rise) and as BoN scorer (must not)."""
    claim = "Fusion improves with fusor size; the same models as BoN scorers do not"
    paper = "fusors 4B → 111B: rising; as BoN scorers: flat"
    if fusors is None or fusors.empty:
        found = "the fusor-choice analysis did not run (analyses.fusors)"
        return [{"claim": claim, "paper": paper, "found": found, "verdict": NOT_MEASURABLE}]
    alpha, rows = alpha_of(settings), []
    for (task, lang, sampler), cell in fusors.groupby(["task", "lang", "sampler"], sort=False):
        ends = cell.sort_values("position").groupby("role")  # nth, not first/last, which skip missing values
        smallest, largest = ends.nth(0).set_index("role"), ends.nth(-1).set_index("role")
        if not {"fusor", "BoN scorer"} <= set(largest.index):
            continue
        fusor, scorer, first = largest.loc["fusor"], largest.loc["BoN scorer"], smallest.loc["fusor"]
        # The claim is a contrast: fusion gains more from the larger model than selection does, item by item.
        interaction, p = float(fusor.get("interaction", np.nan)), float(fusor.get("interaction_p", np.nan))
        count = int(fusor["interaction_n"]) if pd.notna(fusor.get("interaction_n")) else 0
        found = (
            f"{task}/{lang}/{sampler}: {first.model} → {fusor.model}: as fusor {fusor.gain:+.1f}, as BoN scorer "
            f"{scorer.gain:+.1f}; fusor gain − scorer gain per item {interaction:+.1f} (p={p:.3f}, n={count} paired "
            f"items); parsed {first.parsed:.0%} → {fusor.parsed:.0%}"
        )

        def decide(p, interaction=interaction, fusor=fusor, first=first):
            rising = verdict(interaction, p, alpha)
            if rising != NOT_MEASURABLE and not min(first.parsed, fusor.parsed) >= MIN_PARSED:
                rising = "inconclusive"  # at either end mostly the fallback's text, not the fusor's
            return rising

        rows.append(tested_row(claim, paper, found, p, decide))
    return rows or [{"claim": claim, "paper": paper, "found": "no cell has both roles", "verdict": NOT_MEASURABLE}]


def copy_claim(diagnostics: pd.DataFrame | None, settings: dict) -> dict:
    claim = "The fused text takes most of its characters from the candidates"
    paper = f"copy rate (difflib, closest candidate) above {PAPER_COPY_RATE:.0f}%"
    if diagnostics is None or diagnostics.empty:
        return {"claim": claim, "paper": paper, "found": "diagnostics did not run", "verdict": NOT_MEASURABLE}
    cells = diagnostics.drop_duplicates(["task", "lang", "sampler", "method"]).dropna(subset=["copy_ratio"])
    if cells.empty:
        found = "no fused answer parsed (every output was a fallback)"
        return {"claim": claim, "paper": paper, "found": found, "verdict": NOT_MEASURABLE}
    lines = [
        f"{row.task}/{row.lang}/{row.sampler} {row.method}: {100 * row.copy_ratio:.1f}% "
        f"[{100 * row.copy_ratio_low:.1f}, {100 * row.copy_ratio_high:.1f}] over {int(row.parsed_items)} parsed "
        f"({row.parsed:.0%})"
        + ("" if row.parsed_items >= MIN_PARSED_ITEMS else f", under {MIN_PARSED_ITEMS}: no evidence")
        for row in cells.itertuples(index=False)
    ]
    cells = cells[cells["parsed_items"] >= MIN_PARSED_ITEMS]
    lows, highs = cells["copy_ratio_low"] * 100, cells["copy_ratio_high"] * 100
    if cells.empty:
        result = "inconclusive"  # no cell has enough of the fusor's own answers
    elif (lows > PAPER_COPY_RATE).all():
        result = "reproduced"
    elif (highs < PAPER_COPY_RATE).all():
        result = "not reproduced"
    else:
        result = "inconclusive"
    return {"claim": claim, "paper": paper, "found": "; ".join(lines), "verdict": result}


def claims_table(
    scores, points, diagnostics, fusors, fused: pd.DataFrame, settings: dict, sizes: dict | None = None
) -> pd.DataFrame:
    """Every claim of the paper, each on its task's metric: `sizes` are the N-scaling pools' sizes."""
    items = read_item_scores(scores)
    chat_metric, chat_name = claim_metric(items, settings, "chat")
    translation_metric, translation_name = claim_metric(items, settings, "translation")
    math_metric, math_name = claim_metric(items, settings, "math")
    chat = sampler_items(items, settings, "chat", chat_metric)
    translation = sampler_items(items, settings, "translation", translation_metric)
    math = sampler_items(items, settings, "math", math_metric)
    oracle = methods.oracle_by(translation_metric)  # the ceiling of selection by the metric the row reads
    rows = [
        *paired_claim(
            chat,
            ("fusion", "bon"),
            settings,
            "Chat (m-ArenaHard): FusioN beats BoN in most languages",
            "Command A sampler: FusioN ahead of BoN in 9 of 11 languages",
            fused,
            per_language=True,
            metric=chat_name,
        ),
        *paired_claim(
            translation,
            ("fusion", "bon"),
            settings,
            "WMT24++: FusioN above BoN",
            "XCOMET-XL average: FusioN 83.8, BoN 83.0",
            fused,
            metric=translation_name,
        ),
        *paired_claim(
            translation,
            ("fusion", oracle),
            settings,
            "WMT24++: FusioN above the oracle selection",
            "XCOMET-XL: FusioN 83.8, oracle 83.4, BoN 83.0 (above the oracle for de, ru, zh)",
            fused,
            metric=translation_name,
            missing=f"no {oracle} scores of a translation cell (comet.oracle selects by COMET)",
        ),
        *paired_claim(
            math,
            ("bon", "fusion"),
            settings,
            "MGSM: BoN beats FusioN (closed-form answers suit selection)",
            "BoN ahead of FusioN at test time",
            fused,
            metric=math_name,
        ),
        *nscaling_claims(points, settings, fused, sizes or {}),
        *fusor_claim(fusors, settings),
        copy_claim(diagnostics, settings),
        *student_claims(items, settings),
    ]
    # One family: every row with a paired test, so the table's chance of any false verdict stays at alpha.
    # A row already held at no verdict whatever its p (no parse record, mostly fallbacks) is not in the family.
    tested = [
        row
        for row in rows
        if "decide" in row and np.isfinite(row["p"]) and row["decide"](0.0) in ("reproduced", "not reproduced")
    ]
    for row, adjusted in zip(tested, holm_adjust([row["p"] for row in tested]), strict=True):
        row["found"] += f"; Holm p={adjusted:.3f} (of {len(tested)} tests)"
        row["verdict"] = row["decide"](adjusted)
    return pd.DataFrame(rows, columns=["claim", "paper", "found", "verdict"])


@ANALYSES.register("claims")
def run_claims(scores, nscaling_scores, pools, diagnostics, fusors, fusions, *, outputs: dict, settings: dict) -> None:
    """`nscaling_scores` and `pools`: the N-scaling's item scores and base pools (empty when it did not run);
    `fusions`: the fusion outputs the claims test (the study's, and the N-scaling subsets')."""
    sizes = pool_sizes(pools)
    items = primary_scores(nscaling_scores, settings["tasks"]) if nscaling_scores else None
    points = nscaling_points(items, sizes) if items is not None else None
    diagnosed = pd.read_csv(diagnostics[0]) if diagnostics else None
    fusor_table = pd.read_csv(fusors[0]) if fusors else None
    table = claims_table(scores, points, diagnosed, fusor_table, fused_items(fusions), settings, sizes)
    alpha, confidence = alpha_of(settings), float(settings["confidence"])
    write_text(
        outputs["claims"],
        "# What this run found, claim by claim\n\n"
        "Each claim of the paper (arXiv 2510.00931) beside this run's numbers, per sampler. Differences are paired "
        "over items (the resampling unit) with a two-sided sign-flip permutation test. Multiplicity: Holm's "
        "step-down procedure over the family of every row below whose paired test could give a verdict, so the "
        "chance of any false "
        f"verdict in the table is at most {alpha:g}; a verdict needs a Holm-adjusted p < {alpha:g}, otherwise it is "
        f"inconclusive, as it is when under {MIN_PARSED:.0%} of the fused answers tested parsed (the rest are the "
        "fallback's text). FusioN is tested twice, as deployed (fallbacks included) and on the fusor's own parsed "
        "answers against the same method on the same items; a verdict needs both, in the same direction (the row's "
        "p is the larger). 'Most languages' counts the languages where the deployed difference is significant "
        "(Holm over that row's languages), not its direction. A copy rate needs at least "
        f"{MIN_PARSED_ITEMS} of the fusor's own parsed answers per cell. {mde_note(alpha)} It is the row's deployed "
        "test alone: a verdict asks more (Holm's adjustment over the table, the same direction on the fusor's own "
        "answers, often fewer items; for 'most languages', significance per language), so a row can be "
        "inconclusive with a small MDE too. `python -m polyfuse.plan` says how many items a given effect needs. "
        f"Intervals are {confidence:.0%} BCa "
        "bootstrap intervals over items. Each row names the metric it reads: for translation COMET where the study "
        "computed it (the paper used XCOMET-XL), its oracle then the COMET oracle, and chrF otherwise; a judge "
        "model's win rate for chat; accuracy for reasoning. The N-scaling rows read the N-scaling's metric. Setting "
        "2's rows compare the students of `distill.compare` on the items both answered. A claim this study cannot "
        "test says why. With 135M-270M models and a few items per language, most claims cannot be decided here; "
        "`config/paper.yaml` names the paper's models and sizes.\n\n" + table.to_markdown(index=False) + "\n",
    )
