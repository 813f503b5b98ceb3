"""Aggregation: per-item scores in, paper-style tables and figures out.

Each (task, language, sampler, method, metric) cell gets the mean over the items the metric could score and a
BCa bootstrap confidence interval over those items (``scipy.stats.bootstrap``). Translation cells also carry
sacrebleu's corpus-level chrF and BLEU with their signatures.

Every table (CSV rows, Markdown tables, figure panels) is split by sampler: a method's numbers are never pooled
across samplers. In a Markdown table each cell shows its own item count ``n``; the average row compares methods
on the same items: per language, only the items every method of that table scored (``common n``), then the
mean over languages (languages where no item is common to all methods are left out), with a bootstrap interval
that resamples items within each language.

The synthetic-data setting (``settings["distill"]``) adds the teacher-pool table: one row per student (sampler
``student-<set>``, its ``single`` answers; ``student-base`` first), each evaluated task's primary metric averaged
over languages on the items every student scored, beside the set's data card and training summary; and the
downstream figure and paired test of the BoN-data against the FusioN-data student. Students also appear in the
per-task tables (a table of their own, no paired test), but not in the per-task figures.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from polyfuse import methods
from polyfuse.errors import PolyfuseError
from polyfuse.io import atomic_path, read_jsonl, write_text
from polyfuse.methods import method_rank
from polyfuse.tasks import task_kind

log = logging.getLogger(__name__)

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


METHOD_COLOURS = {"single": "#9e9e9e", "oracle": "#c7e9c0"}
BON_COLOURS = ["#4c72b0", "#64b5cd", "#8172b2", "#55a868"]
FUSION_COLOURS = ["#dd8452", "#c44e52", "#937860"]


def method_colours(every: list[str]) -> dict[str, str]:
    """One colour per method of the whole study (`every`, in a fixed order), so a method looks alike in every figure."""
    colours, bon, fusion = {}, iter(BON_COLOURS), iter(FUSION_COLOURS)
    for method in every:
        if method in METHOD_COLOURS:
            colours[method] = METHOD_COLOURS[method]
        elif methods.parse(method)[0] == "bon":
            colours[method] = next(bon, "#4c72b0")
        else:
            colours[method] = next(fusion, "#dd8452")
    return colours


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend: report jobs have no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_bars(ax, xs, means, low, high, width: float, colour: str, label: str, hatch: str | None = None) -> None:
    """One series of bars with interval whiskers (where a cell has an interval) and value labels."""
    bars = ax.bar(xs, means, width, color=colour, edgecolor="#333333", linewidth=0.5, label=label, hatch=hatch)
    has_ci = np.isfinite(low)  # a cell of one item has no interval
    ax.errorbar(
        xs[has_ci],
        np.asarray(means)[has_ci],
        yerr=[np.subtract(means, low)[has_ci], np.subtract(high, means)[has_ci]],
        fmt="none",
        ecolor="#333333",
        elinewidth=0.8,
        capsize=2.5,
    )
    ax.bar_label(bars, labels=[f"{m:.0f}" if np.isfinite(m) else "" for m in means], fontsize=7, padding=2)


def style_axis(ax, groups: list[str], n_langs: int, metric: str, confidence: float, highs: np.ndarray) -> None:
    """Group ticks, the language/average divider, the metric's y range and, for win rates, the parity line."""
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(f"{metric} (mean, {confidence:.0%} CI)")
    ax.axvline(n_langs - 0.5, color="#bbbbbb", linewidth=0.8, linestyle=":")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    top = np.nanmax(highs) if np.isfinite(highs).any() else 1.0
    ax.set_ylim(0, 108 if metric == "winrate" else max(1.0, top * 1.15))  # room for the label of a bar at 100
    if metric == "winrate":
        ax.axhline(50, color="#555555", linewidth=0.8, linestyle="--")  # parity with the reference system


def save_figure(fig, path: Path, also: tuple[str, ...] = ()) -> None:
    """The figure at ``path`` (format from its suffix) and, for each format in ``also``, beside it."""
    for target in (path, *(path.with_suffix(f".{fmt}") for fmt in also)):
        with atomic_path(target) as tmp:
            # tight: a long axis label or rotated tick labels are kept whole, not cut at the canvas edge
            fig.savefig(tmp, format=target.suffix.lstrip("."), dpi=150, bbox_inches="tight")


def plot_task(
    frame: pd.DataFrame,
    averages: dict[str, pd.DataFrame],
    task: str,
    metric: str,
    confidence: float,
    path: Path,
    colours: dict[str, str],
) -> None:
    """Grouped bars per language and the common-item average, one panel per sampler, one bar per method."""
    plt = pyplot()
    samplers = sorted(frame["sampler"].unique())
    shown = sorted(frame["method"].unique(), key=method_rank)
    langs = sorted(frame["lang"].unique())
    groups = langs + ["avg"]
    figsize = (max(6.0, 1.3 * len(groups) * len(shown) / 3 + 2), 4.2 * len(samplers))
    fig, axes = plt.subplots(len(samplers), 1, figsize=figsize, squeeze=False)
    width = 0.8 / len(shown)
    for ax, sampler in zip(axes[:, 0], samplers, strict=True):
        cells = frame[frame["sampler"] == sampler]
        for offset, method in enumerate(shown):
            rows = cells[cells["method"] == method].set_index("lang")
            average = averages[sampler].reindex([method])
            means = [rows["mean"].get(lang, np.nan) for lang in langs] + [average["mean"].iloc[0]]
            low = [rows["ci_low"].get(lang, np.nan) for lang in langs] + [average["ci_low"].iloc[0]]
            high = [rows["ci_high"].get(lang, np.nan) for lang in langs] + [average["ci_high"].iloc[0]]
            xs = np.arange(len(groups)) + (offset - (len(shown) - 1) / 2) * width
            hatch = "//" if method == "oracle" else None
            draw_bars(ax, xs, means, low, high, width * 0.92, colours[method], method, hatch)
        n_items = int(cells["n"].max()) if not cells.empty else 0
        ax.set_title(f"{task} · sampler {sampler} · {n_items} items per language", fontsize=10, loc="left")
        highs = np.concatenate(
            [cells["ci_high"].to_numpy(dtype=float), averages[sampler]["ci_high"].to_numpy(dtype=float)]
        )
        style_axis(ax, groups, len(langs), metric, confidence, highs)
    axes[0, 0].legend(ncol=min(len(shown), 5), fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.08))
    fig.suptitle(f"Fusion-of-N vs Best-of-N: {task} ({metric})", fontsize=12, x=0.01, ha="left")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


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
            cells.append("n=0" if not len(both) else f"{difference:+.1f} (p={p:.3f}{mark}, n={len(both)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_note(what: str, settings: dict) -> str:
    alpha = 1 - float(settings["confidence"])
    return (
        f"\nPaired {what} difference per item; p from a two-sided sign-flip permutation test over items "
        f"(the resampling unit), `*` below {alpha:g}; `all` pools every language's items.\n\n"
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


CARD_FIELDS = ("set", "task", "lang", "prompts", "written", "skipped", "copied_whole", "copy_rate")
TRAINING_FIELDS = ("set", "steps", "final_loss", "seconds")
CARD_COLUMNS = ["prompts", "written", "not_written", "not_written_reasons", "copied_whole", "copy_rate"]
TRAINING_COLUMNS = ["steps", "final_loss", "seconds"]


def read_distill_json(path: str, fields: tuple[str, ...]) -> dict:
    """A card.json or train.json with its required fields, whose ``set`` is the path component after ``distill/``."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [field for field in fields if field not in record]
    if missing:
        raise PolyfuseError(f"{path}: missing field(s) {', '.join(missing)}")
    parts = Path(path).parts
    after = [parts[i + 1] for i in range(len(parts) - 2) if parts[i] == "distill"]
    if not after or record["set"] != after[-1]:
        raise PolyfuseError(f"{path}: set {record['set']!r} is not the path's distill/<set>/ component")
    return record


def card_summaries(card_paths) -> dict[str, dict]:
    """Per set, its data cards summed over training tasks and languages (copy rate weighted by records written)."""
    cards: dict[str, list[dict]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    for path in card_paths:
        card = read_distill_json(path, CARD_FIELDS)
        key = (card["set"], card["task"], card["lang"])
        if key in seen:
            raise PolyfuseError(f"{path}: a second card for set {key[0]!r}, task {key[1]!r}, language {key[2]!r}")
        seen.add(key)
        cards[card["set"]].append(card)
    summaries = {}
    for name, group in cards.items():
        reasons: Counter[str] = Counter()
        for card in group:
            reasons.update(card["skipped"])
        rated = [(card["copy_rate"], card["written"]) for card in group if card["copy_rate"] is not None]
        weight = sum(written for _, written in rated)
        summaries[name] = {
            "prompts": sum(card["prompts"] for card in group),
            "written": sum(card["written"] for card in group),
            "not_written": sum(reasons.values()),
            "not_written_reasons": "; ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()) if n),
            "copied_whole": sum(card["copied_whole"] for card in group),
            "copy_rate": sum(rate * written for rate, written in rated) / weight if weight else float("nan"),
        }
    return summaries


def training_summaries(training_paths) -> dict[str, dict]:
    """Per set, its student's training summary (steps, final loss, seconds)."""
    summaries = {}
    for path in training_paths:
        training = read_distill_json(path, TRAINING_FIELDS)
        if training["set"] in summaries:
            raise PolyfuseError(f"{path}: a second train.json for set {training['set']!r}")
        summaries[training["set"]] = {column: training[column] for column in TRAINING_COLUMNS}
    return summaries


def student_items(items: pd.DataFrame, task: str, metric: str, samplers: list[str]) -> pd.DataFrame:
    """The students' single answers on one task and metric, with the student's sampler as the ``method`` column."""
    chosen = items[(items["task"] == task) & (items["metric"] == metric) & (items["method"] == "single")]
    chosen = chosen[chosen["sampler"].isin(samplers)]
    absent = [sampler for sampler in samplers if sampler not in set(chosen["sampler"])]
    if absent:
        raise PolyfuseError(f"distill: no {metric} scores of {', '.join(absent)} on task {task!r} among the inputs")
    return chosen.drop(columns="method").rename(columns={"sampler": "method"})


def pool_text(pool: str, pools: dict[str, list[dict]]) -> str:
    """What a pool was: its name and each member as model×n@temperature (a model name for a one-model sampler)."""
    if pool not in pools:
        return pool
    members = ", ".join(
        f"{member['model']}{'×' + str(member['n']) if member['n'] > 1 else ''}@{member['temperature']:g}"
        for member in pools[pool]
    )
    return f"{pool} ({members})"


def distill_rows(settings: dict) -> pd.DataFrame:
    """Student, sampler, label, pool and method per teacher-pool table row: the base student, then each set."""
    rows = [{"student": methods.BASE_STUDENT, "label": "not fine-tuned", "pool": None, "method": None}]
    for name, spec in settings["distill"]["sets"].items():
        label = spec.get("label") or f"{spec['pool']} + {spec['method']}"
        pool = pool_text(spec["pool"], settings.get("pools", {}))
        rows.append({"student": name, "label": label, "pool": pool, "method": spec["method"]})
    frame = pd.DataFrame(rows)
    return frame.assign(sampler=frame["student"].map(methods.student)).set_index("student")


def primary_metric(settings: dict, task: str) -> str:
    return task_kind(settings["tasks"][task]["kind"]).metrics[0]


def distill_table(
    items: pd.DataFrame, settings: dict, cards: dict[str, dict], trainings: dict[str, dict]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The teacher-pool table: each evaluated task's primary metric, the data card and the training per student;
    and per task the items every student scored."""
    table = distill_rows(settings)
    common_items = {}
    for task in settings["distill"]["evaluate"]:
        metric = primary_metric(settings, task)
        averages, common_n = common_item_averages(student_items(items, task, metric, list(table["sampler"])), settings)
        by_student = averages.reindex(table["sampler"]).set_axis(table.index)
        for column in ("mean", "ci_low", "ci_high"):
            table[f"{task}_{metric}" + ("" if column == "mean" else f"_{column}")] = by_student[column]
        table[f"{task}_n"] = common_items[task] = int(common_n.sum())
    for name in table.index[1:]:  # the base student has no data and no training
        for source, what in ((cards, "card.json"), (trainings, "train.json")):
            if name not in source:
                raise PolyfuseError(f"distill set {name!r}: no {what} among the report's inputs")
    details = pd.DataFrame.from_dict(cards, orient="index").reindex(table.index, columns=CARD_COLUMNS)
    trained = pd.DataFrame.from_dict(trainings, orient="index").reindex(table.index, columns=TRAINING_COLUMNS)
    counts = {column: "Int64" for column in ("prompts", "written", "not_written", "copied_whole", "steps")}
    return pd.concat([table, details, trained], axis=1).astype(counts), common_items


def shown(value, spec: str = "") -> str:
    """A table value, or a dash where the row has none (the base student's data card and training)."""
    return "—" if value is None or pd.isna(value) or value == "" else format(value, spec)


def distill_markdown(table: pd.DataFrame, common_items: dict[str, int], settings: dict) -> str:
    """The teacher-pool table with the pool and method of each row, what its numbers average and resample."""
    metrics = {task: primary_metric(settings, task) for task in settings["distill"]["evaluate"]}
    header = ["student", "pool", "method"]
    header += [f"{task}: {metric} (n={common_items[task]})" for task, metric in metrics.items()]
    header += ["prompts", "written", "not written (reason: count)", "copied whole", "copy rate"]
    header += ["steps", "final loss", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, row in table.iterrows():
        scores = [
            format_interval(*row[[f"{task}_{metric}{suffix}" for suffix in ("", "_ci_low", "_ci_high")]])
            for task, metric in metrics.items()
        ]
        details = [shown(row[column]) for column in ("prompts", "written", "not_written")]
        if isinstance(row["not_written_reasons"], str) and row["not_written_reasons"]:
            details[-1] += f" ({row['not_written_reasons']})"
        details += [shown(row["copied_whole"]), shown(row["copy_rate"], ".1%")]
        details += [shown(row["steps"]), shown(row["final_loss"], ".4f"), shown(row["seconds"], ".0f")]
        cells = [f"{name}: {row['label']}", shown(row["pool"]), shown(row["method"]), *scores, *details]
        lines.append("| " + " | ".join(cells) + " |")
    confidence = float(settings["confidence"])
    return (
        "\n### Teacher-pool table\n\n"
        "One student per synthetic-data set: the base student is the model before fine-tuning; every other row is "
        "the student fine-tuned on that set's targets, the `method` output (single sample, Best-of-N or FusioN) of "
        "the `pool` of teachers over the training prompts. Students answer each evaluated task once; a task column "
        "is its primary metric, the mean over languages (equal weight) of the mean over the items every student "
        f"scored (n: those items, all languages). [CI]: {confidence:.0%} BCa bootstrap interval; the resampling "
        "unit is the item, resampled within each language. Data card, summed over training tasks and languages: "
        "prompts, SFT records written, prompts not written by the card's reason (a FusioN target that did not "
        "parse: its parse status), targets copied "
        "whole from one candidate, copy rate (weighted by records written). Training: optimizer steps, final "
        "training loss, wall seconds.\n\n" + "\n".join(lines) + "\n"
    )


def compared_samplers(settings: dict) -> tuple[list[str], list[str]]:
    """The BoN-data and FusioN-data sets of ``distill.compare`` and their students' samplers."""
    compared = list(settings["distill"]["compare"])
    unknown = [name for name in compared if name not in settings["distill"]["sets"]]
    if unknown:
        raise PolyfuseError(f"distill.compare: {', '.join(map(repr, unknown))} not in distill.sets")
    return compared, [methods.student(name) for name in compared]


def distill_paired(items: pd.DataFrame, settings: dict) -> str:
    """The FusioN-data student against the BoN-data student on each evaluated task's primary metric."""
    (bon, fusion), (bon_sampler, fusion_sampler) = compared_samplers(settings)
    text = f"\n### Paired test: {fusion} data − {bon} data\n" + paired_note(
        f"{fusion_sampler} − {bon_sampler} (the students' primary metric)", settings
    )
    for task in settings["distill"]["evaluate"]:
        metric = primary_metric(settings, task)
        pair_items = student_items(items, task, metric, [fusion_sampler, bon_sampler])
        text += f"#### {task}: {metric}\n\n" + paired_lines(pair_items, [(fusion_sampler, bon_sampler)], settings)
        text += "\n"
    return text


def plot_distill(items: pd.DataFrame, table: pd.DataFrame, settings: dict, path: Path) -> None:
    """Per language and on average, the BoN-data and the FusioN-data student on the items both scored, one panel
    per evaluated task's primary metric; written as PNG at ``path`` and PDF beside it."""
    plt = pyplot()
    compared, samplers = compared_samplers(settings)
    tasks = settings["distill"]["evaluate"]
    confidence = float(settings["confidence"])
    fig, axes = plt.subplots(len(tasks), 1, figsize=(8.0, 4.2 * len(tasks)), squeeze=False)
    width = 0.8 / len(compared)
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        metric = primary_metric(settings, task)
        pair_items = student_items(items, task, metric, samplers)
        langs = sorted(pair_items["lang"].unique())
        by_group = [common_item_averages(pair_items[pair_items["lang"] == lang], settings) for lang in langs]
        by_group.append(common_item_averages(pair_items, settings))
        groups = [
            f"{group}\nn={common_n.sum()}" for group, (_, common_n) in zip([*langs, "avg"], by_group, strict=True)
        ]
        colours = (BON_COLOURS[0], FUSION_COLOURS[0])
        for offset, (name, sampler, colour) in enumerate(zip(compared, samplers, colours, strict=True)):
            means, low, high = (
                [averages.loc[sampler, column] for averages, _ in by_group] for column in ("mean", "ci_low", "ci_high")
            )
            xs = np.arange(len(groups)) + (offset - (len(compared) - 1) / 2) * width
            draw_bars(ax, xs, means, low, high, width * 0.92, colour, f"{name}: {table.loc[name, 'label']}")
        highs = np.concatenate([averages["ci_high"].to_numpy(dtype=float) for averages, _ in by_group])
        ax.set_title(
            f"{task} · {metric} · n = {by_group[-1][1].sum()} items both students scored", fontsize=10, loc="left"
        )
        style_axis(ax, groups, len(langs), metric, confidence, highs)
    axes[0, 0].legend(ncol=len(compared), fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.08))
    fig.suptitle(
        f"Students fine-tuned on {compared[0]} (BoN) vs {compared[1]} (FusioN) data", fontsize=12, x=0.01, ha="left"
    )
    fig.tight_layout()
    save_figure(fig, path, also=("pdf",))
    plt.close(fig)


def write_distill(items: pd.DataFrame, outputs: dict, settings: dict, card_paths, training_paths) -> tuple[str, Path]:
    """The teacher-pool table (CSV and Markdown, with the paired test) and the downstream figure."""
    table, common_items = distill_table(items, settings, card_summaries(card_paths), training_summaries(training_paths))
    with atomic_path(outputs["distill_csv"]) as tmp:
        table.reset_index().to_csv(tmp, index=False, float_format="%.4f")
    text = distill_markdown(table, common_items, settings) + distill_paired(items, settings)
    if any(primary_metric(settings, task) == "winrate" for task in settings["distill"]["evaluate"]):
        text += f"\n{JUDGE_CAVEAT}\n"
    write_text(outputs["distill_md"], text)
    figure = Path(outputs["distill_figure"])
    plot_distill(items, table, settings, figure)
    return text, figure


def run_report(scores, summaries, fusions, outputs: dict, settings: dict, cards=(), trainings=()) -> None:
    """Write the declared outputs: ``<task>_csv``, ``<task>_md``, ``<task>_figure``, ``parse`` and ``report``; with
    ``settings["distill"]`` also ``distill_csv``, ``distill_md`` and ``distill_figure`` (PNG, the PDF beside it)
    from the students' scores, the sets' data cards (``cards``) and their students' train.json (``trainings``)."""
    kinds = {task: spec["kind"] for task, spec in settings["tasks"].items()}
    tasks = {task: spec for task, spec in settings["tasks"].items() if spec.get("role", "test") == "test"}
    items = read_item_scores(scores)
    frame = summarise_cells(items, read_corpus_scores(scores, summaries), kinds, settings)
    parse = fusion_parse_table(fusions)
    report_dir = Path(outputs["report"]).parent
    sections = ["# polyfuse results\n"]
    for task in tasks:
        cells, task_items = frame[frame["task"] == task], items[items["task"] == task]
        kind = task_kind(kinds[task])
        metrics = kind.metrics + tuple(m for m in kind.extra_metrics if (cells["metric"] == m).any())
        with atomic_path(outputs[f"{task}_csv"]) as tmp:
            cells.to_csv(tmp, index=False, float_format="%.4f")
        pairwise = cells["method"].map(methods.is_head_to_head)
        pairwise_items = task_items["method"].map(methods.is_head_to_head)
        tables = {
            metric: sampler_tables(
                f"{task}: {metric}",
                cells[~pairwise & (cells["metric"] == metric)],
                task_items[~pairwise_items & (task_items["metric"] == metric)],
                settings,
                paired=True,
            )
            for metric in metrics
        }
        text = f"\n{AVERAGE_NOTE}\n" + "".join(table_text for table_text, _ in tables.values())
        if pairwise.any():
            text += sampler_tables(
                f"{task}: head-to-head (win rate of the first method, ties as half)",
                cells[pairwise],
                task_items[pairwise_items],
                settings,
            )[0]
        if metrics[0] == "winrate":
            text += f"\n{JUDGE_CAVEAT} Win rates count ties as half; each item is judged in both orders.\n"
        write_text(outputs[f"{task}_md"], text)
        figure = Path(outputs[f"{task}_figure"])
        students = cells["sampler"].map(methods.is_student)  # one `single` bar each: the distill figure shows them
        if students.all():
            students = ~students  # a task that only students answered: its figure shows them
        plot_task(
            cells[~pairwise & ~students & (cells["metric"] == metrics[0])],
            tables[metrics[0]][1],
            task,
            metrics[0],
            float(settings["confidence"]),
            figure,
            method_colours(settings["methods"]),
        )
        sections.append(f"## {task}\n{text}\n![{task}]({figure.relative_to(report_dir)})\n")
    with atomic_path(outputs["parse"]) as tmp:
        parse.to_csv(tmp, index=False, float_format="%.4f")
    if not parse.empty:
        rate = parse["parse_failures"].sum() / parse["n"].sum()
        leaks = parse["exemplar_leaks"].sum()  # NA (field not recorded) counts as nothing
        shown = parse.astype({"exemplar_leaks": object}).fillna({"exemplar_leaks": "not recorded"})
        sections.append(
            f"## Fusor parse failures\n\n{rate:.1%} of fused outputs had no parseable `[[ ]]` answer "
            f"(fallback: {settings['fallback']}); {leaks} copied a few-shot exemplar "
            "(`exemplar_leaks`, where recorded).\n\n" + shown.to_markdown(index=False) + "\n"
        )
    judged = judge_parse_table(summaries)
    if not judged.empty:
        rate = judged["unparsed"].sum() / max(1, judged["verdicts"].sum())
        bound = judged["position_bound"].sum() / max(1, judged["items"].sum())
        sections.append(
            "## Judge verdicts that could not be parsed\n\n"
            f"{rate:.1%} of {judged['verdicts'].sum()} verdicts; each is never guessed, and its item is dropped "
            f"from the win rates (`dropped`: {int(judged['dropped'].fillna(0).sum())} of {judged['items'].sum()} "
            "items), since the one order that parsed is not position-corrected (Arena-Hard-Auto's rule). "
            f"On {bound:.1%} of items the judge named the same position the winner in both orders "
            "(`position_bound`): it followed position, not content. In `generate` and `loglik` modes such an item "
            "counts 50; `calibrated` mode weighs both orders' label probabilities instead.\n\n"
            + judged.to_markdown(index=False)
            + "\n"
        )
    if "distill" in settings:
        text, figure = write_distill(items, outputs, settings, cards, trainings)
        sections.append(
            f"## Synthetic data: distilled students\n{text}\n![distill]({figure.relative_to(report_dir)})\n"
        )
    write_text(outputs["report"], "\n".join(sections))
    log.info("cells=%d tasks=%d", len(frame), len(tasks))
