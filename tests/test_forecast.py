"""The cost forecast: Snakemake's own jobs, the budgets' arithmetic from the items' real lengths, prices and
throughput from config, and one clear line for what it cannot read. The forecast from a real probe, against the
records of the run it forecast, is in tests/test_workflow.py (it reuses that file's .test study)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from polyfuse import forecast
from polyfuse.dag import StudyDag
from polyfuse.data import choose_items
from polyfuse.settings import load_config
from tests.helpers.workflow import REPO, SNAKEMAKE, TEST_CONFIG, demo_workdir

DRY_RUN = """
Building DAG of jobs...
[Mon Dec  7 06:06:31 2026]
rule fuse:
    input: results/arena/en/items.jsonl, results/arena/en/pools/command-a.jsonl
    output: results/arena/en/outputs/command-a/fusion-command-a.jsonl
    log: results/logs/fuse/arena/en/command-a/command-a.log
    jobid: 7
    benchmark: results/benchmarks/fuse/arena/en/command-a/command-a.tsv
    reason: Forced execution
    wildcards: task=arena, lang=en, model=command-a, fusor=command-a
    threads: 8
    resources: tmpdir=/tmp, gpu=4, mem_mb=256000, runtime=720, slurm_partition=gpu
[Mon Dec  7 06:06:31 2026]
localrule all:
    input: results/report.md
    jobid: 0
    reason: Forced execution
    resources: tmpdir=/tmp
Job stats:
"""


def test_a_dry_runs_blocks_become_jobs_with_their_wildcards_outputs_and_gpus():
    fuse, everything = forecast.parse_dry_run(DRY_RUN)
    assert fuse.rule == "fuse" and fuse.gpus == 4 and fuse.cell == ("arena", "en")
    assert dict(fuse.wildcards) == {"task": "arena", "lang": "en", "model": "command-a", "fusor": "command-a"}
    assert fuse.outputs == ("results/arena/en/outputs/command-a/fusion-command-a.jsonl",)
    assert fuse.benchmark == "results/benchmarks/fuse/arena/en/command-a/command-a.tsv"
    assert everything.rule == "all" and everything.gpus == 0 and everything.cell is None


def job_stats(text: str) -> dict[str, int]:
    """Snakemake's own count of jobs per rule (the table it prints before the jobs)."""
    lines = text[text.index("Job stats:") :].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_the_forecasts_jobs_are_every_job_snakemake_counts(tmp_path):
    workdir = demo_workdir(tmp_path)
    jobs = forecast.dag_jobs([TEST_CONFIG], workdir)
    args = ["--directory", str(workdir), "-n", "--forceall", "--cores", "1", "--configfile", str(TEST_CONFIG)]
    run = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    expected = job_stats(run.stdout + run.stderr)
    assert sum(expected.values()) == len(jobs) > 100
    assert pd.Series([job.rule for job in jobs]).value_counts().to_dict() == expected


def approx_tokens(text: str) -> float:
    return len(text.encode("utf-8")) / 4


def test_without_a_probe_each_call_writes_its_whole_budget_and_reads_its_items_text(tmp_path):
    """The .test study's budgets, counted from the config and the chosen items' bytes (4 per token)."""
    workdir = demo_workdir(tmp_path)
    config = forecast.read_config([TEST_CONFIG])
    dag = StudyDag(config)
    jobs = forecast.dag_jobs([TEST_CONFIG], workdir)
    cells = forecast.full_items(config, workdir)
    costs = {job.key: forecast.budget_cost(job, dag, cells) for job in jobs}
    raw = yaml.safe_load(TEST_CONFIG.read_text())

    def cell(task, lang):
        spec = raw["tasks"][task]
        path = workdir / spec["dataset"]["path"].format(lang=lang)
        kwargs = {"shots": spec.get("shots", 0), "max_items": spec["max_items"], "seed": raw["study"]["seed"]}
        return choose_items(task, lang, {**spec["dataset"], "path": str(path)}, **kwargs)

    shots, items = cell("wmt24pp", "de")
    prompt = sum(approx_tokens(item["input"]) for item in items) / len(items)
    prompt += sum(approx_tokens(shot["input"]) + approx_tokens(shot["reference"]) for shot in shots)
    n, budget, count = raw["study"]["n"], raw["tasks"]["wmt24pp"]["max_tokens"], len(items)
    wmt = {"task": "wmt24pp", "lang": "de", "model": "gemma270m"}
    sample = costs["sample", tuple(sorted(wmt.items()))]
    assert (sample["calls"], sample["tokens_out"]) == (n * count, n * budget * count)
    assert sample["tokens_in"] == pytest.approx(n * prompt * count)
    fuse = costs["fuse", tuple(sorted({**wmt, "fusor": "smol"}.items()))]
    fusion_budget = raw["fusion"]["max_tokens"]
    assert (fuse["calls"], fuse["tokens_out"]) == (count, fusion_budget * count)
    assert fuse["tokens_in"] == pytest.approx((prompt + n * budget) * count)
    loglik = costs["select", tuple(sorted({**wmt, "selector": "bon-loglik"}.items()))]
    assert (loglik["calls"], loglik["tokens_out"]) == (n * count, 0)
    assert loglik["tokens_in"] == pytest.approx((prompt + n * budget) * count)
    # a target score reads the prompt and the set's one fused answer an item, at the fusion budget
    (target,) = [cost for (rule, _), cost in costs.items() if rule == "target_scores"]
    train_shots, train_items = cell("ufb", "de")
    train_prompt = sum(approx_tokens(item["input"]) for item in train_items) / len(train_items)
    train_prompt += sum(approx_tokens(shot["input"]) + approx_tokens(shot["reference"]) for shot in train_shots)
    assert (target["calls"], target["tokens_out"]) == (len(train_items), 0)
    assert target["tokens_in"] == pytest.approx((train_prompt + fusion_budget) * len(train_items))
    mbr = costs["select", tuple(sorted({**wmt, "selector": "bon-mbr_chrf"}.items()))]
    assert (mbr["calls"], mbr["tokens_in"], mbr["seconds"]) == (0, 0, 0)  # no model: no calls, no model seconds
    # a judged chat cell: both orders of each verdict (loglik mode reads label log-probabilities, writes nothing)
    _, arena = cell("arena", "de")
    judged = [cost for (rule, _), cost in costs.items() if rule == "judge"]
    assert judged and all((c["calls"], c["tokens_out"]) == (2 * len(arena), 0) for c in judged)


def test_prices_and_throughput_from_config_make_api_cost_seconds_and_gpu_hours():
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["models"]["api"] = {"engine": "openai", "model": "m", "prompt_style": "chat"}
    config["models"]["unpriced"] = {"engine": "openai", "model": "m2", "prompt_style": "chat"}
    config["forecast"] = {
        "prices": {"api": {"input": 2.5, "output": 10}},
        "throughput": {"gemma270m": {"prompt": 1000, "completion": 50}},
    }
    config = load_config(config)
    dag = StudyDag(config)
    fuse = "task=wmt24pp, lang=de, model=gemma270m, fusor={}"
    text = "".join(
        f"rule fuse:\n    wildcards: {fuse.format(fusor)}\n    resources: gpu={gpus}\n"
        for fusor, gpus in (("api", 0), ("gemma270m", 2), ("unpriced", 0))
    )
    jobs = forecast.parse_dry_run(text)
    spent = {"items": 4, "calls": 4, "tokens_in": 3_000_000, "tokens_out": 200_000, "seconds": 9.0}
    costs = [{**spent, "wall_seconds": 12.0, "unmeasured": 0} for _ in jobs]
    table = forecast.forecast_table(jobs, costs, dag, config["forecast"]).set_index("model")
    assert table.loc["api", "api_cost"] == pytest.approx(3 * 2.5 + 0.2 * 10)  # per million tokens
    assert table.loc["api", "api_tokens"] == 3_200_000 and table.loc["api", "gpu_hours"] == 0
    assert table.loc["gemma270m", "seconds"] == pytest.approx(3_000 + 4_000)  # 3M at 1000/s, 200K at 50/s
    # the probe's fixed part of the wall time (12 s, 9 of them the model's) stays: 3 s plus the model's 7,000 s
    assert table.loc["gemma270m", "gpu_hours"] == pytest.approx(2 * (3 + 7_000) / 3600)
    assert table.loc["gemma270m", "api_cost"] == 0 and math.isnan(table.loc["unpriced", "api_cost"])
    assert forecast.missing_settings(table.reset_index()) == [
        "API cost unknown for unpriced: set forecast.prices.<model>"
    ]
    total = forecast.summarise(table.reset_index(), "model").loc["total"]
    assert math.isnan(total["api_cost"]) and total["calls"] == 12  # an unknown part leaves the sum unknown


def fake_hub(shared, tmp_path):
    """The paper config's hub datasets from the real slices beside the checkout (one language's items for all)."""
    wmt = [json.loads(line) for line in (shared / "wmt24pp/en-de_DE.jsonl").read_text().splitlines()]
    files = {
        "juletxara/mgsm": shared / "mgsm/mgsm_en.tsv",
        "CohereLabs/m-ArenaHard-v2.0": shared / "m_arenahard/m_arenahard_v1_en.jsonl",
        "jd730/GeoFact-X": shared / "geofactx/geofactx_test_en.jsonl",
        "CohereLabs/fusion-synth-data-ufb": REPO / "resources/demo/train/chat_en.jsonl",
    }

    def download(repo_id, filename, repo_type, revision):
        if repo_id == "google/wmt24pp":  # the German slice, relabelled as the pair asked for
            path = tmp_path / filename
            pair = filename.removesuffix(".jsonl")
            path.write_text("".join(json.dumps({**record, "lp": pair}) + "\n" for record in wmt))
            return str(path)
        return str(files[repo_id])

    return download


def test_the_paper_config_is_forecast_with_its_api_cost_and_says_what_it_lacks(shared, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hub(shared, tmp_path))
    listed: dict = {}

    def dag_jobs_once(configfiles, workdir, real=forecast.dag_jobs):  # the paper's 6,000 jobs listed once, not twice
        key = (tuple(map(str, configfiles)), str(Path(workdir).resolve()))
        return listed[key] if key in listed else listed.setdefault(key, real(configfiles, workdir))

    monkeypatch.setattr(forecast, "dag_jobs", dag_jobs_once)
    paper = REPO / "config/paper.yaml"
    forecast.main(["--configfile", str(paper)])
    printed = capsys.readouterr().out
    config = forecast.read_config([paper])
    jobs = forecast.dag_jobs([paper], REPO)
    assert f"{len(jobs)} jobs, from the items' lengths and the configured budgets" in printed
    unknown = next(line for line in printed.splitlines() if line.startswith("Note: seconds unknown for "))
    assert "aya-expanse-8b, command-a, " in unknown  # paper.yaml gives no throughput
    assert "API cost unknown for deepseek-v3, kimi-k2, qwen3-235b: set forecast.prices.<model>" in printed
    # gpt-4o judges each arena answer in both orders; its cost is its tokens at the config's prices
    cells, dag = forecast.full_items(config, REPO), StudyDag(config)
    costs = [forecast.budget_cost(job, dag, cells) for job in jobs]
    table = forecast.forecast_table(jobs, costs, dag, config["forecast"])
    judged = [(job, cost) for job, cost in zip(jobs, costs, strict=True) if job.rule in ("judge", "head_to_head")]
    assert len(judged) > 100 and all(cost["calls"] == 2 * len(cells[job.cell][0]) for job, cost in judged)
    judge = table[table["model"] == "gpt-4o"]
    expected = (judge["tokens_in"].sum() * 5.0 + judge["tokens_out"].sum() * 15.0) / 1e6
    assert judge["api_cost"].sum() == pytest.approx(expected) and expected > 0


def run_forecast(*args, cwd=REPO):
    command = [sys.executable, "-m", "polyfuse.forecast", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_bad_input_is_one_line_naming_what_is_wrong(tmp_path):
    assert run_forecast("--probe", "0").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(TEST_CONFIG.read_text()), "forecast": {"prices": {"x": {}}}}))
    result = run_forecast("--configfile", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == "polyfuse.forecast: forecast.prices.x: 'input' is a required property"
    missing = run_forecast("--configfile", str(TEST_CONFIG), "--pilot", str(tmp_path), cwd=demo_workdir(tmp_path))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert missing.stderr.startswith(f"polyfuse.forecast: {tmp_path}/results/") and "missing" in missing.stderr
