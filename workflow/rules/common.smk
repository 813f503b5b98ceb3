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
from polyfuse.config import (
    analysed_samplers,
    analysis_variants,
    finetune_settings,
    student_gguf,
    student_models,
)
from polyfuse.pools import pool_members
from polyfuse.settings import load_config
from polyfuse.errors import PolyfuseError
from polyfuse.tasks import task_kind

try:
    config.update(load_config(config))  # typed (polyfuse/settings.py): defaults filled, one line naming a bad key
    FINETUNE = finetune_settings(config) if "distill" in config else {}  # locates the base student's GGUF
except PolyfuseError as exc:
    raise WorkflowError(f"config: {exc}") from None

TASKS = config["tasks"]
# Test tasks are scored and reported; train tasks are the prompt pools of the synthetic-data sets, never scored.
TEST_TASKS = {task: spec for task, spec in TASKS.items() if spec["role"] == "test"}
TRAIN_TASKS = {task: spec for task, spec in TASKS.items() if spec["role"] == "train"}
STUDY = config["study"]
# A pool's members sample at the pool's temperature, or the study's, unless they set their own.
POOLS = {
    name: pool_members(name, {"temperature": STUDY["temperature"], **spec}, config["models"])
    for name, spec in config["pools"].items()
}
DISTILL = config.get("distill")
SETS = DISTILL["sets"] if DISTILL else {}
# Each student is one more model: the base student and one per set, fine-tuned and exported to GGUF for llama.cpp.
STUDENTS = student_models(config) if DISTILL else {}
MODELS = {**config["models"], **STUDENTS}
JUDGED_TASKS = [task for task, spec in TEST_TASKS.items() if task_kind(spec["kind"]).metrics[0] == "winrate"]
METRIC_TASKS = [task for task in TEST_TASKS if task not in JUDGED_TASKS]
BON = [methods.bon(selector) for selector in STUDY["selectors"]]
COMET = config["comet"]
TRANSLATION_TASKS = [task for task, spec in TEST_TASKS.items() if spec["kind"] == "translation"]
# The analyses' derived pools (subsets, injections, orders) of every analysed cell's samplers; no new sampling.
ANALYSES = config.get("analyses")
VARIANTS = analysis_variants(config)
# Rules of the torch group run under conda's env python, or on the pip route under config["torch_python"].
ON_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
TORCH_PYTHON = "python" if ON_CONDA else os.path.join(workflow.basedir, config["torch_python"])
TRAIN_PYTHON = "python" if ON_CONDA else os.path.join(workflow.basedir, config["train_python"])


def samplers(task):
    """The samplers (models or pools) of a test task's test-time comparison."""
    return TASKS[task].get("samplers", STUDY["samplers"])


def students(task):
    return list(STUDENTS) if DISTILL and task in DISTILL["evaluate"] else []


def fusion_methods(task):
    return [methods.fusion(fusor) for fusor in TASKS[task].get("fusors", STUDY["fusors"])]


def head_to_head(task):
    """FusioN against each BoN variant, judged head-to-head on chat tasks."""
    return [methods.pair(fusion, bon) for fusion in fusion_methods(task) for bon in BON]


def derived_samplers(task, family=None):
    """The derived pools of a task's samplers for one analysis family (every family by default)."""
    if not ANALYSES or task not in ANALYSES["cells"]:
        return []
    return [
        methods.derived(sampler, variant)
        for sampler in analysed_samplers(config, task)
        for variant in VARIANTS
        if family is None or methods.parse_variant(variant)[0] == family
    ]


def methods_of(task, sampler=None):
    """The methods applied to a sampler's pools of a task; a student answers once, so only `single`.

    A derived pool gets BoN and FusioN; a position-bias pool only FusioN (selection does not see an order).
    """
    if sampler in STUDENTS:
        return ["single"]
    variant = methods.split_derived(sampler or "")[1]
    if variant:
        shown = methods.parse_variant(variant)[0] == "order"
        return fusion_methods(task) if shown else [*BON, *fusion_methods(task)]
    oracle = [methods.ORACLE] if task_kind(TASKS[task]["kind"]).has_oracle else []
    if task in TRANSLATION_TASKS and COMET["model"] and COMET["oracle"]:
        oracle.append(methods.COMET_ORACLE)
    return ["single", *oracle, *BON, *fusion_methods(task)]


def set_methods(pool):
    """Every method some set applies to `pool`: the target of each, and the others shown beside it in the records."""
    return sorted({spec["method"] for spec in SETS.values() if spec["pool"] == pool})


def target_scorings(pool):
    """(fusion, BoN) method pairs of `pool`'s sets: each fused answer is scored by each BoN method's scorer too."""
    made = set_methods(pool)
    by_family = {family: [m for m in made if methods.parse(m)[0] == family] for family in ("fusion", "bon")}
    return [(fusion, selector) for fusion in by_family["fusion"] for selector in by_family["bon"]]


def alternatives(names):
    """A regex matching exactly `names`; one that matches nothing when there are none."""
    return "|".join(sorted(map(str, names))) or "(?!)"


# A BoN selector may name its scorer's model: bon-<scorer>@<model>.
SCORED_BY = rf"(@({alternatives(config['models'])}))?"


wildcard_constraints:
    task=alternatives(TASKS),
    lang=alternatives({lang for task in TASKS.values() for lang in task["languages"]}),
    model=alternatives([*MODELS, *POOLS, *(d for task in TEST_TASKS for d in derived_samplers(task))]),
    pool=alternatives(POOLS),
    member=r"\d+",
    set=alternatives(SETS),
    fusor=alternatives(config["models"]),
    selector=rf"single|oracle|bon-(?!reward_model)[a-z_]+{SCORED_BY}",
    method=rf"{'|'.join(methods.PLAIN_METHODS)}|bon-[a-z_]+{SCORED_BY}|fusion-[A-Za-z0-9_.-]+",
    pair=rf"fusion-[A-Za-z0-9_.-]+__vs__bon-[a-z_]+{SCORED_BY}",


def cells(task, pattern, with_students=False):
    """`pattern` for every (language, sampler) cell of `task`; with its students when asked."""
    return [
        pattern.format(task=task, lang=lang, model=model)
        for lang in TASKS[task]["languages"]
        for model in [*samplers(task), *(students(task) if with_students else [])]
    ]


def score_files(suffix):
    """Every method's scores (the students' included), and on judged tasks the head-to-head verdicts."""
    per_method = [
        path
        for task in TEST_TASKS
        for lang in TASKS[task]["languages"]
        for sampler in [*samplers(task), *students(task)]
        for method in methods_of(task, sampler)
        for path in [f"results/{task}/{lang}/scores/{sampler}/{method}{suffix}"]
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
        for path in cells(task, f"results/{{task}}/{{lang}}/scores/{{model}}/comet{suffix}", with_students=True)
        if COMET["model"]
    ]
    return per_method + pairs + comet


def fusion_files():
    return [
        path
        for task in TEST_TASKS
        for method in fusion_methods(task)
        for path in cells(task, f"results/{{task}}/{{lang}}/outputs/{{model}}/{method}.jsonl")
    ]


def distill_files(name):
    """A file of every set on every training task and language: `sft.jsonl` or `card.json`."""
    return [
        f"results/distill/{set_name}/{task}/{lang}/{name}"
        for set_name in SETS
        for task in TRAIN_TASKS
        for lang in TASKS[task]["languages"]
    ]


def set_files(wildcards):
    """The SFT files a set's student is trained on: every training task and language."""
    return [
        f"results/distill/{wildcards.set}/{task}/{lang}/sft.jsonl"
        for task in TRAIN_TASKS
        for lang in TASKS[task]["languages"]
    ]


def student_file(model):
    """The GGUF a student model loads, so sampling a student waits for its fine-tune; other models have none."""
    return [STUDENTS[model]["path"]] if model in STUDENTS else []


def scorer_model(selector):
    """The model a BoN selector scores with: the one it names (<scorer>@<model>), else study.scorer_models'."""
    scorer, model = methods.scorer_of(selector)
    return model or STUDY["scorer_models"].get(scorer)


# The model a job runs, by rule, from its wildcards; None for jobs that run none.
def selector_model(wildcards):
    """The model a BoN selector runs; None for model-free ones (single, oracle, mbr_chrf)."""
    return scorer_model(wildcards.selector)


def judge_label(wildcards):
    """A head-to-head's verdicts are recorded under its pair's label; a judgement against the reference under none."""
    return methods.pair_label(wildcards.pair) if hasattr(wildcards, "pair") else None


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
    per_task = [f"results/tables/{task}.{ext}" for task in TEST_TASKS for ext in ("csv", "md")]
    distill = [f"results/{name}" for name in ("tables/distill.csv", "tables/distill.md", "figures/distill.png")]
    distill += ["results/figures/distill.pdf"]
    return (
        per_task
        + [f"results/figures/{task}.png" for task in TEST_TASKS]
        + ["results/tables/fusion_parse.csv", "results/report.md"]
        + (distill if DISTILL else [])
    )


def analysed_pools(families):
    """(task, language, sampler) of every analysed cell: its samplers and their derived pools of `families`."""
    if not ANALYSES:
        return []
    return [
        (task, lang, sampler)
        for task, languages in ANALYSES["cells"].items()
        for lang in languages
        for sampler in [
            *analysed_samplers(config, task),
            *(d for family in families for d in derived_samplers(task, family)),
        ]
    ]


def analysis_pools(families=()):
    return [f"results/{task}/{lang}/pools/{sampler}.jsonl" for task, lang, sampler in analysed_pools(families)]


def analysis_files(folder, families=()):
    """The `folder` (outputs or scores) file of every method of every analysed sampler of `families`."""
    return [
        f"results/{task}/{lang}/{folder}/{sampler}/{method}.jsonl"
        for task, lang, sampler in analysed_pools(families)
        for method in methods_of(task, sampler)
    ]


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


def claim_fusions():
    """The fusion outputs the claims test: the study's cells, and the N-scaling subsets' (whose parse share counts)."""
    study = [
        f"results/{task}/{lang}/outputs/{sampler}/{method}.jsonl"
        for task in TEST_TASKS
        for lang in TASKS[task]["languages"]
        for sampler in samplers(task)
        for method in fusion_methods(task)
    ]
    subsets = [
        f"results/{task}/{lang}/outputs/{sampler}/{method}.jsonl"
        for task, lang, sampler in (analysed_pools(["subset"]) if ANALYSES and ANALYSES["sizes"] else [])
        for method in fusion_methods(task)
    ]
    return list(dict.fromkeys(study + subsets))


def fusor_choice_files(folder, families=("fusion", "bon")):
    """The `folder` file of each model of analyses.fusors as the fusor and as the BoN scorer, per analysed cell."""
    choice = ANALYSES.get("fusors") if ANALYSES else None
    if not choice:
        return []
    compared = [
        method
        for model in choice["models"]
        for method in (methods.fusion(model), methods.bon(methods.scored_by(choice["scorer"], model)))
    ]
    return [
        f"results/{task}/{lang}/{folder}/{sampler}/{method}.jsonl"
        for task, lang, sampler in analysed_pools(())
        for method in compared
        if methods.parse(method)[0] in families
    ]


def analysis_outputs():
    """The analyses' tables and figures: diagnostics always, each other analysis when its config asks for it."""
    if not ANALYSES:
        return []
    asked = {
        "diagnostics": True,
        "nscaling": ANALYSES["sizes"],
        "compute": ANALYSES["sizes"],
        "robustness": ANALYSES["injections"]["kinds"] and ANALYSES["injections"]["k"],
        "position": ANALYSES["orders"],
        "fusors": ANALYSES.get("fusors"),
    }
    return [f"results/analyses/{name}.{ext}" for name, wanted in asked.items() if wanted for ext in ("csv", "png")]


# Every method of the study in display order: each figure colours a method the same way.
STUDY_METHODS = sorted(
    {method for task in TEST_TASKS for sampler in samplers(task) for method in methods_of(task, sampler)},
    key=methods.method_rank,
)
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


def max_tokens(task):
    from polyfuse.tasks import task_kind

    return TASKS[task].get("max_tokens", task_kind(TASKS[task]["kind"]).max_tokens)


def sampling_job(wildcards):
    """What a sampling job draws: its model, how many candidates per item (and the seed), and the sampling params.

    A pool member draws its own count at its own temperature; a student answers once; any other sampler
    draws study.n candidates.
    """
    if hasattr(wildcards, "member"):
        member = POOLS[wildcards.pool][int(wildcards.member)]
        model, n, temperature = member["model"], member["n"], member["temperature"]
    elif wildcards.model in STUDENTS:
        model, n, temperature = wildcards.model, 1, DISTILL["student"]["temperature"]
    else:
        model, n, temperature = wildcards.model, STUDY["n"], STUDY["temperature"]
    sampling = {"temperature": temperature, "top_p": STUDY["top_p"], "max_tokens": max_tokens(wildcards.task)}
    return model, {"n": n, "seed": STUDY["seed"]}, sampling


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
