"""Checks of a study config beyond its JSON Schema: every name it uses must exist.

Run when the workflow is parsed, so an unknown task, language, model or scorer is
rejected before any job starts or any model is loaded. Imports stay light here:
no engine backend, pandas or plotting library is loaded.
"""

from __future__ import annotations

from polyfuse.data import LOADERS
from polyfuse.engines import BACKEND_MODULES, CONTEXT_KEYS, SUMMED_LOGLIK_ENGINES
from polyfuse.errors import PolyfuseError
from polyfuse.fuse import FALLBACKS
from polyfuse.languages import LANGUAGE_NAMES
from polyfuse.select import MODEL_SCORERS, SCORERS
from polyfuse.tasks import PROMPT_STYLES, TASK_KINDS, load_template, task_kind


def check_schema(config: dict, schema_path: str) -> None:
    """Validate against the JSON Schema, reporting the single most relevant error on one line."""
    import jsonschema
    import yaml

    with open(schema_path, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        key = ".".join(map(str, error.absolute_path)) or "(top level)"
        expected = error.schema.get("description") if isinstance(error.schema, dict) else None
        raise PolyfuseError(f"{key}: {error.message}" + (f" (expected: {expected})" if expected else ""))


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
    models = config["models"]
    for name, spec in models.items():
        _known(spec["engine"], BACKEND_MODULES, f"models.{name}.engine")
        _known(spec["prompt_style"], PROMPT_STYLES, f"models.{name}.prompt_style")
    for name, task in config["tasks"].items():
        _known(task["kind"], TASK_KINDS, f"tasks.{name}.kind")
        _known(task["dataset"]["format"], LOADERS, f"tasks.{name}.dataset.format")
        for lang in task["languages"]:
            _known(lang, LANGUAGE_NAMES, f"tasks.{name}.languages")
    study = config["study"]
    for role in ("samplers", "fusors"):
        for model in study[role]:
            _known(model, models, f"study.{role}")
        for name, task in config["tasks"].items():
            for model in task.get(role, []):
                _known(model, models, f"tasks.{name}.{role}")
    for selector in study["selectors"]:
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
        if task["kind"] == "chat" and not reference:
            raise PolyfuseError(
                f"tasks.{name}.reference: a chat task needs a reference system ({{model: ...}} or {{file: ...}})"
            )
        if "model" in reference:
            _known(reference["model"], models, f"tasks.{name}.reference.model")
    fusion = config["fusion"]
    _known(fusion["fallback"], FALLBACKS, "fusion.fallback")
    check_fusor_context(config)
    fusors = set(study["fusors"]).union(*(task.get("fusors", []) for task in config["tasks"].values()))
    for fusor in fusors:
        load_template(fusion["template"], "fusion", models[fusor]["prompt_style"])


def check_fusor_context(config: dict) -> None:
    """A fusor's context must hold study.n candidates of each task's budget plus its own budget.

    The prompt's own length is not known before the items exist, so this is a floor checked at parse time;
    the engines check each real prompt before generating.
    """
    n, budget = config["study"]["n"], config["fusion"]["max_tokens"]
    for name, task in config["tasks"].items():
        needed = n * task.get("max_tokens", task_kind(task["kind"]).max_tokens) + budget
        for fusor in task.get("fusors", config["study"]["fusors"]):
            spec = config["models"][fusor]
            key, default = CONTEXT_KEYS.get(spec["engine"], (None, None))
            context = spec.get(key, default) if key else None
            if context is not None and needed >= context:
                raise PolyfuseError(
                    f"models.{fusor}.{key}: {context} tokens cannot hold study.n={n} candidates of "
                    f"tasks.{name}.max_tokens plus fusion.max_tokens={budget} ({needed} tokens) and the prompt"
                )
