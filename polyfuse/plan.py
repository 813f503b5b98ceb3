"""How many items a study needs: read a finished pilot run's item scores and, for each FusioN − BoN comparison,
print what the pilot could detect and how many items a run needs to detect a given effect.

    python -m polyfuse.plan [--results results] [--effect comet=0.8] [--alpha 0.05] [--power 0.8] [--tests 1]

A comparison is paired over a task's items in every language, as the tables' `all` row tests it. The per-item
spread of the differences comes from the pilot. The effect to detect is `--effect` per metric, else the gain the
paper reports on that metric (`PAPER_GAINS`), else the pilot's own difference (the items to confirm what it saw).
Plan from a pilot of the models you will run: the spread is theirs. A claims-table verdict is held to more than one
test at alpha (Holm over the table's tests, the same direction on the fusor's own parsed answers): `--tests m`
plans each comparison at alpha / m, which Holm's first step asks of the smallest p.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from polyfuse import methods
from polyfuse.claims import method_pairs
from polyfuse.errors import PolyfuseError
from polyfuse.settings import Report
from polyfuse.statistics import POWER, detectable_effect, items_needed
from polyfuse.tables import read_item_scores

# The paper's reported test-time FusioN − BoN gains, per metric, in the metric's points: XCOMET-XL on WMT24++, 83.8
# against 83.0 (another COMET model's points are not XCOMET-XL's: pass --effect). Its chat gains are per language
# ("up to +10.8") or the students' (+2.5), not a test-time average, so win rates need --effect.
PAPER_GAINS = {"comet": 0.8}
PLAN_COLUMNS = [
    *("task", "sampler", "metric", "comparison", "languages", "n", "difference", "sd", "mde", "effect"),
    *("needed", "per_language"),
]


def score_files(results: Path) -> list[str]:
    """A run's per-method score files (results/<task>/<lang>/scores/<sampler>/<method>.jsonl); head-to-head
    verdicts (one level deeper) are not a metric of one method."""
    return sorted(str(path) for path in results.glob("*/*/scores/*/*.jsonl"))


def plan_table(
    items: pd.DataFrame, effects: dict[str, tuple[float, str]], alpha: float, power: float = POWER
) -> pd.DataFrame:
    """One row per task, sampler, metric and FusioN − BoN pair: the pilot's paired n, mean difference and its
    spread, the smallest difference the pilot could detect, the effect to plan for and the items it needs."""
    own = items[items["sampler"].map(lambda s: not methods.is_student(s) and not methods.split_derived(s)[1])]
    rows = []
    for (task, sampler, metric), cell in own.groupby(["task", "sampler", "metric"], sort=True):
        if cell["value"].isna().all():
            continue  # a metric this run did not compute (COMET without its checkpoint)
        # a method none of whose items scored keeps its column: its comparisons show n = 0
        by_item = cell.pivot_table(index=["lang", "id"], columns="method", values="value", aggfunc="first")
        by_item = by_item.reindex(columns=cell["method"].unique())
        for fusion, bon in method_pairs(cell, "fusion", "bon"):
            differences = (by_item[fusion] - by_item[bon]).dropna()
            sd = float(differences.std(ddof=1)) if len(differences) > 1 else float("nan")
            mean = float(differences.mean()) if len(differences) else float("nan")
            # Without a given or published effect, the pilot's own difference: the items to confirm what it saw.
            effect, source = effects.get(metric, (abs(mean), "observed"))
            plannable = bool(effect) and math.isfinite(effect) and math.isfinite(sd)
            needed = items_needed(sd, effect, alpha, power) if plannable else None
            languages = differences.index.get_level_values("lang").nunique()
            rows.append(
                [
                    *(task, sampler, metric, f"{fusion} − {bon}", languages, len(differences), mean, sd),
                    detectable_effect(differences, alpha, power),
                    f"{effect:.2f} ({source})" if plannable else "—",
                    needed,
                    -(-needed // languages) if needed else None,
                ]
            )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def parse_effects(pairs: list[str]) -> dict[str, tuple[float, str]]:
    """Each metric's effect to plan for and where it comes from: `--effect` (given), else the paper's gain."""
    effects = {metric: (gain, "paper") for metric, gain in PAPER_GAINS.items()}
    for pair in pairs:
        metric, _, value = pair.partition("=")
        try:
            effect = float(value)
        except ValueError:
            effect = float("nan")
        if not metric or not math.isfinite(effect) or effect <= 0:
            raise PolyfuseError(f"--effect {pair!r}: expected <metric>=<points> with points > 0, such as comet=0.8")
        effects[metric] = (effect, "given")
    return effects


def unit_interval(name: str):
    def parse(text: str) -> float:
        value = float(text)
        if not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be between 0 and 1, got {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    default_alpha = 1 - Report.model_fields["confidence"].default
    parser = argparse.ArgumentParser(prog="python -m polyfuse.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="a finished pilot run's results")
    parser.add_argument(
        "--effect", action="append", default=[], help="metric=points to detect (repeatable); default: the paper's"
    )
    parser.add_argument(
        "--alpha", type=unit_interval("--alpha"), default=default_alpha, help=f"two-sided (default {default_alpha:g})"
    )
    parser.add_argument("--power", type=unit_interval("--power"), default=POWER, help=f"default {POWER:g}")
    parser.add_argument("--tests", type=int, default=1, help="plan each comparison at alpha / tests (default 1)")
    args = parser.parse_args(argv)
    if args.tests < 1:
        parser.error(f"--tests must be at least 1, got {args.tests}")
    alpha = args.alpha / args.tests
    try:
        paths = score_files(args.results)
        if not paths:
            raise PolyfuseError(f"{args.results}: no score files (results/<task>/<lang>/scores/...): run a pilot first")
        table = plan_table(read_item_scores(paths), parse_effects(args.effect), alpha, args.power)
    except PolyfuseError as exc:
        sys.exit(f"polyfuse.plan: {exc}")
    if table.empty:
        sys.exit(f"polyfuse.plan: {args.results}: no sampler has both a FusioN and a BoN method to compare")
    print(
        f"Paired FusioN − BoN over each task's items (all its languages), at alpha {alpha:g} with {args.power:.0%} "
        "power. mde: the smallest difference this pilot's n detects (inf: too few items for the sign-flip test to "
        "reach alpha); needed: the items, over the task's languages, to detect `effect` (given: --effect; paper: "
        "else the paper's gain on that metric; observed: else the pilot's own |difference|); per_language: needed / "
        "languages, for tasks.<task>.max_items.\n"
    )
    shown = table.assign(
        needed=table["needed"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
        per_language=table["per_language"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
    )
    print(shown.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
