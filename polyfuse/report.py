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

import logging
from pathlib import Path

from polyfuse import methods
from polyfuse.distill_report import write_distill
from polyfuse.figures import method_colours, plot_task
from polyfuse.io import atomic_path, write_text
from polyfuse.tables import (
    AVERAGE_NOTE,
    JUDGE_CAVEAT,
    fusion_parse_table,
    judge_parse_table,
    read_corpus_scores,
    read_item_scores,
    sampler_tables,
    summarise_cells,
)
from polyfuse.tasks import task_kind

log = logging.getLogger(__name__)


def run_report(scores, summaries, fusions, *, outputs: dict, settings: dict, cards=(), trainings=()) -> None:
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
