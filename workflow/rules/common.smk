import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod
from snakemake.utils import min_version, validate

min_version("9.0")

# Jobs import the polyfuse package from this checkout, whichever environment runs them.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from polyfuse.config import check_config, check_schema
from polyfuse.errors import PolyfuseError
from polyfuse.tasks import task_kind

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
JUDGED_TASKS = [task for task, spec in TASKS.items() if task_kind(spec["kind"]).metrics[0] == "winrate"]
METRIC_TASKS = [task for task in TASKS if task not in JUDGED_TASKS]
BON = [f"bon-{selector}" for selector in STUDY["selectors"]]
COMET = config["comet"]
TRANSLATION_TASKS = [task for task, spec in TASKS.items() if spec["kind"] == "translation"]
# Rules of the torch group run under conda's env python, or on the pip route under config["torch_python"].
TORCH_PYTHON = (
    "python"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else os.path.join(workflow.basedir, config["torch_python"])  # relative to the checkout
)


def samplers(task):
    return TASKS[task].get("samplers", STUDY["samplers"])


def fusion_methods(task):
    return [f"fusion-{fusor}" for fusor in TASKS[task].get("fusors", STUDY["fusors"])]


def head_to_head(task):
    """FusioN against each BoN variant, judged head-to-head on chat tasks."""
    return [f"{fusion}__vs__{bon}" for fusion in fusion_methods(task) for bon in BON]


def methods(task):
    oracle = ["oracle"] if task_kind(TASKS[task]["kind"]).has_oracle else []
    if task in TRANSLATION_TASKS and COMET["model"] and COMET["oracle"]:
        oracle.append("oracle-comet")
    return ["single", *oracle, *BON, *fusion_methods(task)]


def alternatives(names):
    """A regex matching exactly `names`; one that matches nothing when there are none."""
    return "|".join(sorted(map(str, names))) or "(?!)"


wildcard_constraints:
    task=alternatives(TASKS),
    lang=alternatives({lang for task in TASKS.values() for lang in task["languages"]}),
    model=alternatives(MODELS),
    fusor=alternatives(MODELS),
    selector=r"single|oracle|bon-(?!reward_model)[a-z_]+",
    method=r"single|oracle|oracle-comet|bon-[a-z_]+|fusion-[A-Za-z0-9_.-]+",
    pair=r"fusion-[A-Za-z0-9_.-]+__vs__bon-[a-z_]+",


def cells(task, pattern):
    """`pattern` for every (language, sampler) cell of `task`."""
    return [
        pattern.format(task=task, lang=lang, model=model)
        for lang in TASKS[task]["languages"]
        for model in samplers(task)
    ]


def score_files(suffix):
    """Every method's scores, and on judged tasks the head-to-head verdicts."""
    per_method = [
        path
        for task in TASKS
        for method in methods(task)
        for path in cells(task, f"results/{{task}}/{{lang}}/scores/{{model}}/{method}{suffix}")
    ]
    pairs = [
        path
        for task in JUDGED_TASKS
        for pair in head_to_head(task)
        for path in cells(task, f"results/{{task}}/{{lang}}/scores/{{model}}/h2h/{pair}{suffix}")
    ]
    comet = [
        path
        for task in TRANSLATION_TASKS
        for path in cells(task, f"results/{{task}}/{{lang}}/scores/{{model}}/comet{suffix}")
        if COMET["model"]
    ]
    return per_method + pairs + comet


def fusion_files():
    return [
        path
        for task in TASKS
        for method in fusion_methods(task)
        for path in cells(task, f"results/{{task}}/{{lang}}/outputs/{{model}}/{method}.jsonl")
    ]


def scorer_model(selector):
    return STUDY["scorer_models"].get(selector.removeprefix("bon-"))


# The model a job runs, by rule, from its wildcards; None for jobs that run none.
def selector_model(wildcards):
    """The model a BoN selector runs; None for model-free ones (single, oracle, mbr_chrf)."""
    return scorer_model(wildcards.selector)


def reference_model(wildcards):
    """The model answering as a chat task's reference system; None when its answers come from a file."""
    return TASKS[wildcards.task]["reference"].get("model")


def reference_answers(wildcards):
    """A chat task's file of reference answers, so editing it re-runs the judging; a reference model has none."""
    reference = TASKS[wildcards.task]["reference"]
    return reference["file"].format(lang=wildcards.lang) if "file" in reference else []


def judge_model(wildcards):
    return config["judge"].get("model")


def report_outputs():
    per_task = [f"results/tables/{task}.{ext}" for task in TASKS for ext in ("csv", "md")]
    return (
        per_task
        + [f"results/figures/{task}.png" for task in TASKS]
        + [
            "results/tables/fusion_parse.csv",
            "results/report.md",
        ]
    )


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


def model_resource(key, default):
    """A resource of the model a job runs (models.<name>.resources), for cluster profiles."""

    def get(model):
        return MODELS.get(model, {}).get("resources", {}).get(key, default) if model else default

    return get


GPUS = model_resource("gpu", 0)
MEM_MB = model_resource("mem_mb", 8000)
RUNTIME = model_resource("runtime", 120)


def slurm_partition(gpus):
    """A job's SLURM partition follows its GPU need, so CPU-only jobs never queue for GPU nodes."""
    return config["slurm"]["gpu_partition" if gpus else "cpu_partition"]


def model_resources(model_of):
    """The cluster resources of a job that runs the model `model_of(wildcards)` (None: no model)."""
    return {
        "gpu": lambda w: GPUS(model_of(w)),
        "mem_mb": lambda w: MEM_MB(model_of(w)),
        "runtime": lambda w: RUNTIME(model_of(w)),
        "slurm_partition": lambda w: slurm_partition(GPUS(model_of(w))),
    }


# The conda environment each engine's rules run in (envs/*.yaml); jobs without a model use llama.cpp's.
ENGINE_ENVS = {"llamacpp": "llamacpp", "openai": "llamacpp", "vllm": "vllm"}


def model_env(model_of):
    """The conda directive of a rule whose job runs the model `model_of(wildcards)`."""

    def env(wildcards):
        model = model_of(wildcards)
        engine = MODELS[model]["engine"] if model else "llamacpp"
        return f"../../envs/{ENGINE_ENVS[engine]}.yaml"

    return env


def cache_file(model):
    return os.path.join(config["cache_dir"], f"{model}.sqlite")


def max_tokens(task):
    from polyfuse.tasks import task_kind

    return TASKS[task].get("max_tokens", task_kind(TASKS[task]["kind"]).max_tokens)
