"""Aggregation: per-item scores in, paper-style tables and figures out.

Each (task, language, sampler, method, metric) cell gets the mean over items and a
percentile bootstrap confidence interval over items. Translation cells also carry
sacrebleu's corpus-level chrF and BLEU with their signatures.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.io import atomic_path, read_jsonl, write_text
from polyfuse.tasks import task_kind

log = logging.getLogger(__name__)

# n counts the items a metric applied to; n_missing those it could not score (no letters to identify a
# language in, an unparseable judge verdict, COMET unavailable): they are left out of the mean, never guessed.
TABLE_COLUMNS = ["task", "kind", "lang", "sampler", "method", "metric", "n", "n_missing", "mean", "ci_low", "ci_high",
                 "corpus"]


def bootstrap_ci(values, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap over items."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return (float(values.mean()),) * 2 if len(values) else (float("nan"),) * 2
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def method_rank(method: str) -> tuple[int, str]:
    """Display order: single sample, BoN scorers, FusioN, then the oracle ceiling."""
    for rank, prefix in enumerate(("single", "bon-", "fusion-", "oracle")):
        if method.startswith(prefix):
            return rank, method
    return len("single bon fusion oracle"), method


def collect(score_paths: list[str], summary_paths: list[str], kinds: dict, settings: dict) -> pd.DataFrame:
    values: dict[tuple, list[float]] = defaultdict(list)
    for path in score_paths:
        for record in read_jsonl(path):
            for metric, value in record["values"].items():
                values[(record["task"], record["lang"], record["sampler"], record["method"], metric)].append(value)
    corpus = {}
    for scores_path, summary_path in zip(score_paths, summary_paths):
        first = next(read_jsonl(scores_path), None)
        if first is None:
            continue
        summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
        for metric, result in summary.get("corpus", {}).items():
            corpus[(first["task"], first["lang"], first["sampler"], first["method"], metric)] = result["score"]
    rows = []
    for key, cell in sorted(values.items()):
        scored = [value for value in cell if value is not None]
        low, high = bootstrap_ci(scored, int(settings["bootstrap"]), float(settings["confidence"]), int(settings["seed"]))
        task, lang, sampler, method, metric = key
        mean = float(np.mean(scored)) if scored else float("nan")
        rows.append([task, kinds[task], lang, sampler, method, metric, len(scored), len(cell) - len(scored), mean, low,
                     high, corpus.get(key)])
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def fusion_parse_table(fusion_paths: list[str]) -> pd.DataFrame:
    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in fusion_paths:
        for record in read_jsonl(path):
            key = (record["task"], record["lang"], record["sampler"], record["fusor"])
            counts[key]["n"] += 1
            counts[key]["failed"] += record["parse_status"] != "ok"
            counts[key][record["parse_status"]] += 1
    rows = [
        {"task": k[0], "lang": k[1], "sampler": k[2], "fusor": k[3], "n": c["n"], "parse_failures": c["failed"],
         "failure_rate": c["failed"] / c["n"], "missing": c["missing"], "unclosed": c["unclosed"], "empty": c["empty"]}
        for k, c in sorted(counts.items())
    ]
    return pd.DataFrame(rows, columns=["task", "lang", "sampler", "fusor", "n", "parse_failures", "failure_rate",
                                       "missing", "unclosed", "empty"])


def format_cell(row: pd.DataFrame) -> str:
    if row.empty:
        return ""
    if row["n"].iloc[0] == 0:
        return "unavailable"
    return f"{row['mean'].iloc[0]:.1f} [{row['ci_low'].iloc[0]:.1f}, {row['ci_high'].iloc[0]:.1f}]"


def markdown_table(frame: pd.DataFrame, metric: str) -> str:
    """Languages as rows, methods as columns, 'mean [low, high]' cells, plus the average row."""
    methods = sorted(frame["method"].unique(), key=method_rank)
    langs = sorted(frame["lang"].unique())
    lines = ["| lang | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for lang in langs:
        cells = []
        for method in methods:
            row = frame[(frame["lang"] == lang) & (frame["method"] == method)]
            cells.append(format_cell(row))
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    means = [frame[frame["method"] == m]["mean"].mean() for m in methods]
    averages = [f"{mean:.1f}" if np.isfinite(mean) else "unavailable" for mean in means]
    lines.append("| **avg** | " + " | ".join(averages) + " |")
    return "\n".join(lines) + "\n"


METHOD_COLOURS = {"single": "#9e9e9e", "oracle": "#c7e9c0"}
BON_COLOURS = ["#4c72b0", "#64b5cd", "#8172b2", "#55a868"]
FUSION_COLOURS = ["#dd8452", "#c44e52", "#937860"]


def method_colours(methods: list[str]) -> dict[str, str]:
    colours, bon, fusion = {}, iter(BON_COLOURS), iter(FUSION_COLOURS)
    for method in methods:
        if method in METHOD_COLOURS:
            colours[method] = METHOD_COLOURS[method]
        elif method.startswith("bon-"):
            colours[method] = next(bon, "#4c72b0")
        else:
            colours[method] = next(fusion, "#dd8452")
    return colours


def plot_task(frame: pd.DataFrame, task: str, metric: str, path: Path) -> None:
    """Grouped bars per language (and their average), one bar per method, CI whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samplers = sorted(frame["sampler"].unique())
    methods = sorted(frame["method"].unique(), key=method_rank)
    colours = method_colours(methods)
    langs = sorted(frame["lang"].unique())
    groups = langs + ["avg"]
    fig, axes = plt.subplots(len(samplers), 1, figsize=(max(6.0, 1.3 * len(groups) * len(methods) / 3 + 2), 4.2 * len(samplers)),
                             squeeze=False)
    width = 0.8 / len(methods)
    for ax, sampler in zip(axes[:, 0], samplers):
        cells = frame[frame["sampler"] == sampler]
        for offset, method in enumerate(methods):
            rows = cells[cells["method"] == method].set_index("lang")
            means = [rows["mean"].get(lang, np.nan) for lang in langs] + [rows["mean"].mean()]
            low = [rows["ci_low"].get(lang, np.nan) for lang in langs] + [np.nan]
            high = [rows["ci_high"].get(lang, np.nan) for lang in langs] + [np.nan]
            xs = np.arange(len(groups)) + (offset - (len(methods) - 1) / 2) * width
            bars = ax.bar(xs, means, width * 0.92, color=colours[method], edgecolor="#333333", linewidth=0.5,
                          label=method, hatch="//" if method == "oracle" else None)
            has_ci = np.isfinite(low)  # the average over languages is drawn without an interval
            ax.errorbar(xs[has_ci], np.asarray(means)[has_ci],
                        yerr=[np.subtract(means, low)[has_ci], np.subtract(high, means)[has_ci]],
                        fmt="none", ecolor="#333333", elinewidth=0.8, capsize=2.5)
            ax.bar_label(bars, labels=[f"{m:.0f}" if np.isfinite(m) else "" for m in means], fontsize=7, padding=2)
        n_items = int(cells["n"].max()) if not cells.empty else 0
        ax.set_title(f"{task} · sampler {sampler} · {n_items} items per language", fontsize=10, loc="left")
        ax.set_xticks(np.arange(len(groups)), groups)
        ax.set_ylabel(f"{metric} (mean, 95% CI)")
        ax.axvline(len(langs) - 0.5, color="#bbbbbb", linewidth=0.8, linestyle=":")
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        top = np.nanmax(cells["ci_high"].to_numpy(dtype=float)) if not cells.empty else 1.0
        ax.set_ylim(0, 100 if metric == "winrate" else max(1.0, top * 1.15))
        if metric == "winrate":
            ax.axhline(50, color="#555555", linewidth=0.8, linestyle="--")  # parity with the reference system
    axes[0, 0].legend(ncol=min(len(methods), 5), fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.08))
    fig.suptitle(f"Fusion-of-N vs Best-of-N: {task} ({metric})", fontsize=12, x=0.01, ha="left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def judge_parse_table(summary_paths: list[str]) -> pd.DataFrame:
    """Unparseable judge verdicts per judged cell, from the judge rules' summaries."""
    rows = []
    for path in summary_paths:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
        if "verdicts" in summary:
            rows.append({key: summary.get(key) for key in ("task", "lang", "sampler", "method", "judge", "items",
                                                            "verdicts", "position_bound")}
                        | {"unparsed": summary["unparsed_verdicts"]})
    return pd.DataFrame(rows, columns=["task", "lang", "sampler", "method", "judge", "items", "verdicts", "unparsed",
                                       "position_bound"])


def is_head_to_head(method: str) -> bool:
    return " vs " in method


JUDGE_CAVEAT = ("Win rates here come from the configured judge model. With a small judge (such as the "
                "135M-parameter SmolLM2 of the default study) they test that the pipeline runs end to end; "
                "they are not a measurement of answer quality.")


def run_report(scores, summaries, fusions, outputs: dict, settings: dict) -> None:
    """Write the declared outputs: ``<task>_csv``, ``<task>_md``, ``<task>_figure``, ``parse`` and ``report``."""
    tasks = settings["tasks"]
    kinds = {task: spec["kind"] for task, spec in tasks.items()}
    frame = collect(scores, summaries, kinds, settings)
    parse = fusion_parse_table(fusions)
    report_dir = Path(outputs["report"]).parent
    sections = ["# polyfuse results\n"]
    for task in tasks:
        cells = frame[frame["task"] == task]
        kind = task_kind(kinds[task])
        metrics = kind.metrics + tuple(m for m in kind.extra_metrics if (cells["metric"] == m).any())
        head_to_head = cells[cells["method"].map(is_head_to_head)]
        cells_by_method = cells[~cells["method"].map(is_head_to_head)]
        with atomic_path(outputs[f"{task}_csv"]) as tmp:
            cells.to_csv(tmp, index=False, float_format="%.4f")
        text = "".join(f"\n### {task}: {metric}\n\n" + markdown_table(cells_by_method[cells_by_method["metric"] == metric], metric)
                       for metric in metrics)
        if not head_to_head.empty:
            text += (f"\n### {task}: head-to-head (win rate of the first method, ties as half)\n\n"
                     + markdown_table(head_to_head, "winrate"))
        if metrics[0] == "winrate":
            text += f"\n{JUDGE_CAVEAT} Win rates count ties as half; each item is judged in both orders.\n"
        write_text(outputs[f"{task}_md"], text)
        figure = Path(outputs[f"{task}_figure"])
        plot_task(cells_by_method[cells_by_method["metric"] == metrics[0]], task, metrics[0], figure)
        sections.append(f"## {task}\n{text}\n![{task}]({figure.relative_to(report_dir)})\n")
    with atomic_path(outputs["parse"]) as tmp:
        parse.to_csv(tmp, index=False, float_format="%.4f")
    if not parse.empty:
        rate = parse["parse_failures"].sum() / parse["n"].sum()
        sections.append(f"## Fusor parse failures\n\n{rate:.1%} of fused outputs had no parseable `[[ ]]` answer "
                        f"(fallback: {settings['fallback']}).\n\n" + parse.to_markdown(index=False) + "\n")
    judged = judge_parse_table(summaries)
    if not judged.empty:
        rate = judged["unparsed"].sum() / max(1, judged["verdicts"].sum())
        bound = judged["position_bound"].sum() / max(1, judged["items"].sum())
        sections.append(f"## Judge verdicts that could not be parsed\n\n{rate:.1%} of {judged['verdicts'].sum()} verdicts "
                        "(left out of the win rates, never guessed). "
                        f"On {bound:.1%} of items the judge named the same position the winner in both orders "
                        "(`position_bound`): it followed position, not content, and such an item counts 50.\n\n"
                        + judged.to_markdown(index=False) + "\n")
    write_text(outputs["report"], "\n".join(sections))
    log.info("cells=%d tasks=%d", len(frame), len(tasks))
