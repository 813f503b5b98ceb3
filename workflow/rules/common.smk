import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

# Jobs import the polyfuse package from this checkout, whichever environment runs them.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from polyfuse.config import check_config, check_schema
from polyfuse.errors import PolyfuseError

SCHEMA = os.path.join(workflow.current_basedir, "../schemas/config.schema.yaml")
try:
    check_schema(config, SCHEMA)  # one line naming the key, before Snakemake's own multi-line report
    validate(config, SCHEMA)  # fills in the schema's defaults
    check_config(config)
except PolyfuseError as exc:
    raise WorkflowError(f"config: {exc}") from None

TASKS = config["tasks"]
MODELS = config["models"]
STUDY = config["study"]
METHODS = (
    ["single", "oracle"]
    + [f"bon-{selector}" for selector in STUDY["selectors"]]
    + [f"fusion-{fusor}" for fusor in STUDY["fusors"]]
)


def alternatives(names):
    return "|".join(sorted(map(str, names)))


wildcard_constraints:
    task=alternatives(TASKS),
    lang=alternatives({lang for task in TASKS.values() for lang in task["languages"]}),
    model=alternatives(MODELS),
    fusor=alternatives(MODELS),
    selector=r"single|oracle|bon-[a-z_]+",
    method=r"single|oracle|bon-[a-z_]+|fusion-[A-Za-z0-9_.-]+",


def cells(pattern):
    """`pattern` for every (task, language, sampler) cell of the study."""
    return [
        pattern.format(task=task, lang=lang, model=model)
        for task, spec in TASKS.items()
        for lang in spec["languages"]
        for model in STUDY["samplers"]
    ]


def score_files(suffix):
    return [
        path
        for method in METHODS
        for path in cells(f"results/{{task}}/{{lang}}/scores/{{model}}/{method}{suffix}")
    ]


def fusion_files():
    return [
        path
        for fusor in STUDY["fusors"]
        for path in cells(f"results/{{task}}/{{lang}}/outputs/{{model}}/fusion-{fusor}.jsonl")
    ]


def report_outputs():
    per_task = [f"results/tables/{task}.{ext}" for task in TASKS for ext in ("csv", "md")]
    return per_task + [f"results/figures/{task}.png" for task in TASKS] + [
        "results/tables/fusion_parse.csv",
        "results/report.md",
    ]


def dataset_file(wildcards):
    """The local dataset file of a cell, so editing it re-runs its items; hub datasets have none."""
    dataset = TASKS[wildcards.task]["dataset"]
    if "files" in dataset:
        return dataset["files"][wildcards.lang]
    if "path" in dataset:
        return dataset["path"].format(lang=wildcards.lang)
    return []


def model_params(*names):
    return {name: MODELS[name] for name in names}


def cache_file(model):
    return os.path.join(config["cache_dir"], f"{model}.sqlite")


def max_tokens(task):
    from polyfuse.tasks import task_kind

    return TASKS[task].get("max_tokens", task_kind(TASKS[task]["kind"]).max_tokens)
