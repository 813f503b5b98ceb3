"""The method zoo's table and figure per task: every selection and aggregation method on the same pools.

Rows are methods, columns languages and their average. A cell gives the method's mean on the task's primary metric
with its BCa interval over items, n (scored items), the share of items whose answer is the method's own (a parse
failure's stand-in is not), and on the row the cost per item of the method itself (model calls, tokens read and
written, seconds; the pool's sampling, the same for every method, is not counted). The ``avg`` column is the mean
over languages of each method's mean over the items every method scored (so all are compared on the same items),
with a stratified interval, as in the task tables. Each method is compared with the study's FusioN and with the best
BoN of the study's selectors (the one with the highest average, picked after the fact, which favours it), paired over
those common items with each language weighted equally, by a sign-flip test; the p-values of one table (every
method but the oracle ceilings, against both; FusioN against the best BoN once) are Holm-adjusted together, and each
comparison states the smallest difference it could detect with 80% power at alpha / m, Holm's strictest level.

The figure plots each method's average quality against its tokens per item (symmetric-log axis) and marks the
Pareto front: the methods no other method beats on quality at lower or equal cost. The oracle, a ceiling no method
can reach without the reference, is drawn but not on the front (a star), and so is a method whose model reads no
generated token (COMET-MBR, a square: its cost is COMET passes, in the table, not tokens).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse import methods
from polyfuse.analysis_report import ANALYSES, interval_rows, primary_scores
from polyfuse.figures import method_colours, pyplot, save_figure
from polyfuse.io import read_jsonl, write_text
from polyfuse.statistics import alpha_of, detectable_effect, holm_adjust, paired_test
from polyfuse.tables import common_item_averages

COST_FIELDS = ("calls", "tokens_in", "tokens_out", "seconds")
ROW = ["task", "sampler", "method"]


def method_records(paths: list[str]) -> pd.DataFrame:
    """One row per method output record: whether its answer is the method's own, and what it cost."""
    rows = []
    for path in paths:
        for record in read_jsonl(path):
            cost = record.get("cost") or {}
            rows.append(
                {
                    "task": record["task"],
                    "lang": record["lang"],
                    "sampler": record["sampler"],
                    "method": record["method"],
                    "id": record["id"],
                    "own": record.get("fallback") is None,
                    **{field: cost.get(field, np.nan) for field in COST_FIELDS},
                }
            )
    return pd.DataFrame(rows, columns=["task", "lang", "sampler", "method", "id", "own", *COST_FIELDS])


def is_ceiling(method: str) -> bool:
    return method in (methods.ORACLE, methods.COMET_ORACLE)


def off_the_token_axis(row) -> bool:
    """A method whose model reads no generated token (COMET-MBR's COMET passes): its cost is not on the token axis."""
    return row["calls"] > 0 and row["tokens_in"] + row["tokens_out"] == 0


def pareto_front(points: pd.DataFrame) -> set[str]:
    """The methods no other beats: none has quality >= and cost <= with one of them strictly better."""
    front = set()
    for row in points.itertuples():
        dominated = (
            (points["quality"] >= row.quality)
            & (points["cost"] <= row.cost)
            & ((points["quality"] > row.quality) | (points["cost"] < row.cost))
        ).any()
        if not dominated:
            front.add(row.method)
    return front


def common_items(items: pd.DataFrame) -> pd.DataFrame:
    """One sampler's items scored by every method that scored any: (language, id) by method."""
    wide = items.pivot_table(index=["lang", "id"], columns="method", values="value", aggfunc="first")
    scored = [method for method in wide.columns if wide[method].notna().any()]
    return wide[scored].dropna()


def language_weights(common: pd.DataFrame) -> np.ndarray:
    """Per item, 1 / (languages x its language's items) x items: a weighted mean is the mean of language means."""
    languages = common.index.get_level_values("lang")
    sizes = pd.Series(languages).map(pd.Series(languages).value_counts()).to_numpy()
    return len(common) / (languages.nunique() * sizes)


def comparisons(items: pd.DataFrame, references: dict[str, str], settings: dict) -> pd.DataFrame:
    """Each method (not a ceiling) against each reference, paired over the items every method scored, each language
    weighted equally; one FusioN-against-best-BoN test, not two. p-values are adjusted later, over the table."""
    common = common_items(items)
    weights = language_weights(common)
    rows = []
    for sampler, method in dict.fromkeys(zip(items["sampler"], items["method"], strict=True)):
        if is_ceiling(method) or method not in common.columns:
            continue
        for label, reference in references.items():
            if reference not in common.columns or method == reference:
                continue
            if label != "FusioN" and method == references["FusioN"]:
                continue  # the same test as the best BoN's row against FusioN
            first, second = common[method].to_numpy() * weights, common[reference].to_numpy() * weights
            difference, p = paired_test(first, second, int(settings["bootstrap"]), int(settings["seed"]))
            rows.append(
                {"sampler": sampler, "method": method, "versus": label, "reference": reference}
                | {"paired_n": len(common), "difference": difference, "p": p, "differences": first - second}
            )
    return pd.DataFrame(
        rows, columns=["sampler", "method", "versus", "reference", "paired_n", "difference", "p", "differences"]
    )


def adjusted(tests: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Holm over every test of one table; each test's detectable difference at alpha / m, Holm's strictest level."""
    tests = tests.copy()
    tested = tests["p"].notna()
    tests["p_holm"] = np.nan
    tests.loc[tested, "p_holm"] = holm_adjust(tests.loc[tested, "p"].to_numpy())
    level = alpha_of(settings) / max(int(tested.sum()), 1)
    tests["detectable"] = [detectable_effect(differences, level) for differences in tests["differences"]]
    return tests.drop(columns="differences")


def task_table(items: pd.DataFrame, records: pd.DataFrame, task: str, settings: dict) -> tuple[pd.DataFrame, dict]:
    """The long table of one task (a row per method and language, and its ``avg``), and its references."""
    cells = interval_rows(items, ["sampler", "method", "lang"], settings)
    averages = []
    for sampler, frame in items.groupby("sampler"):
        means, common_n = common_item_averages(frame, settings)
        means = means.reset_index().assign(sampler=sampler, lang="avg", items=int(common_n.sum()))
        averages.append(means)
    averages = pd.concat(averages, ignore_index=True)
    shares = records.groupby(["sampler", "method", "lang"])["own"].mean().rename("own_share").reset_index()
    shares_all = records.groupby(["sampler", "method"])["own"].mean().rename("own_share").reset_index()
    costs = records.groupby(["sampler", "method"])[list(COST_FIELDS)].mean().reset_index()
    table = pd.concat(
        [cells.merge(shares, how="left"), averages.merge(shares_all, how="left")], ignore_index=True
    ).merge(costs, how="left", on=["sampler", "method"])
    bon = [method for method in settings["zoo_bon"] if method in set(averages["method"])]
    best_bon = max(bon, key=lambda m: averages.loc[averages["method"] == m, "mean"].mean()) if bon else None
    references = {"FusioN": settings["zoo_fusion"][task]} | ({"best BoN": best_bon} if best_bon else {})
    tests = pd.concat([comparisons(frame, references, settings) for _, frame in items.groupby("sampler")])
    if len(tests):
        wide = adjusted(tests, settings).pivot_table(
            index=["sampler", "method"],
            columns="versus",
            values=["difference", "p", "p_holm", "detectable", "paired_n"],
        )
        wide.columns = [f"{value}_vs_{versus.replace(' ', '_')}" for value, versus in wide.columns]
        table = table.merge(wide.reset_index(), how="left", on=["sampler", "method"])
    table.insert(0, "task", task)
    order = {method: methods.method_rank(method) for method in table["method"]}
    table = table.sort_values(["sampler", "method", "lang"], key=lambda c: c.map(order) if c.name == "method" else c)
    return table.reset_index(drop=True), references


def interval_text(row) -> str:
    if pd.isna(row["mean"]):
        return "—"
    return f"{row['mean']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}] n={row['items']} own {row['own_share']:.0%}"


def comparison_text(row, label: str) -> str:
    key = label.replace(" ", "_")
    if f"difference_vs_{key}" not in row or pd.isna(row[f"difference_vs_{key}"]):
        return ""
    detectable = row[f"detectable_vs_{key}"]
    if detectable == 0 and row[f"difference_vs_{key}"] == 0:  # no spread to power a test: say what was seen
        return f"+0.0 (the same score on every item; p_holm {row[f'p_holm_vs_{key}']:.3f})"
    shown = "∞" if not np.isfinite(detectable) else f"{detectable:.1f}"
    return f"{row[f'difference_vs_{key}']:+.1f} (p_holm {row[f'p_holm_vs_{key}']:.3f}; detectable ±{shown})"


def markdown(table: pd.DataFrame, task: str, references: dict, metric: str) -> str:
    languages = [lang for lang in dict.fromkeys(table["lang"]) if lang != "avg"] + ["avg"]
    lines = []
    for sampler, frame in table.groupby("sampler", sort=False):
        header = ["method", *languages, "cost / item (calls, tokens in+out, s)", *(f"vs {ref}" for ref in references)]
        lines += [f"## {task}, pools of {sampler} ({metric})", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        for method, rows in frame.groupby("method", sort=False):
            by_lang = {row["lang"]: row for _, row in rows.iterrows()}
            avg = by_lang["avg"]
            cost = (
                f"{avg['calls']:.1f}, {avg['tokens_in'] + avg['tokens_out']:.0f}, {avg['seconds']:.2f}"
                if pd.notna(avg["calls"])
                else "—"
            )
            cells = [interval_text(by_lang[lang]) if lang in by_lang else "—" for lang in languages]
            tests = [comparison_text(avg, label) for label in references]
            lines.append("| " + " | ".join([method, *cells, cost, *tests]) + " |")
        lines.append("")
    return "\n".join(lines)


def zoo_figure(table: pd.DataFrame, task: str, metric: str, path: Path) -> None:
    plt = pyplot()
    averages = table[table["lang"] == "avg"].copy()
    averages["cost"] = averages["tokens_in"].fillna(0) + averages["tokens_out"].fillna(0)
    averages["quality"] = averages["mean"]
    samplers = list(dict.fromkeys(averages["sampler"]))
    fig, axes = plt.subplots(1, len(samplers), figsize=(6.5 * len(samplers), 4.5), squeeze=False)
    colours = method_colours(list(averages["method"].unique()))
    for ax, sampler in zip(axes[0], samplers, strict=True):
        points = averages[averages["sampler"] == sampler]
        unplaced = points.apply(off_the_token_axis, axis=1) if len(points) else pd.Series(dtype=bool)
        front = pareto_front(points[~points["method"].map(is_ceiling) & ~unplaced])
        for row in points.itertuples():
            on_front = row.method in front
            ax.scatter(
                row.cost,
                row.quality,
                color=colours[row.method],
                marker="*" if is_ceiling(row.method) else "s" if unplaced[row.Index] else "o",
                s=90 if on_front else 40,
                edgecolors="black" if on_front else "none",
                zorder=3,
            )
        # methods at one point share a label, a name a line; labels at one quality are stacked, so none overlaps
        stacked: dict[float, float] = {}
        for (cost, quality), together in points.groupby(["cost", "quality"], sort=True):
            lift = stacked.get(round(quality, 6), 3.0)
            ax.annotate(
                "\n".join(together["method"]), (cost, quality), fontsize=7, xytext=(4, lift), textcoords="offset points"
            )
            stacked[round(quality, 6)] = lift + 9.0 * len(together)
        frontier = points[points["method"].isin(front)].sort_values("cost")
        ax.step(frontier["cost"], frontier["quality"], where="post", color="black", linewidth=0.8, label="Pareto front")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("model tokens per item, the method's own (read + written)")
        ax.set_ylabel(f"{metric}, mean over languages")
        ax.set_title(f"{task}: pools of {sampler}")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, also=("pdf",))
    plt.close(fig)


@ANALYSES.register("zoo")
def run_zoo(scores: list[str], records: list[str], *, outputs: dict, settings: dict) -> None:
    """Per zoo task: the table (CSV and Markdown) and the quality-against-cost figure."""
    items = primary_scores(scores, settings["tasks"])
    every = method_records(records)
    for task in settings["zoo_tasks"]:
        metric = settings["metrics"][task]
        table, references = task_table(items[items["task"] == task], every[every["task"] == task], task, settings)
        write_text(outputs[f"{task}_table"], table.to_csv(index=False, float_format="%.4g"))
        note = (
            f"# Method zoo: {task}\n\n{__doc__.split(chr(10) + chr(10))[1]}\n\nFusioN here is "
            f"`{references['FusioN']}`; the best BoN is `{references.get('best BoN', 'none')}`.\n\n"
        )
        write_text(outputs[f"{task}_markdown"], note + markdown(table, task, references, metric))
        zoo_figure(table, task, metric, Path(outputs[f"{task}_figure"]))
