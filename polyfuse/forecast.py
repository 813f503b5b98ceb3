"""What a study will cost before it runs: model calls, prompt and completion tokens, seconds and GPU-hours, per rule
and per model, and the API models' tokens and cost.

    python -m polyfuse.forecast [--configfile FILE ...] [--probe K | --pilot DIR] [--actual DIR] [--cores N]

The jobs are Snakemake's own: a dry run of the whole study (`--forceall`) names each job's rule, wildcards and GPUs.
A job's cost comes from one of two places:

- A probe: the same study on K items per cell (`--probe K`, run in results/forecast/probe-K, resumable), or a pilot of
  the same config already run (`--pilot DIR`, the working directory holding its results/). The probe job with the
  same rule and wildcards says what its items cost (its records' calls, tokens and seconds); the forecast scales that
  by the cell's items. Its wall seconds (the job's benchmark) keep their fixed part (start-up, model load) and scale
  their model part; COMET's and fine-tuning's records keep no model seconds, so their whole wall time is scaled (an
  upper bound: their model load is counted once per probe item ratio).
- Without a probe, the items' real lengths and the configured budgets (`budget_cost`): every completion writes its
  whole budget and a prompt is its item's and shots' text at BYTES_PER_TOKEN, its template not counted. An upper
  bound on what is written, a rough floor on what is read.

Seconds come from `forecast.throughput` where a model has one (the hardware the run will use), else from the probe's
measured seconds (the machine at hand), else they are unknown. GPU-hours are a job's seconds times its GPUs; API cost
is a model's tokens times its `forecast.prices`. No price or speed is built in. A record's cost is what its work took
when it ran, a cached call included, so a forecast counts each job as if nothing were cached yet.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from polyfuse import aggregators, methods, selectors
from polyfuse.cache import generation_cost, no_cost
from polyfuse.config import pool_size
from polyfuse.dag import StudyDag
from polyfuse.data import choose_items
from polyfuse.errors import PolyfuseError
from polyfuse.io import count_records, read_jsonl_numbered, write_text
from polyfuse.selectors import ZOO_SELECTORS
from polyfuse.settings import load_config

REPO = Path(__file__).resolve().parents[1]
# Rule families: a derived rule is counted with the rule it derives from (the per-family comparison's rows).
FAMILIES = {
    "sample_member": "sample",
    "reference": "judge",
    "head_to_head": "judge",
    "target_scores": "select",
    "select_reward_model": "select",
    "target_scores_reward_model": "select",
    "comet_oracle": "comet",
}
# Rules whose records carry what each item's model calls cost.
RECORDED_RULES = frozenset(
    {"sample", "sample_member", "fuse", "aggregate", "select", "target_scores", "judge", "head_to_head"}
)
RECORDED_RULES |= {"reference", "select_reward_model", "target_scores_reward_model"}
# Rules whose wall time grows with the items they read through a model, in no generated token (COMET, training).
ITEM_BOUND_RULES = frozenset({"comet", "comet_oracle", "mbr_comet", "finetune"})
# Bytes of text per token when no probe measured them: English BPE averages about 4 characters a token; text in other
# scripts packs more bytes into a token, so this over-counts their tokens.
BYTES_PER_TOKEN = 4
COUNTS = ("calls", "tokens_in", "tokens_out", "seconds")


def family(rule: str) -> str:
    return FAMILIES.get(rule, rule)


@dataclass(frozen=True)
class Job:
    """One job of Snakemake's dry run."""

    rule: str
    wildcards: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    benchmark: str | None
    gpus: int

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.rule, self.wildcards

    @property
    def cell(self) -> tuple[str, str] | None:
        """The (task, language) whose items the job reads, if it reads one cell's."""
        wildcards = dict(self.wildcards)
        return (wildcards["task"], wildcards["lang"]) if {"task", "lang"} <= wildcards.keys() else None


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of `snakemake --dry-run` output: each `rule <name>:` block's wildcards, outputs, benchmark and GPUs."""
    jobs, block = [], None

    def close():
        if block is not None:
            wildcards = tuple(sorted(_pairs(block.get("wildcards", ""))))
            gpus = int(dict(_pairs(block.get("resources", ""))).get("gpu", 0) or 0)
            outputs = tuple(path.strip() for path in block.get("output", "").split(", ") if path.strip())
            jobs.append(Job(block["rule"], wildcards, outputs, block.get("benchmark"), gpus))

    for line in text.splitlines():
        stripped = line.strip()
        head = stripped.split(" ", 1)
        if head[0] in ("rule", "localrule") and len(head) == 2 and stripped.endswith(":"):
            close()
            block = {"rule": head[1][:-1]}
        elif block is not None and line.startswith("    ") and ": " in stripped:
            key, _, value = stripped.partition(": ")
            block[key] = value
        elif block is not None and not line.startswith("    "):
            close()
            block = None
    close()
    return jobs


def _pairs(text: str) -> list[tuple[str, str]]:
    return [tuple(part.split("=", 1)) for part in text.split(", ") if "=" in part]


def snakemake_executable() -> str:
    return str(Path(sys.executable).with_name("snakemake"))


def dag_jobs(configfiles: list[Path], workdir: Path) -> list[Job]:
    """Every job of the study, as Snakemake's dry run of all of it lists them."""
    command = [snakemake_executable(), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    command += ["--dry-run", "--forceall", "--cores", "1", "--configfile", *map(str, configfiles)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "no output")
        raise PolyfuseError(f"snakemake --dry-run of {' '.join(map(str, configfiles))} failed: {last.strip()}")
    jobs = parse_dry_run(result.stdout + "\n" + result.stderr)
    if not jobs:
        raise PolyfuseError(f"snakemake --dry-run of {' '.join(map(str, configfiles))} listed no jobs")
    return jobs


def read_config(configfiles: list[Path]) -> dict:
    """The study config the files make together, merged as Snakemake merges them (later files win, key by key)."""
    from snakemake.utils import update_config

    merged: dict = {}
    for path in configfiles:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise PolyfuseError(f"{path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise PolyfuseError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise PolyfuseError(f"{path}: a config is a mapping of keys, not a {type(loaded).__name__}")
        update_config(merged, loaded)
    return load_config(merged)


def full_items(config: dict, root: Path) -> dict[tuple[str, str], tuple[list[dict], list[dict]]]:
    """Each cell's (items, shots), as the study's `items` jobs will choose them."""
    cells = {}
    cwd = Path.cwd()
    try:
        os.chdir(root)  # a dataset path is relative to where the study runs
        for task, spec in config["tasks"].items():
            for lang in spec["languages"]:
                shots, items = choose_items(
                    task,
                    lang,
                    spec["dataset"],
                    shots=int(spec.get("shots", 0)),
                    max_items=spec.get("max_items"),
                    seed=int(config["study"]["seed"]),
                )
                cells[task, lang] = (items, shots)
    finally:
        os.chdir(cwd)
    return cells


# --- costs a run's records hold ------------------------------------------------------------------------------------


def record_cost(rule: str, record: dict) -> dict | None:
    """What one record's model calls cost (None: not measured, e.g. cached before costs were kept)."""
    if family(rule) == "sample":
        candidates = [generation_cost(candidate) for candidate in record["candidates"]]
        return {key: sum(cost[key] for cost in candidates) for key in COUNTS}
    if rule == "reference":  # answers read from a file cost no call
        return generation_cost(record["candidate"]) if "candidate" in record else no_cost()
    cost = record.get("cost")
    return None if cost is None else {"calls": cost.get("calls", 1), **{k: cost[k] for k in COUNTS[1:]}}


def benchmark_seconds(path: Path) -> float:
    """A job's wall seconds, from its Snakemake benchmark file (nan without one)."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.EmptyDataError):
        return float("nan")
    except pd.errors.ParserError as exc:
        raise PolyfuseError(f"{path}: not a Snakemake benchmark ({str(exc).splitlines()[0]})") from None
    if "s" not in table.columns:
        raise PolyfuseError(f"{path}: not a Snakemake benchmark (no `s` column)")
    return float(table["s"].iloc[0]) if len(table) else float("nan")


def job_record_costs(job: Job, root: Path) -> dict:
    """What a finished job cost, from its records under `root`: items, calls, tokens, seconds, items not measured and
    its wall seconds."""
    cost = {"items": 0, **dict.fromkeys(COUNTS, 0.0), "unmeasured": 0}
    recorded = job.rule in RECORDED_RULES
    output = next((path for path in job.outputs if path.endswith(".jsonl")), None)
    if recorded and output:
        path = root / output
        if not path.is_file():
            raise PolyfuseError(f"{path}: missing: the run did not finish job {job.rule} {dict(job.wildcards)}")
        for line, record in read_jsonl_numbered(path):
            cost["items"] += 1
            try:
                spent = record_cost(job.rule, record)
            except (KeyError, TypeError) as exc:
                raise PolyfuseError(f"{path}:{line}: a {job.rule} record without its cost field {exc}") from None
            if spent is None:
                cost["unmeasured"] += 1
                continue
            for key in COUNTS:
                cost[key] += spent[key]
    cost["wall_seconds"] = benchmark_seconds(root / job.benchmark) if job.benchmark else 0.0  # `all` runs nothing
    return cost


def actual_costs(jobs: list[Job], root: Path) -> pd.DataFrame:
    """The costs a finished run's records hold, one row per job."""
    return pd.DataFrame([{"rule": job.rule, **job_record_costs(job, root)} for job in jobs])


# --- the forecast ----------------------------------------------------------------------------------------------------


def probe_costs(jobs: list[Job], probe_root: Path, cells: dict, config: dict) -> list[dict]:
    """Each job's cost from the probe's job of the same rule and wildcards (so the same output paths), scaled from the
    probe's items to the run's."""
    probe_items = {cell: _count_lines(probe_root / f"results/{cell[0]}/{cell[1]}/items.jsonl") for cell in cells}
    train_cells = [cell for cell in cells if config["tasks"][cell[0]]["role"] == "train"]
    fixed_steps = config.get("distill", {}).get("finetune", {}).get("max_steps") is not None
    rows = []
    for job in jobs:
        measured = job_record_costs(job, probe_root)
        if job.cell is not None:
            scale = len(cells[job.cell][0]) / max(probe_items[job.cell], 1)
        elif job.rule == "finetune" and not fixed_steps:
            scale = sum(len(cells[c][0]) for c in train_cells) / max(sum(probe_items[c] for c in train_cells), 1)
        else:
            scale = 1.0
        row = {key: measured[key] * scale for key in COUNTS}
        row["items"] = len(cells[job.cell][0]) if job.cell else 0
        row["unmeasured"] = measured["unmeasured"] * scale
        wall = measured["wall_seconds"]
        if job.rule in ITEM_BOUND_RULES:
            row["wall_seconds"] = wall * scale
        else:  # the fixed part (start-up, model load) stays; the model's part grows with the items
            # (an API engine's requests overlap, so its seconds may exceed the wall time they took)
            row["wall_seconds"] = wall + min(measured["seconds"], wall) * (scale - 1)
        rows.append(row)
    return rows


def _count_lines(path: Path) -> int:
    try:
        return count_records(path)
    except OSError:
        raise PolyfuseError(f"{path}: missing; the probe did not finish its items (run it again)") from None


def tokens_of(text: str) -> float:
    return len(text.encode("utf-8")) / BYTES_PER_TOKEN


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def prompt_tokens(items: list[dict], shots: list[dict]) -> float:
    """A cell's mean prompt: its item's text and every shot's question and answer (templates not counted)."""
    shown = sum(tokens_of(shot["input"]) + tokens_of(_text(shot.get("reference"))) for shot in shots)
    return sum(tokens_of(item["input"]) for item in items) / len(items) + shown


def budget_cost(job: Job, dag: StudyDag, cells: dict) -> dict:
    """A job's calls and tokens per the configured budgets (every completion at its whole budget): no probe needed."""
    # a job without model calls takes no model seconds; how long it runs is not forecast without a probe
    row = {"items": 0, **dict.fromkeys(COUNTS, 0.0), "wall_seconds": math.nan, "unmeasured": 0}
    if job.cell is None or job.rule not in RECORDED_RULES:
        return row
    wildcards = dict(job.wildcards)
    task, _ = job.cell
    items, shots = cells[job.cell]
    count, prompt, budget = len(items), prompt_tokens(items, shots), dag.max_tokens(task)
    sampler = wildcards.get("model", "")
    base, variant = methods.split_derived(sampler)
    size = methods.parse_variant(variant)[1].get("size") if variant else None
    pool = size or (1 if base in dag.students else pool_size(dag.config, base) if base else 0)
    judge = dag.config["judge"]
    if family(job.rule) == "sample":
        n = dag.sampling_job(wildcards)[1]["n"]
        calls, read, written = n, n * prompt, n * budget
    elif job.rule == "reference":
        if dag.job_model(job.rule, wildcards) is None:
            return row
        calls, read, written = 1, prompt, dag.tasks[task]["reference"].get("max_tokens", budget)
    elif job.rule == "fuse":
        calls, read, written = 1, prompt + pool * budget, dag.config["fusion"]["max_tokens"]
    elif job.rule == "aggregate":  # the zoo's aggregation methods: their calls, each shown a window or subset
        zoo, name = dag.zoo, wildcards["aggregator"]
        shown = {"self_moa_seq": zoo["self_moa_seq"]["window"], "rsa": zoo["rsa"]["subset"]}.get(name, pool)
        calls = aggregators.calls_floor(name, pool, zoo)
        fused = dag.config["fusion"]["max_tokens"]
        read, written = calls * (prompt + min(shown, pool) * max(budget, fused)), calls * fused
    elif methods.scorer_of(wildcards.get("selector", "single"))[0] in ZOO_SELECTORS:
        zoo, name = dag.zoo, methods.scorer_of(wildcards["selector"])[0]
        calls = selectors.calls_floor(name, pool, zoo)
        if name in ("knockout", "round_robin", "mbr_judge"):  # a verdict or rating reads two answers, may write
            pointwise = name == "mbr_judge" and zoo["mbr_judge"]["utility"] == "pointwise"
            passes = selectors.judge_passes("mbr_judge_pointwise" if pointwise else name, judge["mode"])
            generated = judge["max_tokens"] if judge["mode"] == "generate" else 0
            calls, read, written = calls * passes, calls * passes * (prompt + 2 * budget), calls * generated
        elif name == "self_certainty":  # one teacher-forced pass per candidate, after one shared prompt
            read, written = prompt + pool * budget, 0
        else:  # one call per window of the pool
            window = zoo["genselect"]["window"] if name == "genselect" else pool
            read, written = calls * (prompt + min(window, pool) * budget), calls * zoo["max_tokens"]
    elif job.rule in ("judge", "head_to_head"):
        # both orders of the pair; generating writes a verdict, the other modes read each label's log-probability
        answers = prompt + 2 * budget
        calls, read, written = 2, 2 * answers, (2 * judge["max_tokens"] if judge["mode"] == "generate" else 0)
    else:  # a selection: the prompt once and each candidate (a judge scorer rates each candidate on its own)
        if dag.job_model(job.rule, wildcards) is None:
            return row
        pointwise = methods.scorer_of(wildcards.get("selector", "bon-reward_model"))[0] == "llm_judge_pointwise"
        # a target score rates one text an item: the set's fused answer
        texts, length = (1, dag.config["fusion"]["max_tokens"]) if job.rule.startswith("target_") else (pool, budget)
        calls = texts
        read = texts * (prompt + length) if pointwise else prompt + texts * length
        written = texts * judge["max_tokens"] if pointwise and judge["mode"] == "generate" else 0
    row.update(items=count, calls=calls * count, tokens_in=read * count, tokens_out=written * count, seconds=math.nan)
    return row


def forecast_table(jobs: list[Job], costs: list[dict], dag: StudyDag, forecast: dict) -> pd.DataFrame:
    """One row per job: its rule, model, GPUs and forecast cost; seconds from the model's configured throughput, and
    the API cost of an API model (unknown without its price)."""
    rows = []
    for job, cost in zip(jobs, costs, strict=True):
        model = dag.job_model(job.rule, dict(job.wildcards))
        row = {"rule": job.rule, "model": model or "—", "gpus": job.gpus, **cost}
        speed = forecast["throughput"].get(model)
        if speed:  # the probe's fixed part (start-up, model load) stays, where a probe measured one
            measured = max(row["wall_seconds"] - row["seconds"], 0.0) if math.isfinite(row["wall_seconds"]) else 0.0
            row["seconds"] = row["tokens_in"] / speed["prompt"] + row["tokens_out"] / speed["completion"]
            row["wall_seconds"] = measured + row["seconds"]
        api = dag.models.get(model, {}).get("engine") == "openai"
        price = forecast["prices"].get(model)
        row["api_tokens"] = row["tokens_in"] + row["tokens_out"] if api else 0.0
        if price:
            row["api_cost"] = (row["tokens_in"] * price["input"] + row["tokens_out"] * price["output"]) / 1e6
        else:
            row["api_cost"] = math.nan if api and row["api_tokens"] else 0.0
        rows.append(row)
    table = pd.DataFrame(rows)
    table["gpu_hours"] = (table["wall_seconds"] * table["gpus"] / 3600).where(table["gpus"] > 0, 0.0)
    return table


def missing_settings(table: pd.DataFrame) -> list[str]:
    """What the forecast could not say, and the key that would let it."""
    called = table[table["calls"] > 0]
    lines = []
    unknown = sorted(set(called.loc[called["seconds"].isna(), "model"]))
    if unknown:
        lines.append(f"seconds unknown for {', '.join(unknown)}: set forecast.throughput.<model> or run a probe")
    unmeasured = table.loc[table["unmeasured"] > 0, "rule"]
    if len(unmeasured):
        lines.append(
            f"{len(unmeasured)} jobs ({', '.join(sorted(set(unmeasured)))}) read probe records without a cost (cached "
            "before costs were kept): those items count nothing; delete the probe's results to measure them"
        )
    unpriced = sorted(set(called.loc[called["api_cost"].isna(), "model"]))
    if unpriced:
        lines.append(f"API cost unknown for {', '.join(unpriced)}: set forecast.prices.<model>")
    return lines


SUMMED = ["calls", "tokens_in", "tokens_out", "seconds", "wall_seconds", "gpu_hours", "api_tokens", "api_cost"]


def known_sums(grouped) -> pd.DataFrame:
    """Each group's sums; a sum with an unknown part is unknown, not a smaller sum."""
    return grouped.sum(min_count=1).mask(grouped.agg(lambda part: part.isna().any()).astype(bool))


def summarise(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Jobs and summed costs per `by` (rule or model), and a total row; a sum with an unknown part is unknown."""
    grouped = table.groupby(by, sort=False)
    summary = known_sums(grouped[SUMMED])
    summary.insert(0, "jobs", grouped.size())
    summary.insert(1, "items", grouped["items"].sum())
    total = summary.sum(min_count=1).to_frame().T
    total.loc[:, SUMMED] = table[SUMMED].sum(skipna=False).tolist()
    total.index = ["total"]
    return pd.concat([summary, total])


def compare_table(forecast: pd.DataFrame, actual: pd.DataFrame) -> pd.DataFrame:
    """Forecast against a finished run's records per rule family: tokens and seconds, and their ratios."""
    columns = ["calls", "tokens_in", "tokens_out", "seconds"]
    left = known_sums(forecast.assign(family=forecast["rule"].map(family)).groupby("family")[columns])
    right = actual.assign(family=actual["rule"].map(family)).groupby("family")[columns].sum()
    right = right[(right["calls"] > 0) | (right["seconds"] > 0)]
    table = left.loc[right.index].add_suffix("_forecast").join(right.add_suffix("_actual"))
    for column in ("tokens_in", "tokens_out", "seconds"):
        table[f"{column}_ratio"] = table[f"{column}_forecast"] / table[f"{column}_actual"].replace(0, math.nan)
    return table


# --- the probe -------------------------------------------------------------------------------------------------------


def probe_configfile(config: dict, directory: Path, k: int) -> Path:
    """A config file that, after the study's own, caps every task at k items per cell."""
    tasks = {
        task: {"max_items": min(k, spec["max_items"]) if spec.get("max_items") else k}
        for task, spec in config["tasks"].items()
    }
    path = directory / f"probe-{k}.yaml"
    write_text(path, yaml.safe_dump({"tasks": tasks}, sort_keys=False))  # atomic: a reader never sees half of it
    return path


def probe_directory(root: Path, k: int) -> Path:
    """results/forecast/probe-K: the study's working directory with its own results/ (every other entry linked), so
    the study's relative paths (data, venvs) reach what they reach from `root`."""
    directory = root / "results" / "forecast" / f"probe-{k}"
    directory.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        if entry.name in ("results", ".snakemake"):
            continue
        link = directory / entry.name
        try:  # relative, so a moved checkout keeps its probe
            link.symlink_to(os.path.relpath(entry, directory), target_is_directory=entry.is_dir())
        except FileExistsError:  # an earlier probe's link, or another forecast's made at the same moment
            pass
    return directory


def run_probe(configfiles: list[Path], config: dict, root: Path, k: int, cores: str) -> Path:
    """The study on k items per cell, resumable; its working directory."""
    directory = probe_directory(root, k)
    files = [*configfiles, probe_configfile(config, directory, k)]
    command = [snakemake_executable(), "--snakefile", str(REPO / "Snakefile"), "--directory", str(directory)]
    command += ["--cores", cores, "--rerun-incomplete", "--configfile", *map(str, files)]
    log = directory / f"probe.{os.getpid()}.log"  # its own: two forecasts of one probe never write one log
    print(f"polyfuse.forecast: running the probe ({k} items per cell) in {directory}; its log: {log}", file=sys.stderr)
    with log.open("w", encoding="utf-8") as out:
        failed = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode != 0
    if failed and "LockException" in log.read_text(encoding="utf-8", errors="replace"):
        raise PolyfuseError(f"another Snakemake is running in {directory}: wait for it, then run the forecast again")
    if failed:
        raise PolyfuseError(f"the probe run failed; see {log}")
    return directory


def format_table(table: pd.DataFrame) -> str:
    shown = table.copy()
    for column in shown.columns:
        if (
            column.startswith(("calls", "tokens_in", "tokens_out", "api_tokens", "jobs", "items"))
            and "ratio" not in column
        ):
            shown[column] = shown[column].map(lambda v: "—" if pd.isna(v) else f"{v:,.0f}")
        elif pd.api.types.is_numeric_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "—" if pd.isna(v) else f"{v:,.2f}")
    return shown.to_markdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m polyfuse.forecast", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", type=Path, default=[Path("config/config.yaml")])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--probe", type=int, metavar="K", help="run the study on K items per cell and scale it up")
    source.add_argument("--pilot", type=Path, metavar="DIR", help="a finished pilot's working directory to scale up")
    parser.add_argument("--actual", type=Path, metavar="DIR", help="a finished run's working directory to compare")
    parser.add_argument("--cores", default="all", help="the probe's cores (default all)")
    args = parser.parse_args(argv)
    if args.probe is not None and args.probe < 1:
        parser.error(f"--probe must be at least 1, got {args.probe}")
    root = Path.cwd()
    configfiles = [path.resolve() for path in args.configfile]
    try:
        config = read_config(configfiles)
        dag = StudyDag(config)
        jobs = dag_jobs(configfiles, root)
        cells = full_items(config, root)
        if args.probe is not None or args.pilot is not None:
            probe_root = (
                run_probe(configfiles, config, root, args.probe, args.cores) if args.pilot is None else args.pilot
            )
            costs = probe_costs(jobs, probe_root, cells, config)
            source_text = f"scaled from the probe in {probe_root}"
        else:
            costs = [budget_cost(job, dag, cells) for job in jobs]
            source_text = "from the items' lengths and the configured budgets (every completion at its whole budget)"
        table = forecast_table(jobs, costs, dag, config["forecast"])
        comparison = compare_table(table, actual_costs(jobs, args.actual)) if args.actual else None
    except PolyfuseError as exc:
        sys.exit(f"polyfuse.forecast: {exc}")
    currency = config["forecast"]["currency"]
    print(f"Forecast of {' '.join(map(str, args.configfile))}: {len(jobs)} jobs, {source_text}.")
    print(
        "seconds: the models' own (records or forecast.throughput); wall_seconds: whole jobs, one after another; "
        f"gpu_hours: wall_seconds times each job's GPUs; api_cost in {currency} (forecast.prices). —: unknown.\n"
    )
    for line in missing_settings(table):
        print(f"Note: {line}.")
    print("\nPer rule (rules that call no model and whose time is not forecast left out)\n")
    per_rule = summarise(table, "rule")
    print(format_table(per_rule[(per_rule["calls"] > 0) | per_rule["wall_seconds"].notna()]))
    print("\nPer model\n")
    per_model = summarise(table, "model")
    print(format_table(per_model.loc[[*sorted(set(per_model.index) - {"—", "total"}), "—", "total"]]))
    if comparison is not None:
        print(f"\nForecast against the records of {args.actual}, per rule family\n")
        print(format_table(comparison))


if __name__ == "__main__":
    main()
