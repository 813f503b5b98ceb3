"""Checks of a study config beyond its typed sections (polyfuse.settings): every name it uses must exist.

Run when the workflow is parsed, so an unknown task, language, model or scorer is
rejected before any job starts or any model is loaded. Imports stay light here:
no engine backend, pandas or plotting library is loaded.
"""

from __future__ import annotations

import math

from polyfuse import methods
from polyfuse.aggregators import aggregator
from polyfuse.engines import SUMMED_LOGLIK_ENGINES
from polyfuse.engines.spec import CONTEXT_KEYS, ENGINE_MODELS
from polyfuse.errors import PolyfuseError
from polyfuse.pools import pool_members
from polyfuse.select import MODEL_SCORERS, SCORERS
from polyfuse.selectors import ZOO_SELECTORS
from polyfuse.tasks import load_template, task_kind


def _known(value, known, where: str) -> None:
    if value not in known:
        raise PolyfuseError(f"{where}: unknown {value!r}; known: {', '.join(sorted(known))}")


def _needs_summed_loglik(models: dict, model: str, setting: str) -> None:
    engine = models[model]["engine"]
    if engine not in SUMMED_LOGLIK_ENGINES:
        raise PolyfuseError(
            f"{setting} needs summed token log-probabilities, which model {model!r} on the {engine} engine does "
            f"not give (engines that do: {', '.join(sorted(SUMMED_LOGLIK_ENGINES))})"
        )


def check_config(config: dict) -> None:
    """The checks that span sections, on a config the typed models (polyfuse.settings) have read: every name it
    uses exists, and every model can hold what it is given."""
    models = config["models"]
    study = config["study"]
    pools = config.get("pools", {})
    for name, spec in pools.items():
        if name in models:
            raise PolyfuseError(f"pools.{name}: a pool cannot share its name with a model")
        pool_members(name, {"temperature": study["temperature"], **spec}, models)
    for role, known in (("samplers", {**models, **pools}), ("fusors", models)):
        for model in study[role]:
            _known(model, known, f"study.{role}")
        for name, task in config["tasks"].items():
            for model in task.get(role, []):
                _known(model, known, f"tasks.{name}.{role}")
    for selector in study["selectors"]:
        if selector in ZOO_SELECTORS:
            raise PolyfuseError(f"study.selectors: {selector!r} is a method of the zoo: list it in zoo.selectors")
        _known(selector, set(SCORERS) - {"single", "oracle"}, "study.selectors")
        if selector in MODEL_SCORERS:
            _known(study["scorer_models"].get(selector), models, f"study.scorer_models.{selector}")
    if "loglik" in study["selectors"] and study["loglik_normalization"] == "sum":
        _needs_summed_loglik(models, study["scorer_models"]["loglik"], "study.loglik_normalization: sum")
    judge = config["judge"]
    if any(task["kind"] == "chat" for task in config["tasks"].values()) or "llm_judge_pointwise" in study["selectors"]:
        _known(judge.get("model"), models, "judge.model")
        if judge["mode"] != "generate":
            _needs_summed_loglik(models, judge["model"], f"judge.mode: {judge['mode']}")
        load_template(judge["template"], "judge", models[judge["model"]]["prompt_style"])
        load_template(judge["pointwise_template"], "judge", models[judge["model"]]["prompt_style"])
    for name, task in config["tasks"].items():
        reference = task.get("reference", {})
        if task["kind"] == "chat" and not reference and task["role"] == "test":
            raise PolyfuseError(
                f"tasks.{name}.reference: a chat task needs a reference system ({{model: ...}} or {{file: ...}})"
            )
        if "model" in reference:
            _known(reference["model"], models, f"tasks.{name}.reference.model")
    for key in ("throughput", "prices"):
        for model in config["forecast"][key]:
            _known(model, models, f"forecast.{key}")
    if "distill" in config:
        check_distill(config)
    if "analyses" in config:
        check_analyses(config)
    if config.get("zoo"):
        check_zoo(config)
    fusion = config["fusion"]
    check_fusor_context(config)
    fusors = set(study["fusors"]).union(*(task.get("fusors", []) for task in config["tasks"].values()))
    fusors |= set(fusor_choice_models(config))
    for spec in config.get("distill", {}).get("sets", {}).values():
        family, fusor = methods.parse(spec["method"])
        if family == "fusion" and fusor in models:
            fusors.add(fusor)
    for fusor in fusors:
        load_template(fusion["template"], "fusion", models[fusor]["prompt_style"])


def check_fusor_context(config: dict) -> None:
    """A fusor's context must hold study.n candidates of each task's budget plus its own budget.

    The prompt's own length is not known before the items exist, so this is a floor checked at parse time;
    the engines check each real prompt before generating.
    """
    n, budget = config["study"]["n"], config["fusion"]["max_tokens"]
    sets = config.get("distill", {}).get("sets", {}).values()
    for name, task in config["tasks"].items():
        if task["role"] == "test":
            jobs = [(fusor, n, f"study.n={n}") for fusor in task.get("fusors", config["study"]["fusors"])]
        else:  # a training prompt is fused only by the sets' fusors, over their pools
            jobs = [
                (fusor, pool_size(config, spec["pool"]), f"pool {spec['pool']!r}'s {pool_size(config, spec['pool'])}")
                for spec in sets
                for family, fusor in [methods.parse(spec["method"])]
                if family == "fusion"
            ]
        if name in config.get("analyses", {}).get("cells", {}):  # the fusor analysis fuses its pools with each model
            jobs += [
                (fusor, pool_size(config, sampler), f"{sampler!r}'s {pool_size(config, sampler)}")
                for sampler in analysed_samplers(config, name)
                for fusor in fusor_choice_models(config)
            ]
        for fusor, count, what in jobs:
            needed = count * task.get("max_tokens", task_kind(task["kind"]).max_tokens) + budget
            spec = config["models"][fusor]
            key = CONTEXT_KEYS.get(spec["engine"])
            context = spec.get(key, ENGINE_MODELS[spec["engine"]].default(key)) if key else None
            if context is not None and needed >= context:
                raise PolyfuseError(
                    f"models.{fusor}.{key}: {context} tokens cannot hold {what} candidates of "
                    f"tasks.{name}.max_tokens plus fusion.max_tokens={budget} ({needed} tokens) and the prompt"
                )


def pool_size(config: dict, sampler: str) -> int:
    """Candidates per prompt of a sampler: the members' counts of a pool, study.n of a model."""
    pool = config.get("pools", {}).get(sampler)
    return sum(member.get("n", 1) for member in pool["members"]) if pool else config["study"]["n"]


def check_distill(config: dict) -> None:
    """The synthetic-data setting: sets built from known pools by known methods, students evaluated on test tasks."""
    distill, models, study = config["distill"], config["models"], config["study"]
    samplers = {**models, **config.get("pools", {})}
    train_tasks = [name for name, task in config["tasks"].items() if task["role"] == "train"]
    if not train_tasks:
        raise PolyfuseError("distill: no task has role: train, so there are no prompts to build sets from")
    for name, spec in distill["sets"].items():
        where = f"distill.sets.{name}"
        if name == methods.BASE_STUDENT or not name.replace("_", "").isalnum():
            raise PolyfuseError(
                f"{where}: a set name is letters, digits and '_', and not 'base' (the untrained student)"
            )
        _known(spec["pool"], samplers, f"{where}.pool")
        family, argument = methods.parse(spec["method"])
        if family == "bon":
            _known(argument, set(study["selectors"]), f"{where}.method (its selector, from study.selectors)")
        elif family == "fusion":
            _known(argument, models, f"{where}.method (its fusor)")
        elif family != "single":
            raise PolyfuseError(f"{where}.method: {spec['method']!r} needs references; use single, bon-* or fusion-*")
    for name, family in zip(distill["compare"], ("bon", "fusion"), strict=True):
        _known(name, distill["sets"], "distill.compare")
        if methods.parse(distill["sets"][name]["method"])[0] != family:
            raise PolyfuseError(f"distill.compare: [a bon-* set, a fusion-* set], got {distill['compare']}")
    for name in [*models, *config.get("pools", {})]:
        if methods.is_student(name):
            raise PolyfuseError(f"{name!r}: names starting {methods.STUDENT_PREFIX!r} are the students' own")
    test_tasks = [name for name, task in config["tasks"].items() if task["role"] == "test"]
    for task in distill["evaluate"]:
        _known(task, test_tasks, "distill.evaluate")
    student = distill["student"]["model"]
    _known(student, models, "distill.student.model")
    if models[student]["engine"] != "llamacpp":
        raise PolyfuseError(f"distill.student.model: {student!r} must be a llamacpp model: its GGUF is fine-tuned")


def analysis_variants(config: dict) -> list[str]:
    """The derived pools every analysed sampler gets: N-scaling subsets, robustness injections, position orders."""
    analyses = config.get("analyses")
    if not analyses:
        return []
    injections = analyses["injections"]
    return [
        *(methods.subset_variant(size, index) for size in analyses["sizes"] for index in range(analyses["subsets"])),
        *(methods.injection_variant(kind, k) for kind in injections["kinds"] for k in injections["k"]),
        *(methods.order_variant(how) for how in analyses["orders"]),
    ]


def fusor_choice_models(config: dict) -> list[str]:
    """The models of the fusor analysis (analyses.fusors.models), smallest first; none when it is not configured."""
    return config.get("analyses", {}).get("fusors", {}).get("models", [])


def analysed_samplers(config: dict, task: str) -> list[str]:
    """The samplers an analysed task's derived pools come from: analyses.samplers, or the task's own samplers."""
    return config["analyses"].get("samplers") or config["tasks"][task].get("samplers", config["study"]["samplers"])


def check_analyses(config: dict) -> None:
    """Analysed cells are test cells; subset sizes and injection counts fit every analysed sampler's pool."""
    analyses, tasks = config["analyses"], config["tasks"]
    for model in fusor_choice_models(config):
        _known(model, config["models"], "analyses.fusors.models")
    for task, languages in analyses["cells"].items():
        _known(task, [name for name, spec in tasks.items() if spec["role"] == "test"], "analyses.cells")
        for lang in languages:
            _known(lang, tasks[task]["languages"], f"analyses.cells.{task}")
        if not task_kind(tasks[task]["kind"]).has_oracle and set(methods.RANKED_ORDERS) & set(analyses["orders"]):
            raise PolyfuseError(
                f"analyses.orders: best-first and worst-first rank by a reference metric; {task!r} is judged"
            )
        for sampler in analysed_samplers(config, task):
            _known(sampler, {**config["models"], **config.get("pools", {})}, "analyses.samplers")
            size = pool_size(config, sampler)
            for n in analyses["sizes"]:
                if n >= size:
                    raise PolyfuseError(
                        f"analyses.sizes: {n} is not below {sampler!r}'s pool of {size} on {task!r} "
                        "(N = 1 is the single sample, and the whole pool is the study's own point)"
                    )
                if analyses["subsets"] > math.comb(size, n):
                    raise PolyfuseError(
                        f"analyses.subsets: {analyses['subsets']} distinct subsets of {n} from {size} candidates "
                        f"do not exist (at most {math.comb(size, n)})"
                    )
            for k in analyses["injections"]["k"]:
                if k >= size:
                    raise PolyfuseError(
                        f"analyses.injections.k: {k} of {sampler!r}'s {size} candidates would leave none to find"
                    )


def zoo_cells(config: dict) -> dict[str, list[str]]:
    """The test cells the zoo runs on, {task: languages}: zoo.cells, else every language of every test task."""
    zoo = config.get("zoo") or {}
    if not zoo:
        return {}
    every = {name: spec["languages"] for name, spec in config["tasks"].items() if spec["role"] == "test"}
    return zoo.get("cells") or every


def zoo_model(zoo: dict, method: str) -> str:
    """The model a zoo method runs: zoo.models' entry for it, else zoo.model."""
    return zoo.get("models", {}).get(method, zoo["model"])


def check_zoo(config: dict) -> None:
    """The zoo's models exist and can run their methods, its tasks are test tasks, and its prompts exist."""
    zoo, models = config["zoo"], config["models"]
    _known(zoo["model"], models, "zoo.model")
    for method, model in zoo.get("models", {}).items():
        _known(
            method,
            [*zoo["selectors"], *zoo["aggregators"]],
            "zoo.models (a method zoo.selectors or zoo.aggregators lists)",
        )
        _known(model, models, f"zoo.models.{method}")
    for task, languages in (zoo.get("cells") or {}).items():
        _known(task, [name for name, spec in config["tasks"].items() if spec["role"] == "test"], "zoo.cells")
        for lang in languages:
            _known(lang, config["tasks"][task]["languages"], f"zoo.cells.{task}")
    for method in [*zoo["selectors"], *zoo["aggregators"]]:
        model = zoo_model(zoo, method)
        style, engine = models[model]["prompt_style"], models[model]["engine"]
        if method == "self_certainty" and engine != "llamacpp":
            raise PolyfuseError(
                f"zoo: self_certainty needs full-vocabulary log-probabilities, which model {model!r} on the {engine} "
                "engine does not give (only llamacpp does); name a llamacpp model in zoo.models.self_certainty"
            )
        if method in ("knockout", "round_robin", "mbr_judge") and config["judge"]["mode"] != "generate":
            _needs_summed_loglik(models, model, f"zoo: {method} with judge.mode {config['judge']['mode']}")
        if method in ("usc", "genselect", "chops"):
            load_template(method, "select", style)
        if method == "mbr_judge" and zoo["mbr_judge"]["utility"] == "pointwise":
            load_template(zoo["mbr_judge"]["template"], "judge", style)
        if method in zoo["aggregators"]:
            load_template(aggregator(method).template or config["fusion"]["template"], "fusion", style)


def student_gguf(set_name: str) -> str:
    return f"results/distill/{set_name}/student/student.gguf"


def student_models(config: dict) -> dict[str, dict]:
    """The student models: the untrained base and one per set, each its exported GGUF answering in chat style."""
    distill = config["distill"]
    n_ctx = distill["student"]["n_ctx"]
    return {
        methods.student(name): {
            "engine": "llamacpp",
            "path": student_gguf(name),
            "prompt_style": "chat",
            "n_ctx": n_ctx,
        }
        for name in [methods.BASE_STUDENT, *distill["sets"]]
    }


def finetune_settings(config: dict) -> dict:
    """The fine-tune's settings with the base student's GGUF resolved; cluster resources stay with the rule."""
    from polyfuse.engines.llamacpp import resolve_gguf

    student = config["distill"]["student"]["model"]
    spec = config["models"][student]
    settings = {key: value for key, value in config["distill"]["finetune"].items() if key != "resources"}
    # A hub GGUF is fetched by the fine-tuning job, so parsing the workflow never downloads a model.
    base = {"hub": spec["hub"]} if "hub" in spec else {"gguf": str(resolve_gguf(student, spec))}
    return {**settings, "base": base, "export": "gguf"}
