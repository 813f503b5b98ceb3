"""Entry points for the workflow's rules: each wires a rule's files and params to the library.

Every step logs to the rule's log file, and turns a PolyfuseError into one line on
stderr and in the log, with exit status 1, instead of a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time

from polyfuse import data, distill, fuse, methods, pools, score, selectors
from polyfuse import judge as judging
from polyfuse import sample as sampling
from polyfuse import select as bon
from polyfuse.cache import OutputCache
from polyfuse.engines import create_engine
from polyfuse.errors import PolyfuseError
from polyfuse.io import content_hash, read_jsonl, write_jsonl
from polyfuse.judge import Judge
from polyfuse.tasks import task_kind

log = logging.getLogger("polyfuse")


def run_logged(rule: str, log_path: str | None, action) -> None:
    """Run `action()` logging to `log_path`; a PolyfuseError becomes one line and exit status 1.

    The log is appended to, so a killed attempt's lines stay above its re-run's.
    """
    handler = logging.FileHandler(log_path, mode="a", encoding="utf-8") if log_path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    log.info("rule=%s start", rule)
    start = time.perf_counter()
    try:
        action()
    except PolyfuseError as exc:
        log.error("%s", exc)
        print(f"polyfuse error in rule {rule}: {exc}", file=sys.stderr)
        sys.exit(1)
    log.info("rule=%s seconds=%.2f", rule, time.perf_counter() - start)


def step(func):
    @functools.wraps(func)
    def run(smk) -> None:
        run_logged(smk.rule, smk.log[0] if smk.log else None, lambda: func(smk))

    return run


def _cache(smk) -> OutputCache:
    """The model's cache, written through the job's own shard: a re-run of a killed job reopens the same one."""
    outputs = sorted(os.path.abspath(path) for path in smk.output)
    return OutputCache(smk.params.cache, writer=f"{smk.rule}-{content_hash(outputs)}")


def _engine(smk, model_name: str):
    return create_engine(model_name, smk.params.models[model_name], threads=smk.threads)


@step
def items(smk) -> None:
    task = smk.params.task
    count = data.write_items(
        smk.output.items_file,
        smk.output.shots,
        smk.wildcards.task,
        smk.wildcards.lang,
        task["dataset"],
        shots=int(task.get("shots", 0)),
        max_items=task.get("max_items"),
        seed=int(smk.params.seed),
    )
    log.info("items=%d", count)


def _model_run(smk, model: str, cache: OutputCache) -> dict:
    """What a job that runs `model` on its task needs of it: the engine, its prompt style and cache, the task kind."""
    style = smk.params.models[model]["prompt_style"]
    return {"engine": _engine(smk, model), "style": style, "cache": cache, "kind": task_kind(smk.params.kind)}


@step
def sample(smk) -> None:
    (model,) = smk.params.models  # a sampling job runs exactly one model
    with _cache(smk) as cache:
        study = smk.params.study
        job = sampling.SamplingJob(
            **_model_run(smk, model, cache), n=int(study["n"]), sampling=smk.params.sampling, seed=int(study["seed"])
        )
        sampling.run_sample(smk.input.items_file, smk.input.shots, smk.output.pools, job=job)


@step
def pool(smk) -> None:
    count = pools.merge_pools(
        smk.input.items_file, list(smk.input.members), smk.params.members, smk.output.pools, smk.wildcards.pool
    )
    log.info("pools=%d members=%d", count, len(smk.params.members))


@step
def derive_pool(smk) -> None:
    name = methods.derived(smk.wildcards.sampler, smk.wildcards.variant)
    count = pools.derive_pools(
        smk.input.items_file, smk.input.pools, smk.output.pools, name, task_kind(smk.params.kind), int(smk.params.seed)
    )
    log.info("derived=%s pools=%d", name, count)


@step
def sft_set(smk) -> None:
    card = distill.build_sft_set(
        smk.input.items_file,
        smk.input.pools,
        dict(zip(smk.params.methods, smk.input.outputs, strict=True)),
        smk.output.sft,
        smk.output.card,
        target=distill.SetTarget(smk.wildcards.set, smk.params.target, task_kind(smk.params.kind)),
        evaluated_items=list(smk.input.evaluated),
        target_scores=dict(zip(smk.params.target_scores, smk.input.target_scores, strict=True)),
    )
    log.info(
        "set=%s written=%d of %d prompts test_overlap=%d",
        smk.wildcards.set,
        card["written"],
        card["prompts"],
        card["test_overlap"],
    )


def _judge(smk, model: str, cache: OutputCache, template_key: str, template: str | None = None) -> Judge:
    """The judge's settings run by `model` with the judge template under `template_key`, or `template`."""
    settings = smk.params.judge
    style = smk.params.models[model]["prompt_style"]
    # worked judgements for a few-shot judge, in the item's task and language
    shots = tuple(read_jsonl(smk.input.shots))
    template = template or settings[template_key]
    return Judge.from_settings(_engine(smk, model), style, settings, cache, template, shots)


@step
def reference(smk) -> None:
    spec = smk.params.reference
    if "file" in spec:
        records = judging.reference_from_file(smk.input.items_file, spec["file"].format(lang=smk.wildcards.lang))
        write_jsonl(smk.output.reference, records)
        return
    sampling_params = {"temperature": spec["temperature"], "top_p": 1.0, "max_tokens": smk.params.max_tokens}
    with _cache(smk) as cache:
        job = sampling.SamplingJob(
            **_model_run(smk, spec["model"], cache), n=1, sampling=sampling_params, seed=int(smk.params.seed)
        )
        pools = sampling.sample_pools(smk.input.items_file, smk.input.shots, job=job)
        log.info("references=%d", write_jsonl(smk.output.reference, judging.reference_from_pools(pools)))


def _scorer(smk, cache: OutputCache) -> bon.Scorer:
    """The scorer of the rule's `selector` (a method name), with the model, shots and cache it needs."""
    scorer_name = methods.scorer_of(smk.wildcards.selector)[0]
    model = smk.params.scorer_model
    context: dict = {}
    if scorer_name in ("loglik", "self_certainty"):  # a teacher-forced pass after the task prompt
        context = dict(
            engine=_engine(smk, model),
            style=smk.params.models[model]["prompt_style"],
            shots=list(read_jsonl(smk.input.shots)),
            cache=cache,
            **({"normalization": smk.params.loglik_normalization} if scorer_name == "loglik" else {}),
        )
    elif scorer_name == "llm_judge_pointwise":
        context = dict(judge=_judge(smk, model, cache, "pointwise_template"))
    elif scorer_name in ("knockout", "round_robin", "mbr_judge"):
        mbr = smk.params.zoo.get("mbr_judge", {})
        pointwise = scorer_name == "mbr_judge" and mbr["utility"] == "pointwise"  # rates against a reference
        judge = _judge(smk, model, cache, "template", mbr["template"] if pointwise else None)
        context = dict(judge=judge, settings=smk.params.zoo)
    elif scorer_name in selectors.MODEL_SELECTORS:
        style = smk.params.models[model]["prompt_style"]
        context = dict(engine=_engine(smk, model), style=style, cache=cache, settings=smk.params.zoo)
    return bon.make_scorer(scorer_name, task_kind(smk.params.kind), **context)


@step
def select(smk) -> None:
    with _cache(smk) as cache:
        scorer = _scorer(smk, cache)
        bon.run_select(
            smk.input.items_file, smk.input.pools, smk.output.outputs, scorer=scorer, method=smk.wildcards.selector
        )


@step
def target_scores(smk) -> None:
    """A BoN scorer's score of each answer another method wrote from the pool (the SFT records keep it)."""
    paths = (smk.input.items_file, smk.input.pools, smk.input.targets, smk.output.scores)
    with _cache(smk) as cache:
        bon.run_target_scores(*paths, scorer=_scorer(smk, cache), method=smk.wildcards.selector)


@step
def fusion(smk) -> None:
    settings = smk.params.fusion
    with _cache(smk) as cache:
        job = fuse.FusionJob(
            **_model_run(smk, smk.wildcards.fusor, cache),
            template=settings["template"],
            sampling=settings,
            seed=int(smk.params.seed),
            fallback=settings["fallback"],
            # the zoo's aggregation methods run as fusion-<aggregator>@<fusor>; fusion-<fusor> is the paper's
            aggregator=getattr(smk.wildcards, "aggregator", methods.PAPER_AGGREGATOR),
            settings=smk.params.zoo,
        )
        fuse.run_fuse(smk.input.items_file, smk.input.shots, smk.input.pools, smk.output.outputs, job=job)


@step
def score_outputs(smk) -> None:
    score.run_score(
        smk.input.items_file, smk.input.outputs, smk.output.scores, smk.output.summary, kind=task_kind(smk.params.kind)
    )


@step
def judge(smk) -> None:
    """Win rates: a method against the reference system, or head-to-head against another method."""
    paths = (smk.input.items_file, smk.input.outputs, smk.input.opponent, smk.output.scores, smk.output.summary)
    with _cache(smk) as cache:
        judge = _judge(smk, smk.params.judge["model"], cache, "template")
        judging.run_judge(*paths, kind=task_kind(smk.params.kind), judge=judge, label=smk.params.label)


@step
def aggregate(smk) -> None:
    from polyfuse import report  # pandas and matplotlib live in the report environment only

    report.run_report(
        scores=list(smk.input.scores),
        summaries=list(smk.input.summaries),
        fusions=list(smk.input.fusions),
        outputs=dict(smk.output),
        settings=smk.params.report,
        cards=list(smk.input.cards),
        trainings=list(smk.input.trainings),
    )


@step
def analysis(smk) -> None:
    """The analysis the rule is named after, on the rule's named inputs (see polyfuse.analysis_report)."""
    # pandas and matplotlib live in the report environment only; importing claims registers it beside the others
    from polyfuse import claims, zoo_report  # noqa: F401
    from polyfuse.analysis_report import ANALYSES

    run = ANALYSES[smk.rule]
    inputs = {name: [files] if isinstance(files, str) else list(files) for name, files in smk.input.items()}
    run(**inputs, outputs=dict(smk.output), settings=smk.params.settings)
