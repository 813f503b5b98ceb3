"""The per-task tables: per-item scores read and summarised per (task, language, sampler, method, metric) cell,
with the common-item average row, the paired tests under each table, and the fusion and judge parse tables."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse import methods
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl
from polyfuse.methods import method_rank
from polyfuse.statistics import POWER, bootstrap_ci, detectable_effect, fewest_testable, mean_of_means, paired_test

CELL_KEYS = ["task", "lang", "sampler", "method", "metric"]


# n counts the items a metric applied to; n_missing those it could not score (no letters to identify a
# language in, an unparseable judge verdict, COMET unavailable): they are left out of the mean, never guessed.
TABLE_COLUMNS = [
    "task",
    "kind",
    "lang",
    "sampler",
    "method",
    "metric",
    "n",
    "n_missing",
    "mean",
    "ci_low",
    "ci_high",
    "corpus",
    "corpus_signature",
]


PARSE_COLUMNS = [
    "task",
    "lang",
    "sampler",
    "fusor",
    "n",
    "parse_failures",
    "failure_rate",
    "missing",
    "unclosed",
    "empty",
    "exemplar_leaks",
]


AVERAGE_NOTE = (
    "Cells: mean [CI] over the method's own scored items (n; unscored items are counted, never "
    "guessed). **avg**: mean over languages of each method's mean over the `common n` items that every "
    "method in the table scored, so the methods are compared on the same items (a method that scored no item is "
    "left out of that intersection and shown unavailable)."
)


def read_item_scores(score_paths: list[str]) -> pd.DataFrame:
    """One row per (cell, item id); ``value`` is NaN where the metric could not score the item."""
    rows = []
    for path in score_paths:
        seen: set[tuple[str, str]] = set()  # a COMET file holds every method of its cell, so key on both
        for record in read_jsonl(path):
            if (record["method"], record["id"]) in seen:
                raise PolyfuseError(f"{path}: item {record['id']!r} of {record['method']!r} is scored twice")
            seen.add((record["method"], record["id"]))
            for metric, value in record["values"].items():
                rows.append(
                    (
                        record["task"],
                        record["lang"],
                        record["sampler"],
                        record["method"],
                        metric,
                        record["id"],
                        np.nan if value is None else float(value),
                    )
                )
    return pd.DataFrame(rows, columns=CELL_KEYS + ["id", "value"])


def read_corpus_scores(score_paths: list[str], summary_paths: list[str]) -> dict[tuple, dict]:
    """Corpus-level {score, signature} per cell, from the score rules' summaries (paired with their scores)."""
    corpus = {}
    for scores_path, summary_path in zip(score_paths, summary_paths, strict=True):
        first = next(read_jsonl(scores_path), None)
        if first is None:
            continue
        summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
        for metric, result in summary.get("corpus", {}).items():
            corpus[(first["task"], first["lang"], first["sampler"], first["method"], metric)] = result
    return corpus


def summarise_cells(items: pd.DataFrame, corpus: dict[tuple, dict], kinds: dict, settings: dict) -> pd.DataFrame:
    """Mean, interval and item counts per cell, in TABLE_COLUMNS."""
    rows = []
    for key, cell in items.groupby(CELL_KEYS, sort=True):
        scored = cell["value"].dropna().to_numpy()
        low, high = bootstrap_ci(
            [scored], int(settings["bootstrap"]), float(settings["confidence"]), int(settings["seed"])
        )
        task, lang, sampler, method, metric = key
        mean = float(scored.mean()) if len(scored) else float("nan")
        result = corpus.get(key, {})
        rows.append(
            [
                task,
                kinds[task],
                lang,
                sampler,
                method,
                metric,
                len(scored),
                len(cell) - len(scored),
                mean,
                low,
                high,
                result.get("score"),
                result.get("signature"),
            ]
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def common_item_averages(items: pd.DataFrame, settings: dict) -> tuple[pd.DataFrame, pd.Series]:
    """For one table's items (one task, sampler and metric): per method, the mean over languages of its mean over
    the items every method scored, with a stratified bootstrap interval; and that common item count per language."""
    shown = sorted(items["method"].unique(), key=method_rank)
    langs = sorted(items["lang"].unique())
    by_item = items.pivot(index=["lang", "id"], columns="method", values="value").reindex(columns=shown)
    # A method with no record for an item, or no score, drops the item for all; a method that scored nothing in
    # the table is left out of the intersection (its average is unavailable) rather than emptying it.
    scored = [method for method in shown if by_item[method].notna().any()]
    common = by_item[scored].dropna() if scored else by_item.iloc[:0]
    common_n = common.groupby(level="lang").size().reindex(langs, fill_value=0)
    strata = [common.xs(lang, level="lang") for lang in langs if common_n[lang] > 0]
    rows = []
    for method in shown:
        samples = [stratum[method].to_numpy() for stratum in strata] if method in scored else []
        mean = float(mean_of_means(*samples)) if samples else float("nan")
        low, high = bootstrap_ci(
            samples, int(settings["bootstrap"]), float(settings["confidence"]), int(settings["seed"])
        )
        rows.append({"method": method, "mean": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["method", "mean", "ci_low", "ci_high"]).set_index("method"), common_n


def fusion_parse_table(fusion_paths: list[str]) -> pd.DataFrame:
    """Parse outcomes per fused cell; ``exemplar_leaks`` is empty for cells whose records predate the field."""
    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in fusion_paths:
        for record in read_jsonl(path):
            key = (record["task"], record["lang"], record["sampler"], record["fusor"])
            counts[key]["n"] += 1
            counts[key]["failed"] += record["parse_status"] != "ok"
            counts[key][record["parse_status"]] += 1
            counts[key]["leak_checked"] += "exemplar_leak" in record
            counts[key]["leaks"] += bool(record.get("exemplar_leak"))
    rows = [
        {
            "task": k[0],
            "lang": k[1],
            "sampler": k[2],
            "fusor": k[3],
            "n": c["n"],
            "parse_failures": c["failed"],
            "failure_rate": c["failed"] / c["n"],
            "missing": c["missing"],
            "unclosed": c["unclosed"],
            "empty": c["empty"],
            "exemplar_leaks": c["leaks"] if c["leak_checked"] else None,
        }
        for k, c in sorted(counts.items())
    ]
    frame = pd.DataFrame(rows, columns=PARSE_COLUMNS)
    return frame.astype({"exemplar_leaks": "Int64"})


def format_interval(mean: float, low: float, high: float) -> str:
    if not np.isfinite(mean):
        return "unavailable"
    if not np.isfinite(low):
        return f"{mean:.1f} [no CI]"
    return f"{mean:.1f} [{low:.1f}, {high:.1f}]"


def format_cell(row: pd.Series) -> str:
    """'mean [low, high] n=…', the unscored count when any, and the corpus-level score when there is one."""
    text = f"{format_interval(row['mean'], row['ci_low'], row['ci_high'])} n={row['n']}"
    if row["n_missing"]:
        text += f" +{row['n_missing']} unscored"
    if pd.notna(row["corpus"]):
        text += f" · corpus {row['corpus']:.1f}"
    return text


def signature_lines(cells: pd.DataFrame) -> str:
    """Each distinct corpus-level signature once, with the languages it applies to."""
    signed = cells.dropna(subset=["corpus_signature"])
    lines = [
        f"Corpus-level {metric} signature `{signature}` ({', '.join(sorted(group['lang'].unique()))})."
        for (metric, signature), group in signed.groupby(["metric", "corpus_signature"], sort=True)
    ]
    return "".join(f"\n{line}\n" for line in lines)


def markdown_table(cells: pd.DataFrame, averages: pd.DataFrame, common_n: pd.Series) -> str:
    """One task, sampler and metric: languages as rows, methods as columns, the common-item count, the average row."""
    shown = list(averages.index)
    langs = list(common_n.index)
    lines = ["| lang | " + " | ".join(shown) + " | common n |", "|---|" + "---|" * (len(shown) + 1)]
    by_cell = cells.set_index(["lang", "method"])
    for lang in langs:
        row = [format_cell(by_cell.loc[(lang, method)]) if (lang, method) in by_cell.index else "" for method in shown]
        lines.append(f"| {lang} | " + " | ".join(row) + f" | {common_n[lang]} |")
    average_cells = [format_interval(*averages.loc[method, ["mean", "ci_low", "ci_high"]]) for method in shown]
    lines.append("| **avg** | " + " | ".join(average_cells) + f" | {common_n.sum()} |")
    return "\n".join(lines) + "\n" + signature_lines(cells)


def judge_parse_table(summary_paths: list[str]) -> pd.DataFrame:
    """Unparseable judge verdicts per judged cell, from the judge rules' summaries."""
    rows = []
    for path in summary_paths:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
        if "verdicts" in summary:
            rows.append(
                {
                    key: summary.get(key)
                    for key in ("task", "lang", "sampler", "method", "judge", "items", "verdicts", "position_bound")
                }
                | {"unparsed": summary["unparsed_verdicts"], "dropped": summary.get("dropped_items")}
            )
    columns = ["task", "lang", "sampler", "method", "judge", "items", "verdicts", "unparsed", "dropped"]
    return pd.DataFrame(rows, columns=[*columns, "position_bound"])


JUDGE_CAVEAT = (
    "Win rates here come from the configured judge model. With a small judge (such as the "
    "135M-parameter SmolLM2 of the default study) they test that the pipeline runs end to end; "
    "they are not a measurement of answer quality."
)


def paired_lines(items: pd.DataFrame, pairs: list[tuple[str, str]], settings: dict) -> str:
    """Per language and over all items, each pair's mean paired difference (first − second), p-value and items."""
    by_item = items.pivot(index=["lang", "id"], columns="method", values="value")
    alpha = 1 - float(settings["confidence"])
    groups = [(lang, by_item.xs(lang, level="lang", drop_level=False)) for lang in sorted(items["lang"].unique())]
    lines = ["| lang | " + " | ".join(f"{first} − {second}" for first, second in pairs) + " |"]
    lines.append("|---|" + "---|" * len(pairs))
    for label, group in [*groups, ("all", by_item)]:
        cells = []
        for first, second in pairs:
            both = group[[first, second]].dropna()
            difference, p = paired_test(both[first], both[second], int(settings["bootstrap"]), int(settings["seed"]))
            mark = "*" if p < alpha else ""
            least = detectable_effect(both[first] - both[second], alpha)
            cells.append(
                "n=0" if not len(both) else f"{difference:+.1f} (p={p:.3f}{mark}, n={len(both)}, {mde(least)})"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mde(detectable: float, digits: int = 1) -> str:
    """A comparison's minimum detectable effect as a table shows it."""
    if detectable == 0:
        return "MDE 0: no spread observed"  # every item differed by the same amount, often 0 on a 0/100 metric
    return f"MDE {detectable:.{digits}f}" if np.isfinite(detectable) else "MDE: too few items to test"


def mde_note(alpha: float) -> str:
    return (
        f"MDE: the smallest difference the test detects at {alpha:g} (unadjusted) with {POWER:.0%} power, from the "
        "items' spread (paired t quantiles); the sign-flip test cannot reach that level with fewer than "
        f"{fewest_testable(alpha)} items. A difference that is not significant cannot rule out effects smaller than "
        "its MDE."
    )


def paired_note(what: str, settings: dict) -> str:
    alpha = 1 - float(settings["confidence"])
    return (
        f"\nPaired {what} difference per item; p from a two-sided sign-flip permutation test over items "
        f"(the resampling unit), `*` below {alpha:g}; `all` pools every language's items. {mde_note(alpha)}\n\n"
    )


def paired_table(items: pd.DataFrame, settings: dict) -> str:
    """FusioN against each BoN, per language and over all items: mean difference, p-value and items compared."""
    shown = sorted(items["method"].unique(), key=method_rank)
    families = {method: methods.parse(method)[0] for method in shown}
    pairs = [(f, b) for f in shown if families[f] == "fusion" for b in shown if families[b] == "bon"]
    if not pairs:
        return ""  # a sampler without both kinds of method, such as a student (single only), has nothing to pair
    return paired_note("FusioN − BoN", settings) + paired_lines(items, pairs, settings)


def sampler_tables(
    title: str, cells: pd.DataFrame, items: pd.DataFrame, settings: dict, paired: bool = False
) -> tuple[str, dict]:
    """One Markdown table per sampler for one metric's cells, with paired tests if asked; each sampler's averages."""
    text, averages = "", {}
    for sampler in sorted(cells["sampler"].unique()):
        sampler_items = items[items["sampler"] == sampler]
        averages[sampler], common_n = common_item_averages(sampler_items, settings)
        text += f"\n### {title} · sampler {sampler}\n\n" + markdown_table(
            cells[cells["sampler"] == sampler], averages[sampler], common_n
        )
        text += paired_table(sampler_items, settings) if paired else ""
    return text, averages


def shown(value, spec: str = "") -> str:
    """A table value, or a dash where the row has none (the base student's data card and training)."""
    return "—" if value is None or pd.isna(value) or value == "" else format(value, spec)
