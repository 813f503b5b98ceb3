"""How many items a study needs: read a finished pilot run's item scores and, for each FusioN − BoN comparison,
print what the pilot could detect and how many items a run needs to detect a given effect.

    python -m polyfuse.plan [--results results] [--effect comet=0.8] [--alpha 0.05] [--power 0.8]

A comparison is paired over a task's items in every language, as the claims table tests it. The per-item spread
of the differences comes from the pilot; the effect to detect is `--effect` per metric, else the gain the paper
reports on that metric (`PAPER_GAINS`). Plan from a pilot run of the models you will run: the spread is theirs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from polyfuse import methods
from polyfuse.errors import PolyfuseError
from polyfuse.settings import Report
from polyfuse.statistics import POWER, detectable_effect, items_needed
from polyfuse.tables import read_item_scores

# The paper's reported FusioN − BoN gains, per metric, in the metric's points (../shared/paper.md, results 1-3):
# XCOMET-XL on WMT24++ 83.8 against 83.0; win rate, FusioN's students against BoN's, 46.3 against 43.8.
PAPER_GAINS = {"comet": 0.8, "winrate": 2.5}
PLAN_COLUMNS = ["task", "sampler", "metric", "comparison", "n", "difference", "sd", "detectable", "effect", "needed"]


def score_files(results: Path) -> list[str]:
    """A run's per-method score files (results/<task>/<lang>/scores/<sampler>/<method>.jsonl); head-to-head
    verdicts (one level deeper) are not a metric of one method."""
    return sorted(str(path) for path in results.glob("*/*/scores/*/*.jsonl"))


def plan_table(items: pd.DataFrame, effects: dict[str, float], alpha: float, power: float = POWER) -> pd.DataFrame:
    """One row per task, sampler, metric and FusioN − BoN pair: the pilot's paired n, mean difference and its
    spread, the smallest difference the pilot could detect, the effect to plan for and the items it needs."""
    own = items[items["sampler"].map(lambda s: not methods.is_student(s) and not methods.split_derived(s)[1])]
    rows = []
    for (task, sampler, metric), cell in own.groupby(["task", "sampler", "metric"], sort=True):
        by_item = cell.pivot_table(index=["lang", "id"], columns="method", values="value", aggfunc="first")
        present = sorted(by_item.columns, key=methods.method_rank)
        for fusion in (m for m in present if methods.parse(m)[0] == "fusion"):
            for bon in (m for m in present if methods.parse(m)[0] == "bon"):
                differences = (by_item[fusion] - by_item[bon]).dropna()
                sd = float(differences.std(ddof=1)) if len(differences) > 1 else float("nan")
                effect = effects.get(metric)
                needed = items_needed(sd, effect, alpha, power) if effect and pd.notna(sd) else None
                rows.append(
                    [
                        task,
                        sampler,
                        metric,
                        f"{fusion} − {bon}",
                        len(differences),
                        float(differences.mean()) if len(differences) else float("nan"),
                        sd,
                        detectable_effect(differences, alpha, power),
                        effect,
                        needed,
                    ]
                )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def parse_effects(pairs: list[str]) -> dict[str, float]:
    effects = dict(PAPER_GAINS)
    for pair in pairs:
        metric, _, value = pair.partition("=")
        try:
            effects[metric] = float(value)
        except ValueError:
            raise PolyfuseError(f"--effect {pair!r}: expected <metric>=<points>, such as comet=0.8") from None
        if not effects[metric]:
            raise PolyfuseError(f"--effect {pair!r}: an effect of 0 needs infinitely many items")
    return effects


def main(argv: list[str] | None = None) -> None:
    default_alpha = 1 - Report.model_fields["confidence"].default
    parser = argparse.ArgumentParser(prog="python -m polyfuse.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="a finished pilot run's results")
    parser.add_argument(
        "--effect", action="append", default=[], help="metric=points to detect (repeatable); default: the paper's"
    )
    parser.add_argument("--alpha", type=float, default=default_alpha, help=f"two-sided (default {default_alpha:g})")
    parser.add_argument("--power", type=float, default=POWER, help=f"power to detect the effect (default {POWER:g})")
    args = parser.parse_args(argv)
    try:
        paths = score_files(args.results)
        if not paths:
            raise PolyfuseError(f"{args.results}: no score files (results/<task>/<lang>/scores/...): run a pilot first")
        table = plan_table(read_item_scores(paths), parse_effects(args.effect), args.alpha, args.power)
    except PolyfuseError as exc:
        sys.exit(f"polyfuse.plan: {exc}")
    if table.empty:
        sys.exit(f"polyfuse.plan: {args.results}: no sampler has both a FusioN and a BoN method to compare")
    print(
        f"Paired FusioN − BoN over each task's items (all languages); detectable: the smallest difference this pilot "
        f"detects at alpha {args.alpha:g} with {args.power:.0%} power; needed: items for `effect` (--effect, else the "
        "paper's gain on that metric; none where neither gives one).\n"
    )
    shown = table.assign(
        effect=table["effect"].map(lambda v: "—" if pd.isna(v) else f"{v:.2f}"),
        needed=table["needed"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
    )
    print(shown.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
