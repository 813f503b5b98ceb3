import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod
from snakemake.utils import min_version

min_version("9.0")

# Jobs import the polyfuse package from this checkout, whichever environment runs them.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from polyfuse import methods
from polyfuse.config import finetune_settings, student_gguf
from polyfuse.dag import StudyDag
from polyfuse.settings import load_config
from polyfuse.aggregators import AGGREGATORS
from polyfuse.errors import PolyfuseError
from polyfuse.selectors import ZOO_SELECTORS
from polyfuse.tasks import task_kind

try:
    config.update(load_config(config))  # typed (polyfuse/settings.py): defaults filled, one line naming a bad key
    FINETUNE = finetune_settings(config) if "distill" in config else {}  # locates the base student's GGUF
except PolyfuseError as exc:
    raise WorkflowError(f"config: {exc}") from None

# The study's samplers, methods and files, read from the config (polyfuse/dag.py, unit-tested without Snakemake).
STUDY_DAG = StudyDag(config)
TASKS, TEST_TASKS, TRAIN_TASKS = STUDY_DAG.tasks, STUDY_DAG.test_tasks, STUDY_DAG.train_tasks
STUDY, DISTILL, SETS, STUDENTS = STUDY_DAG.study, STUDY_DAG.distill, STUDY_DAG.sets, STUDY_DAG.students
POOLS = STUDY_DAG.pools
MODELS = STUDY_DAG.models
JUDGED_TASKS, BON, COMET, TRANSLATION_TASKS = (
    STUDY_DAG.judged_tasks,
    STUDY_DAG.bon,
    STUDY_DAG.comet,
    STUDY_DAG.translation_tasks,
)
METRIC_TASKS = [task for task in TEST_TASKS if task not in JUDGED_TASKS]
ANALYSES, VARIANTS = STUDY_DAG.analyses, STUDY_DAG.variants
# The rules' input functions, by the names the rules use.
samplers, students, fusion_methods, head_to_head = (
    STUDY_DAG.samplers,
    STUDY_DAG.students_of,
    STUDY_DAG.fusion_methods,
    STUDY_DAG.head_to_head,
)
methods_of, set_methods, target_scorings, student_file = (
    STUDY_DAG.methods_of,
    STUDY_DAG.set_methods,
    STUDY_DAG.target_scorings,
    STUDY_DAG.student_file,
)
score_files, fusion_files, distill_files, report_outputs = (
    STUDY_DAG.score_files,
    STUDY_DAG.fusion_files,
    STUDY_DAG.distill_files,
    STUDY_DAG.report_outputs,
)
analysis_pools, analysis_files, claim_fusions, fusor_choice_files, analysis_outputs = (
    STUDY_DAG.analysis_pools,
    STUDY_DAG.analysis_files,
    STUDY_DAG.claim_fusions,
    STUDY_DAG.fusor_choice_files,
    STUDY_DAG.analysis_outputs,
)
# Rules of the torch group run under conda's env python, or on the pip route under config["torch_python"].
ON_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
TORCH_PYTHON = "python" if ON_CONDA else os.path.join(workflow.basedir, config["torch_python"])
TRAIN_PYTHON = "python" if ON_CONDA else os.path.join(workflow.basedir, config["train_python"])


def alternatives(names):
    """A regex matching exactly `names`; one that matches nothing when there are none."""
    return "|".join(sorted(map(str, names))) or "(?!)"


# A BoN selector may name its scorer's model: bon-<scorer>@<model>.
SCORED_BY = rf"(@({alternatives(config['models'])}))?"


wildcard_constraints:
    task=alternatives(TASKS),
    lang=alternatives({lang for task in TASKS.values() for lang in task["languages"]}),
    model=alternatives([*MODELS, *POOLS, *(d for task in TEST_TASKS for d in STUDY_DAG.derived_samplers(task))]),
    pool=alternatives(POOLS),
    member=r"\d+",
    set=alternatives(SETS),
    fusor=alternatives(config["models"]),
    selector=rf"single|oracle|bon-(?!reward_model|mbr_comet)[a-z_]+{SCORED_BY}",
    method=rf"{'|'.join(methods.PLAIN_METHODS)}|bon-[a-z_]+{SCORED_BY}|fusion-(?:[a-z_]+@)?[A-Za-z0-9_.-]+",
    aggregator=alternatives(AGGREGATORS),
    pair=rf"fusion-[A-Za-z0-9_.-]+__vs__bon-[a-z_]+{SCORED_BY}",


def set_files(wildcards):
    """The SFT files a set's student is trained on: every training task and language."""
    return STUDY_DAG.set_files(wildcards.set)


# The model a job runs, by rule, from its wildcards (polyfuse/dag.py, which reads them as a dict); None for jobs
# that run none.
def job_model(rule, wildcards):
    return STUDY_DAG.job_model(rule, dict(wildcards.items()))


def selector_model(wildcards):
    """The model a BoN selector runs; None for model-free ones (single, oracle, mbr_chrf)."""
    return job_model("select", wildcards)


def judge_label(wildcards):
    """A head-to-head's verdicts are recorded under its pair's label; a judgement against the reference under none."""
    return methods.pair_label(wildcards.pair) if hasattr(wildcards, "pair") else None


def reference_model(wildcards):
    """The model answering as a chat task's reference system; None when its answers come from a file."""
    return job_model("reference", wildcards)


def reference_answers(wildcards):
    """A chat task's file of reference answers, so editing it re-runs the judging; a reference model has none."""
    reference = TASKS[wildcards.task]["reference"]
    return reference["file"].format(lang=wildcards.lang) if "file" in reference else []


def judge_model(wildcards):
    return job_model("judge", wildcards)


def analysis_report_outputs(name, subcategory):
    """An analysis rule's outputs: its table and figure in the report, under the caption named after it, and the
    same table as Markdown and the figure as PDF."""
    shown = dict(caption=f"../report/{name}.rst", category="Analyses", subcategory=subcategory)
    return {
        "table": report(f"results/analyses/{name}.csv", **shown),
        "markdown": f"results/analyses/{name}.md",
        "figure": report(f"results/analyses/{name}.png", **shown),
        "pdf": f"results/analyses/{name}.pdf",
    }


def zoo_report_outputs():
    """The zoo rule's outputs per task: its table and figure in the report, the Markdown table and the PDF."""
    outputs = {}
    for task in STUDY_DAG.zoo_tasks:
        shown = dict(caption="../report/zoo.rst", category="Method zoo", subcategory=task)
        outputs[f"{task}_table"] = report(f"results/tables/zoo_{task}.csv", **shown)
        outputs[f"{task}_markdown"] = f"results/tables/zoo_{task}.md"
        outputs[f"{task}_figure"] = report(f"results/figures/zoo_{task}.png", **shown)
        outputs[f"{task}_pdf"] = f"results/figures/zoo_{task}.pdf"
    return outputs


STUDY_METHODS = STUDY_DAG.study_methods()  # in display order: each figure colours a method the same way
ANALYSIS_SETTINGS = {
    **config["report"],
    "tasks": TEST_TASKS,
    "methods": STUDY_METHODS,
    "metrics": {task: task_kind(spec["kind"]).metrics[0] for task, spec in TEST_TASKS.items()},
    "subsets": ANALYSES["subsets"] if ANALYSES else 0,
    "fusors": ANALYSES.get("fusors") if ANALYSES else None,
    "comet_model": COMET["model"],  # the claims name the COMET model whose scores they read
    "distill": DISTILL,  # the claims compare the students of distill.compare
}
# The zoo's table alone reads its tasks and the study's FusioN and BoN methods each zoo method is compared with.
ZOO_ANALYSIS_SETTINGS = {
    **ANALYSIS_SETTINGS,
    "zoo_tasks": STUDY_DAG.zoo_tasks,
    "zoo_fusion": {task: STUDY_DAG.fusion_methods(task)[0] for task in STUDY_DAG.zoo_tasks},
    "zoo_bon": BON,
}
ZOO = config.get("zoo") or {}
zoo_files, zoo_outputs = STUDY_DAG.zoo_files, STUDY_DAG.zoo_outputs


def zoo_params(wildcards):
    """What a zoo job reads of the zoo (its calls' sampling and seed, and its own method's block) with the study's
    seed, which orders the candidates as the fusor sees them; nothing for any other job. So editing the zoo re-runs
    the jobs of the methods it changes, and no other."""
    selector = getattr(wildcards, "selector", None)
    method = getattr(wildcards, "aggregator", None) or (selector and methods.scorer_of(selector)[0])
    if method not in (*ZOO_SELECTORS, *AGGREGATORS):
        return {}
    shared = {key: ZOO[key] for key in ("temperature", "max_tokens", "seed")}
    return {**shared, "order_seed": STUDY["seed"], **({method: ZOO[method]} if method in ZOO else {})}


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
    """The model's cache: a directory of shards, one per job that wrote to it (see polyfuse/cache.py)."""
    return os.path.join(config["cache_dir"], model)


max_tokens = STUDY_DAG.max_tokens


def sampling_job(wildcards):
    """What a sampling job draws: its model, its count and seed, and its sampling params (polyfuse/dag.py)."""
    return STUDY_DAG.sampling_job(dict(wildcards.items()))


def sampling_model(wildcards):
    return sampling_job(wildcards)[0]


# The base student's GGUF, so replacing it retrains every student; a hub GGUF is fetched by the job itself.
STUDENT_BASE = [FINETUNE["base"]["gguf"]] if "gguf" in FINETUNE.get("base", {}) else []
EXPORT_SETTINGS = {key: FINETUNE[key] for key in ("base", "export", "gguf_type") if key in FINETUNE}
FINETUNE_RESOURCES = (
    {
        **DISTILL["finetune"]["resources"],
        "slurm_partition": slurm_partition(DISTILL["finetune"]["resources"]["gpu"]),
    }
    if DISTILL
    else {}
)
