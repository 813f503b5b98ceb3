"""The report: bootstrap intervals, per-sampler tables, common-item averages, corpus signatures, parse counts."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polyfuse import distill_report
from polyfuse import report as report_module
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl
from polyfuse.methods import method_rank
from polyfuse.report import run_report
from polyfuse.statistics import bootstrap_ci, paired_test
from polyfuse.tables import common_item_averages, fusion_parse_table

SETTINGS = {"bootstrap": 500, "confidence": 0.95, "seed": 0}
CHRF_SIGNATURE = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"


def write_cell(
    root: Path, task: str, lang: str, sampler: str, method: str, values: dict[str, dict], corpus: dict | None = None
) -> tuple[str, str]:
    """A score file (one record per item id) and its summary, as the score rules write them."""
    stem = root / task / lang / sampler / method
    stem.parent.mkdir(parents=True, exist_ok=True)
    records = [
        {"id": item, "task": task, "lang": lang, "sampler": sampler, "method": method, "values": item_values}
        for item, item_values in values.items()
    ]
    scores = stem.with_suffix(".jsonl")
    scores.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    summary = stem.with_suffix(".summary.json")
    summary.write_text(json.dumps({"items": len(records), "corpus": corpus or {}}), encoding="utf-8")
    return str(scores), str(summary)


TEACHER_B = {"model": "gemma270m", "n": 2, "temperature": 1.0}


def report(
    root: Path,
    cells: list[tuple[str, str]],
    tasks: dict,
    fusions: tuple[str, ...] = (),
    distill: dict | None = None,
    cards: tuple[str, ...] = (),
    trainings: tuple[str, ...] = (),
) -> Path:
    results = root / "results"
    reported = [task for task, spec in tasks.items() if spec.get("role", "test") == "test"]
    outputs = {f"{task}_{ext}": str(results / f"tables/{task}.{ext}") for task in reported for ext in ("csv", "md")}
    outputs |= {f"{task}_figure": str(results / f"figures/{task}.png") for task in reported}
    outputs |= {"parse": str(results / "tables/fusion_parse.csv"), "report": str(results / "report.md")}
    shown = {record["method"] for scores, _ in cells for record in read_jsonl(scores)}
    settings = SETTINGS | {"tasks": tasks, "fallback": "first", "methods": sorted(shown, key=method_rank)}
    if distill is not None:
        settings["distill"] = distill
        settings["pools"] = {"teachers": [{"model": "smol", "n": 1, "temperature": 0.3}, TEACHER_B]}
        outputs |= {f"distill_{ext}": str(results / f"tables/distill.{ext}") for ext in ("csv", "md")}
        outputs["distill_figure"] = str(results / "figures/distill.png")
    for path in outputs.values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    run_report(
        [scores for scores, _ in cells],
        [summary for _, summary in cells],
        list(fusions),
        outputs=outputs,
        settings=settings,
        cards=cards,
        trainings=trainings,
    )
    return results


def tables_by_heading(markdown: str, level: int = 3) -> dict[str, str]:
    """Each '### heading' (or of the given level) with the text up to the next heading of that level."""
    parts = re.split(rf"^{'#' * level} (.+)$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def table_row(table: str, label: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_bootstrap_interval_narrows_with_more_items():
    rng = np.random.default_rng(1)
    widths = []
    for n in (20, 80, 320):
        values = rng.normal(50, 10, n)
        low, high = bootstrap_ci([values], 500, 0.95, 0)
        widths.append(high - low)
        normal_theory_width = 2 * 1.96 * values.std(ddof=1) / np.sqrt(n)
        assert widths[-1] == pytest.approx(normal_theory_width, rel=0.2)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_confidence_and_seed_take_effect():
    values = [np.random.default_rng(2).normal(50, 10, 40)]
    low90, high90 = bootstrap_ci(values, 500, 0.90, 0)
    low99, high99 = bootstrap_ci(values, 500, 0.99, 0)
    assert low99 < low90 < values[0].mean() < high90 < high99
    assert bootstrap_ci(values, 500, 0.95, 3) == bootstrap_ci(values, 500, 0.95, 3)
    assert bootstrap_ci(values, 500, 0.95, 3) != bootstrap_ci(values, 500, 0.95, 4)


def test_bootstrap_covers_the_true_mean_near_nominal():
    rng = np.random.default_rng(3)
    true_mean = 60.0  # Bernoulli(0.6) items scored 0/100, like accuracy
    covered = 0
    for _ in range(200):
        low, high = bootstrap_ci([100.0 * (rng.random(60) < 0.6)], 400, 0.95, int(rng.integers(1 << 31)))
        covered += low <= true_mean <= high
    assert 0.90 <= covered / 200 <= 0.99


def test_stratified_bootstrap_averages_languages_with_equal_weight():
    small, constant = np.array([0.0, 100.0, 100.0, 0.0, 100.0]), np.full(40, 20.0)
    low, high = bootstrap_ci([small, constant], 500, 0.95, 0)
    small_low, small_high = bootstrap_ci([small], 500, 0.95, 0)
    # the constant language adds no spread and weighs as much as the small one: (small mean + 20) / 2
    assert (low, high) == pytest.approx(((small_low + 20) / 2, (small_high + 20) / 2))
    assert low < (small.mean() + 20) / 2 < high


def test_bootstrap_degenerate_data_gives_clean_intervals_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci([np.full(5, 100.0)], 500, 0.95, 0) == (100.0, 100.0)
        assert bootstrap_ci([np.full(5, 100.0), np.zeros(3)], 500, 0.95, 0) == (50.0, 50.0)
        assert np.isnan(bootstrap_ci([np.array([7.0])], 500, 0.95, 0)).all()
        assert np.isnan(bootstrap_ci([np.array([])], 500, 0.95, 0)).all()
        assert np.isnan(bootstrap_ci([], 500, 0.95, 0)).all()
        low, high = bootstrap_ci([np.array([0.0, 100.0])], 500, 0.95, 0)
        assert low <= 50.0 <= high


def test_tables_are_split_by_sampler(tmp_path):
    cells = [
        write_cell(
            tmp_path,
            "mgsm",
            lang,
            sampler,
            method,
            {f"{lang}-{i}": {"accuracy": value * (i % 2), "lang_correct": 100.0} for i in range(4)},
        )
        for lang in ("de", "ja")
        for sampler, value in (("gemma", 100.0), ("smol", 0.0))
        for method in ("single", "fusion-smol")
    ]
    cells += [
        write_cell(tmp_path, "arena", "de", sampler, method, {f"de-{i}": {"winrate": value} for i in range(3)})
        for sampler, value in (("gemma", 75.0), ("smol", 25.0))
        for method in ("fusion-smol", "fusion-smol vs bon-loglik")
    ]
    results = report(tmp_path, cells, {"mgsm": {"kind": "math"}, "arena": {"kind": "chat"}})
    tables = tables_by_heading((results / "tables/mgsm.md").read_text())
    assert {
        "mgsm: accuracy · sampler gemma",
        "mgsm: accuracy · sampler smol",
        "mgsm: lang_correct · sampler gemma",
        "mgsm: lang_correct · sampler smol",
    } == set(tables)
    assert table_row(tables["mgsm: accuracy · sampler gemma"], "ja")[0].startswith("50.0 [")
    assert table_row(tables["mgsm: accuracy · sampler smol"], "ja")[0].startswith("0.0 [0.0, 0.0] n=4")
    assert table_row(tables["mgsm: accuracy · sampler gemma"], "**avg**")[0].startswith("50.0 [")
    assert table_row(tables["mgsm: accuracy · sampler smol"], "**avg**")[0] == "0.0 [0.0, 0.0]"
    head_to_head = tables_by_heading((results / "tables/arena.md").read_text())
    title = "arena: head-to-head (win rate of the first method, ties as half)"
    gemma, smol = (f"{title} · sampler {sampler}" for sampler in ("gemma", "smol"))
    assert table_row(head_to_head[gemma], "de")[0] == "75.0 [75.0, 75.0] n=3"
    assert table_row(head_to_head[smol], "**avg**")[0] == "25.0 [25.0, 25.0]"
    csv = pd.read_csv(results / "tables/mgsm.csv")
    assert set(csv["sampler"]) == {"gemma", "smol"} and len(csv) == 2 * 2 * 2 * 2


def test_average_row_compares_methods_on_the_items_every_method_scored(tmp_path):
    single = {"de-0": 100.0, "de-1": 0.0, "de-2": 100.0, "de-3": 100.0}
    fusion = {"de-0": 100.0, "de-1": None, "de-2": 0.0, "de-3": None}  # two items it could not score
    cells = [
        write_cell(
            tmp_path,
            "mgsm",
            "de",
            "gemma",
            method,
            {i: {"accuracy": 50.0, "lang_correct": v} for i, v in values.items()},
        )
        for method, values in (("single", single), ("fusion-smol", fusion))
    ]
    cells.append(
        write_cell(tmp_path, "mgsm", "fr", "gemma", "single", {"fr-0": {"accuracy": 0.0, "lang_correct": 0.0}})
    )  # fusion has no fr cell at all
    results = report(tmp_path, cells, {"mgsm": {"kind": "math"}})
    table = tables_by_heading((results / "tables/mgsm.md").read_text())["mgsm: lang_correct · sampler gemma"]
    assert table.strip().splitlines()[0] == "| lang | single | fusion-smol | common n |"
    single_de, fusion_de, common_de = table_row(table, "de")
    assert re.fullmatch(r"75\.0 \[.+\] n=4", single_de) and re.fullmatch(r"50\.0 \[.+\] n=2 \+2 unscored", fusion_de)
    assert common_de == "2"
    assert table_row(table, "fr") == ["0.0 [no CI] n=1", "", "0"]
    single_avg, fusion_avg, common = table_row(table, "**avg**")
    assert single_avg.startswith("100.0 ") and fusion_avg.startswith("50.0 ") and common == "2"  # de-0, de-2 only
    csv = pd.read_csv(results / "tables/mgsm.csv")
    cell = csv[(csv["method"] == "fusion-smol") & (csv["metric"] == "lang_correct")].iloc[0]
    assert (cell["n"], cell["n_missing"], cell["mean"]) == (2, 2, 50.0)


def test_corpus_scores_and_signatures_appear_beside_the_sentence_means(tmp_path):
    bleu_signatures = {
        "de": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
        "ja": "nrefs:1|case:mixed|eff:no|tok:ja-mecab-0.996-IPA|smooth:exp|version:2.6.0",
    }
    cells = [
        write_cell(
            tmp_path,
            "wmt",
            lang,
            "gemma",
            method,
            {f"{lang}-{i}": {"chrf": 40.0 + i, "bleu": 10.0 + i, "comet": None} for i in range(3)},
            corpus={
                "chrf": {"score": 44.25, "signature": CHRF_SIGNATURE},
                "bleu": {"score": 12.5, "signature": bleu_signatures[lang]},
            },
        )
        for lang in ("de", "ja")
        for method in ("single", "fusion-smol")
    ]
    results = report(tmp_path, cells, {"wmt": {"kind": "translation"}})
    tables = tables_by_heading((results / "tables/wmt.md").read_text())
    chrf, bleu = tables["wmt: chrf · sampler gemma"], tables["wmt: bleu · sampler gemma"]
    assert table_row(chrf, "de")[0].endswith("n=3 · corpus 44.2")
    assert table_row(bleu, "ja")[1].endswith("n=3 · corpus 12.5")
    assert chrf.count(CHRF_SIGNATURE) == 1 and f"`{CHRF_SIGNATURE}` (de, ja)" in chrf
    assert f"`{bleu_signatures['de']}` (de)" in bleu and f"`{bleu_signatures['ja']}` (ja)" in bleu
    comet = tables["wmt: comet · sampler gemma"]  # COMET could not run: no number, and no corpus score
    assert table_row(comet, "de") == ["unavailable n=0 +3 unscored"] * 2 + ["0"]
    assert table_row(comet, "**avg**") == ["unavailable"] * 2 + ["0"] and "signature" not in comet
    csv = pd.read_csv(results / "tables/wmt.csv")
    assert set(csv[csv["metric"] == "chrf"]["corpus_signature"]) == {CHRF_SIGNATURE}
    assert set(csv[csv["metric"] == "bleu"]["corpus_signature"]) == set(bleu_signatures.values())


def test_fusion_parse_table_counts_exemplar_leaks_when_recorded(tmp_path):
    def fusion_file(name: str, lang: str, leaks: list[bool] | None) -> str:
        statuses = ["ok", "missing", "ok"]
        records = [
            {"task": "mgsm", "lang": lang, "sampler": "gemma", "fusor": "smol", "parse_status": status}
            | ({} if leaks is None else {"exemplar_leak": leak})
            for status, leak in zip(statuses, leaks or [False] * 3, strict=True)
        ]
        path = tmp_path / name
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
        return str(path)

    fusions = (fusion_file("de.jsonl", "de", [True, False, True]), fusion_file("ja.jsonl", "ja", None))
    table = fusion_parse_table(list(fusions))
    de, ja = table.iloc[0], table.iloc[1]
    assert (de["lang"], de["n"], de["parse_failures"], de["missing"], de["exemplar_leaks"]) == ("de", 3, 1, 1, 2)
    assert ja["lang"] == "ja" and pd.isna(ja["exemplar_leaks"])
    csv = tmp_path / "parse.csv"
    table.to_csv(csv, index=False, float_format="%.4f")
    rows = csv.read_text().splitlines()[1:]
    assert rows == ["mgsm,de,gemma,smol,3,1,0.3333,1,0,0,2", "mgsm,ja,gemma,smol,3,1,0.3333,1,0,0,"]
    cells = [
        write_cell(tmp_path, "mgsm", "de", "gemma", "single", {"de-0": {"accuracy": 100.0, "lang_correct": 100.0}})
    ]
    report_text = (report(tmp_path, cells, {"mgsm": {"kind": "math"}}, fusions) / "report.md").read_text()
    assert "2 copied a few-shot exemplar" in report_text
    assert report_text.count("| not recorded ") == 1 and "<NA>" not in report_text


def test_one_file_may_score_each_method_once_per_item(tmp_path):
    """A COMET file scores every method of its cell: the same item id under two methods is not a duplicate."""
    scores, summary = write_cell(tmp_path, "wmt", "de", "gemma", "single", {"de-0": {"chrf": 50.0, "comet": 80.0}})
    other = json.loads(Path(scores).read_text()) | {"method": "oracle", "values": {"chrf": 60.0, "comet": 90.0}}
    Path(scores).write_text(Path(scores).read_text() + json.dumps(other) + "\n")
    table = pd.read_csv(report(tmp_path, [(scores, summary)], {"wmt": {"kind": "translation"}}) / "tables/wmt.csv")
    assert set(table["method"]) == {"oracle", "single"} and (table["n"] == 1).all()


def test_an_item_scored_twice_is_rejected_naming_the_file(tmp_path):
    scores, summary = write_cell(tmp_path, "mgsm", "de", "gemma", "single", {"de-0": {"accuracy": 100.0}})
    Path(scores).write_text(Path(scores).read_text() * 2)
    with pytest.raises(PolyfuseError, match=rf"^{re.escape(scores)}: item 'de-0' of 'single' is scored twice$"):
        report(tmp_path, [(scores, summary)], {"mgsm": {"kind": "math"}})


def test_a_one_item_language_enters_the_average_interval_as_a_constant():
    low, high = bootstrap_ci([[100.0] * 5 + [0.0] * 5, [7.0]], 500, 0.95, 0)
    assert np.isfinite(low) and low < (50.0 + 7.0) / 2 < high
    assert high <= (100.0 + 7.0) / 2 and low >= 7.0 / 2  # the single item only shifts, never widens, the interval


def test_a_method_that_scored_nothing_does_not_blank_the_other_averages():
    rows = [
        (lang, method, f"{lang}-{i}", value)
        for lang in ("de", "fr")
        for i in range(4)
        for method, value in (("single", 100.0 * (i % 2)), ("fusion-x", np.nan))
    ]
    items = pd.DataFrame(rows, columns=["lang", "method", "id", "value"])
    averages, common_n = common_item_averages(items, SETTINGS)
    assert averages.loc["single", "mean"] == 50.0 and np.isfinite(averages.loc["single", "ci_low"])
    assert np.isnan(averages.loc["fusion-x", "mean"]) and list(common_n) == [4, 4]


def test_paired_test_gives_p_one_for_identical_methods_and_a_small_p_for_a_uniform_win():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 100, size=12)
    assert paired_test(scores, scores, 1000, 0) == (0.0, 1.0)
    difference, p = paired_test(scores + 5.0, scores, 1000, 0)
    assert difference == pytest.approx(5.0) and p < 0.01  # exact: 2 of 2**12 sign patterns are as extreme
    noise = rng.normal(0, 10, size=12)
    assert paired_test(scores + noise - noise.mean(), scores, 1000, 0)[1] > 0.5  # mean difference 0: no evidence


def test_every_metric_table_carries_paired_tests_of_fusion_against_each_bon(tmp_path):
    better = {f"de-{i}": {"chrf": 60.0 + i} for i in range(8)}
    worse = {f"de-{i}": {"chrf": 40.0 + i} for i in range(8)}
    cells = [
        write_cell(tmp_path, "wmt", "de", "gemma", "fusion-g", better),
        write_cell(tmp_path, "wmt", "de", "gemma", "bon-loglik", worse),
        write_cell(tmp_path, "wmt", "de", "gemma", "bon-mbr_chrf", better),
    ]
    markdown = (report(tmp_path, cells, {"wmt": {"kind": "translation"}}) / "tables/wmt.md").read_text()
    table = tables_by_heading(markdown)["wmt: chrf · sampler gemma"].split("Paired FusioN − BoN")[1]
    assert "fusion-g − bon-loglik | fusion-g − bon-mbr_chrf" in table
    loglik, mbr = table_row(table, "de")
    assert loglik.startswith("+20.0 (p=0.008*, n=8, MDE 0: no spread observed)")  # every item +20
    assert mbr == "+0.0 (p=1.000, n=8, MDE 0: no spread observed)"
    assert table_row(table, "all")[0].startswith("+20.0")


def test_students_get_a_table_of_their_own_without_a_paired_test_and_stay_out_of_the_task_figure(tmp_path, monkeypatch):
    plotted = []
    plot_task = report_module.plot_task
    monkeypatch.setattr(
        report_module, "plot_task", lambda frame, *args: plotted.append(frame) or plot_task(frame, *args)
    )
    values = {f"de-{i}": {"accuracy": 100.0 * (i % 2), "lang_correct": 100.0} for i in range(4)}
    cells = [
        write_cell(tmp_path, "mgsm", "de", sampler, method, values)
        for sampler, methods in (("gemma", ("single", "bon-loglik", "fusion-smol")), ("student-fusion", ("single",)))
        for method in methods
    ]
    cells.append(write_cell(tmp_path, "mgsm", "de", "student-base", "single", values))
    tasks = {"mgsm": {"kind": "math"}, "ufb": {"kind": "chat", "role": "train"}}  # a train task is never reported
    results = report(tmp_path, cells, tasks)
    tables = tables_by_heading((results / "tables/mgsm.md").read_text())
    student = tables["mgsm: accuracy · sampler student-fusion"]
    assert student.strip().splitlines()[0] == "| lang | single | common n |" and "Paired" not in student
    assert table_row(student, "de")[0].startswith("50.0 [") and "mgsm: accuracy · sampler student-base" in tables
    assert "fusion-smol − bon-loglik" in tables["mgsm: accuracy · sampler gemma"]
    assert [set(frame["sampler"]) for frame in plotted] == [{"gemma"}]
    assert (results / "figures/mgsm.png").stat().st_size > 0 and not (results / "tables/ufb.md").exists()
    csv = pd.read_csv(results / "tables/mgsm.csv")
    assert set(csv["sampler"]) == {"gemma", "student-fusion", "student-base"}


DISTILL = {
    "sets": {
        "bon": {"pool": "teachers", "method": "bon-mbr_chrf"},
        "fusion": {"pool": "teachers", "method": "fusion-smol", "label": "5 teachers + FusioN"},
    },
    "compare": ["bon", "fusion"],
    "evaluate": ["arena", "mgsm"],
}
DISTILL_TASKS = {"arena": {"kind": "chat"}, "mgsm": {"kind": "math"}, "ufb": {"kind": "chat", "role": "train"}}
# arena win rates per student and item; None: the judge could not score it; a missing id: no record
ARENA = {
    "de": {
        "base": {"de-0": 0.0, "de-1": 50.0, "de-2": 100.0, "de-3": 50.0},
        "bon": {"de-0": 50.0, "de-1": 100.0, "de-2": 0.0, "de-3": None},
        "fusion": {"de-0": 100.0, "de-1": 100.0, "de-3": 50.0},
    },
    "fr": {
        "base": {"fr-0": 100.0, "fr-1": 0.0, "fr-2": 50.0},
        "bon": {"fr-0": 0.0, "fr-1": 50.0, "fr-2": 50.0},
        "fusion": {"fr-0": 100.0, "fr-1": 50.0, "fr-2": 100.0},
    },
}
MGSM = {"base": [0.0, 0.0, 100.0, 0.0], "bon": [100.0, 0.0, 100.0, 100.0], "fusion": [100.0, 100.0, 100.0, 0.0]}
CARDS = [  # set, train task, language, prompts, written, skipped, copied whole, copy rate
    ("bon", "ufb", "en", 10, 10, {}, 10, 1.0),
    ("bon", "ufb", "de", 6, 6, {}, 6, 1.0),
    ("fusion", "ufb", "en", 10, 8, {"missing": 1, "unclosed": 1}, 2, 0.25),
    ("fusion", "ufb", "de", 6, 5, {"missing": 1, "empty": 0}, 3, 0.6),
]
TRAININGS = {"bon": (14, 1.5, 70.5), "fusion": (12, 1.2345, 61.2)}


def write_json_file(path: Path, record: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return str(path)


def distill_inputs(root: Path, training_fields: tuple[str, ...] = ("set", "steps", "final_loss", "seconds")):
    """Student score files on arena (de, fr) and mgsm (de), the sets' data cards and their train.json files."""
    cells = [
        write_cell(root, "arena", lang, f"student-{name}", "single", {i: {"winrate": v} for i, v in scores.items()})
        for lang, students in ARENA.items()
        for name, scores in students.items()
    ]
    cells += [
        write_cell(
            root,
            "mgsm",
            "de",
            f"student-{name}",
            "single",
            {f"m-{i}": {"accuracy": v, "lang_correct": 100.0 - v} for i, v in enumerate(values)},
        )
        for name, values in MGSM.items()
    ]
    fields = ("set", "task", "lang", "prompts", "written", "skipped", "copied_whole", "copy_rate")
    cards = tuple(
        write_json_file(
            root / f"results/distill/{card[0]}/{card[1]}/{card[2]}/card.json", dict(zip(fields, card, strict=True))
        )
        for card in CARDS
    )
    trainings = tuple(
        write_json_file(
            root / f"results/distill/{name}/student/train.json",
            {
                key: value
                for key, value in zip(("set", "steps", "final_loss", "seconds"), (name, *summary), strict=True)
                if key in training_fields
            }
            | {"base_model": "smol", "samples_per_second": 3.5},  # extra fields are kept out of the table
        )
        for name, summary in TRAININGS.items()
    )
    return cells, cards, trainings


def common_arena(name: str) -> list[np.ndarray]:
    """A student's arena scores on the items every student scored: de-0 and de-1 in de, all three in fr."""
    return [np.array([ARENA["de"][name][i] for i in ("de-0", "de-1")]), np.array(list(ARENA["fr"][name].values()))]


def test_teacher_pool_table_averages_languages_on_common_items_beside_cards_and_training(tmp_path):
    cells, cards, trainings = distill_inputs(tmp_path)
    results = report(tmp_path, cells, DISTILL_TASKS, distill=DISTILL, cards=cards, trainings=trainings)
    table = pd.read_csv(results / "tables/distill.csv").set_index("student")
    assert list(table.index) == ["base", "bon", "fusion"]
    assert list(table["label"]) == ["not fine-tuned", "teachers + bon-mbr_chrf", "5 teachers + FusioN"]
    assert list(table["sampler"]) == ["student-base", "student-bon", "student-fusion"]
    assert list(table["arena_n"]) == [5, 5, 5] and list(table["mgsm_n"]) == [4, 4, 4]
    for name, expected_mean in (("base", (25 + 50) / 2), ("bon", (75 + 100 / 3) / 2), ("fusion", (100 + 250 / 3) / 2)):
        low, high = bootstrap_ci(common_arena(name), SETTINGS["bootstrap"], SETTINGS["confidence"], SETTINGS["seed"])
        row = table.loc[name]
        assert row["arena_winrate"] == pytest.approx(expected_mean, abs=1e-4)
        assert (row["arena_winrate_ci_low"], row["arena_winrate_ci_high"]) == pytest.approx((low, high), abs=1e-4)
        assert row["mgsm_accuracy"] == pytest.approx(np.mean(MGSM[name]))  # the primary metric, not lang_correct
    fusion, bon, base = table.loc["fusion"], table.loc["bon"], table.loc["base"]
    assert (fusion["prompts"], fusion["written"], fusion["not_written"], fusion["copied_whole"]) == (16, 13, 3, 5)
    assert fusion["not_written_reasons"] == "missing: 2; unclosed: 1"
    assert fusion["copy_rate"] == pytest.approx((0.25 * 8 + 0.6 * 5) / 13, abs=1e-4)
    assert (bon["written"], bon["not_written"], bon["copy_rate"]) == (16, 0, 1.0)
    assert (fusion["steps"], fusion["final_loss"], fusion["seconds"]) == (12, 1.2345, 61.2)
    assert base[["prompts", "steps", "final_loss", "copy_rate"]].isna().all()
    markdown = (results / "tables/distill.md").read_text()
    rows = tables_by_heading(markdown)["Teacher-pool table"]
    assert "| student | pool | method | arena: winrate (n=5) | mgsm: accuracy (n=4) |" in rows
    assert "the resampling unit is the item, resampled within each language" in " ".join(rows.split())
    fusion_row = table_row(rows, "fusion: 5 teachers + FusioN")
    # The table says what the pool was: each member's model, count and temperature.
    pool = "teachers (smol@0.3, gemma270m×2@1)"
    assert fusion_row[:3] == [pool, "fusion-smol", "91.7 [" + fusion_row[2].split("[")[1]]
    assert fusion_row[4:] == ["16", "13", "3 (missing: 2; unclosed: 1)", "5", "38.5%", "12", "1.2345", "61"]
    assert table_row(rows, "base: not fine-tuned")[:2] == ["—", "—"]
    assert table_row(rows, "base: not fine-tuned")[4:] == ["—"] * 8


def test_distill_paired_test_and_figure_compare_the_bon_and_fusion_data_students(tmp_path, monkeypatch):
    drawn = []
    draw_bars = distill_report.draw_bars

    def recording_draw_bars(ax, xs, means, low, high, width, colour, label, hatch=None):
        drawn.append((label, means))
        draw_bars(ax, xs, means, low, high, width, colour, label, hatch)

    monkeypatch.setattr(distill_report, "draw_bars", recording_draw_bars)
    cells, cards, trainings = distill_inputs(tmp_path)
    results = report(tmp_path, cells, DISTILL_TASKS, distill=DISTILL, cards=cards, trainings=trainings)
    assert (results / "figures/distill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (results / "figures/distill.pdf").read_bytes()[:5] == b"%PDF-"
    assert "![distill](figures/distill.png)" in (results / "report.md").read_text()
    # per panel (arena, mgsm): de, fr, avg on the items both compared students scored; base is not drawn
    drawn = [(label, means) for label, means in drawn if not label.startswith("single")]  # the task figures' bars
    assert [label for label, _ in drawn] == ["bon: teachers + bon-mbr_chrf", "fusion: 5 teachers + FusioN"] * 2
    assert drawn[0][1] == pytest.approx([75.0, 100 / 3, (75 + 100 / 3) / 2])
    assert drawn[1][1] == pytest.approx([100.0, 250 / 3, (100 + 250 / 3) / 2])
    assert drawn[3][1] == pytest.approx([75.0, 75.0])
    paired = tables_by_heading((results / "tables/distill.md").read_text(), level=4)
    arena = paired["arena: winrate"]  # fusion − bon on de-0, de-1, fr-0, fr-1, fr-2: 50, 0, 100, 0, 50
    differences = [50.0, 0.0, 100.0, 0.0, 50.0]
    _, p = paired_test(differences, np.zeros(5), SETTINGS["bootstrap"], SETTINGS["seed"])
    assert "student-fusion − student-bon" in arena
    # five items or fewer: the sign-flip test's smallest p, 2 / 2^5, is above 0.05, so no effect is detectable
    assert table_row(arena, "all") == [f"+40.0 (p={p:.3f}, n=5, MDE: too few items to test)"]
    de = table_row(arena, "de")[0]
    assert de.startswith("+25.0 (") and de.endswith("n=2, MDE: too few items to test)")
    assert table_row(paired["mgsm: accuracy"], "all")[0].startswith("+0.0 (p=1.000, n=4, MDE: too few")


def test_a_train_json_missing_a_field_is_one_error_naming_the_file(tmp_path):
    cells, cards, trainings = distill_inputs(tmp_path, training_fields=("set", "steps", "seconds"))
    with pytest.raises(PolyfuseError, match=rf"^{re.escape(trainings[0])}: missing field\(s\) final_loss$"):
        report(tmp_path, cells, DISTILL_TASKS, distill=DISTILL, cards=cards, trainings=trainings)


def test_a_card_whose_set_is_not_its_path_or_a_set_without_train_json_is_an_error(tmp_path):
    cells, cards, trainings = distill_inputs(tmp_path)
    with pytest.raises(PolyfuseError, match=r"^distill set 'fusion': no train\.json among the report's inputs$"):
        report(tmp_path, cells, DISTILL_TASKS, distill=DISTILL, cards=cards, trainings=trainings[:1])
    card = json.loads(Path(cards[0]).read_text()) | {"set": "fusion"}
    Path(cards[0]).write_text(json.dumps(card))
    with pytest.raises(PolyfuseError, match=rf"^{re.escape(cards[0])}: set 'fusion' is not the path's distill/<set>/"):
        report(tmp_path, cells, DISTILL_TASKS, distill=DISTILL, cards=cards, trainings=trainings)
