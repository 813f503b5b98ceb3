"""The claims table (``results/README.md``): each claim of the paper beside what this run found.

A claim is checked on this run's item scores with a paired sign-flip test over items (the resampling unit) and
reads **reproduced** (the paper's direction, significant at the report's level), **not reproduced** (the opposite
direction, significant), **inconclusive** (the test cannot tell the directions apart at this size) or **not
measurable** (the study has no cell the claim is about, or the analysis it needs did not run).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polyfuse import methods
from polyfuse.io import write_text
from polyfuse.report import paired_test, read_item_scores
from polyfuse.tasks import task_kind

NOT_MEASURABLE = "not measurable"
PAPER_COPY_RATE = 80.0  # percent: "the fused text takes over 80% from the candidates"


def verdict(difference: float, p: float, alpha: float) -> str:
    """The paper's direction is a positive `difference`."""
    if not np.isfinite(p):
        return NOT_MEASURABLE
    if p >= alpha:
        return "inconclusive"
    return "reproduced" if difference > 0 else "not reproduced"


def paired(frame: pd.DataFrame, first: str, second: str, settings: dict) -> tuple[float, float, int]:
    """Mean paired difference first − second over the items both scored, its p-value and the item count."""
    by_item = frame.pivot_table(index=["lang", "sampler", "id"], columns="method", values="value")
    if first not in by_item or second not in by_item:
        return float("nan"), float("nan"), 0
    both = by_item[[first, second]].dropna()
    difference, p = paired_test(both[first], both[second], int(settings["bootstrap"]), int(settings["seed"]))
    return difference, p, len(both)


def primary_items(score_paths: list[str], settings: dict, kind: str) -> pd.DataFrame:
    """Item scores on the primary metric of every test task of `kind`, students and derived pools left out."""
    items = read_item_scores(score_paths)
    tasks = {task for task, spec in settings["tasks"].items() if spec["kind"] == kind}
    primary = task_kind(kind).metrics[0]
    own = ~items["sampler"].map(methods.is_student) & items["sampler"].map(lambda s: not methods.split_derived(s)[1])
    single_methods = ~items["method"].map(methods.is_head_to_head)  # head-to-head verdicts have tables of their own
    return items[items["task"].isin(tasks) & (items["metric"] == primary) & own & single_methods]


def method_pairs(items: pd.DataFrame, first_family: str, second_family: str) -> list[tuple[str, str]]:
    present = sorted(items["method"].unique(), key=methods.method_rank)
    return [
        (first, second)
        for first in present
        if methods.parse(first)[0] == first_family
        for second in present
        if methods.parse(second)[0] == second_family
    ]


def paired_claim(items, pairs, settings, claim: str, paper: str, per_language: bool = False) -> list[dict]:
    """One row per method pair: the pooled paired difference, its p and verdict (and the languages it wins)."""
    alpha = 1 - float(settings["confidence"])
    if not pairs:
        return [
            {"claim": claim, "paper": paper, "found": "no cell of this kind in the study", "verdict": NOT_MEASURABLE}
        ]
    rows = []
    for first, second in pairs:
        difference, p, n = paired(items, first, second, settings)
        found = f"{first} − {second}: {difference:+.1f} (p={p:.3f}, n={n} items)"
        if per_language:
            wins = [
                lang
                for lang, group in items.groupby("lang")
                for diff, _, count in [paired(group, first, second, settings)]
                if count and diff > 0
            ]
            found += f"; ahead in {len(wins)}/{items['lang'].nunique()} languages ({', '.join(wins) or 'none'})"
        rows.append({"claim": claim, "paper": paper, "found": found, "verdict": verdict(difference, p, alpha)})
    return rows


def nscaling_claim(nscaling: pd.DataFrame | None, settings: dict) -> dict:
    claim = "N-scaling: FusioN gains from N = 2 on, BoN needs about twice the samples to match"
    paper = "FusioN at N = 2 about +6 win rate; BoN matches only near N = 4; gains level off past N ≈ 7"
    if nscaling is None or nscaling.empty or 2 not in set(nscaling["n"]):
        return {"claim": claim, "paper": paper, "found": "N-scaling did not run", "verdict": NOT_MEASURABLE}
    lines, directions = [], []
    for (task, lang, sampler), cell in nscaling.groupby(["task", "lang", "sampler"]):
        at = cell.set_index(["method", "n"])
        single = at["mean"].xs(1, level="n").iloc[0]
        for fusion in [m for m in cell["method"].unique() if methods.parse(m)[0] == "fusion"]:
            gain = at.loc[(fusion, 2), "mean"] - single
            low = at.loc[(fusion, 2), "ci_low"] - single
            lines.append(f"{task}/{lang}/{sampler} {fusion} at N=2: {gain:+.1f} over N=1 (CI low {low:+.1f})")
            directions.append(np.sign(low) if np.isfinite(low) else 0.0)
    found = "; ".join(lines)
    result = "reproduced" if directions and min(directions) > 0 else "inconclusive"
    return {"claim": claim, "paper": paper, "found": found, "verdict": result}


def copy_claim(diagnostics: pd.DataFrame | None) -> dict:
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
        f"[{100 * row.copy_ratio_low:.1f}, {100 * row.copy_ratio_high:.1f}]"
        for row in cells.itertuples(index=False)
    ]
    lows = cells["copy_ratio_low"] * 100
    highs = cells["copy_ratio_high"] * 100
    if (lows > PAPER_COPY_RATE).all():
        result = "reproduced"
    elif (highs < PAPER_COPY_RATE).all():
        result = "not reproduced"
    else:
        result = "inconclusive"
    return {"claim": claim, "paper": paper, "found": "; ".join(lines), "verdict": result}


def claims_table(scores: list[str], nscaling: pd.DataFrame | None, diagnostics, settings: dict) -> pd.DataFrame:
    chat = primary_items(scores, settings, "chat")
    translation = primary_items(scores, settings, "translation")
    math = primary_items(scores, settings, "math")
    rows = [
        *paired_claim(
            chat,
            method_pairs(chat, "fusion", "bon"),
            settings,
            "Chat (m-ArenaHard): FusioN beats BoN in most languages",
            "Command A sampler: FusioN ahead of BoN in 9 of 11 languages",
            per_language=True,
        ),
        *paired_claim(
            translation,
            method_pairs(translation, "fusion", "oracle"),
            settings,
            "WMT24++: FusioN above the oracle selection",
            "XCOMET-XL: FusioN 83.8, oracle 83.4, BoN 83.0 (above the oracle for de, ru, zh)",
        ),
        *paired_claim(
            math,
            method_pairs(math, "bon", "fusion"),
            settings,
            "MGSM: BoN beats FusioN (closed-form answers suit selection)",
            "BoN ahead of FusioN at test time and after fine-tuning",
        ),
        nscaling_claim(nscaling, settings),
        {
            "claim": "Fusion improves with fusor size; the same models as BoN scorers do not",
            "paper": "fusors 4B → 111B: rising; as BoN scorers: flat",
            "found": "the fusor-choice analysis is not part of this run",
            "verdict": NOT_MEASURABLE,
        },
        copy_claim(diagnostics),
    ]
    return pd.DataFrame(rows, columns=["claim", "paper", "found", "verdict"])


def run_claims(scores: list[str], nscaling: list[str], diagnostics: list[str], outputs: dict, settings: dict) -> None:
    scaling = pd.read_csv(nscaling[0]) if nscaling else None
    diagnosed = pd.read_csv(diagnostics[0]) if diagnostics else None
    table = claims_table(scores, scaling, diagnosed, settings)
    alpha = 1 - float(settings["confidence"])
    write_text(
        outputs["claims"],
        "# What this run found, claim by claim\n\n"
        "Each claim of the paper (arXiv 2510.00931) beside this run's numbers. Differences are paired over items "
        f"(the resampling unit) with a two-sided sign-flip permutation test; a verdict needs p < {alpha:g}, "
        "otherwise it is inconclusive. Intervals are 95% BCa bootstrap intervals over items. The metric is each "
        "task's primary one (chrF for translation here, where the paper used XCOMET-XL; a judge model's win rate "
        "for chat). With 135M-270M models and a few items per language, most claims cannot be decided here; "
        "`config/paper.yaml` names the paper's models and sizes.\n\n" + table.to_markdown(index=False) + "\n",
    )
