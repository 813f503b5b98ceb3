"""The synthetic-data setting's report: the teacher-pool table (one row per student, beside its set's data card
and training summary), the downstream figure and the paired test of the BoN-data against the FusioN-data student."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse import methods
from polyfuse.errors import PolyfuseError
from polyfuse.figures import BON_COLOURS, FUSION_COLOURS, draw_bars, pyplot, save_figure, style_axis
from polyfuse.io import atomic_path, write_text
from polyfuse.tables import JUDGE_CAVEAT, common_item_averages, format_interval, paired_lines, paired_note, shown
from polyfuse.tasks import task_kind

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
